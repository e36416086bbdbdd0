"""Running a model for a measurement: eval mode without gradients, and the device a model lives on.

Analysis and model checks run a network that may be in the middle of training; they must not change its
train/eval flags, its running statistics or its gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["eval_mode", "model_device"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode without gradients, then restore each submodule's own train/eval flag.

    Args:
        model: any module; a model that mixes train and eval submodules gets each one's flag back.

    Returns:
        A context manager that yields ``model``.
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield model
    finally:
        for module, training in flags:
            module.training = training


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device | None:
    """The device of the model's first parameter (or buffer).

    Args:
        model: any module.
        default: returned for a model with neither parameters nor buffers.

    Returns:
        That device, or ``default``.
    """
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return default
