"""The data of one run, from its :class:`~ssl_mix.config.DataConfig`: the named dataset or the image folder (decoded
into memory or streamed from its files), its label files and added labels, and the label-budget split.

:func:`resolve_inputs` fills in the input settings a pretrained network expects (image size, normalisation, resize
filter) that the user left unset, once per run, so that the run's saved config holds them for evaluation,
prediction, selection and export. :func:`load_run_data` gives everything training needs (a :class:`RunData`);
:func:`load_validation` only the
validation subset (what calibration needs); :func:`folder_run_files` lists an image folder's files as training lists
them (what selection needs). All decode a folder with :meth:`DataConfig.decode_settings
<ssl_mix.config.DataConfig.decode_settings>`, as evaluation and prediction do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix.config import Config, DataConfig
from ssl_mix.data.arrays import ImageArrays, concat_arrays
from ssl_mix.data.datasets import data_spec, load_arrays
from ssl_mix.data.decode import decode_files, scan_files
from ssl_mix.data.files import ImageFiles
from ssl_mix.data.folder import folder_files, unlabeled_dir_files
from ssl_mix.data.images import BadImageError
from ssl_mix.data.labels import added_labels
from ssl_mix.data.spec import DataSpec, spec_from_stats
from ssl_mix.data.splits import LabelSplit, make_split
from ssl_mix.data.streaming import ImageFileDataset
from ssl_mix.models.pretrained_inputs import pretrained_inputs

__all__ = ["RunData", "resolve_inputs", "load_run_data", "load_validation", "folder_run_files", "describe_run_data"]


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
        colour_images: for an image folder whose channels the images decided (``channels`` None): ``(in colour,
            readable)`` counts of its training files; None otherwise, or when the decoded-image cache entry
            predates the count.
    """

    spec: DataSpec
    split: LabelSplit
    labeled: ImageArrays | ImageFileDataset
    unlabeled: ImageArrays | ImageFileDataset
    valid: ImageArrays | None
    test: ImageArrays
    skipped_images: list[tuple[str, str]] = field(default_factory=list)
    colour_images: tuple[int, int] | None = None


def resolve_inputs(cfg: Config) -> Config:
    """The run's config with the input settings its pretrained network expects, where the user left them unset.

    For a ``timm:`` model that starts from pretrained weights (``model.pretrained`` or ``model.pretrained_file``)
    and has a pretrained configuration in timm's registry (:func:`~ssl_mix.models.pretrained_inputs.pretrained_inputs`;
    nothing is downloaded), these settings, when None, take its values:

    - ``data.mean`` and ``data.std``, for every dataset (averaged to one value with ``data.channels`` 1);
    - ``data.image_size`` and ``data.interpolation``, for a ``folder`` only. The named datasets (CIFAR, SVHN,
      digits) keep their own size: their images are never resized, and 32 px brought to 224 would cost ~50x the
      compute for no new detail. Pass ``data.image_size`` to choose another size for a folder (e.g. 96 for speed).

    With ``model.init_from``, any model takes the same settings from the earlier run's recorded config instead
    (:func:`~ssl_mix.run.saved_config`; those it left None were its training images' statistics, its files' own
    size and bilinear, which this run then computes again the same way). Settings the user gave always win; any
    other run is returned unchanged (the training images' statistics, the
    files' own size, bilinear). The result resolves to itself, so calling this again changes nothing: training
    saves the resolved config, and evaluation, prediction, selection and export read their settings from it.

    Args:
        cfg: the run's configuration.

    Returns:
        ``cfg`` itself when nothing is filled in, else a copy with the filled-in ``data`` settings.

    Raises:
        FileNotFoundError, ValueError: ``model.init_from`` names no readable ssl_mix run (the message names it).
    """
    d = cfg.data
    fillable = ("mean", "std", "image_size", "interpolation") if d.dataset == "folder" else ("mean", "std")
    if not cfg.model.starts_pretrained or all(getattr(d, name) is not None for name in fillable):
        return cfg  # nothing to fill in (and an earlier run's checkpoint is not read again)
    if cfg.model.init_from:
        from ssl_mix.run import saved_config

        try:
            earlier = saved_config(cfg.model.init_from).data
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"model.init_from={cfg.model.init_from!r}: {err}") from None
        inputs: dict[str, Any] | None = {name: getattr(earlier, name)
                                         for name in ("mean", "std", "image_size", "interpolation")}
    else:
        inputs = pretrained_inputs(cfg.model.name)
    if inputs is None:
        return cfg
    wanted: dict[str, Any] = {}
    for name in ("mean", "std"):
        values = inputs[name]
        if values is not None and d.channels == 1 and len(values) == 3:
            values = (sum(values) / 3,)  # a grayscale run of an RGB network (timm sums the RGB weights of conv 1)
        wanted[name] = values
    if d.dataset == "folder":
        wanted.update(image_size=inputs["image_size"], interpolation=inputs["interpolation"])
    updates = {name: value for name, value in wanted.items() if value is not None and getattr(d, name) is None}
    return cfg.replace(data=updates) if updates else cfg


