"""Per-image transforms for the ``DataLoader`` path (torchvision ``transforms.v2``): the standard training
augmentation of a :class:`~ssl_mix.data.spec.DataSpec` and plain normalisation, and a dataset applying them to an
:class:`~ssl_mix.data.arrays.ImageArrays`. The tensor loader does the same in batches on the device."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ssl_mix.data.arrays import ImageArrays
from ssl_mix.data.spec import DataSpec

__all__ = ["train_transform", "eval_transform", "ArrayDataset", "arrays_dataset"]


_TORCHVISION_PADDING = {"reflect": "reflect", "constant": "constant", "replicate": "edge"}


def train_transform(spec: DataSpec, image_size: int | tuple[int, int]) -> Any:
    """The standard per-image training transform of a dataset, as torchvision ``transforms.v2``.

    Random crop back to ``image_size`` after ``spec.crop_padding`` pixels of padding, random horizontal flip
    if ``spec.flip``, scaling to [0, 1] and normalisation. The batched :func:`ssl_mix.data.random_crop_flip`
    draws from the same distribution.

    Args:
        spec: the dataset's constants.
        image_size: ``(H, W)`` of the images (an int means square).

    Returns:
        A callable mapping a PIL image or uint8 ``(C, H, W)`` tensor to a normalised float32 tensor.
    """
    from torchvision.transforms import v2

    size = [image_size, image_size] if isinstance(image_size, int) else list(image_size)
    steps: list[Any] = [v2.ToImage()]
    if spec.crop_padding:
        steps.append(v2.RandomCrop(size, padding=spec.crop_padding,
                                   padding_mode=_TORCHVISION_PADDING[spec.padding_mode]))
    if spec.flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std)),
              v2.ToPureTensor()]
    return v2.Compose(steps)


def eval_transform(spec: DataSpec) -> Any:
    """The plain per-image evaluation transform: scaling to [0, 1] and normalisation (no augmentation)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(spec.mean), list(spec.std)), v2.ToPureTensor()])


class ArrayDataset(Dataset):
    """A map-style dataset over an :class:`~ssl_mix.data.arrays.ImageArrays`, applying a per-image transform.

    Items are ``(transform(image), target)`` when ``labeled``, else ``transform(image)``; ``image`` is the
    uint8 ``(C, H, W)`` tensor. Use :func:`arrays_dataset` to build one with the standard transforms.
    """

    def __init__(self, arrays: ImageArrays, transform: Any = None, *, labeled: bool = True) -> None:
        if labeled and len(arrays) and int(arrays.targets.min()) < 0:
            raise ValueError(f"a labeled ArrayDataset needs every target >= 0, but {int((arrays.targets < 0).sum())} "
                             "examples are unlabeled (-1); pass labeled=False or select the labeled subset")
        self.arrays, self.transform, self.labeled = arrays, transform, labeled

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, index: int) -> Any:
        image = self.arrays.images[index]
        x = self.transform(image) if self.transform is not None else image
        return (x, int(self.arrays.targets[index])) if self.labeled else x


def arrays_dataset(arrays: ImageArrays, spec: DataSpec, *, augment: bool = True, labeled: bool = True
                   ) -> ArrayDataset:
    """A dataset over ``arrays`` with the standard per-image transform of ``spec``, for the DataLoader path.

    Args:
        arrays: the images.
        spec: the dataset's constants.
        augment: training augmentation (:func:`train_transform`) or just normalisation (:func:`eval_transform`).
        labeled: items are ``(x, y)`` (all targets must be >= 0) or ``x``.

    Returns:
        An :class:`ArrayDataset` yielding normalised float32 ``(C, H, W)`` tensors.
    """
    if len(arrays) and arrays.images.shape[1] != spec.channels:
        raise ValueError(f"images have {arrays.images.shape[1]} channels but spec {spec.name!r} has "
                         f"{spec.channels}")
    transform = train_transform(spec, tuple(arrays.images.shape[2:])) if augment else eval_transform(spec)
    return ArrayDataset(arrays, transform, labeled=labeled)
