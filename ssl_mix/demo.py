"""The demo: the library's main job on data that needs no download.

Trains a small CNN on scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes) with a small label
budget, supervised-only (ERM) against ICT, over a few seeds (:data:`DEMO_SEEDS` by default), and prints a table of
test accuracies (mean ± std). Every run writes TensorBoard logs and checkpoints under the output directory.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssl_mix.checks import check_positive_int
from ssl_mix.config import Config, preset
from ssl_mix.threads import load_average, usable_cores

__all__ = ["run_demo", "format_table", "default_workers", "DEMO_METHODS", "DEMO_SEEDS"]

DEMO_METHODS = ("erm", "ict")
"""The methods the demo compares, in the order of its table."""

DEMO_SEEDS = 3
"""How many seeds the demo trains by default (seeds ``0 .. DEMO_SEEDS - 1``): enough to see ICT win on each, few
enough for a demo (six runs, about 28 s of CPU time in all on an Intel Xeon core)."""


def run_demo(seeds: Sequence[int] = tuple(range(DEMO_SEEDS)), *, steps: int | None = None,
             num_labels: int | None = None, out_dir: str | Path = "runs/demo", progress: bool = False,
             device: str = "auto", base: Config | None = None, workers: int | None = None) -> dict[str, Any]:
    """Train ERM and ICT on the digits demo for each seed.

    The runs (one per method and seed) are independent, so they run side by side in ``workers`` processes, each
    computing with ``base.train.threads`` torch threads (one when unset: the processes, not the threads, use the
    cores). The results are gathered in the order of :data:`DEMO_METHODS` and ``seeds``, and every run computes with
    the same thread count whatever ``workers`` is, so the table does not depend on ``workers``.

    Args:
        seeds: one run per method per seed (the seed picks the labeled examples and the initial weights).
        steps: override the preset's step count.
        num_labels: override the preset's label budget.
        out_dir: runs are written to ``out_dir/<method>/seed<k>``.
        progress: show a progress bar per run (with several workers, the bars of the runs interleave).
        device: ``auto``, ``cpu`` or ``cuda``.
        base: start from this config instead of the ``demo`` preset.
        workers: processes that train runs at the same time; None: :func:`default_workers` (the idle cores among
            those this process may use), at most one per run. 1 trains every run in this process.

    Returns:
        ``{"results": {method: [accuracy per seed]}, "summary": {method: (mean, std)}, "out_dir": str}``, where
        accuracy is the test accuracy (%) of the EMA teacher at the end of training.

    Raises:
        ValueError: ``seeds`` is empty, or ``workers`` is not a positive int (TypeError for a non-int); a run's
            own error is raised again here, naming the run (a worker that dies raises RuntimeError).
    """
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if workers is not None:
        workers = check_positive_int("workers", workers)
    cfg = base if base is not None else preset("demo")
    out_dir = Path(out_dir)
    train = {"progress": progress, "device": device, "threads": cfg.train.threads or 1}
    if steps is not None:
        train["steps"] = steps
    data = {} if num_labels is None else {"data": {"num_labels": num_labels}}
    runs = [(method, seed, cfg.replace(method={"name": method}, **data,
                                       train={**train, "seed": seed, "out_dir": str(out_dir / method / f"seed{seed}")}))
            for method in DEMO_METHODS for seed in seeds]  # the table's order; configs checked here, before any run
    workers = min(workers or default_workers(cores=usable_cores(), load=load_average()), len(runs))
    accuracies = _run_serially(runs) if workers == 1 else _run_in_processes(runs, workers)
    results = {m: [accuracies[(m, seed)] for seed in seeds] for m in DEMO_METHODS}
    summary = {m: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in results.items()}
    return {"results": results, "summary": summary, "out_dir": str(out_dir), "num_labels": cfg.data.num_labels
            if num_labels is None else num_labels, "seeds": list(seeds)}


def default_workers(*, cores: int, load: float | None) -> int:
    """How many demo runs to train at once when not told: one per core not already kept busy by other jobs.

    On 2 cores with a 1-minute load of 4 from other jobs, two demo processes took twice as long as one (each
    waits for a core, and the caches thrash), so a busy machine gets one worker.

    Args:
        cores: the cores this process may use (:func:`ssl_mix.threads.usable_cores`).
        load: the machine's 1-minute load average (:func:`ssl_mix.threads.load_average`); None: unknown (all
            cores are taken as idle).

    Returns:
        ``cores`` minus the whole part of ``load``, at least 1.
    """
    busy = int(load) if load is not None else 0
    return max(1, cores - busy)


def _train_one(cfg: Config) -> float:
    """The EMA teacher's final test accuracy (%) of one demo run."""
    from ssl_mix.experiment import run_experiment  # torch: imported when a demo runs, not for --help

    return run_experiment(cfg)["final"]["teacher"]["test"]["accuracy"]


def _run_serially(runs: list[tuple[str, int, Config]]) -> dict[tuple[str, int], float]:
    """Train the runs one after another in this process."""
    out = {}
    for method, seed, cfg in runs:
        try:
            out[(method, seed)] = _train_one(cfg)
        except (ValueError, TypeError) as err:
            raise type(err)(f"demo run {method}, seed {seed}: {err}") from err
    return out


def _init_worker() -> None:
    """A worker leaves Ctrl-C to the parent (which stops the pool) and computes with one torch thread until its run
    sets its own count."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _run_in_processes(runs: list[tuple[str, int, Config]], workers: int) -> dict[tuple[str, int], float]:
    """Train the runs in ``workers`` processes at once; the first failure (or Ctrl-C) stops them all and is raised
    here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn: a forked child would inherit torch's thread pools and locks from a parent that may have computed.
    # An executor, not a multiprocessing.Pool: a worker that dies (killed, out of memory) fails its run instead of
    # leaving the parent waiting for a result that never comes.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    out = {}
    try:
        pending = [(method, seed, pool.submit(_train_one, cfg)) for method, seed, cfg in runs]
        for method, seed, future in pending:
            try:
                out[(method, seed)] = future.result()
            except (ValueError, TypeError) as err:
                raise type(err)(f"demo run {method}, seed {seed}: {err}") from err
            except BrokenProcessPool as err:
                raise RuntimeError(f"demo run {method}, seed {seed}: its worker process died ({err}); run "
                                   "ssl-mix demo --num-workers 1 to see its error here") from err
            except Exception as err:  # noqa: BLE001 - any other failure of the run, named
                raise RuntimeError(f"demo run {method}, seed {seed} failed: {type(err).__name__}: {err}") from err
    except BaseException:  # an error or Ctrl-C: the other runs' results are of no use, so stop them now
        # Before Python 3.14 (terminate_workers) the executor has no public way to stop a running worker.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return out


def format_table(demo: dict[str, Any]) -> str:
    """A plain-text table of the demo's test accuracies, one row per method."""
    lines = [f"digits, {demo['num_labels']} labels, seeds {demo['seeds']}: test accuracy of the EMA teacher (%)",
             f"{'method':<8} {'mean ± std':>14}   per seed"]
    for method, (mean, std) in demo["summary"].items():
        per_seed = "  ".join(f"{a:5.1f}" for a in demo["results"][method])
        lines.append(f"{method:<8} {mean:7.2f} ± {std:4.2f}   {per_seed}")
    return "\n".join(lines)
