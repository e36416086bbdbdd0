"""Typed run configuration: data, model, method, optimisation and training, with named paper presets.

Every section is a dataclass validated once in ``__post_init__``; string options are ``Literal`` types checked at
construction, and unknown keys are errors (from a dict, a JSON or YAML file, or the command line alike). Each field
maps onto exactly one command-line flag (``--num-labels``, ``--k``, ...; ``--model``, ``--method`` and ``--out`` for
``model.name``, ``method.name`` and ``train.out_dir``), and each field's documentation is the ``Args:`` entry of its
section's docstring: :func:`field_docs` reads it for ``ssl-mix train --help`` and the documentation's tables.

Presets are the published recipes as code, not YAML piles: :data:`PRESETS`, each with a one-line description in
:data:`PRESET_DESCRIPTIONS` (``ssl-mix presets`` lists them).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from ssl_mix.checks import check_alpha, check_bool, check_in, check_int, check_k, check_number, check_probability
from ssl_mix.data.datasets import DatasetName
from ssl_mix.data.images import ResizeMode, image_size_pair
from ssl_mix.losses import ConsistencyDistance, ConsistencyTarget
from ssl_mix.methods import MethodName, SupervisedTerm, TeacherMode, method_class
from ssl_mix.ramps import RampKind
from ssl_mix.teacher import TeacherBN

__all__ = [
    "DataConfig",
    "ModelConfig",
    "MethodConfig",
    "OptimConfig",
    "TrainConfig",
    "Config",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "preset",
    "config_flags",
    "section_type",
    "field_docs",
    "format_value",
    "Precision",
    "PRECISIONS",
    "CONFIG_FORMATS",
]

DEFAULT_NUM_LABELS = 4000
"""The label budget when ``num_labels`` is None and no label file is given (the standard CIFAR-10 budget)."""

Precision = Literal["fp32", "bf16"]
"""Numeric precision of the forward passes: float32, or bfloat16 autocast."""

PRECISIONS: tuple[str, ...] = get_args(Precision)

ConfigFormat = Literal["json", "yaml"]
CONFIG_FORMATS: tuple[str, ...] = get_args(ConfigFormat)
"""The formats of config files, by file suffix: ``.json``, or ``.yaml`` / ``.yml``."""


def _check_fields(obj: Any) -> None:
    """Check every field of a section against its type hint: ``Literal`` choices, bools, ints, numbers and strings.

    Float fields given an int are stored as floats, so a config reads the same from JSON, YAML and Python.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value = hints[f.name], getattr(obj, f.name)
        name = f"{type(obj).__name__}.{f.name}"
        if value is None and _allows_none(hint):
            continue
        kind = _base_type(hint)
        allowed = _literal_values(hint)
        if allowed is not None:
            check_in(name, value, allowed)
        elif kind is bool:
            check_bool(name, value)
        elif kind is int:
            check_int(name, value)
        elif kind is float:
            setattr(obj, f.name, check_number(name, value))
        elif kind is str and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__} ({value!r})")


def _literal_values(hint: Any) -> tuple | None:
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (Union, getattr(__import__("types"), "UnionType", Union)):
        for arg in get_args(hint):
            if get_origin(arg) is Literal:
                return get_args(arg)
    return None


def _allows_none(hint: Any) -> bool:
    return type(None) in get_args(hint)


def _base_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; the origin (e.g. ``tuple``) for generic hints."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (Union, getattr(__import__("types"), "UnionType", Union)) and len(args) == 1:
        hint = args[0]
    return get_origin(hint) or hint


