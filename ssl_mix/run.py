"""A run: its directory, its checkpoint format, resuming it, and loading it back to use the model.

This module is the one owner of these facts; everything else (trainer, experiment, CLI, benchmarks) asks it.

Run directory (``--out``)::

    config.json          the resolved configuration (for people; the checkpoint holds its own copy)
    split.json           the label split (reloadable with --split)
    last.pt              the latest checkpoint: everything needed to continue or to use the model
    best.pt              the checkpoint selected on the validation split (only with one)
    report.json          the final report of ssl-mix train
    skipped_images.txt   unreadable images skipped with --skip-bad-images
    tensorboard/         TensorBoard logs
    analysis/            the output of ssl-mix analyze

A checkpoint is self-contained: besides the training state it holds the run's configuration and a ``data``
entry with the class names, the input shape, the normalisation constants and the split summary, so that
evaluation, analysis and prediction need neither the training folder nor a side file. A checkpoint of another
format version is refused with a message naming that version.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssl_mix.atomic import write_atomic
from ssl_mix.checkpoint import load_checkpoint, save_checkpoint
from ssl_mix.config import Config
from ssl_mix.data import DataSpec, ImageArrays, LabelSplit, load_arrays
from ssl_mix.distributed import local_device
from ssl_mix.models import build_model

__all__ = ["CHECKPOINT_FORMAT", "RunDir", "write_json", "data_info", "check_checkpoint_format", "check_resume",
           "saved_config", "note_fresh_start", "TrainedRun", "load_run", "load_trained", "load_test_set",
           "update_checkpoint", "format_report", "resumed_config", "RESUMABLE_CHANGES"]

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout. 2: self-contained (``data`` entry with classes, input shape and
normalisation). 1: the first release, which needed the training data to rebuild the normalisation."""

# Settings that may differ between a checkpoint and the command that resumes it: they change how long, how
# verbosely, how fast (threads) or where (a moved run directory) a run goes on, not what it computes.
RESUMABLE_CHANGES = frozenset({("train", "steps"), ("train", "progress"), ("train", "dist_timeout"),
                               ("train", "out_dir"), ("train", "threads")})


