"""Batched image augmentation on the images' own device: random crop with padding, horizontal flip, normalise.

The standard CIFAR/SVHN training augmentation (pad by 4 pixels, crop back to 32x32 at a uniformly random
offset, mirror with probability 1/2; Laine & Aila 2017, Tarvainen & Valpola 2017, Verma et al. 2019) applied to
a whole batch at once: one gather with per-sample index grids instead of a Python loop over images, so the
tensor-resident loader keeps augmentation on the training device. The padding is never materialised: each
output pixel reads the source pixel its padded position maps to.

Feature vectors (``(B, F, 1, 1)`` float, :mod:`ssl_mix.data.features`) have their own counterparts:
:func:`standardize` (per feature, in the features' own units) and :func:`noise_dropout` (Gaussian noise and feature
dropout on the standardised features, the usual input perturbations of tabular consistency training).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

from ssl_mix.checks import check_in, check_int

__all__ = ["crop_flip", "random_crop_flip", "normalize", "standardize", "normalize_input", "noise_dropout",
           "PaddingMode", "PADDING_MODES"]


PaddingMode = Literal["reflect", "constant", "replicate"]
"""How a random crop fills the border: mirror without repeating the edge, zeros, or repeat the edge pixel."""

PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)


def _source_index(position: torch.Tensor, size: int, padding_mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Map coordinates in the unpadded frame (may be < 0 or >= size) to source pixels; constant mode also
    returns the mask of in-range positions."""
    if padding_mode == "reflect":  # mirror about the edge pixel, as torch.nn.functional.pad(mode="reflect")
        position = position.abs()
        return torch.where(position >= size, 2 * (size - 1) - position, position), None
    if padding_mode == "replicate":
        return position.clamp(0, size - 1), None
    inside = (position >= 0) & (position < size)
    return position.clamp(0, size - 1), inside


def crop_flip(images: torch.Tensor, offsets_y: torch.Tensor, offsets_x: torch.Tensor, flips: torch.Tensor | None,
              padding: int, padding_mode: PaddingMode = "reflect") -> torch.Tensor:
    """Pad each image by ``padding`` pixels, crop it back to its size at the given offsets, optionally mirror it.

    Deterministic given its arguments (:func:`random_crop_flip` draws them). Equals, image by image,
    ``F.pad(x, [padding] * 4, mode)[..., oy:oy + H, ox:ox + W]`` followed by ``flip(-1)`` where ``flips``.

    Args:
        images: ``(B, C, H, W)`` of any dtype.
        offsets_y, offsets_x: ``(B,)`` integer crop offsets in the padded frame, in ``[0, 2 * padding]``
            (``padding`` means no shift).
        flips: ``(B,)`` bool, True to mirror horizontally (after cropping); None for no flips.
        padding: pixels of padding on each side, >= 0; ``"reflect"`` needs ``padding < min(H, W)``.
        padding_mode: ``"reflect"`` (mirror without repeating the edge pixel), ``"constant"`` (zeros) or
            ``"replicate"`` (repeat the edge pixel).

    Returns:
        ``(B, C, H, W)`` tensor of the input's dtype and device.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (B, C, H, W), got shape {tuple(images.shape)}")
    check_in("padding_mode", padding_mode, PADDING_MODES)
    b, c, h, w = images.shape
    check_int("padding", padding, 0)
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding must be smaller than the image ({h}x{w}), got padding={padding}; use "
                         "padding_mode='constant' or 'replicate', or less padding")
    device = images.device
    rows_out = torch.arange(h, device=device)
    cols_out = torch.arange(w, device=device)
    if flips is not None:
        cols_out = torch.where(flips.to(device).view(b, 1), (w - 1) - cols_out, cols_out)  # (B, W)
    rows = offsets_y.to(device).view(b, 1) - padding + rows_out  # (B, H) in the unpadded frame
    cols = offsets_x.to(device).view(b, 1) - padding + cols_out  # (B, W)
    rows, row_inside = _source_index(rows, h, padding_mode)
    cols, col_inside = _source_index(cols, w, padding_mode)
    index = (rows.view(b, h, 1) * w + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    out = images.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)
    if row_inside is not None and col_inside is not None:
        inside = (row_inside.view(b, 1, h, 1) & col_inside.view(b, 1, 1, w))
        out = out.masked_fill(~inside, 0)
    return out


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, *, generator: torch.Generator | None,
                     padding_mode: PaddingMode = "reflect") -> torch.Tensor:
    """Random crop after padding, and random horizontal flip, for a whole batch.

    Offsets are uniform on ``{0, ..., 2 * padding}`` in each axis and each image is mirrored with probability
    1/2 (if ``flip``), independently per image: the distribution of torchvision's
    ``RandomCrop(size, padding) + RandomHorizontalFlip()``.

    Args:
        images: ``(B, C, H, W)`` of any dtype (uint8 is cheapest), on any device.
        padding: pixels of padding on each side (0: no crop).
        flip: whether to mirror at random.
        generator: the source of randomness; draws are made on the generator's device and moved to the
            images' device (a CPU generator gives the same draws on any device, for a tiny copy per call).
            None uses the global generator of the images' device.
        padding_mode: see :func:`crop_flip`.

    Returns:
        ``(B, C, H, W)``, same dtype and device as ``images``; ``images`` itself when there is nothing to do.
    """
    if padding == 0 and not flip:
        return images
    b = images.shape[0]
    device = generator.device if generator is not None else images.device
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=device)
    flips = torch.randint(0, 2, (b,), generator=generator, device=device).bool() if flip else None
    if device != images.device:
        offsets = offsets.to(images.device, non_blocking=True)
        flips = flips.to(images.device, non_blocking=True) if flips is not None else None
    return crop_flip(images, offsets[0], offsets[1], flips, padding, padding_mode)


def normalize(images_uint8: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Scale uint8 images to [0, 1] and normalise per channel: ``(x / 255 - mean) / std``.

    Args:
        images_uint8: ``(..., C, H, W)`` uint8 (other dtypes are taken as 0..255 values too).
        mean, std: ``C`` values in [0, 1] units. Pass tensors already on the images' device in per-step code:
            Python sequences are copied to the device at every call.
        dtype: output dtype (float32 by default); the arithmetic runs in float32 (float64 if requested).

    Returns:
        Tensor of ``dtype`` with the input's shape and device.
    """
    if images_uint8.dim() < 3:
        raise ValueError(f"images must have shape (..., C, H, W), got {tuple(images_uint8.shape)}")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    mean_t = torch.as_tensor(mean, dtype=work, device=images_uint8.device)
    std_t = torch.as_tensor(std, dtype=work, device=images_uint8.device)
    c = images_uint8.shape[-3]
    if mean_t.shape != (c,) or std_t.shape != (c,):
        raise ValueError(f"mean and std need one value per channel ({c}), got shapes {tuple(mean_t.shape)} and "
                         f"{tuple(std_t.shape)}")
    scale = (1.0 / (255.0 * std_t)).view(c, 1, 1)
    shift = (-mean_t / std_t).view(c, 1, 1)
    return torch.addcmul(shift, images_uint8.to(work), scale).to(dtype)


