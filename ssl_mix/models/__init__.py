"""Networks with addressable layers: WRN-28-k, CNN-13, a small CPU model, an MLP for feature vectors, and a timm
adapter.

Every model is a chain of stages (:mod:`ssl_mix.models.stages`), so one mechanism serves all of them:
:func:`forward_layers` reads layer outputs for analysis, :func:`forward_mixed` mixes hidden states at a
layer (manifold mixup, ICT), :func:`run_stages` runs part of the chain.
"""

from ssl_mix.models.cnn13 import CNN13
from ssl_mix.models.eval_mode import eval_mode, model_device
from ssl_mix.models.factory import TIMM_PREFIX, ModelName, available_models, build_model, create_model, is_timm_name
from ssl_mix.models.mlp import MLP
from ssl_mix.models.pretrained_inputs import pretrained_inputs
from ssl_mix.models.small import SmallCNN
from ssl_mix.models.stages import (
    LayerId,
    MixableModule,
    StagedModel,
    forward_layers,
    forward_mixed,
    get_stages,
    layer_names,
    run_stages,
    unwrap_model,
)
from ssl_mix.models.timm_adapter import TimmStaged
from ssl_mix.models.wrn import PreActBlock, WideResNet

__all__ = [
    "CNN13",
    "LayerId",
    "MLP",
    "MixableModule",
    "ModelName",
    "PreActBlock",
    "SmallCNN",
    "StagedModel",
    "TIMM_PREFIX",
    "TimmStaged",
    "WideResNet",
    "available_models",
    "build_model",
    "create_model",
    "eval_mode",
    "forward_layers",
    "forward_mixed",
    "pretrained_inputs",
    "get_stages",
    "is_timm_name",
    "layer_names",
    "model_device",
    "run_stages",
    "unwrap_model",
]
