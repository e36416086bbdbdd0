"""Build the benchmark networks by name: ``create_model("wrn28-2", num_classes=10)``.

Names and where they are used: ``wrn28-2`` (CIFAR-10, SVHN), ``wrn28-8`` (CIFAR-100), ``wrn28-10``
(the supervised WRN reference) — see :mod:`ssl_mix.models.wrn`; ``cnn13`` (the ICT / mean-teacher CIFAR-10
network, :mod:`ssl_mix.models.cnn13`); ``cnn-small`` (a fast CPU model for demos and tests,
:mod:`ssl_mix.models.small`); ``mlp`` (feature vectors: tabular data and embeddings, :mod:`ssl_mix.models.mlp`).
Every model follows the staged-model protocol of :mod:`ssl_mix.models.stages`.
``timm:NAME`` builds any timm classifier (:data:`TIMM_PREFIX`), staged by :class:`~ssl_mix.models.TimmStaged` where
it can be split (convolutional families), plain otherwise (vision transformers: forward pass only).

:func:`build_model` builds the network a ``model`` config section describes; training, loading a run and loading an
export all build through it (the starting weights of training are :mod:`ssl_mix.weights`'s).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from ssl_mix.models._common import check_dropout
from ssl_mix.models.cnn13 import CNN13
from ssl_mix.models.mlp import MLP
from ssl_mix.models.small import SmallCNN
from ssl_mix.models.wrn import WideResNet

if TYPE_CHECKING:  # the config imports the methods, which import the models
    from ssl_mix.config import ModelConfig

__all__ = ["ModelName", "TIMM_PREFIX", "available_models", "build_model", "create_model", "is_timm_name"]

ModelName = Literal["wrn28-2", "wrn28-8", "wrn28-10", "cnn13", "cnn-small", "mlp"]


def _wrn(widen_factor: int) -> Callable[..., nn.Module]:
    def build(num_classes: int, **kwargs: Any) -> nn.Module:
        return WideResNet(num_classes, depth=28, widen_factor=widen_factor, **kwargs)
    return build


# name -> (builder, architecture's own dropout default, extra options the builder accepts)
_MODELS: dict[str, tuple[Callable[..., nn.Module], float, tuple[str, ...]]] = {
    "wrn28-2": (_wrn(2), 0.0, ()),
    "wrn28-8": (_wrn(8), 0.0, ()),
    "wrn28-10": (_wrn(10), 0.0, ()),
    "cnn13": (CNN13, 0.5, ("weight_norm",)),
    "cnn-small": (SmallCNN, 0.0, ("widths",)),
    "mlp": (MLP, 0.0, ("widths", "norm")),
}


def available_models() -> tuple[str, ...]:
    """The names :func:`create_model` accepts."""
    return tuple(_MODELS)


def create_model(
    name: ModelName,
    num_classes: int,
    *,
    in_channels: int = 3,
    bn_momentum: float = 0.001,
    leaky_slope: float = 0.1,
    dropout: float | None = None,
    image_size: int | tuple[int, int] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a freshly initialised network by name.

    Args:
        name: one of :func:`available_models`: ``"wrn28-2"``, ``"wrn28-8"``, ``"wrn28-10"``, ``"cnn13"``,
            ``"cnn-small"``, ``"mlp"``; or ``"timm:NAME"`` for any timm classifier (random init; ``bn_momentum``,
            ``leaky_slope`` and ``dropout`` are not applied to it, ``options`` go to ``timm.create_model``).
        num_classes: number of classes (outputs), >= 1.
        in_channels: input channels, >= 1 (3 for RGB, 1 for grey images such as 28x28 digits); for ``mlp``, the
            number of input features.
        bn_momentum: PyTorch batch-norm momentum in (0, 1]; 0.001 is the FixMatch/MixMatch code's TensorFlow
            decay 0.999 (PyTorch: ``running = (1 - momentum) * running + momentum * batch``).
        leaky_slope: negative slope of the leaky ReLUs, in [0, 1) (0.1 in the ICT/FixMatch code).
        dropout: drop probability in [0, 1), or ``None`` for the architecture's published value. WRN: inside
            each block between the convolutions (default 0); CNN-13: after the two max-pooling layers
            (default 0.5, as in the papers); cnn-small: on the pooled features (default 0); mlp: after every
            hidden layer (default 0).
        **options: model-specific options: ``weight_norm: bool`` (cnn13, default False);
            ``widths: Sequence[int]`` (cnn-small, default (32, 64, 128); mlp, default (256, 256));
            ``norm: "batch" | "layer" | "none"`` (mlp, default ``"batch"``).
        image_size: the training image size, ``H`` or ``(H, W)``. A ``timm:`` model whose constructor takes
            ``img_size`` (vision transformers: the position embeddings are sized for it) gets it, and the stage
            split of :class:`~ssl_mix.models.TimmStaged` is checked at it; ssl_mix's own models pool globally and
            ignore it.

    Returns:
        An ``nn.Module`` in train mode whose ``forward(x)`` maps ``(B, in_channels, H, W)`` to logits
        ``(B, num_classes)``, with ``stages`` and ``layer_names`` (see :mod:`ssl_mix.models.stages`).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names) or an argument out of range.
        TypeError: an option the chosen model does not take, or an argument of the wrong type.
    """
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        return _create_timm(name[len(TIMM_PREFIX):], num_classes, in_channels=in_channels, image_size=image_size,
                            **options)
    if name not in _MODELS:
        raise ValueError(
            f"name must be one of {', '.join(repr(n) for n in _MODELS)}; got {name!r}. "
            "For another network, follow the staged-model protocol in ssl_mix.models.stages."
        )
    builder, default_dropout, extra = _MODELS[name]
    unknown = sorted(set(options) - set(extra))
    if unknown:
        raise TypeError(
            f"create_model({name!r}) got unknown option(s) {unknown}; valid options for {name!r}: "
            f"{list(extra) if extra else 'none'} (besides in_channels, bn_momentum, leaky_slope, dropout)."
        )
    dropout = default_dropout if dropout is None else check_dropout(dropout)
    return builder(
        num_classes, in_channels=in_channels, bn_momentum=bn_momentum, leaky_slope=leaky_slope,
        dropout=dropout, **options,
    )


