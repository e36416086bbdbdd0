"""Argument checks and weight initialisation shared by the model definitions (private)."""

from __future__ import annotations

import math
import numbers

from torch import nn


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_float(
    name: str, value: object, low: float, high: float, *, low_inclusive: bool = True, high_inclusive: bool, hint: str
) -> float:
    """A real number between ``low`` and ``high``, with ``hint`` appended to the error message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    above = low <= value if low_inclusive else low < value
    below = value <= high if high_inclusive else value < high
    if not (math.isfinite(value) and above and below):
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value}; {hint}")
    return value


def check_bn_momentum(value: object) -> float:
    return check_float(
        "bn_momentum", value, 0.0, 1.0, low_inclusive=False, high_inclusive=True,
        hint="0 would freeze the running statistics. PyTorch convention: running = (1 - momentum) * running "
        "+ momentum * batch, so a TensorFlow/Keras decay of 0.999 is momentum 0.001.",
    )


def check_leaky_slope(value: object) -> float:
    return check_float(
        "leaky_slope", value, 0.0, 1.0, high_inclusive=False,
        hint="the negative slope of the leaky ReLU (0.1 in the ICT/FixMatch code; 0 gives a plain ReLU).",
    )


def check_dropout(value: object) -> float:
    return check_float("dropout", value, 0.0, 1.0, high_inclusive=False, hint="a drop probability; 0 disables it.")


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
