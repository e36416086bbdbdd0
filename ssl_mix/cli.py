"""The ``ssl-mix`` command line: one subcommand per job, each a thin layer over the public API.

Every subcommand maps its flags onto the same typed objects that the Python API uses, so the CLI can do
nothing the API cannot. User errors (bad flags, missing files, invalid values) exit with status 2 and a
one-line message instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ssl_mix.config.flags import add_config_flags, add_deprecated_flag, add_renamed_flag, config_updates, flag_terms
from ssl_mix.version import __version__


class UsageError(Exception):
    """A user error found after argument parsing; reported like an argparse error (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The full ``ssl-mix`` argument parser, with one sub-parser per registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="ssl-mix",
        description="Semi-supervised learning with mixup: ICT[K], mixup, manifold mixup and linearity analysis.",
    )
    parser.add_argument("--version", action="version", version=f"ssl-mix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        if name in _COMPUTING:
            add_config_flags(p, [("train", "threads")])  # train has it among its config flags
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssl-mix`` console script. Returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _, _, run = _COMMANDS[args.command]
    try:
        if args.command in _COMPUTING:
            from ssl_mix.threads import apply_threads

            apply_threads(_threads(args))
        return run(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, FileExistsError) as err:
        # Library code raises these for bad user input, with a message that says what to do in config terms
        # (data.num_labels), here spelled as flags; the OS errors name the path (e.g. an --out folder under a file).
        message = str(err) if isinstance(err, UsageError) else flag_terms(str(err))
        print(f"ssl-mix {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssl-mix {args.command}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------------------------
# Subcommands. Each one: an `_add_<name>` that declares its flags and a `_run_<name>` that calls the API.
# ---------------------------------------------------------------------------------------------------------


# The commands besides train that compute with torch, so take --threads (train reads it from its config).
_COMPUTING = ("demo", "eval", "calibrate", "predict", "select", "export", "analyze")


def _threads(args: argparse.Namespace) -> int | None:
    """The ``--threads`` of a command of :data:`_COMPUTING`, checked as ``train.threads`` is."""
    from ssl_mix.config import TrainConfig

    return TrainConfig(**config_updates(args).get("train", {})).threads


def _config_from_args(args: argparse.Namespace):
    from ssl_mix.config import Config, preset

    updates = config_updates(args)
    if getattr(args, "resume", False) and not getattr(args, "preset", None) and not getattr(args, "config", None):
        from ssl_mix.run import resumed_config

        saved = resumed_config(updates)  # the run's own configuration, when no flag must be repeated
        if saved is not None:
            return saved
    cfg = preset(args.preset) if getattr(args, "preset", None) else Config()
    if getattr(args, "config", None):
        try:
            cfg = Config.from_file(args.config, base=cfg)
        except (TypeError, ValueError) as err:  # about the file's settings, so in the file's terms
            raise UsageError(str(err)) from None
    if "split" in updates.get("data", {}) and updates["data"].get("num_labels") is not None:  # none: no budget
        raise UsageError("--split and --num-labels conflict: a saved split fixes the labeled examples; drop one")
    return _label_budget(cfg.replace(**updates), args, updates)


def _label_budget(cfg, args: argparse.Namespace, updates: dict):
    """A preset's label budget gives way to a label file or a saved split: ``num_labels`` that only the preset
    set (not a flag, not the --config file) becomes None, so the label file's rows (or the split) are the budget,
    and the saved config.json records null rather than a budget that was not used."""
    if not getattr(args, "preset", None) or cfg.data.num_labels is None:
        return cfg
    if cfg.data.labels is None and cfg.data.split is None or "num_labels" in updates.get("data", {}):
        return cfg
    if getattr(args, "config", None):
        from ssl_mix.config.files import read_config_file

        data = read_config_file(args.config)
        if isinstance(data, dict) and isinstance(data.get("data"), dict) and "num_labels" in data["data"]:
            return cfg
    return cfg.replace(data={"num_labels": None})


def _add_train(p: argparse.ArgumentParser) -> None:
    from ssl_mix.config import CONFIG_FORMATS, PRESETS

    p.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                   help="start from a named paper recipe: " + ", ".join(PRESETS) + " (ssl-mix presets describes them)")
    p.add_argument("--config", metavar="FILE",
                   help="a JSON or YAML file of config sections (e.g. method: {k: 3}) applied after the preset")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint (starts anew, with a note, if it has "
                        "none); without --preset or --config, the run's own configuration is read from the "
                        "checkpoint, and other flags than --steps, --progress may only repeat its values")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as a config file (see --format) and exit")
    p.add_argument("--format", choices=CONFIG_FORMATS, default="json", help="format of --print-config (default: json)")
    add_config_flags(p.add_argument_group(
        "configuration", "Each flag sets one config field and overrides the preset and the --config file. The "
        "defaults shown are those without a preset; --print-config shows the resolved values."))


def _run_train(args: argparse.Namespace) -> int:
    from ssl_mix import distributed
    from ssl_mix.experiment import run_experiment
    from ssl_mix.trainer import NonFiniteLossError

    cfg = _config_from_args(args)
    if args.print_config:
        print(cfg.dumps(args.format), end="")
        return 0
    # Under torchrun (several processes) this joins the process group for the run; otherwise it does nothing.
    with distributed.session(cfg.train.device, timeout=cfg.train.dist_timeout):
        try:
            report = run_experiment(cfg, resume=args.resume)
        except (NonFiniteLossError, distributed.DistributedError) as err:
            print(f"ssl-mix train: {flag_terms(str(err))}", file=sys.stderr)
            return 1
        if distributed.is_main():
            from ssl_mix.run import format_report

            print(format_report(report))
    return 0


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1... (default: auto)")


def _add_image_batches(p: argparse.ArgumentParser) -> None:
    """The flags of commands that decode and score many image files (predict, select)."""
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per batch (default: 256)")
    p.add_argument("--num-workers", type=int, metavar="N", dest="workers",
                   help="decoding processes (default: min(4, CPU count)); 0 decodes in this process")
    add_renamed_flag(p, "--workers", "--num-workers", dest="workers", type=int, metavar="N")
    _add_device(p)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar on stderr (default: on)")


def _add_eval(p: argparse.ArgumentParser) -> None:
    from ssl_mix.choices import DATASET_NAMES, MODEL_ROLES

    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run directory written by ssl-mix train (its latest checkpoint) or a checkpoint file")
    p.add_argument("--dataset", choices=DATASET_NAMES,
                   help="dataset to evaluate on (default: the one the run trained on)")
    p.add_argument("--data-root", metavar="DIR", help="where the dataset lives (default: the run's)")
    p.add_argument("--which", choices=[*MODEL_ROLES, "both"], default="both", help="which model (default: both)")
    _add_device(p)
    p.add_argument("--plot", metavar="FILE.png",
                   help="write reliability diagrams (accuracy against confidence) before and after calibration, and "
                        "the confusion matrix to FILE-confusion.png")


def _run_eval(args: argparse.Namespace) -> int:
    from ssl_mix.inference import evaluate_run, format_evaluation

    result = evaluate_run(args.checkpoint, which=args.which, dataset=args.dataset, data_root=args.data_root,
                          device=args.device)
    print(format_evaluation(result))
    if args.plot:
        from pathlib import Path

        from ssl_mix.analysis import plot_confusion_matrix, plot_reliability

        title = f"{result.dataset} test set, step {result.step}"
        print(f"wrote {plot_reliability(result.curves, args.plot, title=title)}")
        plot = Path(args.plot)
        matrices = {name: record["confusion"] for name, record in result.models.items()}
        path = plot_confusion_matrix(matrices, result.classes, plot.with_name(f"{plot.stem}-confusion{plot.suffix}"),
                                     title=title)
        print(f"wrote {path}")
    return 0


def _add_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run directory (its last.pt and best.pt are calibrated) or a checkpoint file")
    _add_device(p)


def _run_calibrate(args: argparse.Namespace) -> int:
    from ssl_mix.calibration import calibrate_run

    for path, record in calibrate_run(args.run, device=args.device).items():
        print(f"{path}: temperature fitted on {record['count']} validation images")
        for name, temperature in record["temperature"].items():
            before, after = record["valid"][name]["before"], record["valid"][name]["after"]
            print(f"  {name:<8} T={temperature:.3f}  valid nll {before['nll']:.4f} -> {after['nll']:.4f}  "
                  f"ece {before['ece']:.2f}% -> {after['ece']:.2f}%  (accuracy {after['accuracy']:.2f}%)")
    return 0


def _add_predict(p: argparse.ArgumentParser) -> None:
    from ssl_mix.choices import MODEL_ROLES

    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT", help="a run directory of ssl-mix train or a checkpoint")
    p.add_argument("inputs", metavar="INPUT", nargs="+",
                   help="image files, folders (searched recursively) or glob patterns ('photos/**/*.jpg')")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output file: .csv or .jsonl (one row per image, in input order)")
    p.add_argument("--top-k", type=int, default=1, help="classes listed per image with their probabilities")
    p.add_argument("--probs", action="store_true", help="also write the full probability vector")
    p.add_argument("--which", choices=MODEL_ROLES, default="teacher", help="which model (default: teacher)")
    p.add_argument("--no-calibration", action="store_true",
                   help="use the raw softmax, ignoring the run's fitted temperature")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable file (default: skip it, list it, and keep going)")
    _add_image_batches(p)


def _run_predict(args: argparse.Namespace) -> int:
    from ssl_mix.inference import load_predictor
    from ssl_mix.predict import predict_files

    predictor = load_predictor(args.run, which=args.which, device=args.device, calibrated=not args.no_calibration)
    result = predict_files(predictor, args.inputs, args.out, top_k=args.top_k, probabilities=args.probs,
                           batch_size=args.batch_size, num_workers=args.workers, strict=args.strict,
                           progress=args.progress)
    print(f"wrote {result['predicted']} predictions to {result['out']} in {result['wall_time_s']:.1f} s "
          f"({result['images_per_s']:.0f} images/s)")
    skipped = result["skipped"]
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s) (rows with an error column in {result['out']}):",
              file=sys.stderr)
        for _, error in skipped[:20]:
            print(f"  {error}", file=sys.stderr)
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more", file=sys.stderr)
    return 0


