"""Soft-target cross-entropy, consistency losses and the ICT[K] consistency term.

The ICT[K] term is eq. 2 of Chaudhry et al., "When does mixup promote local linearity in learned
representations?" (K = 2 is Interpolation Consistency Training, Verma et al. 2019, eq. 3): the student's
prediction on a mix of unlabeled points should match the same mix of the teacher's predictions,

    L = D( f_student(Mix_lam(u_1, ..., u_K)),  Mix_lam(f_teacher(u_1), ..., f_teacher(u_K)) ).

Logits may arrive in bfloat16/float16 under autocast; softmax and losses are computed in at least float32.
"""

from __future__ import annotations

import functools
from typing import get_args

import torch
import torch.nn.functional as F

from ssl_mix.checks import check_in
from ssl_mix.choices import ConsistencyDistance, ConsistencyTarget
from ssl_mix.mixing import MixPlan, mix

__all__ = ["soft_target_cross_entropy", "mse_consistency", "kl_consistency", "ict_consistency", "ConsistencyTarget",
           "ConsistencyDistance"]



@functools.cache
def _soft_target_ce() -> torch.nn.Module:
    """timm's stateless loss module, made once on first use (importing timm takes a second) so that its definition
    stays the single source."""
    from timm.loss import SoftTargetCrossEntropy

    return SoftTargetCrossEntropy()


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_pair(first: str, a: object, second: str, b: object) -> None:
    for name, t in ((first, a), (second, b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor, got dtype {t.dtype}; targets given as class "
                "indices must be one-hot encoded first (torch.nn.functional.one_hot(y, C).float())."
            )
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{first} and {second} must both have shape (B, C), got {tuple(a.shape)} and {tuple(b.shape)}."
        )


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution, ``mean_i sum_c -target[i, c] log softmax(logits)[i, c]``.

    Delegates to ``timm.loss.SoftTargetCrossEntropy``.

    Args:
        logits: ``(B, C)`` unnormalised scores.
        target: ``(B, C)`` rows on the probability simplex (e.g. mixed one-hot labels).

    Returns:
        Scalar: the mean over the batch, in at least float32. Gradient flows to both arguments.
    """
    _check_pair("logits", logits, "target", target)
    return _soft_target_ce()(_at_least_float32(logits), _at_least_float32(target))


def mse_consistency(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's probabilities and a target distribution.

    ``mean over batch and classes of (softmax(student_logits) - target_probs) ** 2``. This is the official
    ICT code's ``softmax_mse_loss`` (summed squared error divided by the number of classes) further divided
    by the batch size, as ICT's training loop does; scale the consistency weight accordingly when comparing
    with implementations that only sum over classes.

    Args:
        student_logits: ``(B, C)``.
        target_probs: ``(B, C)`` rows on the simplex. Not detached here: detach it for a fixed target.

    Returns:
        Scalar, in at least float32.
    """
    _check_pair("student_logits", student_logits, "target_probs", target_probs)
    probs = _at_least_float32(student_logits).softmax(dim=1)
    return F.mse_loss(probs, _at_least_float32(target_probs), reduction="mean")


def kl_consistency(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``KL(target || softmax(student_logits))``, summed over classes, mean over the batch.

    Classes with zero target probability contribute 0 (``0 log 0 = 0``).

    Args:
        student_logits: ``(B, C)``.
        target_probs: ``(B, C)`` rows on the simplex. Not detached here: detach it for a fixed target.

    Returns:
        Scalar, in at least float32.
    """
    _check_pair("student_logits", student_logits, "target_probs", target_probs)
    log_probs = _at_least_float32(student_logits).log_softmax(dim=1)
    return F.kl_div(log_probs, _at_least_float32(target_probs), reduction="batchmean")


def ict_consistency(
    student_logits_on_mix: torch.Tensor,
    teacher_logits: torch.Tensor,
    plan: MixPlan,
    *,
    target: ConsistencyTarget = "probs",
    distance: ConsistencyDistance = "mse",
) -> torch.Tensor:
    """ICT[K] consistency (Chaudhry et al. eq. 2): student on a mix vs. the same mix of teacher outputs.

    Args:
        student_logits_on_mix: ``(B, C)`` student logits on ``mix(u, plan)`` (or on a mixed hidden layer).
        teacher_logits: ``(B, C)`` teacher logits on the unmixed ``u``, in the original batch order.
        plan: the :class:`MixPlan` used to mix the student's input.
        target: ``"probs"`` (default, the paper's equation) mixes ``softmax(teacher_logits)``; ``"logits"``
            mixes the teacher logits and then applies softmax, as the official ICT code does. The two differ
            because softmax is not linear.
        distance: ``"mse"`` (:func:`mse_consistency`, ICT's choice) or ``"kl"`` (:func:`kl_consistency`).

    Returns:
        Scalar loss, in at least float32. The teacher side is detached, so gradient reaches only the student.
    """
    check_in("target", target, get_args(ConsistencyTarget))
    check_in("distance", distance, get_args(ConsistencyDistance))
    _check_pair("student_logits_on_mix", student_logits_on_mix, "teacher_logits", teacher_logits)
    teacher = _at_least_float32(teacher_logits.detach())
    mixed_target = mix(teacher.softmax(dim=1), plan) if target == "probs" else mix(teacher, plan).softmax(dim=1)
    if distance == "mse":
        return mse_consistency(student_logits_on_mix, mixed_target)
    return kl_consistency(student_logits_on_mix, mixed_target)