def _positive(obj: Any, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value, qualified = getattr(obj, name), f"{type(obj).__name__}.{name}"
        if isinstance(value, int):
            check_int(qualified, value, 0 if allow_zero else 1)
        elif value is not None:
            check_number(qualified, value, low=0, low_open=not allow_zero)


@dataclass
class DataConfig:
    """Which data, which labels, and how batches are drawn.

    Args:
        dataset: ``cifar10``, ``cifar100``, ``svhn`` (through torchvision), ``folder`` (your images:
            ``data_root/train/<class>/*``, ``test/``, optional ``unlabeled/``) or ``digits`` (scikit-learn's
            bundled 8x8 digits, no download).
        data_root: where the dataset lives, or is downloaded to with ``download``. Required except for ``digits``.
        download: let torchvision download CIFAR/SVHN into ``data_root`` when missing. Off so that nothing is
            fetched without asking.
        num_labels: the label budget: labeled examples in total, the same number per class (a multiple of the
            class count). ``none``: every row of ``labels`` (as imbalanced as it is), else 4000, the standard
            CIFAR-10 budget.
        split: a saved split JSON file (``ssl-mix split``); replaces drawing the split from ``num_labels`` and the
            seed.
        num_valid_per_class: labeled examples per class held out for model selection (never trained on). 0: no
            validation split, so no model selection; the presets of the ICT paper hold out 500 (CIFAR-10) and
            100 (SVHN).
        labeled_in_unlabeled: keep the labeled examples in the unlabeled pool too, as FixMatch and USB do (off:
            MixMatch's choice).
        use_extra: SVHN only: add the 531,131 ``extra`` images to the unlabeled pool.
        batch_size: labeled examples per step (ICT: 100).
        unlabeled_batch_size: unlabeled examples per step (ICT uses as many as labeled).
        loader: ``tensor`` keeps the uint8 images on the training device and crops, flips and normalises whole
            batches there; ``torch`` uses a ``DataLoader`` with worker processes: per-image transforms for
            in-memory datasets, and for a ``folder`` it streams the files (workers decode, batches are augmented on
            the device). The tensor loader is fast for data that fits in device memory.
        num_workers: worker processes of the ``torch`` loader.
        augment: random crop (reflect padding) and horizontal flip of training batches. The standard augmentation
            of the ICT and mean-teacher recipes; SVHN and the digits are not flipped.
        labels: ``folder`` only: a CSV file of ``path,label`` rows (paths relative to ``data_root``) instead of
            class folders. Images it does not name are unlabeled; ``test/<class>/`` stays the test set.
        add_labels: ``folder`` only: a CSV of newly labeled images (``ssl-mix select`` writes one to fill in) added
            to the labeled set of ``split`` or ``labels``; rows with an empty label are skipped.
        unlabeled_dirs: ``folder`` only: another folder of unlabeled images, anywhere on disk (``--unlabeled-dir``,
            repeatable).
        image_size: ``folder`` only: resize every image to N x N or H,W pixels, the same way for training,
            evaluation and prediction. ``none``: the files must share one size.
        resize: how ``image_size`` is reached: ``crop`` scales the image to cover it and cuts the centre (aspect
            ratio kept); ``stretch`` scales each axis (nothing cut).
        channels: ``folder`` only: force 1 (grayscale) or 3 (RGB) channels. ``none``: RGB if any training image is
            in colour, else grayscale.
        cache: keep the decoded images of a folder in the decoded-image cache, so the next run skips decoding.
            ``--no-cache`` decodes every time.
        cache_dir: the decoded-image cache directory. ``none``: ``$XDG_CACHE_HOME/ssl_mix``, i.e.
            ``~/.cache/ssl_mix``.
        max_memory_gb: stream a folder from its files when its decoded training pool (images x C x H x W bytes)
            would exceed this many GB. Streaming uses the ``DataLoader`` path (``--num-workers``).
        skip_bad_images: leave unreadable image files out instead of stopping with an error that names them. They
            are listed in the run's ``skipped_images.txt``.
        balance_labeled: draw the labeled stream class-balanced, for imbalanced labels (smaller classes
            over-sampled). Deterministic and resumable like the plain stream.
        zca: ZCA-whiten every batch after normalisation (labeled, unlabeled and evaluation alike), with the
            transform fitted on the run's training images; the official ICT code does this for CIFAR-10.
        zca_eps: the whitening's regulariser, added to the covariance eigenvalues (normalised pixel units):
            directions of much smaller variance are damped instead of amplified.
    """

    dataset: DatasetName = "cifar10"
    data_root: str | None = None
    download: bool = False
    num_labels: int | None = None
    split: str | None = None
    num_valid_per_class: int = 0
    labeled_in_unlabeled: bool = True
    use_extra: bool = False
    batch_size: int = 100
    unlabeled_batch_size: int = 100
    loader: Literal["tensor", "torch"] = "tensor"
    num_workers: int = 0
    augment: bool = True
    labels: str | None = None
    add_labels: str | None = None
    unlabeled_dirs: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None
    resize: ResizeMode = "crop"
    channels: Literal[1, 3] | None = None
    cache: bool = True
    cache_dir: str | None = None
    max_memory_gb: float = 8.0
    skip_bad_images: bool = False
    balance_labeled: bool = False
    zca: bool = False
    zca_eps: float = 1e-2

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "num_labels", "batch_size", "unlabeled_batch_size", "max_memory_gb")
        _positive(self, "num_valid_per_class", "num_workers", "zca_eps", allow_zero=True)
        self.image_size = image_size_pair(self.image_size)
        if isinstance(self.unlabeled_dirs, str):
            self.unlabeled_dirs = (self.unlabeled_dirs,)
        self.unlabeled_dirs = tuple(str(d) for d in self.unlabeled_dirs)
        folder_only = {"labels": self.labels, "add_labels": self.add_labels,
                       "unlabeled_dirs": self.unlabeled_dirs or None, "image_size": self.image_size,
                       "channels": self.channels}
        given = [name for name, value in folder_only.items() if value is not None]
        if given and self.dataset != "folder":
            flag = next(f for f, key in config_flags().items() if key == ("data", given[0]))
            raise ValueError(f"DataConfig.{given[0]} applies to dataset 'folder' (your own images), not "
                             f"{self.dataset!r}; drop {flag} or use --dataset folder")

    def resolved_num_labels(self) -> int | None:
        """The label budget to draw: ``num_labels``, or when it is None, None (every labeled row) with a label
        file and :data:`DEFAULT_NUM_LABELS` otherwise."""
        if self.num_labels is not None:
            return self.num_labels
        return None if self.labels is not None else DEFAULT_NUM_LABELS


