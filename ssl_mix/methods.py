"""Training methods: each computes one step's loss from a labeled and an unlabeled batch.

A method is a small class with one entry point, :meth:`Method.loss`; the :class:`~ssl_mix.Trainer` owns the loop
(backward, optimiser step, teacher update). Methods never call ``.item()``: what they return for logging stays on
the device and is read by the trainer every ``log_every`` steps.

- :class:`ERM`: cross-entropy on labeled data only.
- :class:`Mixup`: supervised mixup (Zhang et al. 2018) with K-point Dirichlet weights; CutMix and the
  Mixup/CutMix switch through timm's implementation.
- :class:`ManifoldMixup`: supervised mixup of hidden states at a layer drawn each step from a set S
  (Verma et al. 2019, "Manifold Mixup").
- :class:`ICT`: supervised loss + w(t) * ICT[K] consistency against the EMA teacher (Verma et al. 2019,
  "Interpolation Consistency Training"; K-point form: Chaudhry et al., eq. 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.checks import check_alpha, check_bool, check_in, check_k, check_number, check_probability
from ssl_mix.losses import ConsistencyDistance, ConsistencyTarget, ict_consistency, soft_target_cross_entropy
from ssl_mix.mixing import MixPlan, sample_mix_plan
from ssl_mix.models import LayerId, forward_mixed
from ssl_mix.ramps import ConsistencySchedule

__all__ = ["Batch", "StepContext", "StepOutput", "Method", "ERM", "Mixup", "ManifoldMixup", "ICT", "MethodName",
           "METHODS", "method_class", "SupervisedTerm", "TeacherMode"]

MethodName = Literal["erm", "mixup", "manifold-mixup", "ict"]
"""The names of the training methods, as in configs and on the command line (the keys of :data:`METHODS`)."""

SupervisedTerm = Literal["plain", "mixup"]
"""ICT's supervised term: plain cross-entropy or supervised mixup."""

TeacherMode = Literal["train", "eval"]
"""How ICT runs the EMA teacher: with batch statistics (``train``) or running statistics (``eval``)."""


class Batch(NamedTuple):
    """One training step's data, already on the device.

    Attributes:
        x_l: (B_l, ...) labeled inputs, normalised.
        y_l: (B_l,) int64 class indices.
        x_u: (B_u, ...) unlabeled inputs (methods that use no unlabeled data ignore it).
    """

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor


@dataclass
class StepContext:
    """What a method may need besides the batch and the student.

    Attributes:
        step: the step being taken (0-based).
        generator: random generator on the training device (mixing weights, permutations).
        host_generator: CPU generator for host-side choices (manifold mixup's layer), so no device sync.
        teacher: the EMA teacher, for methods that use one.
    """

    step: int
    generator: torch.Generator | None = None
    host_generator: torch.Generator | None = None
    teacher: nn.Module | None = None


@dataclass
class StepOutput:
    """A method's result for one step.

    Attributes:
        loss: the scalar to back-propagate.
        logs: detached 0-dim tensors (or floats) worth logging, e.g. ``{"loss/supervised": ...}``.
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Method:
    """Base class of training methods. Subclasses implement :meth:`loss`.

    Attributes:
        name: the method's name as used in configs and on the command line.
        uses_unlabeled: whether ``batch.x_u`` is used (loaders may skip unlabeled batches otherwise).
    """

    name: ClassVar[str] = "method"
    uses_unlabeled: ClassVar[bool] = False

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Compute this step's loss. Called under the trainer's autocast context."""
        raise NotImplementedError


def _mixup_loss(student: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: MixPlan,
                layer: LayerId = "input") -> torch.Tensor:
    """Soft-target cross-entropy of the student on a mix of ``x`` (at ``layer``) against the same mix of one-hot
    ``y``."""
    logits = student(plan.apply(x)) if layer == "input" else forward_mixed(student, x, plan, layer)
    return _mixed_target_loss(logits, y, plan)


