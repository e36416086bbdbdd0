"""Per-layer non-linearity of a network along mixup paths (Chaudhry et al., eq. 3).

Chaudhry et al. ("When does mixup promote local linearity in learned representations?", §3, eq. 3) measure
how far layer ``l`` of a network is from being linear between held-out examples: for pairs ``(x_1, x_2)``
and a mixing weight ``lam``, the distance

    || f^l(Mix_lam(x_1, x_2)) - Mix_lam(f^l(x_1), f^l(x_2)) ||_2

between the representation of the mix and the mix of the representations, with each layer's output
flattened per example and brought to a comparable scale so that layers of different widths and magnitudes
can be compared. With K points and Dirichlet weights the same quantity measures linearity on the K-point
mixes that ICT[K] trains on (eq. 1).

Scale
-----
The paper divides each representation by its own L2 norm. Taken literally, that makes even a linear layer
look non-linear (for the identity map, ``unit(lam x_1 + (1 - lam) x_2)`` differs from
``lam unit(x_1) + (1 - lam) unit(x_2)`` whenever ``x_1`` and ``x_2`` differ in norm or direction), so the
measure would confound the geometry of the representations with the non-linearity of the map. The default
here, ``normalization="shared"``, divides the three vectors of a mix by one common scale instead,

    s = max(||f^l(Mix_lam(x))||, sum_k lam_k ||f^l(x_k)||),

which keeps what the paper wants from the normalisation (the value ignores the scale of the layer's output
and is bounded: it lies in [0, 2], like the paper's distance between unit vectors) while being exactly zero
for every linear or affine map. When all three norms are equal it coincides with the paper's formula.
``normalization="example"`` is the paper's per-example normalisation, for comparison with its figures.

Reduction
---------
The paper reports the sum over pairs. The functions here report the mean (``sum = mean * number of
pairs``), so values do not grow with the size of the held-out sample; ``reduction="sum"`` gives the sum.

Layer keys
----------
:func:`measure_linearity` and :class:`LinearityProbe` return ``{key: value}`` with the stable, readable keys
of :func:`layer_key`: ``"<index>_<layer name>"``, e.g. ``"0_conv1"``, ``"3_group3"``, ``"5_logits"`` for a
wide ResNet (layer 0..5 as in Chaudhry et al. §3), and ``"input"`` for the raw input. The trainer logs them
to TensorBoard as ``linearity/<key>``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.checks import check_in, check_int, check_k, check_positive_int
from ssl_mix.mixing import sample_mix_weights
from ssl_mix.models.eval_mode import eval_mode, model_device
from ssl_mix.models.stages import LayerId, forward_layers, get_stages, layer_names

if TYPE_CHECKING:
    from ssl_mix.data.arrays import ImageArrays
from ssl_mix.data.spec import DataSpec

__all__ = [
    "Normalization",
    "LinearityProbe",
    "layer_key",
    "nonlinearity",
    "nonlinearity_k",
    "measure_linearity",
    "linearity_probe",
]

Normalization = Literal["shared", "example"]
Reduction = Literal["mean", "sum", "none"]

# Pairs are drawn in chunks so that the (chunk, N) sampling matrix stays below ~16 MB for any N.
_SAMPLING_CELLS = 1 << 22


def layer_key(model: nn.Module, layer: LayerId) -> str:
    """The readable, stable key of a layer: ``"<index>_<name>"`` (e.g. ``"0_conv1"``) or ``"input"``.

    Args:
        model: a model following the staged-model protocol (:mod:`ssl_mix.models.stages`).
        layer: ``"input"`` or a stage index ``0..n-1``.

    Returns:
        The key used by :func:`measure_linearity`, :class:`LinearityProbe` and the ``linearity/`` TensorBoard
        tags. The index prefix keeps keys unique and sortable even when names repeat.
    """
    if layer == "input":
        return "input"
    names = layer_names(model)
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 0 <= layer < len(names):
        raise ValueError(f"layer must be 'input' or an int in 0..{len(names) - 1}, got {layer!r}.")
    return f"{int(layer)}_{names[layer]}"


def _check_points(points: object, weights: object) -> None:
    if not isinstance(points, torch.Tensor) or not points.is_floating_point():
        raise TypeError(
            "points must be a floating-point tensor of shape (K, N, ...) (K endpoints for each of N mixes), got "
            f"{type(points).__name__ if not isinstance(points, torch.Tensor) else points.dtype}."
        )
    if points.ndim < 3 or points.shape[0] < 2 or points.shape[1] < 1:
        raise ValueError(
            f"points must have shape (K, N, ...) with K >= 2 endpoints, N >= 1 mixes and a feature dimension, "
            f"got {tuple(points.shape)}; stack the endpoints with torch.stack([x1, x2]) for pairs."
        )
    k, n = points.shape[:2]
    if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
        raise TypeError(f"weights must be a floating-point tensor of shape (N, K) = ({n}, {k}), got "
                        f"{type(weights).__name__ if not isinstance(weights, torch.Tensor) else weights.dtype}.")
    if weights.ndim != 2 or weights.shape[1] != k or weights.shape[0] not in (1, n):
        raise ValueError(
            f"weights must have shape (N, K) = ({n}, {k}) or (1, K) = (1, {k}) to match points of shape "
            f"{tuple(points.shape)}, got {tuple(weights.shape)}; draw them with sample_mix_weights(K, alpha, N)."
        )
    if weights.device != points.device:
        raise ValueError(f"weights are on {weights.device} but points on {points.device}; put both on one device.")
    tol = 1e-3 if weights.dtype in (torch.float16, torch.bfloat16) else 1e-5
    if bool((weights < 0).any()) or not torch.allclose(weights.sum(1), weights.new_ones(()), atol=tol, rtol=0):
        raise ValueError(
            "weights must be mixing weights: every row >= 0 and summing to 1 (a point of the simplex); "
            "draw them with ssl_mix.mixing.sample_mix_weights."
        )


def _mix(weights: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[n, k] * points[k, n]`` for points ``(K, N, ...)`` and weights ``(N or 1, K)``."""
    w = weights.to(points.dtype).t().reshape(*weights.t().shape, *([1] * (points.ndim - 2)))
    return (w * points).sum(0)


