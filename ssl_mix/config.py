"""Typed run configuration: data, model, method, optimisation and training, with named paper presets.

Every section is a dataclass validated once in ``__post_init__``; string options are ``Literal`` types checked at
construction, and unknown keys are errors (from a dict, a JSON file or the command line alike). Each field maps onto
exactly one command-line flag (``--num-labels``, ``--k``, ...; ``--model``, ``--method`` and ``--out`` for
``model.name``, ``method.name`` and ``train.out_dir``).

Presets are the published recipes as code, not YAML piles:

- ``ict-cifar10`` / ``ict-svhn``: the official ICT recipe (Verma et al. 2019, code README): SGD 0.1 with
  Nesterov momentum 0.9, weight decay 1e-4, batch 100 labeled + 100 unlabeled, consistency weight up to 100 with a
  sigmoid ramp over the first quarter of training, EMA 0.999, learning rate cosine ramp-down reaching zero at
  1.125x the training length, mixup α 1.0 (CIFAR-10) or 0.1 (SVHN) in both the supervised and consistency terms.
  400 epochs of 450 steps (45,000 unlabeled images / 100) = 180,000 steps. The teacher keeps its own batch-norm
  statistics (the EMA averages parameters only); CIFAR-10 inputs are ZCA-whitened (the code whitens CIFAR-10 only).
- ``chaudhry-cifar10`` / ``chaudhry-svhn``: Chaudhry et al. (Adam 0.002, batch 128, consistency weight ramped
  linearly 0 -> 100 over 40% of steps, Dirichlet α 0.5 for CIFAR-10, 0.1 for SVHN). The teacher keeps its own
  batch-norm statistics as in the mean-teacher code; the paper states no input whitening, so none is applied.
- ``cpu-cifar10``: the small model and reduced step count used by the CPU-scale benchmarks.
- ``demo``: scikit-learn's bundled digits, the small CNN, a few hundred steps (``ssl-mix demo``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

__all__ = [
    "DataConfig",
    "ModelConfig",
    "MethodConfig",
    "OptimConfig",
    "TrainConfig",
    "Config",
    "PRESETS",
    "preset",
]

DatasetName = Literal["cifar10", "cifar100", "svhn", "folder", "digits"]
MethodName = Literal["erm", "mixup", "manifold-mixup", "ict"]


def _check_fields(obj: Any) -> None:
    """Validate ``Literal`` fields of a dataclass instance against their allowed values."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        allowed = _literal_values(hint)
        value = getattr(obj, f.name)
        if allowed is not None and value not in allowed:
            if value is None and _allows_none(hint):
                continue
            raise ValueError(
                f"{type(obj).__name__}.{f.name} must be one of {sorted(map(str, allowed))}, got {value!r}"
            )


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


def _positive(obj: Any, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{type(obj).__name__}.{name} must be a number, got {value!r}")
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{type(obj).__name__}.{name} must be {bound}, got {value!r}")


@dataclass
class DataConfig:
    """Which data, which labels, and how batches are drawn.

    Args:
        dataset: a built-in dataset name; ``folder`` reads ``data_root/train/<class>/*`` (and ``test/``,
            optional ``unlabeled/``); ``digits`` is scikit-learn's bundled 8x8 digits (no download).
        data_root: where the dataset lives (or is downloaded to with ``download``).
        download: let torchvision download CIFAR/SVHN into ``data_root`` when missing.
        num_labels: the label budget: total labeled examples, class-balanced (must divide by the class count).
        split: path of a saved split JSON; when given it replaces ``num_labels``/seed-based drawing.
        num_valid_per_class: held-out labeled examples per class used for model selection (never the test set).
        labeled_in_unlabeled: whether labeled examples also stay in the unlabeled pool (FixMatch/USB keep them).
        use_extra: SVHN only: add the 531k ``extra`` images to the unlabeled pool.
        batch_size: labeled examples per step.
        unlabeled_batch_size: unlabeled examples per step (ICT uses as many as labeled).
        loader: ``tensor`` keeps uint8 images on the training device and augments there (fast);
            ``torch`` uses a ``DataLoader`` with workers and per-image transforms.
        num_workers: worker processes for the ``torch`` loader.
        augment: random crop + flip (per dataset) on training batches.
        zca: ZCA-whiten every batch after normalisation, fitted on the training images (official ICT CIFAR-10 code).
        zca_eps: ZCA regulariser added to the covariance eigenvalues (normalised pixel units; see ssl_mix.fit_zca).
    """

    dataset: DatasetName = "cifar10"
    data_root: str | None = None
    download: bool = False
    num_labels: int = 4000
    split: str | None = None
    num_valid_per_class: int = 0
    labeled_in_unlabeled: bool = True
    use_extra: bool = False
    batch_size: int = 100
    unlabeled_batch_size: int = 100
    loader: Literal["tensor", "torch"] = "tensor"
    num_workers: int = 0
    augment: bool = True
    zca: bool = False
    zca_eps: float = 1e-2

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "num_labels", "batch_size", "unlabeled_batch_size")
        _positive(self, "zca_eps", allow_zero=True)
        _positive(self, "num_valid_per_class", "num_workers", allow_zero=True)


