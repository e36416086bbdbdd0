"""The GPU check: everything worth measuring when a CUDA device is available for a few minutes.

Run through ``benchmarks/gpu_check.sh`` (which calls this script). On one CUDA device, in about 8 minutes, it:

1. runs the CUDA-only tests (the tests that skip without a CUDA device);
2. times the WRN-28-2 bf16 ICT[2] step at 100 labeled + 100 unlabeled images against its floor (the model work
   alone; ``benchmarks/throughput.py``), eagerly and under ``torch.compile(mode="reduce-overhead")`` (CUDA graphs);
3. trains the ``ict-cifar10`` preset (WRN-28-2, ZCA, the teacher's own batch-norm statistics) on the CIFAR-10 JPEG
   copy for as many steps as fit in ``--train-seconds`` (240), and projects the time of its full 180,000 steps,
   evaluations included.

Each phase runs in its own process with a time limit, so a failing or hanging phase is recorded and the others still
run. Everything is written as JSON under ``--out`` (default ``benchmarks/results/gpu/``): one file per phase and
``gpu_check.json`` with the summary and provenance. ``--dry-run`` does a few steps of everything on the CPU with a
small model and small batches (the test suite runs it), to check the script itself without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from bench_data import extract_cifar10_jpeg
from provenance import command_line, git_commit, hardware

import ssl_mix
from ssl_mix.atomic import write_atomic

REPO = Path(__file__).resolve().parents[1]
FULL_STEPS = 180_000  # the ict-cifar10 preset's length


# FixMatch's official recipe, from its preset: batch 64, 7 x 64 unlabeled, 2^20 steps.
FIXMATCH_BATCH = ssl_mix.preset("fixmatch-cifar10").data.batch_size
FIXMATCH_STEPS = ssl_mix.preset("fixmatch-cifar10").train.steps


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def cuda_test_files() -> list[str]:
    """The test files holding CUDA-only tests (those skipped unless ``torch.cuda.is_available()``)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                  if "skipif(not torch.cuda.is_available()" in p.read_text())


def extract_cifar10(dest: Path, dry_run: bool) -> Path:
    """Extract the CIFAR-10 JPEG copy (dry run: 10 training images per class and 5 test images per class)."""
    patterns = ["train/*/000[0-9].jpg", "test/*/000[0-4].jpg"] if dry_run else ["train/*", "test/*"]
    return extract_cifar10_jpeg(dest, patterns)