@dataclass
class ModelConfig:
    """The student network (the teacher is its EMA copy).

    Args:
        name: the student network, a name of :func:`ssl_mix.create_model`: ``wrn28-2`` (CIFAR-10, SVHN),
            ``wrn28-8`` (CIFAR-100), ``wrn28-10``, ``cnn13`` (the network of the ICT and mean-teacher papers) or
            ``cnn-small`` (fast on a CPU). WRN-28-2 is the standard network of the SSL benchmarks (Oliver et al.
            2018).
        bn_momentum: batch-norm momentum in PyTorch's convention. 0.001 as in the MixMatch/FixMatch WRN code, for
            long runs; short runs want a larger value (the demo uses 0.1) so that the running statistics catch up.
        dropout: dropout probability where the architecture has dropout; ``none`` keeps the published value (0.5
            in CNN-13, none in the WRNs).
        channels_last: store activations in NHWC memory format. Faster convolutions on recent GPUs, no gain on
            CPUs.
    """

    name: str = "wrn28-2"
    bn_momentum: float = 0.001
    dropout: float | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)
        check_number("ModelConfig.bn_momentum", self.bn_momentum, low=0, high=1, low_open=True)
        if self.dropout is not None:
            check_number("ModelConfig.dropout", self.dropout, low=0, high=1, high_open=True)


