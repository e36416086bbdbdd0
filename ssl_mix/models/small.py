"""A small, fast ConvNet for CPU-scale benchmarks, demos and tests ("cnn-small").

Not from the literature: three strided 3x3 convolutions (32, 64, 128 channels by default), each followed by
batch norm and a leaky ReLU, global average pooling and a linear classifier. Each convolution has stride 2,
so the spatial size halves at every stage (rounding up) and any input size from 1x1 up works, including the
8x8 and 16x16 digit images. At 32x32 a forward pass costs about 2.6 million multiply-adds per image
(~0.5 GFLOP per 100 images); at 16x16 a quarter of that.

Layers: 0 = ``stage1`` (H/2), 1 = ``stage2`` (H/4), 2 = ``stage3`` (H/8), 3 = ``pooled`` (features),
4 = ``logits``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ssl_mix.checks import check_int, check_widths
from ssl_mix.models._common import check_bn_momentum, check_dropout, check_leaky_slope, init_weights
from ssl_mix.models.stages import StagedModel

__all__ = ["SmallCNN"]


class SmallCNN(StagedModel):
    """Three strided conv + BN + leaky-ReLU stages, pooling and a classifier.

    Args:
        num_classes: number of outputs, >= 1.
        in_channels: input channels.
        widths: channels of the three stages (any number >= 1 of stages is accepted).
        bn_momentum: PyTorch batch-norm momentum in (0, 1].
        leaky_slope: negative slope of the leaky ReLUs, in [0, 1).
        dropout: drop probability on the pooled features (part of layer ``pooled``), in [0, 1).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        bn_momentum: float = 0.001,
        leaky_slope: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        widths = check_widths(widths, (32, 64, 128))
        bn_momentum = check_bn_momentum(bn_momentum)
        leaky_slope = check_leaky_slope(leaky_slope)
        dropout = check_dropout(dropout)

        stages: list[nn.Module] = []
        for in_ch, out_ch in zip((in_channels, *widths[:-1]), widths, strict=True):
            stages.append(nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_ch, momentum=bn_momentum),
                nn.LeakyReLU(leaky_slope),
            ))
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        stages += [nn.Sequential(*head), nn.Linear(widths[-1], num_classes)]
        names = tuple(f"stage{i + 1}" for i in range(len(widths))) + ("pooled", "logits")
        super().__init__(stages, names)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_features = widths[-1]
        init_weights(self, leaky_slope)
