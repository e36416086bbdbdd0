"""Label-budget curves: test accuracy against the number of labels for ERM, mixup and ICT[K].

Runs a grid of methods x label budgets x seeds through the public ``ssl_mix`` API and appends one JSON record per
run to a JSON-lines file. A run that already has a record is skipped, so an interrupted grid continues where it
stopped. ``summarize`` turns the records into a Markdown table (mean ± std over seeds) and a PNG plot, with
published points (``benchmarks/REFERENCE.md``) marked beside ours.

Scales:
    cpu    the ``cpu-cifar10`` preset (the small CNN, 32+32 batches) for 12,000 steps in bf16 autocast (fp32 on CPUs
           without bf16 units), sized so
           that the default grid (6 methods x 3 budgets x 3 seeds) takes under 1.5 hours on 2 CPU cores.
    paper  the official ICT recipe (``ict-cifar10``/``ict-svhn``: WRN-28-2, 180k steps; WRN-28-8 for CIFAR-100),
           for users with a GPU.

Examples:
    # CPU scale on the CIFAR-10 JPEG copy (extract it once):
    python benchmarks/label_budget.py extract --archive ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz --to data/c10
    python benchmarks/label_budget.py run --scale cpu --dataset folder --data-root data/c10 \
        --records benchmarks/results/label_budget_cpu.jsonl
    python benchmarks/label_budget.py summarize --records benchmarks/results/label_budget_cpu.jsonl \
        --title "CIFAR-10 (JPEG copy), CPU scale"
    # Paper scale on a GPU:
    python benchmarks/label_budget.py run --scale paper --dataset cifar10 --data-root data/cifar10 --download \
        --budgets 1000,2000,4000 --records runs/label_budget_paper.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import get_args

import provenance
import torch
from provenance import command_line, git_commit, hardware_summary

import ssl_mix
from ssl_mix import (
    DATASET_NAMES,
    MODEL_ROLES,
    PRECISIONS,
    Config,
    TeacherBN,
    load_run_data,
    method_class,
    preset,
    run_experiment,
)

# Each grid method is a set of config updates on top of the scale's base config. Methods that never run the teacher
# (``uses_teacher`` False in ssl_mix.METHODS: erm, mixup) copy its batch-norm statistics from the student (the paper
# presets keep the teacher's own, for ICT); run_config sets that.
# The ``-official`` methods add the parts of the official ICT code that the CPU scale's plain ICT leaves out:
# supervised mixup on the labeled batch, mixed teacher logits as the target, ZCA-whitened inputs and the teacher's own
# batch-norm statistics (see docs/pages/label-budget.md).
_OFFICIAL = {"supervised": "mixup", "consistency_target": "logits", "teacher_bn": "own"}
METHODS: dict[str, dict[str, dict]] = {
    "erm": {"method": {"name": "erm"}},
    "mixup": {"method": {"name": "mixup", "k": 2}},
    **{f"ict{k}": {"method": {"name": "ict", "k": k}} for k in (2, 3, 4, 5)},
    **{f"ict{k}-official": {"method": {"name": "ict", "k": k, **_OFFICIAL}, "data": {"zca": True}}
       for k in (2, 3, 4, 5)},
    # ICT[K] whose student mixes strongly augmented views (RandAugment + Cutout) against the teacher's weak views.
    **{f"ict{k}-strong": {"method": {"name": "ict", "k": k, "student_view": "strong"}} for k in (2, 4)},
}


def _recipe(name: str) -> dict[str, dict]:
    """A method's own recipe from its CPU preset, as grid updates: its method and optimiser sections and the data
    settings it changes (unlabeled batch, labeled images in the unlabeled pool), on the grid's data, network,
    labeled batch and steps."""
    cfg = preset(f"{name}-cpu").to_dict()
    return {"method": {k: v for k, v in cfg["method"].items() if k != "teacher_bn"}, "optim": cfg["optim"],
            "data": {k: cfg["data"][k] for k in ("unlabeled_batch_size", "labeled_in_unlabeled")}}


METHODS.update({name: _recipe(name) for name in ("fixmatch", "mixmatch")})
# MixMatch's official ramp lasts 1024 kimg = 16,384 steps of 64 labeled images (1/64 of 2^20 steps). mixmatch-cpu,
# hence ``mixmatch``, keeps that schedule in steps for its 6000 steps (lambda_U 27.5 at the end, ramped over the
# run; other --steps keep that weight and ramp over the run). The two variants below are what collapsed cnn-small
# to chance (benchmarks/results/mixmatch_cpu_diagnosis.md): the paper's lambda_U 75 ramped over 1/64 of the run
# (``mixmatch-fraction``) or over the whole run (``mixmatch-ramp``).
_PAPER_LAMBDA_U = preset("mixmatch-cifar10").method
METHODS["mixmatch-fraction"] = {**METHODS["mixmatch"], "method": {
    **METHODS["mixmatch"]["method"], "consistency_weight": _PAPER_LAMBDA_U.consistency_weight,
    "ramp_fraction": _PAPER_LAMBDA_U.ramp_fraction}}
METHODS["mixmatch-ramp"] = {**METHODS["mixmatch"], "method": {
    **METHODS["mixmatch"]["method"], "consistency_weight": _PAPER_LAMBDA_U.consistency_weight, "ramp_fraction": 1.0}}
# The grid run when --methods is not given: the published CPU table's methods.
DEFAULT_METHODS = ["erm", "mixup", "ict2", "ict3", "ict4", "ict5"]
# CPU scale: 12,000 steps in bf16 autocast with channels-last. At 6,000 fp32 steps the small CNN was limited by
# compute, not labels, at 4000 labels: ERM reached 62.5% with 45,000 labels and 63.6% with 4000 labels and twice
# the steps (seed 0), so no use of unlabeled data could show there. bf16 makes a cnn-small ICT step 1.6x faster on
# CPUs with bf16 matrix units (AMX, AVX512-BF16) and 4x slower on CPUs without them (an AMD EPYC without bf16
# units: cnn-small forward+backward on 480 images 0.50 s fp32 vs 2.17 s bf16), so the scale's precision is bf16 only
# where the CPU has them (cpu_precision); --precision overrides it.
CPU_STEPS = 12000


def cpu_precision(cpuinfo: str | None = None) -> str:
    """``bf16`` where this CPU has bf16 matrix instructions (the ``amx_bf16`` or ``avx512_bf16`` flags of
    /proc/cpuinfo), else ``fp32`` (also where /proc/cpuinfo cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "fp32"
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[-1].split()}
    return "bf16" if flags & {"amx_bf16", "avx512_bf16"} else "fp32"