@dataclass
class MethodConfig:
    """The training method and its hyper-parameters.

    Args:
        name: the method: ``erm`` (labeled data only, the supervised baseline), ``mixup`` (Zhang et al. 2018),
            ``manifold-mixup`` (Verma et al. 2019) or ``ict`` (ICT[K]; Verma et al. 2019, Chaudhry et al. eq. 2).
        k: points per mix, K >= 2. K=2 is classic mixup and ICT; Chaudhry et al. use 3 to 5.
        alpha: Dirichlet concentration of the mixing weights; 0 disables mixing. 1.0 (λ uniform for K=2) is the
            ICT code's CIFAR-10 value.
        per_sample: one weight vector per example instead of one per batch (the mixup and ICT code draw one per
            batch).
        mix_layers: manifold mixup's set S of layers to mix at (``input`` is the raw input). The default is the
            input and the first three layers (for a WRN: the first convolution and the first two residual
            groups).
        cutmix_alpha: supervised ``mixup`` only: CutMix's Beta α (via timm); 0 leaves CutMix off.
        cutmix_switch_prob: with both mixup and CutMix on, the probability that a step uses CutMix.
        supervised: ICT's supervised term: ``plain`` cross-entropy or ``mixup`` (the official ICT code's choice,
            set by the ``ict-*`` presets).
        sup_alpha: α of ICT's supervised mixup; ``none`` uses ``alpha``.
        consistency_target: ``probs`` mixes teacher probabilities (the paper's equation); ``logits`` mixes teacher
            logits, then applies the softmax (the official ICT code, set by the ``ict-*`` presets).
        consistency_distance: ``mse`` between probabilities (ICT, mean teacher) or ``kl``.
        consistency_weight: w_max, the consistency weight after the ramp. 100 as in ICT with the ``mse`` distance.
        ramp: ramp-up shape of the consistency weight: ``sigmoid`` exp(-5(1-t)^2) (ICT, mean teacher), ``linear``
            (Chaudhry et al.) or ``none``.
        ramp_fraction: fraction of the training steps over which the weight ramps up (ICT: the first quarter;
            Chaudhry et al.: 0.4).
        ema_decay: the EMA teacher's decay d (ICT and mean teacher on CIFAR-10).
        ema_warmup: use min(1 - 1/(t+1), d) early on, so that the teacher starts as a true average of the student.
        teacher_mode: ``train`` runs the teacher with batch statistics (and dropout), as the official ICT code does,
            which also updates its running statistics; ``eval`` uses its running statistics.
        teacher_bn: the teacher's batch-norm statistics: ``own`` (the EMA averages parameters only and the
            teacher's train-mode passes update its own statistics: the official mean-teacher and ICT code, set by
            the paper presets) or ``copy`` (the student's, copied at every update; the default, so that earlier
            results do not change).
        joint_forward: ICT only: one student forward pass on the labeled and the mixed unlabeled batch together
            instead of two. Faster on a GPU, but in train mode batch norm then normalises both with shared
            statistics (see :class:`~ssl_mix.ICT`); off keeps the official code's separate passes.
    """

    name: MethodName = "ict"
    k: int = 2
    alpha: float = 1.0
    per_sample: bool = False
    mix_layers: tuple[Any, ...] = ("input", 0, 1, 2)
    cutmix_alpha: float = 0.0
    cutmix_switch_prob: float = 0.5
    supervised: SupervisedTerm = "plain"
    sup_alpha: float | None = None
    consistency_target: ConsistencyTarget = "probs"
    consistency_distance: ConsistencyDistance = "mse"
    consistency_weight: float = 100.0
    ramp: RampKind = "sigmoid"
    ramp_fraction: float = 0.25
    ema_decay: float = 0.999
    ema_warmup: bool = True
    teacher_mode: TeacherMode = "train"
    teacher_bn: TeacherBN = "copy"
    joint_forward: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)
        method_class(self.name).check_config(self)  # the settings only some methods take
        check_k(self.k, "MethodConfig.k")
        check_alpha(self.alpha, "MethodConfig.alpha")
        if self.sup_alpha is not None:
            check_alpha(self.sup_alpha, "MethodConfig.sup_alpha")
        _positive(self, "cutmix_alpha", "consistency_weight", allow_zero=True)
        for name in ("ramp_fraction", "ema_decay", "cutmix_switch_prob"):
            check_probability(f"MethodConfig.{name}", getattr(self, name))
        self.mix_layers = tuple(_parse_layer(v) for v in self.mix_layers)
        if not self.mix_layers:
            raise ValueError("MethodConfig.mix_layers must name at least one layer, e.g. ('input', 0, 1, 2)")


