"""Image folders as users have them: class sub-folders or a label file, extra unlabeled folders, broken files.

Two layouts of ``ROOT`` are read:

* **class folders**: ``train/<class>/*`` (the sub-folder names are the classes), ``test/<class>/*`` and optionally
  ``unlabeled/**``;
* **a label file** (``labels=``, CSV): every image under ``ROOT`` is a training image, labeled when the file
  names it and unlabeled otherwise, except those in ``test/``, which (in the ``test/<class>/`` layout) stays the
  test set. The classes are the sorted distinct labels of the file.

Listing gives an :class:`ImageFiles` (paths, targets, classes) without decoding; :func:`decode_files` decodes one
into an :class:`~ssl_mix.data.arrays.ImageArrays` (through the decoded-image cache of :mod:`ssl_mix.data.cache`),
and :class:`ImageFileDataset` decodes on the fly for pools that do not fit in memory. Every image goes through
:func:`~ssl_mix.data.images.decode_image`, the one decoding path of training, evaluation and prediction.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_mix.data.arrays import ImageArrays, channel_stats
from ssl_mix.data.cache import cache_key, default_cache_dir, read_cache, write_cache
from ssl_mix.data.images import BadImageError, ResizeMode, decode_image, image_channels, image_size_pair

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "image_files",
    "folder_files",
    "unlabeled_dir_files",
    "read_labels",
    "read_label_rows",
    "LabelRows",
    "added_labels",
    "AddedLabels",
    "decode_files",
    "DecodedFiles",
    "scan_files",
    "FileScan",
    "ImageFileDataset",
    "SKIP_HINT",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
"""File extensions (case-insensitive) read as images in an image folder; other files are ignored."""

SKIP_HINT = ("rerun with --skip-bad-images (skip_bad_images=True) to leave such files out; they are then listed in "
             "the run directory's skipped_images.txt")
"""What an error about unreadable image files tells the user to do."""

_SHOW = 5  # unreadable files named in an error message


@dataclass(eq=False)
class ImageFiles:
    """Image files with their targets, listed but not decoded.

    Args:
        paths: the files, in load order.
        targets: int64 ``(N,)`` class indices, -1 for unlabeled files.
        classes: class names; index i names class i.
        root: the folder the files were listed from (names in messages are relative to it), or None.
    """

    paths: list[Path]
    targets: torch.Tensor
    classes: list[str]
    root: Path | None = None

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        self.targets = torch.as_tensor(self.targets, dtype=torch.int64).reshape(-1)
        if len(self.targets) != len(self.paths):
            raise ValueError(f"ImageFiles has {len(self.paths)} paths but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageFiles:
        """The files at ``indices``, in that order."""
        index = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        return ImageFiles([self.paths[i] for i in index], self.targets[index], list(self.classes), self.root)

    def name(self, index: int) -> str:
        """The path of file ``index``, relative to ``root`` when it lies under it."""
        path = self.paths[index]
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return str(path)


def image_files(directory: str | Path) -> list[Path]:
    """The image files under ``directory`` (recursively, hidden entries skipped), in sorted relative-path order.

    A sub-directory whose name has an image extension (``x.jpg/``) is listed as a file, so that decoding it
    fails loudly instead of silently reading what it holds.
    """
    directory = Path(directory)
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        named_like_images = [d for d in dirnames if os.path.splitext(d)[1].lower() in IMAGE_EXTENSIONS]
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in named_like_images]
        found.extend(Path(dirpath) / f for f in filenames + named_like_images
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


class LabelRows(NamedTuple):
    """What :func:`read_label_rows` returns.

    Attributes:
        labels: ``{relative posix path: label}`` of the rows with a label, in file order.
        lines: ``{relative posix path: line number}`` of those rows (for messages).
        skipped: rows with an empty label cell that were skipped (``skip_empty``).
    """

    labels: dict[str, str]
    lines: dict[str, int]
    skipped: int


def read_labels(path: str | Path, root: str | Path) -> tuple[dict[str, str], list[str]]:
    """Read a label file: CSV rows ``path,label`` with paths relative to ``root``.

    Args:
        path: the CSV file (UTF-8). A first row ``path,label`` is a header and is skipped; blank lines are
            skipped; a field may be quoted (CSV rules) to hold a comma.
        root: the data root the paths are relative to.

    Returns:
        ``({relative posix path: label}, classes)``: classes are the sorted distinct labels.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a row without exactly two fields, an empty path or label, an absolute path or one leaving
            ``root``, a path that is not an image file under ``root`` or lies in ``test/``, or a duplicate path;
            the message names the line (and the earlier line of a duplicate).
    """
    labels = read_label_rows(path, root).labels
    return labels, sorted(set(labels.values()))


def read_label_rows(path: str | Path, root: str | Path, *, skip_empty: bool = False) -> LabelRows:
    """Read the rows of a label file (see :func:`read_labels` for the format and the checks).

    Args:
        path: the CSV file. A first row naming the columns ``path`` and ``label`` (and possibly others, such as
            the ``guess,confidence`` columns ``ssl-mix select`` writes) is a header that says where they are;
            without one, every row is exactly ``path,label``.
        root: the data root the paths are relative to.
        skip_empty: skip rows whose label cell is empty (and count them) instead of raising.

    Returns:
        The :class:`LabelRows`.
    """
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist; give a CSV file of path,label rows (paths "
                                f"relative to {root})")
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    skipped = 0
    columns = (0, 1)
    width: int | None = 2
    with open(path, newline="", encoding="utf-8-sig") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            row = [cell.strip() for cell in row]
            if not row or row == [""]:
                continue
            header = [c.lower() for c in row]
            if number == 1 and "path" in header and "label" in header:
                columns, width = (header.index("path"), header.index("label")), len(header)
                continue
            where = f"{path}, line {number}"
            if len(row) != width:
                expected = "two fields path,label" if width == 2 else f"{width} fields like the header"
                raise ValueError(f"{where}: expected {expected}, got {len(row)}: {','.join(row)!r}")
            name, label = row[columns[0]], row[columns[1]]
            if not name:
                raise ValueError(f"{where}: the path is empty")
            if not label:
                if skip_empty:
                    skipped += 1
                    continue
                raise ValueError(f"{where}: {name} has an empty label; give every listed image a label, or leave "
                                 "the image out of the file to make it unlabeled")
            relative = PurePosixPath(name.replace("\\", "/"))
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"{where}: {name} must be a path relative to the data root {root} (no leading / "
                                 "and no ..)")
            key = relative.as_posix()
            if key in lines:
                raise ValueError(f"{where}: {name} is listed again (first on line {lines[key]}); give each image "
                                 "one label")
            if relative.parts[0] == "test":
                raise ValueError(f"{where}: {name} lies in test/, which holds the test set (test/<class>/); label "
                                 "training images only")
            file = root / key
            if os.path.splitext(key)[1].lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{where}: {name} is not an image file name (extensions: "
                                 f"{', '.join(IMAGE_EXTENSIONS)})")
            if not os.path.lexists(file):
                raise ValueError(f"{where}: {name} does not exist under the data root {root}")
            labels[key], lines[key] = label, number
    if not labels and not skipped:
        raise ValueError(f"label file {path} has no rows; expected path,label lines (paths relative to {root})")
    return LabelRows(labels, lines, skipped)


class AddedLabels(NamedTuple):
    """What :func:`added_labels` returns.

    Attributes:
        indices: positions in the listed files of the rows with a label, in file order.
        targets: ``(N,)`` the files' targets with those labels filled in.
        lines: the line number of each index's row (for messages).
        skipped: rows with an empty label cell, skipped.
    """

    indices: list[int]
    targets: torch.Tensor
    lines: list[int]
    skipped: int


def added_labels(files: ImageFiles, path: str | Path) -> AddedLabels:
    """Match the filled rows of a label file (e.g. the CSV ``ssl-mix select`` writes) to listed training files.

    Args:
        files: the training files of ``folder_files(root, "train", ...)`` (their ``root`` is the data root).
        path: the CSV file, read by :func:`read_label_rows` (``path,label`` columns by header; rows with an
            empty label are skipped and counted).

    Returns:
        The :class:`AddedLabels`.

    Raises:
        ValueError: a path that is not one of ``files``, a label that is not one of ``files.classes``, or a label
            that contradicts the image's class folder; the message names the line.
    """
    if files.root is None:
        raise ValueError("added_labels needs files listed from a data root (ImageFiles.root)")
    rows = read_label_rows(path, files.root, skip_empty=True)
    position = {files.name(i): i for i in range(len(files))}
    class_index = {c: i for i, c in enumerate(files.classes)}
    targets = files.targets.clone()
    indices, lines = [], []
    for name, label in rows.labels.items():
        where = f"{path}, line {rows.lines[name]}"
        i = position.get(name)
        if i is None:
            raise ValueError(f"{where}: {name} is not one of the training images under {files.root} (images in "
                             "unlabeled/, in --unlabeled-dir folders or elsewhere cannot be labeled this way: move "
                             "them into the data root's training images first)")
        if label not in class_index:
            raise ValueError(f"{where}: label {label!r} is not one of the run's classes "
                             f"({', '.join(files.classes[:10])}{', ...' if len(files.classes) > 10 else ''})")
        known = int(targets[i])
        if known >= 0 and known != class_index[label]:
            raise ValueError(f"{where}: {name} lies in the class folder {files.classes[known]!r} but is labeled "
                             f"{label!r} here; fix the row or move the file")
        targets[i] = class_index[label]
        indices.append(i)
        lines.append(rows.lines[name])
    return AddedLabels(indices, targets, lines, rows.skipped)


def _require_folder(root: Path) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist: expected {root}/train/<class>/<images>, or "
                                "images anywhere under it with --labels FILE")


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
                                "with --labels FILE")
    classes = _class_folders(train)
    if not classes:
        raise ValueError(f"{train} has no class sub-directories: put the images of class c in {train}/c/, or give "
                         "the labels in a CSV file with --labels FILE")
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
                 labels: str | Path | None = None, classes: Sequence[str] | None = None) -> ImageFiles:
    """List one split of an image folder (see the module docstring for the two layouts).

    Args:
        root: the image folder.
        split: ``"train"``, ``"test"`` or ``"unlabeled"``.
        labels: a CSV label file (see :func:`read_labels`) instead of class folders.
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
    named, classes = read_labels(labels, root)
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
            raise FileNotFoundError(f"unlabeled directory {directory} does not exist (--unlabeled-dir)")
        found = image_files(directory)
        if not found:
            raise ValueError(f"unlabeled directory {directory} holds no images (extensions: "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(found)
    return ImageFiles(paths, torch.full((len(paths),), -1, dtype=torch.int64), list(classes))


# ---------------------------------------------------------------------------------------------------------
# Decoding many files
# ---------------------------------------------------------------------------------------------------------


class DecodedFiles(NamedTuple):
    """What :func:`decode_files` returns.

    Attributes:
        arrays: the decoded images of the readable files, in order.
        kept: ``(len(arrays),)`` int64 positions in the listed files of the rows of ``arrays``.
        skipped: the unreadable files left out (empty unless ``skip_bad_images``).
    """

    arrays: ImageArrays
    kept: np.ndarray
    skipped: list[BadImageError]


def _settings(image_size: Any, resize: str, channels: int | None) -> dict[str, Any]:
    size = image_size_pair(image_size)
    return {"image_size": list(size) if size else None, "resize": resize, "channels": channels}


def _threads(num_threads: int | None) -> int:
    threads = num_threads if num_threads is not None else min(8, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    return threads


def _decode_stream(paths: Sequence[Path], settings: dict[str, Any], threads: int, desc: str
                   ) -> Iterator[torch.Tensor | BadImageError]:
    """Each file decoded (or its error), in order, with a progress bar for long lists."""
    from tqdm.auto import tqdm

    def one(path: Path) -> torch.Tensor | BadImageError:
        try:
            return decode_image(path, **settings)
        except BadImageError as err:
            return err

    # Chunks amortise the thread hand-off over many small files; PIL's decoders release the GIL, which pays
    # off for large images (for CIFAR-sized JPEGs, Python-level header parsing dominates).
    chunk = max(1, min(256, -(-len(paths) // (4 * threads))))
    batches = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with tqdm(total=len(paths), desc=desc, unit="img", disable=True if len(paths) < 2000 else None,
              file=sys.stderr, leave=False) as bar:
        if threads == 1 or len(batches) == 1:
            results: Any = ([one(p) for p in b] for b in batches)
        else:
            pool = ThreadPoolExecutor(threads)
            results = pool.map(lambda b: [one(p) for p in b], batches)
        try:
            for decoded in results:
                bar.update(len(decoded))
                yield from decoded
        finally:
            if threads > 1 and len(batches) > 1:
                pool.shutdown(cancel_futures=True)


def _bad_files_error(files: ImageFiles, bad: list[tuple[int, BadImageError]]) -> BadImageError:
    index, first = bad[0]
    shown = "; ".join(f"{files.name(i)} ({err.reason})" for i, err in bad[1:_SHOW])
    more = f"; {len(bad) - 1} more unreadable file(s): {shown}" if len(bad) > 1 else ""
    if len(bad) > _SHOW:
        more += ", ..."
    return BadImageError(files.paths[index], f"{first.reason}{more}. Remove or replace the file(s), or {SKIP_HINT}")


def _size_error(files: ImageFiles, sizes: list[tuple[int, int]], where: str) -> ValueError:
    first = sizes[0]
    other = next(i for i, s in enumerate(sizes) if s != first)
    return ValueError(f"images in {where} have different sizes, e.g. {files.name(0)} is {first[0]}x{first[1]} "
                      f"(HxW) and {files.name(other)} is {sizes[other][0]}x{sizes[other][1]} ({len(set(sizes))} "
                      "sizes in all); pass --image-size N or --image-size H,W (image_size= in Python) to resize them "
                      "all, with --resize crop (cover the size, cut the centre; the default) or --resize stretch")


def _where(files: ImageFiles) -> str:
    if not len(files):
        return "the image list"
    parents = {p.parent for p in files.paths}
    return str(next(iter(parents))) if len(parents) == 1 else str(files.root or os.path.commonpath(files.paths))


def _cache_location(cache: bool | str | Path) -> Path | None:
    if cache is False:
        return None
    if cache is True or cache is None:
        return default_cache_dir()
    return Path(cache).expanduser()


def decode_files(files: ImageFiles, *, image_size: int | tuple[int, int] | None = None, resize: ResizeMode = "crop",
                 channels: Literal[1, 3] | None = None, skip_bad_images: bool = False,
                 cache: bool | str | Path = True, num_threads: int | None = None) -> DecodedFiles:
    """Decode listed image files into memory, through the decoded-image cache.

    Args:
        files: the files (from :func:`folder_files` or :func:`unlabeled_dir_files`).
        image_size, resize, channels: as in :func:`~ssl_mix.data.images.decode_image`. With ``channels`` None,
            the set is RGB if any image is in colour (grayscale ones are repeated), else grayscale.
        skip_bad_images: leave unreadable files out (they are returned in ``skipped``) instead of raising.
        cache: True: the default cache directory (:func:`~ssl_mix.data.cache.default_cache_dir`); a path: that
            directory; False: decode without a cache.
        num_threads: decoding threads (default ``min(8, os.cpu_count())``).

    Returns:
        A :class:`DecodedFiles`.

    Raises:
        BadImageError: unreadable files and not ``skip_bad_images`` (the message names them).
        ValueError: images of different sizes without ``image_size``.
    """
    settings = _settings(image_size, resize, channels)
    threads = _threads(num_threads)
    if not len(files):
        empty = ImageArrays(torch.zeros((0, 0, 0, 0), dtype=torch.uint8), files.targets[:0], list(files.classes))
        return DecodedFiles(empty, np.zeros(0, dtype=np.int64), [])
    directory = _cache_location(cache)
    key = cache_key(files.paths, settings) if directory is not None else ""
    entry = read_cache(directory, key) if directory is not None else None
    if entry is not None:
        array, meta = entry
        bad = [(int(i), BadImageError(files.paths[int(i)], reason)) for i, reason in meta["bad"]]
        images = torch.from_numpy(array)
    else:
        decoded = list(_decode_stream(files.paths, settings, threads, f"decoding {_where(files)}"))
        bad = [(i, d) for i, d in enumerate(decoded) if isinstance(d, BadImageError)]
        good = [d for d in decoded if isinstance(d, torch.Tensor)]
        sizes = [tuple(d.shape[1:]) for d in good]
        if len(set(sizes)) > 1:
            good_files = files.subset([i for i, d in enumerate(decoded) if isinstance(d, torch.Tensor)])
            raise _size_error(good_files, sizes, _where(files))  # type: ignore[arg-type]
        if good:
            out_channels = channels or (3 if any(img.shape[0] == 3 for img in good) else 1)
            images = torch.empty((len(good), out_channels, *sizes[0]), dtype=torch.uint8)
            for i, img in enumerate(good):
                images[i].copy_(img)  # broadcasts grayscale to RGB when the set is in colour
        else:
            images = torch.zeros((0, 0, 0, 0), dtype=torch.uint8)
        del decoded, good
        if directory is not None:
            write_cache(directory, key, images.numpy(), {"bad": [[i, err.reason] for i, err in bad]})
    if bad and not skip_bad_images:
        raise _bad_files_error(files, bad)
    kept = np.setdiff1d(np.arange(len(files)), np.array([i for i, _ in bad], dtype=np.int64))
    arrays = ImageArrays(images, files.targets[torch.from_numpy(kept)], list(files.classes))
    return DecodedFiles(arrays, kept, [err for _, err in bad])


class FileScan(NamedTuple):
    """What :func:`scan_files` returns: what streaming needs to know about a set of files before training.

    Attributes:
        image_shape: ``(C, H, W)`` every file decodes to.
        mean, std: per-channel statistics of the readable files, as :func:`~ssl_mix.data.arrays.channel_stats`.
        kept: int64 positions of the readable files.
        skipped: the unreadable files (empty unless ``skip_bad_images``).
    """

    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kept: np.ndarray
    skipped: list[BadImageError]


def _header(path: Path) -> tuple[str, tuple[int, int]] | BadImageError:
    """(mode, (H, W) after EXIF orientation) from the file's header, without decoding the pixels."""
    from PIL import Image

    try:
        if path.is_dir():
            return BadImageError(path, "it is a directory, not a file")
        with Image.open(path) as im:
            orientation = int(im.getexif().get(0x0112, 1)) if hasattr(im, "getexif") else 1
            size = (im.height, im.width) if orientation not in (5, 6, 7, 8) else (im.width, im.height)
            return im.mode, size
    except Exception:  # decode_image gives the precise reason
        try:
            decode_image(path, image_size=None)
        except BadImageError as err:
            return err
        return BadImageError(path, "the header cannot be read")


def scan_files(files: ImageFiles, *, image_size: int | tuple[int, int] | None = None, resize: ResizeMode = "crop",
               channels: Literal[1, 3] | None = None, skip_bad_images: bool = False,
               cache: bool | str | Path = True, num_threads: int | None = None) -> FileScan:
    """Check that every file decodes, and compute the channel statistics, keeping no pixels (for streaming).

    Reads the headers (modes, sizes), then decodes every file once in chunks; the result is cached like
    :func:`decode_files`'s (metadata only). The arguments are those of :func:`decode_files`.

    Returns:
        A :class:`FileScan`; its statistics equal those of the decoded set held in memory.
    """
    settings = _settings(image_size, resize, channels)
    threads = _threads(num_threads)
    if not len(files):
        raise ValueError("scan_files needs at least one file")
    directory = _cache_location(cache)
    key = cache_key(files.paths, {**settings, "scan": True}) if directory is not None else ""
    entry = read_cache(directory, key, images=False) if directory is not None else None
    if entry is not None:
        meta = entry[1]
        bad = [(int(i), BadImageError(files.paths[int(i)], reason)) for i, reason in meta["bad"]]
        shape, mean, std = tuple(meta["image_shape"]), tuple(meta["mean"]), tuple(meta["std"])
    else:
        with ThreadPoolExecutor(threads) as pool:
            headers = list(pool.map(_header, files.paths, chunksize=64))
        bad = [(i, h) for i, h in enumerate(headers) if isinstance(h, BadImageError)]
        good_index = [i for i, h in enumerate(headers) if not isinstance(h, BadImageError)]
        if not good_index:
            raise _bad_files_error(files, bad)
        modes_sizes = [headers[i] for i in good_index]
        size = image_size_pair(image_size)
        if size is None:
            sizes = [s for _, s in modes_sizes]  # type: ignore[misc]
            if len(set(sizes)) > 1:
                raise _size_error(files.subset(good_index), sizes, _where(files))
            size = sizes[0]
        out_channels = channels or max(image_channels(m) for m, _ in modes_sizes)  # type: ignore[misc]
        shape = (out_channels, *size)
        late_bad: list[tuple[int, BadImageError]] = []

        def chunks() -> Iterator[torch.Tensor]:
            batch: list[torch.Tensor] = []
            decoded = _decode_stream([files.paths[i] for i in good_index], settings, threads,
                                     f"checking {_where(files)}")
            for i, img in zip(good_index, decoded, strict=True):
                if isinstance(img, BadImageError):
                    late_bad.append((i, img))
                    continue
                batch.append(img.expand(out_channels, -1, -1))
                if len(batch) == 1024:
                    yield torch.stack(batch)
                    batch = []
            if batch:
                yield torch.stack(batch)

        mean, std = channel_stats(chunks())
        bad = sorted(bad + late_bad, key=lambda b: b[0])
        if directory is not None:
            write_cache(directory, key, None, {"bad": [[i, err.reason] for i, err in bad], "image_shape": list(shape),
                                               "mean": list(mean), "std": list(std)})
    if bad and not skip_bad_images:
        raise _bad_files_error(files, bad)
    kept = np.setdiff1d(np.arange(len(files)), np.array([i for i, _ in bad], dtype=np.int64))
    return FileScan(shape, mean, std, kept, [err for _, err in bad])  # type: ignore[arg-type]


class ImageFileDataset(Dataset):
    """A map-style dataset that decodes image files on the fly (for pools that do not fit in memory).

    Items are ``(image, target)`` when ``labeled``, else ``image``: the uint8 ``(C, H, W)`` tensor
    :func:`~ssl_mix.data.images.decode_image` gives, with grayscale repeated to ``channels`` = 3.

    Args:
        files: the files (every target >= 0 when ``labeled``).
        image_shape: ``(C, H, W)`` every file decodes to (see :func:`scan_files`); ``H, W`` is passed as
            ``image_size`` unless ``image_size`` is None (the files already have that size).
        resize: the resize policy.
        image_size: the requested size (None: the files' own).
        labeled: whether items carry targets.
    """

    def __init__(self, files: ImageFiles, image_shape: tuple[int, int, int], *, resize: ResizeMode = "crop",
                 image_size: int | tuple[int, int] | None = None, labeled: bool = True) -> None:
        if labeled and len(files) and int(files.targets.min()) < 0:
            raise ValueError("a labeled ImageFileDataset needs every target >= 0; pass labeled=False or select the "
                             "labeled files")
        self.files, self.image_shape, self.labeled = files, tuple(image_shape), labeled
        # Forcing the scanned channel count repeats a grayscale file's plane, as decode_files does.
        self.settings = _settings(image_size, resize, self.image_shape[0])

    def __len__(self) -> int:
        return len(self.files)

    @property
    def classes(self) -> list[str]:
        """The class names of the files' targets."""
        return self.files.classes

    def __getitem__(self, index: int) -> Any:
        image = decode_image(self.files.paths[index], **self.settings)
        if tuple(image.shape) != self.image_shape:  # the file changed since it was scanned
            raise BadImageError(self.files.paths[index], f"it decodes to {tuple(image.shape)}, not "
                                f"{self.image_shape}; was it replaced during training?")
        return (image, int(self.files.targets[index])) if self.labeled else image
