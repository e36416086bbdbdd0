"""Adapter that exposes a timm model's stages for manifold mixup and per-layer analysis.

:class:`TimmStaged` splits a timm classification model into the stages of the staged-model protocol
(:mod:`ssl_mix.models.stages`): one stage per entry of the model's ``feature_info`` (the stem, then each
feature stage; modules that ``forward_features`` runs after the last feature level join the last stage),
then the pooled features (``forward_head(x, pre_logits=True)``) and the classifier (``get_classifier()``).

The split relies on ``forward_features`` being the chain of the model's child modules in registration
order, which holds for the convolutional families (ResNet, EfficientNet, ConvNeXt, RegNet, ...) but not for
vision transformers (position embeddings and class tokens are added outside any child module). The adapter
checks this at construction on a small random input and raises ``TypeError`` for models it cannot split.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ssl_mix.checks import check_int
from ssl_mix.models.eval_mode import eval_mode

__all__ = ["TimmStaged"]


class _PreLogits(nn.Module):
    """``model.forward_head(x, pre_logits=True)``: pooling (and head norm / dropout) without the classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        # Kept out of the module tree: the wrapped model is registered once, by TimmStaged.
        self.__dict__["_model"] = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_model"].forward_head(x, pre_logits=True)


def _flat_children(module: nn.Module, prefix: str, targets: set[str]) -> list[tuple[str, nn.Module]]:
    """Children in registration order, expanded just deep enough that every target name is one entry."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if any(t.startswith(full + ".") for t in targets):
            out += _flat_children(child, full + ".", targets)
        else:
            out.append((full, child))
    return out


def _first_conv_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise TypeError(f"{type(model).__name__} has no nn.Conv2d, so TimmStaged cannot choose a probe input.")


class TimmStaged(nn.Module):
    """A timm model as a chain of stages ``[feature levels..., pooled, logits]``.

    Args:
        model: a timm classification model (``timm.create_model(...)``) with ``feature_info``,
            ``forward_features``, ``forward_head`` and ``get_classifier``.
        probe_size: spatial size of the random input (batch 2) used once at construction to find and check
            the split; any size the model accepts (64 suits the convolutional families).

    Attributes:
        model: the wrapped timm model; its state dict appears under ``model.`` (load timm weights into it).
        stages: the stages (not registered separately, so parameters and state-dict keys are not
            duplicated).
        layer_names: the ``feature_info`` module names, then ``"pooled"`` and ``"logits"``.

    Raises:
        TypeError: ``model`` lacks the timm interface, or its forward pass is not a chain of its child
            modules (e.g. vision transformers).
        ValueError: the model cannot process the probe input (choose another ``probe_size``).

    Note:
        ``forward`` runs the stage chain; it equals ``model(x)``. The construction check runs in eval mode
        under ``torch.no_grad()`` and restores every module's train/eval flag.
    """

    def __init__(self, model: nn.Module, *, probe_size: int = 64) -> None:
        for attribute in ("feature_info", "forward_features", "forward_head", "get_classifier"):
            if not hasattr(model, attribute):
                raise TypeError(
                    f"TimmStaged needs a timm classification model (one with `{attribute}`), got "
                    f"{type(model).__name__}. For other models follow the protocol in ssl_mix.models.stages."
                )
        info = model.feature_info
        feature_names = [entry["module"] for entry in info] if isinstance(info, list) else list(info.module_name())
        feature_set = set(feature_names)
        children = _flat_children(model, "", feature_set)
        positions = {name: i for i, (name, _) in enumerate(children)}
        missing = [name for name in feature_names if name not in positions]
        if missing:
            raise TypeError(f"{type(model).__name__}: feature_info modules {missing} are not child modules; "
                            "TimmStaged cannot split this model.")

        probe_size = check_int("probe_size", probe_size, 1)
        probe = torch.randn(2, _first_conv_channels(model), probe_size, probe_size,
                            generator=torch.Generator().manual_seed(0))
        param = next(model.parameters(), None)
        if param is not None:
            probe = probe.to(param.device, param.dtype)
        called: list[str] = []
        hooks = [
            module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
            for name, module in children
        ]
        try:
            with eval_mode(model):
                features = model.forward_features(probe)
        except Exception as error:
            raise ValueError(
                f"{type(model).__name__}.forward_features failed on the probe input of shape "
                f"{tuple(probe.shape)} (probe_size={probe_size}): {error}. Pass a probe_size the model accepts, "
                "e.g. its training image size."
            ) from error
        finally:
            for hook in hooks:
                hook.remove()
        with eval_mode(model):
            logits = model.forward_head(features)

        # The feature stages are the child modules forward_features ran, cut after each feature level.
        executed = list(dict.fromkeys(called))
        order = [positions[name] for name in executed]
        if order != sorted(order) or not all(name in executed for name in feature_names):
            raise TypeError(f"{type(model).__name__}.forward_features does not run its child modules in order; "
                            "TimmStaged cannot split it.")
        stage_modules: list[list[nn.Module]] = [[]]
        for name in executed:
            stage_modules[-1].append(children[positions[name]][1])
            if name in feature_set and name != feature_names[-1]:
                stage_modules.append([])
        feature_stages = [m[0] if len(m) == 1 else nn.Sequential(*m) for m in stage_modules]
        stages: list[nn.Module] = [*feature_stages, _PreLogits(model), model.get_classifier()]

        try:
            with eval_mode(model):
                chained_features = probe
                for stage in feature_stages:
                    chained_features = stage(chained_features)
                chained_logits = stages[-1](stages[-2](chained_features))
            reproduced = _close(chained_features, features) and _close(chained_logits, logits)
        except Exception:  # noqa: BLE001 - any failure of the chain means the split is wrong; reported below
            reproduced = False
        if not reproduced:
            raise TypeError(
                f"{type(model).__name__}: the chain of its child modules does not reproduce forward_features / "
                "forward_head (the forward pass uses operations outside child modules, as vision transformers "
                "do). Make such a model mixable by writing it as a StagedModel (see ssl_mix.models.stages)."
            )

        super().__init__()
        self.model = model
        # Registered only through self.model; the stage list shares those modules.
        self.__dict__["stages"] = nn.ModuleList(stages)
        self.layer_names = tuple(feature_names) + ("pooled", "logits")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    # timm's optimiser helpers read these by parameter name; the wrapper's names carry the prefix ``model.``.
    def get_classifier(self) -> nn.Module:
        """The wrapped model's classifier head (timm's ``get_classifier()``)."""
        return self.model.get_classifier()

    def no_weight_decay(self) -> set[str]:
        """The wrapped model's ``no_weight_decay()`` names (e.g. position embeddings) under this module's names;
        empty when it lists none."""
        inner = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else ()
        return {f"model.{name}" for name in inner}

    def group_matcher(self, coarse: bool = False) -> Callable[[str], int]:
        """The wrapped model's timm ``group_matcher`` (the layer groups of layer-wise learning-rate decay), as a
        function of this module's parameter names returning the group's ordinal.

        Raises:
            TypeError: the wrapped model has no ``group_matcher``.
        """
        if not hasattr(self.model, "group_matcher"):
            raise TypeError(f"{type(self.model).__name__} has no group_matcher(), so its layers cannot be grouped")
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=coarse), reverse=True)
        return lambda name: groups[name.removeprefix("model.")]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)
