"""Image folders as users have them: class sub-folders or a label file, extra unlabeled folders, broken files.

Two layouts of ``ROOT`` are read:

* **class folders**: ``train/<class>/*`` (the sub-folder names are the classes), ``test/<class>/*`` and optionally
  ``unlabeled/**``;
* **a label file** (``labels=``, CSV): every image under ``ROOT`` is a training image, labeled when the file
  names it and unlabeled otherwise, except those in ``test/``, which (in the ``test/<class>/`` layout) stays the
  test set. The classes are the sorted distinct labels of the file.

Listing gives an :class:`~ssl_mix.data.files.ImageFiles` (paths, targets, classes) without decoding (label files
are read by :mod:`ssl_mix.data.labels`); :func:`~ssl_mix.data.decode.decode_files` decodes one into an
:class:`~ssl_mix.data.arrays.ImageArrays`, and :class:`~ssl_mix.data.streaming.ImageFileDataset` decodes on the fly
for pools that do not fit in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from ssl_mix.data.files import IMAGE_EXTENSIONS, ImageFiles, image_files
from ssl_mix.data.labels import read_labels

__all__ = ["folder_files", "unlabeled_dir_files"]


def _require_folder(root: Path) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist: expected {root}/train/<class>/<images>, or "
                                "images anywhere under it with a label file in data.labels")


def _class_folders(directory: Path) -> list[str]:
    return sorted(d.name for d in directory.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and os.path.splitext(d.name)[1].lower()
                  not in IMAGE_EXTENSIONS)


def _folder_classes(root: Path) -> list[str]:
    train = root / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"image folder {root} has no train/ directory: expected {train}/<class>/<images> "
                                "(one sub-directory per class; they define the class names), optionally "
                                f"{root}/test/<class>/ and {root}/unlabeled/; or give the labels in a CSV file "
                                "in data.labels")
    classes = _class_folders(train)
    if not classes:
        raise ValueError(f"{train} has no class sub-directories: put the images of class c in {train}/c/, or give "
                         "the labels in a CSV file in data.labels")
    return classes


def _class_split(root: Path, directory: Path, classes: list[str], *, required: bool, defined_by: str) -> ImageFiles:
    present = _class_folders(directory)
    unknown = [c for c in present if c not in classes]
    if unknown:
        raise ValueError(f"{directory} has class folder(s) {', '.join(unknown)} that {defined_by} lacks; the "
                         f"classes are defined by {defined_by} ({', '.join(classes[:10])}"
                         f"{', ...' if len(classes) > 10 else ''})")
    loose = [f for f in directory.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        raise ValueError(f"{loose[0]} lies directly in {directory}; put its images in class folders "
                         f"{directory}/<class>/")
    paths: list[Path] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        found = image_files(directory / name) if (directory / name).is_dir() else []
        if required and not found:
            raise ValueError(f"class folder {directory / name} holds no images (extensions: "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(found)
        targets.extend([index] * len(found))
    if not paths and required:
        raise ValueError(f"{directory} holds no images in its class folders")
    return ImageFiles(paths, torch.tensor(targets, dtype=torch.int64), list(classes), root)


def folder_files(root: str | Path, split: Literal["train", "test", "unlabeled"], *,
                 labels: str | Path | None = None, classes: Sequence[str] | None = None,
                 label_classes: Sequence[str] | None = None, check_labels: bool = True) -> ImageFiles:
    """List one split of an image folder (see the module docstring for the two layouts).

    Args:
        root: the image folder.
        split: ``"train"``, ``"test"`` or ``"unlabeled"``.
        labels: a CSV label file (see :func:`~ssl_mix.data.labels.read_labels`) instead of class folders.
        classes: the class names, in order, instead of those of ``train/`` (or of the label file): a trained
            run's classes, to read a test set without its training folder.

    Returns:
        The files, sorted by relative path. Class folders: ``train``/``test`` from ``<split>/<class>/``,
        ``unlabeled`` from ``unlabeled/`` (empty when missing). Label file: ``train`` is every image outside
        ``test/`` (target -1 when the file does not label it), ``unlabeled`` is empty (those images are in
        ``train``), ``test`` is ``test/<class>/`` with classes among the file's (empty when ``test/`` is missing).
    """
    root = Path(root).expanduser()
    if split not in ("train", "test", "unlabeled"):
        raise ValueError(f"dataset 'folder' has splits 'train', 'test' and 'unlabeled', not {split!r}")
    _require_folder(root)
    given = [str(c) for c in classes] if classes is not None else None
    if labels is None:
        classes = given if given is not None else _folder_classes(root)
        defined_by = "the trained run" if given is not None else f"{root}/train"
        directory = root / split
        if split == "unlabeled":
            paths = image_files(directory) if directory.is_dir() else []
            return ImageFiles(paths, torch.full((len(paths),), -1, dtype=torch.int64), classes, root)
        if not directory.is_dir():
            raise FileNotFoundError(f"image folder {root} has no {split}/ directory: expected {directory}/<class>/"
                                    f"<images> with class folders among {', '.join(classes)}")
        return _class_split(root, directory, classes, required=split == "train", defined_by=defined_by)
    if split == "test" and given is not None:  # the test set of a trained run: no need for the label file
        if not (root / "test").is_dir():
            raise FileNotFoundError(f"image folder {root} has no test/ directory: expected {root}/test/<class>/"
                                    f"<images> with class folders among {', '.join(given)}")
        return _class_split(root, root / "test", given, required=False, defined_by="the trained run")
    named, classes = read_labels(labels, root, None if label_classes is None else list(label_classes),
                                 check_labels)
    if given is not None and given != classes:
        raise ValueError(f"the label file {labels} has classes {', '.join(classes[:10])} but {', '.join(given[:10])} "
                         "were given; use the label file the run was trained with")
    if split == "test":
        if not (root / "test").is_dir():
            return ImageFiles([], torch.zeros(0, dtype=torch.int64), classes, root)
        return _class_split(root, root / "test", classes, required=False, defined_by=f"the label file {labels}")
    if split == "unlabeled":
        return ImageFiles([], torch.zeros(0, dtype=torch.int64), classes, root)
    paths = [p for p in image_files(root) if p.relative_to(root).parts[0] != "test"]
    index = {c: i for i, c in enumerate(classes)}
    relative = [p.relative_to(root).as_posix() for p in paths]
    missing = sorted(set(named) - set(relative))
    if missing:  # exists, but not as a listed image (e.g. hidden)
        raise ValueError(f"label file {labels} names {missing[0]}, which is not among the images under {root}")
    targets = torch.tensor([index[named[r]] if r in named else -1 for r in relative], dtype=torch.int64)
    return ImageFiles(paths, targets, classes, root)


def unlabeled_dir_files(directories: Sequence[str | Path], classes: Sequence[str] = ()) -> ImageFiles:
    """All images under each of ``directories`` (anywhere on disk), unlabeled, in the given order.

    Raises:
        FileNotFoundError: a directory does not exist.
        ValueError: a directory holds no images.
    """
    paths: list[Path] = []
    for directory in directories:
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"unlabeled directory {directory} does not exist (data.unlabeled_dirs)")
        found = image_files(directory)
        if not found:
            raise ValueError(f"unlabeled directory {directory} holds no images (extensions: "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(found)
    return ImageFiles(paths, torch.full((len(paths),), -1, dtype=torch.int64), list(classes))
