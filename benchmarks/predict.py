"""Prediction speed and memory: ``ssl_mix.predict_files`` against a plain torchvision loop, and peak memory as the
number of images grows.

``speed``: images/s on the CPU over an image folder (the CIFAR-10 JPEG test split: 10,000 files) for each model,
ours (decode in DataLoader workers, the model with normalisation and temperature baked in, rows written to a CSV
file) against the loop people write by hand (``torchvision.datasets.ImageFolder`` + ``DataLoader`` + model +
softmax, output kept in memory), with the same weights, batch size, workers and threads, measured alternately in
the same process (median of ``--repeats``).

``memory``: peak resident memory of ``predict_files`` on the first N images of a folder, each N in a fresh process
(its own peak plus its decoding workers' peak): bounded by the batch, it should not grow with N.

Examples:
    python benchmarks/label_budget.py extract --archive ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz --to data/c10
    nice -n 5 python benchmarks/predict.py speed --data-root data/c10 --out benchmarks/results/predict_cpu.json
    nice -n 5 python benchmarks/predict.py memory --folder data/c10/train --counts 5000,50000 \
        --out benchmarks/results/predict_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import command_line, git_commit, hardware, portable_path

import ssl_mix
from ssl_mix import InferenceModel, Predictor, create_model, data_spec, find_images, predict_files
from ssl_mix.atomic import write_atomic


def predictor_for(model_name: str, seed: int = 0) -> Predictor:
    """A CIFAR-10 predictor with seeded random weights (speed does not depend on what the weights learned)."""
    torch.manual_seed(seed)
    spec = data_spec("cifar10")
    network = create_model(model_name, 10, in_channels=3).eval()
    return Predictor(InferenceModel(network, spec.mean, spec.std), [str(c) for c in range(10)], image_size=(32, 32),
                     channels=3)


def plain_loop(predictor: Predictor, folder: Path, indices: list[int], *, batch_size: int, workers: int) -> float:
    """The hand-written baseline: ImageFolder + DataLoader + normalise + model + softmax. Returns seconds."""
    from torchvision import datasets, transforms

    spec = data_spec("cifar10")
    dataset = torch.utils.data.Subset(datasets.ImageFolder(str(folder), transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])), indices)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    network = predictor.model.model
    start = time.perf_counter()
    outputs = []
    with torch.inference_mode():
        for x, _ in loader:
            outputs.append(network(x).softmax(dim=1))
    torch.cat(outputs).argmax(dim=1)
    return time.perf_counter() - start


def cmd_speed(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    folder = Path(args.data_root) / "test"
    all_files = find_images([folder])  # sorted as ImageFolder sorts: class folder, then file name
    indices = list(range(0, len(all_files), args.stride))
    files = [all_files[i] for i in indices]
    num_images = len(files)
    results = {}
    for model_name in args.models:
        predictor = predictor_for(model_name)
        ours, plain = [], []
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.csv"
            for repeat in range(args.repeats):
                # Alternate which goes first, so that warm-up and drifting machine load fall on both alike.
                for which in (("plain", "ours") if repeat % 2 == 0 else ("ours", "plain")):
                    if which == "plain":
                        plain.append(plain_loop(predictor, folder, indices, batch_size=args.batch_size,
                                                workers=args.workers))
                    else:
                        ours.append(predict_files(predictor, files, out, batch_size=args.batch_size,
                                                  num_workers=args.workers, progress=False)["wall_time_s"])
        results[model_name] = {
            "ours_images_per_s": num_images / statistics.median(ours),
            "plain_images_per_s": num_images / statistics.median(plain),
            "ours_s": ours, "plain_s": plain,
        }
        r = results[model_name]
        print(f"{model_name:<10} ours {r['ours_images_per_s']:8.0f} images/s   plain ImageFolder loop "
              f"{r['plain_images_per_s']:8.0f} images/s   ratio {r['ours_images_per_s'] / r['plain_images_per_s']:.2f}",
              flush=True)
    _write(args, {"benchmark": "predict speed", "folder": portable_path(folder, "folder"), "num_images": num_images,
                  "stride": args.stride,
                  "batch_size": args.batch_size, "workers": args.workers, "repeats": args.repeats,
                  "results": results})
    return 0


def cmd_memory(args: argparse.Namespace) -> int:
    results = {}
    for count in args.counts:
        command = [sys.executable, __file__, "_measure", "--folder", args.folder, "--count", str(count),
                   "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--model", args.model,
                   "--threads", str(args.threads)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[count] = json.loads(out.strip().splitlines()[-1])
        r = results[count]
        print(f"{count:>6} images: peak RSS {r['peak_rss_mib']:.0f} MiB (main process), workers' peak "
              f"{r['workers_peak_rss_mib']:.0f} MiB, {r['images_per_s']:.0f} images/s", flush=True)
    _write(args, {"benchmark": "predict memory", "folder": portable_path(args.folder, "folder"),
                  "batch_size": args.batch_size, "workers": args.workers, "model": args.model, "results": results})
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    files = find_images([args.folder])[:args.count]
    with tempfile.TemporaryDirectory() as tmp:
        result = predict_files(predictor_for(args.model), files, Path(tmp) / "out.csv", batch_size=args.batch_size,
                               num_workers=args.workers, progress=False)
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest of the waited-for worker processes.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"count": len(files), "peak_rss_mib": own, "workers_peak_rss_mib": children,
                      "images_per_s": result["images_per_s"], "wall_time_s": result["wall_time_s"]}))
    return 0


def _write(args: argparse.Namespace, body: dict) -> None:
    record = {**body, "command": command_line(__file__), "commit": git_commit(),
              "hardware": hardware("cpu"), "torch": torch.__version__, "ssl_mix": ssl_mix.__version__,
              "threads": args.threads, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, with subcommands ``speed`` and ``memory``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="images/s, ours against a plain torchvision loop")
    speed.add_argument("--data-root", required=True, help="an image folder with test/<class>/*")
    speed.add_argument("--models", type=lambda t: [m for m in t.split(",") if m], default=["wrn28-2", "cnn-small"])
    speed.add_argument("--repeats", type=int, default=3)
    speed.add_argument("--stride", type=int, default=1, help="use every N-th image of the folder (1: all)")
    speed.add_argument("--out", default="benchmarks/results/predict_cpu.json")
    memory = sub.add_parser("memory", help="peak memory against the number of images")
    memory.add_argument("--folder", required=True)
    memory.add_argument("--counts", type=lambda t: [int(v) for v in t.split(",") if v], default=[5000, 50000])
    memory.add_argument("--model", default="cnn-small")
    memory.add_argument("--out", default="benchmarks/results/predict_memory.json")
    measure = sub.add_parser("_measure", help=argparse.SUPPRESS)
    measure.add_argument("--folder", required=True)
    measure.add_argument("--count", type=int, required=True)
    measure.add_argument("--model", default="cnn-small")
    for p in (speed, memory, measure):
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the model")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"speed": cmd_speed, "memory": cmd_memory, "_measure": cmd_measure}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
