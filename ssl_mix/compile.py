"""``torch.compile`` with a fallback: a model that compiles when it can and runs eagerly when the compiler fails.

Compilation happens at the first call with each input signature, which is where a missing C++ compiler or an
unsupported backend shows up; training should then go on eagerly, with one warning, rather than crash.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledModel", "compile_model"]


class CompiledModel(nn.Module):
    """A model run through ``torch.compile``, falling back to eager execution when compilation fails.

    ``torch.compile`` only wraps the model; the graph is traced and compiled at the first call with each new
    input signature, so that is where a missing C++ compiler or an unsupported backend shows up. Such a call is
    retried eagerly on the same input; if the eager call succeeds, the failure was the compiler's: a
    ``RuntimeWarning`` says so once and every later call runs eagerly. If the eager call fails too, its error
    (the model's or the input's fault) propagates. Batch-norm buffers are restored before the retry while
    calls may still compile, so a compiled graph that ran partly before failing (a graph break) leaves no trace.

    Attribute access reaches the original model (``stages`` for manifold mixup), which is stored as ``_orig_mod``
    like ``torch.compile``'s own wrapper, so :class:`~ssl_mix.EMATeacher` and checkpoints see the plain model.
    """

    # Calls that snapshot buffers: covers the compilations of the labeled, unlabeled and mixed batch shapes and
    # the dynamic-shape recompilation that follows them.
    GUARDED_CALLS = 8

    def __init__(self, model: nn.Module, compiled: Any) -> None:
        super().__init__()
        self._orig_mod = model
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: parameters stay registered once
        self.eager = False
        self._calls = 0

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.eager:
            return self._orig_mod(*args, **kwargs)
        snapshot = None
        if self._calls < self.GUARDED_CALLS:
            snapshot = [b.detach().clone() for b in self._orig_mod.buffers()]
        self._calls += 1
        try:
            return self._compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - decided by the eager retry below
            if snapshot is not None:
                with torch.no_grad():
                    for buffer, saved in zip(self._orig_mod.buffers(), snapshot, strict=True):
                        buffer.copy_(saved)
            out = self._orig_mod(*args, **kwargs)  # raises if the fault is not the compiler's
            self.eager = True
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err).strip()[:300]}); training "
                          "eagerly instead", RuntimeWarning, stacklevel=2)
            return out


def compile_model(model: nn.Module) -> nn.Module:
    """``model`` behind :class:`CompiledModel`, or ``model`` itself (with a warning) if wrapping fails."""
    try:
        compiled = torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any failure to wrap means "run eagerly"
        warnings.warn(f"torch.compile is unavailable here ({err}); training eagerly instead", RuntimeWarning,
                      stacklevel=3)
        return model
    return CompiledModel(model, compiled)


