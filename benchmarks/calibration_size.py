"""How many validation images a temperature needs: test ECE after temperature scaling fitted on n images.

Trains (or reuses) one run per method with a large validation split, then, for each size n, draws ``--draws``
random subsets of n validation images, fits the temperature on each (Guo et al. 2017, as training does at its end)
and scores the test set with it. The table says, per n: the temperature's spread, test ECE and NLL after scaling
(mean ± std over draws), how often scaling made test ECE worse than no scaling, and how often it raised the NLL of
the very images it was fitted on (never expected: T = 1 is in the search space). This is the measurement behind the
minimum validation size of :mod:`ssl_mix.calibration` (``MIN_RELIABLE_VALID``).

Example (2 CPU cores, one thread each, about 15 minutes per method at 3000 steps):
    python benchmarks/label_budget.py extract --archive ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz --to data/c10
    OMP_NUM_THREADS=1 python benchmarks/calibration_size.py run --data-root data/c10 --methods erm,ict2 \
        --out benchmarks/results/calibration_size_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from label_budget import int_list, name_list, run_config, scale_config
from provenance import record_header, write_record

from ssl_mix import (
    calibration_metrics,
    eval_batches,
    fit_temperature,
    load_run,
    load_run_data,
    model_logits,
    run_experiment,
)

METHOD_CHOICES = ("erm", "ict2")


def _logits(model: torch.nn.Module, arrays, spec, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return model_logits(model, eval_batches(arrays, spec, 500, device), device=device)


def size_curve(valid: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
               sizes: list[int], draws: int, seed: int) -> list[dict]:
    """For each n in ``sizes``: fit T on ``draws`` random n-image subsets of ``valid`` and score ``test`` with it.

    Args:
        valid, test: ``(logits (N, C), targets (N,))`` of one model.
        sizes: subset sizes, each at most the validation size.
        draws: subsets per size.
        seed: seeds the subset draws.

    Returns:
        One row per size: temperatures, test ECE / NLL after scaling, and the counts of draws that made test ECE
        worse than no scaling or raised the NLL of their own subset.
    """
    v_logits, v_targets = valid
    t_logits, t_targets = test
    uncalibrated = calibration_metrics(t_logits, t_targets, 1.0)["before"]
    rows = []
    for n in sizes:
        if n > len(v_targets):
            raise ValueError(f"size {n} exceeds the {len(v_targets)} validation images; train with more")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + n)
        temps, eces, nlls, worse_ece, raised_own_nll = [], [], [], 0, 0
        for _ in range(draws):
            pick = torch.randperm(len(v_targets), generator=gen)[:n]
            temperature = fit_temperature(v_logits[pick], v_targets[pick])
            own = calibration_metrics(v_logits[pick], v_targets[pick], temperature)
            after = calibration_metrics(t_logits, t_targets, temperature)["after"]
            temps.append(temperature)
            eces.append(after["ece"])
            nlls.append(after["nll"])
            worse_ece += after["ece"] > uncalibrated["ece"]
            raised_own_nll += own["after"]["nll"] > own["before"]["nll"] + 1e-9
        rows.append({"n": n, "draws": draws,
                     "temperature": {"mean": statistics.fmean(temps), "std": statistics.pstdev(temps),
                                     "min": min(temps), "max": max(temps)},
                     "test_ece_after": {"mean": statistics.fmean(eces), "std": statistics.pstdev(eces),
                                        "max": max(eces)},
                     "test_nll_after": {"mean": statistics.fmean(nlls), "std": statistics.pstdev(nlls)},
                     "draws_worse_test_ece": worse_ece, "draws_raised_own_nll": raised_own_nll})
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    base = scale_config("cpu", "folder").replace(
        data={"data_root": args.data_root, "num_valid_per_class": args.num_valid_per_class},
        train={"device": "cpu", "precision": "fp32"})
    record = {**record_header(__file__, None), "num_labels": args.num_labels, "seed": args.seed, "steps": args.steps,
              "num_valid_per_class": args.num_valid_per_class, "sizes": args.sizes, "draws": args.draws,
              "data_note": args.data_note, "methods": {}}
    data = None
    for method in args.methods:
        cfg = run_config(base, method, args.num_labels, args.seed, args.steps, Path(args.runs_dir))
        wall = None
        if not (Path(cfg.train.out_dir) / "last.pt").is_file() or args.retrain:
            data = data if data is not None else load_run_data(cfg)
            start = time.perf_counter()
            run_experiment(cfg, data=data)
            wall = time.perf_counter() - start
        data = data if data is not None else load_run_data(cfg)
        run = load_run(cfg.train.out_dir, device="cpu")
        model = run.models["teacher"]
        valid = _logits(model, data.valid, data.spec, "cpu")
        test = _logits(model, data.test, data.spec, "cpu")
        full = calibration_metrics(test[0], test[1], fit_temperature(*valid))
        record["methods"][method] = {
            "train_wall_s": wall, "valid_count": len(valid[1]), "test_count": len(test[1]),
            "test_accuracy": full["before"]["accuracy"], "test_ece_uncalibrated": full["before"]["ece"],
            "test_nll_uncalibrated": full["before"]["nll"], "test_ece_full_valid": full["after"]["ece"],
            "rows": size_curve(valid, test, args.sizes, args.draws, args.seed)}
        print(summary(record, method), flush=True)
    write_record(args.out, record)
    Path(args.out).with_suffix(".md").write_text(
        "\n\n".join(summary(record, m) for m in record["methods"]) + "\n")
    return 0


def summary(record: dict, method: str) -> str:
    """A Markdown table of one method's curve."""
    m = record["methods"][method]
    lines = [f"{method}: test accuracy {m['test_accuracy']:.2f}%, test ECE {m['test_ece_uncalibrated']:.2f}% "
             f"uncalibrated, {m['test_ece_full_valid']:.2f}% with T fitted on all {m['valid_count']} validation "
             f"images", "",
             "| n | T mean ± std (min-max) | test ECE after (%) | worst draw | draws worse than no scaling "
             "| test NLL after | draws raising own NLL |", "|---|---|---|---|---|---|---|"]
    for r in m["rows"]:
        t, e = r["temperature"], r["test_ece_after"]
        lines.append(f"| {r['n']} | {t['mean']:.3f} ± {t['std']:.3f} ({t['min']:.2f}-{t['max']:.2f}) | "
                     f"{e['mean']:.2f} ± {e['std']:.2f} | {e['max']:.2f} | {r['draws_worse_test_ece']}/{r['draws']} "
                     f"| {r['test_nll_after']['mean']:.4f} | {r['draws_raised_own_nll']}/{r['draws']} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (subcommand ``run``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train (or reuse) the runs and measure the curve")
    run.add_argument("--data-root", required=True, help="CIFAR-10 as an image folder (train/, test/)")
    run.add_argument("--methods", type=name_list(METHOD_CHOICES, "method(s)"), default=list(METHOD_CHOICES))
    run.add_argument("--num-labels", type=int, default=4000)
    run.add_argument("--num-valid-per-class", type=int, default=300)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=3000)
    run.add_argument("--sizes", type=int_list, default=[10, 20, 50, 100, 200, 500, 1000, 2000])
    run.add_argument("--draws", type=int, default=50)
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--retrain", action="store_true", help="train even when the run folder has a last.pt")
    run.add_argument("--runs-dir", default="runs/calibration_size")
    run.add_argument("--data-note", default="CIFAR-10 JPEG copy (quality ~75), not the original files")
    run.add_argument("--out", default="benchmarks/results/calibration_size_cpu.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"run": cmd_run}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
