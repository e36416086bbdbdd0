"""Feature vectors instead of images: tabular data, or embeddings made by any encoder, read from ``.npz``, ``.csv``
or Parquet files (or given as arrays) and held as float32 :class:`~ssl_mix.data.arrays.ImageArrays` of shape
``(N, F, 1, 1)``: ``F`` features as the channels of a 1x1 image, so that splits, label budgets, the dual loaders,
evaluation and checkpoints take them unchanged. Mixup, ICT and manifold mixup mix them as vectors (Zhang et al.
2018 mix continuous inputs directly); the ``mlp`` model (:mod:`ssl_mix.models.mlp`) reads them.

File formats (``--dataset features --data-root FILE``):

* ``.npz``: arrays ``x_train`` ``(N, F)`` numbers and ``y_train`` ``(N,)`` integer class indices (-1, or NaN in a
  float array, for unlabeled rows); optionally ``x_test`` and ``y_test`` (every test row labeled) and ``classes``
  (the class names, index i naming class i). No other arrays.
* ``.csv``: a header row, then one example per row. The label column (``label_column``, default ``label``) holds
  class names or integer indices, empty or ``-1`` for unlabeled rows; an optional ``split`` column says ``train``
  or ``test`` for each row (no such column: every row is training data). Every other column is a feature:
  numbers, or categories (below).
* ``.parquet`` (needs ``pyarrow``: ``pip install "ssl-mix[features]"``): the CSV's columns, as a table.

Class names: the ``classes`` array of an ``.npz``; else, when every label is an integer, ``"0"`` to the largest
index; else the sorted distinct labels (of the training and test rows together). Standardisation per feature is
fitted on the training rows (labeled and unlabeled alike) by :func:`feature_spec`; the run records it in its
:class:`~ssl_mix.data.spec.DataSpec`, which evaluation and prediction apply unchanged.

Categorical columns (CSV and Parquet): a column none of whose values is a number (``red``, ``blue``) is categorical
and becomes one 0/1 column per category (``F`` counts them), its categories being the sorted distinct values of the
file's rows, training and test together. The model's first linear layer then holds a learned embedding of each
category (its weights on that category's column), and mixing such inputs mixes the embeddings, never category ids:
for mixing weights ``lam_k`` summing to 1, ``W (sum_k lam_k onehot_k) = sum_k lam_k W onehot_k``, and the per-feature
standardisation, an affine map, commutes with the mix the same way. So mixup, ICT and manifold mixup need nothing
special. A column of numbers with a stray text value is an error that names the column and row; so is a missing
category. Evaluate a run on the file it trained on, or on one with the same columns and categories (the one-hot
layout follows the file).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix.data.arrays import ImageArrays
from ssl_mix.data.spec import DataSpec

__all__ = ["FEATURE_EXTENSIONS", "SPLIT_COLUMN", "arrays_from_features", "read_features", "feature_spec"]

FEATURE_EXTENSIONS: tuple[str, ...] = (".npz", ".csv", ".parquet")
"""The feature file types :func:`read_features` reads (Parquet needs ``pyarrow``)."""

SPLIT_COLUMN = "split"
"""The optional column of a CSV or Parquet feature file that puts each row in ``train`` or ``test``."""

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")
_MIXED = ("other values of the column are numbers; fix the value (a column is categorical only when none of its "
          "values is a number)")
_NPZ_NUMBERS = ("the features of a .npz are numbers: encode each categorical column as one 0/1 column per category, or "
                "save the table as .csv, whose text-only columns are read as categories")


def arrays_from_features(x: Any, y: Any = None, classes: Sequence[str] | None = None) -> ImageArrays:
    """Feature vectors as the :class:`~ssl_mix.data.arrays.ImageArrays` that training takes.

    Args:
        x: ``(N, F)`` finite numbers (a NumPy array, a tensor, nested lists), e.g. tabular data or embeddings.
        y: ``(N,)`` integer class indices in ``[0, num_classes)``, -1 for unlabeled rows; None: all unlabeled.
        classes: the class names; default ``"0"`` .. the largest index in ``y``.

    Returns:
        float32 images of shape ``(N, F, 1, 1)`` (the ``F`` features as channels of a 1x1 image) and int64 targets.
        Features are stored as given; standardisation comes from :func:`feature_spec`.

    Raises:
        ValueError: ``x`` is not 2-D or not numeric, holds NaN or infinity (the message names the row and column),
            or ``y`` does not fit it.
    """
    features = _matrix("x", x)
    targets = _labels("y", y, len(features))
    if classes is None:
        classes = [str(i) for i in range(int(targets.max()) + 1 if len(targets) else 0)]
    return _arrays(features, targets, classes)


def read_features(path: str | Path, *, label_column: str = "label") -> tuple[ImageArrays, ImageArrays]:
    """Read a feature file: its training rows and its test rows.

    Args:
        path: a ``.npz``, ``.csv`` or ``.parquet`` file laid out as the module docstring says.
        label_column: the CSV or Parquet column that holds the labels (unused for ``.npz``).

    Returns:
        ``(train, test)``: float32 ``(N, F, 1, 1)`` feature sets with the same classes; ``test`` is empty
        (``(0, F, 1, 1)``) when the file has no test rows. Unlabeled training rows have target -1.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unknown file type, a missing array or column, text in a numeric column, a missing value,
            or labels that do not fit the rows (each message names the column and row, or array and row).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no feature file at {path}; give --data-root a {', '.join(FEATURE_EXTENSIONS)} file "
                                "(see ssl_mix.data.features for the layout)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".csv":
        return _read_table(path, *_csv_columns(path), label_column, lambda i: f"line {i + 2}")
    if suffix == ".parquet":
        return _read_table(path, *_parquet_columns(path), label_column, lambda i: f"row {i + 1}")
    raise ValueError(f"{path}: unknown feature file type {suffix!r}; expected one of {', '.join(FEATURE_EXTENSIONS)}")