def _parse_layer(value: Any) -> int | str:
    if value == "input":
        return "input"
    try:
        layer = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"mix_layers entries must be 'input' or a layer number, got {value!r}") from None
    if layer < 0:
        raise ValueError(f"mix_layers entries must be 'input' or a layer number >= 0, got {value!r}")
    return layer


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Args:
        optimizer: ``sgd`` (momentum, optionally Nesterov; the ICT recipe) or ``adam`` (Chaudhry et al.); both use
            PyTorch's multi-tensor kernels.
        lr: peak learning rate (ICT: 0.1 with SGD; Chaudhry et al.: 0.002 with Adam).
        momentum: SGD momentum (0.9 in the ICT and mean-teacher recipes).
        nesterov: Nesterov momentum for SGD, as in the ICT code.
        weight_decay: L2 penalty added to the gradient (coupled), 1e-4 as in the ICT code.
        lr_schedule: ``cosine`` ramp-down (ICT, mean teacher) or ``constant``.
        lr_rampdown_factor: the cosine reaches zero at this multiple of the training steps (ICT: 450/400 epochs =
            1.125), so the last steps keep a small non-zero rate.
        warmup_steps: linear learning-rate warm-up from 0 over this many steps.
    """

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    lr_rampdown_factor: float = 1.125
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "lr")
        _positive(self, "momentum", "weight_decay", "warmup_steps", allow_zero=True)
        check_number("OptimConfig.lr_rampdown_factor", self.lr_rampdown_factor, low=1)


@dataclass
class TrainConfig:
    """The training loop: length, seeds, evaluation, logging and checkpoints.

    Args:
        steps: optimiser steps; training is counted in steps, not epochs. The presets set the published lengths.
        seed: seeds the split (unless ``split`` is given), the initial weights, the loaders and all mixing: a run
            is a function of its config.
        eval_every: evaluate student and teacher on the test (and validation) set every this many steps, and at
            the end.
        log_every: read the logged values from the device every this many steps. The training step itself never
            waits for the host.
        checkpoint_every: write ``last.pt`` every this many steps, and at the end; 0: only at the end.
        out_dir: the run directory: checkpoints, TensorBoard logs, config, split and report.
        device: ``auto`` picks CUDA when available, else the CPU; or any torch device string (``cuda:1``).
        precision: ``bf16`` runs the forward passes under bfloat16 autocast (faster on recent GPUs; losses are
            computed in float32).
        compile: compile the model with ``torch.compile``. Falls back to eager execution with a warning where
            compilation is unavailable.
        progress: show a progress bar with the loss, accuracies and images/s.
        linearity_every: log the teacher's per-layer non-linearity (Chaudhry et al. eq. 3) every this many steps;
            0: off.
        linearity_pairs: held-out pairs used for that measurement (the same fixed sample every time, so values are
            comparable over training).
        sync_bn: under torchrun, compute batch-norm statistics over all processes (``SyncBatchNorm``, CUDA only)
            instead of per process; no effect in a one-process run.
        dist_timeout: under torchrun, seconds a process waits for the others in a collective operation before the
            run fails. A crashed or hung process then stops the run instead of blocking it forever.
    """

    steps: int = 1000
    seed: int = 0
    eval_every: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    out_dir: str = "runs/ssl_mix"
    device: str = "auto"
    precision: Precision = "fp32"
    compile: bool = False
    progress: bool = True
    linearity_every: int = 0
    linearity_pairs: int = 256
    sync_bn: bool = False
    dist_timeout: float = 300.0

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "steps", "eval_every", "log_every", "linearity_pairs")
        check_number("TrainConfig.dist_timeout", self.dist_timeout, low=0, low_open=True)
        _positive(self, "checkpoint_every", "linearity_every", "seed", allow_zero=True)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}


@dataclass
class Config:
    """A whole run: one instance of each section. Serialises to and from nested dicts, JSON and YAML files."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, section_cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), section_cls):
                raise TypeError(f"Config.{name} must be a {section_cls.__name__}, got "
                                f"{type(getattr(self, name)).__name__}")
        if self.data.use_extra and self.data.dataset != "svhn":
            raise ValueError(f"use_extra adds SVHN's 'extra' images to the unlabeled pool; it does not apply to "
                             f"dataset {self.data.dataset!r}")
        if self.method.cutmix_alpha > 0 and self.method.name != "mixup":
            raise ValueError(f"cutmix_alpha applies to the supervised 'mixup' method only, not {self.method.name!r}")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A JSON-compatible nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Config | None = None) -> Config:
        """Build a config from a nested dict, starting from ``base`` (default: all defaults).

        Raises:
            ValueError: on an unknown section or key (with the valid ones listed), or an invalid value.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a config must be a dict of sections, got {type(data).__name__}")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; valid sections: {list(_SECTIONS)}")
        base = base or cls()
        sections = {}
        for name, section_cls in _SECTIONS.items():
            current = dataclasses.asdict(getattr(base, name))
            updates = data.get(name, {})
            if not isinstance(updates, dict):
                raise TypeError(f"config section {name!r} must be a dict, got {type(updates).__name__}")
            valid = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(updates) - valid
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in config section {name!r}; valid keys: "
                                 f"{sorted(valid)}")
            current.update(updates)
            sections[name] = section_cls(**current)
        return cls(**sections)

    @classmethod
    def from_file(cls, path: str | Path, base: Config | None = None) -> Config:
        """Read a config file on top of ``base``: nested sections, any subset of keys, as in :meth:`from_dict`.

        Args:
            path: a ``.json`` file, or a ``.yaml`` / ``.yml`` file (read with ``yaml.safe_load``; ``1e-4`` is read
                as a number, as in JSON). Both hold the same schema, e.g. ``{"method": {"k": 3}}`` or
                ``method: {k: 3}``.
            base: the config the file's values are applied to (default: all defaults).

        Returns:
            The resulting config.

        Raises:
            FileNotFoundError: no such file.
            ValueError: an unknown suffix, a syntax error (with its line and column), an unknown section or key,
                or an invalid value; the message names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        fmt = _config_format(path)
        text = path.read_text()
        if fmt == "yaml":
            try:
                data = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: plain data only
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
                problem = getattr(err, "problem", None) or str(err)
                raise ValueError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
            data = {} if data is None else data  # an empty file changes nothing
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"config file {str(path)!r} is not valid JSON (line {err.lineno}, column "
                                 f"{err.colno}): {err.msg}") from None
        try:
            return cls.from_dict(data, base=base)
        except (TypeError, ValueError) as err:
            raise type(err)(f"config file {str(path)!r}: {err}") from None

    def dumps(self, format: ConfigFormat = "json") -> str:
        """The whole config as the text of a config file that :meth:`from_file` reads back to an equal config.

        Args:
            format: ``json`` (keys sorted, as ``ssl-mix train --print-config`` prints) or ``yaml`` (fields in their
                declared order).

        Returns:
            The text, ending with a newline.
        """
        check_in("format", format, CONFIG_FORMATS)
        if format == "yaml":
            return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def replace(self, **section_updates: dict[str, Any]) -> Config:
        """A copy with some keys changed, e.g. ``cfg.replace(train={"steps": 10})``."""
        return Config.from_dict(section_updates, base=self)


