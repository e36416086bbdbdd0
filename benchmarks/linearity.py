"""Per-layer non-linearity after ERM, mixup, ICT[2] and ICT[4] (Chaudhry et al. eq. 3), at CPU scale.

Trains each method with the ``cpu-cifar10`` preset at one label budget (logging non-linearity during training),
then measures the EMA teacher's per-layer non-linearity on held-out test images, for both normalisations that
``ssl_mix.measure_linearity`` offers (``shared``: zero for any linear map, the library default; ``example``: the
paper's per-example unit normalisation). Writes a JSON results file and two plots.

Example (CIFAR-10 JPEG copy, extracted with ``benchmarks/label_budget.py extract``):
    python benchmarks/linearity.py --data-root data/c10 --out benchmarks/results/linearity_cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from provenance import command_line, git_commit, hardware_summary, portable_path

import ssl_mix
from ssl_mix import (
    DATASET_NAMES,
    load_run_data,
    measure_linearity,
    normalize,
    plot_linearity_comparison,
    plot_linearity_curves,
    preset,
    read_linearity_history,
    run_experiment,
)

METHODS = {"erm": {"name": "erm"}, "mixup": {"name": "mixup", "k": 2}, "ict2": {"name": "ict", "k": 2},
           "ict4": {"name": "ict", "k": 4}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="image folder with train/ and test/ (e.g. CIFAR-10 JPEGs)")
    parser.add_argument("--dataset", default="folder", choices=[d for d in DATASET_NAMES if d != "digits"])
    parser.add_argument("--num-labels", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-pairs", type=int, default=1000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results/linearity_cpu")
    parser.add_argument("--runs-dir", default="runs/linearity")
    parser.add_argument("--from-runs", metavar="DIR",
                        help="measure finished runs of benchmarks/label_budget.py "
                             "(DIR/<method>_n<labels>_s<seed>/last.pt) "
                             "instead of training; their non-linearity was not logged during training")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")

    base = preset("cpu-cifar10").replace(
        data={"dataset": args.dataset, "data_root": args.data_root, "num_labels": args.num_labels},
        train={"steps": args.steps, "seed": args.seed, "device": args.device, "progress": False,
               "eval_every": args.steps, "linearity_every": max(args.steps // 6, 1), "linearity_pairs": 256},
    )
    data = load_run_data(base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for method in methods:
        t0 = time.perf_counter()
        if args.from_runs:
            run_dir = ssl_mix.RunDir(Path(args.from_runs) / f"{method}_n{args.num_labels}_s{args.seed}")
            report = json.loads(run_dir.report.read_text())
        else:
            cfg = base.replace(method=METHODS[method], train={"out_dir": str(Path(args.runs_dir) / method)})
            report = run_experiment(cfg, data=data)
            run_dir = ssl_mix.RunDir(cfg.train.out_dir)
        model = ssl_mix.load_run(run_dir.root, device=args.device).models["teacher"]
        images = normalize(data.test.images, data.spec.mean, data.spec.std)
        values = {norm: measure_linearity(model, images, num_pairs=args.num_pairs, seed=args.seed, normalization=norm)
                  for norm in ("shared", "example")}
        curves = read_linearity_history(run_dir.tensorboard)
        if curves:
            plot_linearity_curves(curves, out / f"curves_{method}.png",
                                  title=f"{method}: non-linearity during training")
        results[method] = {"teacher_test_accuracy": report["final"]["teacher"]["test"]["accuracy"],
                           "nonlinearity": values, "curves": curves, "wall_time_s": time.perf_counter() - t0}
        print(f"{method}: accuracy {results[method]['teacher_test_accuracy']:.2f}%  "
              + "  ".join(f"{k}={v:.4f}" for k, v in values["shared"].items()), flush=True)
    for norm in ("shared", "example"):
        plot_linearity_comparison({m: r["nonlinearity"][norm] for m, r in results.items()}, out / f"final_{norm}.png",
                                  title=f"EMA teacher, per-layer non-linearity ({norm})")
    record = {
        "command": command_line(__file__),
        "commit": git_commit(), "torch": torch.__version__, "hardware": hardware_summary(args.device),
        "dataset": args.dataset, "data_root": portable_path(args.data_root, "data_root"), "num_labels": args.num_labels,
        "steps": args.steps,
        "seed": args.seed, "num_pairs": args.num_pairs, "wall_time_s": time.perf_counter() - start,
        "from_runs": portable_path(args.from_runs, "from_runs"),
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}/results.json and plots")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
