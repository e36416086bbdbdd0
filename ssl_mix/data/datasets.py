"""The built-in datasets, loaded into memory as uint8 tensors: CIFAR-10 and CIFAR-100 (Krizhevsky 2009) and SVHN
(Netzer et al. 2011) through ``torchvision.datasets``, scikit-learn's bundled handwritten digits (no download, used by
the demo and tests), an image folder by name (``"folder"``, see :mod:`ssl_mix.data.folder`), and a file of feature
vectors (``"features"``, see :mod:`ssl_mix.data.features`).

Everything becomes an :class:`~ssl_mix.data.arrays.ImageArrays` (uint8 ``(N, C, H, W)`` images, int64 targets with
-1 for unlabeled examples, class names), the form the fast tensor-resident loader needs; :func:`data_spec` gives each
dataset's :class:`~ssl_mix.data.spec.DataSpec`. Missing files are reported with what was looked for where and how to
provide them offline. The user's own tensors and datasets are converted by :mod:`ssl_mix.data.custom`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssl_mix.checks import check_folder_only
from ssl_mix.choices import DATASET_NAMES, DatasetName, Interpolation
from ssl_mix.data.arrays import ImageArrays
from ssl_mix.data.decode import decode_files
from ssl_mix.data.features import feature_spec, read_features
from ssl_mix.data.folder import folder_files
from ssl_mix.data.images import DEFAULT_INTERPOLATION, ResizeMode
from ssl_mix.data.spec import DataSpec, spec_from_arrays

__all__ = ["DatasetName", "DATASET_NAMES", "check_folder_only", "load_arrays", "load_targets", "data_spec"]



SplitName = Literal["train", "test", "extra", "unlabeled"]


# Per-channel mean and std of the training images, in [0, 1] units (population statistics over all pixels of
# the standard training split, as torchvision loads it).
_BUILTIN_SPECS = {
    "cifar10": DataSpec("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DataSpec("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": DataSpec("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), flip=False),
}


def data_spec(name: DatasetName | str, train: ImageArrays | None = None, *, root: str | Path | None = None
              ) -> DataSpec:
    """The :class:`~ssl_mix.data.spec.DataSpec` of a dataset.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"svhn"``, ``"digits"`` (fixed constants), ``"folder"`` or
            ``"features"``.
        train: for ``"folder"``: its training images, from which mean and std are computed (see
            :func:`~ssl_mix.data.spec.spec_from_arrays`); for ``"features"``: its training rows (per-feature
            standardisation, :func:`~ssl_mix.data.features.feature_spec`). Ignored for the built-in datasets.
        root: for ``"folder"`` or ``"features"`` without ``train``: the folder or feature file.

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
    if name in ("features", "folder"):  # statistics of the user's own training data
        if train is None:
            if root is None:
                what = ("features (train=) or the file (root=) to compute the standardisation" if name == "features"
                        else "images (train=) or the folder (root=) to compute the normalisation constants")
                raise ValueError(f"data_spec({name!r}) needs the training {what}")
            train = load_arrays(name, root, "train")
        return feature_spec(train) if name == "features" else spec_from_arrays(train, "folder")
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")



def load_arrays(name: DatasetName, root: str | Path | None, split: SplitName, *, download: bool = False,
                image_size: int | tuple[int, int] | None = None, channels: Literal[1, 3] | None = None,
                num_threads: int | None = None, classes: Sequence[str] | None = None, resize: ResizeMode = "crop",
                labels: str | Path | None = None, cache: bool | str | Path = True, skip_bad_images: bool = False,
                interpolation: Interpolation = DEFAULT_INTERPOLATION, label_column: str = "label") -> ImageArrays:
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
        interpolation: folder only: the resize filter of ``image_size`` (``bilinear``, ``bicubic`` or ``lanczos``).
        label_column: features only: the label column of a CSV or Parquet feature file.

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
    if name == "features":
        if split not in ("train", "test"):
            raise ValueError(f"dataset 'features' has splits 'train' and 'test', not {split!r}")
        train, test = read_features(_require_root(name, root), label_column=label_column)
        return train if split == "train" else test
    if name == "folder":
        files = folder_files(_require_root(name, root), split, labels=labels, classes=classes)  # type: ignore[arg-type]
        decoded = decode_files(files, image_size=image_size, resize=resize, channels=channels,
                               skip_bad_images=skip_bad_images, cache=cache, num_threads=num_threads,
                               interpolation=interpolation)
        if decoded.skipped:
            print(f"skipped {len(decoded.skipped)} unreadable image(s): "
                  + "; ".join(f"{err.path} ({err.reason})" for err in decoded.skipped), file=sys.stderr)
        return decoded.arrays
    return _load_torchvision(name, _require_root(name, root), split, download)


def load_targets(name: DatasetName, root: str | Path | None, split: SplitName = "train", *,
                 download: bool = False, labels: str | Path | None = None,
                 label_checks: dict[str, Any] | None = None, label_column: str = "label"
                 ) -> tuple[torch.Tensor, list[str]]:
    """The targets and class names of a dataset split, without decoding a folder's images.

    Args:
        name, root, split, download, labels, label_column: as in :func:`load_arrays`.
        label_checks: ``label_classes`` and ``check_labels`` for :func:`~ssl_mix.data.folder.folder_files`
            (:meth:`~ssl_mix.config.DataConfig.label_checks`).

    Returns:
        ``(targets, classes)``: int64 ``(N,)`` targets (-1 for unlabeled images) and the class names, in the
        order :func:`load_arrays` would load the images.
    """
    if name == "folder":
        files = folder_files(_require_root(name, root), split, labels=labels,  # type: ignore[arg-type]
                             **(label_checks or {}))
        return files.targets, files.classes
    check_folder_only(name, {"labels": labels}, advice="leave it None, or load name='folder'")
    arrays = load_arrays(name, root, split, download=download, label_column=label_column)
    return arrays.targets, arrays.classes


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None or str(root) == "":
        what = ("the image folder (with train/<class>/ inside)" if name == "folder"
                else "the feature file (.npz, .csv or .parquet)" if name == "features"
                else f"the directory that holds (or will receive, with download) the {name} files")
        raise ValueError(f"data.data_root is required for dataset {name!r}: {what}")
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
                   "data.download=true, which then only extracts it (or unpack it there yourself)")
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
                                    "To provide them: rerun with data.download=true on a machine with "
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

