"""Does choosing which images to label pay? A simulated select -> label -> retrain loop on an image folder.

Per seed: train ICT[2] from a class-balanced random split of ``--start`` labels, score its unlabeled pool once with
the EMA teacher's calibrated probabilities, let each strategy pick ``--add`` more images, label them from the
dataset's own labels (the "oracle": the class folder of each file), write the filled selection CSV and retrain from
scratch on ``--split start/split.json --add-labels picks.csv`` with the same steps. One JSON record per run goes to
a JSON-lines file (a recorded run is skipped, so an interrupted benchmark continues); ``summarize`` writes the
Markdown table of teacher test accuracy per strategy (mean ± std over seeds) and the class balance of the picks,
and a plot of both.

Example (CPU scale, the CIFAR-10 JPEG copy extracted with ``label_budget.py extract``):
    python benchmarks/active_loop.py run --data-root data/c10 --seeds 0,1,2 --steps 3000 \
        --records benchmarks/results/active_loop_cpu.jsonl
    python benchmarks/active_loop.py summarize --records benchmarks/results/active_loop_cpu.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import provenance
import torch
from label_budget import METHODS, int_list, name_list, scale_config
from provenance import command_line, git_commit, hardware_summary

from ssl_mix import (
    SELECTION_COLUMNS,
    STRATEGIES,
    RunDir,
    choose,
    load_run,
    pool_probabilities,
    run_experiment,
    unlabeled_pool,
)


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines file (:func:`provenance.read_records`)."""
    return provenance.read_records(path)


def _key(r: dict) -> tuple:
    return r["seed"], r["strategy"], r["steps"], r["start"], r["add"], r.get("balance", False)


def _label(strategy: str, balance: bool) -> str:
    """A strategy's name in run folders and tables: ``margin`` or, picked with ``--balance``, ``margin-balanced``."""
    return f"{strategy}-balanced" if balance else strategy


def _record(args: argparse.Namespace, cfg, seed: int, strategy: str, report: dict, wall: float, **extra) -> dict:
    final = report["final"]
    return {"seed": seed, "strategy": strategy, "steps": cfg.train.steps, "start": args.start, "add": args.add,
            "method": "ict2", "model": cfg.model.name, "precision": cfg.train.precision,
            "teacher_final": final["teacher"]["test"]["accuracy"],
            "student_final": final["student"]["test"]["accuracy"], "wall_time_s": wall,
            "hardware": hardware_summary(cfg.train.device), "torch": torch.__version__, "commit": git_commit(),
            "command": command_line(__file__), **extra}


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _oracle(name: str) -> str:
    """The true class of ``train/<class>/file.jpg``."""
    return Path(name).parts[1]


def cmd_run(args: argparse.Namespace) -> int:
    git_commit()  # the code this process runs, recorded in every record
    torch.set_num_threads(args.threads)
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    base = scale_config("cpu", "folder").replace(
        **METHODS["ict2"], data={"data_root": args.data_root},
        train={"steps": args.steps, "eval_every": args.steps, "checkpoint_every": 0, "device": "cpu",
               "progress": False, "precision": args.precision})
    done = {_key(r) for r in read_records(records_path)}
    for seed in args.seeds:
        runs = Path(args.runs_dir) / f"s{seed}_n{args.start}_{args.steps}"
        start_dir = runs / "start"
        if (seed, "start", args.steps, args.start, args.add, False) not in done or not RunDir(start_dir).last.is_file():
            cfg = base.replace(data={"num_labels": args.start}, train={"seed": seed, "out_dir": str(start_dir)})
            t = time.perf_counter()
            report = run_experiment(cfg)
            record = _record(args, cfg, seed, "start", report, time.perf_counter() - t, num_labels=args.start)
            _append(records_path, record)
            print(f"seed {seed}: {args.start} labels: teacher {record['teacher_final']:.2f}%", flush=True)
        todo = [s for s in args.strategies if (seed, s, args.steps, args.start, args.add, args.balance) not in done]
        if not todo:
            continue
        run = load_run(start_dir, device="cpu")
        t = time.perf_counter()
        files, names = unlabeled_pool(run)
        probabilities, kept, _ = pool_probabilities(run, files, num_workers=0, progress=False)
        score_time = time.perf_counter() - t
        print(f"seed {seed}: scored {len(kept)} pool images in {score_time:.0f} s", flush=True)
        for strategy in todo:
            picks = choose(probabilities, kept, names, run.classes, args.add, strategy, balance=args.balance, seed=seed)
            label = _label(strategy, args.balance)
            csv_path = runs / f"picks_{label}.csv"
            with csv_path.open("w", newline="") as f:
                rows = csv.writer(f)
                rows.writerow(SELECTION_COLUMNS)
                for name, guess, confidence in zip(picks.paths, picks.guesses, picks.confidences.tolist(),
                                                   strict=True):
                    rows.writerow([name, guess, f"{confidence:.6f}", _oracle(name)])
            cfg = base.replace(data={"split": str(RunDir(start_dir).split), "add_labels": str(csv_path)},
                               train={"seed": seed, "out_dir": str(runs / label)})
            t = time.perf_counter()
            report = run_experiment(cfg)
            true_counts = Counter(_oracle(n) for n in picks.paths)
            record = _record(args, cfg, seed, strategy, report, time.perf_counter() - t,
                             num_labels=args.start + args.add, balance=args.balance,
                             picked_true_classes={c: true_counts.get(c, 0) for c in run.classes},
                             picked_guess_accuracy=100.0 * sum(
                                 guess == _oracle(n) for n, guess in zip(picks.paths, picks.guesses, strict=True)
                             ) / len(picks.paths),
                             score_time_s=score_time, pool_size=len(kept))
            _append(records_path, record)
            print(f"seed {seed}: +{args.add} by {label}: teacher {record['teacher_final']:.2f}% (picks per true "
                  f"class {sorted(true_counts.values())})", flush=True)
    return 0


