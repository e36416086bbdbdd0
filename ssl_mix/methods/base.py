"""What every training method shares: the step's inputs and output, the :class:`Method` base class and the registry.

A method is a small class with one entry point, :meth:`Method.loss`; the :class:`~ssl_mix.Trainer` owns the loop
(backward, optimiser step, teacher update). Methods never call ``.item()``: what they return for logging stays on
the device and is read by the trainer every ``log_every`` steps.

Each method lives in a module of its own and registers its class once with :func:`register_method`; :data:`METHODS`
is then the one list of method names: the config's ``MethodConfig.name`` choices, the command line's ``--method``,
:func:`ssl_mix.build_method` and the benchmarks read it. A method builds itself from its config section
(:meth:`Method.from_config`) and checks the settings it cannot honour (:meth:`Method.check_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, NamedTuple, TypeVar

import torch
from torch import nn

from ssl_mix.checks import check_in

if TYPE_CHECKING:
    from ssl_mix.config import MethodConfig

__all__ = ["Batch", "StepContext", "StepOutput", "Method", "METHODS", "register_method", "method_class", "VIEW_NAMES"]

VIEW_NAMES: tuple[str, ...] = ("weak", "strong")
"""The views of an unlabeled image a loader can make: ``weak`` (the run's flip and shift, as for every method) and
``strong`` (the weak view, then RandAugment and Cutout as in FixMatch; :func:`ssl_mix.data.rand_augment`)."""


class Batch(NamedTuple):
    """One training step's data, already on the device.

    Attributes:
        x_l: (B_l, ...) labeled inputs, normalised.
        y_l: (B_l,) int64 class indices.
        x_u: (B_u, ...) unlabeled inputs (methods that use no unlabeled data ignore it): the weak view (flip and
            shift), or, when the method asks for several views, the first of them.
        u_views: every view of the same unlabeled images the method asked for (:meth:`Method.views_for`), in that
            order, each (B_u, ...), so ``u_views[0]`` is ``x_u``; empty when it asks for the weak view only.
    """

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor
    u_views: tuple[torch.Tensor, ...] = ()

    @classmethod
    def of(cls, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor | tuple[torch.Tensor, ...]) -> Batch:
        """The batch of a loader's step ``(x_l, y_l, x_u)``, where ``x_u`` is one tensor or, when the method asked
        for several views, a tuple of them (then ``x_u`` becomes the first and ``u_views`` all of them)."""
        return cls(x_l, y_l, x_u[0], tuple(x_u)) if isinstance(x_u, tuple) else cls(x_l, y_l, x_u)


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
    """Base class of training methods. Subclasses implement :meth:`loss` and :meth:`from_config`, and are
    registered with :func:`register_method`.

    Attributes:
        name: the method's name as used in configs and on the command line (its key in :data:`METHODS`).
        uses_unlabeled: whether ``batch.x_u`` is used (loaders may skip unlabeled batches otherwise).
        uses_teacher: whether :meth:`loss` runs the EMA teacher (``ctx.teacher``); every method's teacher is
            updated and evaluated, but only these run it during training.
        has_joint_forward: whether the method takes ``MethodConfig.joint_forward`` (one student pass for the
            labeled and unlabeled inputs together).
        needs_stages: whether :meth:`loss` mixes hidden layers, so needs a model split into stages
            (:mod:`ssl_mix.models.stages`); an instance attribute where it depends on the settings.
    """

    name: ClassVar[str] = "method"
    uses_unlabeled: ClassVar[bool] = False
    uses_teacher: ClassVar[bool] = False
    has_joint_forward: ClassVar[bool] = False
    needs_stages: bool = False

    def loss(self, student: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Compute this step's loss. Called under the trainer's autocast context.

        Args:
            student: the model being trained (possibly wrapped in DistributedDataParallel or ``torch.compile``).
            batch: this step's inputs, on the training device.
            ctx: the step number, the random generators and the teacher.

        Returns:
            The loss to back-propagate and the values to log, all left on the device.
        """
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: MethodConfig, *, num_classes: int, total_steps: int) -> Method:
        """The method a config section describes.

        Args:
            cfg: the ``method`` section of a run's config (``cfg.name`` is this class's name).
            num_classes: the number of classes of the run's data.
            total_steps: the run's length in optimiser steps (ramps are sized to it).

        Returns:
            An instance of this class.
        """
        raise NotImplementedError

    @classmethod
    def views_for(cls, cfg: MethodConfig) -> tuple[str, ...]:
        """The views of each unlabeled image this method's loss needs, in the order it reads ``batch.u_views``.

        The loaders are built before the method, from this answer: ``("weak",)`` (the default) gives today's single
        batch ``x_u`` and an empty ``u_views``; anything longer fills ``u_views``, e.g. FixMatch's
        ``("weak", "strong")`` or MixMatch's K weak views. Each entry is one of :data:`VIEW_NAMES`; every view is
        drawn independently, keyed by (seed, stream, step, view), so resumed runs stay exact.

        Args:
            cfg: the ``method`` section of the run's config.

        Returns:
            A non-empty tuple of view names.
        """
        return ("weak",)

    @classmethod
    def check_config(cls, cfg: MethodConfig) -> None:
        """Reject settings of ``cfg`` that this method cannot honour; ``MethodConfig`` calls it at construction.
        Subclasses with settings of their own extend it (calling ``super().check_config(cfg)``).

        Args:
            cfg: the ``method`` section being constructed (already type-checked field by field).

        Raises:
            ValueError: a setting applies to other methods only.
        """
        if cfg.joint_forward and not cls.has_joint_forward:
            raise ValueError(f"method.joint_forward applies to the {_names_where('has_joint_forward')} method "
                             f"(the others run one student forward pass per step), got method {cfg.name!r}; set "
                             "method.joint_forward=false")
        if cfg.teacher_bn == "own" and not cls.uses_teacher:
            raise ValueError(f"method.teacher_bn='own' needs a method that runs the teacher "
                             f"({_names_where('uses_teacher')}), so that its batch-norm statistics are updated; "
                             f"method {cfg.name!r} never runs it, so its statistics would stay at their initial "
                             "values. Use method.teacher_bn='copy'")


