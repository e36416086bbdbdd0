"""Named presets: the published recipes as code, each with a one-line description (``ssl-mix presets``).

:data:`PRESETS` is the one table: ``{name: Preset(config, description)}``; :func:`preset` hands out a fresh copy of a
preset's config. Each recipe cites where its values come from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ssl_mix.config.sections import Config, DataConfig, MethodConfig, ModelConfig, OptimConfig, TrainConfig

__all__ = ["Preset", "PRESETS", "PRESET_DESCRIPTIONS", "preset"]


@dataclass(frozen=True)
class Preset:
    """A named recipe.

    Args:
        config: the recipe's whole configuration (use :func:`preset` for a copy to change).
        description: one line (at most 100 characters): what the preset reproduces. Settings are named in config
            terms (``method.k``); ``ssl-mix presets`` prints them as flags.
    """

    config: Config
    description: str


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


# FixMatch (Sohn et al. 2020; official google-research/fixmatch fixmatch.py:165-176): batch 64, uratio mu=7
# (448 unlabeled), confidence 0.95, wu 1, SGD Nesterov momentum 0.9 lr 0.03 with lr*cos(7 pi k / 16K) (:92-93,130),
# weight decay 0.0005 on kernels only as an L2 loss (:122; coupled, as torch's SGD weight_decay), EMA 0.999 (:85),
# train_kimg 1<<16 = 2^26 labeled images = 2^20 steps of 64. Labeled images stay in the unlabeled pool.
def _fixmatch(dataset: str, num_labels: int, model: str = "wrn28-2", wd: float = 5e-4) -> Config:
    return Config(
        data=DataConfig(dataset=dataset, num_labels=num_labels, batch_size=64, unlabeled_batch_size=7 * 64,
                        labeled_in_unlabeled=True),
        model=ModelConfig(name=model),
        method=MethodConfig(name="fixmatch", threshold=0.95, consistency_weight=1.0, ramp="none",
                            ema_decay=0.999),
        optim=OptimConfig(optimizer="sgd", lr=0.03, momentum=0.9, nesterov=True, weight_decay=wd,
                          decay_norm_bias=False, lr_schedule="fixmatch"),
        train=TrainConfig(steps=1 << 20, eval_every=2000, log_every=100, checkpoint_every=2000),
    )


# MixMatch (Berthelot et al. 2019; official google-research/mixmatch mixmatch.py:52-63,136-146 and README's run
# --w_match=75 --beta=0.75): batch 64 labeled + 64 per view, K=2, T=0.5, alpha 0.75, lambda_U 75 ramped linearly over
# warmup_kimg 1024 of train_kimg 1<<16 (1/64 of training), Adam 0.002 constant, weight decay 0.02 * lr per step on
# kernels after the update (:57,92: AdamW's decoupled decay lr*wd), EMA 0.999. Labeled images are not in the
# unlabeled pool. SVHN lambda_U 250 (runs/table6.sh), CIFAR-100 lambda_U 150 with wd 0.04 and 135 filters
# (runs/table1.sh; WRN-28-8 is the closest registered width here).
def _mixmatch(dataset: str, num_labels: int, weight: float = 75.0, model: str = "wrn28-2",
              wd: float = 0.02) -> Config:
    return Config(
        data=DataConfig(dataset=dataset, num_labels=num_labels, batch_size=64, unlabeled_batch_size=64,
                        labeled_in_unlabeled=False),
        model=ModelConfig(name=model),
        method=MethodConfig(name="mixmatch", num_views=2, temperature=0.5, alpha=0.75, consistency_weight=weight,
                            ramp="linear", ramp_fraction=1024 / 65536, ema_decay=0.999),
        optim=OptimConfig(optimizer="adamw", lr=0.002, weight_decay=wd, decay_norm_bias=False,
                          lr_schedule="constant"),
        train=TrainConfig(steps=1 << 20, eval_every=2000, log_every=100, checkpoint_every=2000),
    )


# Fine-tuning a pretrained timm network on your images (a folder), supervised; --method ict adds the unlabeled ones.
# - timm:resnet18 (model.pretrained): a small ImageNet CNN with a group_matcher that trains at 224 px on a CPU; any
#   timm: name works (--model timm:vit_tiny_patch16_224). drop_path 0.05: stochastic depth of timm's ResNet recipes
#   (Wightman et al. 2021, "ResNet strikes back", A1/A2); MAE/BEiT use 0.1 for ViT-B.
# - AdamW lr 5e-4 at batch 64, layer_decay 0.65: USB's pretrained-ViT settings (usb_cv/*_cifar100_200_0.yaml: AdamW,
#   lr 0.0005, batch 64, layer_decay 0.5) with MAE's / BEiT's ViT-B fine-tuning decay 0.65 (He et al. 2022,
#   FINETUNE.md; Bao et al. 2022), which keeps more of the top layers' rate for networks with few layer groups.
# - weight_decay 0.05 on weights only (decay_norm_bias false): the DeiT / MAE / BEiT fine-tuning value and timm's
#   norm-and-bias exclusion; USB's 5e-4 with AdamW is close to no decay.
# - warmup_steps 250 (5% of 5000 steps, MAE's 5 of 100 epochs), cosine ramp-down to the end (lr_rampdown_factor 1).
# - freeze_backbone_steps 250: a linear probe before the fine-tune (LP-FT, Kumar et al. 2022, ICLR: a random head
#   trained jointly distorts the pretrained features); the backbone then warms up over its own 250 steps.
# - head_lr_mult 1: layer decay already gives the head the top rate (BEiT/MAE use no extra multiplier).
# - method erm: a well-tuned supervised fine-tune of a pretrained network is the baseline to beat (V-PET, NeurIPS
#   2025; USB's MixMatch on pretrained ViTs falls below labels alone). EMA teacher 0.999, as in the SSL recipes.
def _finetune() -> Config:
    return Config(
        data=DataConfig(dataset="folder", batch_size=64, unlabeled_batch_size=64),
        model=ModelConfig(name="timm:resnet18", pretrained=True, drop_path=0.05),
        method=MethodConfig(name="erm", ema_decay=0.999),
        optim=OptimConfig(optimizer="adamw", lr=5e-4, weight_decay=0.05, decay_norm_bias=False, layer_decay=0.65,
                          head_lr_mult=1.0, warmup_steps=250, freeze_backbone_steps=250, lr_schedule="cosine",
                          lr_rampdown_factor=1.0),
        train=TrainConfig(steps=5000, eval_every=500, log_every=50, checkpoint_every=500),
    )


def _cpu(method_cfg: Config) -> Config:
    """A recipe on the CPU grid's data, network and length (``cpu-cifar10``)."""
    return method_cfg.replace(
        data={"dataset": "folder", "num_labels": 1000, "batch_size": 32,
              "unlabeled_batch_size": 32 * (7 if method_cfg.method.name == "fixmatch" else 1)},
        model={"name": "cnn-small", "bn_momentum": 0.01}, method={"ema_decay": 0.99},
        train={"steps": 6000, "eval_every": 2000, "log_every": 100, "checkpoint_every": 2000})


