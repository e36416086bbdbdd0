"""The staged-model protocol: address a network's layers for manifold mixup and per-layer analysis.

Manifold mixup (Verma et al., 2019) and ICT mix hidden states at a chosen layer and continue the forward
pass; the linearity analysis of Chaudhry et al. ("When does mixup promote local linearity in learned
representations?", §3) reads the output of every layer. Both need the network as an ordered chain of
*stages*, so that "layer i" means "the output of stage i":

    x --stage 0--> h_0 --stage 1--> h_1 --> ... --stage n-1--> h_{n-1} = logits

Layer ``"input"`` is ``x`` itself. For the wide ResNets the stages are ``[conv1, group1, group2, group3,
head (BN, leaky ReLU, global average pool, flatten), fc]``, so layers 0..5 are the numbering of Chaudhry
et al. §3: 0 = first convolution, 1-3 = the three groups, 4 = pooled features, 5 = logits.

The protocol
------------
A model is mixable and analysable when :func:`get_stages` can find its stages, which it does in this order:

1. the model has an attribute ``stages``: a sequence of modules (normally an ``nn.ModuleList``) whose chain
   computes the model's output; optionally an attribute ``layer_names`` with one name per stage;
2. the model is an ``nn.Sequential``: its children are the stages;
3. anything else raises ``TypeError``. Wrap a timm model with :class:`ssl_mix.models.TimmStaged`.

To make your own model take part, subclass :class:`StagedModel` (or just set ``self.stages`` and make
``forward`` the chain of stages). Three rules keep the layer outputs meaningful:

* the chain of stages is the whole forward pass (no extra operations between stages);
* each stage maps one batch-shaped tensor ``(B, ...)`` to another, treating samples independently in eval
  mode (batch norm in train mode couples samples, as usual);
* a stage must not modify its input in place (no ``nn.ReLU(inplace=True)`` as a stage's first operation),
  because :func:`forward_layers` returns the stage outputs themselves, not copies.

The functions here are the one mechanism used for every model: :func:`forward_layers` returns any set of
layer outputs from one forward pass, :func:`forward_mixed` applies a :class:`ssl_mix.mixing.MixPlan` after a
layer and finishes the pass (gradients flow through the mix to the bottom layers), and :func:`run_stages`
runs a slice of the chain (e.g. the rest of the network on a hand-made hidden state).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from ssl_mix.mixing import MixPlan

__all__ = [
    "LayerId",
    "StagedModel",
    "get_stages",
    "layer_names",
    "forward_layers",
    "forward_mixed",
    "MixableModule",
    "unwrap_model",
    "run_stages",
]

LayerId = int | Literal["input"]
"""A layer: ``"input"`` (the raw input) or the index ``i`` of a stage (its output)."""

_PROTOCOL_HINT = (
    "A mixable model is an ordered chain of stages: give it an attribute `stages` (an nn.ModuleList whose "
    "chain is the forward pass; layer i is the output of stages[i]) and optionally `layer_names`, e.g. by "
    "subclassing ssl_mix.models.StagedModel; or use an nn.Sequential; or wrap a timm model with "
    "ssl_mix.models.TimmStaged(model). See the docstring of ssl_mix.models.stages."
)


class StagedModel(nn.Module):
    """A network that is an ordered chain of stages; ``forward`` is exactly that chain.

    Args:
        stages: the stages in execution order; stage ``i`` produces layer ``i``.
        names: one readable name per stage (used in error messages and analysis plots).

    Attributes:
        stages: ``nn.ModuleList`` of the stages.
        layer_names: tuple of the stage names.
    """

    def __init__(self, stages: Sequence[nn.Module], names: Sequence[str]) -> None:
        super().__init__()
        stages, names = list(stages), tuple(names)
        if not stages:
            raise ValueError("stages must contain at least one module, got none.")
        if len(names) != len(stages):
            raise ValueError(f"names must have one entry per stage ({len(stages)}), got {len(names)}: {names}.")
        self.stages = nn.ModuleList(stages)
        self.layer_names = names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def get_stages(model: nn.Module) -> Sequence[nn.Module]:
    """The stages of a model that follows the staged-model protocol (see the module docstring).

    Args:
        model: an ``nn.Module`` with a ``stages`` attribute, or an ``nn.Sequential``. A ``torch.compile``d
            model works too (attribute access reaches the original module).

    Returns:
        The stages in execution order (``model.stages`` itself, or the children of an ``nn.Sequential``).

    Raises:
        TypeError: the model follows none of the protocol's forms, or ``stages`` is not a non-empty
            sequence of modules.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}. {_PROTOCOL_HINT}")
    stages = getattr(model, "stages", None)
    if stages is None:
        if isinstance(model, nn.Sequential):
            stages = tuple(model)
        else:
            raise TypeError(
                f"model of type {type(model).__name__} has no `stages`, so its layers cannot be addressed. "
                + _PROTOCOL_HINT
            )
    if (
        not isinstance(stages, Sequence | nn.ModuleList)
        or len(stages) == 0
        or not all(isinstance(stage, nn.Module) for stage in stages)
    ):
        raise TypeError(
            f"model.stages must be a non-empty sequence of nn.Module (e.g. nn.ModuleList), got "
            f"{type(stages).__name__} of length {len(stages) if hasattr(stages, '__len__') else '?'}. "
            + _PROTOCOL_HINT
        )
    return stages