TIMM_PREFIX = "timm:"
"""Prefix of model names built by timm (``timm:resnet18``); :func:`create_model` is its one owner."""


def is_timm_name(name: str) -> bool:
    """Whether ``name`` is a ``timm:NAME`` model name (built by timm, see :data:`TIMM_PREFIX`)."""
    return isinstance(name, str) and name.startswith(TIMM_PREFIX)


def build_model(cfg: ModelConfig, num_classes: int, in_channels: int,
                image_size: int | tuple[int, int] | None = None, *, hub_weights: bool = False) -> nn.Module:
    """The network a ``model`` config section describes, for a task; the one place training, loading a run and
    loading an export build it.

    Args:
        cfg: the section: ``name``, ``bn_momentum`` and ``dropout`` (ssl_mix models), ``widths`` and ``norm``
            (``cnn-small``, ``mlp``), ``drop_path`` (``timm:`` models, as timm's ``drop_path_rate``).
        num_classes: outputs, >= 1.
        in_channels: input channels, >= 1.
        image_size: the images' ``H`` or ``(H, W)`` (see :func:`create_model`); needed to rebuild a vision
            transformer trained at a size other than its default.
        hub_weights: build a ``timm:`` model with timm's pretrained weights (``pretrained=True``: the hub, or its
            cache). Only training start asks for them (see :mod:`ssl_mix.weights`); otherwise the weights are
            freshly initialised, to be replaced by a checkpoint's.

    Returns:
        The model, in train mode (see :func:`create_model`).

    Raises:
        ValueError: ``drop_path`` or ``hub_weights`` for a model that is not a ``timm:`` model; an unknown name.
    """
    options: dict[str, Any] = cfg.architecture_options()
    if is_timm_name(cfg.name):
        if cfg.drop_path is not None:
            options["drop_path_rate"] = cfg.drop_path
        if hub_weights:
            options["pretrained"] = True
    else:
        for setting, given in (("drop_path", cfg.drop_path is not None), ("pretrained", hub_weights)):
            if given:
                raise ValueError(f"model.{setting} applies to timm models (model.name timm:NAME, e.g. "
                                 f"timm:resnet18); {cfg.name!r} is an ssl_mix model. Drop model.{setting}, or "
                                 "choose a timm model")
    return create_model(cfg.name, num_classes, in_channels=in_channels, bn_momentum=cfg.bn_momentum,
                        dropout=cfg.dropout, image_size=image_size, **options)


def _create_timm(timm_name: str, num_classes: int, *, in_channels: int,
                 image_size: int | tuple[int, int] | None = None, **options: Any) -> nn.Module:
    """Build ``timm.create_model(timm_name)`` for the task, staged when timm exposes feature levels."""
    import timm  # lazy: keeps ``import ssl_mix`` free of timm

    from ssl_mix.models.timm_adapter import TimmStaged

    names = timm.list_models()
    if timm_name not in names:
        close = difflib.get_close_matches(timm_name, names, n=8, cutoff=0.6)
        raise ValueError(
            f"unknown timm model {timm_name!r}"
            + (f"; close matches: {', '.join(f'timm:{n}' for n in close)}" if close else "")
            + ". timm.list_models() lists the names (timm.list_models('*resnet*') those matching a pattern)"
        )
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size or ())
    if image_size is not None:
        try:
            model = timm.create_model(timm_name, num_classes=num_classes, in_chans=in_channels, img_size=size,
                                      **options)
        except TypeError as error:  # the rule: img_size goes to the models whose constructor takes it
            if "img_size" not in str(error):
                raise
            model = timm.create_model(timm_name, num_classes=num_classes, in_chans=in_channels, **options)
    else:
        model = timm.create_model(timm_name, num_classes=num_classes, in_chans=in_channels, **options)
    probe = {"probe_size": min(size)} if image_size is not None else {}
    try:
        return TimmStaged(model, **probe)
    except (TypeError, ValueError):
        return model
