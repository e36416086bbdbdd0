"""Start from a pretrained network: does ICT[K] add anything over a supervised fine-tune of pretrained weights?

No pretrained weights can be downloaded on the machines this runs on, so the pretraining is built from data that
is here, with the target kept disjoint: a timm backbone is trained supervised on five CIFAR-10 classes with all
their labels, then the other five classes are learned from 4 and 25 labels per class (``--budgets 20,125``). The
grid compares, over seeds, the teacher's test accuracy and the wall time of

* init ``scratch`` (random weights) and ``pretrained`` (``model.init_from`` the pretraining run), each with
  ERM, mixup, ICT[2] and ICT[4], all with the same steps, batches and optimiser;
* two linear probes of the pretrained backbone: ERM with the backbone frozen for all steps
  (``optim.freeze_backbone_steps``), and a multinomial logistic-regression head fitted on its frozen pooled
  features of the labeled images (L2-normalised features, L-BFGS, fixed weight decay; no augmentation).

One JSON record per run is appended to a JSON-lines file; a run that already has a record is skipped, so an
interrupted grid continues where it stopped. ``summarize`` writes a Markdown table (mean ± std over seeds, and the
wall time per run), the paired differences that answer the question, and a PNG plot.

Examples:
    # the two halves of CIFAR-10 (the JPEG copy, extracted by benchmarks/label_budget.py extract), as symlinks:
    python benchmarks/pretrained.py split --source data/c10 --to data/c10_halves
    # pretraining (ERM on the first half, all 25,000 labels):
    ssl-mix train --dataset folder --data-root data/c10_halves/pretrain --model timm:test_resnet --method erm \\
        --teacher-bn copy --num-labels 25000 --batch-size 128 --steps 16000 --optimizer sgd --lr 0.1 \\
        --weight-decay 5e-4 --precision bf16 --channels-last --out runs/pretrain
    python benchmarks/pretrained.py run --data-root data/c10_halves/target --pretrained-run runs/pretrain \\
        --records benchmarks/results/pretrained_cpu.jsonl --data-note "CIFAR-10 JPEG copy"
    python benchmarks/pretrained.py summarize --records benchmarks/results/pretrained_cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import provenance
import torch
from label_budget import compact_history, int_list, name_list
from provenance import command_line, git_commit, hardware_summary, portable_path

import ssl_mix
from ssl_mix import (
    PRECISIONS,
    Config,
    RunDir,
    eval_batches,
    layer_names,
    load_run,
    load_run_data,
    method_class,
    preset,
    run_experiment,
    run_stages,
)

# The standard first and second halves of CIFAR-10's class list (indices 0-4 and 5-9): each holds both vehicles
# and animals, so the pretrained features are relevant to the target while no target class was ever seen.
PRETRAIN_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")

INITS = ("scratch", "pretrained")
METHODS: dict[str, dict] = {
    "erm": {"name": "erm", "teacher_bn": "copy"},
    "mixup": {"name": "mixup", "k": 2, "teacher_bn": "copy"},
    "ict2": {"name": "ict", "k": 2},
    "ict4": {"name": "ict", "k": 4},
}
# The two linear probes of the pretrained backbone: ERM with the backbone frozen for every step
# (optim.freeze_backbone_steps = train.steps: the head trained by SGD on augmented batches, batch-norm statistics
# adapting), and a logistic regression fitted on the frozen pooled features (no augmentation).
FROZEN = "erm-frozen"
PROBE = "linear-probe"
ROW_ORDER = [*METHODS, FROZEN, PROBE]
# The base recipe: the cpu-cifar10 preset (32 labeled + 32 unlabeled images a step, SGD lr 0.05 cosine, EMA 0.99,
# ICT consistency 50 with a sigmoid ramp over the first quarter) with a timm network in bf16, channels-last.
MODEL = "timm:test_resnet"
STEPS = 1000
PRECISION = "bf16"
# Linear probe: logistic regression on L2-normalised pooled features.
PROBE_WEIGHT_DECAY = 1e-3
PROBE_ITERATIONS = 300


def base_config(data_root: str, *, model: str, steps: int, precision: str, device: str) -> Config:
    """The recipe every grid cell shares (the cpu-cifar10 preset with ``model``), before its init and method."""
    return preset("cpu-cifar10").replace(
        data={"dataset": "folder", "data_root": data_root},
        model={"name": model, "channels_last": True},
        train={"steps": steps, "eval_every": steps, "checkpoint_every": steps, "precision": precision,
               "device": device, "progress": False, "log_every": max(steps // 4, 1)})


def cell_config(base: Config, init: str, method: str, budget: int, seed: int, runs_dir: Path,
                pretrained_run: str | None) -> Config:
    """The config of one grid cell: ``init`` ``pretrained`` starts from ``pretrained_run``'s teacher weights."""
    model = {"init_from": pretrained_run} if init == "pretrained" else {}
    optim = {"freeze_backbone_steps": base.train.steps} if method == FROZEN else {}
    return base.replace(model=model, method=dict(METHODS["erm" if method in (FROZEN, PROBE) else method]),
                        optim=optim, data={"num_labels": budget},
                        train={"seed": seed, "out_dir": str(runs_dir / f"{init}_{method}_n{budget}_s{seed}")})