def _row(r: dict) -> str:
    return _label(r["strategy"], r.get("balance", False))


def _mean_std(values: list[float], signed: bool = False) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{'+' if signed else ''}.2f} ± {std:.2f} (n={len(values)})"


def cmd_summarize(args: argparse.Namespace) -> int:
    records = read_records(Path(args.records))
    if not records:
        raise SystemExit(f"no records in {args.records}; run the benchmark first")
    # Only seeds with every run of the loop count, so that each strategy is compared on the same seeds.
    seen: dict[int, set[str]] = {}
    for r in records:
        seen.setdefault(r["seed"], set()).add(_row(r))
    wanted = {"start", *(_row(r) for r in records)}
    complete = sorted(seed for seed, done in seen.items() if done == wanted)
    partial = [r for r in records if r["seed"] not in complete]
    records = [r for r in records if r["seed"] in complete]
    if not records:
        raise SystemExit(f"no seed has finished every run in {args.records} yet")
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(_row(r), []).append(r)
    first = records[0]
    lines = [f"# {args.title}", "",
             f"Teacher test accuracy (%) of ICT[2] (`cpu-cifar10` preset, {first['model']}, {first['steps']} steps, "
             f"{first['precision']}), mean ± std over seeds, after {first['start']} random class-balanced labels "
             f"and after adding {first['add']} more chosen by each strategy (retrained from scratch). Data: the "
             "CIFAR-10 JPEG copy (JPEG quality ~75; close to, not equal to, the original images).",
             f"Hardware: {', '.join(sorted({r['hardware'] for r in records}))}; torch {first['torch']}; commits "
             f"{', '.join(sorted({r['commit'] for r in records}))}. Source: `{args.records}`; commands:", "",
             *(f"- `{c}`" for c in sorted({r["command"] for r in records})), "",
             "| strategy | labels | teacher test accuracy | minus random, same seed | picks per true class (min–max, "
             "mean over seeds) | teacher's guess right on picks |", "|---|---|---|---|---|---|"]
    rows = ["start", *STRATEGIES, *(_label(s, True) for s in STRATEGIES)]
    for strategy in rows:
        rs = by.get(strategy)
        if not rs:
            continue
        if strategy == "start":
            lines.append(f"| (start: random, balanced) | {rs[0]['num_labels']} | "
                         f"{_mean_std([r['teacher_final'] for r in rs])} | – | – | – |")
            continue
        spread = [(min(r["picked_true_classes"].values()), max(r["picked_true_classes"].values())) for r in rs]
        random = {r["seed"]: r["teacher_final"] for r in by.get("random", [])}
        paired = [r["teacher_final"] - random[r["seed"]] for r in rs if r["seed"] in random]
        lines.append(f"| {strategy} | {rs[0]['num_labels']} | {_mean_std([r['teacher_final'] for r in rs])} | "
                     f"{_mean_std(paired, signed=True) if paired and strategy != 'random' else '–'} | "
                     f"{statistics.fmean(s[0] for s in spread):.0f}–{statistics.fmean(s[1] for s in spread):.0f} | "
                     f"{statistics.fmean(r['picked_guess_accuracy'] for r in rs):.0f}% |")
    seeds = sorted({r["seed"] for r in records})
    lines += ["", "Teacher test accuracy (%) per seed:", "", "| strategy | " + " | ".join(f"seed {x}" for x in seeds)
              + " |", "|---|" + "---|" * len(seeds)]
    for strategy in rows:
        per_seed = {r["seed"]: r["teacher_final"] for r in by.get(strategy, [])}
        if per_seed:
            lines.append(f"| {strategy} | " + " | ".join(f"{per_seed[x]:.2f}" if x in per_seed else "–"
                                                        for x in seeds) + " |")
    lines += ["", "Picks per true class (seed: class counts):", ""]
    for strategy in rows[1:]:
        for r in by.get(strategy, []):
            counts = ", ".join(f"{c} {n}" for c, n in r["picked_true_classes"].items())
            lines.append(f"- {strategy}, seed {r['seed']}: {counts}")
    wall = sum(r["wall_time_s"] for r in records)
    lines += ["", f"Seeds: {', '.join(map(str, complete))}. {len(records)} training runs, {wall / 60:.0f} min of "
              "training in all; scoring the pool took "
              f"{statistics.fmean(r['score_time_s'] for r in records if 'score_time_s' in r):.0f} s per seed."]
    if partial:
        lines.append(f"Left out: {len(partial)} run(s) of seed(s) "
                     f"{', '.join(sorted({str(r['seed']) for r in partial}))} that did not finish every strategy.")
    out = Path(args.out_md or Path(args.records).with_suffix(".md"))
    picture = Path(args.plot or out.with_suffix(".png"))
    plot(by, rows, picture, args.title)
    lines += ["", f"Plot: `{picture.name}`."]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


