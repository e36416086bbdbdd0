"""CNN-13, the 13-layer ConvNet of the Π-model / mean-teacher / ICT CIFAR-10 experiments.

Laine & Aila (2017, Table 5), Tarvainen & Valpola (2017) and Verma et al. (ICT, 2019) use this network
for CIFAR-10 and SVHN:

* block 1: three 3x3 convolutions with 128 channels, then 2x2 max pooling and dropout 0.5;
* block 2: three 3x3 convolutions with 256 channels, then 2x2 max pooling and dropout 0.5;
* block 3: a 3x3 convolution with 512 channels and no padding ("valid"), then 1x1 convolutions with 256
  and 128 channels;
* global average pooling (6x6 at 32x32 input) and a linear classifier.

Every convolution is followed by batch norm and a leaky ReLU with slope 0.1.

Choices (documented deviations): the mean-teacher code wraps every convolution and the classifier in
weight normalisation; here it is optional (``weight_norm=True``, via
``torch.nn.utils.parametrizations.weight_norm``) and off by default, because each convolution is followed
by batch norm. Convolutions have no bias (batch norm follows each). Initialisation is the He/Xavier scheme of
the wide ResNet. Batch-norm momentum defaults to 0.001 like the other models of this package (the
mean-teacher code uses PyTorch's default, 0.1: pass ``bn_momentum=0.1`` for that).

Layers, numbered like the wide ResNet (first convolution, three blocks, pooled features, logits):
0 = ``conv1a`` (first convolution + BN + leaky ReLU, 128 channels, full resolution); 1 = ``block1`` (the
other two 128-channel convolutions, max pooling, dropout; H/2); 2 = ``block2`` (H/4); 3 = ``block3``
(128 channels, H/4 - 2); 4 = ``pooled`` (128 features); 5 = ``logits``. The valid 3x3 convolution needs
``H // 4 >= 3``, i.e. inputs of at least 12x12.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from ssl_mix.checks import check_bool, check_int
from ssl_mix.models._common import check_bn_momentum, check_dropout, check_leaky_slope, init_weights
from ssl_mix.models.stages import StagedModel

__all__ = ["CNN13"]


class CNN13(StagedModel):
    """The ICT / mean-teacher CNN-13; stages ``[conv1a, block1, block2, block3, pooled, logits]``.

    Args:
        num_classes: number of outputs, >= 1.
        in_channels: input channels (3 for RGB, 1 for grey images).
        bn_momentum: PyTorch batch-norm momentum in (0, 1] (the mean-teacher code uses 0.1).
        leaky_slope: negative slope of every leaky ReLU, in [0, 1).
        dropout: drop probability after the first two max-pooling layers, in [0, 1); 0.5 in the papers.
        weight_norm: wrap convolutions and the classifier in weight normalisation as the mean-teacher code
            does.

    Note:
        Inputs must be at least 12x12 (see the module docstring); any larger size works (global pooling).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 3,
        bn_momentum: float = 0.001,
        leaky_slope: float = 0.1,
        dropout: float = 0.5,
        weight_norm: bool = False,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        bn_momentum = check_bn_momentum(bn_momentum)
        leaky_slope = check_leaky_slope(leaky_slope)
        dropout = check_dropout(dropout)
        check_bool("weight_norm", weight_norm)

        def unit(in_ch: int, out_ch: int, kernel: int, padding: int) -> list[nn.Module]:
            return [
                nn.Conv2d(in_ch, out_ch, kernel, padding=padding, bias=False),
                nn.BatchNorm2d(out_ch, momentum=bn_momentum),
                nn.LeakyReLU(leaky_slope),
            ]

        def pool() -> list[nn.Module]:
            return [nn.MaxPool2d(2, stride=2), nn.Dropout(dropout) if dropout > 0 else nn.Identity()]

        stages = [
            nn.Sequential(*unit(in_channels, 128, 3, 1)),
            nn.Sequential(*unit(128, 128, 3, 1), *unit(128, 128, 3, 1), *pool()),
            nn.Sequential(*unit(128, 256, 3, 1), *unit(256, 256, 3, 1), *unit(256, 256, 3, 1), *pool()),
            nn.Sequential(*unit(256, 512, 3, 0), *unit(512, 256, 1, 0), *unit(256, 128, 1, 0)),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            nn.Linear(128, num_classes),
        ]
        super().__init__(stages, ("conv1a", "block1", "block2", "block3", "pooled", "logits"))
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_features = 128
        init_weights(self, leaky_slope)
        if weight_norm:
            for module in list(self.modules()):
                if isinstance(module, nn.Conv2d | nn.Linear):
                    _weight_norm(module)