@dataclass(frozen=True)
class RunDir:
    """The files of a run directory. Every file name of a run is spelled here and nowhere else.

    Args:
        root: the run directory (``train.out_dir``, ``--out``).
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def last(self) -> Path:
        """The latest checkpoint, written every ``checkpoint_every`` steps and at the end."""
        return self.root / "last.pt"

    @property
    def best(self) -> Path:
        """The checkpoint selected on the validation split."""
        return self.root / "best.pt"

    @property
    def config(self) -> Path:
        """The resolved configuration as JSON."""
        return self.root / "config.json"

    @property
    def split(self) -> Path:
        """The label split as JSON."""
        return self.root / "split.json"

    @property
    def report(self) -> Path:
        """The final report of training."""
        return self.root / "report.json"

    @property
    def skipped_images(self) -> Path:
        """Images skipped as unreadable, one path per line."""
        return self.root / "skipped_images.txt"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard logs."""
        return self.root / "tensorboard"

    @property
    def analysis(self) -> Path:
        """Default output directory of ``ssl-mix analyze``."""
        return self.root / "analysis"

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> tuple[RunDir, Path]:
        """``(run directory, checkpoint file)`` for a run directory (its ``last.pt``) or a checkpoint file.

        Raises:
            FileNotFoundError: the path does not exist, or is a directory without ``last.pt``.
        """
        path = Path(path)
        if path.is_dir():
            run = cls(path)
            if not run.last.is_file():
                raise FileNotFoundError(f"{str(path)!r} holds no {run.last.name}; pass a run directory written by "
                                        "ssl-mix train or a checkpoint file")
            return run, run.last
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass a run directory written by "
                                    "ssl-mix train or a checkpoint file (last.pt, best.pt)")
        return cls(path.parent), path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON with sorted keys, atomically (:func:`~ssl_mix.atomic.write_atomic`).

    Readers (other processes of a distributed run, a user's script) see the old file or the new one, never a
    partial one.

    Args:
        path: the target file; its folder must exist.
        data: JSON-compatible values.

    Returns:
        The path.
    """
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def data_info(spec: DataSpec, classes: list[str], input_shape: tuple[int, ...], split: LabelSplit | None = None,
              preprocess: Mapping[str, Any] | None = None,
              weights: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``data`` entry of a checkpoint: what it takes to feed the model without the training data.

    Args:
        spec: the dataset constants the model was trained with (normalisation, augmentation).
        classes: class names, index i naming output i.
        input_shape: ``(C, H, W)`` of the model's input images.
        split: the label split, summarised (counts, seed), not listed.
        preprocess: extra input transforms fitted on the training data (tensors allowed).
        weights: where the run's starting weights came from (:func:`ssl_mix.weights.weights_record`), kept as
            ``weights``.

    Returns:
        A dict of plain values (and tensors in ``preprocess``) that :func:`torch.load` reads with
        ``weights_only=True``.
    """
    info: dict[str, Any] = {"dataset": spec.name, "classes": [str(c) for c in classes],
                            "input_shape": [int(s) for s in input_shape], "spec": dataclasses.asdict(spec),
                            "preprocess": dict(preprocess or {})}
    if weights is not None:
        info["weights"] = dict(weights)
    info["spec"]["mean"], info["spec"]["std"] = list(spec.mean), list(spec.std)
    if split is not None:
        info["split"] = {"dataset": split.dataset, "num_classes": split.num_classes, "num_labels": split.num_labels,
                         "seed": split.seed, "num_valid_per_class": split.num_valid_per_class,
                         "labeled_in_unlabeled": split.labeled_in_unlabeled, "num_examples": split.num_examples,
                         "num_labeled": len(split.labeled), "num_valid": len(split.valid),
                         "num_unlabeled": len(split.unlabeled)}
    return info


def check_checkpoint_format(state: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint of another format version, saying which version wrote it and what to do.

    Raises:
        ValueError: ``state["format"]`` is not :data:`CHECKPOINT_FORMAT`.
    """
    found = state.get("format")
    if found == CHECKPOINT_FORMAT:
        return
    if isinstance(found, int) and found < CHECKPOINT_FORMAT:
        advice = ("it predates self-contained checkpoints; retrain with this version, or load it with the "
                  "ssl_mix release that wrote it")
    else:
        advice = "it was written by a newer ssl_mix; upgrade ssl_mix to read it"
    raise ValueError(f"{str(path)!r} is an ssl_mix checkpoint of format {found!r}, but this version reads format "
                     f"{CHECKPOINT_FORMAT}: {advice}")


def check_resume(cfg: Config, state: Mapping[str, Any], path: str | Path) -> None:
    """Refuse to resume a checkpoint whose configuration differs from ``cfg`` (except the settings in
    :data:`RESUMABLE_CHANGES`, e.g. ``train.steps``, which may be raised to train longer).

    The comparison is against the checkpoint itself; ``config.json`` is for people.

    Raises:
        ValueError: naming the differing settings with both values (the first few; the rest by name).
    """
    check_checkpoint_format(state, path)
    diffs = _differences(state.get("config") or {}, cfg.to_dict())
    if diffs:
        raise ValueError(f"cannot resume: the configuration differs from the run being resumed (checkpoint "
                         f"{str(path)!r}): {_listed(diffs)}. Use the run's settings (saved_config reads them from "
                         "the checkpoint), or a new train.out_dir.")


_SHOWN_DIFFERENCES = 6  # settings a resume error shows with both values; the others by name


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(section.field, saved value, value now)`` of every setting outside :data:`RESUMABLE_CHANGES` that differs
    between two ``Config.to_dict()`` dicts, in section and field order."""
    return [(f"{section}.{key}", saved.get(section, {}).get(key), value)
            for section, values in now.items() for key, value in values.items()
            if (section, key) not in RESUMABLE_CHANGES and saved.get(section, {}).get(key) != value]


def _listed(diffs: list[tuple[str, Any, Any]]) -> str:
    shown = "; ".join(f"{name}: {old!r} in the run -> {new!r} now" for name, old, new in diffs[:_SHOWN_DIFFERENCES])
    rest = [name for name, _, _ in diffs[_SHOWN_DIFFERENCES:]]
    return shown + (f"; and {len(rest)} more: {', '.join(rest)}" if rest else "")


def saved_config(path: str | Path) -> Config:
    """The configuration a run trained with, as its checkpoint holds it.

    Args:
        path: a run directory (its ``last.pt`` is read) or a checkpoint file.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: not an ssl_mix checkpoint, or one of another format version.
    """
    _, _, state = _checked_state(path)
    return Config.from_dict(state["config"])


def resumed_config(changes: Mapping[str, Mapping[str, Any]]) -> Config | None:
    """The configuration of the run in ``changes["train"]["out_dir"]``, read from its checkpoint, with ``changes``
    applied, when ``changes`` change only settings a resume may change (:data:`RESUMABLE_CHANGES`); the others may
    be repeated with the run's own values.

    This is how a run resumes from its directory alone (``ssl-mix train --resume --out DIR``).

    Args:
        changes: ``{section: {field: value}}``, e.g. ``{"train": {"out_dir": "runs/a", "steps": 2000}}``.

    Returns:
        The configuration to resume with, or None when ``changes`` name no ``train.out_dir``, or name other settings
        and the directory has no checkpoint (a new run) or they do not apply to the run's configuration (then the
        caller builds the configuration, and :func:`check_resume` compares it).

    Raises:
        FileNotFoundError: ``changes`` name only resumable settings and the directory has no checkpoint.
        ValueError: ``changes`` change a setting that a resumed run must keep; the message names those settings
            alone, with the run's value and the new one.
    """
    given = {(section, name) for section, names in changes.items() for name in names}
    if ("train", "out_dir") not in given:
        return None
    last = RunDir(changes["train"]["out_dir"]).last
    if given <= RESUMABLE_CHANGES and not last.is_file():
        raise FileNotFoundError(f"resuming with only train.out_dir reads the run's configuration from {last}, but "
                                "there is no checkpoint there; check train.out_dir, or give the run's settings (a "
                                "preset, data.dataset, ...) to start it")
    if not last.is_file():
        return None
    saved = saved_config(last)
    try:
        resumed = saved.replace(**changes)
    except (TypeError, ValueError):  # e.g. a data.dataset for which the run's other data settings do not apply
        return None
    changed = _differences(saved.to_dict(), resumed.to_dict())
    if changed:
        keep = ", ".join(f"{section}.{name}" for section, name in sorted(RESUMABLE_CHANGES))
        raise ValueError(f"cannot resume {str(last)!r}: you changed {_listed(changed)}. A resumed run keeps the "
                         f"settings it started with (only {keep} may change); drop the change to resume with the "
                         "run's own configuration, or give a new train.out_dir to start a run with it.")
    return resumed


def _checked_state(path: str | Path) -> tuple[RunDir, Path, dict[str, Any]]:
    """``(run directory, checkpoint file, checkpoint state)`` of a run directory or checkpoint, format checked."""
    run_dir, checkpoint = RunDir.of_checkpoint(path)
    state = load_checkpoint(checkpoint)
    check_checkpoint_format(state, checkpoint)
    return run_dir, checkpoint, state


def note_fresh_start(run: RunDir) -> None:
    """Say on stderr that ``--resume`` found nothing to resume, so that a mistyped ``--out`` is noticed."""
    print(f"ssl-mix: --resume: no checkpoint at {run.last}; starting a new run in {run.root}", file=sys.stderr)


def update_checkpoint(path: str | Path, **entries: Any) -> Path:
    """Atomically rewrite a checkpoint with top-level ``entries`` added or replaced (e.g. ``calibration=``).

    Args:
        path: a checkpoint of the current format.
        **entries: values that :func:`torch.load` reads with ``weights_only=True`` (tensors, plain containers).

    Returns:
        The path.
    """
    state = load_checkpoint(path)
    check_checkpoint_format(state, path)
    state.update(entries)
    return save_checkpoint(state, path)


@dataclass
class TrainedRun:
    """A run loaded back from a checkpoint, to evaluate, analyse or use its models.

    Attributes:
        config: the run's configuration.
        step: the step the checkpoint was written at.
        models: ``{"teacher": ..., "student": ...}`` in eval mode on the requested device.
        spec: the dataset constants the models were trained with (normalisation, augmentation).
        classes: class names; output i of the models is ``classes[i]``.
        input_shape: ``(C, H, W)`` of the images the models take.
        dataset: the dataset the run trained on.
        checkpoint: the checkpoint file.
        run_dir: its run directory.
        calibration: ``{"temperature": {"student": T, "teacher": T}, ...}`` once calibrated, else None.
        preprocess: input transforms fitted on the training data, from the checkpoint's ``data`` entry.
        split: the summary of the label split (counts and seed), or None.
        test: the test set, when loaded (:func:`load_trained`), else None.
    """

    config: Config
    step: int
    models: dict[str, torch.nn.Module]
    spec: DataSpec
    classes: list[str]
    input_shape: tuple[int, int, int]
    dataset: str
    checkpoint: Path
    run_dir: RunDir
    calibration: dict[str, Any] | None = None
    preprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
    split: dict[str, Any] | None = None
    test: ImageArrays | None = None


def load_run(path: str | Path, *, device: str | torch.device = "auto") -> TrainedRun:
    """Load a run's student and EMA teacher from its checkpoint, without its training data.

    Args:
        path: a run directory (its ``last.pt`` is loaded) or a checkpoint file (``last.pt``, ``best.pt``).
        device: ``auto``, ``cpu``, ``cuda``...

    Returns:
        The :class:`TrainedRun`, with ``test`` None (see :func:`load_trained` for evaluation).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not an ssl_mix checkpoint, or one of another format version.
    """
    run_dir, checkpoint, state = _checked_state(path)
    cfg = Config.from_dict(state["config"])
    info = state["data"]
    spec = DataSpec(**info["spec"])
    input_shape = tuple(int(s) for s in info["input_shape"])
    target = local_device(str(device)) if not isinstance(device, torch.device) else device
    weights = {"teacher": state["teacher"], "student": state["model"]}
    models = {}
    for name, state_dict in weights.items():
        # The architecture only: the checkpoint's weights replace the starting ones.
        model = build_model(cfg.model, spec.num_classes, input_shape[0], (input_shape[1], input_shape[2]))
        model.load_state_dict(state_dict)
        models[name] = model.to(target).eval()
    return TrainedRun(config=cfg, step=int(state["step"]), models=models, spec=spec, classes=list(info["classes"]),
                      input_shape=input_shape, dataset=info["dataset"], checkpoint=checkpoint, run_dir=run_dir,
                      calibration=state.get("calibration"), preprocess=dict(info.get("preprocess") or {}),
                      split=info.get("split"))


def load_test_set(run: TrainedRun, dataset: str | None = None, data_root: str | None = None) -> ImageArrays:
    """The test set to evaluate ``run`` on: the run's own, or any compatible one.

    Args:
        run: a loaded run.
        dataset: a dataset name (default: the run's).
        data_root: where it lives (default: the run's ``data_root``). An image folder needs only ``test/<class>/``
            there, with class folders among the run's classes.

    Raises:
        ValueError: the test images do not fit the run's models (channels, size or classes).
    """
    dataset = dataset or run.config.data.dataset
    root = data_root if data_root is not None else run.config.data.data_root
    d = run.config.data  # an image folder is decoded as the run decoded its training images
    folder = ({**d.decode_settings(), "classes": run.classes, "channels": run.input_shape[0]}
              if dataset == "folder" else {"label_column": d.label_column} if dataset == "features" else {})
    test = load_arrays(dataset, root, "test", **folder)
    if test.image_shape != run.input_shape:
        raise ValueError(f"the {dataset} test images are {test.image_shape} (C, H, W) but the run's models take "
                         f"{run.input_shape}; evaluate on images of the size and channels the run trained on")
    if test.classes != run.classes:
        raise ValueError(f"the {dataset} test set has classes {test.classes[:5]}... but the run was trained on "
                         f"{run.classes[:5]}...; evaluate on a test set with the run's classes, in its order")
    return test


def load_trained(checkpoint: str | Path, *, dataset: str | None = None, data_root: str | None = None,
                 device: str | torch.device = "auto") -> TrainedRun:
    """:func:`load_run` plus the test set to evaluate on (``run.test``), as ``ssl-mix eval`` and ``analyze`` use.

    Args:
        checkpoint: a run directory or a checkpoint file.
        dataset: evaluate on this dataset's test set instead of the run's (same classes expected).
        data_root: where that dataset lives (default: the run's ``data_root``).
        device: ``auto``, ``cpu``, ``cuda``...
    """
    run = load_run(checkpoint, device=device)
    run.test = load_test_set(run, dataset, data_root)
    return run



def format_report(report: Mapping[str, Any]) -> str:
    """A run's report as the lines ``ssl-mix train`` prints at the end: length, final metrics, model selection and
    the fitted temperatures.

    Args:
        report: the dict :func:`ssl_mix.run_experiment` returns (and ``report.json`` holds).

    Returns:
        The text, one model and set per line, without a final newline.
    """
    lines = [f"trained {report['steps']} steps in {report['wall_time_s']:.1f} s; run directory: {report['out_dir']}"]
    for model_name, sets in report["final"].items():
        for set_name, m in sets.items():
            lines.append(f"  {model_name:<8} {set_name:<6} accuracy {m['accuracy']:6.2f}%  nll {m['nll']:.4f}  "
                         f"ece {m['ece']:.2f}%")
    best = report.get("best")
    if best:
        test = f", test accuracy {best['test']['accuracy']:.2f}%" if best.get("test") else ""
        lines.append(f"  selected by validation: {best['model']} at step {best['step']} (valid accuracy "
                     f"{best['valid_accuracy']:.2f}%{test}); saved as {RunDir(report['out_dir']).best}")
    else:
        lines.append(f"  model selection: {report['selection']}")
    for checkpoint, record in report.get("calibration", {}).items():
        for model_name, temperature in record["temperature"].items():
            valid = record["valid"][model_name]
            lines.append(f"  calibrated {checkpoint} {model_name}: T={temperature:.3f} on {record['count']} validation "
                         f"images, ece {valid['before']['ece']:.2f}% -> {valid['after']['ece']:.2f}%, nll "
                         f"{valid['before']['nll']:.4f} -> {valid['after']['nll']:.4f}")
    return "\n".join(lines)
