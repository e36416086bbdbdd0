"""From a :class:`~ssl_mix.config.Config` to a trained model: data, split, loader, model, method, trainer.

This is what ``ssl-mix train`` runs; the Python API offers the same in one call, :func:`run_experiment`, or piece
by piece (:func:`load_run_data`, :func:`build_method`, :func:`build_trainer`) for users who swap a part.

Under torchrun every process runs the same code: :func:`run_experiment` joins the process group, the loader takes
this process's shard, and only process 0 writes files (see :mod:`ssl_mix.distributed`).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix import distributed
from ssl_mix.config import Config, MethodConfig
from ssl_mix.data import (
    DataSpec,
    ImageArrays,
    LabelSplit,
    TensorDualLoader,
    TorchDualLoader,
    ZCA,
    arrays_dataset,
    concat_arrays,
    data_spec,
    eval_batches,
    fit_zca,
    load_arrays,
    make_split,
)
from ssl_mix.methods import ERM, ICT, ManifoldMixup, Method, Mixup
from ssl_mix.models import create_model
from ssl_mix.ramps import ConsistencySchedule
from ssl_mix.trainer import Trainer, resolve_device

__all__ = ["RunData", "load_run_data", "build_method", "build_preprocess", "build_loader", "build_trainer",
           "run_experiment", "TrainedRun", "load_trained", "trained_models"]

EVAL_BATCH_SIZE = 500


@dataclass
class RunData:
    """The data of one run, split and held in memory.

    Attributes:
        spec: dataset constants (classes, normalisation, augmentation).
        split: the label-budget split used (saved as ``split.json`` in the run directory).
        labeled, unlabeled: the training streams.
        valid: the validation subset (None without ``num_valid_per_class``).
        test: the test set.
    """

    spec: DataSpec
    split: LabelSplit
    labeled: ImageArrays
    unlabeled: ImageArrays
    valid: ImageArrays | None
    test: ImageArrays


def load_run_data(cfg: Config) -> RunData:
    """Load the dataset named in ``cfg.data`` and draw (or load) its label split, seeded by ``cfg.train.seed``."""
    d = cfg.data
    train = load_arrays(d.dataset, d.data_root, "train", download=d.download)
    test = load_arrays(d.dataset, d.data_root, "test", download=d.download)
    spec = data_spec(d.dataset, train)
    if d.split is not None:
        split = LabelSplit.load(d.split, dataset=d.dataset, targets=train.targets)
    else:
        split = make_split(train.targets, d.num_labels, seed=cfg.train.seed, dataset=d.dataset,
                           num_classes=spec.num_classes, num_valid_per_class=d.num_valid_per_class,
                           labeled_in_unlabeled=d.labeled_in_unlabeled)
    unlabeled = train.subset(split.unlabeled)
    extra_sets = []
    if d.use_extra:
        if d.dataset != "svhn":
            raise ValueError(f"use_extra adds SVHN's 'extra' images; it does not apply to dataset {d.dataset!r}")
        extra_sets.append(load_arrays("svhn", d.data_root, "extra", download=d.download))
    if d.dataset == "folder":
        folder_unlabeled = load_arrays("folder", d.data_root, "unlabeled")
        if len(folder_unlabeled):
            extra_sets.append(folder_unlabeled)
    if extra_sets:
        unlabeled = concat_arrays([unlabeled, *extra_sets])
    return RunData(spec=spec, split=split, labeled=train.subset(split.labeled), unlabeled=unlabeled,
                   valid=train.subset(split.valid) if split.valid else None, test=test)


def build_method(cfg: MethodConfig, *, num_classes: int, total_steps: int) -> Method:
    """The :class:`~ssl_mix.methods.Method` a config section describes (ramps sized to ``total_steps``)."""
    if cfg.name == "erm":
        return ERM()
    if cfg.name == "mixup":
        return Mixup(cfg.k, cfg.alpha, per_sample=cfg.per_sample, cutmix_alpha=cfg.cutmix_alpha,
                     switch_prob=cfg.cutmix_switch_prob, num_classes=num_classes)
    if cfg.name == "manifold-mixup":
        return ManifoldMixup(cfg.mix_layers, cfg.k, cfg.alpha, per_sample=cfg.per_sample)
    schedule = ConsistencySchedule(max_weight=cfg.consistency_weight, ramp=cfg.ramp,
                                   ramp_steps=round(cfg.ramp_fraction * total_steps))
    return ICT(cfg.k, cfg.alpha, per_sample=cfg.per_sample, schedule=schedule, supervised=cfg.supervised,
               sup_alpha=cfg.sup_alpha, target=cfg.consistency_target, distance=cfg.consistency_distance,
               teacher_mode=cfg.teacher_mode, joint_forward=cfg.joint_forward)


_METHOD_CLASSES: dict[str, type[Method]] = {"erm": ERM, "mixup": Mixup, "manifold-mixup": ManifoldMixup, "ict": ICT}


def build_preprocess(cfg: Config, data: RunData, device: torch.device | str = "cpu") -> ZCA | None:
    """The batch transform applied after normalisation: the ZCA whitening of ``cfg.data.zca`` (None when off).

    Fitted (:func:`~ssl_mix.fit_zca`, with ``cfg.data.zca_eps``) on the training images, the labeled examples and the
    unlabeled pool, never on the validation or test images; returned on ``device``. The loaders, the evaluation
    batches and the linearity probe of :func:`build_trainer` all apply this one object, and the checkpoint keeps it
    (restored by :func:`load_trained` as ``TrainedRun.preprocess``)."""
    if not cfg.data.zca:
        return None
    pool = data.unlabeled if data.split.labeled_in_unlabeled else concat_arrays([data.labeled, data.unlabeled])
    return fit_zca(pool.images.to(device), cfg.data.zca_eps, mean=data.spec.mean, std=data.spec.std)


def _checkpoint_data(preprocess: ZCA | None) -> dict[str, Any] | None:
    # Where a checkpoint keeps the run's input transform: state["data"]["preprocess"]["zca"].
    return None if preprocess is None else {"preprocess": {"zca": preprocess.state_dict()}}


def _restore_preprocess(state: dict[str, Any], device: torch.device) -> ZCA | None:
    zca = ((state.get("data") or {}).get("preprocess") or {}).get("zca")
    if zca is None:
        if Config.from_dict(state["config"]).data.zca:
            raise ValueError("this checkpoint's run whitened its inputs (data.zca) but the checkpoint holds no ZCA "
                             "transform; evaluate it with the code version that wrote it")
        return None
    return ZCA.from_state_dict(zca).to(device)


def build_loader(cfg: Config, data: RunData, device: torch.device, *, with_unlabeled: bool | None = None,
                 preprocess: ZCA | None = None):
    """The dual labeled/unlabeled loader ``cfg.data.loader`` names, seeded by ``cfg.train.seed``; in a distributed
    run, this process's shard (the batch sizes are per process).

    ``with_unlabeled`` (default: whether ``cfg.method`` uses unlabeled data) False makes the loader skip the
    unlabeled stream and yield empty unlabeled batches; the labeled batches are the same either way. ``preprocess``
    (see :func:`build_preprocess`) is applied to every normalised batch."""
    d = cfg.data
    if with_unlabeled is None:
        with_unlabeled = _METHOD_CLASSES[cfg.method.name].uses_unlabeled
    common = {"rank": distributed.rank(), "world_size": distributed.world_size(), "with_unlabeled": with_unlabeled,
              "preprocess": preprocess}
    if d.loader == "tensor":
        return TensorDualLoader(data.labeled, data.unlabeled, data.spec, batch_size=d.batch_size,
                                unlabeled_batch_size=d.unlabeled_batch_size, seed=cfg.train.seed, device=device,
                                augment=d.augment, **common)
    return TorchDualLoader(arrays_dataset(data.labeled, data.spec, augment=d.augment),
                           arrays_dataset(data.unlabeled, data.spec, augment=d.augment, labeled=False),
                           batch_size=d.batch_size, unlabeled_batch_size=d.unlabeled_batch_size, seed=cfg.train.seed,
                           num_workers=d.num_workers, device=device, **common)


def build_trainer(cfg: Config, data: RunData | None = None) -> Trainer:
    """Everything :func:`run_experiment` builds, without training: data, model, method, loader, trainer."""
    data = data if data is not None else load_run_data(cfg)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # initial weights
    model = create_model(cfg.model.name, data.spec.num_classes, in_channels=data.labeled.images.shape[1],
                         bn_momentum=cfg.model.bn_momentum, dropout=cfg.model.dropout)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed.world_size() > 1:
        # Same initial weights everywhere (above), then one stream per process for dropout masks and timm's CutMix.
        seed = distributed.rank_seed(cfg.train.seed)
        torch.manual_seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        random.seed(seed)
    method = build_method(cfg.method, num_classes=data.spec.num_classes, total_steps=cfg.train.steps)
    preprocess = build_preprocess(cfg, data, device)
    loader = build_loader(cfg, data, device, with_unlabeled=method.uses_unlabeled, preprocess=preprocess)
    eval_sets: dict[str, Any] = {
        "test": lambda: eval_batches(data.test, data.spec, EVAL_BATCH_SIZE, device, preprocess=preprocess)}
    if data.valid is not None:
        eval_sets["valid"] = lambda: eval_batches(data.valid, data.spec, EVAL_BATCH_SIZE, device, preprocess=preprocess)
    linearity = None
    if cfg.train.linearity_every:
        from ssl_mix.analysis import linearity_probe

        held_out = data.valid if data.valid is not None else data.test
        linearity = linearity_probe(held_out, data.spec, num_pairs=cfg.train.linearity_pairs, seed=cfg.train.seed,
                                    device=device, preprocess=preprocess)
    return Trainer(model, method, loader, train=cfg.train, optim=cfg.optim, ema_decay=cfg.method.ema_decay,
                   ema_warmup=cfg.method.ema_warmup, teacher_bn=cfg.method.teacher_bn, eval_sets=eval_sets,
                   config=cfg.to_dict(), linearity=linearity, data_state=_checkpoint_data(preprocess))


def run_experiment(cfg: Config, *, resume: bool = False, data: RunData | None = None) -> dict[str, Any]:
    """Train one run end to end and return its report.

    Args:
        cfg: the run's configuration.
        resume: continue from ``out_dir/last.pt`` if it exists (the checkpoint's config must match ``cfg``,
            except for ``train.steps``, which may be raised to train longer).
        data: pre-loaded data (skips loading; used when several runs share one dataset).

    Under torchrun it joins the process group for the run (and leaves it afterwards) unless the caller already
    did; call it on every process.

    Returns:
        The report of :meth:`Trainer.fit`, with the split saved as ``out_dir/split.json``.
    """
    with distributed.session(cfg.train.device, timeout=cfg.train.dist_timeout):
        out_dir = Path(cfg.train.out_dir)
        checkpoint = out_dir / "last.pt"
        resuming = resume and _exists_everywhere(checkpoint)
        if resuming:
            _check_resume_config(cfg, out_dir / "config.json")
        data = data if data is not None else load_run_data(cfg)
        trainer = build_trainer(cfg, data)
        if distributed.is_main():
            out_dir.mkdir(parents=True, exist_ok=True)
            data.split.save(out_dir / "split.json")
            # Written atomically: the other processes may be reading the previous one in _check_resume_config.
            tmp = out_dir / "config.json.tmp"
            tmp.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
            os.replace(tmp, out_dir / "config.json")
        if resuming:
            trainer.resume(checkpoint)
        return trainer.fit()


def _exists_everywhere(path: Path) -> bool:
    found = distributed.all_gather_objects(path.exists())
    if any(found) and not all(found):
        missing = [r for r, ok in enumerate(found) if not ok]
        raise FileNotFoundError(f"cannot resume: {path} exists for some processes but not for process(es) {missing}; "
                                "every process reads it, so put the run directory on a file system all nodes share "
                                "(or copy last.pt and config.json there)")
    return found[0]


def _check_resume_config(cfg: Config, saved_path: Path) -> None:
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    current = cfg.to_dict()
    diffs = []
    for section, values in current.items():
        for key, value in values.items():
            if (section, key) in {("train", "steps"), ("train", "progress"), ("train", "dist_timeout")}:
                continue
            old = saved.get(section, {}).get(key)
            if old != value:
                diffs.append(f"{section}.{key}: checkpoint has {old!r}, now {value!r}")
    if diffs:
        raise ValueError("cannot resume: the configuration differs from the run being resumed ("
                         + "; ".join(diffs) + "). Use the same flags, or a new --out directory.")


@dataclass
class TrainedRun:
    """A finished (or checkpointed) run, loaded back for evaluation or analysis.

    Attributes:
        config: the run's configuration.
        step: the step the checkpoint was written at.
        models: ``{"student": ..., "teacher": ...}`` in eval mode on the requested device.
        test: the test images of ``dataset`` (the run's dataset unless overridden).
        spec: that dataset's constants.
        dataset: the dataset the test images come from.
        preprocess: the run's input transform after normalisation (its :class:`~ssl_mix.ZCA`, on the models'
            device), or None. Pass it to :func:`~ssl_mix.eval_batches` (``preprocess=``) or call it on normalised
            images, so that evaluation and prediction see inputs as training did.
    """

    config: Config
    step: int
    models: dict[str, torch.nn.Module]
    test: ImageArrays
    spec: DataSpec
    dataset: str
    preprocess: ZCA | None = None


def load_trained(checkpoint: str | Path, *, dataset: str | None = None, data_root: str | None = None,
                 device: str = "auto") -> TrainedRun:
    """Rebuild the student and the EMA teacher of a checkpoint written by :class:`~ssl_mix.Trainer`.

    Args:
        checkpoint: ``last.pt`` or ``best.pt`` of a run.
        dataset: evaluate on this dataset's test set instead of the run's (same classes expected).
        data_root: where that dataset lives (default: the run's ``data_root``).
        device: ``auto``, ``cpu``, ``cuda``...

    Raises:
        ValueError: the checkpoint holds no run configuration (not written by ``ssl-mix train``), or its run used
            ZCA whitening but the checkpoint holds no transform.
    """
    from ssl_mix.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    if not state.get("config"):
        raise ValueError(f"{checkpoint} holds no run configuration; it was not written by ssl-mix train")
    cfg = Config.from_dict(state["config"])
    dataset = dataset or cfg.data.dataset
    root = data_root if data_root is not None else cfg.data.data_root
    train = load_arrays(dataset, root, "train") if dataset == "folder" else None
    test = load_arrays(dataset, root, "test")
    spec = data_spec(dataset, train)
    models = trained_models(state, num_classes=spec.num_classes, in_channels=test.images.shape[1], device=device)
    preprocess = _restore_preprocess(state, resolve_device(device))
    return TrainedRun(config=cfg, step=int(state["step"]), models=models, test=test, spec=spec, dataset=dataset,
                      preprocess=preprocess)


def trained_models(state: dict[str, Any], *, num_classes: int, in_channels: int,
                   device: str = "auto") -> dict[str, torch.nn.Module]:
    """``{"teacher": ..., "student": ...}`` rebuilt from a loaded checkpoint dict, in eval mode on ``device``."""
    cfg = Config.from_dict(state["config"])
    weights = {"teacher": {k.removeprefix("module."): v for k, v in state["teacher"].items() if k.startswith("module.")},
               "student": state["model"]}
    models = {}
    for name, state_dict in weights.items():
        model = create_model(cfg.model.name, num_classes, in_channels=in_channels,
                             bn_momentum=cfg.model.bn_momentum, dropout=cfg.model.dropout)
        model.load_state_dict(state_dict)
        models[name] = model.to(resolve_device(device)).eval()
    return models