# ------------------------------------------------------------------------------------------------- training
def train_probe(args: argparse.Namespace) -> dict:
    """Train the ict-cifar10 preset for ``args.train_seconds`` and project the full run's time."""
    from ssl_mix import Batch, build_trainer, load_run_data, preset

    device = torch.device(args.device)
    start = time.perf_counter()
    data_root = Path(args.data_root)
    cfg = preset("ict-cifar10").replace(
        data={"dataset": "folder", "data_root": str(data_root)},
        train={"device": args.device, "out_dir": args.run_dir, "progress": False, "seed": 0,
               **({"precision": args.train_precision} if args.train_precision else {})})
    if args.dry_run:
        # 100 training images: a small split, small batches; ZCA off (its 3072x3072 eigendecomposition takes ~20 s on
        # a CPU; tests/test_zca.py covers it).
        cfg = cfg.replace(data={"num_labels": 20, "num_valid_per_class": 2, "batch_size": 8,
                                "unlabeled_batch_size": 8, "zca": False})
    data = load_run_data(cfg)
    loaded = time.perf_counter()
    trainer = build_trainer(cfg, data)  # fits the ZCA transform
    built = time.perf_counter()
    trainer.student.train()
    batches = iter(trainer.loader)

    def run(steps: int) -> None:
        for _ in range(steps):
            trainer.train_step(Batch(*next(batches)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    warmup, chunk = (1, 1) if args.dry_run else (20, 25)
    run(warmup)  # cuDNN autotuning, allocator warm-up
    timed_start, timed_steps = time.perf_counter(), 0
    max_steps = 2 if args.dry_run else math.inf
    while time.perf_counter() - timed_start < args.train_seconds and timed_steps < max_steps:
        run(chunk)  # one host synchronisation per chunk, to read the clock
        timed_steps += chunk
    timed = time.perf_counter() - timed_start
    eval_start = time.perf_counter()
    evaluation = trainer.evaluate()
    eval_s = time.perf_counter() - eval_start
    steps_per_s = timed_steps / timed
    evaluations = FULL_STEPS // cfg.train.eval_every
    return {
        "preset": "ict-cifar10", "config": cfg.to_dict(), "dry_run": args.dry_run,
        "data": "CIFAR-10 JPEG copy" + (" (dry run: 100 training and 50 test images)" if args.dry_run else ""),
        "load_data_s": loaded - start, "build_trainer_s": built - loaded, "zca": cfg.data.zca,
        "warmup_steps": warmup, "timed_steps": timed_steps, "timed_s": timed, "steps_per_s": steps_per_s,
        "images_per_s": steps_per_s * (cfg.data.batch_size + cfg.data.unlabeled_batch_size),
        "evaluation_s": eval_s, "evaluation_sets": sorted(trainer.eval_sets),
        "projected_full_run": {
            "steps": FULL_STEPS, "training_s": FULL_STEPS / steps_per_s, "evaluations": evaluations,
            "evaluation_s": evaluations * eval_s,
            "total_h": (FULL_STEPS / steps_per_s + evaluations * eval_s) / 3600,
            "note": "training steps at the measured rate plus one evaluation (student and teacher, validation and "
                    "test) every eval_every steps; checkpoint writes left out",
        },
        "accuracy_after_probe": {m: {s: v["accuracy"] for s, v in sets.items()} for m, sets in evaluation.items()},
        "steps_trained": trainer.step,
    }


# ----------------------------------------------------------------------------------------------- orchestration
def run_phase(name: str, command: list[str], timeout: float, out: Path, summary: dict) -> int:
    """Run one phase as a subprocess with a time limit; record its status, time and output tail."""
    print(f"[gpu_check] {name}: {' '.join(command)}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    log = out / f"{name}.log"
    try:
        with log.open("w") as f:
            rc = subprocess.run(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    wall = time.perf_counter() - start
    tail = log.read_text()[-2000:]
    summary["phases"][name] = {"rc": rc, "wall_s": round(wall, 1), "timeout_s": timeout, "log": log.name,
                               "output_tail": tail}
    print(f"[gpu_check] {name}: rc={rc} in {wall:.0f} s", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/gpu"), help="folder for the JSON results")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="a few steps of everything on the CPU")
    parser.add_argument("--train-seconds", type=float, default=240.0, help="training time of the preset probe")
    parser.add_argument("--train-precision", choices=["fp32", "bf16"],
                        help="the preset probe's precision (default: the preset's, fp32)")
    parser.add_argument("--skip", default="", help="comma-separated phases to skip: tests,eager,compile,fixmatch,train")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="(internal) the preset probe, run as its own process")
    train.add_argument("--data-root", required=True)
    train.add_argument("--run-dir", required=True)
    train.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    if args.command == "train":
        result = train_probe(args)
        result.update(hardware=hardware(args.device), torch=torch.__version__, commit=git_commit())
        _write_json(Path(args.json), result)
        print(json.dumps({k: result[k] for k in ("steps_per_s", "timed_steps", "projected_full_run")}, indent=1))
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or use --dry-run to check the script on the CPU")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = {s for s in args.skip.split(",") if s}
    python = sys.executable
    summary: dict = {
        "benchmark": "GPU check: CUDA-only tests, WRN-28-2 bf16 ICT step vs floor (eager, reduce-overhead), "
                     "FixMatch step (64 + 7x64, weak + strong views) vs floor with a full-run projection, "
                     "ict-cifar10 preset training probe",
        "command": command_line(__file__, argv),
        "dry_run": args.dry_run, "git_commit": git_commit(), "hardware": hardware(args.device),
        "torch_version": torch.__version__, "ssl_mix_version": ssl_mix.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "phases": {},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # The data is extracted first, in the background, while the GPU phases run.
        data_root = Path(tmp) / "cifar10"
        data_root.mkdir()
        extractor, extract_error = None, []
        if "train" not in skip:
            def extract() -> None:
                try:
                    extract_cifar10(data_root, args.dry_run)
                except (Exception, SystemExit) as err:  # noqa: BLE001 - reported in the summary
                    extract_error.append(f"{type(err).__name__}: {err}")

            extractor = threading.Thread(target=extract)
            extractor.start()
        if "tests" not in skip:
            run_phase("tests", [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda",
                                *cuda_test_files()], 60 if args.dry_run else 180, out, summary)
            summary["phases"]["tests"]["result"] = _pytest_counts(summary["phases"]["tests"]["output_tail"])
        step = (["--models", "cnn-small", "--batch-size", "8", "--unlabeled-batch-size", "8", "--warmup", "1",
                 "--steps", "1", "--rounds", "1", "--num-images", "64", "--num-labels", "16"] if args.dry_run else
                ["--models", "wrn28-2", "--batch-size", "100", "--unlabeled-batch-size", "100", "--warmup", "5",
                 "--steps", "20", "--rounds", "3"])
        common = [python, "benchmarks/throughput.py", "--device", args.device, "--precision", "bf16", "--no-naive"]
        variants = {"eager": ["--methods", "ict2", *step],
                    "compile": ["--methods", "ict2", *step, "--compile-mode", "reduce-overhead"],
                    # FixMatch's official step: 64 labeled + 7 x 64 unlabeled images, each in a weak and a strong
                    # view (RandAugment on the device), one forward pass.
                    "fixmatch": ["--methods", "fixmatch", *step, *([] if args.dry_run else [
                        "--batch-size", str(FIXMATCH_BATCH), "--unlabeled-batch-size", str(7 * FIXMATCH_BATCH)])]}
        if args.dry_run:
            variants["compile"] += ["--compile-backend", "eager"]  # traced, not compiled: seconds, not minutes
        for name, extra in variants.items():
            if name in skip:
                continue
            path = out / f"throughput_{name}.json"
            rc = run_phase(name, [*common, *extra, "--out", str(path)], 120 if args.dry_run else 240, out, summary)
            if rc == 0:
                (result,) = json.loads(path.read_text())["results"]
                summary["phases"][name]["result"] = {
                    "json": path.name, "ours_ms": result["ours"]["median_s"] * 1e3,
                    "floor_ms": result["floor"]["median_s"] * 1e3, "overhead_ratio": result["overhead_ratio"],
                    "images_per_s": result["ours"]["images_per_s"]}
                if name == "fixmatch":  # the official length (train_kimg 2^16 of 64-image batches)
                    summary["phases"][name]["result"]["projected_full_run_h"] = (
                        result["ours"]["median_s"] * FIXMATCH_STEPS / 3600)
        if extractor is not None:
            extractor.join()
            path = out / "train_ict-cifar10.json"
            command = [python, "benchmarks/gpu_check.py", "--device", args.device, "--train-seconds",
                       str(args.train_seconds), *(["--dry-run"] if args.dry_run else []),
                       *(["--train-precision", args.train_precision] if args.train_precision else []),
                       "train", "--data-root", str(data_root), "--run-dir", str(Path(tmp) / "run"), "--json", str(path)]
            if extract_error:
                summary["phases"]["train"] = {"rc": 1, "error": f"extracting the CIFAR-10 JPEG copy failed: "
                                                                f"{extract_error[0]}"}
            elif run_phase("train", command, args.train_seconds + (120 if args.dry_run else 240), out, summary) == 0:
                result = json.loads(path.read_text())
                summary["phases"]["train"]["result"] = {
                    "json": path.name, "steps_per_s": result["steps_per_s"], "timed_steps": result["timed_steps"],
                    "projected_full_run_h": result["projected_full_run"]["total_h"]}
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    _write_json(out / "gpu_check.json", summary)
    failed = [name for name, phase in summary["phases"].items() if phase["rc"] != 0]
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} in {summary['wall_time_s']:.0f} s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all phases passed"), flush=True)
    return 1 if failed else 0


def _pytest_counts(tail: str) -> dict:
    """``{"passed": n, "skipped": n, ...}`` from pytest's last summary line."""
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", tail)}


if __name__ == "__main__":
    raise SystemExit(main())