# Command-line flag names that differ from the field name (both ``model.name`` and ``method.name`` exist).
_FLAG_ALIASES = {("method", "name"): "method", ("model", "name"): "model", ("train", "out_dir"): "out",
                 ("data", "unlabeled_dirs"): "unlabeled_dir"}


def config_flags() -> dict[str, tuple[str, str]]:
    """Map each command-line flag (``--num-labels``) to its ``(section, field)``; one flag per config field."""
    out: dict[str, tuple[str, str]] = {}
    for section, section_cls in _SECTIONS.items():
        for f in dataclasses.fields(section_cls):
            flag = "--" + _FLAG_ALIASES.get((section, f.name), f.name).replace("_", "-")
            if flag in out:  # pragma: no cover - guarded by a test
                raise RuntimeError(f"config flag {flag} maps to two fields")
            out[flag] = (section, f.name)
    return out


def section_type(section: str) -> type:
    """The dataclass of a config section (``"data"`` -> :class:`DataConfig`)."""
    return _SECTIONS[section]


def _config_format(path: Path) -> ConfigFormat:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise ValueError(f"config file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; name it .json, .yaml "
                     "or .yml")


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.1 floats need a dot, ``1.0e-4``), as JSON
    and Python do: a weight decay written the usual way must not arrive as a string."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+.0123456789"))