def load_run_data(data: DataConfig, *, seed: int) -> RunData:
    """Load the dataset that ``data`` names and draw (or load) its label split.

    Args:
        data: the run's data settings.
        seed: the seed of the split (a run's ``train.seed``); unused with a saved ``data.split``.

    Returns:
        The :class:`RunData`; its spec normalises with ``data.mean`` and ``data.std`` where they are set (one
        value repeats for every channel; three on grayscale images are averaged), else with the training images'
        statistics (the named datasets' published constants). An image folder is decoded into memory (through the
        decoded-image cache) unless ``data.loader`` is ``torch`` or the decoded training pool (images x C x H x W
        bytes) would exceed ``data.max_memory_gb``; it is then streamed from the files by the ``DataLoader`` path
        (a message says so).
    """
    if data.dataset == "folder":
        return _load_folder(data, seed)
    train = load_arrays(data.dataset, data.data_root, "train", download=data.download, label_column=data.label_column)
    test = load_arrays(data.dataset, data.data_root, "test", download=data.download, label_column=data.label_column)
    spec = data_spec(data.dataset, train)
    if spec.features:
        spec = replace(spec, noise=data.feature_noise, feature_dropout=data.feature_dropout)
    else:
        spec = _normalisation(spec, data)
    split = _split(data, seed, train.targets, spec.num_classes)
    unlabeled = train.subset(split.unlabeled)
    if data.use_extra:
        if data.dataset != "svhn":
            raise ValueError(f"use_extra adds SVHN's 'extra' images; it does not apply to dataset {data.dataset!r}")
        unlabeled = concat_arrays([unlabeled, load_arrays("svhn", data.data_root, "extra", download=data.download)])
    return RunData(spec=spec, split=split, labeled=train.subset(split.labeled), unlabeled=unlabeled,
                   valid=train.subset(split.valid) if split.valid else None, test=test)


def load_validation(data: DataConfig, *, seed: int, channels: int | None = None) -> ImageArrays | None:
    """The validation subset alone, as :func:`load_run_data` would give it, loading nothing else: a named dataset's
    training arrays; an image folder's training file list, of which only the validation files are decoded.

    Args:
        data: the run's data settings.
        seed: the seed of the split (a run's ``train.seed``).
        channels: a folder's channel count (a trained run's ``input_shape[0]``). Default ``data.channels``, else
            the validation files decide, which can differ from the whole training set's when some images are in
            colour and others not.

    Returns:
        The validation images, or None when the run has no validation split.
    """
    if not data.num_valid_per_class and not data.split:
        return None
    if data.dataset != "folder":
        train = load_arrays(data.dataset, data.data_root, "train", download=data.download,
                            label_column=data.label_column)
        split = _split(data, seed, train.targets, data_spec(data.dataset, train).num_classes)
        return train.subset(split.valid) if split.valid else None
    train_files = _folder_train_files(data)
    split = _split(data, seed, train_files.targets, len(train_files.classes))
    if not split.valid:
        return None
    train_files = replace(train_files, targets=split.targets_with_added(train_files.targets))
    settings = data.decode_settings()
    if channels is not None:
        settings["channels"] = channels
    # Unreadable validation files are dropped (with skip_bad_images) as training drops them.
    return decode_files(train_files.subset(split.valid), **settings).arrays


def folder_run_files(data: DataConfig | Config) -> tuple[ImageFiles, ImageFiles, ImageFiles]:
    """The files of an image-folder run, listed as training lists them: ``(train, test, extra unlabeled)``.

    Args:
        data: the run's data settings (a whole :class:`~ssl_mix.config.Config` is read for its ``data``).

    Returns:
        ``train`` is what the split indexes (targets from the class folders or ``data.labels``, before
        ``add_labels``); ``extra`` is ``unlabeled/`` followed by the ``unlabeled_dirs``, always unlabeled.
    """
    data = data.data if isinstance(data, Config) else data
    train_files = _folder_train_files(data)
    root = train_files.root
    test_files = folder_files(root, "test", labels=data.labels, **data.label_checks())
    extra = folder_files(root, "unlabeled", labels=data.labels, **data.label_checks())
    extra_dirs = unlabeled_dir_files(data.unlabeled_dirs, train_files.classes)
    extra_files = ImageFiles(extra.paths + extra_dirs.paths, torch.cat([extra.targets, extra_dirs.targets]),
                             list(train_files.classes), root)
    return train_files, test_files, extra_files