# Published test error (%) -> accuracy, WRN-28-2 unless stated; see benchmarks/REFERENCE.md for sources.
PUBLISHED = {
    "cifar10": {
        "ICT (Verma et al. 2019, WRN-28-2)": {4000: 100 - 7.66},
        "ICT (Verma et al. 2019, CNN-13)": {1000: 100 - 15.48, 2000: 100 - 9.26, 4000: 100 - 7.29},
        "MixMatch (Berthelot et al. 2019)": {250: 100 - 11.08, 1000: 100 - 7.75, 4000: 100 - 6.24},
        "FixMatch (RA) (Sohn et al. 2020)": {250: 100 - 5.07, 4000: 100 - 4.26},
        "Supervised (Oliver et al. 2018)": {4000: 100 - 20.26},
    },
    "svhn": {
        "ICT (Verma et al. 2019, WRN-28-2)": {1000: 100 - 3.53},
        "ICT (Verma et al. 2019, CNN-13)": {1000: 100 - 3.89},
        "MixMatch (Berthelot et al. 2019)": {250: 100 - 3.78, 1000: 100 - 3.27, 4000: 100 - 2.89},
        "FixMatch (RA) (Sohn et al. 2020)": {250: 100 - 2.48, 1000: 100 - 2.28},
        "Supervised (Oliver et al. 2018)": {1000: 100 - 12.83},
    },
}


