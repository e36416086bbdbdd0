"""Label-budget splits: which training examples are labeled, held out for validation, or unlabeled.

Semi-supervised benchmarks state a label budget ("CIFAR-10 with 250 labels"): a class-balanced subset of
``num_labels`` training examples keeps its labels and the rest of the training set is the unlabeled pool
(Oliver et al. 2018, "Realistic evaluation of deep semi-supervised learning algorithms", §3). ICT and mean
teacher also hold out a labeled validation subset per class for model selection (Verma et al. 2019, §4.1).

A split is drawn once from the training targets and a seed, and saved as a small JSON file, so that runs on
different machines train on exactly the same examples. The same targets, budget and seed give a
byte-identical file on any machine: the random keys come from NumPy's PCG64 bit generator, whose raw stream
NumPy keeps stable across versions and platforms, and the file is written with sorted keys and sorted index
lists in a fixed layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix.atomic import write_atomic
from ssl_mix.checks import check_bool, check_int

__all__ = ["LabelSplit", "make_split", "split_summary", "SPLIT_FORMAT_VERSION"]

SPLIT_FORMAT_VERSION = 3
"""Version of the JSON layout written by :meth:`LabelSplit.save`; bumped on any incompatible change (version 2
added ``balanced``, version 3 ``added_labels``; older files are still read)."""

_FORMAT_NAME = "ssl_mix.LabelSplit"


@dataclass(frozen=True)
class LabelSplit:
    """A label-budget split of a training set, as index lists into that set.

    Build one with :func:`make_split` (or :meth:`LabelSplit.load`); the constructor validates consistency.

    Args:
        dataset: name of the dataset the indices refer to (e.g. ``"cifar10"``, ``"folder"``).
        num_classes: number of classes C.
        num_labels: the label budget N (total labeled examples; N / C per class when ``balanced``).
        seed: the seed the split was drawn with.
        num_valid_per_class: labeled examples per class held out for validation (0 for none).
        labeled_in_unlabeled: whether the labeled examples also stay in the unlabeled pool. :func:`make_split`
            defaults to True, as FixMatch and USB do; MixMatch removes them (False). Validation examples are
            never in the unlabeled pool.
        labeled: sorted indices of the N labeled examples.
        valid: sorted indices of the ``C * num_valid_per_class`` validation examples.
        unlabeled: sorted indices of the unlabeled pool.
        targets_sha256: SHA-256 of the training targets the split was drawn from (as little-endian int64), used
            to refuse a split made for another dataset; None when unknown.
        balanced: whether the labeled subset is class-balanced (N / C per class); False when every labeled
            example was taken (e.g. the rows of a label file, as imbalanced as they come).
        added_labels: sorted ``(index, class)`` pairs: the examples :meth:`with_labeled` labeled after the split
            was drawn, with their labels. The split carries them, so a later round of labelling needs only the
            original training targets (e.g. the ``--labels`` file, which does not name the added images): see
            :meth:`targets_with_added`.

    Note:
        ``num_examples`` (the size of the training set) is implied by the index lists: every training example
        is in the unlabeled pool, the validation subset, or (when removed from the pool) the labeled subset.
    """

    dataset: str
    num_classes: int
    num_labels: int
    seed: int
    num_valid_per_class: int
    labeled_in_unlabeled: bool
    labeled: tuple[int, ...]
    valid: tuple[int, ...]
    unlabeled: tuple[int, ...]
    targets_sha256: str | None = field(default=None, compare=True)
    balanced: bool = True
    added_labels: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"LabelSplit.dataset must be a non-empty string, got {self.dataset!r}")
        for name in ("num_classes", "num_labels", "seed", "num_valid_per_class"):
            check_int(f"LabelSplit.{name}", getattr(self, name), 1 if name in ("num_classes", "num_labels") else 0)
        check_bool("LabelSplit.labeled_in_unlabeled", self.labeled_in_unlabeled)
        for name in ("labeled", "valid", "unlabeled"):
            indices = tuple(getattr(self, name))
            if any(isinstance(i, bool) or not isinstance(i, int) for i in indices):
                raise ValueError(f"LabelSplit.{name} must hold ints only")
            if any(b <= a for a, b in zip(indices, indices[1:], strict=False)) or (indices and indices[0] < 0):
                raise ValueError(f"LabelSplit.{name} must be sorted, non-negative and without repeats")
            object.__setattr__(self, name, indices)
        try:
            added = tuple(sorted((int(i), int(c)) for i, c in self.added_labels))
        except (TypeError, ValueError):
            raise ValueError(f"LabelSplit.added_labels must hold (index, class) pairs of ints, got "
                             f"{self.added_labels!r}") from None
        object.__setattr__(self, "added_labels", added)
        if not isinstance(self.balanced, bool):
            raise ValueError(f"LabelSplit.balanced must be a bool, got {self.balanced!r}")
        if self.balanced and self.num_labels % self.num_classes:
            raise ValueError(f"LabelSplit.num_labels={self.num_labels} is not a multiple of "
                             f"num_classes={self.num_classes}")
        if len(self.labeled) != self.num_labels:
            raise ValueError(f"LabelSplit has num_labels={self.num_labels} but {len(self.labeled)} labeled indices")
        if len(self.valid) != self.num_classes * self.num_valid_per_class:
            raise ValueError(f"LabelSplit has {len(self.valid)} validation indices, expected num_classes * "
                             f"num_valid_per_class = {self.num_classes * self.num_valid_per_class}")
        labeled, valid, unlabeled = set(self.labeled), set(self.valid), set(self.unlabeled)
        if labeled & valid or valid & unlabeled:
            raise ValueError("LabelSplit.valid must not overlap the labeled or unlabeled indices")
        if not (labeled <= unlabeled if self.labeled_in_unlabeled else labeled.isdisjoint(unlabeled)):
            raise ValueError(f"LabelSplit.labeled_in_unlabeled={self.labeled_in_unlabeled} contradicts the index "
                             "lists (labeled indices must be all in the unlabeled pool when True, none when False)")
        if not {i for i, _ in self.added_labels} <= labeled or len(set(self.added_labels)) != len(
                {i for i, _ in self.added_labels}):
            raise ValueError("LabelSplit.added_labels must name labeled examples, each once")
        if any(not 0 <= c < self.num_classes for _, c in self.added_labels):
            raise ValueError(f"LabelSplit.added_labels must hold classes in [0, {self.num_classes})")
        covered = unlabeled | valid | labeled
        if len(covered) != self.num_examples or (covered and max(covered) != self.num_examples - 1):
            raise ValueError("LabelSplit index lists must together cover 0 .. num_examples-1 exactly once")
        if self.targets_sha256 is not None and (not isinstance(self.targets_sha256, str)
                                                or len(self.targets_sha256) != 64):
            raise ValueError(f"LabelSplit.targets_sha256 must be a 64-character hex digest or None, "
                             f"got {self.targets_sha256!r}")

    @property
    def num_examples(self) -> int:
        """Size of the training set the split indexes."""
        extra = 0 if self.labeled_in_unlabeled else len(self.labeled)
        return len(self.unlabeled) + len(self.valid) + extra

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-compatible values, plus ``format``, ``format_version`` and ``num_examples``."""
        return {
            "format": _FORMAT_NAME,
            "format_version": SPLIT_FORMAT_VERSION,
            "dataset": self.dataset,
            "num_classes": self.num_classes,
            "num_labels": self.num_labels,
            "seed": self.seed,
            "num_valid_per_class": self.num_valid_per_class,
            "labeled_in_unlabeled": self.labeled_in_unlabeled,
            "num_examples": self.num_examples,
            "targets_sha256": self.targets_sha256,
            "balanced": self.balanced,
            "added_labels": [list(pair) for pair in self.added_labels],
            "labeled": list(self.labeled),
            "valid": list(self.valid),
            "unlabeled": list(self.unlabeled),
        }

    def to_json(self) -> str:
        """The file contents :meth:`save` writes: one ``"key": value`` per line, keys sorted, lists on one line."""
        items = sorted(self.to_dict().items())
        lines = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in items]
        return "{\n" + ",\n".join(lines) + "\n}\n"

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (UTF-8, ``\\n`` line endings; identical bytes for identical splits), atomically.

        Args:
            path: destination file; its parent directory must exist.
        """
        write_atomic(path, self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, dataset: str | None = None, source: str = "split") -> LabelSplit:
        """Rebuild a split from :meth:`to_dict` output; see :meth:`load` for the checks."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT_NAME:
            raise ValueError(f"{source} is not an ssl_mix split file (expected a JSON object with "
                             f"\"format\": \"{_FORMAT_NAME}\"); write one with `ssl-mix split` or LabelSplit.save")
        version = data.get("format_version")
        if version == 1 and "balanced" not in data:  # version 1 drew class-balanced splits only
            data = {**data, "balanced": True}
        if version in (1, 2) and "added_labels" not in data:  # labels were added to splits from version 3 on
            data = {**data, "added_labels": []}
        if version not in (1, 2, SPLIT_FORMAT_VERSION):
            raise ValueError(f"{source} has split format version {version!r}; this version of ssl_mix reads "
                             f"version {SPLIT_FORMAT_VERSION}. Redraw the split with `ssl-mix split`.")
        names = ["dataset", "num_classes", "num_labels", "seed", "num_valid_per_class", "labeled_in_unlabeled",
                 "labeled", "valid", "unlabeled", "targets_sha256", "balanced", "added_labels"]
        missing = [n for n in names + ["num_examples"] if n not in data]
        if missing:
            raise ValueError(f"{source} is missing field(s) {', '.join(missing)}; the file is damaged or "
                             "hand-edited. Redraw it with `ssl-mix split`.")
        unknown = sorted(set(data) - set(names) - {"format", "format_version", "num_examples"})
        if unknown:
            raise ValueError(f"{source} has unknown field(s) {', '.join(unknown)}")
        for n in ("labeled", "valid", "unlabeled", "added_labels"):
            if not isinstance(data[n], list):
                raise ValueError(f"{source}: field {n!r} must be a list of indices, got {type(data[n]).__name__}")
        try:
            split = cls(**{n: data[n] for n in names})
        except ValueError as err:
            raise ValueError(f"{source} is not a valid split: {err}") from None
        if split.num_examples != data["num_examples"]:
            raise ValueError(f"{source} says num_examples={data['num_examples']!r} but its index lists cover "
                             f"{split.num_examples}; the file is damaged")
        if dataset is not None and split.dataset != dataset:
            raise ValueError(f"{source} was made for dataset {split.dataset!r}, not {dataset!r}; draw a split "
                             f"for {dataset!r} with `ssl-mix split --dataset {dataset}`")
        return split

    @classmethod
    def load(cls, path: str | Path, *, dataset: str | None = None,
             targets: Sequence[int] | torch.Tensor | np.ndarray | None = None) -> LabelSplit:
        """Read a split written by :meth:`save`.

        Args:
            path: the JSON file.
            dataset: if given, the dataset name the split must have been drawn for.
            targets: if given, the training targets the split must have been drawn from
                (see :meth:`check_targets`).

        Returns:
            The split.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not valid JSON, not a split, of another format version, internally
                inconsistent, or made for another dataset.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"split file {str(path)!r} does not exist; write one with `ssl-mix split`")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"split file {str(path)!r} is not valid JSON ({err})") from None
        split = cls.from_dict(data, dataset=dataset, source=f"split file {str(path)!r}")
        if targets is not None:
            split.check_targets(targets)
        return split

    def with_labeled(self, indices: Sequence[int], targets: Sequence[int] | torch.Tensor | np.ndarray) -> LabelSplit:
        """This split with more labeled examples (e.g. images labeled after a first run, see
        :func:`ssl_mix.select_for_labeling`).

        Args:
            indices: training examples to add to the labeled subset; each must be in the unlabeled pool and
                neither labeled nor in the validation subset already.
            targets: ``(num_examples,)`` the training targets with the new labels filled in (recorded as the
                split's ``targets_sha256``).

        Returns:
            The merged split: not ``balanced`` (the added labels fall where they fall), same seed, validation
            subset and ``labeled_in_unlabeled``; the added examples leave the unlabeled pool when
            ``labeled_in_unlabeled`` is False, and are recorded with their labels in ``added_labels``.
        """
        added = sorted({int(i) for i in indices})
        taken = set(self.labeled) | set(self.valid)
        clash = [i for i in added if i in taken or not 0 <= i < self.num_examples]
        if clash:
            raise ValueError(f"cannot add example {clash[0]} to the labeled subset: it is already labeled, in the "
                             f"validation subset, or not among the {self.num_examples} training examples")
        array = _as_targets(targets)
        if len(array) != self.num_examples:
            raise ValueError(f"targets has {len(array)} entries but the split indexes {self.num_examples} examples")
        if added and array[added].min() < 0:
            raise ValueError("every added example needs a label (a target >= 0)")
        labeled = tuple(sorted(set(self.labeled) | set(added)))
        unlabeled = self.unlabeled if self.labeled_in_unlabeled else tuple(sorted(set(self.unlabeled) - set(added)))
        pairs = (*self.added_labels, *((i, int(array[i])) for i in added))
        return dataclasses.replace(self, num_labels=len(labeled), labeled=labeled, unlabeled=unlabeled,
                                   targets_sha256=_targets_digest(array), balanced=False, added_labels=pairs)

    def targets_with_added(self, targets: Sequence[int] | torch.Tensor | np.ndarray) -> np.ndarray:
        """The training targets with this split's ``added_labels`` written in.

        Args:
            targets: ``(num_examples,)`` the training targets as listed again (class folders, or a label file in
                which the added images may have no label, -1).

        Returns:
            A new ``(num_examples,)`` int64 array: ``targets`` with each added example's label.

        Raises:
            ValueError: ``targets`` has another length, or labels an added example with another class.
        """
        array = _as_targets(targets).copy()
        if len(array) != self.num_examples:
            raise ValueError(f"this split of {self.dataset!r} indexes {self.num_examples} training examples but the "
                             f"given training set has {len(array)}; it was made for another dataset or data root")
        for i, c in self.added_labels:
            if array[i] >= 0 and array[i] != c:
                raise ValueError(f"training example {i} was added to this split of {self.dataset!r} with class {c}, "
                                 f"but the given targets say {int(array[i])}; the labels changed since")
            array[i] = c
        return array

    def check_targets(self, targets: Sequence[int] | torch.Tensor | np.ndarray) -> None:
        """Raise ValueError unless ``targets`` is the training set this split was drawn from.

        Compares the number of examples, and the targets' SHA-256 (with ``added_labels`` written in, see
        :meth:`targets_with_added`) when the split records one.

        Args:
            targets: (num_examples,) class indices of the training set.
        """
        array = self.targets_with_added(targets)
        if self.targets_sha256 is not None and _targets_digest(array) != self.targets_sha256:
            raise ValueError(f"this split of {self.dataset!r} was drawn from different training targets (SHA-256 "
                             "mismatch): same size, but another dataset or another file order")
        if array.size and (array.min() < -1 or array.max() >= self.num_classes):
            raise ValueError(f"targets must lie in [0, {self.num_classes}) (or -1: unlabeled) for this split of "
                             f"{self.dataset!r}, got [{int(array.min())}, {int(array.max())}]")
        chosen = array[list(self.labeled) + list(self.valid)]
        if chosen.size and chosen.min() < 0:
            raise ValueError(f"this split of {self.dataset!r} labels examples that have no label (target -1) in the "
                             "given training set; it was made for another dataset or label file")
        per_class = np.bincount(array[list(self.labeled)], minlength=self.num_classes)
        if self.balanced and np.any(per_class != self.num_labels // self.num_classes):
            raise ValueError(f"this split of {self.dataset!r} is not class-balanced on the given targets "
                             f"(labeled per class: {per_class.tolist()}); it was made for another dataset")


def _as_targets(targets: Sequence[int] | torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    array = np.asarray(targets)
    if array.ndim != 1:
        raise ValueError(f"targets must be one-dimensional (one class index per example), got shape {array.shape}")
    integral = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_ or (
        np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)))
    if array.size and not integral:
        raise ValueError(f"targets must be integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _targets_digest(targets: np.ndarray) -> str:
    return hashlib.sha256(targets.astype("<i8").tobytes()).hexdigest()


def _random_keys(seed: int, n: int) -> np.ndarray:
    # Generator.random(n) maps raw 64-bit PCG64 outputs to floats by a fixed formula, so the keys (and the
    # orders sorted by them) are the same on every platform and NumPy version.
    return np.random.Generator(np.random.PCG64(seed)).random(n)


def _nearest_multiples(n: int, c: int) -> str:
    lower, upper = (n // c) * c, (n // c + 1) * c
    return f"{upper}" if lower <= 0 else f"{lower} or {upper}"


def make_split(targets: Sequence[int] | torch.Tensor | np.ndarray, num_labels: int | None, *, seed: int,
               dataset: str = "custom", num_classes: int | None = None, num_valid_per_class: int = 0,
               labeled_in_unlabeled: bool = True) -> LabelSplit:
    """Draw a class-balanced label-budget split from a training set's targets.

    Every class gets ``num_labels / C`` labeled and ``num_valid_per_class`` validation examples, chosen
    uniformly at random without replacement; the unlabeled pool is everything outside the validation subset
    (and outside the labeled subset when ``labeled_in_unlabeled`` is False). Examples without a label (target
    -1, e.g. images a label file does not name) are never labeled or validation; they are always unlabeled.

    Args:
        targets: (num_examples,) integer class indices in ``[0, C)``, or -1 for an example without a label (list,
            NumPy array or tensor).
        num_labels: the label budget N > 0; must be a multiple of C. None: every labeled example outside the
            validation subset is labeled, however imbalanced the classes (the split is then not ``balanced``).
        seed: non-negative int. The draw uses a local generator and touches no global random state.
        dataset: name stored in the split and checked by :meth:`LabelSplit.load`.
        num_classes: C; inferred as ``max(targets) + 1`` when None.
        num_valid_per_class: validation examples per class (default 0).
        labeled_in_unlabeled: keep the labeled examples in the unlabeled pool (default True, as FixMatch and
            USB; MixMatch uses False).

    Returns:
        The :class:`LabelSplit`.

    Note:
        The labeled subset of a class is the first ``N / C`` of that class in an order fixed by the seed, and
        validation takes the next ones: a split with more labels and the same seed extends a smaller one, and
        changing ``num_valid_per_class`` leaves the labeled subset unchanged.
    """
    array = _as_targets(targets)
    if array.size == 0:
        raise ValueError("targets is empty: a split needs the targets of a non-empty training set")
    if array.min() < -1:
        raise ValueError(f"targets must be class indices >= 0, or -1 for an example without a label, got "
                         f"{int(array.min())}")
    if array.max() < 0:
        raise ValueError("targets has no labeled example (all -1): a split needs labels to draw from")
    seed = check_int("seed", seed, 0)
    inferred = int(array.max()) + 1
    if num_classes is None:
        num_classes = inferred
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < inferred:
        raise ValueError(f"num_classes must be an int >= max(targets) + 1 = {inferred}, got {num_classes!r}")
    num_classes = int(num_classes)
    balanced = num_labels is not None
    # Without a budget every labeled example counts (recounted once validation is held out).
    num_labels = int((array >= 0).sum()) if num_labels is None else check_int("num_labels", num_labels)
    if balanced and num_labels <= 0:
        raise ValueError(f"num_labels must be a positive multiple of the number of classes ({num_classes}), got "
                         f"{num_labels}; e.g. {num_classes * 4} for 4 labels per class")
    if balanced and num_labels % num_classes:
        raise ValueError(f"num_labels={num_labels} is not divisible by the number of classes ({num_classes}), so "
                         f"the split cannot be class-balanced; use {_nearest_multiples(num_labels, num_classes)}")
    num_valid_per_class = check_int("num_valid_per_class", num_valid_per_class, 0)
    check_bool("labeled_in_unlabeled", labeled_in_unlabeled)

    labeled_targets = np.where(array >= 0, array, num_classes)  # examples without a label sort last, as class C
    counts = np.bincount(labeled_targets, minlength=num_classes + 1)[:num_classes]
    per_class = num_labels // num_classes if balanced else int(counts.max())
    needed = per_class + num_valid_per_class if balanced else num_valid_per_class + 1
    short = np.flatnonzero(counts < needed)
    if short.size and not balanced:
        c = int(short[0])
        raise ValueError(f"class {c} has {int(counts[c])} labeled example(s), but {num_valid_per_class} are held out "
                         f"for validation and at least one must stay labeled ({short.size} class(es) too small); "
                         "label more examples of it or use a smaller num_valid_per_class")
    if short.size:
        c = int(short[0])
        fewest = int(counts.min())
        hint = (f"at most num_labels={num_classes * (fewest - num_valid_per_class)}"
                if fewest > num_valid_per_class else
                f"fewer than {fewest} validation examples per class and a smaller num_labels" if fewest > 1 else
                "more labeled examples of every class")
        raise ValueError(f"class {c} has {int(counts[c])} examples but {per_class} labeled + {num_valid_per_class} "
                         f"validation = {needed} per class were requested ({short.size} class(es) too small); "
                         f"use {hint}")

    keys = _random_keys(int(seed), len(array))
    # Sort by class, then by random key: each class's examples in a seed-determined order. lexsort is stable
    # and deterministic, and the keys are distinct with probability ~1 (ties fall back to index order).
    order = np.lexsort((keys, labeled_targets))
    all_counts = np.bincount(labeled_targets, minlength=num_classes + 1)
    starts = np.concatenate([[0], np.cumsum(all_counts)[:-1]])
    rank = np.empty(len(array), dtype=np.int64)
    rank[order] = np.arange(len(array)) - np.repeat(starts, all_counts)
    has_label = array >= 0
    if balanced:
        labeled_mask = has_label & (rank < per_class)
        valid_mask = has_label & (rank >= per_class) & (rank < needed)
    else:  # validation first, so that a larger validation split leaves the rest labeled
        valid_mask = has_label & (rank < num_valid_per_class)
        labeled_mask = has_label & ~valid_mask
        num_labels = int(labeled_mask.sum())
    unlabeled_mask = ~valid_mask if labeled_in_unlabeled else ~(valid_mask | labeled_mask)
    as_tuple = lambda mask: tuple(int(i) for i in np.flatnonzero(mask))  # noqa: E731
    return LabelSplit(dataset=dataset, num_classes=num_classes, num_labels=int(num_labels), seed=int(seed),
                      num_valid_per_class=num_valid_per_class, labeled_in_unlabeled=labeled_in_unlabeled,
                      labeled=as_tuple(labeled_mask), valid=as_tuple(valid_mask), unlabeled=as_tuple(unlabeled_mask),
                      targets_sha256=_targets_digest(array), balanced=balanced)


def split_summary(split: LabelSplit, targets: Sequence[int] | torch.Tensor | np.ndarray,
                  classes: Sequence[str] | None = None) -> str:
    """A per-class table of a split: examples, labeled, validation and unlabeled counts, with totals.

    Args:
        split: the split.
        targets: the training targets it was drawn from.
        classes: class names (default: the class indices).

    Returns:
        The table as text, one line per class plus a header and a total line.
    """
    array = _as_targets(targets)
    split.check_targets(array)
    c = split.num_classes
    names = list(classes) if classes is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"classes has {len(names)} names but the split has {c} classes")
    shifted = np.where(array >= 0, array, c)  # examples without a label counted in an extra row
    columns = [np.bincount(shifted, minlength=c + 1)] + [
        np.bincount(shifted[list(idx)], minlength=c + 1) if idx else np.zeros(c + 1, dtype=np.int64)
        for idx in (split.labeled, split.valid, split.unlabeled)]
    if columns[0][c]:
        names.append("(no label)")
    else:
        columns = [col[:c] for col in columns]
    width = max(5, *(len(n) for n in names))
    header = f"{'class':<{width}}  {'examples':>8}  {'labeled':>7}  {'valid':>6}  {'unlabeled':>9}"
    rows = [f"{name:<{width}}  {a:>8}  {b:>7}  {v:>6}  {u:>9}"
            for name, a, b, v, u in zip(names, *(col.tolist() for col in columns), strict=True)]
    total = f"{'total':<{width}}  " + "  ".join(f"{int(col.sum()):>{w}}"
                                               for col, w in zip(columns, (8, 7, 6, 9), strict=True))
    return "\n".join([header, *rows, total])
