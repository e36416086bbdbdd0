"""Calibrated confidences: ECE and NLL of the test predictions before and after temperature scaling.

Trains the label-budget benchmark's cells (its CPU or paper scale, through the public API) with a validation
split; training fits each model's temperature on that split at the end (Guo et al. 2017). This script then scores
the test set with the fitted temperature, and appends one JSON record per run (resumable like the label-budget
grid). ``summarize`` writes a Markdown table: mean ± std over seeds of the temperature, accuracy, ECE and NLL.

Examples:
    python benchmarks/label_budget.py extract --archive ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz --to data/c10
    nice -n 5 python benchmarks/calibration.py run --data-root data/c10 --threads 1 \
        --records benchmarks/results/calibration_cpu.jsonl
    python benchmarks/calibration.py summarize --records benchmarks/results/calibration_cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from label_budget import int_list, make_record, read_records, run_config, scale_config

from ssl_mix import calibration_metrics, eval_batches, load_run, load_run_data, model_logits, run_experiment
from ssl_mix.evaluation import EVAL_BATCH_SIZE


def _key(record: dict) -> tuple:
    return (record["dataset"], record["scale"], record["method"], record["num_labels"], record["seed"], record["steps"],
            record["num_valid_per_class"], record["precision"])


def cmd_run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    base = scale_config(args.scale, args.dataset).replace(
        data={"data_root": args.data_root, "num_valid_per_class": args.num_valid_per_class},
        train={"device": args.device, **({"precision": args.precision} if args.precision else {})})
    steps = args.steps if args.steps is not None else base.train.steps
    done = {_key(r) for r in read_records(records_path)}
    grid = [(s, m) for s in args.seeds for m in args.methods]
    cell = (args.num_labels, steps, args.num_valid_per_class, base.train.precision)
    todo = [(s, m) for s, m in grid
            if (args.dataset, args.scale, m, cell[0], s, cell[1], cell[2], cell[3]) not in done]
    print(f"{len(grid) - len(todo)} of {len(grid)} runs already recorded in {records_path}; {len(todo)} to go",
          flush=True)
    data_cache: dict[int, object] = {}
    for i, (seed, method) in enumerate(todo, 1):
        cfg = run_config(base, method, args.num_labels, seed, steps, Path(args.runs_dir))
        if seed not in data_cache:
            data_cache.clear()
            data_cache[seed] = load_run_data(cfg)
        data = data_cache[seed]
        start = time.perf_counter()
        report = run_experiment(cfg, data=data)
        wall = time.perf_counter() - start
        record = make_record(argparse.Namespace(dataset=args.dataset, scale=args.scale, data_note=args.data_note),
                             cfg, method, report, wall)
        run = load_run(cfg.train.out_dir, device=cfg.train.device)
        models, calibration = run.models, run.calibration
        record["calibration"] = {"valid_count": calibration["count"], "temperature": calibration["temperature"],
                                 "valid": calibration["valid"], "test": {}}
        for name, model in models.items():
            device = next(model.parameters()).device
            batches = eval_batches(data.test, data.spec, EVAL_BATCH_SIZE, device)
            logits, targets = model_logits(model, batches, device=device)
            record["calibration"]["test"][name] = calibration_metrics(logits, targets,
                                                                      calibration["temperature"][name])
        with records_path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        test = record["calibration"]["test"]["teacher"]
        print(f"[{i}/{len(todo)}] {method} seed={seed}: teacher T={calibration['temperature']['teacher']:.3f} "
              f"ECE {test['before']['ece']:.2f}% -> {test['after']['ece']:.2f}%, NLL {test['before']['nll']:.3f} -> "
              f"{test['after']['nll']:.3f} (accuracy {test['after']['accuracy']:.2f}%) in {wall:.0f} s", flush=True)
    return 0


def _mean_std(values: list[float], digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def summary_table(records: list[dict], model: str = "teacher") -> str:
    """Markdown table, one row per method: temperature, test accuracy, ECE and NLL before/after (mean ± std)."""
    lines = ["| method | seeds | T | test accuracy (%) | ECE before (%) | ECE after (%) | NLL before | NLL after |",
             "|---|---|---|---|---|---|---|---|"]
    methods = list(dict.fromkeys(r["method"] for r in records))
    for method in methods:
        rows = [r for r in records if r["method"] == method]
        test = [r["calibration"]["test"][model] for r in rows]
        lines.append(" | ".join([
            f"| {method}", str(len(rows)), _mean_std([r["calibration"]["temperature"][model] for r in rows], 3),
            _mean_std([t["after"]["accuracy"] for t in test]),
            _mean_std([t["before"]["ece"] for t in test]), _mean_std([t["after"]["ece"] for t in test]),
            _mean_std([t["before"]["nll"] for t in test], 3), _mean_std([t["after"]["nll"] for t in test], 3),
        ]) + " |")
    return "\n".join(lines) + "\n"


def cmd_summarize(args: argparse.Namespace) -> int:
    records = [r for r in read_records(Path(args.records)) if "calibration" in r]
    if not records:
        raise SystemExit(f"no records in {args.records}; run the benchmark first")
    first = records[0]
    header = [f"# {args.title}", "",
              f"Test-set calibration of the EMA teacher before and after temperature scaling (T fitted on the "
              f"validation split, {first['calibration']['valid_count']} images), mean ± std over seeds. "
              f"{first['num_labels']} labels, {first['steps']} steps, {first['model']}, {first['precision']}. "
              f"ECE: 15 equal-width bins. Source: `{args.records}`.",
              f"Hardware: {first['hardware']}; torch {first['torch']}; commit {first['commit']}; run times add up to "
              f"{sum(r['wall_time_s'] for r in records) / 60:.0f} min for {len(records)} runs.",
              f"Command: `{first['command']}`"]
    if first.get("data_note"):
        header.append(f"Data: {first['data_note']}")
    text = "\n".join(header) + "\n\n" + summary_table(records) + "\nThe student, for comparison:\n\n" + \
        summary_table(records, "student")
    out = Path(args.out_md or Path(args.records).with_suffix(".md"))
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, with subcommands ``run`` and ``summarize``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or continue) the grid")
    run.add_argument("--scale", choices=["cpu", "paper"], default="cpu")
    run.add_argument("--dataset", choices=["cifar10", "cifar100", "svhn", "folder"], default="folder")
    run.add_argument("--data-root", required=True)
    run.add_argument("--methods", type=lambda t: [m for m in t.split(",") if m], default=["erm", "ict2"])
    run.add_argument("--num-labels", type=int, default=4000)
    run.add_argument("--num-valid-per-class", type=int, default=100)
    run.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    run.add_argument("--steps", type=int, help="override the scale's steps per run")
    run.add_argument("--device", default="cpu")
    run.add_argument("--precision", choices=["fp32", "bf16"],
                     help="training precision (default: the scale's; bf16 is slow on CPUs without bf16 units)")
    run.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    run.add_argument("--records", default="benchmarks/results/calibration_cpu.jsonl")
    run.add_argument("--runs-dir", default="runs/calibration")
    run.add_argument("--data-note", default="", help="a note stored in every record, e.g. which copy of the data")
    summ = sub.add_parser("summarize", help="Markdown table from records")
    summ.add_argument("--records", required=True)
    summ.add_argument("--title", default="Temperature scaling at the CPU scale")
    summ.add_argument("--out-md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"run": cmd_run, "summarize": cmd_summarize}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