def _add_select(p: argparse.ArgumentParser) -> None:
    from ssl_mix.choices import MODEL_ROLES, STRATEGIES

    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT", help="a run directory of ssl-mix train or a checkpoint")
    p.add_argument("--budget", type=int, required=True, metavar="N", help="how many images to pick")
    p.add_argument("--strategy", choices=STRATEGIES, required=True,
                   help="how to rank the pool (random is the baseline; see the docs for what each bought)")
    p.add_argument("--balance", action="store_true", help="spread the picks evenly over the predicted classes")
    p.add_argument("--pool", metavar="DIR",
                   help="choose among the images under DIR instead of the run's unlabeled training images")
    p.add_argument("--seed", type=int, default=0, help="seeds random and the order of ties (default: 0)")
    p.add_argument("--out", required=True, metavar="FILE.csv",
                   help="the picks: path,guess,confidence,label with label empty, to fill in for --add-labels")
    p.add_argument("--which", choices=MODEL_ROLES, default="teacher", help="which model scores (default: teacher)")
    _add_image_batches(p)


def _run_select(args: argparse.Namespace) -> int:
    from ssl_mix.active import select_for_labeling, write_selection
    from ssl_mix.run import RunDir

    selection = select_for_labeling(args.run, args.budget, args.strategy, pool=args.pool, balance=args.balance,
                                    seed=args.seed, which=args.which, batch_size=args.batch_size,
                                    num_workers=args.workers, device=args.device, progress=args.progress)
    out = write_selection(selection, args.out)
    histogram = ", ".join(f"{name} {count}" for name, count in selection.histogram().items())
    print(f"wrote {len(selection.paths)} of {selection.pool_size} unlabeled images to {out} ({args.strategy}"
          f"{', balanced' if args.balance else ''}); predicted classes: {histogram}")
    print(f"fill in the label column, then train again with the run's data flags (--data-root, --labels, ...) plus "
          f"--split {RunDir.of_checkpoint(args.run)[0].split} --add-labels {out}")
    if selection.skipped:
        print(f"skipped {len(selection.skipped)} unreadable file(s), e.g. {selection.skipped[0][1]}", file=sys.stderr)
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    from ssl_mix.choices import EXPORT_FORMATS, MODEL_ROLES

    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT", help="a run directory of ssl-mix train or a checkpoint")
    p.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    p.add_argument("--out", required=True, metavar="PATH", help="the model file; a JSON sidecar goes to PATH.json")
    p.add_argument("--which", choices=MODEL_ROLES, default="teacher", help="which model (default: teacher)")
    p.add_argument("--no-calibration", action="store_true", help="do not bake in the run's fitted temperature")


