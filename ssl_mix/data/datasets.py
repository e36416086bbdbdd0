"""Image datasets held in memory as uint8 tensors, with their per-dataset constants.

Built in: CIFAR-10 and CIFAR-100 (Krizhevsky 2009) and SVHN (Netzer et al. 2011) through
``torchvision.datasets``; scikit-learn's bundled handwritten digits (no download, used by the demo and tests);
and the user's own data as an image folder, tensors, NumPy arrays or any ``torch.utils.data.Dataset``.

Everything becomes an :class:`~ssl_mix.data.arrays.ImageArrays` (uint8 ``(N, C, H, W)`` images, int64 targets with
-1 for unlabeled examples, class names), the form the fast tensor-resident loader needs. :class:`DataSpec` holds what
training needs to know about a dataset: class count, normalisation constants and the standard augmentation
(CIFAR: random crop with 4-pixel reflect padding and horizontal flip, as in Laine & Aila 2017, Tarvainen &
Valpola 2017 and ICT; SVHN: the same crop without flip, as digits are not mirror-symmetric).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_mix.checks import check_bool, check_in, check_int, check_positive_int
from ssl_mix.data.arrays import ImageArrays, channel_stats, concat_arrays  # noqa: F401 (concat_arrays: re-exported)
from ssl_mix.data.augment import PADDING_MODES, PaddingMode
from ssl_mix.data.folder import IMAGE_EXTENSIONS, decode_files, folder_files  # noqa: F401 (re-exported)
from ssl_mix.data.images import ResizeMode, prepare_image

__all__ = [
    "DataSpec",
    "DatasetName",
    "DATASET_NAMES",
    "check_folder_only",
    "load_arrays",
    "load_targets",
    "data_spec",
    "spec_from_arrays",
    "spec_from_stats",
    "arrays_from_tensors",
    "arrays_from_dataset",
    "arrays_dataset",
    "ArrayDataset",
    "train_transform",
    "eval_transform",
]

DatasetName = Literal["cifar10", "cifar100", "svhn", "folder", "digits"]
"""The built-in datasets: CIFAR-10/100 and SVHN through torchvision, an image folder, scikit-learn's digits."""

DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
"""The values of :data:`DatasetName`, in order (for argument choices and messages)."""


def check_folder_only(dataset: str, settings: Mapping[str, object], *, advice: str) -> None:
    """Refuse settings that apply to an image folder (dataset ``"folder"``) only when another dataset is named.

    Args:
        dataset: the dataset name.
        settings: ``{name, as the caller's user spells it: value}``; None means not given.
        advice: what to do instead, ending the message (e.g. ``"drop --labels or use --dataset folder"``).

    Raises:
        ValueError: naming the first setting given, the dataset, and the advice.
    """
    given = [name for name, value in settings.items() if value is not None]
    if given and dataset != "folder":
        raise ValueError(f"{given[0]} applies to dataset 'folder' (your own images) only, not {dataset!r}; "
                         f"{advice}")