def scale_config(scale: str, dataset: str) -> Config:
    """The base config of a scale for a dataset."""
    if scale == "cpu":
        return preset("cpu-cifar10").replace(
            data={"dataset": dataset}, model={"channels_last": True},
            train={"steps": CPU_STEPS, "eval_every": 4000, "checkpoint_every": 4000, "precision": cpu_precision()})
    if dataset == "svhn":
        return preset("ict-svhn")
    cfg = preset("ict-cifar10").replace(data={"dataset": dataset})
    if dataset == "cifar100":
        cfg = cfg.replace(model={"name": "wrn28-8"})
    return cfg


def run_config(base: Config, method: str, budget: int, seed: int, steps: int | None, runs_dir: Path, *,
               teacher_bn: str | None = None, eval_every: int | None = None) -> Config:
    """The config of one grid cell; ``teacher_bn`` overrides the teacher's batch-norm statistics of the methods that
    run the teacher (the others copy the student's) and ``eval_every`` the evaluation interval."""
    method_updates = dict(METHODS[method]["method"])
    name = f"{method}_n{budget}_s{seed}"
    if not method_class(method_updates["name"]).uses_teacher:
        method_updates["teacher_bn"] = "copy"
    elif teacher_bn is not None:
        method_updates["teacher_bn"] = teacher_bn
        name += f"_bn{teacher_bn}"
    updates = {
        "method": method_updates,
        "data": {"num_labels": budget, **METHODS[method].get("data", {})},
        "train": {"seed": seed, "out_dir": str(runs_dir / name), "progress": False},
    }
    if "optim" in METHODS[method]:
        updates["optim"] = METHODS[method]["optim"]
    if steps is not None:
        updates["train"]["steps"] = steps
    if eval_every is not None:
        updates["train"]["eval_every"] = eval_every
    return base.replace(**updates)


