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
from dataclasses import dataclass
from typing import Literal, get_args

from ssl_mix.checks import check_in, check_int, check_number

__all__ = ["sigmoid_rampup", "linear_rampup", "cosine_rampdown", "ConsistencySchedule"]

RampKind = Literal["sigmoid", "linear", "none"]


def _progress(step: int, length: int) -> float:
    step_f = check_number("step", step, low=0)
    length_f = check_number("length", length, low=0)
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
    if check_number("length", length, low=0) == 0:
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
        check_number("max_weight", self.max_weight, low=0)
        check_in("ramp", self.ramp, get_args(RampKind))
        check_int("ramp_steps", self.ramp_steps, 0)

    def __call__(self, step: int) -> float:
        """Weight at ``step`` (>= 0), a Python float."""
        if self.ramp == "none":
            check_number("step", step, low=0)
            return float(self.max_weight)
        return float(self.max_weight) * _RAMPS[self.ramp](step, self.ramp_steps)
