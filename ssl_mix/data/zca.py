"""ZCA whitening of images: fitted once on the training images, applied to every batch on the device.

ZCA ("zero-phase component analysis") whitening (Bell & Sejnowski 1997; Krizhevsky 2009, appendix A) maps a
flattened image ``x`` of ``D = C * H * W`` values to

    z = W (x - mu),   W = U diag((s + eps)^(-1/2)) U^T,

where ``mu`` is the mean training image and ``Sigma = U diag(s) U^T`` the covariance of the training images (divided
by N). With ``eps = 0`` the whitened training images have identity covariance; of all whitening matrices, the
symmetric ``W`` keeps ``z`` closest to ``x`` in the mean-square sense, so whitened images still look like images
(edges, with the colour and low-frequency content flattened). ``eps`` damps the directions of tiny variance
(noise, and on JPEG copies the frequencies the compression removed), which ``eps = 0`` would amplify the most.

The official ICT code (Verma et al. 2019) trains CIFAR-10 on ZCA-whitened inputs: its ``cifar10_zca.py`` fits the
transform on the 50,000 training images after the per-channel normalisation the loaders apply, and its training
loop whitens each augmented labeled and unlabeled batch, and each evaluation batch. Here the transform lives in
the same space: fit it on normalised images (:func:`fit_zca` normalises uint8 images as
:func:`~ssl_mix.data.normalize` does) and apply it after normalisation. Covariance and eigendecomposition run in
float64; the fitted transform is stored in float32 and applied as one matrix product.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ssl_mix.data.augment import normalize

__all__ = ["ZCA", "fit_zca", "apply_zca", "preprocess_entry", "preprocess_transform"]

# Images per chunk while accumulating the covariance: a float64 chunk of 2,000 CIFAR images is 49 MB.
_CHUNK = 2000


@dataclass(frozen=True, eq=False)
class ZCA:
    """A fitted ZCA whitening transform (build it with :func:`fit_zca`).

    Attributes:
        mean: ``(D,)`` float32, the mean training image, flattened in ``(C, H, W)`` order.
        matrix: ``(D, D)`` float32, the symmetric whitening matrix ``W``.
        eps: the regulariser it was fitted with.
        image_shape: ``(C, H, W)`` of the images it applies to.

    Calling the object applies it: ``zca(x) == apply_zca(x, zca)``.
    """

    mean: torch.Tensor
    matrix: torch.Tensor
    eps: float
    image_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.mean, torch.Tensor) or not isinstance(self.matrix, torch.Tensor):
            raise TypeError(f"ZCA.mean and ZCA.matrix must be tensors, got {type(self.mean).__name__} and "
                            f"{type(self.matrix).__name__}; build a ZCA with ssl_mix.fit_zca")
        shape = tuple(int(v) for v in self.image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"ZCA.image_shape must be (C, H, W), got {self.image_shape!r}")
        d = math.prod(shape)
        if tuple(self.mean.shape) != (d,) or tuple(self.matrix.shape) != (d, d):
            raise ValueError(f"a ZCA for images {shape} needs mean ({d},) and matrix ({d}, {d}), got "
                             f"{tuple(self.mean.shape)} and {tuple(self.matrix.shape)}")
        object.__setattr__(self, "image_shape", shape)

    def __repr__(self) -> str:
        return f"ZCA(image_shape={self.image_shape}, eps={self.eps}, device={self.matrix.device})"

    def to(self, device: torch.device | str) -> ZCA:
        """The same transform with its tensors on ``device``."""
        return ZCA(self.mean.to(device), self.matrix.to(device), self.eps, self.image_shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return apply_zca(x, self)

    def state_dict(self) -> dict[str, Any]:
        """``{"mean", "matrix", "eps", "image_shape"}`` with CPU tensors, for a checkpoint."""
        return {"mean": self.mean.detach().cpu(), "matrix": self.matrix.detach().cpu(), "eps": self.eps,
                "image_shape": list(self.image_shape)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ZCA:
        """Rebuild a transform from :meth:`state_dict`'s output."""
        keys = ("mean", "matrix", "eps", "image_shape")
        missing = [k for k in keys if not isinstance(state, Mapping) or k not in state]
        if missing:
            raise ValueError(f"not a ZCA state: missing {missing} (expected the dict of ZCA.state_dict())")
        return cls(torch.as_tensor(state["mean"], dtype=torch.float32),
                   torch.as_tensor(state["matrix"], dtype=torch.float32), float(state["eps"]),
                   tuple(state["image_shape"]))


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a number >= 0, got {type(eps).__name__} ({eps!r})")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0 (e.g. 1e-2 for normalised pixels), got {eps!r}")
    return float(eps)


