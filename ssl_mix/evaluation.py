"""Evaluation of a classifier: accuracy, negative log-likelihood and calibration error over batches.

Runs the model in eval mode (batch norm with running statistics, no dropout) and accumulates the metrics on the
device; in a distributed run each process evaluates a shard and the sums are added across processes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ssl_mix import distributed
from ssl_mix.metrics import ClassificationMetrics

__all__ = ["EVAL_BATCH_SIZE", "evaluate"]

EVAL_BATCH_SIZE = 500
"""Images per evaluation batch (test and validation sets, calibration, ``ssl-mix eval``): memory, not results,
depends on it, since evaluation has no batch statistics (batch norm uses its running ones)."""


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             device: torch.device | str = "cpu", precision: str = "fp32", rank: int = 0,
             world_size: int = 1) -> dict[str, float]:
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

    Returns:
        ``{"accuracy", "nll", "ece", "count"}`` as :meth:`ClassificationMetrics.compute` gives them.
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


