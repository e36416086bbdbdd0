"""Which images to label next: score a trained run's unlabeled pool and write the picks as a CSV to fill in.

The loop (pool-based active learning, Settles 2009, "Active Learning Literature Survey", §2-3): train, score the
images still unlabeled with the EMA teacher's calibrated probabilities, label the ``budget`` that the strategy
ranks first (:mod:`ssl_mix.selection` holds the maths), add them to the split (``--add-labels``) and train again.

:func:`unlabeled_pool` lists the pool exactly as the run's training listed its files; :func:`pool_probabilities`
streams it through the run's :class:`~ssl_mix.Predictor` (decoding in ``DataLoader`` workers, memory bounded by the
batch); :func:`select_for_labeling` picks and :func:`write_selection` writes the CSV atomically.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ssl_mix.atomic import atomic_path
from ssl_mix.checks import check_bool, check_int, check_positive_int
from ssl_mix.selection import Strategy, acquisition_scores, check_strategy, select_top

__all__ = ["Selection", "unlabeled_pool", "pool_probabilities", "choose", "select_for_labeling", "write_selection",
           "SELECTION_COLUMNS"]

SELECTION_COLUMNS = ("path", "guess", "confidence", "label")
"""The columns of a selection CSV; ``label`` is left empty for a person to fill in."""


class Selection(NamedTuple):
    """The images to label next, best first.

    Attributes:
        paths: the picked images as ``--labels``/``--add-labels`` read them: relative to the data root (POSIX),
            or absolute for images outside it.
        guesses: the teacher's predicted class of each.
        confidences: ``(budget,)`` float32 calibrated probability of the guess.
        pool_size: how many images were scored (the readable images of the pool).
        skipped: unreadable pool files left out, as ``(path, reason)``.
    """

    paths: list[str]
    guesses: list[str]
    confidences: torch.Tensor
    pool_size: int
    skipped: list[tuple[str, str]]

    def histogram(self) -> dict[str, int]:
        """``{class: picks}`` of the predicted classes, most frequent first."""
        return dict(Counter(self.guesses).most_common())


def _name(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path.resolve())


def unlabeled_pool(run: Any, pool: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """The images a run could have labeled next: ``(files, names)``.

    Args:
        run: a run loaded with :func:`ssl_mix.load_run`.
        pool: a directory whose images (recursively) form the pool instead of the run's own.

    Returns:
        Without ``pool``: the run's training files that are neither labeled nor validation in the run's
        ``split.json`` (also when ``labeled_in_unlabeled`` keeps the labeled ones in the training pool), then
        ``unlabeled/`` and the ``--unlabeled-dir`` folders, listed as training listed them. Names are relative to the
        data root (POSIX) or absolute outside it.

    Raises:
        ValueError: the run did not train on an image folder and no ``pool`` is given.
        FileNotFoundError: the run's ``split.json`` or its data are missing.
    """
    from ssl_mix.data import LabelSplit
    from ssl_mix.data.run_data import folder_run_files
    from ssl_mix.predict import find_images

    d = run.config.data
    root = Path(d.data_root).expanduser() if d.data_root and run.dataset == "folder" else None
    if pool is not None:
        directory = Path(pool).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"pool directory {directory} does not exist (pool is a folder of images)")
        files = find_images([directory])
        return files, [_name(p, root) for p in files]
    if run.dataset != "folder":
        raise ValueError(f"the run trained on {run.dataset!r}, whose unlabeled pool is not a set of image files to "
                         "label; give a folder of the images to choose from as pool (ssl-mix select --pool DIR), or "
                         "train on your images with data.dataset=folder")
    train_files, _, extra_files = folder_run_files(run.config.data)
    split_file = run.run_dir.split
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file} is missing: selection needs the run's split to know which images are "
                                "labeled; it is written by ssl-mix train into the run directory")
    split = LabelSplit.load(split_file, dataset="folder", targets=train_files.targets)
    taken = {*split.labeled, *split.valid}
    index = [i for i in split.unlabeled if i not in taken]
    files = [train_files.paths[i] for i in index] + list(extra_files.paths)
    return files, [_name(p, root) for p in files]


def pool_probabilities(run: Any, files: list[Path], *, which: str = "teacher", batch_size: int = 256,
                       num_workers: int | None = None, progress: bool = True
                       ) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Calibrated class probabilities of image files under one model of a run, streamed batch by batch.

    Args:
        run: a run loaded with :func:`ssl_mix.load_run`.
        files: the image files.
        which: ``"teacher"`` (default) or ``"student"``.
        batch_size: images per forward pass.
        num_workers: decoding processes (see :func:`ssl_mix.predict.iter_predictions`).
        progress: show a progress bar.

    Returns:
        ``(probabilities (M, C) float32, kept positions in files (M,), skipped [(path, reason)])``: unreadable files
        are left out.
    """
    from ssl_mix.inference import load_predictor
    from ssl_mix.predict import iter_predictions

    predictor = load_predictor(run, which=which)
    rows, kept, skipped = [], [], []
    for position, (path, probs, error) in enumerate(iter_predictions(
            predictor, files, batch_size=check_positive_int("batch_size", batch_size), num_workers=num_workers,
            progress=progress)):
        if probs is None:
            skipped.append((str(path), error))
            continue
        rows.append(probs)
        kept.append(position)
    probabilities = torch.stack(rows) if rows else torch.zeros((0, len(predictor.classes)))
    return probabilities, kept, skipped


