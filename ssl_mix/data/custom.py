"""The user's own data as an :class:`~ssl_mix.data.arrays.ImageArrays`: in-memory tensors or NumPy arrays in any
common layout and value range, or any map-style ``torch.utils.data.Dataset`` (read once)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_mix.data.arrays import ImageArrays
from ssl_mix.data.images import prepare_image

__all__ = ["arrays_from_tensors", "arrays_from_dataset"]


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())  # torch refuses read-only memory


def _to_uint8(images: torch.Tensor, what: str) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images
    if images.dtype == torch.bool or images.is_complex():
        raise ValueError(f"{what} must be uint8 (0..255) or float (0..1), got {images.dtype}")
    if images.is_floating_point():
        if images.numel() and (not bool(torch.isfinite(images).all()) or float(images.min()) < 0
                               or float(images.max()) > 1):
            raise ValueError(f"float {what} must lie in [0, 1], got values in [{float(images.min()):.4g}, "
                             f"{float(images.max()):.4g}]; divide by 255 first if they are 0..255")
        return (images.to(torch.float32) * 255).round_().to(torch.uint8)
    if images.numel() and (int(images.min()) < 0 or int(images.max()) > 255):
        raise ValueError(f"integer {what} must lie in [0, 255], got [{int(images.min())}, {int(images.max())}]")
    return images.to(torch.uint8)


def arrays_from_tensors(images: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray | Sequence[int] |
                        None = None, classes: Sequence[str] | None = None, *, channels_last: bool | None = None
                        ) -> ImageArrays:
    """An :class:`~ssl_mix.data.arrays.ImageArrays` from in-memory images (tensor or NumPy array).

    Args:
        images: ``(N, C, H, W)`` or ``(N, H, W, C)`` with C in 1..4, or ``(N, H, W)`` for grayscale; uint8
            0..255, other integers 0..255, or floats in [0, 1] (rounded to uint8).
        targets: ``(N,)`` class indices, -1 for unlabeled; None means all unlabeled.
        classes: class names; default ``["0", ..., str(max(targets))]`` (the class count is inferred).
        channels_last: the layout of 4-D input. None guesses: the channel axis is the one of dims 1 and 3 with
            size <= 4; when both are (e.g. ``(N, 3, 4, 4)``) it assumes channels first (``(N, C, H, W)``).

    Returns:
        The images as uint8 ``(N, C, H, W)`` (contiguous, on the input's device) with int64 targets.
    """
    if isinstance(images, np.ndarray):
        images = _from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor or numpy.ndarray, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    elif images.dim() == 4:
        first, last = images.shape[1] <= 4, images.shape[3] <= 4
        if channels_last is None:
            if not first and not last:
                raise ValueError(f"images of shape {tuple(images.shape)} have no channel axis of size 1..4 in "
                                 "dim 1 (N, C, H, W) or dim 3 (N, H, W, C)")
            channels_last = last and not first
        if channels_last:
            images = images.permute(0, 3, 1, 2)
        if not 1 <= images.shape[1] <= 4:
            raise ValueError(f"images must have 1 to 4 channels, got shape {tuple(images.shape)} "
                             f"(channels_last={channels_last})")
    else:
        raise ValueError(f"images must be (N, C, H, W), (N, H, W, C) or (N, H, W), got shape {tuple(images.shape)}")
    images = _to_uint8(images, "images").contiguous()
    n = images.shape[0]
    if targets is None:
        target_tensor = torch.full((n,), -1, dtype=torch.int64)
    else:
        target_array = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
        if target_array.is_floating_point() or target_array.dtype == torch.bool or target_array.dim() != 1:
            raise ValueError(f"targets must be a 1-D sequence of integer class indices, got "
                             f"{target_array.dtype} of shape {tuple(target_array.shape)}")
        if target_array.shape[0] != n:
            raise ValueError(f"targets has {target_array.shape[0]} entries but images has {n}")
        target_tensor = target_array.to(torch.int64).cpu()
        if n and int(target_tensor.min()) < -1:
            raise ValueError(f"targets must be class indices >= 0, or -1 for unlabeled, got {int(target_tensor.min())}")
    if classes is None:
        num = int(target_tensor.max()) + 1 if n else 0
        classes = [str(i) for i in range(num)]
    elif n and int(target_tensor.max()) >= len(classes):
        raise ValueError(f"targets go up to {int(target_tensor.max())} but only {len(classes)} classes were named")
    return ImageArrays(images, target_tensor.to(images.device), list(classes))


def _item_to_uint8(x: Any, index: int) -> torch.Tensor:
    """One dataset item (PIL image, tensor or array) as uint8 (C, H, W)."""
    if isinstance(x, torch.Tensor):
        image = x
    elif isinstance(x, np.ndarray):
        image = _from_numpy(x)
        if image.dim() == 3 and image.shape[2] <= 4 and image.shape[0] > 4:  # HWC, as PIL and OpenCV give
            image = image.permute(2, 0, 1)
    elif hasattr(x, "mode") and hasattr(x, "size"):  # PIL image: decoded as image files are
        image = prepare_image(x, image_size=None)
    else:
        raise TypeError(f"dataset item {index} is a {type(x).__name__}; expected a PIL image, tensor or array")
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or not 1 <= image.shape[0] <= 4:
        raise ValueError(f"dataset item {index} has shape {tuple(image.shape)}; expected (C, H, W) with C in 1..4")
    return _to_uint8(image, f"dataset item {index}")


def arrays_from_dataset(dataset: Dataset, *, labeled: bool = True, classes: Sequence[str] | None = None
                        ) -> ImageArrays:
    """Materialise a map-style dataset into an :class:`~ssl_mix.data.arrays.ImageArrays` (for the fast
    tensor-resident loader).

    Args:
        dataset: a ``torch.utils.data.Dataset`` with ``__len__``; items ``(x, y)`` when ``labeled``, ``x`` or
            ``(x, anything)`` otherwise. ``x`` is a PIL image, a ``(C, H, W)`` tensor or an ``(H, W, C)`` array,
            uint8 or float in [0, 1]; ``y`` an int class index. Give the dataset no random transform: it is
            read once.
        labeled: whether the items carry targets.
        classes: class names (default ``dataset.classes`` if it has them, else inferred from the targets).

    Returns:
        The images (all the same size and channel count) and targets (-1 when not ``labeled``).
    """
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"arrays_from_dataset needs a map-style dataset with __len__, got "
                        f"{type(dataset).__name__}") from None
    images, targets = [], []
    for i in range(n):
        item = dataset[i]
        if labeled:
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise ValueError(f"labeled dataset item {i} must be a pair (x, y), got {type(item).__name__}")
            x, y = item[0], item[1]
            targets.append(int(y))
        else:
            x = item[0] if isinstance(item, (tuple, list)) else item
        images.append(_item_to_uint8(x, i))
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise ValueError(f"dataset items have different shapes {sorted(shapes)[:3]}; resize them to one size "
                         "(e.g. with a torchvision Resize transform in the dataset)")
    stacked = torch.stack(images) if images else torch.zeros((0, 0, 0, 0), dtype=torch.uint8)
    if classes is None and getattr(dataset, "classes", None) is not None:
        classes = list(dataset.classes)  # type: ignore[attr-defined]
    return arrays_from_tensors(stacked, targets if labeled else None, classes)

