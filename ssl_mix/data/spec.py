"""What training needs to know about a dataset: :class:`DataSpec` (class count, normalisation constants and the
standard augmentation), fixed for the built-in datasets and computed from the images for the user's own.

The standard augmentation of CIFAR is a random crop with 4-pixel reflect padding and a horizontal flip, as in Laine &
Aila 2017, Tarvainen & Valpola 2017 and ICT; SVHN takes the same crop without flip, as digits are not
mirror-symmetric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssl_mix.checks import check_bool, check_in, check_int, check_number, check_positive_int
from ssl_mix.data.arrays import ImageArrays, channel_stats
from ssl_mix.data.augment import PADDING_MODES, PaddingMode

__all__ = ["DataSpec", "spec_from_arrays", "spec_from_stats"]


@dataclass(frozen=True)
class DataSpec:
    """Per-dataset constants for training.

    Args:
        name: dataset name.
        num_classes: number of classes.
        mean: per-channel mean of the training images, in [0, 1] units (one entry per channel).
        std: per-channel standard deviation, same units, > 0.
        crop_padding: pixels of padding for the random crop back to the original size (0: no crop).
        flip: random horizontal flip with probability 1/2.
        padding_mode: ``"reflect"`` (mirror without repeating the edge), ``"constant"`` (zeros) or
            ``"replicate"`` (repeat the edge pixel).
        features: the data are float feature vectors ``(N, F, 1, 1)``, not uint8 images: ``mean`` and ``std`` are
            per-feature statistics in the features' own units (standardisation ``(x - mean) / std``, no 1/255
            scale), and the augmentation is ``noise`` and ``feature_dropout`` instead of crop and flip (see
            :func:`~ssl_mix.data.features.feature_spec`).
        noise: features only: std of the Gaussian noise added to each standardised feature of a training batch
            (0: none).
        feature_dropout: features only: probability in [0, 1) that a standardised training feature is set to 0
            (its mean), the rest scaled by ``1 / (1 - p)`` (0: none).
    """

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    flip: bool = True
    padding_mode: PaddingMode = "reflect"
    features: bool = False
    noise: float = 0.0
    feature_dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        check_positive_int("DataSpec.num_classes", self.num_classes)
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"DataSpec.mean and std need one entry per channel, got {len(self.mean)} and "
                             f"{len(self.std)}")
        if not all(s > 0 and np.isfinite(s) for s in self.std) or not all(np.isfinite(m) for m in self.mean):
            raise ValueError(f"DataSpec.std must be positive and finite and mean finite, got mean={self.mean}, "
                             f"std={self.std}")
        check_int("DataSpec.crop_padding", self.crop_padding, 0)
        check_bool("DataSpec.flip", self.flip)
        check_in("DataSpec.padding_mode", self.padding_mode, PADDING_MODES)
        check_bool("DataSpec.features", self.features)
        object.__setattr__(self, "noise", check_number("DataSpec.noise", self.noise, low=0))
        object.__setattr__(self, "feature_dropout", check_number("DataSpec.feature_dropout", self.feature_dropout,
                                                                 low=0, high=1, high_open=True))
        if self.features and (self.crop_padding or self.flip):
            raise ValueError("DataSpec of feature vectors (features=True) takes no crop or flip; set crop_padding=0 "
                             "and flip=False")
        if not self.features and (self.noise or self.feature_dropout):
            raise ValueError("DataSpec.noise and feature_dropout augment feature vectors (features=True), not images")

    @property
    def channels(self) -> int:
        """Number of image channels (length of ``mean``)."""
        return len(self.mean)


def spec_from_arrays(arrays: ImageArrays, name: str = "custom", *, crop_padding: int | None = None,
                     flip: bool = True, padding_mode: PaddingMode = "reflect") -> DataSpec:
    """A :class:`DataSpec` for custom data, with mean and std computed from ``arrays``.

    Args:
        arrays: the training images (labeled and unlabeled alike contribute to the statistics).
        name: the name to record.
        crop_padding: default ``round(H / 8)`` (4 for 32x32 images, the CIFAR recipe).
        flip: random horizontal flip (turn off for digits, text, or anything with handedness).
        padding_mode: see :class:`DataSpec`.

    Returns:
        The spec; a channel with zero variance gets std 1 so that normalisation stays finite.
    """
    mean, std = channel_stats(arrays.images)
    return spec_from_stats(name, arrays.num_classes, mean, std, arrays.images.shape[2], crop_padding=crop_padding,
                           flip=flip, padding_mode=padding_mode)


def spec_from_stats(name: str, num_classes: int, mean: Sequence[float], std: Sequence[float], height: int, *,
                    crop_padding: int | None = None, flip: bool = True, padding_mode: PaddingMode = "reflect"
                    ) -> DataSpec:
    """A :class:`DataSpec` for custom data from its channel statistics (e.g. of a streamed pool, see
    :func:`~ssl_mix.data.decode.scan_files`); :func:`spec_from_arrays` computes them from images in memory.

    Args:
        name: the name to record.
        num_classes: the class count (at least 1 is recorded).
        mean, std: per-channel statistics in [0, 1] units; a zero std becomes 1 so that normalisation stays finite.
        height: the image height H; ``crop_padding`` defaults to ``round(H / 8)``.
        crop_padding, flip, padding_mode: see :func:`spec_from_arrays`.
    """
    std = tuple(s if s > 0 else 1.0 for s in std)
    if crop_padding is None:
        crop_padding = max(1, round(height / 8))
    return DataSpec(name, max(1, num_classes), tuple(mean), std, crop_padding=crop_padding, flip=flip,
                    padding_mode=padding_mode)