def _run_export(args: argparse.Namespace) -> int:
    from ssl_mix.export import export_model, sidecar_path

    try:
        meta = export_model(args.run, args.out, format=args.format, which=args.which,
                            calibrated=not args.no_calibration)
    except ImportError as err:
        raise UsageError(str(err)) from None
    print(f"wrote {args.out} ({args.format}, {meta['model']} {args.which}, input {meta['input']['dtype']} "
          f"{'x'.join(map(str, meta['input']['shape']))}, temperature {meta['temperature']:.3f}) and "
          f"{sidecar_path(args.out)}")
    return 0


def _add_demo(p: argparse.ArgumentParser) -> None:
    from ssl_mix.demo import DEMO_SEEDS

    p.add_argument("--seeds", type=int, default=DEMO_SEEDS, metavar="N",
                   help=f"number of seeds (runs per method; default: {DEMO_SEEDS})")
    p.add_argument("--steps", type=int, metavar="N", help="override the demo's training steps")
    p.add_argument("--num-labels", type=int, metavar="N",
                   help="override the demo's label budget (default: the demo preset's)")
    p.add_argument("--out", default="runs/demo", metavar="DIR",
                   help="where TensorBoard logs and checkpoints go (default: runs/demo)")
    p.add_argument("--num-workers", type=int, metavar="N",
                   help="processes that train the runs side by side, one torch thread each unless --threads "
                        "(default: the idle CPU cores, at least 1, at most one per run); the table does not "
                        "depend on it")
    _add_device(p)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="show progress bars (default: off)")


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from ssl_mix.config import preset
    from ssl_mix.demo import format_table, run_demo

    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.num_workers is not None and args.num_workers < 1:
        raise UsageError(f"--num-workers must be >= 1, got {args.num_workers}")
    start = time.perf_counter()
    threads = _threads(args)
    base = None if threads is None else preset("demo").replace(train={"threads": threads})
    demo = run_demo(tuple(range(args.seeds)), steps=args.steps, num_labels=args.num_labels, out_dir=args.out,
                    progress=args.progress, device=args.device, base=base,
                    workers=args.num_workers)
    print(format_table(demo))
    print(f"finished in {time.perf_counter() - start:.0f} s; TensorBoard logs: tensorboard --logdir {demo['out_dir']}")
    return 0