def _distances(
    model: nn.Module,
    points: torch.Tensor,
    weights: torch.Tensor,
    layers: Iterable[LayerId] | None,
    normalization: str,
) -> dict[LayerId, torch.Tensor]:
    """Per-mix distances ``(N,)`` per layer, from one forward pass over the endpoints and the mixes."""
    k, n = points.shape[:2]
    batch = torch.cat([points.flatten(0, 1), _mix(weights, points)])
    _, outputs = forward_layers(model, batch, layers)
    result: dict[LayerId, torch.Tensor] = {}
    for layer, h in outputs.items():
        # Distances are taken in float32 at least: bf16/fp16 activations would round linear layers to
        # a visibly non-zero value.
        h = h.flatten(1)
        h = h.double() if h.dtype == torch.float64 else h.float()
        ends, of_mix = h[: k * n].unflatten(0, (k, n)), h[k * n:]
        if normalization == "example":
            d = (F.normalize(of_mix, dim=1) - _mix(weights, F.normalize(ends, dim=2))).norm(dim=1)
        else:
            mixed_norm = _mix(weights, ends.norm(dim=2))
            scale = torch.maximum(of_mix.norm(dim=1), mixed_norm)
            # All three vectors zero gives 0 / tiny = 0: nothing to be non-linear about.
            d = (of_mix - _mix(weights, ends)).norm(dim=1) / scale.clamp_min(torch.finfo(h.dtype).tiny)
        result[layer] = d
    return result