def _with(cfg: Config, **section_updates: dict[str, Any]) -> Config:
    return cfg.replace(**section_updates)


_RECIPES: dict[str, tuple[Callable[[], Config], str]] = {
    "ict-cifar10": (
        lambda: _with(_ict(1.0, 180_000), data={"dataset": "cifar10", "num_labels": 4000,
                                                "num_valid_per_class": 500, "zca": True}),
        "the official ICT code (Verma et al. 2019) on CIFAR-10: SGD, mixup in both terms, ZCA inputs",
    ),
    "ict-svhn": (
        lambda: _with(_ict(0.1, 180_000), data={"dataset": "svhn", "num_labels": 1000,
                                                "num_valid_per_class": 100}),
        "the official ICT code (Verma et al. 2019) on SVHN: as ict-cifar10 with a smaller alpha",
    ),
    "chaudhry-cifar10": (
        lambda: _with(_chaudhry(0.5), data={"dataset": "cifar10", "num_labels": 4000}),
        "Chaudhry et al. on CIFAR-10: Adam and a linear consistency ramp; set method.k for ICT[K]",
    ),
    "chaudhry-svhn": (
        lambda: _with(_chaudhry(0.1), data={"dataset": "svhn", "num_labels": 1000}),
        "Chaudhry et al. on SVHN: as chaudhry-cifar10 with a smaller alpha",
    ),
    "fixmatch-cifar10": (lambda: _fixmatch("cifar10", 250),
                         "the official FixMatch code (Sohn et al. 2020) on CIFAR-10, 250 labels: WRN-28-2, SGD 0.03"),
    "fixmatch-svhn": (lambda: _fixmatch("svhn", 250), "FixMatch on SVHN, 250 labels: as fixmatch-cifar10"),
    "fixmatch-cifar100": (lambda: _fixmatch("cifar100", 2500, "wrn28-8", 1e-3),
                          "FixMatch on CIFAR-100, 2500 labels: WRN-28-8, weight decay 0.001"),
    "mixmatch-cifar10": (lambda: _mixmatch("cifar10", 250),
                         "the official MixMatch code (Berthelot et al. 2019) on CIFAR-10, 250 labels: Adam 0.002"),
    "mixmatch-svhn": (lambda: _mixmatch("svhn", 250, 250.0),
                      "MixMatch on SVHN, 250 labels: method.consistency_weight 250"),
    "mixmatch-cifar100": (lambda: _mixmatch("cifar100", 10000, 150.0, "wrn28-8", 0.04),
                          "MixMatch on CIFAR-100, 10000 labels: WRN-28-8, lambda_U 150, weight decay 0.04"),
    "fixmatch-cpu": (lambda: _cpu(_fixmatch("cifar10", 1000)), "FixMatch on the CPU grid (cpu-cifar10's data and net)"),
    "mixmatch-cpu": (lambda: _cpu(_mixmatch("cifar10", 1000)), "MixMatch on the CPU grid (cpu-cifar10's data and net)"),
    "cpu-cifar10": (
        lambda: Config(
            data=DataConfig(dataset="folder", num_labels=1000, batch_size=32, unlabeled_batch_size=32),
            model=ModelConfig(name="cnn-small", bn_momentum=0.01),
            method=MethodConfig(name="ict", k=2, alpha=1.0, consistency_weight=50.0, ramp="sigmoid",
                                ramp_fraction=0.25, ema_decay=0.99),
            optim=OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4),
            train=TrainConfig(steps=6000, eval_every=2000, log_every=100, checkpoint_every=2000),
        ),
        "the CPU-scale benchmark: a small CNN on an image folder (e.g. CIFAR-10 as JPEG)",
    ),
    "finetune": (_finetune, "fine-tune pretrained timm:resnet18 on a folder: AdamW, layer decay, linear probe first"),
    "demo": (
        lambda: Config(
            data=DataConfig(dataset="digits", num_labels=30, batch_size=32, unlabeled_batch_size=128, augment=True),
            model=ModelConfig(name="cnn-small", bn_momentum=0.1),
            method=MethodConfig(name="ict", k=2, alpha=1.0, consistency_weight=100.0, ramp="sigmoid",
                                ramp_fraction=0.25, ema_decay=0.99),
            optim=OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4),
            train=TrainConfig(steps=800, eval_every=800, log_every=50, checkpoint_every=0),
        ),
        "what ssl-mix demo trains: scikit-learn's bundled digits, no download",
    ),
}
"""name -> (build the config, description); the order is the order ``ssl-mix presets`` lists them."""