def _folder_train_files(data: DataConfig) -> ImageFiles:
    if not data.data_root:
        raise ValueError("data.data_root is required for dataset 'folder': the image folder (train/<class>/ inside, or "
                         "images anywhere under it with a label file in data.labels)")
    return folder_files(Path(data.data_root).expanduser(), "train", labels=data.labels, **data.label_checks())


def _split(data: DataConfig, seed: int, targets: torch.Tensor, num_classes: int) -> LabelSplit:
    if data.split is not None:
        return LabelSplit.load(data.split, dataset=data.dataset, targets=targets)
    try:
        return make_split(targets, data.resolved_num_labels(), seed=seed, dataset=data.dataset,
                          num_classes=num_classes, num_valid_per_class=data.num_valid_per_class,
                          labeled_in_unlabeled=data.labeled_in_unlabeled)
    except ValueError as err:
        if data.labels is None or data.num_labels is None:
            raise
        # A preset's budget (e.g. cpu-cifar10's 1000) rarely fits a label file's rows.
        raise ValueError(f"{err}; or use every labeled row of {data.labels} with data.num_labels=none") from None


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
                         f"are {train_shape[1]}x{train_shape[2]}; set data.image_size=H,W to resize them all alike")


def _load_folder(data: DataConfig, seed: int) -> RunData:
    settings = data.decode_settings()
    train_files, test_files, extra_files = folder_run_files(data)
    root = train_files.root
    split = _split(data, seed, train_files.targets, len(train_files.classes))
    # A split from an earlier round of --add-labels carries the labels it added (files that --labels does not name).
    train_files = replace(train_files, targets=split.targets_with_added(train_files.targets))
    if data.add_labels is not None:
        split, train_files = _merge_added_labels(data.add_labels, split, train_files)
    skipped: list[BadImageError] = []

    size, channels = settings["image_size"], settings["channels"]
    pool_bytes = _decoded_bytes(train_files, size, channels) + _decoded_bytes(extra_files, size, channels)
    stream = data.loader == "torch"
    if not stream and pool_bytes > data.max_memory_gb * 1e9:
        stream = True
        count = len(train_files) + len(extra_files)
        print(f"ssl-mix: the decoded training pool would take {pool_bytes / 1e9:.1f} GB ({count} "
              f"images x C*H*W bytes), more than --max-memory-gb {data.max_memory_gb:g}; streaming the images from "
              "their files with the DataLoader path instead (--loader torch; use --num-workers N to decode in "
              "parallel)", file=sys.stderr)

    if not stream:
        train = decode_files(train_files, **settings)
        shape = train.arrays.image_shape
        same: dict[str, Any] = {**settings, "channels": shape[0]}  # the other sets follow the training images
        extras = decode_files(extra_files, **same)
        skipped += train.skipped + extras.skipped
        spec = _normalisation(data_spec("folder", train.arrays), data)
        pick = _picker(len(train_files), train.kept)
        labeled = train.arrays.subset(pick(split.labeled))
        unlabeled = train.arrays.subset(pick(split.unlabeled))
        if len(extras.arrays):
            _check_shape("unlabeled", extras.arrays.image_shape, shape)
            unlabeled = concat_arrays([unlabeled, ImageArrays(extras.arrays.images, extras.arrays.targets, [])])
        valid = train.arrays.subset(pick(split.valid)) if split.valid else None
        colour = train.colour, len(train.kept)
    else:
        scan = scan_files(train_files, **settings)
        shape = scan.image_shape
        same = {**settings, "channels": shape[0]}
        skipped += scan.skipped
        pick = _picker(len(train_files), scan.kept)
        spec = _normalisation(spec_from_stats("folder", len(train_files.classes), scan.mean, scan.std, shape[1]),
                              data)
        pool = train_files.subset(pick(split.unlabeled))
        if len(extra_files):
            extra_scan = scan_files(extra_files, **same)
            _check_shape("unlabeled", extra_scan.image_shape, shape)
            skipped += extra_scan.skipped
            kept_extra = extra_files.subset(extra_scan.kept)
            pool = ImageFiles(pool.paths + kept_extra.paths, torch.cat([pool.targets, kept_extra.targets]),
                              pool.classes, root)
        streamed = {name: settings[name] for name in ("image_size", "resize", "interpolation")}
        labeled = ImageFileDataset(train_files.subset(pick(split.labeled)), shape, **streamed)
        unlabeled = ImageFileDataset(pool, shape, labeled=False, **streamed)
        valid = (decode_files(train_files.subset(pick(split.valid)), **same).arrays  # already checked by the scan
                 if split.valid else None)
        colour = scan.colour, len(scan.kept)
    test_decoded = decode_files(test_files, **same)
    skipped += test_decoded.skipped
    test = test_decoded.arrays
    if len(test):
        _check_shape("test", test.image_shape, shape)
    return RunData(spec=spec, split=split, labeled=labeled, unlabeled=unlabeled, valid=valid, test=test,
                   skipped_images=[(err.path, err.reason) for err in skipped],
                   colour_images=None if colour[0] is None else (colour[0], colour[1]))


