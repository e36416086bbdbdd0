"""A whole image set held in memory: uint8 images (or float feature vectors), int64 targets (-1 for unlabeled),
class names.

:class:`ImageArrays` is the form the fast tensor-resident loader needs and what every loader of
:mod:`ssl_mix.data.datasets`, :mod:`ssl_mix.data.decode` and :mod:`ssl_mix.data.custom` returns;
:func:`channel_stats` gives the normalisation constants of such a set, also of one too large to hold at once (given
as chunks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageArrays", "concat_arrays", "channel_stats"]

@dataclass(eq=False)  # tensors have no single truth value; compare fields explicitly
class ImageArrays:
    """A whole image set held in memory.

    Args:
        images: uint8 ``(N, C, H, W)`` tensor, values 0..255; or float32 ``(N, F, 1, 1)``: ``N`` feature vectors of
            ``F`` numbers each (:func:`~ssl_mix.data.features.arrays_from_features`), held as ``F`` channels of a
            1x1 image so that every loader, split and evaluation path takes them unchanged.
        targets: int64 ``(N,)`` tensor of class indices in ``[0, len(classes))``, or -1 for unlabeled examples.
        classes: class names; index i names class i. May be empty for a purely unlabeled set.

    Note:
        An empty set (N = 0, e.g. a missing ``unlabeled/`` folder) has images of shape ``(0, 0, 0, 0)`` when its
        image size is unknown; :func:`concat_arrays` skips empty parts.
    """

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        images_ok = isinstance(self.images, torch.Tensor) and self.images.dim() == 4 and (
            self.images.dtype == torch.uint8
            or (self.images.dtype == torch.float32 and tuple(self.images.shape[2:]) == (1, 1)))
        if not images_ok:
            got = (f"{self.images.dtype} tensor of shape {tuple(self.images.shape)}"
                   if isinstance(self.images, torch.Tensor) else type(self.images).__name__)
            raise ValueError(f"ImageArrays.images must be a uint8 tensor of shape (N, C, H, W) or float32 feature "
                             f"vectors (N, F, 1, 1), got {got}; use arrays_from_tensors to convert other image layouts "
                             "and dtypes, arrays_from_features for feature matrices")
        if (not isinstance(self.targets, torch.Tensor) or self.targets.dtype != torch.int64
                or self.targets.shape != (self.images.shape[0],)):
            got = (f"{self.targets.dtype} tensor of shape {tuple(self.targets.shape)}"
                   if isinstance(self.targets, torch.Tensor) else type(self.targets).__name__)
            raise ValueError(f"ImageArrays.targets must be an int64 tensor of shape ({self.images.shape[0]},), "
                             f"got {got}")
        self.classes = [str(c) for c in self.classes]
        if len(self.targets) and (int(self.targets.min()) < -1 or int(self.targets.max()) >= len(self.classes)):
            raise ValueError(f"ImageArrays.targets must lie in [-1, {len(self.classes)}) for {len(self.classes)} "
                             f"classes, got [{int(self.targets.min())}, {int(self.targets.max())}]")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def is_features(self) -> bool:
        """Whether the set holds float feature vectors ``(N, F, 1, 1)`` rather than uint8 images."""
        return self.images.dtype == torch.float32

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> ImageArrays:
        """The examples at ``indices`` (in that order; repeats allowed), as a new :class:`ImageArrays`.

        Args:
            indices: integer positions in ``[0, len(self))``.
        """
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64) if not isinstance(indices, torch.Tensor)
                                else indices, dtype=torch.int64).reshape(-1)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise ValueError(f"subset indices must lie in [0, {len(self)}), got [{int(index.min())}, "
                             f"{int(index.max())}]; were they made for another dataset?")
        index = index.to(self.images.device)
        return ImageArrays(self.images[index], self.targets[index], list(self.classes))

    def to(self, device: torch.device | str) -> ImageArrays:
        """A copy with images and targets on ``device``."""
        return ImageArrays(self.images.to(device), self.targets.to(device), list(self.classes))


def concat_arrays(parts: Sequence[ImageArrays]) -> ImageArrays:
    """Concatenate image sets (e.g. an unlabeled pool and extra unlabeled images).

    Args:
        parts: image sets with the same ``(C, H, W)`` and the same classes; empty parts and parts without
            classes (purely unlabeled) are accepted alongside.

    Returns:
        One :class:`ImageArrays` with the parts in order.
    """
    parts = list(parts)
    if not parts or not all(isinstance(p, ImageArrays) for p in parts):
        raise ValueError("concat_arrays needs a non-empty list of ImageArrays")
    nonempty = [p for p in parts if len(p)] or parts[:1]
    shapes = {p.image_shape for p in nonempty}
    if len(shapes) > 1:
        raise ValueError(f"concat_arrays: parts have different image shapes (C, H, W) {sorted(shapes)}; load them "
                         "with the same image_size and channels")
    class_lists = [p.classes for p in parts if p.classes]
    if any(c != class_lists[0] for c in class_lists):
        raise ValueError("concat_arrays: parts have different class lists; give every part the same classes "
                         "(or none, for purely unlabeled parts)")
    classes = list(class_lists[0]) if class_lists else []
    targets = [p.targets if p.classes or not len(p) or int(p.targets.max()) < 0 else None for p in nonempty]
    if any(t is None for t in targets):
        raise ValueError("concat_arrays: a part without classes has labeled targets")
    return ImageArrays(torch.cat([p.images for p in nonempty]), torch.cat(targets), classes)  # type: ignore[arg-type]


def channel_stats(images: torch.Tensor | Iterable[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.

    Args:
        images: uint8 ``(N, C, H, W)``, or an iterable of such chunks (same C) for a set that does not fit in
            memory at once; the result is the same as for the chunks concatenated.

    Returns:
        ``(mean, std)``, one float per channel (population std from exact integer sums, in float64).
    """
    chunks = images.split(4096) if isinstance(images, torch.Tensor) else images
    total = total_sq = None
    count = 0
    for chunk in chunks:  # exact integer sums; int32 squares (<= 255^2) bound the temporaries
        if not isinstance(chunk, torch.Tensor) or chunk.dtype != torch.uint8 or chunk.dim() != 4:
            got = f"{chunk.dtype} {tuple(chunk.shape)}" if isinstance(chunk, torch.Tensor) else type(chunk).__name__
            raise ValueError(f"channel_stats needs uint8 (N, C, H, W) images, got {got}")
        if total is not None and chunk.shape[1] != total.shape[0]:
            raise ValueError(f"channel_stats: chunks have {total.shape[0]} and {chunk.shape[1]} channels")
        x = chunk.to(torch.int32)
        sums = x.sum(dim=(0, 2, 3), dtype=torch.int64), (x * x).sum(dim=(0, 2, 3), dtype=torch.int64)
        total, total_sq = sums if total is None else (total + sums[0], total_sq + sums[1])
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    if total is None or count == 0:
        raise ValueError("channel_stats needs non-empty uint8 (N, C, H, W) images, got none")
    mean = total.double() / count
    std = (total_sq.double() / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())
