"""From a :class:`~ssl_mix.config.Config` to a trained model: data, split, loader, model, method, trainer.

This is what ``ssl-mix train`` runs; the Python API offers the same in one call, :func:`run_experiment`, or piece
by piece (:func:`load_run_data`, :func:`build_method`, :func:`build_teacher`, :func:`build_trainer`) for users who
swap a part.

Under torchrun every process runs the same code: :func:`run_experiment` joins the process group, the loader takes
this process's shard, and only process 0 writes files (see :mod:`ssl_mix.distributed`).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix import distributed
from ssl_mix.atomic import write_atomic
from ssl_mix.calibration import calibrate_run
from ssl_mix.checkpoint import load_checkpoint
from ssl_mix.config import Config, MethodConfig, format_value
from ssl_mix.data import (
    ZCA,
    ArrayDataset,
    ImageFileDataset,
    TensorDualLoader,
    TorchDualLoader,
    arrays_dataset,
    concat_arrays,
    eval_batches,
    fit_zca,
    preprocess_entry,
    run_data,
)
from ssl_mix.data.run_data import RunData, describe_run_data, folder_run_files  # noqa: F401 (folder_run_files: importable from here)
from ssl_mix.evaluation import EVAL_BATCH_SIZE
from ssl_mix.methods import Method, method_class
from ssl_mix.models import available_models, build_model, get_stages
from ssl_mix.optim import schedule_notes
from ssl_mix.run import RunDir, check_resume, data_info, note_fresh_start, write_json
from ssl_mix.teacher import EMATeacher
from ssl_mix.threads import apply_threads
from ssl_mix.train_logs import tensorboard_writer
from ssl_mix.trainer import Trainer, resolve_device
from ssl_mix.weights import (
    build_starting_model,
    check_starting_weights,
    describe_weights,
    weights_record,
)

__all__ = ["load_run_data", "build_method", "build_teacher", "build_preprocess", "build_loader", "build_trainer",
           "run_experiment"]


def load_run_data(cfg: Config) -> RunData:
    """The run's data (:func:`ssl_mix.data.run_data.load_run_data`): ``cfg.data`` with the inputs its pretrained
    network expects (:func:`~ssl_mix.data.run_data.resolve_inputs`), its split seeded by ``cfg.train.seed``."""
    return run_data.load_run_data(run_data.resolve_inputs(cfg).data, seed=cfg.train.seed)


def build_method(cfg: MethodConfig, *, num_classes: int, total_steps: int) -> Method:
    """The :class:`~ssl_mix.methods.Method` a config section describes: the registered class of ``cfg.name``
    built by its :meth:`~ssl_mix.methods.Method.from_config` (ramps sized to ``total_steps``)."""
    return method_class(cfg.name).from_config(cfg, num_classes=num_classes, total_steps=total_steps)


def build_teacher(cfg: MethodConfig, model: torch.nn.Module) -> EMATeacher:
    """The EMA teacher of ``model`` that a config section describes (``ema_decay``, ``ema_warmup``,
    ``teacher_bn``)."""
    return EMATeacher(model, decay=cfg.ema_decay, warmup=cfg.ema_warmup, buffers=cfg.teacher_bn)


def build_preprocess(cfg: Config, data: RunData, device: torch.device | str = "cpu") -> ZCA | None:
    """The batch transform applied after normalisation: the ZCA whitening of ``cfg.data.zca`` (None when off).

    Fitted (:func:`~ssl_mix.fit_zca`, with ``cfg.data.zca_eps``) on the training images, the labeled examples and the
    unlabeled pool, never on the validation or test images; returned on ``device``. The loaders, the evaluation
    batches and the linearity probe of :func:`build_trainer` all apply this one object, and checkpoints keep it
    (:func:`~ssl_mix.preprocess_entry`; :func:`~ssl_mix.preprocess_transform` rebuilds it from a loaded run)."""
    if not cfg.data.zca:
        return None
    if isinstance(data.labeled, ImageFileDataset):
        raise ValueError("data.zca fits the whitening on the training images in memory, but this folder is "
                         "streamed from its files (data.loader=torch, or a pool above data.max_memory_gb); use the "
                         "in-memory path (data.loader=tensor and a larger data.max_memory_gb) or data.zca=false")
    pool = data.unlabeled if data.split.labeled_in_unlabeled else concat_arrays([data.labeled, data.unlabeled])
    return fit_zca(pool.images.to(device), cfg.data.zca_eps, mean=data.spec.mean, std=data.spec.std)


def build_loader(cfg: Config, data: RunData, device: torch.device, *, with_unlabeled: bool | None = None,
                 preprocess: ZCA | None = None):
    """The dual labeled/unlabeled loader ``cfg.data.loader`` names, seeded by ``cfg.train.seed``; in a distributed
    run, this process's shard (the batch sizes are per process).

    ``with_unlabeled`` (default: whether ``cfg.method`` uses unlabeled data) False makes the loader skip the
    unlabeled stream and yield empty unlabeled batches; the labeled batches are the same either way. ``preprocess``
    (see :func:`build_preprocess`) is applied to every normalised batch. The unlabeled views are those the method
    asks for (:meth:`~ssl_mix.Method.views_for`); several views make the in-memory ``torch`` loader load uint8
    images and augment them in batches on the device, as for a streamed folder."""
    d = cfg.data
    method = method_class(cfg.method.name)
    if with_unlabeled is None:
        with_unlabeled = method.uses_unlabeled
    views = tuple(method.views_for(cfg.method))
    common = {"rank": distributed.rank(), "world_size": distributed.world_size(), "with_unlabeled": with_unlabeled,
              "preprocess": preprocess, "unlabeled_views": views}
    if isinstance(data.labeled, ImageFileDataset):  # an image folder streamed from its files
        # Workers decode uint8 images; crop, flip and normalisation run in batches on the device.
        return TorchDualLoader(data.labeled, data.unlabeled, batch_size=d.batch_size,
                               unlabeled_batch_size=d.unlabeled_batch_size, seed=cfg.train.seed, spec=data.spec,
                               augment=d.augment, num_workers=d.num_workers, device=device,
                               balance_labeled=data.labeled.files.targets if d.balance_labeled else None, **common)
    if d.loader == "tensor":
        return TensorDualLoader(data.labeled, data.unlabeled, data.spec, batch_size=d.batch_size,
                                unlabeled_batch_size=d.unlabeled_batch_size, seed=cfg.train.seed, device=device,
                                augment=d.augment, balance_labeled=d.balance_labeled, **common)
    if views != ("weak",):
        # Several views are made from one uint8 batch on the device: the workers load the images, untransformed.
        return TorchDualLoader(ArrayDataset(data.labeled), ArrayDataset(data.unlabeled, labeled=False),
                               batch_size=d.batch_size, unlabeled_batch_size=d.unlabeled_batch_size,
                               seed=cfg.train.seed, spec=data.spec, augment=d.augment, num_workers=d.num_workers,
                               device=device, balance_labeled=data.labeled.targets if d.balance_labeled else None,
                               **common)
    return TorchDualLoader(arrays_dataset(data.labeled, data.spec, augment=d.augment),
                           arrays_dataset(data.unlabeled, data.spec, augment=d.augment, labeled=False),
                           batch_size=d.batch_size, unlabeled_batch_size=d.unlabeled_batch_size, seed=cfg.train.seed,
                           num_workers=d.num_workers, device=device,
                           balance_labeled=data.labeled.targets if d.balance_labeled else None, **common)


def build_trainer(cfg: Config, data: RunData | None = None, *, weights: Mapping[str, Any] | None = None) -> Trainer:
    """Everything :func:`run_experiment` builds, without training: data, model, method, teacher, loader, the
    TensorBoard writer (at the run directory's ``tensorboard/``) and the trainer. The trainer records ``cfg`` with
    the inputs its pretrained network expects (:func:`~ssl_mix.data.run_data.resolve_inputs`).

    The model starts from the weights ``cfg.model`` chooses (:func:`ssl_mix.weights.build_starting_model`), recorded
    in the checkpoints' ``data`` entry; ``weights``, the record of a run being resumed (its checkpoint's), skips
    loading them: the trainer's :meth:`~ssl_mix.Trainer.resume` loads the checkpoint's weights instead."""
    cfg = run_data.resolve_inputs(cfg)
    data = data if data is not None else load_run_data(cfg)
    if data.spec.features != (cfg.model.name == "mlp"):
        raise ValueError("feature vectors (data.dataset='features') train model.name='mlp', and the mlp takes "
                         f"feature vectors only; got data.dataset={cfg.data.dataset!r} with "
                         f"model.name={cfg.model.name!r}")
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # initial weights
    shape = data.labeled.image_shape
    if weights is None:
        model, weights = build_starting_model(cfg.model, data.spec.num_classes, shape[0], (shape[1], shape[2]),
                                              classes=data.labeled.classes)
    else:
        model = build_model(cfg.model, data.spec.num_classes, shape[0], (shape[1], shape[2]))
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed.world_size() > 1:
        # Same initial weights everywhere (above), then one stream per process for dropout masks and timm's CutMix.
        seed = distributed.rank_seed(cfg.train.seed)
        torch.manual_seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        random.seed(seed)
    method = build_method(cfg.method, num_classes=data.spec.num_classes, total_steps=cfg.train.steps)
    _check_stages(cfg, model, method)
    preprocess = build_preprocess(cfg, data, device)
    loader = build_loader(cfg, data, device, with_unlabeled=method.uses_unlabeled, preprocess=preprocess)
    eval_sets: dict[str, Any] = {}
    if len(data.test):  # an image folder may have no test/
        eval_sets["test"] = lambda: eval_batches(data.test, data.spec, EVAL_BATCH_SIZE, device, preprocess=preprocess)
    if data.valid is not None:
        eval_sets["valid"] = lambda: eval_batches(data.valid, data.spec, EVAL_BATCH_SIZE, device, preprocess=preprocess)
    linearity = None
    if cfg.train.linearity_every:
        from ssl_mix.analysis.linearity import linearity_probe

        held_out = data.valid if data.valid is not None else data.test
        linearity = linearity_probe(held_out, data.spec, num_pairs=cfg.train.linearity_pairs, seed=cfg.train.seed,
                                    device=device, preprocess=preprocess)
    info = data_info(data.spec, data.labeled.classes, data.labeled.image_shape, data.split,
                     preprocess=preprocess_entry(preprocess), weights=weights, encoder=_feature_encoder(cfg))
    return Trainer(model, method, loader, train=cfg.train, optim=cfg.optim, teacher=build_teacher(cfg.method, model),
                   writer=tensorboard_writer(RunDir(cfg.train.out_dir).tensorboard), eval_sets=eval_sets,
                   config=cfg.to_dict(), linearity=linearity, data_info=info)


def _feature_encoder(cfg: Config) -> dict[str, Any] | None:
    """The encoder record of a feature file made by ``ssl-mix embed`` (None for other data)."""
    if cfg.data.dataset != "features" or not cfg.data.data_root:
        return None
    from ssl_mix.data import read_feature_meta

    return (read_feature_meta(cfg.data.data_root) or {}).get("encoder")


def _check_stages(cfg: Config, model: torch.nn.Module, method: Method) -> None:
    """Refuse, before training, a method or analysis that needs hidden layers on a model without stages."""
    needs = ([f"method.name {cfg.method.name} with method.mix_layers beyond input"] if method.needs_stages else []) + (
        ["the linearity analysis (train.linearity_every)"] if cfg.train.linearity_every else [])
    if not needs:
        return
    try:
        get_stages(model)
    except TypeError:
        raise ValueError(
            f"{' and '.join(needs)} need(s) a model split into stages (hidden layers to mix or measure), and "
            f"{cfg.model.name} cannot be split (vision transformers and other models whose forward pass is not a "
            f"chain of modules). Stages exist in ssl_mix's models ({', '.join(available_models())}) and in timm's "
            "convolutional models (timm:resnet18, timm:convnext_atto, timm:efficientnet_b0, ...: "
            "ssl_mix.models.TimmStaged). With this model use erm, mixup, ict, fixmatch or mixmatch (they need only "
            "a forward pass), method.mix_layers input, and train.linearity_every 0") from None


def run_experiment(cfg: Config, *, resume: bool = False, data: RunData | None = None) -> dict[str, Any]:
    """Train one run end to end and return its report.

    Args:
        cfg: the run's configuration.
        resume: continue from the run directory's latest checkpoint if there is one (its config must match
            ``cfg``, except for ``train.steps``, which may be raised to train longer); with none, start from
            step 0 and say so on stderr.
        data: pre-loaded data (skips loading; used when several runs share one dataset).

    Under torchrun it joins the process group for the run (and leaves it afterwards) unless the caller already
    did; call it on every process.

    Returns:
        The report of :meth:`Trainer.fit`, with the CPU thread count under ``threads`` (``train.threads``, see
        :func:`ssl_mix.threads.apply_threads`) and the fitted temperatures under ``calibration`` when the run has a
        validation split; it is written once, to the run directory's ``report.json``, beside the split, the config
        and the checkpoints (see :mod:`ssl_mix.run`).
    """
    threads = apply_threads(cfg.train.threads)
    given, cfg = cfg, run_data.resolve_inputs(cfg)  # the config the run records: evaluation and export read it
    with distributed.session(cfg.train.device, timeout=cfg.train.dist_timeout):
        run = RunDir(cfg.train.out_dir)
        resuming = resume and _exists_everywhere(run.last)
        resumed_weights = None
        if resuming:
            state = load_checkpoint(run.last)
            check_resume(cfg, state, run.last)
            resumed_weights = (state.get("data") or {}).get("weights") or weights_record(cfg.model.name, "random")
        elif resume and distributed.is_main():
            note_fresh_start(run)
        if not resuming:  # before the data: a mistyped weights path fails at once
            check_starting_weights(cfg.model)
        data = data if data is not None else load_run_data(cfg)
        if distributed.is_main():
            filled = {k: v for k, v in cfg.to_dict()["data"].items() if v != given.to_dict()["data"][k]}
            if filled:
                source = (f"the run model.init_from={cfg.model.init_from}" if cfg.model.init_from else
                          f"{cfg.model.name}'s pretrained configuration")
                print(f"ssl-mix: inputs as the starting weights expect them ({source}): "
                      + ", ".join(f"data.{k}={format_value(v)}" for k, v in filled.items()), file=sys.stderr)
            print(describe_run_data(data, cfg.data), file=sys.stderr)
            for note in schedule_notes(cfg.optim, cfg.train.steps):
                print(f"ssl-mix: note: {note}", file=sys.stderr)
        trainer = build_trainer(cfg, data, weights=resumed_weights)
        if distributed.is_main():
            print(describe_weights(trainer.data_info["weights"]), file=sys.stderr)
            run.root.mkdir(parents=True, exist_ok=True)
            data.split.save(run.split)
            if cfg.data.skip_bad_images:
                _write_skipped(run.skipped_images, data.skipped_images)
            write_json(run.config, cfg.to_dict())  # atomic: other processes may be reading the previous one
        if resuming:
            trainer.resume(run.last)
        report = trainer.fit()
        report["threads"] = threads
        report["weights"] = trainer.data_info["weights"]
        if distributed.is_main():
            if data.valid is not None and len(data.valid):
                calibrated = calibrate_run(run.root, device=trainer.device, valid=data.valid)
                report["calibration"] = {Path(path).name: record for path, record in calibrated.items()}
            write_json(run.report, report)
        distributed.barrier()
        return report


def _write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    """List the skipped image files (``path<TAB>reason`` lines; empty when none was skipped), atomically, and say how
    many were skipped."""
    write_atomic(path, "".join(f"{file}\t{reason}\n" for file, reason in skipped))
    if skipped:
        print(f"ssl-mix: skipped {len(skipped)} unreadable image file(s) (--skip-bad-images); they are listed in "
              f"{path}", file=sys.stderr)


def _exists_everywhere(path: Path) -> bool:
    found = distributed.all_gather_objects(path.exists())
    if any(found) and not all(found):
        missing = [r for r, ok in enumerate(found) if not ok]
        raise FileNotFoundError(f"cannot resume: {path} exists for some processes but not for process(es) {missing}; "
                                "every process reads it, so put the run directory on a file system all nodes share "
                                f"(or copy {path.name} there)")
    return found[0]