class _PresetTable(Mapping[str, Preset]):
    """The read-only table of named recipes, each built when first read: building a config checks its method's
    settings, which imports torch, while the command line lists the names (``--preset``) without it."""

    def __init__(self, recipes: dict[str, tuple[Callable[[], Config], str]]) -> None:
        self._recipes, self._built = recipes, {}

    def __getitem__(self, name: str) -> Preset:
        if name not in self._built:
            build, description = self._recipes[name]
            self._built[name] = Preset(build(), description)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._recipes)

    def __len__(self) -> int:
        return len(self._recipes)


PRESETS: Mapping[str, Preset] = _PresetTable(_RECIPES)
"""The named recipes, in the order ``ssl-mix presets`` lists them: ``{name: Preset(config, description)}`` (a
read-only mapping whose configs are built on first use)."""

PRESET_DESCRIPTIONS: dict[str, str] = {name: description for name, (_, description) in _RECIPES.items()}
"""``{name: description}``, read from :data:`PRESETS` (kept for code written before presets carried their
descriptions)."""


def preset(name: str) -> Config:
    """A fresh copy of a named preset's config.

    Args:
        name: a key of :data:`PRESETS` (its ``description`` says what each one reproduces).

    Returns:
        A new :class:`Config`, independent of the table.

    Raises:
        ValueError: an unknown name, with the available ones listed.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
    return Config.from_dict(PRESETS[name].config.to_dict())