_ARG = re.compile(r"^    ([A-Za-z_]\w*): (.*)$")


def field_docs(section: str, *, as_flags: bool = False) -> dict[str, str]:
    """The documentation of every field of a config section: its ``Args:`` entry in the section's docstring.

    This is the one source of the flag descriptions of ``ssl-mix train --help`` and of the documentation's
    configuration tables.

    Args:
        section: ``data``, ``model``, ``method``, ``optim`` or ``train``.
        as_flags: write the field names quoted in the text as their command-line flags (````download```` ->
            ````--download````), for text shown next to the flags. A name becomes a flag when it is a field of this
            section or of exactly one section.

    Returns:
        ``{field: text}`` in field order; each text is one line (the docstring's wrapping joined), still with its
        reStructuredText markup (````code````, ``:class:`~ssl_mix.ICT```). The first sentence says what the field
        does; later ones say why the default.

    Raises:
        ValueError: an unknown section, or a field without an ``Args:`` entry (or an entry without a field).
    """
    cls = section_type(check_in("section", section, _SECTIONS))
    docs: dict[str, list[str]] = {}
    current: list[str] | None = None
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    for line in lines[lines.index("Args:") + 1:] if "Args:" in lines else []:
        if line and not line.startswith(" "):
            break  # the next docstring section
        entry = _ARG.match(line)
        if entry:
            current = docs.setdefault(entry.group(1), [])
            current.append(entry.group(2).strip())
        elif line.startswith("        ") and current is not None:
            current.append(line.strip())
    names = [f.name for f in dataclasses.fields(cls)]
    missing, extra = [n for n in names if n not in docs], [n for n in docs if n not in names]
    if missing or extra:
        raise ValueError(f"{cls.__name__}'s docstring must document each field once under 'Args:'; fields without "
                         f"an entry: {missing}, entries without a field: {extra}")
    texts = {name: " ".join(docs[name]) for name in names}
    if not as_flags:
        return texts
    owners: dict[str, list[tuple[str, str]]] = {}
    for flag, (owner, name) in config_flags().items():
        owners.setdefault(name, []).append((owner, flag))
    flags = {name: next((flag for owner, flag in found if owner == section), found[0][1])
             for name, found in owners.items() if len(found) == 1 or any(owner == section for owner, _ in found)}
    return {name: re.sub(r"``(\w+)``", lambda m: f"``{flags.get(m.group(1), m.group(1))}``", text)
            for name, text in texts.items()}