def layer_names(model: nn.Module) -> list[str]:
    """One name per layer ``0..n-1`` (``"input"`` is not included).

    Args:
        model: a model following the staged-model protocol.

    Returns:
        ``model.layer_names`` if the model has them; the child names of an ``nn.Sequential`` (``"0"``,
        ``"1"``, ... unless it was built from an ``OrderedDict``); otherwise ``"stage0"``, ``"stage1"``, ...

    Raises:
        TypeError: ``model.layer_names`` does not have one string per stage.
    """
    stages = get_stages(model)
    names = getattr(model, "layer_names", None)
    if names is None:
        if getattr(model, "stages", None) is None and isinstance(model, nn.Sequential):
            return [name for name, _ in model.named_children()]
        return [f"stage{i}" for i in range(len(stages))]
    names = list(names)
    if len(names) != len(stages) or not all(isinstance(name, str) for name in names):
        raise TypeError(
            f"model.layer_names must hold one string per stage ({len(stages)} stages), got {names!r}."
        )
    return names


def _describe_layers(model: nn.Module, num_stages: int) -> str:
    names = layer_names(model)
    listing = ", ".join(f"{i} ({name})" for i, name in enumerate(names))
    return f"'input' or an int in 0..{num_stages - 1}: {listing}"


def _resolve_layer(model: nn.Module, layer: object, num_stages: int, argument: str = "layer") -> LayerId:
    """Validate a layer id; returns ``"input"`` or a plain ``int`` in ``0..num_stages-1``."""
    if isinstance(layer, str) and layer == "input":
        return "input"
    if isinstance(layer, numbers.Integral) and not isinstance(layer, bool) and 0 <= layer < num_stages:
        return int(layer)
    raise ValueError(
        f"{argument} must be {_describe_layers(model, num_stages)}; got {layer!r}. "
        "Negative indices and layer names are not accepted."
    )


def forward_layers(
    model: nn.Module,
    x: torch.Tensor,
    layers: Iterable[LayerId] | None = None,
) -> tuple[torch.Tensor, dict[LayerId, torch.Tensor]]:
    """Run one forward pass and return the logits and the outputs of the requested layers.

    Args:
        model: a model following the staged-model protocol.
        x: input batch ``(B, ...)`` as the model expects it (e.g. ``(B, C, H, W)`` images).
        layers: layer ids to return (``"input"`` and/or ints ``0..n-1``); ``None`` means every stage output
            ``0..n-1`` (not ``"input"``, which is ``x`` itself).

    Returns:
        ``(logits, outputs)`` where ``outputs[layer]`` is that layer's output, keyed by the requested ids in
        the order given (duplicates collapse). The tensors are part of the autograd graph; detach them for
        analysis that should not hold the graph.

    Note:
        The returned outputs are the tensors the next stage consumed, not copies; see the in-place rule in
        the module docstring.
    """
    stages = get_stages(model)
    n = len(stages)
    if layers is None:
        wanted: list[LayerId] = list(range(n))
    else:
        if isinstance(layers, str | int):
            raise TypeError(
                f"layers must be an iterable of layer ids (e.g. [0, 2] or ['input', 4]) or None, got {layers!r}."
            )
        wanted = list(dict.fromkeys(_resolve_layer(model, layer, n, "layers") for layer in layers))
    wanted_set = set(wanted)
    found: dict[LayerId, torch.Tensor] = {}
    if "input" in wanted_set:
        found["input"] = x
    h = x
    for i, stage in enumerate(stages):
        h = stage(h)
        if i in wanted_set:
            found[i] = h
    return h, {layer: found[layer] for layer in wanted}