@dataclass
class ModelConfig:
    """The student network (the teacher is its EMA copy).

    Args:
        name: a name accepted by :func:`ssl_mix.create_model` (``wrn28-2``, ``wrn28-8``, ``wrn28-10``, ``cnn13``,
            ``cnn-small``).
        bn_momentum: batch-norm momentum in PyTorch's convention (0.001 as in the FixMatch/ICT WRN code; short
            runs want a larger value so that running statistics catch up).
        dropout: dropout probability where the architecture has dropout (None: the published value, e.g. 0.5
            after CNN-13's pooling layers, 0 for WRN).
        channels_last: store activations in NHWC (faster convolutions on GPUs).
    """

    name: str = "wrn28-2"
    bn_momentum: float = 0.001
    dropout: float | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)
        if not 0.0 < self.bn_momentum <= 1.0:
            raise ValueError(f"ModelConfig.bn_momentum must be in (0, 1], got {self.bn_momentum!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")


@dataclass
class MethodConfig:
    """The training method and its hyper-parameters.

    Args:
        name: ``erm`` (labeled data only), ``mixup`` (Zhang et al. 2018), ``manifold-mixup`` (Verma et al. 2019)
            or ``ict`` (ICT[K]; Verma et al. 2019, Chaudhry et al. eq. 2).
        k: number of points mixed (K >= 2); K=2 with Beta(α, α) is classic mixup/ICT.
        alpha: Dirichlet concentration of the mixing weights (α=0 disables mixing: the ERM limit).
        per_sample: one set of mixing weights per example instead of one per batch.
        mix_layers: manifold mixup: the set S of layers to draw from each step (``input`` is the raw input).
        cutmix_alpha: supervised mixup only: CutMix's Beta α (0 = off), via timm.
        cutmix_switch_prob: with both mixup and CutMix on, the probability of CutMix in a step.
        supervised: ICT's supervised term: ``plain`` cross-entropy or ``mixup`` (official ICT code's choice).
        sup_alpha: α of the supervised mixup inside ICT (None: same as ``alpha``).
        consistency_target: ``probs`` mixes teacher probabilities (the paper's equation, default);
            ``logits`` mixes teacher logits then applies softmax (the official ICT code).
        consistency_distance: ``mse`` between probabilities (ICT) or ``kl``.
        consistency_weight: w_max, the consistency weight after the ramp.
        ramp: ``sigmoid`` exp(-5(1-t)^2) (ICT, mean teacher), ``linear`` (Chaudhry et al.) or ``none``.
        ramp_fraction: fraction of the training steps over which the weight ramps up.
        ema_decay: EMA teacher decay.
        ema_warmup: use min(1 - 1/(t+1), decay) early on (mean teacher), so the teacher starts as a true average.
        teacher_mode: ``train`` runs the teacher with batch statistics and dropout, as the official ICT code does;
            ``eval`` uses the teacher's running statistics.
        teacher_bn: ``own``: the EMA averages parameters only and the teacher keeps its own batch-norm statistics,
            updated by its train-mode passes (official mean-teacher/ICT code); ``copy``: the student's, every update.
        joint_forward: ICT only: one student forward pass on the labeled and the mixed unlabeled batch
            concatenated, instead of two. Faster on a GPU, but in train mode batch norm then normalises both with
            shared statistics (see :class:`~ssl_mix.ICT`); off by default, as in the official ICT code.
    """

    name: MethodName = "ict"
    k: int = 2
    alpha: float = 1.0
    per_sample: bool = False
    mix_layers: tuple[Any, ...] = ("input", 0, 1, 2)
    cutmix_alpha: float = 0.0
    cutmix_switch_prob: float = 0.5
    supervised: Literal["plain", "mixup"] = "plain"
    sup_alpha: float | None = None
    consistency_target: Literal["probs", "logits"] = "probs"
    consistency_distance: Literal["mse", "kl"] = "mse"
    consistency_weight: float = 100.0
    ramp: Literal["sigmoid", "linear", "none"] = "sigmoid"
    ramp_fraction: float = 0.25
    ema_decay: float = 0.999
    ema_warmup: bool = True
    teacher_mode: Literal["train", "eval"] = "train"
    teacher_bn: Literal["own", "copy"] = "copy"
    joint_forward: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)
        if not isinstance(self.joint_forward, bool):
            raise TypeError(f"MethodConfig.joint_forward must be a bool, got {self.joint_forward!r}")
        if self.joint_forward and self.name != "ict":
            raise ValueError(f"MethodConfig.joint_forward applies to the ict method (the others run one student "
                             f"forward pass per step), got method {self.name!r}; drop --joint-forward")
        if self.teacher_bn == "own" and self.name != "ict":
            raise ValueError(f"MethodConfig.teacher_bn='own' needs a method that runs the teacher (ict), so that its "
                             f"batch-norm statistics are updated; method {self.name!r} never runs it, so its "
                             "statistics would stay at their initial values. Use --teacher-bn copy")
        if self.teacher_bn == "own" and self.teacher_mode == "eval":
            raise ValueError("MethodConfig.teacher_bn='own' needs teacher_mode='train': the teacher's own batch-norm "
                             "statistics are updated by its forward passes in train mode, and in eval mode they would "
                             "never move. Use --teacher-mode train, or --teacher-bn copy")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"MethodConfig.k (points mixed) must be an integer >= 2, got {self.k!r}")
        _positive(self, "alpha", "cutmix_alpha", "consistency_weight", "sup_alpha", allow_zero=True)
        if not 0.0 <= self.ramp_fraction <= 1.0:
            raise ValueError(f"MethodConfig.ramp_fraction must be in [0, 1], got {self.ramp_fraction!r}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"MethodConfig.ema_decay must be in [0, 1], got {self.ema_decay!r}")
        if not 0.0 <= self.cutmix_switch_prob <= 1.0:
            raise ValueError(f"MethodConfig.cutmix_switch_prob must be in [0, 1], got {self.cutmix_switch_prob!r}")
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
        optimizer: ``sgd`` (with momentum, optionally Nesterov) or ``adam``; both use PyTorch's foreach kernels.
        lr: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (coupled, as in the ICT code).
        lr_schedule: ``cosine`` ramp-down or ``constant``.
        lr_rampdown_factor: the cosine reaches zero at this multiple of the training steps (ICT: 450/400 = 1.125),
            so the last steps keep a small non-zero rate.
        warmup_steps: linear learning-rate warm-up from 0.
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
        if self.lr_rampdown_factor < 1.0:
            raise ValueError(f"OptimConfig.lr_rampdown_factor must be >= 1, got {self.lr_rampdown_factor!r}")


@dataclass
class TrainConfig:
    """The training loop: length, seeds, evaluation, logging and checkpoints.

    Args:
        steps: optimiser steps (training is counted in steps, not epochs).
        seed: seeds the split (unless ``split`` is given), the initial weights, the loaders and all mixing.
        eval_every: evaluate student and teacher every this many steps (and at the end).
        log_every: read logged values from the device every this many steps (no per-step host round trips).
        checkpoint_every: write ``last.pt`` every this many steps (and at the end); 0 = only at the end.
        out_dir: run directory for checkpoints, TensorBoard logs and the final report.
        device: ``auto`` picks CUDA when available, else CPU; or any ``torch.device`` string.
        precision: ``bf16`` runs forward passes under bfloat16 autocast.
        compile: compile the model with ``torch.compile`` (falls back to eager with a warning).
        progress: show a progress bar.
        linearity_every: log per-layer non-linearity (Chaudhry et al. eq. 3) every this many steps; 0 = off.
        linearity_pairs: held-out pairs used for that measurement.
        sync_bn: under torchrun, compute batch-norm statistics over all processes (``SyncBatchNorm``, CUDA only)
            instead of per process; no effect in a one-process run.
        dist_timeout: under torchrun, seconds a process waits for the others in a collective operation before the
            run fails (a crashed or hung process then stops the run instead of blocking it forever).
    """

    steps: int = 1000
    seed: int = 0
    eval_every: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    out_dir: str = "runs/ssl_mix"
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    progress: bool = True
    linearity_every: int = 0
    linearity_pairs: int = 256
    sync_bn: bool = False
    dist_timeout: float = 300.0

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "steps", "eval_every", "log_every", "linearity_pairs", "dist_timeout")
        if self.dist_timeout is None or not self.dist_timeout < float("inf"):  # also rejects NaN
            raise ValueError(f"TrainConfig.dist_timeout must be a finite number of seconds, got {self.dist_timeout!r}")
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
    """A whole run: one instance of each section. Serialises to and from nested dicts / JSON."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, section_cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), section_cls):
                raise TypeError(f"Config.{name} must be a {section_cls.__name__}, got {type(getattr(self, name)).__name__}")
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
                raise ValueError(f"unknown key(s) {sorted(bad)} in config section {name!r}; valid keys: {sorted(valid)}")
            current.update(updates)
            sections[name] = section_cls(**current)
        return cls(**sections)

    @classmethod
    def from_file(cls, path: str | Path, base: Config | None = None) -> Config:
        """Read a JSON config file (nested sections, any subset of keys) on top of ``base``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {err}") from None
        return cls.from_dict(data, base=base)

    def replace(self, **section_updates: dict[str, Any]) -> Config:
        """A copy with some keys changed, e.g. ``cfg.replace(train={"steps": 10})``."""
        return Config.from_dict(section_updates, base=self)


# Command-line flag names that differ from the field name (both ``model.name`` and ``method.name`` exist).
_FLAG_ALIASES = {("method", "name"): "method", ("model", "name"): "model", ("train", "out_dir"): "out"}


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
    "chaudhry-cifar10": _with(_chaudhry(0.5), data={"dataset": "cifar10"}),
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


def preset(name: str) -> Config:
    """A fresh copy of a named preset (see the module docstring for what each one reproduces)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
    return Config.from_dict(PRESETS[name].to_dict())