def _add_analyze(p: argparse.ArgumentParser) -> None:
    from ssl_mix.choices import DATASET_NAMES

    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run directory written by ssl-mix train (its last.pt is analysed) or a checkpoint file")
    p.add_argument("--linearity", action="store_true",
                   help="per-layer non-linearity (Chaudhry et al. eq. 3); with neither flag, both analyses run")
    p.add_argument("--flattening", action="store_true",
                   help="per-class singular values of the representations at --layer")
    p.add_argument("--layer", type=_layer, metavar="LAYER",
                   help="layer for --flattening: a stage index or 'input' (default: the pooled features, n-2)")
    p.add_argument("--num-pairs", type=int, metavar="N", help="held-out mixes for non-linearity (default: the run's "
                   "--linearity-pairs, so the final value extends the logged curves)")
    p.add_argument("--k", type=int, default=2, metavar="N", help="points per mix (default: 2, pairs)")
    p.add_argument("--alpha", type=float, default=1.0, metavar="FLOAT",
                   help="Dirichlet concentration of the mixing weights (default: 1.0)")
    p.add_argument("--num-images", type=int, default=1000, metavar="N",
                   help="test images used for flattening (default: 1000)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the held-out sample (default: the run's seed)")
    p.add_argument("--dataset", choices=DATASET_NAMES,
                   help="dataset whose test set is used (default: the one the run trained on)")
    p.add_argument("--data-root", metavar="DIR", help="where the dataset lives (default: the run's)")
    p.add_argument("--out", metavar="DIR",
                   help="output directory for analysis.json and the PNG plots (default: RUN_DIR/analysis)")
    _add_device(p)


