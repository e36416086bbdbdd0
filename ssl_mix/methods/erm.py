"""Empirical risk minimisation: the supervised-only baseline (cross-entropy on the labeled batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import nn

from ssl_mix.methods.base import Batch, Method, StepContext, StepOutput, register_method

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["ERM"]


@register_method
class ERM(Method):
    """Empirical risk minimisation: cross-entropy on the labeled batch only (the supervised-only baseline)."""

    name = "erm"

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> ERM:
        """ERM has no settings: see :meth:`Method.from_config`."""
        return cls()

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Cross-entropy of the student on the labeled batch: see :meth:`Method.loss`."""
        loss = F.cross_entropy(student(batch.x_l).float(), batch.y_l)
        return StepOutput(loss, {"loss/supervised": loss.detach()})
