"""Wide ResNet WRN-28-k for 32x32 images, as used in semi-supervised learning benchmarks.

Zagoruyko & Komodakis (2016) wide residual networks in the variant of the MixMatch / FixMatch reference
code (Oliver et al. 2018 "Realistic evaluation of deep SSL"; Sohn et al. 2020), which ICT and Chaudhry et
al. use for CIFAR-10 / SVHN (WRN-28-2) and CIFAR-100 (WRN-28-8):

* a 3x3 convolution to 16 channels, then three groups of ``(depth - 4) / 6`` pre-activation basic blocks
  with widths ``16k, 32k, 64k`` and strides ``1, 2, 2``; a final BN + leaky ReLU, global average pooling and
  a linear classifier;
* leaky ReLU with slope 0.1 everywhere, batch-norm momentum 0.001 (TensorFlow decay 0.999; PyTorch's
  ``momentum`` is ``1 - decay``);
* pre-activation blocks as in the TensorFlow reference: the residual branch always starts from
  ``act(bn(x))``; the shortcut takes the raw ``x`` (through a 1x1 convolution when the shape changes), except
  in the first block of group 1 ("activate before residual"), whose shortcut takes ``act(bn(x))``. (Some
  PyTorch ports feed the raw ``x`` to the residual branch of the other shape-changing blocks; the parameter
  count is the same either way.)
* He-normal (fan_out) convolutions, Xavier-normal classifier, zero biases.

Parameter counts (``WideResNet.num_parameters`` in tests): WRN-28-2 with 10 classes 1,467,610 (reported
as 1.47M/1.5M), WRN-28-8 with 100 classes 23,401,012 (23.4M), WRN-28-10 with 10 classes 36,479,194 (36.5M).

The stages are ``[conv1, group1, group2, group3, head, fc]``, so layers 0..5 follow Chaudhry et al. §3:
0 = first convolution, 1-3 = the groups, 4 = pooled features (``head`` = BN, leaky ReLU, global average
pooling, flatten), 5 = logits.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_mix.checks import check_int
from ssl_mix.models._common import check_bn_momentum, check_dropout, check_leaky_slope, init_weights
from ssl_mix.models.stages import StagedModel

__all__ = ["WideResNet", "PreActBlock"]


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``shortcut(x) + conv3x3(drop(act(bn(conv3x3(act(bn(x)))))))``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution (and of the 1x1 shortcut convolution).
        activate_before_residual: feed ``act(bn(x))`` instead of ``x`` to the shortcut (first block of the
            first group in the FixMatch reference).
        bn_momentum: PyTorch batch-norm momentum.
        leaky_slope: negative slope of the leaky ReLUs.
        dropout: drop probability between the two convolutions (Zagoruyko & Komodakis); 0 disables it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        activate_before_residual: bool = False,
        bn_momentum: float = 0.001,
        leaky_slope: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=bn_momentum)
        self.act1 = nn.LeakyReLU(leaky_slope)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.act2 = nn.LeakyReLU(leaky_slope)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if in_channels != out_channels or stride != 1
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        residual = self.conv2(self.drop(self.act2(self.bn2(self.conv1(pre)))))
        return self.shortcut(pre if self.activate_before_residual else x) + residual


class WideResNet(StagedModel):
    """WRN-depth-k (pre-activation, leaky ReLU) for small images; stages ``[conv1, group1..3, head, fc]``.

    Args:
        num_classes: number of outputs, >= 1.
        depth: total depth, ``6 n + 4`` (28 gives 4 blocks per group).
        widen_factor: k, the width multiplier of the groups (16k, 32k, 64k channels), >= 1.
        in_channels: input channels (3 for RGB, 1 for grey images).
        bn_momentum: PyTorch batch-norm momentum in (0, 1] (0.001 = TensorFlow decay 0.999).
        leaky_slope: negative slope of every leaky ReLU, in [0, 1).
        dropout: drop probability inside each block, in [0, 1).

    Note:
        Any input size works (global average pooling); the architecture is the one tuned for 32x32, where
        group 3 sees 8x8 maps. ``forward(x)`` returns logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 28,
        widen_factor: int = 2,
        *,
        in_channels: int = 3,
        bn_momentum: float = 0.001,
        leaky_slope: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, 1)
        depth = check_int("depth", depth, 10)
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6 n + 4 (e.g. 28), got {depth}.")
        widen_factor = check_int("widen_factor", widen_factor, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        bn_momentum = check_bn_momentum(bn_momentum)
        leaky_slope = check_leaky_slope(leaky_slope)
        dropout = check_dropout(dropout)

        blocks_per_group = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        block_args = dict(bn_momentum=bn_momentum, leaky_slope=leaky_slope, dropout=dropout)

        def group(in_ch: int, out_ch: int, stride: int, first_group: bool) -> nn.Sequential:
            blocks = [PreActBlock(in_ch, out_ch, stride, activate_before_residual=first_group, **block_args)]
            blocks += [PreActBlock(out_ch, out_ch, 1, **block_args) for _ in range(blocks_per_group - 1)]
            return nn.Sequential(*blocks)

        stages = [
            nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
            group(widths[0], widths[1], 1, True),
            group(widths[1], widths[2], 2, False),
            group(widths[2], widths[3], 2, False),
            nn.Sequential(
                nn.BatchNorm2d(widths[3], momentum=bn_momentum),
                nn.LeakyReLU(leaky_slope),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            ),
            nn.Linear(widths[3], num_classes),
        ]
        super().__init__(stages, ("conv1", "group1", "group2", "group3", "pooled", "logits"))
        self.num_classes = num_classes
        self.depth = depth
        self.widen_factor = widen_factor
        self.in_channels = in_channels
        self.num_features = widths[3]
        init_weights(self, leaky_slope)
