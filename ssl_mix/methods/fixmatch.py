"""FixMatch (Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
eq. 4; official code google-research/fixmatch, ``fixmatch.py``): cross-entropy on the labeled batch plus
lambda_u * cross-entropy of the strong view against the hard pseudo-label of the weak view, kept where the weak
view's confidence reaches tau.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.checks import check_number
from ssl_mix.methods.base import Batch, Method, StepContext, StepOutput, register_method

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["FixMatch", "pseudo_labels", "fixmatch_unlabeled_loss", "DEFAULT_THRESHOLD"]

DEFAULT_THRESHOLD = 0.95
"""tau, FixMatch's confidence threshold (official ``fixmatch.py:165``, ``confidence`` flag 0.95)."""


def pseudo_labels(weak_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels and their confidence mask from the weak view's logits (no gradient).

    Args:
        weak_logits: (N, C) logits of the weak view.
        threshold: tau in (0, 1]; the mask keeps rows whose largest probability is >= tau (official
            ``fixmatch.py:116`` compares with ``>=``).

    Returns:
        ``(labels, mask)``: (N,) int64 argmax classes and (N,) float32 mask of 0/1.
    """
    with torch.no_grad():
        probs = torch.softmax(weak_logits.detach().float(), dim=-1)
        confidence, labels = probs.max(dim=-1)
        return labels, (confidence >= threshold).float()


def fixmatch_unlabeled_loss(strong_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FixMatch's unlabeled term: mean over all N rows of mask * CE(strong, pseudo-label).

    The mean runs over every unlabeled row, masked or not (official ``fixmatch.py:118``,
    ``reduce_mean(loss_xeu * pseudo_mask)``), so the term shrinks while few rows pass the threshold.

    Args:
        strong_logits: (N, C) logits of the strong view.
        labels: (N,) pseudo-labels; mask: (N,) 0/1 weights.

    Returns:
        A float32 scalar.
    """
    ce = F.cross_entropy(strong_logits.float(), labels, reduction="none")
    return (ce * mask).mean()


@register_method
class FixMatch(Method):
    """FixMatch: supervised CE + lambda_u * masked CE of the strong view on the weak view's hard pseudo-labels.

    One student forward pass on labeled, weak and strong images concatenated, so batch norm normalises every
    sub-batch with the same statistics (the official code concatenates them too, ``fixmatch.py:99``; its
    interleave only matters when the batch is split across devices).

    Args:
        threshold: tau in (0, 1].
        unlabeled_weight: lambda_u (official ``wu`` flag, 1).
    """

    name = "fixmatch"
    uses_unlabeled = True

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, unlabeled_weight: float = 1.0) -> None:
        self.threshold = check_number("threshold", threshold, low=0, high=1, low_open=True)
        self.unlabeled_weight = check_number("unlabeled_weight", unlabeled_weight, low=0)

    @classmethod
    def views_for(cls, cfg: MethodConfig) -> tuple[str, ...]:
        """A weak and a strong view of each unlabeled image: see :meth:`Method.views_for`."""
        return ("weak", "strong")

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> FixMatch:
        """FixMatch with ``method.threshold`` and ``method.consistency_weight`` as lambda_u: see
        :meth:`Method.from_config`."""
        threshold = DEFAULT_THRESHOLD if cfg.threshold is None else cfg.threshold
        return cls(threshold, cfg.consistency_weight)

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Supervised CE plus the masked pseudo-label CE: see :meth:`Method.loss`."""
        if len(batch.u_views) != 2:
            raise ValueError(f"FixMatch needs Batch.u_views = (weak, strong), got {len(batch.u_views)} view(s)")
        x_l, y_l = batch.x_l, batch.y_l
        weak, strong = batch.u_views
        logits = student(torch.cat([x_l, weak, strong]))
        logits_l, logits_weak, logits_strong = logits.split([x_l.shape[0], weak.shape[0], strong.shape[0]])
        sup = F.cross_entropy(logits_l.float(), y_l)
        labels, mask = pseudo_labels(logits_weak, self.threshold)
        unsup = fixmatch_unlabeled_loss(logits_strong, labels, mask)
        loss = sup + self.unlabeled_weight * unsup
        return StepOutput(loss, {"loss/supervised": sup.detach(), "loss/unlabeled": unsup.detach(),
                                 "mask": mask.mean()})