def nonlinearity_k(
    model: nn.Module,
    points: torch.Tensor,
    weights: torch.Tensor,
    layers: Iterable[LayerId] | None = None,
    *,
    normalization: Normalization = "shared",
    reduction: Reduction = "mean",
) -> dict[LayerId, torch.Tensor]:
    """Non-linearity of each layer on K-point mixes (Chaudhry et al. eq. 3, generalised to K points).

    For mix ``n`` with endpoints ``points[:, n]`` and weights ``w = weights[n]``, the distance between
    ``f(sum_k w_k points[k, n])`` and ``sum_k w_k f(points[k, n])`` at every requested layer, after the
    scaling chosen by ``normalization`` (see the module docstring).

    Args:
        model: a model following the staged-model protocol; run in eval mode without gradients, and every
            submodule's train/eval mode is restored afterwards.
        points: ``(K, N, ...)`` model inputs, K >= 2 endpoints for each of N mixes, on the model's device.
        weights: ``(N, K)`` (or ``(1, K)`` shared by all mixes) mixing weights, rows on the simplex.
        layers: layer ids (``"input"`` and/or ``0..n-1``); ``None`` means every stage output ``0..n-1``.
        normalization: ``"shared"`` (default; zero for linear maps) or ``"example"`` (the paper's literal
            per-example unit normalisation).
        reduction: ``"mean"`` over mixes (default), ``"sum"`` (the paper's eq. 3) or ``"none"`` (``(N,)``).

    Returns:
        ``{layer: value}``: 0-d tensors (``"mean"``, ``"sum"``) or ``(N,)`` tensors (``"none"``), float32
        (float64 for float64 inputs), on the model's device, in the order of ``layers``.

    Note:
        The endpoints and the mixes go through the network as one batch of ``(K + 1) N`` examples, which is
        valid because eval mode treats examples independently; split large samples (see
        :class:`LinearityProbe`, which does).
    """
    check_in("normalization", normalization, get_args(Normalization))
    check_in("reduction", reduction, get_args(Reduction))
    get_stages(model)
    _check_points(points, weights)
    with eval_mode(model):
        distances = _distances(model, points, weights, layers, normalization)
    if reduction == "none":
        return distances
    return {layer: d.mean() if reduction == "mean" else d.sum() for layer, d in distances.items()}


def nonlinearity(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    lam: float | torch.Tensor,
    layers: Iterable[LayerId] | None = None,
    *,
    normalization: Normalization = "shared",
    reduction: Reduction = "mean",
) -> dict[LayerId, torch.Tensor]:
    """Non-linearity of each layer on pairs (Chaudhry et al. eq. 3): mixes ``lam x1 + (1 - lam) x2``.

    Args:
        model: a model following the staged-model protocol (run in eval mode, mode restored afterwards).
        x1: ``(N, ...)`` first endpoints.
        x2: ``(N, ...)`` second endpoints, same shape, dtype and device as ``x1``.
        lam: weight of ``x1`` in ``[0, 1]``: a float shared by all pairs or an ``(N,)`` tensor.
        layers: layer ids; ``None`` means every stage output ``0..n-1``.
        normalization: ``"shared"`` (default) or ``"example"``; see the module docstring.
        reduction: ``"mean"`` over pairs (default), ``"sum"`` (the paper's sum = mean * N) or ``"none"``.

    Returns:
        ``{layer: value}`` as in :func:`nonlinearity_k`.
    """
    if not isinstance(x1, torch.Tensor) or not isinstance(x2, torch.Tensor):
        raise TypeError(f"x1 and x2 must be tensors, got {type(x1).__name__} and {type(x2).__name__}.")
    if x1.shape != x2.shape or x1.dtype != x2.dtype or x1.device != x2.device:
        raise ValueError(
            f"x1 and x2 must have the same shape, dtype and device (one pair per row), got "
            f"{tuple(x1.shape)} {x1.dtype} {x1.device} and {tuple(x2.shape)} {x2.dtype} {x2.device}."
        )
    lam_t = torch.as_tensor(lam, dtype=x1.dtype if x1.is_floating_point() else torch.float32, device=x1.device)
    if lam_t.ndim == 0:
        lam_t = lam_t.reshape(1)
    if lam_t.ndim != 1 or lam_t.shape[0] not in (1, x1.shape[0]):
        raise ValueError(f"lam must be a float or a tensor of shape ({x1.shape[0]},), got shape {tuple(lam_t.shape)}.")
    if bool(((lam_t < 0) | (lam_t > 1)).any()):
        raise ValueError(f"lam must lie in [0, 1] (the weight of x1), got values outside: {lam!r}.")
    weights = torch.stack([lam_t, 1 - lam_t], dim=1)
    return nonlinearity_k(model, torch.stack([x1, x2]), weights, layers,
                          normalization=normalization, reduction=reduction)