def feature_spec(train: ImageArrays, name: str = "features", *, noise: float = 0.0, feature_dropout: float = 0.0
                 ) -> DataSpec:
    """The :class:`~ssl_mix.data.spec.DataSpec` of a feature set: per-feature mean and std of ``train``.

    Args:
        train: the training feature vectors (labeled and unlabeled alike contribute), float32 ``(N, F, 1, 1)``.
        name: the name to record.
        noise, feature_dropout: the training augmentation (see :class:`~ssl_mix.data.spec.DataSpec`); off by default.

    Returns:
        A spec with ``features=True``, no crop or flip, and the population mean and std of each feature (computed
        in float64); a constant feature gets std 1, so that standardisation stays finite.
    """
    if not isinstance(train, ImageArrays) or not train.is_features or not len(train):
        raise ValueError("feature_spec needs non-empty feature vectors (arrays_from_features or read_features)")
    values = train.images.flatten(1).double()
    mean = values.mean(dim=0)
    std = values.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return DataSpec(name, max(1, train.num_classes), tuple(mean.tolist()), tuple(std.tolist()), crop_padding=0,
                    flip=False, padding_mode="constant", features=True, noise=noise, feature_dropout=feature_dropout)


# --- arrays -------------------------------------------------------------------------------------------------------


def _arrays(features: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> ImageArrays:
    if len(targets) and int(targets.max()) >= len(classes):
        raise ValueError(f"label {int(targets.max())} is out of range for {len(classes)} class name(s) {list(classes)}")
    images = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).reshape(*features.shape, 1, 1)
    return ImageArrays(images, torch.from_numpy(targets.astype(np.int64)), list(classes))


def _matrix(name: str, x: Any) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, features) matrix, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} holds {array.dtype} values, not numbers; {_NPZ_NUMBERS}")
    array = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        row, column = (int(v) for v in bad[0])
        what = "a missing value (NaN)" if np.isnan(array[row, column]) else f"{array[row, column]}"
        raise ValueError(f"{name} row {row}, column {column} is {what} ({len(bad)} non-finite value(s) in all); "
                         "fill in or drop missing values before training")
    return array


