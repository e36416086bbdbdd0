"""Supervised mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") with K-point Dirichlet weights;
CutMix and the Mixup/CutMix switch through timm's implementation.

The mixed-target losses here are shared by :mod:`ssl_mix.methods.manifold_mixup` and ICT's supervised mixup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.checks import check_alpha, check_k, check_number, check_probability
from ssl_mix.losses import soft_target_cross_entropy
from ssl_mix.methods.base import Batch, Method, StepContext, StepOutput, register_method
from ssl_mix.mixing import MixPlan, sample_mix_plan
from ssl_mix.models import LayerId, forward_mixed

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["Mixup", "mixup_loss", "mixed_target_loss"]


def mixup_loss(student: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: MixPlan,
               layer: LayerId = "input") -> torch.Tensor:
    """Soft-target cross-entropy of the student on a mix of ``x`` (at ``layer``) against the same mix of one-hot
    ``y``.

    Args:
        student: the model; a staged model when ``layer`` is not ``"input"``.
        x: (B, ...) inputs.
        y: (B,) int64 class indices.
        plan: the mix (one draw of :func:`~ssl_mix.sample_mix_plan` for ``B`` rows).
        layer: where to mix: ``"input"`` or a stage index (see :func:`~ssl_mix.models.forward_mixed`).

    Returns:
        The 0-dim mean loss.
    """
    logits = student(plan.apply(x)) if layer == "input" else forward_mixed(student, x, plan, layer)
    return mixed_target_loss(logits, y, plan)


def mixed_target_loss(logits: torch.Tensor, y: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Soft-target cross-entropy of ``logits`` (on a mix made with ``plan``) against the same mix of one-hot ``y``.

    Args:
        logits: (B, C) the model's output on the mixed inputs.
        y: (B,) int64 class indices of the unmixed inputs.
        plan: the mix the inputs were made with.

    Returns:
        The 0-dim mean loss.
    """
    targets = plan.apply(F.one_hot(y, logits.shape[1]).to(torch.float32))
    return soft_target_cross_entropy(logits, targets)


@register_method
class Mixup(Method):
    """Supervised mixup (Zhang et al. 2018): mix labeled inputs and their one-hot targets with one plan.

    Args:
        k: points per mix (K=2 is classic mixup; K>2 uses Dirichlet(α, ..., α) weights).
        alpha: mixing concentration; 0 disables mixing.
        per_sample: one weight vector per example instead of one per batch.
        cutmix_alpha: > 0 enables CutMix (K=2 only) via ``timm.data.Mixup``; with ``alpha`` > 0 too, each step is
            mixup or CutMix, CutMix with probability ``switch_prob``.
        switch_prob: see ``cutmix_alpha``.
        num_classes: required with CutMix (timm builds the soft targets).

    Note:
        The CutMix path draws its random numbers from NumPy's global generator (timm's implementation); the
        trainer checkpoints that state too, so resumed runs stay exact.
    """

    name = "mixup"

    def __init__(self, k: int = 2, alpha: float = 1.0, *, per_sample: bool = False, cutmix_alpha: float = 0.0,
                 switch_prob: float = 0.5, num_classes: int | None = None) -> None:
        k, alpha = check_k(k), check_alpha(alpha)
        cutmix_alpha = check_number("cutmix_alpha", cutmix_alpha, low=0)
        switch_prob = check_probability("switch_prob", switch_prob)
        self.k, self.alpha, self.per_sample = k, alpha, per_sample
        self._cutmix = None
        if cutmix_alpha > 0:
            if k != 2:
                raise ValueError(f"CutMix mixes two images; k must be 2 with cutmix_alpha > 0, got k={k}")
            if num_classes is None:
                raise ValueError("num_classes is required when cutmix_alpha > 0 (timm builds the soft targets)")
            from timm.data import Mixup as TimmMixup

            self._cutmix = TimmMixup(mixup_alpha=alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob,
                                     mode="batch", label_smoothing=0.0, num_classes=num_classes)

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> Mixup:
        """Mixup from ``k``, ``alpha``, ``per_sample``, ``cutmix_alpha`` and ``cutmix_switch_prob``: see
        :meth:`Method.from_config`."""
        return cls(cfg.k, cfg.alpha, per_sample=cfg.per_sample, cutmix_alpha=cfg.cutmix_alpha,
                   switch_prob=cfg.cutmix_switch_prob, num_classes=num_classes)

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Mixed-target cross-entropy on a mix of the labeled batch: see :meth:`Method.loss`."""
        if self._cutmix is not None:
            x, targets = self._cutmix(batch.x_l.clone(), batch.y_l)
            loss = soft_target_cross_entropy(student(x), targets)
        else:
            plan = sample_mix_plan(batch.x_l.shape[0], self.k, self.alpha, per_sample=self.per_sample,
                                   generator=ctx.generator, device=batch.x_l.device)
            loss = mixup_loss(student, batch.x_l, batch.y_l, plan)
        return StepOutput(loss, {"loss/supervised": loss.detach()})