def _key(record: dict) -> tuple:
    return (record["init"], record["method"], record["num_labels"], record["seed"], record["steps"], record["model"])


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines file, the first one of each cell (:func:`provenance.read_records`)."""
    return provenance.read_records(path, _key)


def pretrain_summary(run_dir: str) -> dict:
    """What a record says of the pretraining run: its network, steps, classes and final test accuracy on its own
    classes (from its ``report.json`` and ``config.json``)."""
    run = RunDir(run_dir)
    cfg = json.loads(run.config.read_text())
    report = json.loads(run.report.read_text())
    trained = load_run(run_dir, device="cpu")
    return {"model": cfg["model"]["name"], "method": cfg["method"]["name"], "steps": report["steps"],
            "num_labels": cfg["data"]["num_labels"], "classes": trained.classes,
            "teacher_test_accuracy": report["final"]["teacher"]["test"]["accuracy"],
            "batch_size": cfg["data"]["batch_size"], "optimizer": cfg["optim"]["optimizer"], "lr": cfg["optim"]["lr"],
            "weight_decay": cfg["optim"]["weight_decay"], "precision": cfg["train"]["precision"],
            "seed": cfg["train"]["seed"], "wall_time_s": report["wall_time_s"],
            "run": portable_path(run_dir, "pretrained_run")}


def _features(model: torch.nn.Module, images, spec, device: str) -> torch.Tensor:
    """Pooled features (the input of the classifier) of every image, L2-normalised."""
    out = []
    with torch.no_grad():
        for x, _ in eval_batches(images, spec, 500, device):
            out.append(run_stages(model, x, until=layer_names(model).index("pooled")).float())
    return torch.nn.functional.normalize(torch.cat(out), dim=1)


def linear_probe(pretrained_run: str, cfg: Config) -> dict:
    """Fit a logistic-regression head on the frozen pooled features of the pretrained teacher, on the labeled
    images of ``cfg``'s split, and test it on the test set.

    The images are normalised with the pretraining run's statistics (what its weights expect). The head is fitted
    by full-batch L-BFGS on the cross-entropy plus ``PROBE_WEIGHT_DECAY`` times the squared weights.

    Returns:
        ``{"test_accuracy": %, "train_accuracy": %, "feature_dim": D}``.
    """
    trained = load_run(pretrained_run, device=cfg.train.device)
    device = str(next(trained.models["teacher"].parameters()).device)
    data = load_run_data(cfg)
    model = trained.models["teacher"].eval()
    x_train = _features(model, data.labeled, trained.spec, device)
    y_train = data.labeled.targets.to(device)
    x_test = _features(model, data.test, trained.spec, device)
    y_test = data.test.targets.to(device)
    torch.manual_seed(cfg.train.seed)
    head = torch.nn.Linear(x_train.shape[1], data.spec.num_classes).to(device)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=PROBE_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (torch.nn.functional.cross_entropy(head(x_train), y_train)
                + PROBE_WEIGHT_DECAY * head.weight.pow(2).sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        test = (head(x_test).argmax(1) == y_test).float().mean().item() * 100
        train = (head(x_train).argmax(1) == y_train).float().mean().item() * 100
    return {"test_accuracy": test, "train_accuracy": train, "feature_dim": x_train.shape[1]}


def _record(args: argparse.Namespace, cfg: Config, init: str, method: str, wall: float, pretrain: dict | None,
            **results) -> dict:
    probe = method == PROBE
    return {"init": init, "method": method, "model": cfg.model.name, "num_labels": cfg.data.num_labels,
            "seed": cfg.train.seed, "steps": 0 if probe else cfg.train.steps, "batch_size": cfg.data.batch_size,
            "unlabeled_batch_size": cfg.data.unlabeled_batch_size, "precision": cfg.train.precision,
            "k": None if probe else cfg.method.k, "wall_time_s": wall, "pretrain": pretrain,
            "hardware": hardware_summary(cfg.train.device), "torch": torch.__version__,
            "ssl_mix": ssl_mix.__version__, "commit": git_commit(), "command": command_line(__file__),
            "data_note": args.data_note, **results}


def cmd_run(args: argparse.Namespace) -> int:
    git_commit()  # the code this process runs, recorded in every record
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    if "pretrained" in args.inits or args.probe:
        if args.pretrained_run is None:
            raise SystemExit("--pretrained-run RUN_DIR is needed for init 'pretrained' and the linear probe "
                             "(or pass --inits scratch --no-probe)")
        pretrain = pretrain_summary(args.pretrained_run)
    else:
        pretrain = None
    base = base_config(args.data_root, model=args.model, steps=args.steps, precision=args.precision,
                       device=args.device)
    done = {_key(r) for r in read_records(records_path)}
    # Seeds outermost: an interrupted grid still covers every cell with the seeds it finished.
    grid = [(s, b, i, m) for s in args.seeds for b in args.budgets for i in args.inits for m in args.methods]
    if args.probe:
        grid += [(s, b, "pretrained", probe) for s in args.seeds for b in args.budgets for probe in (FROZEN, PROBE)]
    cells = {c: cell_config(base, c[2], c[3], c[1], c[0], Path(args.runs_dir), args.pretrained_run) for c in grid}

    def key(c: tuple) -> tuple:
        return (c[2], c[3], c[1], c[0], 0 if c[3] == PROBE else args.steps, args.model)

    todo = [c for c in grid if key(c) not in done]
    print(f"{len(grid) - len(todo)} of {len(grid)} runs already recorded in {records_path}; {len(todo)} to go",
          flush=True)
    grid_start = time.perf_counter()
    data_cache: dict[tuple[int, int], object] = {}
    for n, cell in enumerate(todo, 1):
        seed, budget, init, method = cell
        cfg = cells[cell]
        start = time.perf_counter()
        if method == PROBE:
            result = linear_probe(args.pretrained_run, cfg)
            wall = time.perf_counter() - start
            record = _record(args, cfg, init, method, wall, pretrain,
                             teacher_final=result["test_accuracy"], student_final=result["test_accuracy"],
                             probe=result | {"weight_decay": PROBE_WEIGHT_DECAY, "iterations": PROBE_ITERATIONS})
        else:
            if (budget, seed) not in data_cache:
                data_cache.clear()  # one split in memory at a time
                data_cache[(budget, seed)] = load_run_data(cfg)
            start = time.perf_counter()
            report = run_experiment(cfg, data=data_cache[(budget, seed)])
            wall = time.perf_counter() - start
            final = report["final"]
            uses_unlabeled = method_class(cfg.method.name).uses_unlabeled
            images = cfg.data.batch_size + (cfg.data.unlabeled_batch_size if uses_unlabeled else 0)
            record = _record(args, cfg, init, method, wall, pretrain if init == "pretrained" else None,
                             teacher_final=final["teacher"]["test"]["accuracy"],
                             student_final=final["student"]["test"]["accuracy"],
                             history=compact_history(report), images_per_s=images * cfg.train.steps / wall)
        with records_path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        eta = (time.perf_counter() - grid_start) / n * (len(todo) - n)
        print(f"[{n}/{len(todo)}] {init:<10} {method:<12} labels={budget:<4} seed={seed}: teacher "
              f"{record['teacher_final']:.2f}% in {wall:.0f} s; ETA {eta / 60:.0f} min", flush=True)
    return 0


def row_name(init: str, method: str) -> str:
    """A table row: ``pretrained + ict2``, ``scratch + erm``, or one of the two linear probes."""
    if method == PROBE:
        return "pretrained, logistic regression on frozen features"
    if method == FROZEN:
        return "pretrained + erm, backbone frozen (linear probe)"
    return f"{init} + {method}"


def table_cells(records: list[dict]) -> dict[tuple[str, str], dict[int, list[dict]]]:
    """The records by row ``(init, method)`` and budget, rows in the order init, then :data:`ROW_ORDER`."""
    cells: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for r in sorted(records, key=lambda r: (INITS.index(r["init"]), ROW_ORDER.index(r["method"]), r["seed"])):
        cells.setdefault((r["init"], r["method"]), {}).setdefault(r["num_labels"], []).append(r)
    return cells


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def summary_table(records: list[dict]) -> str:
    """Markdown table: rows init × method (and the probe), per budget the teacher's test accuracy (mean ± std over
    seeds, n) and the mean wall time per run."""
    cells = table_cells(records)
    budgets = sorted({r["num_labels"] for r in records})
    lines = ["| init + method | " + " | ".join(f"{b} labels: accuracy (%) | {b}: s/run" for b in budgets) + " |",
             "|---|" + "---|---|" * len(budgets)]
    for (init, method), per in cells.items():
        row = []
        for b in budgets:
            rs = per.get(b, [])
            if not rs:
                row += ["–", "–"]
            else:
                row += [f"{_mean_std([r['teacher_final'] for r in rs])} (n={len(rs)})",
                        f"{statistics.fmean(r['wall_time_s'] for r in rs):.0f}"]
        lines.append(f"| {row_name(init, method)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def paired_differences(records: list[dict], comparisons: list[tuple[tuple[str, str], tuple[str, str]]]) -> str:
    """Markdown table of ``a - b`` teacher accuracy, paired by seed (the same labeled split), per budget."""
    by = {(r["init"], r["method"], r["num_labels"], r["seed"]): r["teacher_final"] for r in records}
    budgets = sorted({r["num_labels"] for r in records})
    lines = ["| difference (points) | " + " | ".join(f"{b} labels" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for a, b in comparisons:
        row = []
        for budget in budgets:
            seeds = sorted(s for (i, m, n, s) in by if (i, m, n) == (*a, budget) and (*b, budget, s) in by)
            diffs = [by[(*a, budget, s)] - by[(*b, budget, s)] for s in seeds]
            row.append(f"{_mean_std(diffs)} (n={len(diffs)}; per seed {', '.join(f'{d:+.1f}' for d in diffs)})"
                       if diffs else "–")
        lines.append(f"| {row_name(*a)} − {row_name(*b)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


COMPARISONS = [
    (("pretrained", "ict2"), ("pretrained", "erm")),
    (("pretrained", "ict4"), ("pretrained", "erm")),
    (("pretrained", "mixup"), ("pretrained", "erm")),
    (("pretrained", "erm"), ("pretrained", FROZEN)),
    (("pretrained", "erm"), ("pretrained", PROBE)),
    (("pretrained", "erm"), ("scratch", "erm")),
    (("scratch", "ict2"), ("scratch", "erm")),
]


def plot(records: list[dict], path: Path, title: str) -> None:
    """Teacher accuracy against labels: one line per init × method (pretrained solid, scratch dashed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = dict(zip(ROW_ORDER, ["C0", "C1", "C2", "C3", "C4", "C5"], strict=True))
    for (init, method), per in table_cells(records).items():
        budgets = sorted(per)
        values = [[r["teacher_final"] for r in per[b]] for b in budgets]
        ax.errorbar(budgets, [statistics.fmean(v) for v in values],
                    yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values], marker="o", capsize=3,
                    color=colours[method], linestyle="--" if init == "scratch" else "-",
                    label=row_name(init, method))
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sorted({r["num_labels"] for r in records}))
    ax.set_xticklabels([str(b) for b in sorted({r["num_labels"] for r in records})])
    ax.set_xlabel("labels (5 classes)")
    ax.set_ylabel("teacher test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def cmd_summarize(args: argparse.Namespace) -> int:
    records = read_records(Path(args.records))
    if not records:
        raise SystemExit(f"no records in {args.records}; run the grid first")
    out_md = Path(args.out_md or Path(args.records).with_suffix(".md"))
    out_png = Path(args.out_png or Path(args.records).with_suffix(".png"))

    def each(key: str) -> str:
        return ", ".join(sorted({str(r.get(key)) for r in records}))

    trained = [r for r in records if r["method"] != PROBE]
    pretrain = next((r["pretrain"] for r in records if r.get("pretrain")), None)
    lines = [f"# {args.title}", "",
             f"Teacher test accuracy (%) on the target classes, mean ± std over seeds (n = seeds), and the mean wall "
             f"time of one run. Source: `{args.records}`."]
    if any(r.get("data_note") for r in records):
        lines.append(f"Data: {each('data_note')}.")
    lines.append(f"Network {each('model')}; {', '.join(sorted({str(r['steps']) for r in trained}))} steps per "
                 f"fine-tuning run, {each('batch_size')} labeled + {each('unlabeled_batch_size')} unlabeled images a "
                 f"step (ERM and mixup use only the labeled ones), precision {each('precision')}. Hardware: "
                 f"{each('hardware')}; torch {each('torch')}; commit {each('commit')}; seeds {each('seed')}; run "
                 f"times add up to {sum(r['wall_time_s'] for r in records) / 60:.0f} min for {len(records)} runs.")
    if pretrain:
        lines.append(f"Pretraining: {pretrain['model']} trained with {pretrain['method']} on "
                     f"{', '.join(pretrain['classes'])} ({pretrain['num_labels']} labels, {pretrain['steps']} steps of "
                     f"{pretrain.get('batch_size')} images, {pretrain.get('optimizer')} lr {pretrain.get('lr')} weight "
                     f"decay {pretrain.get('weight_decay')}, {pretrain.get('precision')}, "
                     f"{pretrain['wall_time_s'] / 60:.0f} min); its teacher reaches "
                     f"{pretrain['teacher_test_accuracy']:.2f}% on the test images of those classes.")
    commands = sorted({r["command"] for r in records})
    lines.append("Commands (the grid ran in parts; each part skips the cells recorded before): "
                 + "; ".join(f"`{c}`" for c in commands) + ".")
    table = summary_table(records)
    diffs = paired_differences(records, COMPARISONS)
    lines += ["", "## Accuracy and wall time", "", table, "## Paired differences (same seed = same labeled split)",
              "", diffs]
    if args.note:
        lines += ["## Finding", "", args.note, ""]
    out_md.write_text("\n".join(lines) + "\n")
    plot(records, out_png, args.title)
    print(table + "\n" + diffs)
    print(f"wrote {out_md} and {out_png}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    source, dest = Path(args.source), Path(args.to)
    for part, classes in (("pretrain", args.pretrain_classes), ("target", args.target_classes)):
        for subset in ("train", "test"):
            for name in classes:
                origin = source / subset / name
                if not origin.is_dir():
                    raise SystemExit(f"{origin} is not a folder: --source needs train/<class>/ and test/<class>/")
                link = dest / part / subset / name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    os.symlink(origin.resolve(), link, target_is_directory=True)
    print(f"{dest}/pretrain: {', '.join(args.pretrain_classes)}; {dest}/target: {', '.join(args.target_classes)}")
    return 0


def _classes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, with subcommands ``split``, ``run`` and ``summarize``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split", help="make the pretraining and target image folders (symlinks to class folders)")
    split.add_argument("--source", required=True, help="an image folder with train/<class>/ and test/<class>/")
    split.add_argument("--to", required=True, help="writes TO/pretrain/ and TO/target/")
    split.add_argument("--pretrain-classes", type=_classes, default=list(PRETRAIN_CLASSES))
    split.add_argument("--target-classes", type=_classes, default=list(TARGET_CLASSES))
    run = sub.add_parser("run", help="run (or continue) the grid")
    run.add_argument("--data-root", required=True, help="the target image folder (train/<class>/, test/<class>/)")
    run.add_argument("--pretrained-run", help="the pretraining run's folder (needed for init pretrained, the probe)")
    run.add_argument("--inits", type=name_list(INITS, "init(s)"), default=list(INITS))
    run.add_argument("--methods", type=name_list(METHODS, "method(s)"), default=list(METHODS))
    run.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                     help="add the two linear probes of the pretrained backbone for every budget and seed")
    run.add_argument("--budgets", type=int_list, default=[20, 125])
    run.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    run.add_argument("--steps", type=int, default=STEPS)
    run.add_argument("--model", default=MODEL)
    run.add_argument("--precision", choices=PRECISIONS, default=PRECISION)
    run.add_argument("--device", default="auto")
    run.add_argument("--records", default="benchmarks/results/pretrained_cpu.jsonl")
    run.add_argument("--runs-dir", default="runs/pretrained")
    run.add_argument("--data-note", default="", help="a note stored in every record, e.g. which copy of the data")
    summ = sub.add_parser("summarize", help="table + plot from records")
    summ.add_argument("--records", required=True)
    summ.add_argument("--title", default="From scratch vs from pretrained weights")
    summ.add_argument("--note", default="", help="the finding, in words, added to the Markdown file")
    summ.add_argument("--out-md")
    summ.add_argument("--out-png")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"split": cmd_split, "run": cmd_run, "summarize": cmd_summarize}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
