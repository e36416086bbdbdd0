"""Evaluation of a classifier: accuracy, negative log-likelihood and calibration error over batches.

Runs the model in eval mode (batch norm with running statistics, no dropout) and accumulates the metrics on the
device; in a distributed run each process evaluates a shard and the sums are added across processes. A stop
request (``should_stop``) is honoured between batches: the evaluation ends with :class:`EvaluationStopped` and
returns nothing, so no half-done result is ever recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ssl_mix import distributed
from ssl_mix.metrics import ClassificationMetrics

__all__ = ["EVAL_BATCH_SIZE", "evaluate", "EvaluationStopped"]

EVAL_BATCH_SIZE = 500
"""Images per evaluation batch (test and validation sets, calibration, ``ssl-mix eval``): memory, not results,
depends on it, since evaluation has no batch statistics (batch norm uses its running ones)."""


class EvaluationStopped(Exception):
    """Raised by :func:`evaluate` when ``should_stop`` asked it to stop between batches (no metrics are returned)."""


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             device: torch.device | str = "cpu", precision: str = "fp32", rank: int = 0,
             world_size: int = 1, should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Accuracy (%), mean NLL (nats) and ECE (%) of ``model`` in eval mode over ``(x, y)`` batches.

    Args:
        model: the classifier; its train/eval mode is restored afterwards.
        batches: ``(x, y)`` batches: inputs ``(B, ...)`` and int64 targets ``(B,)``.
        device: where the model runs.
        precision: ``bf16`` runs the forward passes under bfloat16 autocast.
        rank, world_size: with ``world_size > 1`` (the process group's size; every process calls this), process
            ``rank`` evaluates batches ``rank, rank + world_size, ...`` and the sums are added across processes,
            so every process returns the metrics of the whole set. The skipped batches are still drawn from
            ``batches``. The default evaluates everything in this process alone.
        should_stop: called before each batch (e.g. "has SIGTERM arrived?"); when it returns True the evaluation
            stops there. In a distributed run the processes agree on it before every round of ``world_size``
            batches (one small all-reduce per round), so all of them stop at the same batch.

    Returns:
        ``{"accuracy", "nll", "ece", "count"}`` as :meth:`ClassificationMetrics.compute` gives them.

    Raises:
        EvaluationStopped: ``should_stop`` returned True (on any process, when distributed).
    """
    if (rank, world_size) != (0, 1) and (rank, world_size) != (distributed.rank(), distributed.world_size()):
        raise ValueError(f"evaluate got rank={rank!r}, world_size={world_size!r} but this process is rank "
                         f"{distributed.rank()} of {distributed.world_size()}; pass ssl_mix.distributed.rank() and "
                         "ssl_mix.distributed.world_size() to shard the evaluation, or leave both at their defaults "
                         "to evaluate everything in this process")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    metrics = ClassificationMetrics()
    try:
        for i, (x, y) in enumerate(batches):
            if should_stop is not None and i % world_size == 0 and _agreed(should_stop(), world_size, device):
                raise EvaluationStopped(f"evaluation stopped before batch {i}")
            if i % world_size != rank:
                continue
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(x)
            metrics.update(logits, y)
    finally:
        model.train(was_training)
    if world_size > 1:
        metrics.all_reduce(device)
    return metrics.compute()




def _agreed(stop: bool, world_size: int, device: torch.device) -> bool:
    """Whether this process or, in a distributed run, any process asks to stop (every process must call it)."""
    if world_size == 1:
        return stop
    flag = torch.tensor([float(stop)], device=device)
    return bool(distributed.all_reduce_sum_(flag).item() > 0)
