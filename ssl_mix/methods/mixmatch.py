"""MixMatch (Berthelot et al. 2019, "MixMatch: A Holistic Approach to Semi-Supervised Learning", Algorithm 1;
official code google-research/mixmatch, ``mixmatch.py`` and ``libml/layers.py``): guess labels from K weak views,
sharpen them, mix labeled and unlabeled examples together with lambda' = max(lambda, 1 - lambda), and train with
cross-entropy on the mixed labeled part plus lambda_U * squared error of probabilities on the mixed unlabeled part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ssl_mix.checks import check_number
from ssl_mix.losses import soft_target_cross_entropy
from ssl_mix.methods.base import Batch, Method, StepContext, StepOutput, register_method
from ssl_mix.mixing import sample_mix_weights
from ssl_mix.ramps import ConsistencySchedule

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["MixMatch", "sharpen", "guess_labels", "mixmatch_mix", "DEFAULT_TEMPERATURE", "DEFAULT_NUM_VIEWS",
           "OFFICIAL_RAMP_FRACTION"]

DEFAULT_TEMPERATURE = 0.5
"""T, the sharpening temperature (official ``mixmatch.py:63``, ``T=0.5``)."""

DEFAULT_NUM_VIEWS = 2
"""K, weak views per unlabeled image (official ``mixmatch.py:52``, ``nu=2``)."""

OFFICIAL_RAMP_FRACTION = 1024 / 65536
"""lambda_U ramps linearly over ``warmup_kimg=1024`` of ``train_kimg=1 << 16`` (official ``mixmatch.py:52,58,146``):
1/64 of training."""


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised over the last dimension (official ``mixmatch.py:48-49``).

    Args:
        probs: (N, C) probabilities; temperature: T > 0.

    Returns:
        (N, C) probabilities.
    """
    powered = probs.pow(1.0 / temperature)
    return powered / powered.sum(dim=-1, keepdim=True)


def guess_labels(view_logits: list[torch.Tensor] | tuple[torch.Tensor, ...], temperature: float) -> torch.Tensor:
    """MixMatch's label guess: the mean softmax over the K views, sharpened, without gradient
    (official ``mixmatch.py:40-50,64``).

    Args:
        view_logits: K tensors (N, C), the model's logits on each view (in train mode, as the official code).
        temperature: T > 0.

    Returns:
        (N, C) float32 targets.
    """
    with torch.no_grad():
        mean = torch.stack([torch.softmax(v.detach().float(), dim=-1) for v in view_logits]).mean(dim=0)
        return sharpen(mean, temperature)


def mixmatch_mix(x: torch.Tensor, targets: torch.Tensor, alpha: float, *,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix every row with a row of a random permutation of the same batch, lambda' = max(lambda, 1 - lambda) per row,
    lambda ~ Beta(alpha, alpha) (official ``libml/layers.py:166-175``, mode ``xxy.yxy``: labeled and unlabeled rows
    concatenated, one shuffle over all of them).

    Args:
        x: (N, ...) inputs; targets: (N, C) probabilities; alpha: > 0.
        generator: the random generator on ``x``'s device.

    Returns:
        The mixed inputs and targets; lambda' >= 1/2 keeps each mixed row closer to its own row.
    """
    n = x.shape[0]
    lam = sample_mix_weights(2, alpha, n, generator=generator, device=x.device, max_first=True)[:, 0]
    index = torch.randperm(n, device=x.device, generator=generator)
    lam_x = lam.view(n, *([1] * (x.dim() - 1))).to(x.dtype)
    lam_t = lam.view(n, 1).to(targets.dtype)
    return lam_x * x + (1 - lam_x) * x[index], lam_t * targets + (1 - lam_t) * targets[index]


@register_method
class MixMatch(Method):
    """MixMatch with K weak views, sharpening T, mixup alpha and an L2 unlabeled loss weighted lambda_U(t).

    Batch norm: the official code splits the mixed batch into K+1 sub-batches, swaps slices between them so that
    each holds labeled and unlabeled rows (``layers.interleave``), and runs one forward per sub-batch. Here the
    whole mixed batch goes through one forward pass, so batch norm sees labeled and unlabeled rows together, which
    is what the interleave approximates on one device.

    Args:
        num_views: K >= 1; temperature: T > 0; alpha: mixup's Beta alpha (0.75, the README's runs).
        schedule: lambda_U(t).
    """

    name = "mixmatch"
    uses_unlabeled = True

    def __init__(self, num_views: int = DEFAULT_NUM_VIEWS, temperature: float = DEFAULT_TEMPERATURE,
                 alpha: float = 0.75, schedule: ConsistencySchedule | None = None) -> None:
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1, got {num_views!r}")
        self.num_views = num_views
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        self.alpha = check_number("alpha", alpha, low=0, low_open=True)
        self.schedule = schedule if schedule is not None else ConsistencySchedule(max_weight=75.0, ramp="none")

    @classmethod
    def views_for(cls, cfg: MethodConfig) -> tuple[str, ...]:
        """K weak views: see :meth:`Method.views_for`."""
        return ("weak",) * (DEFAULT_NUM_VIEWS if cfg.num_views is None else cfg.num_views)

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> MixMatch:
        """MixMatch with lambda_U = ``method.consistency_weight`` ramped over ``ramp_fraction * total_steps``: see
        :meth:`Method.from_config`."""
        schedule = ConsistencySchedule(max_weight=cfg.consistency_weight, ramp=cfg.ramp,
                                       ramp_steps=round(cfg.ramp_fraction * total_steps))
        return cls(DEFAULT_NUM_VIEWS if cfg.num_views is None else cfg.num_views,
                   DEFAULT_TEMPERATURE if cfg.temperature is None else cfg.temperature, cfg.alpha, schedule)

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Mixed supervised CE plus lambda_U(t) times the mixed L2 term: see :meth:`Method.loss`."""
        views = batch.u_views if batch.u_views else (batch.x_u,)
        if len(views) != self.num_views:
            raise ValueError(f"MixMatch with num_views={self.num_views} needs that many Batch.u_views, got "
                             f"{len(views)}")
        x_l, y_l = batch.x_l, batch.y_l
        n_l, n_u = x_l.shape[0], views[0].shape[0]
        # The guess runs the student in train mode, as the official code (mixmatch.py:42, training=True).
        guess_logits = student(torch.cat(views)).split(n_u)
        num_classes = guess_logits[0].shape[-1]
        guess = guess_labels(guess_logits, self.temperature)
        one_hot = torch.nn.functional.one_hot(y_l, num_classes).float()
        x_all = torch.cat([x_l, *views])
        t_all = torch.cat([one_hot] + [guess] * len(views))
        x_mix, t_mix = mixmatch_mix(x_all, t_all, self.alpha, generator=ctx.generator)
        logits = student(x_mix)
        sup = soft_target_cross_entropy(logits[:n_l], t_mix[:n_l])
        unsup = torch.mean((torch.softmax(logits[n_l:].float(), dim=-1) - t_mix[n_l:]) ** 2)
        weight = self.schedule(ctx.step)
        return StepOutput(sup + weight * unsup, {"loss/supervised": sup.detach(), "loss/unlabeled": unsup.detach(),
                                                 "consistency_weight": weight})