SplitName = Literal["train", "test", "extra", "unlabeled"]



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
    """

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    flip: bool = True
    padding_mode: PaddingMode = "reflect"

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

    @property
    def channels(self) -> int:
        """Number of image channels (length of ``mean``)."""
        return len(self.mean)


# Per-channel mean and std of the training images, in [0, 1] units (population statistics over all pixels of
# the standard training split, as torchvision loads it).
_BUILTIN_SPECS = {
    "cifar10": DataSpec("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DataSpec("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": DataSpec("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), flip=False),
}


def data_spec(name: DatasetName | str, train: ImageArrays | None = None, *, root: str | Path | None = None
              ) -> DataSpec:
    """The :class:`DataSpec` of a dataset.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"svhn"``, ``"digits"`` (fixed constants) or ``"folder"``.
        train: for ``"folder"``: its training images, from which mean and std are computed (see
            :func:`spec_from_arrays`). Ignored for the built-in datasets.
        root: for ``"folder"`` without ``train``: the folder, whose ``train/`` images are loaded.

    Returns:
        The spec. ``"digits"``: 2-pixel zero-padded crop, no flip (digits are not mirror-symmetric), mean and
        std of its training partition. ``"folder"``: the CIFAR recipe scaled to the image size (padding
        ``round(H / 8)``, reflect, flip); use ``dataclasses.replace`` to change it.
    """
    if name in _BUILTIN_SPECS:
        return _BUILTIN_SPECS[name]
    if name == "digits":
        digits = load_arrays("digits", None, "train")
        return spec_from_arrays(digits, "digits", crop_padding=2, flip=False, padding_mode="constant")
    if name == "folder":
        if train is None:
            if root is None:
                raise ValueError("data_spec('folder') needs the training images (train=) or the folder (root=) to "
                                 "compute the normalisation constants")
            train = load_arrays("folder", root, "train")
        return spec_from_arrays(train, "folder")
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")


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
    :func:`~ssl_mix.data.folder.scan_files`); :func:`spec_from_arrays` computes them from images in memory.

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


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------


def load_arrays(name: DatasetName, root: str | Path | None, split: SplitName, *, download: bool = False,
                image_size: int | tuple[int, int] | None = None, channels: Literal[1, 3] | None = None,
                num_threads: int | None = None, classes: Sequence[str] | None = None, resize: ResizeMode = "crop",
                labels: str | Path | None = None, cache: bool | str | Path = True, skip_bad_images: bool = False
                ) -> ImageArrays:
    """Load a whole dataset split into memory.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"svhn"`` (through torchvision), ``"folder"`` (an image folder,
            see below) or ``"digits"`` (scikit-learn's bundled digits, no files needed).
        root: the data directory (unused for ``"digits"``). CIFAR/SVHN: where torchvision keeps its files.
        split: ``"train"`` or ``"test"``; ``"extra"`` for SVHN's 531k extra images; ``"unlabeled"`` for a
            folder's ``unlabeled/`` directory.
        download: let torchvision download missing CIFAR/SVHN files into ``root`` (needs internet).
        image_size: folder only: resize every image to ``(H, W)`` (an int means square), with antialiasing.
        channels: folder only: force 1 (grayscale) or 3 (RGB) channels.
        num_threads: folder only: decoding threads (default ``min(8, os.cpu_count())``).
        classes: folder only: the class names, in order, instead of the sub-directories of ``root/train``
            (a trained run's classes, to read a test set without its training folder).
        resize: folder only: ``"crop"`` (cover ``image_size``, cut the centre) or ``"stretch"``; see
            :mod:`ssl_mix.data.images`.
        labels: folder only: a CSV label file instead of class folders (see :mod:`ssl_mix.data.folder`).
        cache: folder only: the decoded-image cache (True: the default directory, a path, or False: none).
        skip_bad_images: folder only: leave unreadable files out (named on stderr) instead of raising.

    Returns:
        The images and targets; unlabeled examples have target -1.

    Raises:
        FileNotFoundError: files are missing (the message lists the files expected, where, and how to get
            them), or a download failed.
        ValueError: unknown name or split, or a folder whose images cannot be combined;
            :class:`~ssl_mix.data.images.BadImageError` for an unreadable image file.

    Note:
        Image folder layout: ``root/train/<class>/*``, ``root/test/<class>/*`` and optionally
        ``root/unlabeled/**`` (images in any layout, all unlabeled); or a label file (see
        :func:`~ssl_mix.data.folder.folder_files`). Class names are the sorted sub-directory names of
        ``root/train`` (or the sorted labels of the file); files are read in sorted path order, so indices are the
        same on every machine. All images become RGB if any image in the split is in colour, else grayscale
        (``channels`` forces one; use it so that all splits agree). All images must share one size unless
        ``image_size`` is given. Decoded images are cached on disk (:mod:`ssl_mix.data.cache`); a first load
        decodes with PIL in a thread pool. A missing ``unlabeled/`` gives an empty set.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    check_folder_only(name, {"image_size": image_size, "channels": channels, "classes": classes, "labels": labels},
                      advice="leave it None, or load name='folder'")
    if name == "digits":
        return _load_digits(split)
    if name == "folder":
        files = folder_files(_require_root(name, root), split, labels=labels, classes=classes)  # type: ignore[arg-type]
        decoded = decode_files(files, image_size=image_size, resize=resize, channels=channels,
                               skip_bad_images=skip_bad_images, cache=cache, num_threads=num_threads)
        if decoded.skipped:
            print(f"skipped {len(decoded.skipped)} unreadable image(s): "
                  + "; ".join(f"{err.path} ({err.reason})" for err in decoded.skipped), file=sys.stderr)
        return decoded.arrays
    return _load_torchvision(name, _require_root(name, root), split, download)


def load_targets(name: DatasetName, root: str | Path | None, split: SplitName = "train", *,
                 download: bool = False, labels: str | Path | None = None) -> tuple[torch.Tensor, list[str]]:
    """The targets and class names of a dataset split, without decoding a folder's images.

    Args:
        name, root, split, download, labels: as in :func:`load_arrays`.

    Returns:
        ``(targets, classes)``: int64 ``(N,)`` targets (-1 for unlabeled images) and the class names, in the
        order :func:`load_arrays` would load the images.
    """
    if name == "folder":
        files = folder_files(_require_root(name, root), split, labels=labels)  # type: ignore[arg-type]
        return files.targets, files.classes
    check_folder_only(name, {"labels": labels}, advice="leave it None, or load name='folder'")
    arrays = load_arrays(name, root, split, download=download)
    return arrays.targets, arrays.classes


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None or str(root) == "":
        what = ("the image folder (with train/<class>/ inside)" if name == "folder"
                else f"the directory that holds (or will receive, with download) the {name} files")
        raise ValueError(f"root (--data-root) is required for dataset {name!r}: {what}")
    return Path(root).expanduser()


def _load_digits(split: str) -> ImageArrays:
    from sklearn.datasets import load_digits

    if split not in ("train", "test"):
        raise ValueError(f"dataset 'digits' has splits 'train' and 'test', not {split!r}")
    digits = load_digits()
    targets = np.asarray(digits.target, dtype=np.int64)
    # Values 0..16 rescaled to 0..255, then each pixel doubled to 16x16 (nearest): small CNNs with two
    # downsamplings still see a 4x4 map.
    images = (np.asarray(digits.images, dtype=np.int64) * 255 + 8) // 16
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2).astype(np.uint8)[:, None]
    # Fixed stratified partition: in each class, the 20% with the smallest PCG64(0) keys are the test set.
    keys = np.random.Generator(np.random.PCG64(0)).random(len(targets))
    is_test = np.zeros(len(targets), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(targets == c)
        is_test[members[np.argsort(keys[members], kind="stable")[: round(0.2 * len(members))]]] = True
    keep = is_test if split == "test" else ~is_test
    return ImageArrays(torch.from_numpy(np.ascontiguousarray(images[keep])), torch.from_numpy(targets[keep]),
                       [str(i) for i in range(10)])


# --- torchvision datasets -------------------------------------------------------------------------------


def _torchvision_files(name: str, split: str) -> tuple[Any, dict[str, Any], list[str], str, str]:
    """(dataset class, constructor kwargs, expected files relative to root, archive name, archive url)."""
    from torchvision import datasets

    if name in ("cifar10", "cifar100"):
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        if split not in ("train", "test"):
            raise ValueError(f"dataset {name!r} has splits 'train' and 'test', not {split!r}; draw the unlabeled "
                             "pool from 'train' with make_split")
        listed = cls.train_list if split == "train" else cls.test_list
        files = [f"{cls.base_folder}/{f}" for f, _ in listed] + [f"{cls.base_folder}/{cls.meta['filename']}"]
        return cls, {"train": split == "train"}, files, cls.filename, cls.url
    if split not in ("train", "test", "extra"):
        raise ValueError(f"dataset 'svhn' has splits 'train', 'test' and 'extra', not {split!r}")
    url, filename, _ = datasets.SVHN.split_list[split]
    return datasets.SVHN, {"split": split}, [filename], filename, url


def _load_torchvision(name: str, root: Path, split: str, download: bool) -> ImageArrays:
    cls, kwargs, files, archive, url = _torchvision_files(name, split)
    folder = os.path.dirname(files[0])
    names = [os.path.basename(f) for f in files]
    expected = f"{folder}/{{{', '.join(names)}}}" if folder else ", ".join(names)
    if archive.endswith(".tar.gz"):
        offline = (f"fetch {url} on a machine that has internet access, copy it into {root} and rerun with "
                   "--download (download=True), which then only extracts it (or unpack it there yourself)")
    else:
        offline = f"fetch {url} on a machine that has internet access and copy it into {root}"
    if download:
        try:
            root.mkdir(parents=True, exist_ok=True)
            ds = cls(str(root), download=True, **kwargs)
        except (OSError, RuntimeError) as err:  # urllib's URLError is an OSError
            raise FileNotFoundError(f"could not download {name} {split!r} into {root} ({type(err).__name__}: "
                                    f"{err}). To provide {expected} without a download here: {offline}.") from None
    else:
        missing = [n for f, n in zip(files, names, strict=True) if not (root / f).is_file()]
        if missing:
            which = "all missing" if len(missing) == len(files) else f"missing: {', '.join(missing)}"
            raise FileNotFoundError(f"{name} {split!r} not found under {root}: expected {expected} there ({which}). "
                                    "To provide them: rerun with --download (download=True) on a machine with "
                                    f"internet access; or {offline}.")
        try:
            ds = cls(str(root), download=False, **kwargs)
        except RuntimeError:
            raise ValueError(f"{name} {split!r} files under {root} are present but corrupted (checksum mismatch): "
                             f"delete {expected} there and provide them again") from None
    if name == "svhn":
        images = torch.from_numpy(np.ascontiguousarray(ds.data))  # already (N, 3, 32, 32)
        targets = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))
        classes = [str(i) for i in range(10)]
    else:
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        targets = torch.as_tensor(ds.targets, dtype=torch.int64)
        classes = list(ds.classes)
    return ImageArrays(images, targets, classes)


# ---------------------------------------------------------------------------------------------------------
# Custom data: tensors, arrays and datasets
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Per-image transforms (the DataLoader path)
# ---------------------------------------------------------------------------------------------------------


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