def _labels(name: str, y: Any, rows: int, *, labeled: bool = False) -> np.ndarray:
    if y is None:
        return np.full(rows, -1, dtype=np.int64)
    array = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per row), got shape {array.shape}")
    if len(array) != rows:
        raise ValueError(f"{name} has {len(array)} label(s) but the features have {rows} row(s); give one label per "
                         "row (-1 for unlabeled)")
    if np.issubdtype(array.dtype, np.floating):
        array = np.where(np.isnan(array), -1.0, array)
        fractional = np.flatnonzero(array != np.round(array))
        if len(fractional):
            raise ValueError(f"{name} row {fractional[0]} is {array[fractional[0]]}, not a class index; labels are "
                             "integers (-1 or NaN for unlabeled)")
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} holds {array.dtype} values; labels are integer class indices (-1 for unlabeled)")
    array = array.astype(np.int64)
    low = -1 if not labeled else 0
    bad = np.flatnonzero(array < low)
    if len(bad):
        need = "every test row needs a label (>= 0)" if labeled else "labels are >= 0, or -1 for unlabeled"
        raise ValueError(f"{name} row {bad[0]} is {array[bad[0]]}; {need}")
    return array


def _read_npz(path: Path) -> tuple[ImageArrays, ImageArrays]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    unknown = sorted(set(arrays) - set(_NPZ_KEYS))
    if unknown or "x_train" not in arrays or "y_train" not in arrays:
        found = ", ".join(sorted(arrays)) or "none"
        problem = f"unknown array(s) {', '.join(unknown)}" if unknown else "no x_train and y_train"
        raise ValueError(f"{path}: {problem} (arrays: {found}); a feature .npz holds x_train (N, F) and y_train (N,), "
                         "optionally x_test, y_test and classes")
    x_train = _matrix(f"{path.name}: x_train", arrays["x_train"])
    y_train = _labels(f"{path.name}: y_train", arrays["y_train"], len(x_train))
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{path}: has {'x_test' if 'x_test' in arrays else 'y_test'} without "
                         f"{'y_test' if 'x_test' in arrays else 'x_test'}; give both or neither")
    if "x_test" in arrays:
        x_test = _matrix(f"{path.name}: x_test", arrays["x_test"])
        if x_test.shape[1] != x_train.shape[1]:
            raise ValueError(f"{path}: x_test has {x_test.shape[1]} features per row but x_train has "
                             f"{x_train.shape[1]}")
        y_test = _labels(f"{path.name}: y_test", arrays["y_test"], len(x_test), labeled=True)
    else:
        x_test, y_test = np.zeros((0, x_train.shape[1])), np.zeros(0, dtype=np.int64)
    if "classes" in arrays:
        classes = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
    else:
        classes = [str(i) for i in range(int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1)]
    return _arrays(x_train, y_train, classes), _arrays(x_test, y_test, classes)


# --- tables (CSV, Parquet) ------------------------------------------------------------------------------------------


def _csv_columns(path: Path) -> tuple[list[str], list[list[Any]]]:
    """The header and the columns of a CSV file, as strings."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; a feature CSV has a header row, then one row per example")
        header = [h.strip() for h in header]
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} field(s) but the header has "
                                 f"{len(header)}; every row needs one value per column")
            rows.append(row)
    return header, [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in header]


def _parquet_columns(path: Path) -> tuple[list[str], list[list[Any]]]:
    """The column names and the columns of a Parquet file (numbers, strings or None)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow: pip install 'ssl-mix[features]' (or pip install "
                         "pyarrow), or save the table as .csv or .npz") from None
    table = pq.read_table(path)
    return [str(n) for n in table.column_names], [table.column(i).to_pylist() for i in range(table.num_columns)]