def _key(record: dict) -> tuple:
    # Records written before the teacher_bn option existed all copied the student's statistics.
    return (record["dataset"], record["scale"], record["method"], record["num_labels"], record["seed"], record["steps"],
            record.get("num_valid_per_class", 0), record.get("precision", "fp32"), record.get("teacher_bn", "copy"))


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines file, the first one of each cell (:func:`provenance.read_records`)."""
    return provenance.read_records(path, _key)


def cmd_run(args: argparse.Namespace) -> int:
    git_commit()  # the code this process runs, recorded in every record
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    data = {"data_root": args.data_root, "download": args.download}
    if args.num_valid_per_class is not None:
        data["num_valid_per_class"] = args.num_valid_per_class
    train = {"device": args.device}
    if args.precision is not None:
        train["precision"] = args.precision
    base = scale_config(args.scale, args.dataset).replace(data=data, train=train)
    steps = args.steps if args.steps is not None else base.train.steps
    done = {_key(r) for r in read_records(records_path)}
    # Seeds outermost: an interrupted grid still covers every budget with the seeds it finished.
    grid = [(b, s, m) for s in args.seeds for b in args.budgets for m in args.methods]
    cells = {(b, s, m): run_config(base, m, b, s, steps, Path(args.runs_dir), teacher_bn=args.teacher_bn,
                                   eval_every=args.eval_every) for b, s, m in grid}
    todo = [(b, s, m) for b, s, m in grid if cell_key(args, m, cells[(b, s, m)]) not in done]
    print(f"{len(grid) - len(todo)} of {len(grid)} runs already recorded in {records_path}; {len(todo)} to go",
          flush=True)
    data_cache: dict[tuple[int, int], object] = {}
    grid_start, ran = time.perf_counter(), 0
    for i, (budget, seed, method) in enumerate(todo, 1):
        cfg = cells[(budget, seed, method)]
        # Several `run` processes with the same records and runs folder share the grid: a cell another one has
        # recorded meanwhile, or is running now, is left to it.
        if cell_key(args, method, cfg) in {_key(r) for r in read_records(records_path)}:
            print(f"[{i}/{len(todo)}] {method} labels={budget} seed={seed}: recorded meanwhile by another process",
                  flush=True)
            continue
        claim = claim_cell(Path(cfg.train.out_dir))
        if claim is None:
            print(f"[{i}/{len(todo)}] {method} labels={budget} seed={seed}: being run by another process (its claim: "
                  f"{Path(cfg.train.out_dir).name}.claim)", flush=True)
            continue
        try:
            # Methods that change the data settings (FixMatch keeps labeled images in the unlabeled pool) get
            # their own copy.
            data_key = (budget, seed, json.dumps(METHODS[method].get("data", {}), sort_keys=True))
            if data_key not in data_cache:
                data_cache.clear()  # one split in memory at a time; the dataset itself is cached by the OS
                data_cache[data_key] = load_run_data(cfg)
            start = time.perf_counter()
            report = run_experiment(cfg, data=data_cache[data_key])
            wall = time.perf_counter() - start
            record = make_record(args, cfg, method, report, wall)
            with records_path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        finally:
            claim.unlink(missing_ok=True)
        ran += 1
        eta = (time.perf_counter() - grid_start) / ran * (len(todo) - i)  # if no other process takes a cell
        print(f"[{i}/{len(todo)}] {method:<5} labels={budget:<5} seed={seed}: teacher {record['teacher_final']:.2f}%"
              f" student {record['student_final']:.2f}% in {wall:.0f} s; ETA {eta / 60:.0f} min", flush=True)
    return 0


def claim_cell(run_dir: Path) -> Path | None:
    """Claim a grid cell for this process by creating ``<run dir>.claim`` (holding the host name and PID).

    Returns:
        The claim file (delete it when the cell is done), or None when another process holds the cell: a live
        process on this machine, or any process on another machine sharing the folder (delete its claim file by
        hand if that process is gone). A claim left by a killed process on this machine is taken over.
    """
    path = run_dir.with_name(run_dir.name + ".claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner, _, pid = path.read_text().partition(" ")
            if owner != host or not pid.isdigit() or _alive(int(pid)):
                return None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{host} {os.getpid()}")
        return path
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cell_key(args: argparse.Namespace, method: str, cfg: Config) -> tuple:
    """The key a record of this cell has (see :func:`make_record`)."""
    return (args.dataset, args.scale, method, cfg.data.num_labels, cfg.train.seed, cfg.train.steps,
            cfg.data.num_valid_per_class, cfg.train.precision, cfg.method.teacher_bn)


def compact_history(report: dict) -> list[dict]:
    """The evaluation history of a run's report as ``[{"step", "student": {set: accuracy}, "teacher": {...}}]``."""
    return [{"step": h["step"], **{model: {name: metrics["accuracy"] for name, metrics in sets.items()}
                                   for model, sets in h["models"].items()}} for h in report["history"]]


def make_record(args: argparse.Namespace, cfg: Config, method: str, report: dict, wall: float) -> dict:
    """One run's record: what ran, where, and what it scored (with every evaluation's accuracies)."""
    best = {m: max((h["models"][m]["test"]["accuracy"] for h in report["history"]), default=float("nan"))
            for m in MODEL_ROLES}
    final = report["final"]
    uses_unlabeled = method_class(cfg.method.name).uses_unlabeled
    images = cfg.data.batch_size + (cfg.data.unlabeled_batch_size if uses_unlabeled else 0)
    return {
        "dataset": args.dataset, "scale": args.scale, "method": method, "k": cfg.method.k,
        "alpha": cfg.method.alpha, "model": cfg.model.name, "num_labels": cfg.data.num_labels, "seed": cfg.train.seed,
        "steps": cfg.train.steps, "num_valid_per_class": cfg.data.num_valid_per_class,
        "precision": cfg.train.precision, "channels_last": cfg.model.channels_last,
        "teacher_bn": cfg.method.teacher_bn, "zca": cfg.data.zca, "eval_every": cfg.train.eval_every,
        "history": compact_history(report),
        "student_final": final["student"]["test"]["accuracy"], "teacher_final": final["teacher"]["test"]["accuracy"],
        "student_best": best["student"], "teacher_best": best["teacher"],
        "selected": report.get("best"),
        "wall_time_s": wall, "images_per_s": images * cfg.train.steps / wall,
        "hardware": hardware_summary(cfg.train.device),
        "torch": torch.__version__, "ssl_mix": ssl_mix.__version__, "commit": git_commit(),
        "command": command_line(__file__),
        "data_note": args.data_note,
    }