class LinearityProbe:
    """A fixed sample of K-point mixes; calling it measures a model's per-layer non-linearity.

    Holds the endpoints and weights once, so repeated measurements during training (e.g. every N steps on
    the teacher) are on the same mixes and comparable over time. Build one with :func:`linearity_probe`
    (from uint8 images) or directly from model inputs.

    Args:
        points: ``(K, P, ...)`` model inputs (already normalised), K >= 2 endpoints for each of P mixes.
        weights: ``(P, K)`` mixing weights, rows on the simplex, on the device of ``points``.
        batch_size: mixes per forward pass; a pass holds ``(K + 1) * batch_size`` examples.
        layers: layer ids to measure; ``None`` means every stage output ``0..n-1``.
        normalization: ``"shared"`` (default) or ``"example"``; see the module docstring.

    Calling ``probe(model)`` returns ``{layer_key: mean non-linearity}`` as Python floats (keys from
    :func:`layer_key`), with one device-to-host transfer per call. The model must be on ``points``' device.
    """

    def __init__(
        self,
        points: torch.Tensor,
        weights: torch.Tensor,
        *,
        batch_size: int = 256,
        layers: Iterable[LayerId] | None = None,
        normalization: Normalization = "shared",
    ) -> None:
        _check_points(points, weights)
        check_in("normalization", normalization, get_args(Normalization))
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.points = points
        self.weights = weights.expand(points.shape[1], -1) if weights.shape[0] == 1 else weights
        self.layers = None if layers is None else list(layers)
        self.normalization = normalization

    @property
    def num_mixes(self) -> int:
        """Number of mixes P in the sample."""
        return self.points.shape[1]

    def __call__(self, model: nn.Module) -> dict[str, float]:
        get_stages(model)
        device = model_device(model)
        if device is not None and device != self.points.device:
            raise ValueError(
                f"the model is on {device} but the probe's sample is on {self.points.device}; build the probe "
                f"with device={str(device)!r} or move the model with model.to({str(self.points.device)!r})."
            )
        totals: dict[LayerId, torch.Tensor] = {}
        with eval_mode(model):
            for start in range(0, self.num_mixes, self.batch_size):
                stop = start + self.batch_size
                d = _distances(model, self.points[:, start:stop], self.weights[start:stop], self.layers,
                               self.normalization)
                for layer, values in d.items():
                    totals[layer] = totals[layer] + values.sum() if layer in totals else values.sum()
        layer_ids = list(totals)
        means = (torch.stack([totals[layer] for layer in layer_ids]) / self.num_mixes).tolist()
        return {layer_key(model, layer): value for layer, value in zip(layer_ids, means, strict=True)}