def format_value(value: Any) -> str:
    """A config value as written on the command line: ``true``/``false``, ``none``, ``a,b,c`` for a tuple.

    Args:
        value: a field's value.

    Returns:
        The text that the corresponding ``ssl-mix train`` flag accepts (booleans: the flag or its ``--no-`` form).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


# The official ICT recipe (Verma et al. 2019, code README): SGD 0.1 with Nesterov momentum 0.9, weight decay 1e-4,
# batch 100 labeled + 100 unlabeled, consistency weight up to 100 with a sigmoid ramp over the first quarter of
# training, EMA 0.999, learning rate cosine ramp-down reaching zero at 1.125x the training length, mixup α in both
# the supervised and consistency terms. 400 epochs of 450 steps (45,000 unlabeled images / 100) = 180,000 steps.
# The EMA averages parameters only (the teacher keeps its own batch-norm statistics), and CIFAR-10 inputs are
# ZCA-whitened (the code whitens CIFAR-10 only).
def _ict(alpha: float, steps: int) -> Config:
    return Config(
        model=ModelConfig(name="wrn28-2"),
        method=MethodConfig(name="ict", k=2, alpha=alpha, supervised="mixup", consistency_target="logits",
                            consistency_weight=100.0, ramp="sigmoid", ramp_fraction=0.25, ema_decay=0.999,
                            teacher_bn="own"),
        optim=OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
                          lr_schedule="cosine", lr_rampdown_factor=1.125),
        train=TrainConfig(steps=steps, eval_every=2000, log_every=100, checkpoint_every=2000),
    )


# Chaudhry et al.: Adam 0.002, batch 128, consistency weight ramped linearly 0 -> 100 over 40% of the steps. The
# paper states neither input whitening (none here) nor the teacher's batch-norm statistics (its own, as in the
# mean-teacher code).
def _chaudhry(alpha: float) -> Config:
    return Config(
        data=DataConfig(batch_size=128, unlabeled_batch_size=128),
        model=ModelConfig(name="wrn28-2"),
        method=MethodConfig(name="ict", k=2, alpha=alpha, consistency_weight=100.0, ramp="linear",
                            ramp_fraction=0.4, ema_decay=0.999, teacher_bn="own"),
        optim=OptimConfig(optimizer="adam", lr=0.002, weight_decay=0.0, lr_schedule="cosine",
                          lr_rampdown_factor=1.0),
        train=TrainConfig(steps=200_000, eval_every=2000, log_every=100, checkpoint_every=2000),
    )


def _with(cfg: Config, **section_updates: dict[str, Any]) -> Config:
    return cfg.replace(**section_updates)


PRESETS: dict[str, Config] = {
    "ict-cifar10": _with(_ict(1.0, 180_000), data={"dataset": "cifar10", "num_labels": 4000, "num_valid_per_class": 500,
                                                    "zca": True}),
    "ict-svhn": _with(_ict(0.1, 180_000), data={"dataset": "svhn", "num_labels": 1000, "num_valid_per_class": 100}),
    "chaudhry-cifar10": _with(_chaudhry(0.5), data={"dataset": "cifar10", "num_labels": 4000}),
    "chaudhry-svhn": _with(_chaudhry(0.1), data={"dataset": "svhn", "num_labels": 1000}),
    "cpu-cifar10": Config(
        data=DataConfig(dataset="folder", num_labels=1000, batch_size=32, unlabeled_batch_size=32),
        model=ModelConfig(name="cnn-small", bn_momentum=0.01),
        method=MethodConfig(name="ict", k=2, alpha=1.0, consistency_weight=50.0, ramp="sigmoid",
                            ramp_fraction=0.25, ema_decay=0.99),
        optim=OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4),
        train=TrainConfig(steps=6000, eval_every=2000, log_every=100, checkpoint_every=2000),
    ),
    "demo": Config(
        data=DataConfig(dataset="digits", num_labels=30, batch_size=32, unlabeled_batch_size=128, augment=True),
        model=ModelConfig(name="cnn-small", bn_momentum=0.1),
        method=MethodConfig(name="ict", k=2, alpha=1.0, consistency_weight=100.0, ramp="sigmoid",
                            ramp_fraction=0.25, ema_decay=0.99),
        optim=OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4),
        train=TrainConfig(steps=800, eval_every=800, log_every=50, checkpoint_every=0),
    ),
}


PRESET_DESCRIPTIONS: dict[str, str] = {
    "ict-cifar10": "the official ICT code (Verma et al. 2019) on CIFAR-10: SGD, mixup in both terms, ZCA inputs",
    "ict-svhn": "the official ICT code (Verma et al. 2019) on SVHN: as ict-cifar10 with a smaller alpha",
    "chaudhry-cifar10": "Chaudhry et al. on CIFAR-10: Adam and a linear consistency ramp; set --k for ICT[K]",
    "chaudhry-svhn": "Chaudhry et al. on SVHN: as chaudhry-cifar10 with a smaller alpha",
    "cpu-cifar10": "the CPU-scale benchmark: a small CNN on an image folder (e.g. CIFAR-10 as JPEG)",
    "demo": "what ssl-mix demo trains: scikit-learn's bundled digits, no download",
}
"""One line per preset, in the order of :data:`PRESETS`: what it reproduces (``ssl-mix presets`` prints them)."""


def preset(name: str) -> Config:
    """A fresh copy of a named preset (:data:`PRESET_DESCRIPTIONS` says what each one reproduces)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
    return Config.from_dict(PRESETS[name].to_dict())
