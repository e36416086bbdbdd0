"""Exponential-moving-average (mean) teacher.

Mean teacher (Tarvainen & Valpola 2017, eq. 1), used by ICT (Verma et al. 2019) and ICT[K]: after every
optimiser step the teacher's parameters follow the student's,

    theta'_t = d_t theta'_{t-1} + (1 - d_t) theta_t,   d_t = min(1 - 1 / (t + 1), decay)  (warm-up),

The warm-up makes the teacher the plain average of the student's parameters over the first steps, when
``1 - 1/(t+1) < decay``.

Buffers (batch-norm running statistics) are not parameters, and two conventions exist for them (:data:`TeacherBN`):

- ``own``: only parameters are averaged; the teacher keeps its own running statistics, updated by its own forward
  passes in train mode. This is what the official mean-teacher and ICT code do (their EMA loop runs over
  ``parameters()`` only and the teacher is called in train mode on every batch).
- ``copy``: the student's buffers are copied into the teacher at every update. The teacher's statistics then
  describe the student's activations, not its own.
"""

from __future__ import annotations

import copy
from typing import get_args

import torch
from torch import nn

from ssl_mix.checks import check_bool, check_in, check_int, check_probability
from ssl_mix.choices import MODEL_ROLES, TeacherBN
from ssl_mix.models import unwrap_model

__all__ = ["EMATeacher", "MODEL_ROLES", "TeacherBN"]



class EMATeacher(nn.Module):
    """A teacher model whose parameters are an exponential moving average of the student's.

    Args:
        student: the model to follow; may be wrapped in DistributedDataParallel or ``torch.compile``.
        decay: EMA decay in ``[0, 1]``; 0 copies the student, 1 freezes the teacher (without warm-up).
        warmup: use the mean-teacher warm-up decay ``min(1 - 1/(step + 1), decay)``.
        buffers: ``copy`` (default) copies the student's buffers at every update; ``own`` leaves the teacher's
            buffers to its own forward passes (see the module docstring).

    Attributes:
        module: a deep copy of the (unwrapped) student with ``requires_grad=False`` everywhere.

    Note:
        The teacher's train/eval mode is left to the caller (copied from the student at construction and not
        changed by :meth:`update`). ``state_dict``/``load_state_dict`` hold the teacher's weights and buffers only;
        ``decay``, ``warmup`` and ``buffers`` are constructor arguments and the step is passed to :meth:`update`.
        With ``buffers="own"`` the teacher's running statistics move only when it is called in train mode: a
        teacher that is only ever run in eval mode keeps the statistics it was built with.
    """

    def __init__(self, student: nn.Module, decay: float = 0.999, warmup: bool = True, *,
                 buffers: TeacherBN = "copy") -> None:
        super().__init__()
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be a torch.nn.Module, got {type(student).__name__}.")
        self.decay = check_probability("decay", decay, hint="typically 0.99 to 0.9999.")
        self.warmup = check_bool("warmup", warmup)
        self.buffers_mode = check_in("buffers", buffers, get_args(TeacherBN))
        self.module = copy.deepcopy(unwrap_model(student)).requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """Decay used by the update at ``step`` (>= 0): ``min(1 - 1/(step + 1), decay)`` with warm-up."""
        check_int("step", step, 0)
        if not self.warmup:
            return self.decay
        return min(1.0 - 1.0 / (step + 1), self.decay)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        """Move the teacher towards ``student``: ``p_t <- d p_t + (1 - d) p_s`` with ``d = decay_at(step)``.

        With ``buffers="copy"`` the buffers (batch-norm running statistics and counters) are copied from the
        student, not averaged; with ``buffers="own"`` they are left alone.

        Args:
            student: the model being trained, with the architecture the teacher was built from (possibly
                wrapped in DistributedDataParallel or ``torch.compile``), on the teacher's device.
            step: update counter, >= 0, fed to :meth:`decay_at`. With warm-up, ``step = 0`` copies the
                student outright; the mean-teacher code increments its counter first, so its first update
                uses ``step = 1`` (decay 0.5).
        """
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be a torch.nn.Module, got {type(student).__name__}.")
        decay = self.decay_at(step)
        student = unwrap_model(student)
        teacher_params = list(self.module.parameters())
        student_params = list(student.parameters())
        teacher_buffers = list(self.module.buffers())
        student_buffers = list(student.buffers())
        if len(teacher_params) != len(student_params) or len(teacher_buffers) != len(student_buffers):
            raise ValueError(
                f"student has {len(student_params)} parameters and {len(student_buffers)} buffers but the "
                f"teacher has {len(teacher_params)} and {len(teacher_buffers)}; pass the model the teacher "
                "was built from."
            )
        # lerp_(end, w) computes self + w (end - self) = (1 - w) self + w end, one fused call for all tensors.
        if teacher_params:
            torch._foreach_lerp_(teacher_params, student_params, 1.0 - decay)
        if teacher_buffers and self.buffers_mode == "copy":
            torch._foreach_copy_(teacher_buffers, student_buffers)

    def forward(self, *args, **kwargs):
        """Run the teacher model: ``self.module(*args, **kwargs)``."""
        return self.module(*args, **kwargs)