def _mixed_target_loss(logits: torch.Tensor, y: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Soft-target cross-entropy of ``logits`` (on a mix made with ``plan``) against the same mix of one-hot ``y``."""
    targets = plan.apply(F.one_hot(y, logits.shape[1]).to(torch.float32))
    return soft_target_cross_entropy(logits, targets)


class ERM(Method):
    """Empirical risk minimisation: cross-entropy on the labeled batch only (the supervised-only baseline)."""

    name = "erm"

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        loss = F.cross_entropy(student(batch.x_l).float(), batch.y_l)
        return StepOutput(loss, {"loss/supervised": loss.detach()})


class Mixup(Method):
    """Supervised mixup (Zhang et al. 2018): mix labeled inputs and their one-hot targets with one plan.

    Args:
        k: points per mix (K=2 is classic mixup; K>2 uses Dirichlet(α, ..., α) weights).
        alpha: mixing concentration; 0 disables mixing.
        per_sample: one weight vector per example instead of one per batch.
        cutmix_alpha: > 0 enables CutMix (K=2 only) via ``timm.data.Mixup``; with ``alpha`` > 0 too, each step is
            mixup or CutMix, CutMix with probability ``switch_prob``.
        switch_prob: see ``cutmix_alpha``.
        num_classes: required with CutMix (timm builds the soft targets).

    Note:
        The CutMix path draws its random numbers from NumPy's global generator (timm's implementation); the
        trainer checkpoints that state too, so resumed runs stay exact.
    """

    name = "mixup"

    def __init__(self, k: int = 2, alpha: float = 1.0, *, per_sample: bool = False, cutmix_alpha: float = 0.0,
                 switch_prob: float = 0.5, num_classes: int | None = None) -> None:
        k, alpha = check_k(k), check_alpha(alpha)
        cutmix_alpha = check_number("cutmix_alpha", cutmix_alpha, low=0)
        switch_prob = check_probability("switch_prob", switch_prob)
        self.k, self.alpha, self.per_sample = k, alpha, per_sample
        self._cutmix = None
        if cutmix_alpha > 0:
            if k != 2:
                raise ValueError(f"CutMix mixes two images; k must be 2 with cutmix_alpha > 0, got k={k}")
            if num_classes is None:
                raise ValueError("num_classes is required when cutmix_alpha > 0 (timm builds the soft targets)")
            from timm.data import Mixup as TimmMixup

            self._cutmix = TimmMixup(mixup_alpha=alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob,
                                     mode="batch", label_smoothing=0.0, num_classes=num_classes)

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        if self._cutmix is not None:
            x, targets = self._cutmix(batch.x_l.clone(), batch.y_l)
            loss = soft_target_cross_entropy(student(x), targets)
        else:
            plan = sample_mix_plan(batch.x_l.shape[0], self.k, self.alpha, per_sample=self.per_sample,
                                   generator=ctx.generator, device=batch.x_l.device)
            loss = _mixup_loss(student, batch.x_l, batch.y_l, plan)
        return StepOutput(loss, {"loss/supervised": loss.detach()})


class ManifoldMixup(Method):
    """Manifold mixup (Verma et al. 2019): mix hidden states at a layer drawn uniformly from ``layers`` each step.

    Args:
        layers: the set S of layer ids (``"input"`` = raw input, integers = stage outputs of a staged model).
        k, alpha, per_sample: as in :class:`Mixup`.

    Note:
        The layer is drawn on the host (``ctx.host_generator``) so the step needs no device synchronisation.
    """

    name = "manifold-mixup"

    def __init__(self, layers: Sequence[LayerId] = ("input", 0, 1, 2), k: int = 2, alpha: float = 2.0, *,
                 per_sample: bool = False) -> None:
        k, alpha = check_k(k), check_alpha(alpha)
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must name at least one layer, e.g. ('input', 0, 1, 2)")
        self.layers, self.k, self.alpha, self.per_sample = layers, k, alpha, per_sample

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        pick = int(torch.randint(len(self.layers), (), generator=ctx.host_generator))
        layer = self.layers[pick]
        plan = sample_mix_plan(batch.x_l.shape[0], self.k, self.alpha, per_sample=self.per_sample,
                               generator=ctx.generator, device=batch.x_l.device)
        loss = _mixup_loss(student, batch.x_l, batch.y_l, plan, layer)
        return StepOutput(loss, {"loss/supervised": loss.detach()})


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

    def __init__(self, k: int = 2, alpha: float = 1.0, *, per_sample: bool = False,
                 schedule: ConsistencySchedule | None = None, supervised: SupervisedTerm = "plain",
                 sup_alpha: float | None = None, target: ConsistencyTarget = "probs",
                 distance: ConsistencyDistance = "mse", teacher_mode: TeacherMode = "train",
                 joint_forward: bool = False) -> None:
        k, alpha = check_k(k), check_alpha(alpha)
        check_bool("joint_forward", joint_forward)
        check_in("supervised", supervised, get_args(SupervisedTerm))
        check_in("target", target, get_args(ConsistencyTarget))
        check_in("distance", distance, get_args(ConsistencyDistance))
        check_in("teacher_mode", teacher_mode, get_args(TeacherMode))
        self.k, self.alpha, self.per_sample = k, alpha, per_sample
        self.schedule = schedule if schedule is not None else ConsistencySchedule(max_weight=100.0, ramp="none")
        self.supervised, self.target, self.distance, self.teacher_mode = supervised, target, distance, teacher_mode
        self.sup_alpha = alpha if sup_alpha is None else check_alpha(sup_alpha, "sup_alpha")
        self.joint_forward = joint_forward

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        if ctx.teacher is None:
            raise ValueError("ICT needs the EMA teacher in StepContext.teacher")
        x_l, y_l, x_u = batch
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
        if self.joint_forward:
            sup_logits, student_logits = student(torch.cat([x_sup, plan.apply(x_u)])).split(
                [x_l.shape[0], x_u.shape[0]])
        else:
            student_logits = student(plan.apply(x_u))
        if sup_plan is None:
            sup = F.cross_entropy(sup_logits.float(), y_l)
        else:
            sup = _mixed_target_loss(sup_logits, y_l, sup_plan)
        consistency = ict_consistency(student_logits, teacher_logits, plan, target=self.target,
                                      distance=self.distance)

        weight = self.schedule(ctx.step)
        loss = sup + weight * consistency
        return StepOutput(loss, {
            "loss/supervised": sup.detach(),
            "loss/consistency": consistency.detach(),
            "consistency_weight": weight,
        })


METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (ERM, Mixup, ManifoldMixup, ICT)}
"""The method registry: name (:data:`MethodName`) -> class. Each class says whether it uses unlabeled data
(``uses_unlabeled``), so a loader can be built before the method."""


def method_class(name: str) -> type[Method]:
    """The class of the method called ``name`` in configs and on the command line.

    Args:
        name: one of :data:`MethodName` (``erm``, ``mixup``, ``manifold-mixup``, ``ict``).

    Returns:
        The :class:`Method` subclass, e.g. ``method_class("ict").uses_unlabeled`` is True.

    Raises:
        ValueError: an unknown name.
    """
    return METHODS[check_in("method name", name, METHODS)]
