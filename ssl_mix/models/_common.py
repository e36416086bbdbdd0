"""Argument checks and weight initialisation shared by the model definitions (private)."""

from __future__ import annotations

from torch import nn

from ssl_mix.checks import check_number


def check_bn_momentum(value: object) -> float:
    return check_number(
        "bn_momentum", value, low=0.0, high=1.0, low_open=True,
        hint="0 would freeze the running statistics. PyTorch convention: running = (1 - momentum) * running "
        "+ momentum * batch, so a TensorFlow/Keras decay of 0.999 is momentum 0.001.",
    )


def check_leaky_slope(value: object) -> float:
    return check_number(
        "leaky_slope", value, low=0.0, high=1.0, high_open=True,
        hint="the negative slope of the leaky ReLU (0.1 in the ICT/FixMatch code; 0 gives a plain ReLU).",
    )


def check_dropout(value: object) -> float:
    return check_number("dropout", value, low=0.0, high=1.0, high_open=True, hint="a drop probability; 0 disables it.")


def init_weights(model: nn.Module, leaky_slope: float) -> None:
    """He-normal (fan_out) convolutions, Xavier-normal linear layers, zero biases, unit batch-norm scale.

    This is the initialisation of the PyTorch ports of the FixMatch/MixMatch wide ResNet. The He gain uses
    the network's actual leaky-ReLU slope.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, a=leaky_slope, mode="fan_out", nonlinearity="leaky_relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
