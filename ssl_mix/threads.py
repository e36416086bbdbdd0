"""How many CPU threads torch computes with: ``--threads``, else ``OMP_NUM_THREADS``, else the usable cores.

PyTorch's own default (one thread per physical core) oversubscribes a machine that other jobs already keep busy,
and then every step waits for threads that cannot run: on two cores shared with one other job, a run took 20x as
long as with one thread. :func:`resolve_threads` is the rule, a pure function; :func:`apply_threads` applies it to
torch (``torch.set_num_threads``) and warns once per process, on stderr, when the machine is busier than its cores.
Every ``ssl-mix`` command that computes calls it; the count changes speed, not what a run computes beyond the
last bits of floating-point sums, so a run may be resumed with another count.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from ssl_mix.checks import check_positive_int

__all__ = ["resolve_threads", "apply_threads", "usable_cores", "load_average"]

_warned = False  # the busy-machine warning is printed once per process


def resolve_threads(requested: int | None, *, env: Mapping[str, str], cores: int, load: float | None
                    ) -> tuple[int, str | None]:
    """The number of threads to compute with, and a warning when the machine is already busy.

    Args:
        requested: the count asked for (``--threads``, ``train.threads``); None: choose.
        env: the environment; ``OMP_NUM_THREADS`` (a positive int, or the first of a comma-separated list) is the
            count when nothing is requested. Other values of it are ignored.
        cores: the cores this process may run on (:func:`usable_cores`).
        load: the machine's 1-minute load average (:func:`load_average`), None when unknown.

    Returns:
        ``(threads, warning)``: the count, and a one-line advice when the load already exceeds ``cores`` and more
        than one thread would compete for them (None otherwise).

    Raises:
        TypeError, ValueError: ``requested`` is not a positive int.
    """
    if requested is not None:
        threads = check_positive_int("threads", requested)
    else:
        threads = _env_threads(env.get("OMP_NUM_THREADS")) or max(1, cores)
    warning = None
    if load is not None and load > cores and threads > 1:
        warning = (f"the machine is busy (1-minute load {load:.1f} on {cores} core(s)); {threads} threads would "
                   "compete with the other jobs and can make every step many times slower; use --threads 1 (or "
                   "fewer threads than idle cores), or set OMP_NUM_THREADS=1")
    return threads, warning


def _env_threads(value: str | None) -> int | None:
    """``OMP_NUM_THREADS`` as a count: its first comma-separated entry when that is a positive int, else None."""
    first = (value or "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def usable_cores() -> int:
    """The number of CPU cores this process may run on (its affinity mask, e.g. under ``taskset`` or a container's
    CPU set), or the machine's count where the system does not say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), or None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def apply_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count by :func:`resolve_threads` for this machine and environment, warning once
    per process on stderr (``ssl-mix: ...``) when the machine is already busy.

    Args:
        requested: the count asked for; None: ``OMP_NUM_THREADS``, else the usable cores.

    Returns:
        The thread count now in effect (``torch.get_num_threads()``).

    Raises:
        TypeError, ValueError: ``requested`` is not a positive int.
    """
    global _warned
    import torch

    threads, warning = resolve_threads(requested, env=os.environ, cores=usable_cores(), load=load_average())
    if warning is not None and not _warned:
        _warned = True
        print(f"ssl-mix: {warning}", file=sys.stderr)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
