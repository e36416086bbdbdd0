"""What the training loop keeps beside the step: logged values summed on the device, stop signals, log writers.

Logged values stay on the device between reads (one host round trip every ``log_every`` steps); SIGINT and SIGTERM
ask the loop to stop at a step boundary, or between evaluation batches, where it can write a checkpoint.
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from ssl_mix import distributed

__all__ = ["GracefulStop", "LogAccumulator", "LogWriter", "NullWriter", "tensorboard_writer", "flatten_dict"]


class GracefulStop:
    """While active, SIGINT (Ctrl-C) and SIGTERM (cluster pre-emption) ask the loop to stop at the next step
    boundary, or before the next batch of an evaluation, where it writes a checkpoint; a second signal interrupts at
    once."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class LogAccumulator:
    """Sums logged values on the device between reads, and remembers the first step with a non-finite loss.

    In a distributed run a read is collective: the means are averaged over processes, the first bad step is the
    earliest of any process, and a stop request of any process counts, so all processes act alike.
    """

    def __init__(self, device: torch.device, distributed_run: bool = False) -> None:
        self.device = device
        self.distributed_run = distributed_run
        self.sums: dict[str, torch.Tensor | float] = {}
        self.count = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, step: int, loss: torch.Tensor, logs: Mapping[str, torch.Tensor | float]) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)
        for key, value in {"loss/total": loss.detach(), **logs}.items():
            value = value.float() if isinstance(value, torch.Tensor) else value
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += 1

    def read(self, stop_requested: bool = False) -> tuple[dict[str, float], int, bool]:
        """Means since the last read, the first bad step (-1 if none) and whether a stop was requested (here, or
        by any process of a distributed run). One host round trip (and one all-gather when distributed)."""
        keys = list(self.sums)
        tensors = [torch.as_tensor(self.sums[k], dtype=torch.float32, device=self.device) for k in keys]
        stop = torch.tensor(float(stop_requested), device=self.device)
        row = torch.stack([*tensors, self.first_bad.float(), stop])
        if self.distributed_run:
            rows = distributed.all_gather_rows(row)  # (world_size, keys + 2), identical on every process
            bad = rows[:, -2]
            first_bad = torch.where(bad >= 0, bad, torch.full_like(bad, math.inf)).min()
            first_bad = torch.where(torch.isinf(first_bad), torch.full_like(first_bad, -1.0), first_bad)
            row = torch.cat([rows[:, :-2].mean(dim=0), first_bad.view(1), rows[:, -1].max().view(1)])
        values = row.cpu().tolist()
        means = {k: v / max(self.count, 1) for k, v in zip(keys, values[:-2], strict=True)}
        self.sums, self.count = {}, 0
        return means, int(values[-2]), values[-1] > 0


class LogWriter(Protocol):
    """What the trainer logs to: the part of TensorBoard's ``SummaryWriter`` it uses."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        """Record ``scalar_value`` under ``tag`` at ``global_step``."""

    def add_hparams(self, hparam_dict: dict[str, Any], metric_dict: dict[str, float], *args: Any,
                    **kwargs: Any) -> None:
        """Record a run's hyper-parameters with its final metrics."""

    def flush(self) -> None:
        """Write what is buffered."""

    def close(self) -> None:
        """Flush and release the files."""


class NullWriter:
    """A :class:`LogWriter` that keeps nothing: for processes other than 0, and runs without TensorBoard logs."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_hparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def tensorboard_writer(log_dir: str | Path) -> LogWriter:
    """The run's log writer: a TensorBoard ``SummaryWriter`` writing to ``log_dir`` on process 0 (a run's
    :attr:`ssl_mix.run.RunDir.tensorboard`), a :class:`NullWriter` on the other processes of a distributed run.

    Args:
        log_dir: the directory of the event files; created with the writer.

    Returns:
        The writer to hand to :class:`~ssl_mix.Trainer`.
    """
    if not distributed.is_main():
        return NullWriter()
    with warnings.catch_warnings():
        # tensorboard's import path emits deprecation warnings from its dependencies on some versions.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(log_dir))


def flatten_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (TensorBoard hparams take flat keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out