def choose(probabilities: torch.Tensor, kept: list[int], names: list[str], classes: list[str], budget: int,
           strategy: Strategy, *, balance: bool = False, seed: int = 0) -> Selection:
    """Pick from a scored pool: the ``budget`` images a strategy ranks first, as a :class:`Selection`.

    Score a pool once with :func:`pool_probabilities` and call this for each strategy to compare them.

    Args:
        probabilities: ``(M, C)`` calibrated probabilities of the readable pool images.
        kept: their positions in ``names`` (from :func:`pool_probabilities`).
        names: the names of the whole pool (from :func:`unlabeled_pool`).
        classes: the class names.
        budget: how many images to pick.
        strategy: one of :data:`ssl_mix.STRATEGIES`.
        balance: spread the picks evenly over the predicted classes.
        seed: seeds ``random`` and the order of ties.

    Returns:
        The :class:`Selection`, best first; ``pool_size`` is ``len(kept)`` and ``skipped`` is empty.
    """
    guesses = probabilities.argmax(dim=1)
    picks = select_top(acquisition_scores(probabilities, strategy, seed=seed), budget, seed=seed,
                       classes=guesses if balance else None).tolist()
    return Selection(paths=[names[kept[i]] for i in picks], guesses=[classes[int(guesses[i])] for i in picks],
                     confidences=probabilities[picks].max(dim=1).values, pool_size=len(kept), skipped=[])


def select_for_labeling(run: str | Path | Any, budget: int, strategy: Strategy, *, pool: str | Path | None = None,
                        balance: bool = False, seed: int = 0, which: str = "teacher", batch_size: int = 256,
                        num_workers: int | None = None, device: str = "auto", progress: bool = True) -> Selection:
    """The ``budget`` images of a run's unlabeled pool most worth labeling next.

    Args:
        run: a run directory, a checkpoint, or a run loaded with :func:`ssl_mix.load_run`.
        budget: how many images to pick, 1 .. pool size.
        strategy: one of :data:`ssl_mix.STRATEGIES` (``margin``, ``entropy``, ``least-confidence``, ``random``).
        pool: a directory of images to choose from instead of the run's own unlabeled pool (required when the run
            did not train on an image folder). Images outside the data root get absolute paths, which
            ``--add-labels`` refuses: copy them into the data root to train on them.
        balance: spread the picks evenly over the teacher's predicted classes.
        seed: seeds ``random`` and the order of ties: the same run, pool and seed give the same picks.
        which: the model that scores, ``"teacher"`` (default) or ``"student"``.
        batch_size: images per forward pass (memory is bounded by it, not by the pool).
        num_workers: decoding processes (default ``min(4, os.cpu_count())``).
        device: where the model runs.
        progress: show a progress bar.

    Returns:
        The :class:`Selection`, best first (with ``balance``: grouped by predicted class).

    Raises:
        ValueError: an unknown strategy, a budget outside 1 .. pool size, or a run without an image-file pool and no
            ``pool``.
    """
    from ssl_mix.run import load_run

    check_strategy(strategy)
    check_positive_int("budget", budget)
    check_bool("balance", balance)
    check_int("seed", seed, 0)
    loaded = load_run(run, device=device) if isinstance(run, (str, Path)) else run
    files, names = unlabeled_pool(loaded, pool)
    if budget > len(files):
        raise ValueError(f"the budget {budget} is larger than the pool of {len(files)} unlabeled images; ask for at "
                         f"most {len(files)}")
    probabilities, kept, skipped = pool_probabilities(loaded, files, which=which, batch_size=batch_size,
                                                      num_workers=num_workers, progress=progress)
    selection = choose(probabilities, kept, names, loaded.classes, budget, strategy, balance=balance, seed=seed)
    return selection._replace(skipped=skipped)


def write_selection(selection: Selection, out: str | Path) -> Path:
    """Write a selection as CSV ``path,guess,confidence,label`` (``label`` empty), atomically.

    Args:
        selection: from :func:`select_for_labeling`.
        out: the ``.csv`` file; fill in the ``label`` column and train with ``--add-labels FILE``.

    Returns:
        The file written.
    """
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"the output file must be a .csv file (path,guess,confidence,label), got {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(SELECTION_COLUMNS)
        for path, guess, confidence in zip(selection.paths, selection.guesses, selection.confidences.tolist(),
                                           strict=True):
            rows.writerow([path, guess, f"{confidence:.6f}", ""])
    return out