# Reporting protocols (published SSL tables use all of these; benchmarks/REFERENCE.md says which each source used).
PROTOCOLS = {
    "final": "at the last step",
    "valid": "at the evaluation with the best validation accuracy (of the same model)",
    "median20": "median over the last 20 evaluations",
    "best-test": "best test accuracy over all evaluations: selected on the test set, an OPTIMISTIC number",
}
MEDIAN_OF = 20


def protocol_value(record: dict, protocol: str, model: str = "teacher") -> float | None:
    """A record's test accuracy of ``model`` (``teacher`` or ``student``) under a reporting protocol, or ``None``
    where the record cannot give it: ``valid`` needs a validation split, ``median20`` and ``valid`` need the
    evaluation history (records written before it was stored hold only the final and best-test values)."""
    if protocol == "final":
        return record[f"{model}_final"]
    if protocol == "best-test":
        return record[f"{model}_best"]
    history = [h[model] for h in record.get("history") or []]
    if protocol == "median20":
        tests = [h["test"] for h in history[-MEDIAN_OF:]]
        return statistics.median(tests) if tests else None
    if protocol == "valid":
        with_valid = [h for h in history if "valid" in h]
        if not with_valid:
            return None
        return max(with_valid, key=lambda h: h["valid"])["test"]  # max keeps the earliest of equal accuracies
    raise ValueError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")


def _missing_reason(records: list[dict], protocol: str) -> str:
    if protocol == "valid" and not any(r.get("num_valid_per_class") for r in records):
        return "the runs have no validation split (run the grid with --num-valid-per-class N; the paper scale has one)"
    return "the records hold no evaluation history (written before histories were recorded)"


def cmd_summarize(args: argparse.Namespace) -> int:
    records = read_records(Path(args.records))
    if not records:
        raise SystemExit(f"no records in {args.records}; run the grid first")
    unique: dict[tuple, dict] = {}
    for r in records + [r for path in args.compare for r in read_records(Path(path))]:
        unique.setdefault(_key(r), r)  # a cell in several files counts once (its first record)
    records = list(unique.values())
    sources = ", ".join(f"`{path}`" for path in [args.records, *args.compare])
    protocols = list(PROTOCOLS) if args.metric == "all" else [args.metric]
    out_md = Path(args.out_md or Path(args.records).with_suffix(".md"))
    out_png = Path(args.out_png or Path(args.records).with_suffix(".png"))
    first = records[0]
    header = [f"# {args.title}", "",
              f"Test accuracy (%) of the {args.model}, mean ± std over seeds (n = seeds). Source: {sources}."]
    if any(r.get("data_note") for r in records):
        header.append(f"Data: {first['data_note']}")
    evaluations = ", ".join(str(n) if n else "none" for n in sorted({len(r.get("history") or []) for r in records}))
    def each(key: str) -> str:  # the distinct values of a provenance field, e.g. two CPUs of two grids
        default = "fp32" if key == "precision" else None  # records from before the field all ran fp32 (see _key)
        return ", ".join(sorted({str(r.get(key, default)) for r in records}))

    header.append(f"Hardware: {each('hardware')}; torch {each('torch')}; commit {each('commit')}; "
                  f"{each('steps')} steps per run; precision {each('precision')}; run times add up to "
                  f"{sum(r['wall_time_s'] for r in records) / 60:.0f} min for {len(records)} runs; evaluations per "
                  f"run stored in the records: {evaluations}.")
    sections, plotted = [], None
    for protocol in protocols:
        title = f"## {protocol}: {PROTOCOLS[protocol]}"
        try:
            table, cells = summary_table(records, protocol=protocol, model=args.model)
        except SystemExit as err:
            if len(protocols) == 1:
                raise
            sections.append(f"{title}\n\nNot available from these records: {err}.\n")
            continue
        used = sum(len(v) for per in cells.values() for v in per.values())
        note = (f"\n{len(records) - used} of {len(records)} runs have no `{protocol}` value and are left out: "
                f"{_missing_reason(records, protocol)}.\n" if used < len(records) else "")
        sections.append(f"{title}\n\n{table}{note}")
        plotted = plotted or (protocol, cells)
        print(f"{protocol}:\n{table}")
    if plotted is None:
        raise SystemExit(f"no record has a value under any of {protocols}")
    out_md.write_text("\n".join(header) + "\n\n" + "\n".join(sections) + "\n" + published_table(first["dataset"])
                      + "\n")
    plot(plotted[1], first["dataset"], out_png, f"{args.title} ({args.model}, {plotted[0]})",
         with_published=args.published)
    print(f"wrote {out_md} and {out_png}")
    return 0