METHODS: dict[str, type[Method]] = {}
"""The method registry: name -> class, in registration order; the one list of method names (see
:func:`register_method`). Each class says whether it uses unlabeled data (``uses_unlabeled``), so a loader can be
built before the method."""

M = TypeVar("M", bound=type[Method])


def register_method(cls: M) -> M:
    """Class decorator: add a :class:`Method` subclass to :data:`METHODS` under its ``name``.

    Args:
        cls: the class; its ``name`` must be new.

    Returns:
        ``cls`` unchanged.

    Raises:
        TypeError: ``cls`` is not a :class:`Method` subclass.
        ValueError: its name is the base class's or already registered.
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method takes a subclass of ssl_mix.methods.Method, got {cls!r}")
    if cls.name == Method.name or cls.name in METHODS:
        taken = "the base class's placeholder" if cls.name == Method.name else f"taken by {METHODS[cls.name].__name__}"
        raise ValueError(f"method name {cls.name!r} of {cls.__name__} is {taken}; give the class a name of its own "
                         f"(registered: {', '.join(METHODS)})")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    """The class of the method called ``name`` in configs and on the command line.

    Args:
        name: a key of :data:`METHODS` (``erm``, ``mixup``, ``manifold-mixup``, ``ict``).

    Returns:
        The :class:`Method` subclass, e.g. ``method_class("ict").uses_unlabeled`` is True.

    Raises:
        ValueError: an unknown name.
    """
    return METHODS[check_in("method name", name, METHODS)]


def _names_where(attribute: str) -> str:
    """The registered methods whose class sets ``attribute``, for messages: ``'ict'`` or ``'a', 'b'``."""
    return ", ".join(name for name, cls in METHODS.items() if getattr(cls, attribute))