def plot(by: dict[str, list[dict]], rows: list[str], path: Path, title: str) -> None:
    """Left: teacher test accuracy per strategy (each seed a dot, mean ± std a bar). Right: the picks per true
    class, mean over seeds, one line per strategy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [r for r in rows if r in by]
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    for x, row in enumerate(shown):
        accuracies = [r["teacher_final"] for r in by[row]]
        std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        left.bar(x, statistics.fmean(accuracies), yerr=std, capsize=4, color="lightgray" if row == "start" else None,
                 alpha=0.8)
        left.plot([x] * len(accuracies), accuracies, "k.", markersize=5)
    left.set_xticks(range(len(shown)), [f"{r}\n({by[r][0]['num_labels']})" for r in shown], fontsize=7)
    low = min(r["teacher_final"] for row in shown for r in by[row])
    left.set_ylim(low - 3, None)
    left.set_ylabel("teacher test accuracy (%)")
    left.set_title("accuracy (labels in brackets)", fontsize=9)
    left.grid(True, axis="y", alpha=0.3)
    classes = list(by[shown[-1]][0]["picked_true_classes"]) if shown[-1] != "start" else []
    for row in shown[1:]:
        counts = [statistics.fmean(r["picked_true_classes"][c] for r in by[row]) for c in classes]
        right.plot(range(len(classes)), counts, marker="o", label=row)
    right.set_xticks(range(len(classes)), classes, rotation=45, fontsize=7)
    right.set_ylabel("picked images (mean over seeds)")
    right.set_title("class balance of the picks (true classes)", fontsize=9)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, with subcommands ``run`` and ``summarize``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the loop for some seeds, appending records")
    run.add_argument("--data-root", required=True, help="the CIFAR-10 JPEG folder (train/<class>/, test/<class>/)")
    run.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    run.add_argument("--steps", type=int, default=3000, help="training steps of every run (default: 3000)")
    run.add_argument("--start", type=int, default=250, help="random class-balanced labels to start from")
    run.add_argument("--add", type=int, default=250, help="labels each strategy adds")
    run.add_argument("--strategies", type=name_list(STRATEGIES, "strategy(ies)"), default=list(STRATEGIES))
    run.add_argument("--balance", action="store_true", help="spread the picks over the predicted classes")
    run.add_argument("--precision", default="bf16")
    run.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    run.add_argument("--runs-dir", default="runs/active_loop")
    run.add_argument("--records", default="benchmarks/results/active_loop_cpu.jsonl")
    run.set_defaults(func=cmd_run)
    summarize = sub.add_parser("summarize", help="write the Markdown table of the records")
    summarize.add_argument("--records", default="benchmarks/results/active_loop_cpu.jsonl")
    summarize.add_argument("--out-md")
    summarize.add_argument("--plot", help="the PNG to draw (default: the Markdown file's name with .png)")
    summarize.add_argument("--title", default="Which images to label next: CIFAR-10 (JPEG copy), CPU scale")
    summarize.set_defaults(func=cmd_summarize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
