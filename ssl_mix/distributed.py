"""Multi-GPU and multi-node training: torchrun launches the processes, DistributedDataParallel keeps them in step.

Launching
---------
On one machine with N GPUs (or N CPU processes), start N copies of the usual command with ``torchrun``::

    torchrun --standalone --nproc_per_node N -m ssl_mix train --preset ict-cifar10 --out runs/ict

``torchrun --standalone --nproc_per_node N --no-python ssl-mix train ...`` does the same through the console
script. ``--standalone`` picks a free port; without it, add ``--master_port PORT`` when two runs share a machine.

On several machines, run the same command on every node, each with N processes. With torchrun's ``c10d``
rendezvous, every node names the same job id and an endpoint on one of the nodes (ranks are assigned as nodes
join)::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id ict1 --rdzv_backend c10d --rdzv_endpoint HOST:29400 \\
        -m ssl_mix train --preset ict-cifar10 --out /shared/runs/ict

or, with a fixed node order, give each node its index and the address of node 0::

    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --master_addr HOST --master_port 29500 \\
        -m ssl_mix train --preset ict-cifar10 --out /shared/runs/ict        # on node 0; --node_rank 1 on node 1

What changes when several processes train
-----------------------------------------
* Batch size: ``--batch-size`` and ``--unlabeled-batch-size`` are per process, so one step consumes N times as
  many examples: the global batch is N x the per-process batch. The learning rate is not rescaled; scale it
  yourself if you keep the number of steps (e.g. linearly with N).
* Data: every process computes the same per-epoch permutation of each stream from the seed and takes its own
  slice of each step's global batch (process r: positions ``r*B`` to ``(r+1)*B`` of the ``N*B`` drawn in that step). The
  shards are disjoint, and a run on N processes with batch B sees, step by step, the examples of a one-process
  run with batch ``N*B``. The tensor loader keys its crop and flip draws by step and rank; the torch loader keys
  them by position in the stream, as in one process.
* Device and backend: CUDA runs use ``cuda:LOCAL_RANK`` (one GPU per process) and NCCL; CPU runs use gloo.
* Gradients are averaged over processes in the backward pass, so every process holds the same student and
  takes the same optimiser step; the EMA teacher is updated from it identically everywhere. Batch-norm layers
  normalise with their own process's batch; after each step the running statistics of process 0 are copied to
  all, so student and teacher buffers also match. ``--sync-bn`` computes batch statistics over all processes
  (CUDA only).
* Evaluation: each process evaluates every N-th batch of an evaluation set and the sums are added across
  processes, so all report the same numbers.
* Output: only process 0 writes TensorBoard logs, checkpoints, ``report.json``, ``split.json`` and
  ``config.json``, and shows the progress bar.
* Resume (``--resume``): every process reads ``last.pt``, so it must be readable on every node (a shared file
  system); the run must have the same number of processes. The checkpoint keeps every process's random state.
* Failures: when a process dies, the others fail at their next collective operation, at once if its connection
  drops or after ``--dist-timeout`` seconds (default 300) if it hangs, and torchrun ends the run with a
  non-zero exit status. A signal (Ctrl-C, SIGTERM) stops all processes together at the next log read (every
  ``--log-every`` steps), after writing ``last.pt``.

From Python, run the same script under torchrun and either call :func:`ssl_mix.run_experiment` (it joins the
process group itself) or build the pieces inside ``with ssl_mix.distributed.session(device):``, giving the loader
``rank=distributed.rank(), world_size=distributed.world_size()``; the :class:`~ssl_mix.Trainer` finds the process
group and does the rest.

Outside torchrun (or with one process) nothing here changes anything: the helpers report rank 0 of 1 and the
collective operations do nothing.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ssl_mix.models import MixableModule
from ssl_mix.seeding import derive_seed

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedError",
    "launched_by_torchrun",
    "local_device",
    "backend_for",
    "init",
    "cleanup",
    "session",
    "is_distributed",
    "rank",
    "world_size",
    "local_rank",
    "is_main",
    "rank_seed",
    "all_reduce_sum_",
    "all_gather_rows",
    "all_gather_objects",
    "broadcast_buffers_",
    "barrier",
    "wrap_ddp",
    "is_collective_failure",
]

DEFAULT_TIMEOUT_S = 300.0
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(RuntimeError):
    """A collective operation failed: another process of the run crashed, was killed or stopped responding."""


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer; it is set by torchrun, so "
                         "launch with torchrun or unset RANK, WORLD_SIZE and LOCAL_RANK") from None


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set) as one
    of several processes. ``torchrun --nproc_per_node 1`` counts as a plain single-process run."""
    return all(name in os.environ for name in _TORCHRUN_ENV) and _env_int("WORLD_SIZE") > 1


def is_distributed() -> bool:
    """Whether the default process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the default process group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the default process group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 outside torchrun)."""
    return _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0


def is_main() -> bool:
    """Whether this is the process that writes logs and checkpoints (rank 0)."""
    return rank() == 0


def rank_seed(seed: int) -> int:
    """A seed for this process's own random stream: ``seed`` itself on rank 0 (so a one-process run is unchanged),
    a seed derived from ``(seed, rank)`` on the others."""
    r = rank()
    return int(seed) if r == 0 else derive_seed(int(seed), r)


