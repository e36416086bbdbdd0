"""Throughput of the two dual loaders on this machine: tensor-resident (batched augmentation) vs DataLoader.

Both produce the same thing per step: a labeled batch and an unlabeled batch of CIFAR-shaped images
(3x32x32 uint8), randomly cropped with 4-pixel reflect padding, flipped and normalised. The tensor path keeps
all images in one tensor on the device and augments whole batches; the DataLoader path applies torchvision's
per-image transforms (optionally in worker processes). Reports batches (steps) per second, mean ± std over
seeds, and writes a JSON record with the command, commit, hardware, versions and wall time.

    python benchmarks/loaders.py --steps 50 --repeats 3 --workers 0 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision
from bench_data import batches_per_second, benchmark_images
from provenance import command_line, git_commit, hardware

from ssl_mix.data import (
    TensorDualLoader,
    TorchDualLoader,
    arrays_dataset,
    data_spec,
)

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["random", "cifar10-jpeg"], default="random",
                        help="random uint8 images, or the CIFAR-10 JPEG copy in ../shared/data")
    parser.add_argument("--num-images", type=int, default=50_000, help="unlabeled pool size")
    parser.add_argument("--num-labels", type=int, default=4000, help="labeled set size")
    parser.add_argument("--batch-size", type=int, default=64, help="labeled batch size B_l")
    parser.add_argument("--unlabeled-batch-size", type=int, default=64, help="unlabeled batch size B_u")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="seeds per loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads in the main process (default: torch's own choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/loaders_cpu.json"))
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    data = benchmark_images(args.source, args.num_images)
    spec = data_spec("cifar10")
    labeled, unlabeled = data.subset(range(args.num_labels)), data
    sizes = dict(batch_size=args.batch_size, unlabeled_batch_size=args.unlabeled_batch_size)
    seeds = list(range(args.repeats))
    rates: dict[str, list[float]] = {"tensor": []}
    for seed in seeds:
        fast = TensorDualLoader(labeled, unlabeled, spec, seed=seed, device=args.device, **sizes)
        rates["tensor"].append(batches_per_second(fast, args.steps, args.warmup))
    labeled_ds = arrays_dataset(labeled, spec)
    unlabeled_ds = arrays_dataset(unlabeled, spec, labeled=False)
    for workers in args.workers:
        name = f"dataloader_workers{workers}"
        rates[name] = []
        for seed in seeds:
            slow = TorchDualLoader(labeled_ds, unlabeled_ds, seed=seed, num_workers=workers, device=args.device,
                                   **sizes)
            rates[name].append(batches_per_second(slow, args.steps, args.warmup))
    results = {name: {"batches_per_s": [round(r, 2) for r in values], "mean": round(statistics.mean(values), 2),
                      "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}
               for name, values in rates.items()}
    best_slow = max((k for k in results if k != "tensor"), key=lambda k: results[k]["mean"], default=None)
    record = {
        "benchmark": "dual loader throughput (one step = one labeled + one unlabeled batch)",
        "command": command_line(__file__, argv),
        "git_commit": git_commit(),
        "hardware": hardware(args.device),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "seeds": seeds,
        "images": {"labeled": len(labeled), "unlabeled": len(unlabeled), "shape": list(data.image_shape)},
        "augmentation": {"crop_padding": spec.crop_padding, "padding_mode": spec.padding_mode, "flip": spec.flip},
        "results": results,
        "speedup_tensor_vs_best_dataloader": (round(results["tensor"]["mean"] / results[best_slow]["mean"], 1)
                                              if best_slow else None),
        "wall_time_s": round(time.perf_counter() - wall, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    summary = ", ".join(f"{k} {v['mean']:.1f} ± {v['std']:.1f}" for k, v in results.items())
    print(f"loaders on {record['hardware']['cpu']} ({args.device}, B_l={args.batch_size}, "
          f"B_u={args.unlabeled_batch_size}, {args.source}): batches/s {summary}; tensor path "
          f"{record['speedup_tensor_vs_best_dataloader']}x the best DataLoader; wrote {out}")
    return record


if __name__ == "__main__":
    main()
