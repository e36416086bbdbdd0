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

from ssl_mix.config import Config, preset

__all__ = ["run_demo", "format_table", "DEMO_METHODS", "DEMO_SEEDS"]

DEMO_METHODS = ("erm", "ict")
"""The methods the demo compares, in the order of its table."""

DEMO_SEEDS = 3
"""How many seeds the demo trains by default (seeds ``0 .. DEMO_SEEDS - 1``): enough to see ICT win on each, few
enough that the demo answers in under a minute on 2 CPU cores."""


def run_demo(seeds: Sequence[int] = tuple(range(DEMO_SEEDS)), *, steps: int | None = None,
             num_labels: int | None = None, out_dir: str | Path = "runs/demo", progress: bool = False,
             device: str = "auto", base: Config | None = None) -> dict[str, Any]:
    """Train ERM and ICT on the digits demo for each seed.

    Args:
        seeds: one run per method per seed (the seed picks the labeled examples and the initial weights).
        steps: override the preset's step count.
        num_labels: override the preset's label budget.
        out_dir: runs are written to ``out_dir/<method>/seed<k>``.
        progress: show a progress bar per run.
        device: ``auto``, ``cpu`` or ``cuda``.
        base: start from this config instead of the ``demo`` preset.

    Returns:
        ``{"results": {method: [accuracy per seed]}, "summary": {method: (mean, std)}, "out_dir": str}``, where
        accuracy is the test accuracy (%) of the EMA teacher at the end of training.
    """
    from ssl_mix.experiment import load_run_data, run_experiment  # torch: imported when a demo runs, not for --help

    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    cfg = base if base is not None else preset("demo")
    out_dir = Path(out_dir)
    results: dict[str, list[float]] = {m: [] for m in DEMO_METHODS}
    for seed in seeds:
        updates = {"train": {"seed": seed, "progress": progress, "device": device}}
        if steps is not None:
            updates["train"]["steps"] = steps
        if num_labels is not None:
            updates["data"] = {"num_labels": num_labels}
        seed_cfg = cfg.replace(**updates)
        data = load_run_data(seed_cfg)  # same split and data for both methods of a seed
        for method in DEMO_METHODS:
            run_cfg = seed_cfg.replace(method={"name": method},
                                       train={"out_dir": str(out_dir / method / f"seed{seed}")})
            report = run_experiment(run_cfg, data=data)
            results[method].append(report["final"]["teacher"]["test"]["accuracy"])
    summary = {m: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in results.items()}
    return {"results": results, "summary": summary, "out_dir": str(out_dir), "num_labels": cfg.data.num_labels
            if num_labels is None else num_labels, "seeds": list(seeds)}


def format_table(demo: dict[str, Any]) -> str:
    """A plain-text table of the demo's test accuracies, one row per method."""
    lines = [f"digits, {demo['num_labels']} labels, seeds {demo['seeds']}: test accuracy of the EMA teacher (%)",
             f"{'method':<8} {'mean ± std':>14}   per seed"]
    for method, (mean, std) in demo["summary"].items():
        per_seed = "  ".join(f"{a:5.1f}" for a in demo["results"][method])
        lines.append(f"{method:<8} {mean:7.2f} ± {std:4.2f}   {per_seed}")
    return "\n".join(lines)