def _layer(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _run_analyze(args: argparse.Namespace) -> int:
    from ssl_mix.analysis import analyze_run, format_analysis

    both = not (args.linearity or args.flattening)
    result = analyze_run(args.run, linearity=args.linearity or both, flattening=args.flattening or both,
                         layer=args.layer, num_pairs=args.num_pairs, k=args.k, alpha=args.alpha,
                         num_images=args.num_images, seed=args.seed, dataset=args.dataset, data_root=args.data_root,
                         out_dir=args.out, device=args.device)
    print(format_analysis(result))
    return 0


def _run_presets(args: argparse.Namespace) -> int:
    from ssl_mix.config import PRESETS

    width = max(map(len, PRESETS))
    for name, (cfg, description) in ((n, (p.config, p.description)) for n, p in PRESETS.items()):
        m = cfg.method
        print(f"{name:<{width}}  {flag_terms(description)} ({cfg.data.dataset}, {cfg.data.num_labels} labels, "
              f"{cfg.model.name}, {m.name} K={m.k} alpha={m.alpha:g}, {cfg.train.steps:,} steps)")
    return 0


# The config settings a split depends on: the same flags as `ssl-mix train`'s, with the same help.
_SPLIT_FIELDS = (("data", "dataset"), ("data", "data_root"), ("data", "download"), ("data", "labels"),
                 ("data", "classes"), ("data", "check_labels"),
                 ("data", "num_labels"), ("train", "seed"), ("data", "num_valid_per_class"),
                 ("data", "labeled_in_unlabeled"), ("data", "label_column"))


def _add_split(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, _SPLIT_FIELDS, required={("data", "dataset"), ("train", "seed")})
    add_deprecated_flag(p, "--labeled-not-in-unlabeled", "data", "labeled_in_unlabeled", False)
    p.add_argument("--out", required=True, metavar="FILE", help="the JSON file to write")


def _run_split(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssl_mix.config import Config
    from ssl_mix.data import load_targets, make_split, split_summary

    cfg = Config().replace(**config_updates(args))
    d = cfg.data
    if d.num_labels is None and d.labels is None:
        raise UsageError("--num-labels is required (the label budget), unless --labels gives the labeled images")
    targets, classes = load_targets(d.dataset, d.data_root, "train", download=d.download, labels=d.labels,
                                    label_checks=d.label_checks(), label_column=d.label_column)
    split = make_split(targets, d.num_labels, seed=cfg.train.seed, dataset=d.dataset, num_classes=len(classes),
                       num_valid_per_class=d.num_valid_per_class, labeled_in_unlabeled=d.labeled_in_unlabeled)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    split.save(out)
    print(split_summary(split, targets, classes))
    print(f"wrote {out}: {d.dataset}, seed {split.seed}, {len(split.labeled)} labeled, {len(split.valid)} "
          f"validation, {len(split.unlabeled)} unlabeled (labeled examples "
          f"{'kept in' if split.labeled_in_unlabeled else 'removed from'} the unlabeled pool)")
    return 0


# name -> (one-line help, add_arguments(parser), run(args) -> exit status). Order is the order in --help.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("Train ERM and ICT on bundled handwritten digits (no download) and print their accuracies.",
             _add_demo, _run_demo),
    "train": ("Train a classifier with ERM, mixup, manifold mixup or ICT[K].", _add_train, _run_train),
    "eval": ("Evaluate a checkpoint's student and teacher on a test set.", _add_eval, _run_eval),
    "calibrate": ("Fit a run's temperature on its validation split so that confidences match accuracy.",
                  _add_calibrate, _run_calibrate),
    "predict": ("Predict the classes of image files, folders or globs; write CSV or JSON lines.",
                _add_predict, _run_predict),
    "select": ("Pick the unlabeled images most worth labeling next; write them as a CSV to fill in.",
               _add_select, _run_select),
    "export": ("Export a trained model with its preprocessing baked in: ONNX, TorchScript or safetensors.",
               _add_export, _run_export),
    "analyze": ("Measure per-layer non-linearity and flattening of a trained run; write JSON and PNG plots.",
                _add_analyze, _run_analyze),
    "split": ("Draw a class-balanced label-budget split and save it as JSON.", _add_split, _run_split),
    "presets": ("List the named paper recipes of --preset, one line each.", lambda p: None, _run_presets),
}
