"""The ``ssl-mix`` command line: one subcommand per job, each a thin layer over the public API.

Every subcommand maps its flags onto the same typed objects that the Python API uses, so the CLI can do
nothing the API cannot. User errors (bad flags, missing files, invalid values) exit with status 2 and a
one-line message instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ssl_mix import __version__


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
        return run(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError) as err:
        # Library code raises these for bad user input, with a message that says what to do.
        print(f"ssl-mix {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssl-mix {args.command}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------------------------
# Subcommands. Each one: an `_add_<name>` that declares its flags and a `_run_<name>` that calls the API.
# ---------------------------------------------------------------------------------------------------------


def _config_flags() -> list[tuple[str, str, str, Any]]:
    """(flag, section, field, type hint) for every config field."""
    import typing

    from ssl_mix.config import config_flags, section_type

    return [(flag, section, name, typing.get_type_hints(section_type(section))[name])
            for flag, (section, name) in config_flags().items()]


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    import typing

    group = parser.add_argument_group("configuration (each flag overrides the preset and --config file)")
    for flag, section, name, hint in _config_flags():
        kwargs: dict[str, Any] = {"dest": f"cfg__{section}__{name}", "default": argparse.SUPPRESS,
                                  "help": f"{section}.{name}"}
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        literal = args if origin is typing.Literal else next(
            (typing.get_args(a) for a in args if typing.get_origin(a) is typing.Literal), None)
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif literal is not None:
            kwargs["choices"] = list(literal)
        elif hint is int:
            kwargs["type"] = int
        elif hint is float or (type(None) in args and float in args):
            kwargs["type"] = _optional(float)
        elif origin is tuple:
            kwargs["type"] = lambda s: tuple(v.strip() for v in s.split(",") if v.strip())
            kwargs["metavar"] = "A,B,..."
        group.add_argument(flag, **kwargs)


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _config_from_args(args: argparse.Namespace):
    from ssl_mix.config import Config, preset

    cfg = preset(args.preset) if getattr(args, "preset", None) else Config()
    if getattr(args, "config", None):
        cfg = Config.from_file(args.config, base=cfg)
    updates: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg__"):
            _, section, name = key.split("__")
            updates.setdefault(section, {})[name] = value
    if "split" in updates.get("data", {}) and "num_labels" in updates.get("data", {}):
        raise UsageError("--split and --num-labels conflict: a saved split fixes the labeled examples; drop one")
    return cfg.replace(**updates)


def _add_train(p: argparse.ArgumentParser) -> None:
    from ssl_mix.config import PRESETS

    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named paper recipe")
    p.add_argument("--config", metavar="FILE", help="JSON file of config sections applied after the preset")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    _add_config_flags(p)


def _run_train(args: argparse.Namespace) -> int:
    import json

    from ssl_mix import distributed
    from ssl_mix.experiment import run_experiment
    from ssl_mix.trainer import NonFiniteLossError

    cfg = _config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        return 0
    # Under torchrun (several processes) this joins the process group for the run; otherwise it does nothing.
    with distributed.session(cfg.train.device, timeout=cfg.train.dist_timeout):
        try:
            report = run_experiment(cfg, resume=args.resume)
        except (NonFiniteLossError, distributed.DistributedError) as err:
            print(f"ssl-mix train: {err}", file=sys.stderr)
            return 1
        if distributed.is_main():
            print(_format_report(report))
    return 0


def _format_report(report: dict[str, Any]) -> str:
    lines = [f"trained {report['steps']} steps in {report['wall_time_s']:.1f} s; run directory: {report['out_dir']}"]
    for model_name, sets in report["final"].items():
        for set_name, m in sets.items():
            lines.append(f"  {model_name:<8} {set_name:<6} accuracy {m['accuracy']:6.2f}%  nll {m['nll']:.4f}  "
                         f"ece {m['ece']:.2f}%")
    best = report.get("best")
    if best:
        test = f", test accuracy {best['test']['accuracy']:.2f}%" if best.get("test") else ""
        lines.append(f"  selected by validation: {best['model']} at step {best['step']} (valid accuracy "
                     f"{best['valid_accuracy']:.2f}%{test}); saved as best.pt")
    else:
        lines.append(f"  model selection: {report['selection']}")
    return "\n".join(lines)


def _add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint written by ssl-mix train (last.pt or best.pt)")
    p.add_argument("--dataset", choices=["cifar10", "cifar100", "svhn", "folder", "digits"],
                   help="dataset to evaluate on (default: the one the run trained on)")
    p.add_argument("--data-root", help="where the dataset lives (default: the run's)")
    p.add_argument("--which", choices=["student", "teacher", "both"], default="both")
    p.add_argument("--device", default="auto")


def _run_eval(args: argparse.Namespace) -> int:
    from ssl_mix.data import eval_batches
    from ssl_mix.experiment import load_trained
    from ssl_mix.trainer import evaluate

    run = load_trained(args.checkpoint, dataset=args.dataset, data_root=args.data_root, device=args.device)
    which = ["student", "teacher"] if args.which == "both" else [args.which]
    for name in which:
        model = run.models[name]
        device = next(model.parameters()).device
        metrics = evaluate(model, eval_batches(run.test, run.spec, 500, device, preprocess=run.preprocess),
                           device=device)
        print(f"{name:<8} {run.dataset} test accuracy {metrics['accuracy']:.2f}%  nll {metrics['nll']:.4f}  "
              f"ece {metrics['ece']:.2f}%  ({metrics['count']} images, step {run.step})")
    return 0


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (runs per method)")
    p.add_argument("--steps", type=int, help="override the demo's training steps")
    p.add_argument("--num-labels", type=int, help="override the demo's label budget (default: the demo preset's)")
    p.add_argument("--out", default="runs/demo", help="where TensorBoard logs and checkpoints go")
    p.add_argument("--device", default="auto")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from ssl_mix.demo import format_table, run_demo

    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    start = time.perf_counter()
    demo = run_demo(tuple(range(args.seeds)), steps=args.steps, num_labels=args.num_labels, out_dir=args.out,
                    progress=args.progress, device=args.device)
    print(format_table(demo))
    print(f"finished in {time.perf_counter() - start:.0f} s; TensorBoard logs: tensorboard --logdir {demo['out_dir']}")
    return 0


def _add_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run directory written by ssl-mix train (its last.pt is analysed) or a checkpoint file")
    p.add_argument("--linearity", action="store_true",
                   help="per-layer non-linearity (Chaudhry et al. eq. 3); with neither flag, both analyses run")
    p.add_argument("--flattening", action="store_true",
                   help="per-class singular values of the representations at --layer")
    p.add_argument("--layer", default=None,
                   help="layer for --flattening: a stage index or 'input' (default: the pooled features, n-2)")
    p.add_argument("--num-pairs", type=int, help="held-out mixes for non-linearity (default: the run's "
                   "--linearity-pairs, so the final value extends the logged curves)")
    p.add_argument("--k", type=int, default=2, help="points per mix (default 2: pairs)")
    p.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration of the mixing weights")
    p.add_argument("--num-images", type=int, default=1000, help="test images used for flattening")
    p.add_argument("--seed", type=int, help="seed of the held-out sample (default: the run's seed)")
    p.add_argument("--dataset", choices=["cifar10", "cifar100", "svhn", "folder", "digits"],
                   help="dataset whose test set is used (default: the one the run trained on)")
    p.add_argument("--data-root", help="where the dataset lives (default: the run's)")
    p.add_argument("--out", help="output directory for analysis.json and the PNG plots (default: RUN_DIR/analysis)")
    p.add_argument("--device", default="auto")


def _run_analyze(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from ssl_mix.analysis import (
        flattening,
        flattening_summary,
        linearity_probe,
        plot_linearity_comparison,
        plot_linearity_curves,
        plot_spectra,
        read_linearity_history,
    )
    from ssl_mix.data import normalize
    from ssl_mix.experiment import load_trained
    from ssl_mix.models import layer_names

    target = Path(args.run)
    if target.is_dir():
        run_dir, checkpoint = target, target / "last.pt"
        if not checkpoint.is_file():
            raise UsageError(f"{str(target)!r} holds no last.pt; pass a run directory of ssl-mix train or a checkpoint")
    else:
        run_dir, checkpoint = target.parent, target
    run = load_trained(checkpoint, dataset=args.dataset, data_root=args.data_root, device=args.device)
    cfg, models, test, spec, dataset, step = run.config, run.models, run.test, run.spec, run.dataset, run.step
    device = next(models["teacher"].parameters()).device
    do_linearity = args.linearity or not args.flattening
    do_flattening = args.flattening or not args.linearity
    num_pairs = args.num_pairs if args.num_pairs is not None else cfg.train.linearity_pairs
    seed = args.seed if args.seed is not None else cfg.train.seed
    if num_pairs < 1 or args.num_images < 1:
        raise UsageError(f"--num-pairs and --num-images must be >= 1, got {num_pairs} and {args.num_images}")

    names = layer_names(models["teacher"])
    if args.layer in (None, "input"):
        layer = args.layer or max(len(names) - 2, 0)
    elif args.layer.isdigit() and int(args.layer) < len(names):
        layer = int(args.layer)
    else:
        listing = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
        raise UsageError(f"--layer must be 'input' or one of {listing}; got {args.layer!r}")

    out = Path(args.out) if args.out else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "step": step, "dataset": dataset,
                              "model": cfg.model.name, "method": cfg.method.name}
    written: list[Path] = []
    lines = [f"{checkpoint} (step {step}, {cfg.method.name}, {cfg.model.name}, {dataset} test set)"]
    if do_linearity:
        probe = linearity_probe(test, spec, num_pairs=num_pairs, seed=seed, device=device, k=args.k,
                                alpha=args.alpha, preprocess=run.preprocess)
        final = {name: probe(model) for name, model in models.items()}
        log_dir = run_dir / "tensorboard"
        history = read_linearity_history(log_dir) if log_dir.is_dir() else {}
        result["linearity"] = {
            "settings": {"num_pairs": num_pairs, "seed": seed, "k": args.k, "alpha": args.alpha,
                         "normalization": "shared", "held_out": "test", "reduction": "mean"},
            "final": final,
            "history": {key: [[at, value] for at, value in points] for key, points in history.items()},
        }
        written.append(plot_linearity_comparison(
            final, out / "linearity_final.png",
            title=f"Per-layer non-linearity at step {step} ({cfg.method.name})"))
        if history:
            written.append(plot_linearity_curves(
                history, out / "linearity_curves.png",
                title=f"Per-layer non-linearity of the teacher during training ({cfg.method.name})"))
        lines.append(f"non-linearity, mean over {num_pairs} test mixes of k={args.k} (alpha {args.alpha}):")
        lines.append(f"  {'layer':<16} {'teacher':>9} {'student':>9}")
        for key in final["teacher"]:
            lines.append(f"  {key:<16} {final['teacher'][key]:9.4f} {final['student'][key]:9.4f}")
    if do_flattening:
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:args.num_images]
        images = normalize(test.images[order].to(device), spec.mean, spec.std)
        images = images if run.preprocess is None else run.preprocess(images)
        labels = test.targets[order]
        layer_label = "input" if layer == "input" else f"{layer} ({names[layer]})"
        result["flattening"] = {"layer": layer, "layer_name": "input" if layer == "input" else names[layer],
                                "num_images": len(order)}
        for name, model in models.items():
            spectra = flattening(model, images, labels, layer)
            summary = flattening_summary(spectra)
            result["flattening"][name] = summary
            written.append(plot_spectra(spectra, out / f"spectra_{name}.png", class_names=test.classes,
                                        title=f"Class spectra of the {name} at layer {layer_label}"))
            lines.append(f"flattening of the {name} at layer {layer_label}: {summary['mean_num_significant']:.1f} "
                         f"significant directions per class (singular values > {summary['threshold']} of the "
                         f"largest; {len(order)} test images)")
    json_path = out / "analysis.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    lines.append(f"wrote {json_path}" + "".join(f", {p.name}" for p in written))
    print("\n".join(lines))
    return 0


def _add_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=["cifar10", "cifar100", "svhn", "folder", "digits"],
                   help="the dataset whose training set is split (folder: DATA_ROOT/train/<class>/*)")
    p.add_argument("--data-root", help="where the dataset lives (not needed for digits)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR/SVHN into --data-root")
    p.add_argument("--num-labels", type=int, required=True,
                   help="label budget N: labeled examples in total, N / num_classes per class")
    p.add_argument("--seed", type=int, required=True, help="seed of the draw (same seed, same split, any machine)")
    p.add_argument("--num-valid-per-class", type=int, default=0,
                   help="labeled examples per class held out for validation (default 0)")
    p.add_argument("--labeled-not-in-unlabeled", action="store_true",
                   help="remove the labeled examples from the unlabeled pool (MixMatch); by default they stay in "
                        "it (FixMatch, USB)")
    p.add_argument("--out", required=True, help="the JSON file to write")


def _run_split(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssl_mix.data import load_targets, make_split, split_summary

    targets, classes = load_targets(args.dataset, args.data_root, "train", download=args.download)
    split = make_split(targets, args.num_labels, seed=args.seed, dataset=args.dataset, num_classes=len(classes),
                       num_valid_per_class=args.num_valid_per_class,
                       labeled_in_unlabeled=not args.labeled_not_in_unlabeled)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    split.save(out)
    print(split_summary(split, targets, classes))
    print(f"wrote {out}: {args.dataset}, seed {split.seed}, {len(split.labeled)} labeled, {len(split.valid)} "
          f"validation, {len(split.unlabeled)} unlabeled (labeled examples "
          f"{'kept in' if split.labeled_in_unlabeled else 'removed from'} the unlabeled pool)")
    return 0


# name -> (one-line help, add_arguments(parser), run(args) -> exit status). Order is the order in --help.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("Train ERM and ICT on bundled handwritten digits (no download) and print their accuracies.",
             _add_demo, _run_demo),
    "train": ("Train a classifier with ERM, mixup, manifold mixup or ICT[K].", _add_train, _run_train),
    "eval": ("Evaluate a checkpoint's student and teacher on a test set.", _add_eval, _run_eval),
    "analyze": ("Measure per-layer non-linearity and flattening of a trained run; write JSON and PNG plots.",
                _add_analyze, _run_analyze),
    "split": ("Draw a class-balanced label-budget split and save it as JSON.", _add_split, _run_split),
}
