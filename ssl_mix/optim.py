"""Optimisers and learning-rate schedules: SGD, Adam or AdamW on fused/foreach kernels, warm-up and cosine ramp-down,
and the fine-tuning parameter groups (layer-wise decay, a head learning-rate multiplier, a frozen backbone).

The schedule follows the official ICT code: a cosine ramp-down that reaches zero at ``lr_rampdown_factor`` times
the training length (450/400 epochs = 1.125), so the last steps keep a small non-zero rate. The groups come from
timm's ``param_groups_weight_decay`` / ``param_groups_layer_decay``; ssl_mix only splits off the head and sets each
group's learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ssl_mix.config import OptimConfig
from ssl_mix.models.stages import get_stages
from ssl_mix.ramps import cosine_rampdown, linear_rampup

__all__ = ["weight_decay_groups", "head_module", "parameter_groups", "build_optimizer", "backbone_frozen",
           "schedule_notes",
           "lr_multiplier", "build_scheduler"]

# Devices with fused SGD and Adam kernels in every torch version ssl_mix supports (>= 2.4).
_FUSED_DEVICES = ("cpu", "cuda")


def _no_decay_names(model: nn.Module, decay_norm_bias: bool) -> tuple[str, ...] | set[str]:
    if decay_norm_bias or not hasattr(model, "no_weight_decay"):
        return ()
    return model.no_weight_decay()


def weight_decay_groups(model: nn.Module, weight_decay: float, *, decay_norm_bias: bool) -> list[dict]:
    """The model's trainable parameters as optimiser groups, with or without weight decay on biases and norms.

    Args:
        model: the network.
        weight_decay: the rate of the decayed group.
        decay_norm_bias: decay every parameter (one group); False puts parameters with fewer than two dimensions
            (biases, normalisation weights) and those the model lists in ``no_weight_decay()`` (timm's
            convention, e.g. position embeddings) in a group without decay, through timm's
            ``param_groups_weight_decay``.

    Returns:
        Parameter groups for a ``torch.optim`` optimiser.
    """
    if decay_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    from timm.optim import param_groups_weight_decay  # timm's import is slow; only this option needs it.

    return param_groups_weight_decay(model, weight_decay,
                                     no_weight_decay_list=_no_decay_names(model, decay_norm_bias))


def head_module(model: nn.Module) -> nn.Module:
    """The classifier head: timm's ``model.get_classifier()``, else the last stage of a staged model.

    Args:
        model: a timm model, :class:`~ssl_mix.models.TimmStaged`, or a model of the staged-model protocol (all of
            :func:`ssl_mix.create_model`'s networks end with their classifier stage).

    Returns:
        The module whose parameters are the head's.

    Raises:
        TypeError: the model has neither.
    """
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    try:
        return get_stages(model)[-1]
    except TypeError as error:
        raise TypeError(f"optim.head_lr_mult and optim.freeze_backbone_steps need the classifier head of the model, "
                        f"but {type(model).__name__} has neither timm's get_classifier() nor `stages` (whose last "
                        "stage is the head); use a timm: model or an ssl_mix model, or leave both at their "
                        "defaults") from error


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The model's trainable parameters as optimiser groups, each with its own ``lr`` and ``weight_decay``.

    Weight decay follows ``cfg.decay_norm_bias`` (see :func:`weight_decay_groups`). With ``cfg.layer_decay`` the
    groups are timm's ``param_groups_layer_decay`` over the model's ``group_matcher()``: layer group ``i`` of
    ``n`` gets ``lr * layer_decay ** (n - 1 - i)`` (``lr_scale``), the head's group the full rate. When
    ``cfg.head_lr_mult`` or ``cfg.freeze_backbone_steps`` is set, each group is split into its head part
    (``"head": True``, learning rate times ``head_lr_mult``) and its backbone part (``"head": False``).

    Args:
        model: the network.
        cfg: optimiser settings.

    Returns:
        Parameter groups for a ``torch.optim`` optimiser; every group holds ``lr``, ``lr_scale`` and
        ``weight_decay``.

    Raises:
        TypeError: layer decay for a model without ``group_matcher()``, or a head setting for a model whose head
            cannot be found (:func:`head_module`).
    """
    if cfg.layer_decay_on:
        if not hasattr(model, "group_matcher"):
            raise TypeError(f"optim.layer_decay needs the layer groups of timm's group_matcher(), which "
                            f"{type(model).__name__} does not have; use a timm: model (e.g. timm:resnet18, "
                            "timm:vit_tiny_patch16_224) or set optim.layer_decay none")
        from timm.optim import param_groups_layer_decay  # timm's import is slow; only this option needs it.

        groups = param_groups_layer_decay(model, cfg.weight_decay, layer_decay=cfg.layer_decay,
                                          weight_decay_exclude_1d=not cfg.decay_norm_bias,
                                          no_weight_decay_list=_no_decay_names(model, cfg.decay_norm_bias))
    else:
        groups = weight_decay_groups(model, cfg.weight_decay, decay_norm_bias=cfg.decay_norm_bias)
    groups = [{**g, "lr_scale": g.get("lr_scale", 1.0)} for g in groups]
    if cfg.needs_head:
        head = {id(p) for p in head_module(model).parameters()}
        groups = [{**g, "params": params, "head": is_head,
                   "lr_scale": g["lr_scale"] * (cfg.head_lr_mult if is_head else 1.0)}
                  for g in groups for is_head in (False, True)
                  if (params := [p for p in g["params"] if (id(p) in head) == is_head])]
        if not any(g["head"] for g in groups):
            raise TypeError(f"the classifier head of {type(model).__name__} has no trainable parameters, so "
                            "optim.head_lr_mult and optim.freeze_backbone_steps have nothing to act on")
    return [{**g, "lr": cfg.lr * g["lr_scale"]} for g in groups]


def build_optimizer(params: Iterable[nn.Parameter] | Iterable[dict] | nn.Module, cfg: OptimConfig, *,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW, with fused or multi-tensor (foreach) kernels.

    Args:
        params: the parameters to optimise, parameter groups, or a model (its groups come from
            :func:`parameter_groups`; layer decay and the head settings need the model).
        cfg: optimiser settings.
        fused: use PyTorch's fused kernels (one kernel for the whole update); ``None`` picks them when every
            parameter is a floating-point tensor on the CPU or a CUDA device, and the foreach kernels otherwise.

    Returns:
        The optimiser. Fused and foreach updates compute the same formula; they can differ in the last bits
        because the fused kernels order the floating-point operations differently (measured on CPU: 3x faster for
        SGD on WRN-28-2, see ``benchmarks/throughput.py``).
    """
    if isinstance(params, nn.Module):
        params = parameter_groups(params, cfg)
    elif cfg.layer_decay_on or cfg.needs_head:
        raise ValueError("optim.layer_decay, optim.head_lr_mult and optim.freeze_backbone_steps need the model's "
                         "layers: pass the model to build_optimizer, not its parameters")
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if fused is None:
        fused = all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in tensors)
    kernels = {"fused": True} if fused else {"foreach": True}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay, **kernels)
    adam = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels)


def schedule_notes(cfg: OptimConfig, total_steps: int) -> list[str]:
    """What a schedule does over a run of ``total_steps`` that its settings do not say at a glance: a frozen
    backbone or a warm-up that lasts the whole run (e.g. ``--preset finetune --steps 200``). Empty when neither.

    Args:
        cfg: the ``optim`` section.
        total_steps: the run's length (``train.steps``).

    Returns:
        One message per surprise, in config terms.
    """
    notes = []
    if cfg.freeze_backbone_steps and cfg.freeze_backbone_steps >= total_steps:
        notes.append(f"optim.freeze_backbone_steps={cfg.freeze_backbone_steps} is not below "
                     f"train.steps={total_steps}: only the classifier head trains in this run (a linear probe); "
                     "lower optim.freeze_backbone_steps or raise train.steps to fine-tune the whole network")
    if cfg.warmup_steps and cfg.warmup_steps >= total_steps:
        notes.append(f"optim.warmup_steps={cfg.warmup_steps} is not below train.steps={total_steps}: the learning "
                     f"rate never reaches optim.lr={cfg.lr:g}")
    return notes


def backbone_frozen(step: int, cfg: OptimConfig) -> bool:
    """Whether only the head trains at ``step`` (0-based): the first ``cfg.freeze_backbone_steps`` steps."""
    return step < cfg.freeze_backbone_steps


def lr_multiplier(step: int, total_steps: int, cfg: OptimConfig, *, backbone: bool = False) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine ramp-down reaching 0 at
    ``lr_rampdown_factor * total_steps`` (ICT: 450/400 epochs), or constant.

    Args:
        step: the optimiser step, from 0.
        total_steps: the training length.
        cfg: optimiser settings.
        backbone: the multiplier of the backbone's groups: 0 while :func:`backbone_frozen`; its warm-up starts
            when it joins, at step ``freeze_backbone_steps`` (whose rate is ``1 / warmup_steps`` of the full one).
    """
    start = cfg.freeze_backbone_steps if backbone else 0
    if step < start:
        return 0.0
    # The backbone's first step already moves it (the head's warm-up, as ICT's, starts at 0).
    ramp = step - start + (1 if start else 0)
    mult = linear_rampup(ramp, cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "cosine":
        mult *= cosine_rampdown(step, math.ceil(cfg.lr_rampdown_factor * total_steps))
    elif cfg.lr_schedule == "fixmatch":
        # FixMatch's official schedule (fixmatch.py:92-93): cos(7 pi t / 16), t = clip(k / K, 0, 1); ends at 0.195.
        mult *= math.cos(7 * math.pi * min(max(step / total_steps, 0.0), 1.0) / 16)
    return mult


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule of :func:`lr_multiplier` as a ``LambdaLR`` (step it once per optimiser step); groups
    marked ``"head": False`` (see :func:`parameter_groups`) follow the backbone's schedule."""
    def schedule(backbone: bool) -> Callable[[int], float]:
        return lambda step: lr_multiplier(step, total_steps, cfg, backbone=backbone)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule(g.get("head") is False)
                                                         for g in optimizer.param_groups])