def forward_mixed(model: nn.Module, x: torch.Tensor, plan: MixPlan, layer: LayerId) -> torch.Tensor:
    """Forward pass that mixes the hidden state after ``layer`` with ``plan`` (manifold mixup).

    Runs stages ``0..layer``, replaces their output ``h`` by ``plan.apply(h)``, and runs the remaining stages.
    ``layer="input"`` mixes ``x`` itself (input mixup); ``layer = n-1`` mixes the logits.

    Args:
        model: a model following the staged-model protocol.
        x: input batch ``(B, ...)``.
        plan: a :class:`ssl_mix.mixing.MixPlan` with ``plan.batch_size == B``, on ``x``'s device.
        layer: where to mix: ``"input"`` or a stage index ``0..n-1``.

    Returns:
        The logits of the mixed batch, ``(B, num_classes)``. Gradients flow through the mix to all stages
        before ``layer``.

    Note:
        With batch norm in train mode the statistics of the stages after ``layer`` are those of the mixed
        batch, as in manifold mixup. Mix the targets with the same plan. A model wrapped as
        ``DistributedDataParallel(ssl_mix.models.MixableModule(model))`` (as the trainer does under
        torchrun) runs the mixed pass through the wrapper's ``forward``, so that its gradients are averaged
        across processes.
    """
    inner = model._orig_mod if isinstance(getattr(model, "_orig_mod", None), nn.Module) else model
    if isinstance(inner, nn.parallel.DistributedDataParallel):
        if not isinstance(inner.module, MixableModule):
            raise TypeError(
                "forward_mixed on a DistributedDataParallel model needs it built as DistributedDataParallel("
                "ssl_mix.models.MixableModule(model)) (ssl_mix.distributed.wrap_ddp does this): a pass that "
                f"runs the stages one by one would bypass DDP's gradient averaging. Got a DDP of "
                f"{type(inner.module).__name__}."
            )
        # DDP averages gradients only for passes through its forward; MixableModule.forward runs this function.
        return model(x, plan, layer)
    stages = get_stages(model)
    layer = _resolve_layer(model, layer, len(stages))
    if not hasattr(plan, "apply"):
        raise TypeError(
            f"plan must be a MixPlan (see ssl_mix.mixing.sample_mix_plan), got {type(plan).__name__}."
        )
    if x.shape[0] != plan.batch_size:
        raise ValueError(
            f"x has batch size {x.shape[0]} but plan.batch_size is {plan.batch_size}; sample the plan for "
            "this batch, e.g. sample_mix_plan(x.shape[0], ...)."
        )
    h = plan.apply(x) if layer == "input" else x
    for i, stage in enumerate(stages):
        h = stage(h)
        if i == layer:
            h = plan.apply(h)
    return h


def run_stages(
    model: nn.Module,
    h: torch.Tensor,
    *,
    after: LayerId = "input",
    until: LayerId | None = None,
) -> torch.Tensor:
    """Run part of the chain: from the output of layer ``after`` to the output of layer ``until``.

    ``run_stages(model, x)`` is the plain forward pass; ``run_stages(model, h, after=2)`` feeds a (possibly
    hand-mixed) layer-2 output through the rest of the network.

    Args:
        model: a model following the staged-model protocol.
        h: the output of layer ``after`` (``x`` itself when ``after="input"``).
        after: layer whose output ``h`` is.
        until: last layer to run (its output is returned); ``None`` means the logits. Must not precede
            ``after``; ``until == after`` returns ``h`` unchanged.

    Returns:
        The output of layer ``until``.
    """
    stages = get_stages(model)
    n = len(stages)
    after = _resolve_layer(model, after, n, "after")
    until = n - 1 if until is None else _resolve_layer(model, until, n, "until")
    start = 0 if after == "input" else after + 1
    stop = -1 if until == "input" else until
    if stop < start - 1:
        raise ValueError(f"until={until!r} comes before after={after!r}; the chain only runs forwards.")
    for stage in list(stages)[start:stop + 1]:
        h = stage(h)
    return h


class MixableModule(nn.Module):
    """The student as DistributedDataParallel sees it: one ``forward`` for plain and manifold-mixup passes.

    DDP averages gradients only for computations that ran inside its ``forward``. Manifold mixup runs the
    model's stages one by one (:func:`forward_mixed`), so under DDP it goes through here as
    ``forward(x, plan, layer)``; :func:`forward_mixed` on a DDP-wrapped ``MixableModule`` does that.

    Args:
        module: the student (any ``nn.Module``; a staged model for manifold mixup).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, plan: MixPlan | None = None, layer: LayerId = "input") -> torch.Tensor:
        """``module(x)``; with a :class:`~ssl_mix.MixPlan`, the mixed pass ``forward_mixed(module, x, plan, layer)``.

        Args:
            x: the input batch ``(B, ...)``.
            plan: None for a plain pass, or the mixing plan of manifold mixup.
            layer: where to mix (``"input"`` or a stage index), with ``plan``.

        Returns:
            The logits ``(B, num_classes)``.
        """
        if plan is None:
            return self.module(x)
        return forward_mixed(self.module, x, plan, layer)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside training wrappers: ``torch.compile`` (``_orig_mod``), DistributedDataParallel and
    DataParallel (``module``) and :class:`MixableModule`, however nested.

    Args:
        model: a model, wrapped or not.

    Returns:
        The innermost model, whose parameters and buffers are the ones optimised and checkpointed.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel, MixableModule)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