def local_device(name: str | torch.device = "auto") -> torch.device:
    """The device this process trains on.

    Args:
        name: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or any torch device string.

    Returns:
        The device. Under torchrun with several processes, CUDA means ``cuda:LOCAL_RANK``: one GPU per process
        (``cuda:0`` when each process sees exactly one GPU, e.g. with a per-process ``CUDA_VISIBLE_DEVICES``).

    Raises:
        ValueError: under torchrun, an explicit CUDA index other than ``LOCAL_RANK`` (all processes would share
            one GPU), or fewer visible GPUs than processes on this machine.
    """
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got "
                             f"{name!r}") from err
    if device.type != "cuda" or not launched_by_torchrun():
        return device
    local = local_rank()
    if device.index is not None and device.index != local:
        raise ValueError(f"under torchrun every process uses the GPU of its LOCAL_RANK; train.device={device} would "
                         f"put all processes on one GPU. Pass train.device=cuda (or auto) instead")
    count = torch.cuda.device_count()
    if count == 1:
        return torch.device("cuda", 0)
    if local >= count:
        raise ValueError(f"this process has LOCAL_RANK {local} but only {count} GPU(s) are visible; start at most "
                         f"{count} processes per machine (torchrun --nproc_per_node {count})")
    return torch.device("cuda", local)


def backend_for(device: torch.device | str) -> str:
    """The collective backend for a device: ``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init(device: str | torch.device = "auto", timeout: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group torchrun prepared (no-op when not launched by torchrun or already joined).

    Args:
        device: the training device as given to the trainer (``auto``, ``cpu``, ``cuda``); picks the backend.
        timeout: seconds a collective operation waits for the other processes before it fails (> 0).

    Returns:
        This process's device (see :func:`local_device`); for CUDA it is also made the current device.

    Raises:
        ValueError: a non-positive timeout, or a device that cannot be mapped to this process.
        RuntimeError: this PyTorch build has no ``torch.distributed``.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    device = local_device(device)
    if not launched_by_torchrun():
        return device
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install a build with distributed support "
                           "to train with torchrun")
    if dist.is_initialized():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), timeout=timedelta(seconds=float(timeout)))
    return device


def cleanup() -> None:
    """Leave the process group (``destroy_process_group``); no-op when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str | torch.device = "auto", timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[torch.device]:
    """``with session(...):`` joins torchrun's process group for the block and leaves it at the end, also on error.

    Outside torchrun, or when the group is already initialised (a nested session), it only yields the device and
    leaves the group alone.

    Args:
        device, timeout: as in :func:`init`.

    Returns:
        A context manager yielding this process's device.
    """
    owner = launched_by_torchrun() and not (dist.is_available() and dist.is_initialized())
    device = init(device, timeout)
    try:
        yield device
    finally:
        if owner:
            cleanup()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place (every process must call it). Returns ``tensor``."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` stacked in rank order: shape ``(world_size, *tensor.shape)``."""
    if not is_distributed():
        return tensor.unsqueeze(0)
    rows = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(rows, tensor.contiguous())
    return torch.stack(rows)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's picklable ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def broadcast_buffers_(module: nn.Module, src: int = 0) -> None:
    """Copy the buffers (batch-norm running statistics) of process ``src`` into every process's ``module``.

    One broadcast per buffer dtype and device, not one per buffer.
    """
    if not is_distributed():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for buffer in module.buffers():
        groups.setdefault((buffer.dtype, buffer.device), []).append(buffer)
    for buffers in groups.values():
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.broadcast(flat, src)
        if rank() != src:
            parts = flat.split([b.numel() for b in buffers])
            torch._foreach_copy_(buffers, [p.view_as(b) for p, b in zip(parts, buffers, strict=True)])


def barrier() -> None:
    """Wait until every process gets here (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``model`` for training in the current process group: ``DistributedDataParallel(MixableModule(model))``.

    Args:
        model: the student, already on ``device``. Its parameters are shared with the wrapper (optimise and
            checkpoint ``model`` itself).
        device: this process's device.

    Returns:
        The DDP module to call in the training step. Construction copies process 0's parameters and buffers to
        every process.

    Note:
        Every parameter must take part in every forward pass (``find_unused_parameters`` is off: it would cost a
        graph traversal per step). Several forward passes before one backward (ICT) are fine: each parameter's
        gradient is accumulated over all of them and all-reduced once. Buffers are not synchronised on every
        forward pass as DDP does by default; call :func:`broadcast_buffers_` once per step instead.
    """
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    # Newer PyTorch renamed the switch (and deprecates the old name); the initial copy happens either way below.
    no_forward_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})
    ddp = nn.parallel.DistributedDataParallel(MixableModule(model), device_ids=device_ids, **no_forward_sync)
    broadcast_buffers_(model)
    return ddp


def is_collective_failure(err: BaseException) -> bool:
    """Whether ``err`` comes from a failed collective operation (a lost or timed-out peer), not from this process."""
    if isinstance(err, dist.DistError):
        return True
    # gloo reports lost peers and timeouts as plain RuntimeErrors whose message starts with its source path.
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("/gloo/" in text or "nccl" in text)
