"""From a :class:`~ssl_mix.config.Config` to a trained model: data, split, loader, model, method, trainer.

This is what ``ssl-mix train`` runs; the Python API offers the same in one call, :func:`run_experiment`, or piece
by piece (:func:`load_run_data`, :func:`build_method`, :func:`build_teacher`, :func:`build_trainer`) for users who
swap a part.

Under torchrun every process runs the same code: :func:`run_experiment` joins the process group, the loader takes
this process's shard, and only process 0 writes files (see :mod:`ssl_mix.distributed`).
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix import distributed
from ssl_mix.calibration import NoValidationSplitError, calibrate_checkpoints
from ssl_mix.checkpoint import load_checkpoint
from ssl_mix.config import Config, MethodConfig
from ssl_mix.data import (
    ZCA,
    BadImageError,
    DataSpec,
    ImageArrays,
    ImageFileDataset,
    ImageFiles,
    LabelSplit,
    TensorDualLoader,
    TorchDualLoader,
    added_labels,
    arrays_dataset,
    concat_arrays,
    data_spec,
    decode_files,
    eval_batches,
    fit_zca,
    folder_files,
    load_arrays,
    make_split,
    preprocess_entry,
    scan_files,
    spec_from_stats,
    unlabeled_dir_files,
)
from ssl_mix.methods import Method, method_class
from ssl_mix.models import create_model
from ssl_mix.run import RunDir, check_resume, data_info, load_run, note_fresh_start, write_json
from ssl_mix.teacher import EMATeacher
from ssl_mix.train_logs import tensorboard_writer
from ssl_mix.trainer import Trainer, resolve_device

__all__ = ["RunData", "load_run_data", "folder_run_files", "build_method", "build_teacher", "build_preprocess",
           "build_loader", "build_trainer",
           "run_experiment", "calibrate_run"]

EVAL_BATCH_SIZE = 500


@dataclass
class RunData:
    """The data of one run, split, held in memory or (for image folders too large for it) streamed from the files.

    Attributes:
        spec: dataset constants (classes, normalisation, augmentation).
        split: the label-budget split used (saved in the run directory, see :class:`ssl_mix.run.RunDir`).
        labeled, unlabeled: the training streams: in memory, or datasets that decode the files on the fly.
        valid: the validation subset (None without ``num_valid_per_class``).
        test: the test set (empty when an image folder has no ``test/``).
        skipped_images: image files left out as unreadable (``--skip-bad-images``), each ``(path, reason)``.
    """

    spec: DataSpec
    split: LabelSplit
    labeled: ImageArrays | ImageFileDataset
    unlabeled: ImageArrays | ImageFileDataset
    valid: ImageArrays | None
    test: ImageArrays
    skipped_images: list[tuple[str, str]] = field(default_factory=list)


def load_run_data(cfg: Config) -> RunData:
    """Load the dataset named in ``cfg.data`` and draw (or load) its label split, seeded by ``cfg.train.seed``.

    An image folder is decoded into memory (through the decoded-image cache) unless ``cfg.data.loader`` is
    ``torch`` or the decoded training pool (images x C x H x W bytes) would exceed ``cfg.data.max_memory_gb``; it is
    then streamed from the files by the ``DataLoader`` path (a message says so).
    """
    d = cfg.data
    if d.dataset == "folder":
        return _load_folder_run(cfg)
    train = load_arrays(d.dataset, d.data_root, "train", download=d.download)
    test = load_arrays(d.dataset, d.data_root, "test", download=d.download)
    spec = data_spec(d.dataset, train)
    split = _split(cfg, train.targets, spec.num_classes)
    unlabeled = train.subset(split.unlabeled)
    if d.use_extra:
        if d.dataset != "svhn":
            raise ValueError(f"use_extra adds SVHN's 'extra' images; it does not apply to dataset {d.dataset!r}")
        unlabeled = concat_arrays([unlabeled, load_arrays("svhn", d.data_root, "extra", download=d.download)])
    return RunData(spec=spec, split=split, labeled=train.subset(split.labeled), unlabeled=unlabeled,
                   valid=train.subset(split.valid) if split.valid else None, test=test)


def _split(cfg: Config, targets: torch.Tensor, num_classes: int) -> LabelSplit:
    d = cfg.data
    if d.split is not None:
        return LabelSplit.load(d.split, dataset=d.dataset, targets=targets)
    try:
        return make_split(targets, d.resolved_num_labels(), seed=cfg.train.seed, dataset=d.dataset,
                          num_classes=num_classes, num_valid_per_class=d.num_valid_per_class,
                          labeled_in_unlabeled=d.labeled_in_unlabeled)
    except ValueError as err:
        if d.labels is None or d.num_labels is None:
            raise
        # A preset's budget (e.g. cpu-cifar10's 1000) rarely fits a label file's rows.
        raise ValueError(f"{err}; or use every labeled row of {d.labels} with --num-labels none") from None


def _decoded_bytes(files: ImageFiles, image_size: tuple[int, int] | None, channels: int | None) -> int:
    """An upper bound of the memory the decoded images of ``files`` take: N * C * H * W bytes (C = 3 unless
    forced; H, W from ``image_size`` or the first file's header)."""
    if not len(files):
        return 0
    if image_size is None:
        from PIL import Image

        try:
            with Image.open(files.paths[0]) as im:
                image_size = (im.height, im.width)
        except (OSError, ValueError):
            return 0  # decoding will name the file
    return len(files) * (channels or 3) * image_size[0] * image_size[1]


def _check_shape(name: str, arrays_shape: tuple[int, ...], train_shape: tuple[int, ...]) -> None:
    if arrays_shape[1:] != train_shape[1:]:
        raise ValueError(f"the {name} images are {arrays_shape[1]}x{arrays_shape[2]} (HxW) but the training images "
                         f"are {train_shape[1]}x{train_shape[2]}; pass --image-size H,W to resize them all alike")


def _load_folder_run(cfg: Config) -> RunData:
    d = cfg.data
    cache: bool | str = (d.cache_dir or True) if d.cache else False
    options = {"resize": d.resize, "skip_bad_images": d.skip_bad_images, "cache": cache}
    train_files, test_files, extra_files = folder_run_files(cfg)
    root = train_files.root
    split = _split(cfg, train_files.targets, len(train_files.classes))
    # A split from an earlier round of --add-labels carries the labels it added (files that --labels does not name).
    train_files = replace(train_files, targets=split.targets_with_added(train_files.targets))
    if d.add_labels is not None:
        split, train_files = _merge_added_labels(d.add_labels, split, train_files)
    skipped: list[BadImageError] = []

    pool_bytes = _decoded_bytes(train_files, d.image_size, d.channels) + _decoded_bytes(extra_files, d.image_size,
                                                                                         d.channels)
    stream = d.loader == "torch"
    if not stream and pool_bytes > d.max_memory_gb * 1e9:
        stream = True
        count = len(train_files) + len(extra_files)
        print(f"ssl-mix: the decoded training pool would take {pool_bytes / 1e9:.1f} GB ({count} "
              f"images x C*H*W bytes), more than --max-memory-gb {d.max_memory_gb:g}; streaming the images from their "
              f"files with the DataLoader path instead (--loader torch; use --num-workers N to decode in parallel)",
              file=sys.stderr)

    if not stream:
        train = decode_files(train_files, image_size=d.image_size, channels=d.channels, **options)
        shape = train.arrays.image_shape
        same = {"image_size": d.image_size, "channels": shape[0], **options}
        extras = decode_files(extra_files, **same)
        skipped += train.skipped + extras.skipped
        kept, spec = train.kept, data_spec("folder", train.arrays)
        pick = _picker(len(train_files), kept)
        labeled = train.arrays.subset(pick(split.labeled))
        unlabeled = train.arrays.subset(pick(split.unlabeled))
        if len(extras.arrays):
            _check_shape("unlabeled", extras.arrays.image_shape, shape)
            unlabeled = concat_arrays([unlabeled, ImageArrays(extras.arrays.images, extras.arrays.targets, [])])
        valid = train.arrays.subset(pick(split.valid)) if split.valid else None
    else:
        scan = scan_files(train_files, image_size=d.image_size, channels=d.channels, **options)
        shape = scan.image_shape
        same = {"image_size": d.image_size, "channels": shape[0], **options}
        skipped += scan.skipped
        pick = _picker(len(train_files), scan.kept)
        spec = spec_from_stats("folder", len(train_files.classes), scan.mean, scan.std, shape[1])
        pool = train_files.subset(pick(split.unlabeled))
        if len(extra_files):
            extra_scan = scan_files(extra_files, **same)
            _check_shape("unlabeled", extra_scan.image_shape, shape)
            skipped += extra_scan.skipped
            kept_extra = extra_files.subset(extra_scan.kept)
            pool = ImageFiles(pool.paths + kept_extra.paths, torch.cat([pool.targets, kept_extra.targets]),
                              pool.classes, root)
        settings = {"image_size": d.image_size, "resize": d.resize}
        labeled = ImageFileDataset(train_files.subset(pick(split.labeled)), shape, **settings)
        unlabeled = ImageFileDataset(pool, shape, labeled=False, **settings)
        valid = (decode_files(train_files.subset(pick(split.valid)), **same).arrays  # already checked by the scan
                 if split.valid else None)
    test_decoded = decode_files(test_files, **same)
    skipped += test_decoded.skipped
    test = test_decoded.arrays
    if len(test):
        _check_shape("test", test.image_shape, shape)
    return RunData(spec=spec, split=split, labeled=labeled, unlabeled=unlabeled, valid=valid, test=test,
                   skipped_images=[(err.path, err.reason) for err in skipped])


def folder_run_files(cfg: Config) -> tuple[ImageFiles, ImageFiles, ImageFiles]:
    """The files of an image-folder run, listed as training lists them: ``(train, test, extra unlabeled)``.

    ``train`` is what the split indexes (targets from the class folders or ``cfg.data.labels``, before
    ``add_labels``); ``extra`` is ``unlabeled/`` followed by the ``unlabeled_dirs``, always unlabeled.
    """
    d = cfg.data
    if not d.data_root:
        raise ValueError("--data-root is required for dataset 'folder': the image folder (train/<class>/ inside, or "
                         "images anywhere under it with --labels FILE)")
    root = Path(d.data_root).expanduser()
    train_files = folder_files(root, "train", labels=d.labels)
    test_files = folder_files(root, "test", labels=d.labels)
    extra = folder_files(root, "unlabeled", labels=d.labels)
    extra_dirs = unlabeled_dir_files(d.unlabeled_dirs, train_files.classes)
    extra_files = ImageFiles(extra.paths + extra_dirs.paths, torch.cat([extra.targets, extra_dirs.targets]),
                             list(train_files.classes), root)
    return train_files, test_files, extra_files


def _merge_added_labels(path: str, split: LabelSplit, train_files: ImageFiles) -> tuple[LabelSplit, ImageFiles]:
    """``split`` with the filled rows of ``path`` labeled, and ``train_files`` with their targets."""
    added = added_labels(train_files, path)
    taken = {*split.labeled, *split.valid}
    for index, line in zip(added.indices, added.lines, strict=True):
        if index in taken:
            role = "labeled" if index in split.labeled else "in the validation subset"
            raise ValueError(f"{path}, line {line}: {train_files.name(index)} is already {role} in the split; "
                             "remove the row (ssl-mix select never proposes such images)")
    note = f" ({added.skipped} row(s) with an empty label skipped)" if added.skipped else ""
    print(f"ssl-mix: {path}: {len(added.indices)} labeled image(s) added to the {len(split.labeled)} of the "
          f"split{note}", file=sys.stderr)
    return split.with_labeled(added.indices, added.targets), replace(train_files, targets=added.targets)


def _picker(num_files: int, kept: np.ndarray):
    """Map split indices (positions among all listed files) to rows of the readable files, dropping the rest."""
    row = np.full(num_files, -1, dtype=np.int64)
    row[kept] = np.arange(len(kept))

    def pick(indices: tuple[int, ...]) -> np.ndarray:
        rows = row[np.asarray(indices, dtype=np.int64)]
        return rows[rows >= 0]

    return pick


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
        raise ValueError("--zca fits the whitening on the training images in memory, but this folder is streamed from "
                         "its files (--loader torch, or a pool above --max-memory-gb); use the in-memory path "
                         "(--loader tensor and a larger --max-memory-gb) or drop --zca")
    pool = data.unlabeled if data.split.labeled_in_unlabeled else concat_arrays([data.labeled, data.unlabeled])
    return fit_zca(pool.images.to(device), cfg.data.zca_eps, mean=data.spec.mean, std=data.spec.std)


def build_loader(cfg: Config, data: RunData, device: torch.device, *, with_unlabeled: bool | None = None,
                 preprocess: ZCA | None = None):
    """The dual labeled/unlabeled loader ``cfg.data.loader`` names, seeded by ``cfg.train.seed``; in a distributed
    run, this process's shard (the batch sizes are per process).

    ``with_unlabeled`` (default: whether ``cfg.method`` uses unlabeled data) False makes the loader skip the
    unlabeled stream and yield empty unlabeled batches; the labeled batches are the same either way. ``preprocess``
    (see :func:`build_preprocess`) is applied to every normalised batch."""
    d = cfg.data
    if with_unlabeled is None:
        with_unlabeled = method_class(cfg.method.name).uses_unlabeled
    common = {"rank": distributed.rank(), "world_size": distributed.world_size(), "with_unlabeled": with_unlabeled,
              "preprocess": preprocess}
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
    return TorchDualLoader(arrays_dataset(data.labeled, data.spec, augment=d.augment),
                           arrays_dataset(data.unlabeled, data.spec, augment=d.augment, labeled=False),
                           batch_size=d.batch_size, unlabeled_batch_size=d.unlabeled_batch_size, seed=cfg.train.seed,
                           num_workers=d.num_workers, device=device,
                           balance_labeled=data.labeled.targets if d.balance_labeled else None, **common)


def build_trainer(cfg: Config, data: RunData | None = None) -> Trainer:
    """Everything :func:`run_experiment` builds, without training: data, model, method, teacher, loader, the
    TensorBoard writer (at the run directory's ``tensorboard/``) and the trainer."""
    data = data if data is not None else load_run_data(cfg)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # initial weights
    model = create_model(cfg.model.name, data.spec.num_classes, in_channels=data.labeled.image_shape[0],
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
                     preprocess=preprocess_entry(preprocess))
    return Trainer(model, method, loader, train=cfg.train, optim=cfg.optim, teacher=build_teacher(cfg.method, model),
                   writer=tensorboard_writer(RunDir(cfg.train.out_dir).tensorboard), eval_sets=eval_sets,
                   config=cfg.to_dict(), linearity=linearity, data_info=info)


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
        The report of :meth:`Trainer.fit`, with the fitted temperatures under ``calibration`` when the run has a
        validation split; it is written once, to the run directory's ``report.json``, beside the split, the config
        and the checkpoints (see :mod:`ssl_mix.run`).
    """
    with distributed.session(cfg.train.device, timeout=cfg.train.dist_timeout):
        run = RunDir(cfg.train.out_dir)
        resuming = resume and _exists_everywhere(run.last)
        if resuming:
            check_resume(cfg, load_checkpoint(run.last), run.last)
        elif resume and distributed.is_main():
            note_fresh_start(run)
        data = data if data is not None else load_run_data(cfg)
        trainer = build_trainer(cfg, data)
        if distributed.is_main():
            run.root.mkdir(parents=True, exist_ok=True)
            data.split.save(run.split)
            if cfg.data.skip_bad_images:
                _write_skipped(run.skipped_images, data.skipped_images)
            write_json(run.config, cfg.to_dict())  # atomic: other processes may be reading the previous one
        if resuming:
            trainer.resume(run.last)
        report = trainer.fit()
        if distributed.is_main():
            if data.valid is not None and len(data.valid):
                calibrated = calibrate_run(run.root, device=trainer.device, valid=data.valid)
                report["calibration"] = {Path(path).name: record for path, record in calibrated.items()}
            write_json(run.report, report)
        distributed.barrier()
        return report


def calibrate_run(run: str | Path, *, device: str | torch.device = "auto", valid: ImageArrays | None = None
                  ) -> dict[str, Any]:
    """Calibrated confidences: fit the temperature of each model of a run on its validation split (Guo et al.
    2017, see :mod:`ssl_mix.calibration`) and store it in the checkpoint(s). :func:`run_experiment` does this at
    the end of training when the run has a validation split.

    Args:
        run: a run directory (its ``last.pt`` and, when present, ``best.pt`` are calibrated, each for its own
            weights) or one checkpoint file.
        device: where the models run.
        valid: the validation images, if already loaded (default: loaded as the run's training loaded them).

    Returns:
        ``{checkpoint path: calibration record}`` (see :func:`ssl_mix.calibrate_models`).

    Raises:
        NoValidationSplitError: the run has no validation split (the message says how to add one).
    """
    run_dir, checkpoint = RunDir.of_checkpoint(run)
    paths = [p for p in (run_dir.last, run_dir.best) if p.is_file()] if Path(run).is_dir() else [checkpoint]
    if valid is None:
        cfg = load_run(paths[0], device="cpu").config
        valid = load_run_data(cfg).valid if cfg.data.num_valid_per_class or cfg.data.split else None
    if valid is None or not len(valid):
        raise NoValidationSplitError(
            f"run {str(run)!r} has no validation split, and temperature scaling must be fitted on held-out labeled "
            "images (never the test set). Train with one: ssl-mix train ... --num-valid-per-class 100 (or "
            "DataConfig(num_valid_per_class=...)), then ssl-mix calibrate RUN.")
    return calibrate_checkpoints(paths, valid, device=device)


def _write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    """List the skipped image files (``path<TAB>reason`` lines; empty when none was skipped), atomically, and say how
    many were skipped."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{file}\t{reason}\n" for file, reason in skipped))
    os.replace(tmp, path)
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
