"""Ramp-up / ramp-down multipliers and the consistency-weight schedule.

Each ramp maps the current step and a ramp length to a multiplier in [0, 1] through
``t = clip(step / length, 0, 1)``:

- sigmoid ramp-up ``exp(-5 (1 - t)^2)`` (Laine & Aila 2017; mean teacher, Tarvainen & Valpola 2017; ICT,
  Verma et al. 2019),
- linear ramp-up ``t`` (Chaudhry et al.: consistency weight 0 -> max over the first 40% of training),
- cosine ramp-down ``0.5 (cos(pi t) + 1)`` (mean teacher's learning-rate ramp-down).

They return Python floats, so a training step that uses them needs no host-device synchronisation.
``step`` and ``length`` may be fractional (e.g. epochs with a fraction for the position within the epoch).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["sigmoid_rampup", "linear_rampup", "cosine_rampdown", "ConsistencySchedule"]

RampKind = Literal["sigmoid", "linear", "none"]


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    return value


def _progress(step: int, length: int) -> float:
    step_f = _check_number("step", step)
    length_f = _check_number("length", length)
    # A zero-length ramp is already complete: t = 1 from the first step.
    return 1.0 if length_f == 0 else min(step_f / length_f, 1.0)


def sigmoid_rampup(step: int, length: int) -> float:
    """Sigmoid-shaped ramp-up ``exp(-5 (1 - t)^2)`` with ``t = clip(step / length, 0, 1)``.

    Args:
        step: current step (or epoch), >= 0.
        length: ramp length in the same unit, >= 0; 0 means no ramp (returns 1.0).

    Returns:
        Multiplier in ``[exp(-5), 1]``; it starts at ``exp(-5) ~= 0.0067``, not exactly 0.
    """
    t = _progress(step, length)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def linear_rampup(step: int, length: int) -> float:
    """Linear ramp-up ``t = clip(step / length, 0, 1)``.

    Args:
        step: current step (or epoch), >= 0.
        length: ramp length in the same unit, >= 0; 0 means no ramp (returns 1.0).

    Returns:
        Multiplier in ``[0, 1]``.
    """
    return _progress(step, length)


def cosine_rampdown(step: int, length: int) -> float:
    """Cosine ramp-down ``0.5 (cos(pi t) + 1)`` with ``t = clip(step / length, 0, 1)``.

    Args:
        step: current step (or epoch), >= 0.
        length: ramp length, > 0. Zero is rejected: it would return 0 at every step, which silently
            switches off whatever the ramp scales.

    Returns:
        Multiplier in ``[0, 1]``: 1 at step 0, 0 from ``step >= length`` on.
    """
    if _check_number("length", length) == 0:
        raise ValueError("length must be > 0 for cosine_rampdown, got 0; a zero-length ramp-down is always 0.")
    t = _progress(step, length)
    return 0.5 * (math.cos(math.pi * t) + 1.0)


_RAMPS = {"sigmoid": sigmoid_rampup, "linear": linear_rampup}


@dataclass(frozen=True)
class ConsistencySchedule:
    """Consistency-loss weight ``max_weight * ramp(step, ramp_steps)``.

    Attributes:
        max_weight: weight once the ramp is complete, finite and >= 0 (ICT uses 100 for MSE on CIFAR-10).
        ramp: ``"sigmoid"`` (ICT, mean teacher), ``"linear"`` (Chaudhry et al.) or ``"none"`` (constant).
        ramp_steps: ramp length in steps, >= 0; 0 means the full weight from the first step. Chaudhry et al.
            ramp over 40% of training: ``ramp_steps = int(0.4 * total_steps)``.
    """

    max_weight: float = 100.0
    ramp: RampKind = "sigmoid"
    ramp_steps: int = 0

    def __post_init__(self) -> None:
        _check_number("max_weight", self.max_weight)
        if self.ramp not in get_args(RampKind):
            raise ValueError(f"ramp must be one of {get_args(RampKind)}, got {self.ramp!r}.")
        if isinstance(self.ramp_steps, bool) or not isinstance(self.ramp_steps, numbers.Integral):
            raise TypeError(f"ramp_steps must be an int, got {type(self.ramp_steps).__name__} ({self.ramp_steps!r}).")
        if self.ramp_steps < 0:
            raise ValueError(f"ramp_steps must be >= 0, got {self.ramp_steps}.")

    def __call__(self, step: int) -> float:
        """Weight at ``step`` (>= 0), a Python float."""
        if self.ramp == "none":
            _check_number("step", step)
            return float(self.max_weight)
        return float(self.max_weight) * _RAMPS[self.ramp](step, self.ramp_steps)