def row_labels(records: list[dict]) -> dict[int, str]:
    """Each record's table row: its method, plus its teacher batch-norm setting where one method has runs with both."""
    settings: dict[str, set] = {}
    for r in records:
        settings.setdefault(r["method"], set()).add(r.get("teacher_bn", "copy"))
    return {id(r): r["method"] + (f" (teacher BN {r.get('teacher_bn', 'copy')})" if len(settings[r["method"]]) > 1
                                  else "") for r in records}


def ordered_rows(cells: dict[str, dict]) -> list[str]:
    """Table rows in the order of :data:`METHODS` (a row label starts with its method's name)."""
    return sorted(cells, key=lambda row: (list(METHODS).index(row.split(" ")[0]), row))


def summary_table(records: list[dict], protocol: str = "final", model: str = "teacher") -> tuple[str, dict]:
    """Markdown table (rows: methods, columns: budgets) and the cells {row: {budget: [values]}}.

    Records without a value under ``protocol`` are left out; if none has one, ``SystemExit`` says why."""
    labels = row_labels(records)
    cells: dict[str, dict[int, list[float]]] = {}
    for r in records:
        value = protocol_value(r, protocol, model)
        if value is not None:
            cells.setdefault(labels[id(r)], {}).setdefault(r["num_labels"], []).append(value)
    if not cells:
        raise SystemExit(f"no record has a {protocol!r} value: {_missing_reason(records, protocol)}")
    budgets = sorted({b for per in cells.values() for b in per})
    lines = ["| method | " + " | ".join(f"{b} labels" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for method in ordered_rows(cells):
        row = []
        for b in budgets:
            values = cells[method].get(b, [])
            if not values:
                row.append("–")
            else:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                row.append(f"{statistics.fmean(values):.2f} ± {std:.2f} (n={len(values)})")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n", cells


def published_points(dataset: str) -> dict[str, dict[int, float]]:
    """The published accuracies for a dataset (the image folder is the CIFAR-10 JPEG copy)."""
    return PUBLISHED.get("cifar10" if dataset == "folder" else dataset, {})


def published_table(dataset: str) -> str:
    points = published_points(dataset)
    if not points:
        return ""
    lines = ["Published test accuracy (%) at full scale (original images, full training; see benchmarks/REFERENCE.md):",
             "", "| method | labels: accuracy |", "|---|---|"]
    for name, by_budget in points.items():
        lines.append(f"| {name} | " + ", ".join(f"{b}: {a:.2f}" for b, a in sorted(by_budget.items())) + " |")
    return "\n".join(lines) + "\n"


def plot(cells: dict, dataset: str, path: Path, title: str, *, with_published: bool) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method in ordered_rows(cells):
        budgets = sorted(cells[method])
        means = [statistics.fmean(cells[method][b]) for b in budgets]
        stds = [statistics.stdev(cells[method][b]) if len(cells[method][b]) > 1 else 0 for b in budgets]
        ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=method,
                    linestyle="--" if "-official" in method else "-")
    if with_published:
        for name, by_budget in published_points(dataset).items():
            b = sorted(by_budget)
            ax.plot(b, [by_budget[x] for x in b], linestyle=":", marker="x", label=f"published: {name}")
    ax.set_xscale("log")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def cmd_extract(args: argparse.Namespace) -> int:
    dest = Path(args.to)
    if (dest / "train").is_dir() and (dest / "test").is_dir():
        print(f"{dest} already holds train/ and test/")
        return 0
    archive = Path(args.archive)
    if not archive.is_file():
        raise SystemExit(f"archive {archive} not found")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    print(f"extracted {archive} to {dest}")
    return 0


def int_list(text: str) -> list[int]:
    """``"1,2, 3"`` -> ``[1, 2, 3]``: the comma-separated integers of a flag (the benchmarks' --seeds, --budgets)."""
    return [int(v) for v in text.split(",") if v.strip()]


def name_list(choices: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """An argparse ``type`` for a comma-separated list of names among ``choices`` (``what`` names them in the
    error, e.g. ``"method(s)"``): the benchmarks' --methods and --strategies."""
    allowed = list(choices)

    def parse(text: str) -> list[str]:
        chosen = [v.strip() for v in text.split(",") if v.strip()]
        bad = [name for name in chosen if name not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad}; choose from {allowed}")
        return chosen

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, with subcommands ``run``, ``summarize`` and ``extract``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or continue) a grid")
    run.add_argument("--scale", choices=["cpu", "paper"], default="cpu")
    # The digits have no scale here: they are the demo's data (ssl-mix demo), not a label-budget benchmark.
    run.add_argument("--dataset", choices=[d for d in DATASET_NAMES if d != "digits"], default="folder")
    run.add_argument("--data-root", required=True)
    run.add_argument("--download", action="store_true")
    run.add_argument("--methods", type=name_list(METHODS, "method(s)"), default=DEFAULT_METHODS)
    run.add_argument("--budgets", type=int_list, default=[250, 1000, 4000])
    run.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    run.add_argument("--steps", type=int, help="override the scale's steps per run")
    run.add_argument("--num-valid-per-class", type=int,
                     help="labeled examples per class held out for model selection (default: the scale's; cpu: 0)")
    run.add_argument("--device", default="auto")
    run.add_argument("--teacher-bn", choices=get_args(TeacherBN),
                     help="the teacher's batch-norm statistics in the ICT methods (default: the scale's and method's)")
    run.add_argument("--eval-every", type=int, help="evaluate every this many steps (default: the scale's)")
    run.add_argument("--precision", choices=PRECISIONS,
                     help="training precision (default: the scale's; cpu: bf16 where the CPU has bf16 units, else "
                          "fp32; paper: the preset's)")
    run.add_argument("--records", default="benchmarks/results/label_budget_cpu.jsonl")
    run.add_argument("--runs-dir", default="runs/label_budget")
    run.add_argument("--data-note", default="", help="a note stored in every record, e.g. which copy of the data")
    summ = sub.add_parser("summarize", help="table + plot from records")
    summ.add_argument("--records", required=True)
    summ.add_argument("--metric", choices=[*PROTOCOLS, "all"], default="all",
                      help="the reporting protocol to tabulate, or all of them (one table each)")
    summ.add_argument("--model", choices=MODEL_ROLES, default="teacher", help="whose accuracy to tabulate")
    summ.add_argument("--title", default="Label-budget curve")
    summ.add_argument("--compare", action="append", default=[], metavar="FILE",
                      help="records of another grid to tabulate and plot beside these (repeatable), e.g. the grid "
                           "the new methods are measured against")
    summ.add_argument("--out-md")
    summ.add_argument("--out-png")
    summ.add_argument("--published", action=argparse.BooleanOptionalAction, default=True)
    ext = sub.add_parser("extract", help="extract an image-folder archive (e.g. the CIFAR-10 JPEG copy)")
    ext.add_argument("--archive", required=True)
    ext.add_argument("--to", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"run": cmd_run, "summarize": cmd_summarize, "extract": cmd_extract}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
