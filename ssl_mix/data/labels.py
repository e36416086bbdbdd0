"""Label files: CSV rows ``path,label`` (paths relative to the data root) that label an image folder
(``--labels``) or add newly labeled images to a run's split (``--add-labels``, the CSV ``ssl-mix select`` writes)."""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import torch

from ssl_mix.data.files import IMAGE_EXTENSIONS, ImageFiles

__all__ = ["read_labels", "read_label_rows", "LabelRows", "added_labels", "AddedLabels", "check_label_classes",
           "near_match", "normalized_class", "MIN_CLASS_ROWS"]

MIN_CLASS_ROWS = 3
"""Without a classes list, a class with fewer label rows than this is taken for a typo (an error)."""


def normalized_class(name: str) -> str:
    """A class name folded for comparison: lower case, without spaces, underscores or hyphens."""
    return "".join(c for c in name.lower() if c not in " _-")


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one insertion, deletion or substitution."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def near_match(name: str, other: str) -> str | None:
    """How two distinct class names are nearly the same, or None.

    Returns:
        ``"differs only by case, spacing, underscores or hyphens from"`` or ``"differs by one character from"``
        (also after that folding), else None.
    """
    if name == other:
        return None
    a, b = normalized_class(name), normalized_class(other)
    if a == b:
        return "differs only by case, spacing, underscores or hyphens from"
    if _one_edit(name, other) or _one_edit(a, b):
        return "differs by one character from"
    return None


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (for naming the nearest allowed class)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def check_label_classes(rows: LabelRows, path: str | Path, classes: list[str] | None = None,
                        check: bool = True, *, classes_of: str = "the classes of data.classes",
                        fix: str = "fix the row or add the class to the list") -> None:
    """Check the labels of a label file against a classes list, or, without one, for likely typos.

    Args:
        rows: the file's rows (:func:`read_label_rows`).
        path: the file (for messages).
        classes: every label must be one of these (``data.classes``); None: no list.
        check: without ``classes``: reject a class with fewer than :data:`MIN_CLASS_ROWS` rows and a class whose
            name nearly matches another's (:func:`near_match`). ``data.check_labels=false`` turns this off.
        classes_of, fix: where ``classes`` come from and what to do about a label outside them, for the message
            (adding labels to a run: its classes, which a new class cannot join).

    Raises:
        ValueError: naming the file, the line(s), the label and the nearest class.
    """
    name = Path(path).name
    if classes is not None:
        allowed = set(classes)
        for key, label in rows.labels.items():
            if label not in allowed:
                nearest = min(classes, key=lambda c: (_distance(normalized_class(label), normalized_class(c)), c))
                raise ValueError(f"{name} line {rows.lines[key]}: label {label!r} is not one of {classes_of} "
                                 f"(nearest: {nearest!r}); {fix}")
        return
    if not check:
        return
    count: dict[str, list[int]] = {}
    for key, label in rows.labels.items():
        count.setdefault(label, []).append(rows.lines[key])
    for label, lines in sorted(count.items(), key=lambda item: (len(item[1]), item[0])):
        where = f"{name} line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:10]))}"
        rows_word = f"{len(lines)} row{'s' if len(lines) != 1 else ''}"
        advice = "fix the row, list the classes with data.classes, or set data.check_labels=false to keep it"
        for other in sorted(count, key=lambda c: -len(count[c])):
            how = near_match(label, other)
            if how is not None and len(count[other]) >= len(lines):
                raise ValueError(f"{where}: class {label!r} has {rows_word} and {how} {other!r} "
                                 f"({len(count[other])} rows); {advice}")
        if len(lines) < MIN_CLASS_ROWS:
            raise ValueError(f"{where}: class {label!r} has only {rows_word} (fewer than {MIN_CLASS_ROWS}); {advice}")


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


def read_labels(path: str | Path, root: str | Path, classes: list[str] | None = None,
                check: bool = True) -> tuple[dict[str, str], list[str]]:
    """Read a label file: CSV rows ``path,label`` with paths relative to ``root``.

    Args:
        path: the CSV file (UTF-8). A first row ``path,label`` is a header and is skipped; blank lines are
            skipped; a field may be quoted (CSV rules) to hold a comma.
        root: the data root the paths are relative to.
        classes, check: see :func:`check_label_classes`.

    Returns:
        ``({relative posix path: label}, classes)``: classes are the sorted distinct labels.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a row without exactly two fields, an empty path or label, an absolute path or one leaving
            ``root``, a path that is not an image file under ``root`` or lies in ``test/``, or a duplicate path;
            the message names the line (and the earlier line of a duplicate).
    """
    rows = read_label_rows(path, root)
    check_label_classes(rows, path, classes, check)
    labels = rows.labels
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
    check_label_classes(rows, path, files.classes, classes_of="the run's classes",
                        fix="fix the row (a new class needs a new run, trained with it in its label file)")
    position = {files.name(i): i for i in range(len(files))}
    class_index = {c: i for i, c in enumerate(files.classes)}
    targets = files.targets.clone()
    indices, lines = [], []
    for name, label in rows.labels.items():
        where = f"{path}, line {rows.lines[name]}"
        i = position.get(name)
        if i is None:
            raise ValueError(f"{where}: {name} is not one of the training images under {files.root} (images in "
                             "unlabeled/, in data.unlabeled_dirs folders or elsewhere cannot be labeled this way: move "
                             "them into the data root's training images first)")
        known = int(targets[i])
        if known >= 0 and known != class_index[label]:
            raise ValueError(f"{where}: {name} lies in the class folder {files.classes[known]!r} but is labeled "
                             f"{label!r} here; fix the row or move the file")
        targets[i] = class_index[label]
        indices.append(i)
        lines.append(rows.lines[name])
    return AddedLabels(indices, targets, lines, rows.skipped)
