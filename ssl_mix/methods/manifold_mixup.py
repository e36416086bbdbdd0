"""Manifold mixup (Verma et al. 2019, "Manifold Mixup: Better Representations by Interpolating Hidden States"):
supervised mixup of hidden states at a layer drawn each step from a set S."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from ssl_mix.checks import check_alpha, check_k
from ssl_mix.methods.base import Batch, Method, StepContext, StepOutput, register_method
from ssl_mix.methods.mixup import mixup_loss
from ssl_mix.mixing import sample_mix_plan
from ssl_mix.models import LayerId

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["ManifoldMixup"]


@register_method
class ManifoldMixup(Method):
    """Manifold mixup (Verma et al. 2019): mix hidden states at a layer drawn uniformly from ``layers`` each step.

    Args:
        layers: the set S of layer ids (``"input"`` = raw input, integers = stage outputs of a staged model).
        k, alpha, per_sample: as in :class:`~ssl_mix.Mixup`.

    Note:
        The layer is drawn on the host (``ctx.host_generator``) so the step needs no device synchronisation.
    """

    name = "manifold-mixup"

    def __init__(self, layers: Sequence[LayerId] = ("input", 0, 1, 2), k: int = 2, alpha: float = 2.0, *,
                 per_sample: bool = False) -> None:
        k, alpha = check_k(k), check_alpha(alpha)
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must name at least one layer, e.g. ('input', 0, 1, 2)")
        self.layers, self.k, self.alpha, self.per_sample = layers, k, alpha, per_sample
        self.needs_stages = any(layer != "input" for layer in layers)  # mixing at the input needs a forward pass only

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> ManifoldMixup:
        """Manifold mixup from ``mix_layers``, ``k``, ``alpha`` and ``per_sample``: see
        :meth:`Method.from_config`."""
        return cls(cfg.mix_layers, cfg.k, cfg.alpha, per_sample=cfg.per_sample)

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Mixed-target cross-entropy with the labeled batch mixed at a drawn layer: see :meth:`Method.loss`."""
        pick = int(torch.randint(len(self.layers), (), generator=ctx.host_generator))
        layer = self.layers[pick]
        plan = sample_mix_plan(batch.x_l.shape[0], self.k, self.alpha, per_sample=self.per_sample,
                               generator=ctx.generator, device=batch.x_l.device)
        loss = mixup_loss(student, batch.x_l, batch.y_l, plan, layer)
        return StepOutput(loss, {"loss/supervised": loss.detach()})
