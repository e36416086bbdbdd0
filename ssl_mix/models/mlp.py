"""A multilayer perceptron for feature vectors ("mlp"): tabular data, or embeddings made by a frozen encoder.

Not from a paper: hidden layers of ``Linear -> norm -> leaky ReLU -> dropout`` (256, 256 units by default), then a
linear classifier. The input is the flat feature vector; the ``(B, F, 1, 1)`` batches of a feature dataset
(:mod:`ssl_mix.data.features`) are flattened by the first stage, so mixing at ``input`` mixes the standardised
features themselves and mixing at layer ``i`` mixes the hidden vector after hidden layer ``i`` (manifold mixup,
ICT at a hidden layer, Verma et al. 2019).

Layers: 0 .. n-1 = ``hidden1`` .. ``hiddenN`` (the hidden vectors), n = ``logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from torch import nn

from ssl_mix.checks import check_in, check_int, check_widths
from ssl_mix.models._common import check_bn_momentum, check_dropout, check_leaky_slope, init_weights
from ssl_mix.models.stages import StagedModel

__all__ = ["MLP", "Norm", "NORMS"]

Norm = Literal["batch", "layer", "none"]
"""The normalisation after each hidden linear layer: batch norm, layer norm, or none."""

NORMS: tuple[str, ...] = get_args(Norm)
"""The values of :data:`Norm`."""


class MLP(StagedModel):
    """Hidden ``Linear -> norm -> leaky ReLU -> dropout`` stages and a linear classifier.

    Args:
        num_classes: number of outputs, >= 1.
        in_channels: the number of input features ``F`` (inputs are ``(B, F)`` or ``(B, F, 1, 1)``; any
            ``(B, ...)`` with ``F`` numbers per example is flattened).
        widths: units of the hidden layers (one stage each), at least one.
        norm: ``"batch"`` (``BatchNorm1d``, with ``bn_momentum``), ``"layer"`` (``LayerNorm``) or ``"none"``.
        bn_momentum: PyTorch batch-norm momentum in (0, 1].
        leaky_slope: negative slope of the leaky ReLUs, in [0, 1).
        dropout: drop probability at the end of every hidden stage, in [0, 1).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int,
        widths: Sequence[int] = (256, 256),
        norm: Norm = "batch",
        bn_momentum: float = 0.001,
        leaky_slope: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        widths = check_widths(widths, (256, 256))
        check_in("norm", norm, NORMS)
        bn_momentum = check_bn_momentum(bn_momentum)
        leaky_slope = check_leaky_slope(leaky_slope)
        dropout = check_dropout(dropout)

        stages: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip((in_channels, *widths[:-1]), widths, strict=True)):
            layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
            layers.append(nn.Linear(width_in, width_out, bias=norm != "batch"))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width_out, momentum=bn_momentum))
            elif norm == "layer":
                layers.append(nn.LayerNorm(width_out))
            layers.append(nn.LeakyReLU(leaky_slope))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            stages.append(nn.Sequential(*layers))
        stages.append(nn.Linear(widths[-1], num_classes))
        names = tuple(f"hidden{i + 1}" for i in range(len(widths))) + ("logits",)
        super().__init__(stages, names)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_features = widths[-1]
        init_weights(self, leaky_slope)