def _read_table(path: Path, header: list[str], columns: list[list[Any]], label_column: str,
                where: Callable[[int], str]) -> tuple[ImageArrays, ImageArrays]:
    if label_column not in header:
        raise ValueError(f"{path} has no label column {label_column!r} (columns: {', '.join(header)}); name it with "
                         "--label-column (data.label_column)")
    if len(set(header)) != len(header):
        twice = sorted({h for h in header if header.count(h) > 1})
        raise ValueError(f"{path}: column name(s) {', '.join(twice)} appear more than once; name every column once")
    by_name = dict(zip(header, columns, strict=True))
    labels = [_label_text(v) for v in by_name[label_column]]
    rows = len(labels)
    is_test = np.zeros(rows, dtype=bool)
    if SPLIT_COLUMN in by_name:
        for i, value in enumerate(by_name[SPLIT_COLUMN]):
            text = "" if value is None else str(value).strip()
            if text not in ("train", "test"):
                raise ValueError(f"{path}, {where(i)}, column {SPLIT_COLUMN!r}: {text!r}; the split column says "
                                 "'train' or 'test' for each row")
            is_test[i] = text == "test"
    names = [h for h in header if h not in (label_column, SPLIT_COLUMN)]
    if not names:
        raise ValueError(f"{path} has no feature columns besides {label_column!r}; every other column is a feature")
    blocks = [_one_hot(path, name, by_name[name], where) if _is_categorical(by_name[name])
              else _numeric_column(path, name, by_name[name], where)[:, None] for name in names]
    features = np.concatenate(blocks, axis=1) if rows else np.zeros((0, sum(b.shape[1] for b in blocks)))
    for i in np.flatnonzero(is_test):
        if labels[i] is None:
            raise ValueError(f"{path}, {where(int(i))}, column {label_column!r}: a test row has no label; every test "
                             "row needs one (unlabeled rows belong to the training split)")
    named = [label for label in labels if label is not None]
    if all(_is_int(label) for label in named):
        indices = np.array([-1 if label is None else int(label) for label in labels], dtype=np.int64)
        bad = np.flatnonzero(indices < -1)
        if len(bad):
            raise ValueError(f"{path}, {where(int(bad[0]))}, column {label_column!r}: {labels[bad[0]]}; integer "
                             "labels are class indices >= 0 (-1 or empty for unlabeled)")
        classes = [str(i) for i in range(int(indices.max(initial=-1)) + 1)]
    else:
        classes = sorted(set(named))
        position = {c: k for k, c in enumerate(classes)}
        indices = np.array([-1 if label is None else position[label] for label in labels], dtype=np.int64)
    train = _arrays(features[~is_test], indices[~is_test], classes)
    return train, _arrays(features[is_test], indices[is_test], classes)


def _label_text(value: Any) -> str | None:
    """A label cell as text; None for an unlabeled row (empty, missing, or -1)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value == int(value):
        value = int(value)
    text = str(value).strip()
    return None if text in ("", "-1") else text


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_categorical(values: list[Any]) -> bool:
    """Whether a column is categorical: it has values and none of them is a number (text such as ``red``)."""
    present = [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]
    return bool(present) and not any(_is_number(v) for v in present)


def _is_number(value: Any) -> bool:
    if not isinstance(value, str):
        return isinstance(value, (int, float, bool, np.number))
    try:
        float(value)
    except ValueError:
        return False
    return True


def _one_hot(path: Path, name: str, values: list[Any], where: Callable[[int], str]) -> np.ndarray:
    """A categorical column as one 0/1 column per category (sorted categories of all the file's rows)."""
    texts = ["" if v is None else str(v).strip() for v in values]
    for i, text in enumerate(texts):
        if not text:
            raise ValueError(f"{path}, {where(i)}, column {name!r}: a missing value in a categorical column; fill it "
                             "in (e.g. with a category such as 'unknown') or drop the row")
    categories = sorted(set(texts))
    position = {c: k for k, c in enumerate(categories)}
    out = np.zeros((len(texts), len(categories)), dtype=np.float64)
    out[np.arange(len(texts)), [position[t] for t in texts]] = 1.0
    return out


def _numeric_column(path: Path, name: str, values: list[Any], where: Callable[[int], str]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if isinstance(value, str):
            text = value.strip()
            if not text:
                value = None
            else:
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(f"{path}, {where(i)}, column {name!r}: {text!r} is not a number, but "
                                     f"{_MIXED}") from None
        elif value is not None and not isinstance(value, (int, float, bool, np.number)):
            raise ValueError(f"{path}, {where(i)}, column {name!r}: {value!r} is not a number, but {_MIXED}")
        if value is None or not np.isfinite(value):
            what = "a missing value" if value is None or np.isnan(value) else f"{value}"
            raise ValueError(f"{path}, {where(i)}, column {name!r}: {what}; fill in or drop missing values before "
                             "training")
        out[i] = value
    return out