def fit_zca(images: torch.Tensor, eps: float = 1e-2, *, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> ZCA:
    """Fit a ZCA whitening transform to training images.

    Args:
        images: ``(N, C, H, W)``, N >= 2: uint8 images, normalised here with ``mean``/``std`` exactly as
            :func:`~ssl_mix.data.normalize` does (the space the loaders deliver batches in), or float images already
            in the space where the transform will be applied (then leave ``mean``/``std`` out). Fit on the training
            images only (the labeled and unlabeled pool), never on the test set.
        eps: regulariser added to the covariance eigenvalues, in the units of the (normalised) pixels: directions
            with variance well below ``eps`` are scaled by about ``eps^(-1/2)`` instead of blown up.
        mean, std: per-channel normalisation constants in [0, 1] units, required with uint8 images.

    Returns:
        The fitted :class:`ZCA`, on the images' device, in float32.

    Note:
        The covariance divides by N (not N - 1), as the official ICT code does. With ``D = C*H*W`` larger than N
        the covariance is singular and only ``eps > 0`` keeps the transform finite.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[0] < 2:
        raise ValueError(f"images must be a batch (N, C, H, W) with N >= 2, got shape {tuple(images.shape)}")
    eps = _check_eps(eps)
    if images.dtype == torch.uint8:
        if mean is None or std is None:
            raise ValueError("uint8 images need the dataset's mean and std (fit_zca(images, eps, mean=spec.mean, "
                             "std=spec.std)) so the transform is fitted in the space the loaders deliver")
    elif not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    elif mean is not None or std is not None:
        raise ValueError("mean/std normalise uint8 images; these are float images, taken as already normalised: "
                         "leave mean and std out")
    n, shape = images.shape[0], tuple(images.shape[1:])
    d = math.prod(shape)

    def chunks():
        for start in range(0, n, _CHUNK):
            part = images[start:start + _CHUNK]
            part = normalize(part, mean, std, torch.float64) if part.dtype == torch.uint8 else part.double()
            yield part.reshape(part.shape[0], d)

    total = torch.zeros(d, dtype=torch.float64, device=images.device)
    for part in chunks():
        total += part.sum(0)
    mu = total / n
    cov = torch.zeros(d, d, dtype=torch.float64, device=images.device)
    for part in chunks():
        centred = part - mu
        cov.addmm_(centred.T, centred)
    cov /= n
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    # Rounding can leave the smallest eigenvalues of a singular covariance slightly negative.
    scale = (eigenvalues.clamp_min(0) + eps).rsqrt()
    matrix = (eigenvectors * scale) @ eigenvectors.T
    if not torch.isfinite(matrix).all():
        raise ValueError(f"the ZCA matrix is not finite: the covariance of these {n} images ({d} values each) is "
                         f"singular and eps={eps}; use eps > 0 (e.g. 1e-2)")
    return ZCA(mu.float(), matrix.float(), eps, shape)


def apply_zca(x: torch.Tensor, zca: ZCA) -> torch.Tensor:
    """Whiten a batch: ``(x - mean) W`` per flattened image, as one matrix product on ``x``'s device.

    Args:
        x: ``(B, C, H, W)`` float images, normalised as the transform's training images were.
        zca: the fitted transform; its tensors are moved to ``x``'s device if they are elsewhere (keep them there
            with :meth:`ZCA.to` in per-step code).

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype; computed in float32 (float64 for float64 input).
    """
    if not isinstance(zca, ZCA):
        raise TypeError(f"zca must be a ZCA (see ssl_mix.fit_zca), got {type(zca).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (B, C, H, W) of normalised images, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 4 or tuple(x.shape[1:]) != zca.image_shape:
        raise ValueError(f"this ZCA transform was fitted on images of shape {zca.image_shape}, got a batch of shape "
                         f"{tuple(x.shape)}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    matrix = zca.matrix.to(x.device, work)
    mean = zca.mean.to(x.device, work)
    flat = x.reshape(x.shape[0], -1).to(work)
    # W is symmetric, so (x - mean) W^T = x W - mean W: one addmm with the shift folded in.
    return torch.addmm(-(mean @ matrix), flat, matrix).view(x.shape).to(x.dtype)


# The key of the ZCA transform in a checkpoint's ``data["preprocess"]`` entry (see ssl_mix.run.data_info).
_ZCA_KEY = "zca"


def preprocess_entry(zca: ZCA | None) -> dict[str, Any]:
    """The ``preprocess`` entry a checkpoint keeps for a run's input transform (``ssl_mix.run.data_info``).

    Args:
        zca: the run's fitted transform, or None.

    Returns:
        ``{"zca": zca.state_dict()}``, or ``{}`` without a transform.
    """
    return {} if zca is None else {_ZCA_KEY: zca.state_dict()}


def preprocess_transform(preprocess: Mapping[str, Any], device: torch.device | str = "cpu") -> ZCA | None:
    """The transform a checkpoint's ``preprocess`` entry describes (``TrainedRun.preprocess``), on ``device``.

    Apply it to normalised images, as training did: pass it as ``preprocess=`` to :func:`~ssl_mix.eval_batches`, or
    call it on a normalised batch. Evaluation, prediction and export use this one function.

    Args:
        preprocess: the entry (``{}`` for a run without one).
        device: where the transform's tensors go (the models' device).

    Returns:
        The :class:`ZCA`, or None when the run used no input transform.
    """
    if not isinstance(preprocess, Mapping):
        raise TypeError(f"preprocess must be a checkpoint's preprocess entry (a dict), got {type(preprocess).__name__}")
    unknown = set(preprocess) - {_ZCA_KEY}
    if unknown:
        raise ValueError(f"the checkpoint's preprocess entry holds {sorted(unknown)}, which this version of ssl_mix "
                         "cannot apply; load the run with the version that wrote it")
    state = preprocess.get(_ZCA_KEY)
    return None if state is None else ZCA.from_state_dict(state).to(device)