def _sample_mixes(n: int, num_pairs: int, k: int, alpha: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices (P, K), weights (P, K))`` on the CPU: K distinct examples per mix, Dirichlet(alpha) weights.

    Drawn on the CPU from ``seed`` alone, so the sample is the same on every device.
    """
    seed = check_int("seed", seed)
    num_pairs = check_positive_int("num_pairs", num_pairs)
    k = check_k(k)
    if n < k:
        raise ValueError(f"need at least k={k} images to draw mixes of {k} distinct images, got {n}.")
    generator = torch.Generator().manual_seed(int(seed))
    # Endpoints are distinct: mixing an image with itself is trivially linear and would bias the mean down.
    chunk = max(1, _SAMPLING_CELLS // n)
    ones = torch.ones(min(chunk, num_pairs), n)
    indices = torch.cat([
        torch.multinomial(ones[: min(chunk, num_pairs - start)], k, replacement=False, generator=generator)
        for start in range(0, num_pairs, chunk)
    ])
    weights = sample_mix_weights(k, alpha, num_pairs, generator=generator, device="cpu")
    return indices, weights


def measure_linearity(
    model: nn.Module,
    images: torch.Tensor,
    *,
    num_pairs: int,
    seed: int,
    k: int = 2,
    alpha: float = 1.0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    layers: Iterable[LayerId] | None = None,
    normalization: Normalization = "shared",
) -> dict[str, float]:
    """Mean per-layer non-linearity of ``model`` over random K-point mixes of ``images``.

    Args:
        model: a model following the staged-model protocol, on ``device`` (eval mode is used and the mode
            restored afterwards).
        images: ``(N, ...)`` model inputs (already normalised), N >= k.
        num_pairs: number of mixes P to draw (pairs for ``k = 2``).
        seed: seeds the draw of endpoints and weights; the same seed gives the same mixes on any device.
        k: points per mix, >= 2 (2 = the paper's pairs).
        alpha: Dirichlet concentration of the weights (1.0 with k=2: ``lam`` uniform on [0, 1]).
        batch_size: mixes per forward pass.
        device: where to compute; ``None`` means the model's device.
        layers: layer ids; ``None`` means every stage output ``0..n-1``.
        normalization: ``"shared"`` (default) or ``"example"``; see the module docstring.

    Returns:
        ``{layer_key: mean over the P mixes}`` as floats, keyed as in :func:`layer_key` (e.g. ``"0_conv1"``).
        Multiply by ``num_pairs`` for the paper's sum.

    Note:
        The K endpoints of a mix are distinct images; the same image may appear in several mixes.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(
            "images must be a floating-point tensor of model inputs (N, ...), already normalised; got "
            f"{type(images).__name__ if not isinstance(images, torch.Tensor) else images.dtype}. For uint8 "
            "images use linearity_probe(ImageArrays, DataSpec, ...)."
        )
    indices, weights = _sample_mixes(images.shape[0], num_pairs, k, alpha, seed)
    device = torch.device(device) if device is not None else model_device(model, images.device)
    points = images[indices.t().to(images.device)].to(device)
    probe = LinearityProbe(points, weights.to(device), batch_size=batch_size, layers=layers,
                           normalization=normalization)
    return probe(model)


def linearity_probe(
    held_out: ImageArrays,
    spec: DataSpec,
    *,
    num_pairs: int,
    seed: int,
    device: torch.device | str = "cpu",
    k: int = 2,
    alpha: float = 1.0,
    batch_size: int = 256,
    layers: Iterable[LayerId] | None = None,
    normalization: Normalization = "shared",
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LinearityProbe:
    """A :class:`LinearityProbe` on a fixed sample of held-out images, for measurements during training.

    The endpoints and weights are drawn once from ``seed`` (as in :func:`measure_linearity`), normalised with
    the dataset's mean and std on ``device``, and kept there; each call of the returned probe then costs
    ``ceil(num_pairs / batch_size)`` forward passes and one host transfer.

    Args:
        held_out: held-out images (validation or test set), uint8 ``(N, C, H, W)``, N >= k.
        spec: the dataset's constants (mean and std used for normalisation).
        num_pairs: number of mixes P in the fixed sample.
        seed: seeds the draw of endpoints and weights.
        device: where the sample lives; the probed model must be there too.
        k: points per mix, >= 2.
        alpha: Dirichlet concentration of the weights.
        batch_size: mixes per forward pass.
        layers: layer ids; ``None`` means every stage output ``0..n-1``.
        normalization: ``"shared"`` (default) or ``"example"``; see the module docstring.
        preprocess: applied to the normalised endpoints on ``device``, as the run's loaders do (e.g. its
            :class:`~ssl_mix.ZCA`); None for none.

    Returns:
        A callable ``probe(model) -> {layer_key: mean non-linearity}`` (keys as in :func:`layer_key`).
    """
    from ssl_mix.data.augment import normalize_input

    images = getattr(held_out, "images", None)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise TypeError(
            "held_out must be an ssl_mix.data.ImageArrays with uint8 images (N, C, H, W), got "
            f"{type(held_out).__name__}."
        )
    indices, weights = _sample_mixes(images.shape[0], num_pairs, k, alpha, seed)
    points = normalize_input(images[indices.t().to(images.device)].to(device), spec.mean, spec.std)
    if preprocess is not None:
        points = preprocess(points.flatten(0, 1)).view(points.shape)
    return LinearityProbe(points, weights.to(device), batch_size=batch_size, layers=layers,
                          normalization=normalization)