def _normalisation(spec: DataSpec, data: DataConfig) -> DataSpec:
    """``spec`` normalising with ``data.mean`` / ``data.std`` where set, fitted to its channel count."""
    changes = {}
    for name in ("mean", "std"):
        values = getattr(data, name)
        if values is None:
            continue
        if len(values) == 1:
            values = values * spec.channels
        elif spec.channels == 1:  # three values on images that turned out grayscale
            values = (sum(values) / len(values),)
        changes[name] = values
    return replace(spec, **changes) if changes else spec


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


def describe_run_data(data: RunData, settings: DataConfig) -> str:
    """The data settings a run resolved, as the short block training prints on stderr before the first step.

    Args:
        data: the loaded data (:func:`load_run_data`).
        settings: the data settings it was loaded with.

    Returns:
        Three ``ssl-mix:`` lines: the dataset, its classes, whether it is held in memory or streamed, and the
        labeled / validation / unlabeled / test counts; the image size (and how it was reached) and the channels
        (and, when the images decided them, why); the normalisation and the ZCA whitening.
    """
    channels, height, width = data.labeled.image_shape
    streamed = isinstance(data.labeled, ImageFileDataset)
    pool = " (the labeled ones included)" if data.split.labeled_in_unlabeled else ""
    valid = len(data.valid) if data.valid is not None else 0
    test = f"{len(data.test)} test" if len(data.test) else "no test set"
    counts = f"{len(data.labeled)} labeled, {valid} validation, {len(data.unlabeled)} unlabeled{pool}, {test}"
    where = "streamed from the files" if streamed else "in memory"
    if settings.dataset != "folder":
        size = "the dataset's size"
    elif settings.image_size is not None:
        size = f"data.image_size, data.resize={settings.resize!r}"
        if settings.interpolation is not None:
            size += f", data.interpolation={settings.interpolation!r}"
    else:
        size = "the files' own size; data.image_size resizes"
    kind = "RGB" if channels == 3 else "grayscale"
    if settings.channels is not None:
        why = f"{kind}, data.channels={settings.channels}"
    elif data.colour_images is not None:
        colour, total = data.colour_images
        if colour:
            why = f"RGB: {colour} of {total} training images are in colour"
            if 2 * colour < total:
                why += "; data.channels=1 trains in grayscale"
        else:
            why = f"grayscale: none of the {total} training images is in colour"
    else:
        why = kind
    if data.spec.features:
        noise = (f"noise {data.spec.noise:g}, feature dropout {data.spec.feature_dropout:g}"
                 if settings.augment and (data.spec.noise or data.spec.feature_dropout) else "none")
        return "\n".join([
            f"ssl-mix: data: {settings.dataset} ({settings.data_root}), {data.spec.num_classes} classes, {where}; "
            f"{counts}",
            f"ssl-mix: features: {channels} per example, standardised with the training rows' mean and std; "
            f"augmentation: {noise}",
        ])
    zca = f"on (data.zca_eps={settings.zca_eps:g})" if settings.zca else "off"
    given = [f"data.{name}" for name in ("mean", "std") if getattr(settings, name) is not None]
    own = "the training images' statistics" if settings.dataset in ("folder", "digits") else "the dataset's constants"
    source = " and ".join(given) if given else own
    return "\n".join([
        f"ssl-mix: data: {settings.dataset}, {data.spec.num_classes} classes, {where}; {counts}",
        f"ssl-mix: images: {height}x{width} (HxW; {size}), {channels} channel(s) ({why})",
        f"ssl-mix: normalisation: mean {_numbers(data.spec.mean)}, std {_numbers(data.spec.std)} ({source}); "
        f"ZCA whitening {zca}",
    ])


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