def standardize(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Standardise float feature vectors per feature: ``(x - mean) / std``, in float32.

    Args:
        features: ``(..., F, 1, 1)`` float features in their own units (the layout of a feature
            :class:`~ssl_mix.data.arrays.ImageArrays`).
        mean, std: ``(F,)`` tensors on the features' device (a :class:`~ssl_mix.data.spec.DataSpec`'s statistics).

    Returns:
        float32 tensor of the input's shape. The formula is :class:`~ssl_mix.InferenceModel`'s for float input, so
        training, evaluation and prediction standardise bit-identically.
    """
    if features.dim() < 3:
        raise ValueError(f"features must have shape (..., F, 1, 1), got {tuple(features.shape)}")
    return (features.float() - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)


def noise_dropout(features: torch.Tensor, noise: float, dropout: float, *, generator: torch.Generator | None
                  ) -> torch.Tensor:
    """Gaussian noise and feature dropout on a batch of standardised feature vectors.

    Args:
        features: ``(B, F, ...)`` float, standardised (so ``noise`` is in units of each feature's std).
        noise: std of the zero-mean Gaussian noise added to every feature, >= 0.
        dropout: probability in [0, 1) that a feature is set to 0 (its mean); kept features are scaled by
            ``1 / (1 - dropout)``, as ``torch.nn.Dropout`` does.
        generator: the source of randomness, on the features' device (None: its global generator). The noise is
            drawn first, then the dropout mask, so a batch's draws depend only on the generator's seed.

    Returns:
        A new tensor of the input's shape; ``features`` itself when both are 0.
    """
    if noise:
        features = features + noise * torch.randn(features.shape, generator=generator, device=features.device,
                                                  dtype=features.dtype)
    if dropout:
        keep = torch.rand(features.shape, generator=generator, device=features.device) >= dropout
        features = features * keep.to(features.dtype) / (1 - dropout)
    return features


def normalize_input(images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
                    ) -> torch.Tensor:
    """The model input of a batch of an :class:`~ssl_mix.data.arrays.ImageArrays`: :func:`normalize` for uint8
    images, :func:`standardize` for float32 feature vectors ``(B, F, 1, 1)``.

    Args:
        images: uint8 ``(B, C, H, W)`` images or float feature vectors ``(B, F, 1, 1)``.
        mean, std: a :class:`~ssl_mix.data.spec.DataSpec`'s ``mean`` and ``std``.

    Returns:
        float32, the input's shape and device.
    """
    if images.dtype == torch.uint8:
        return normalize(images, mean, std)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device)
    return standardize(images, mean_t, std_t)
