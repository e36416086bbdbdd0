"""Interpolation Consistency Training with K-point mixes, ICT[K] (Verma et al. 2019, "Interpolation Consistency
Training for Semi-Supervised Learning"; K-point form: Chaudhry et al., "When does mixup promote local linearity in
learned representations?", eq. 2): supervised loss + w(t) * consistency of the student on mixed unlabeled inputs
with the same mix of the EMA teacher's predictions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.checks import check_alpha, check_bool, check_in, check_k
from ssl_mix.choices import VIEW_NAMES, ConsistencyDistance, ConsistencyTarget, SupervisedTerm, TeacherMode, ViewName
from ssl_mix.losses import ict_consistency
from ssl_mix.methods.base import Batch, Method, StepContext, StepOutput, register_method
from ssl_mix.methods.mixup import mixed_target_loss
from ssl_mix.mixing import sample_mix_plan
from ssl_mix.ramps import ConsistencySchedule

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["ICT", "SupervisedTerm", "TeacherMode"]



@register_method
class ICT(Method):
    """Interpolation Consistency Training with K-point mixes (ICT[K]).

    loss = supervised + w(t) * d(student(Mix_λ(u_1..u_K)), Mix_λ(teacher(u_1), ..., teacher(u_K)))

    Args:
        k: points per mix (K=2 with Beta(α, α) is classic ICT; K=3..5 follow Chaudhry et al.).
        alpha: Dirichlet concentration of the consistency mixes.
        per_sample: one weight vector per example instead of one per batch.
        schedule: the consistency weight w(t) (default: 100 with no ramp; build one with a ramp for real runs).
        supervised: ``plain`` cross-entropy or ``mixup`` on the labeled batch (the official ICT code's choice).
        sup_alpha: α of the supervised mixup (default: ``alpha``).
        target: ``probs`` (paper's equation, default) or ``logits`` (official code): see
            :func:`ssl_mix.ict_consistency`.
        distance: ``mse`` (ICT) or ``kl``.
        teacher_mode: ``train`` runs the teacher with batch statistics (official ICT code), which also updates
            its running statistics; ``eval`` uses its running statistics (see :class:`~ssl_mix.EMATeacher`'s
            ``buffers`` for whose they are).
        joint_forward: run the student once on the labeled batch and the mixed unlabeled batch concatenated,
            instead of two forward passes (default False).
        student_view: ``weak`` (the papers: the student's mixes are of the teacher's inputs) or ``strong``: the
            student mixes the strong views of the same images (``batch.u_views[1]``, RandAugment + Cutout) with the
            same weights, against the mix of the teacher's predictions on the weak views, a combination of ICT and
            FixMatch's weak-to-strong consistency that neither paper ran.

    Note:
        ``joint_forward`` changes the model function in train mode, not just its speed: batch norm then normalises
        both halves with the statistics of their union and updates its running statistics once per step from
        that union, where separate passes (the official ICT code, and the default here) normalise the labeled
        batch and the mixed batch each with its own statistics and update the running statistics twice. Mixed
        inputs have a smaller variance than clean ones, so the two choices train differently; the default keeps
        the published recipe. In eval mode (no batch statistics) and for models without batch norm the two give
        the same loss. The joint pass is one larger batch, which keeps a GPU busier (fewer, larger kernels).
    """

    name = "ict"
    uses_unlabeled = True
    uses_teacher = True
    has_joint_forward = True

    def __init__(self, k: int = 2, alpha: float = 1.0, *, per_sample: bool = False,
                 schedule: ConsistencySchedule | None = None, supervised: SupervisedTerm = "plain",
                 sup_alpha: float | None = None, target: ConsistencyTarget = "probs",
                 distance: ConsistencyDistance = "mse", teacher_mode: TeacherMode = "train",
                 joint_forward: bool = False, student_view: ViewName = "weak") -> None:
        k, alpha = check_k(k), check_alpha(alpha)
        check_bool("joint_forward", joint_forward)
        check_in("supervised", supervised, get_args(SupervisedTerm))
        check_in("target", target, get_args(ConsistencyTarget))
        check_in("distance", distance, get_args(ConsistencyDistance))
        check_in("teacher_mode", teacher_mode, get_args(TeacherMode))
        check_in("student_view", student_view, VIEW_NAMES)
        self.k, self.alpha, self.per_sample = k, alpha, per_sample
        self.schedule = schedule if schedule is not None else ConsistencySchedule(max_weight=100.0, ramp="none")
        self.supervised, self.target, self.distance, self.teacher_mode = supervised, target, distance, teacher_mode
        self.sup_alpha = alpha if sup_alpha is None else check_alpha(sup_alpha, "sup_alpha")
        self.joint_forward, self.student_view = joint_forward, student_view

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> ICT:
        """ICT[K] with the consistency weight ramped over ``ramp_fraction * total_steps`` steps: see
        :meth:`Method.from_config`."""
        schedule = ConsistencySchedule(max_weight=cfg.consistency_weight, ramp=cfg.ramp,
                                       ramp_steps=round(cfg.ramp_fraction * total_steps))
        return cls(cfg.k, cfg.alpha, per_sample=cfg.per_sample, schedule=schedule, supervised=cfg.supervised,
                   sup_alpha=cfg.sup_alpha, target=cfg.consistency_target, distance=cfg.consistency_distance,
                   teacher_mode=cfg.teacher_mode, joint_forward=cfg.joint_forward, student_view=cfg.student_view)

    @classmethod
    def views_for(cls, cfg: MethodConfig) -> tuple[str, ...]:
        """The weak view, and the strong one when the student mixes strong views: see :meth:`Method.views_for`."""
        return ("weak", "strong") if cfg.student_view == "strong" else ("weak",)

    @classmethod
    def check_config(cls, cfg: MethodConfig) -> None:
        """The base checks, and that the teacher's own statistics move: see :meth:`Method.check_config`."""
        super().check_config(cfg)
        if cfg.teacher_bn == "own" and cfg.teacher_mode == "eval":
            raise ValueError("method.teacher_bn='own' needs method.teacher_mode='train': the teacher's own batch-norm "
                             "statistics are updated by its forward passes in train mode, and in eval mode they would "
                             "never move. Use method.teacher_mode='train', or method.teacher_bn='copy'")

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Supervised term plus the weighted ICT[K] consistency against the teacher: see :meth:`Method.loss`."""
        if ctx.teacher is None:
            raise ValueError("ICT needs the EMA teacher in StepContext.teacher")
        x_l, y_l, x_u = batch.x_l, batch.y_l, batch.x_u
        device = x_u.device

        sup_plan = None
        if self.supervised == "mixup":
            sup_plan = sample_mix_plan(x_l.shape[0], 2, self.sup_alpha, generator=ctx.generator, device=device)
        x_sup = x_l if sup_plan is None else sup_plan.apply(x_l)
        if not self.joint_forward:
            sup_logits = student(x_sup)

        ctx.teacher.train(self.teacher_mode == "train")
        with torch.no_grad():
            teacher_logits = ctx.teacher(x_u)
        plan = sample_mix_plan(x_u.shape[0], self.k, self.alpha, per_sample=self.per_sample,
                               generator=ctx.generator, device=device)
        x_mix = plan.apply(self._student_inputs(batch))
        if self.joint_forward:
            sup_logits, student_logits = student(torch.cat([x_sup, x_mix])).split([x_l.shape[0], x_u.shape[0]])
        else:
            student_logits = student(x_mix)
        if sup_plan is None:
            sup = F.cross_entropy(sup_logits.float(), y_l)
        else:
            sup = mixed_target_loss(sup_logits, y_l, sup_plan)
        consistency = ict_consistency(student_logits, teacher_logits, plan, target=self.target,
                                      distance=self.distance)

        weight = self.schedule(ctx.step)
        loss = sup + weight * consistency
        return StepOutput(loss, {
            "loss/supervised": sup.detach(),
            "loss/consistency": consistency.detach(),
            "consistency_weight": weight,
        })

    def _student_inputs(self, batch: Batch) -> torch.Tensor:
        """The unlabeled images the student's mixes are made of: the weak view, or the strong view of the same
        images."""
        if self.student_view == "weak":
            return batch.x_u
        if len(batch.u_views) < 2:
            raise ValueError("ICT with student_view='strong' needs the strong view of each unlabeled image in "
                             "batch.u_views[1]; build the loader with unlabeled_views=ICT.views_for(cfg)")
        return batch.u_views[1]
