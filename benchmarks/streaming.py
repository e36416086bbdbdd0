"""Streaming an image folder from its files vs holding it decoded in memory: set-up time and batches per second.

For the CIFAR-10 JPEG training images (32x32; or the train/ images of another folder, ``--data-root``) and the
same images upscaled (96x96 by default, bicubic, JPEG quality 90, written to a temporary folder first), a pool of
``--num-images`` files is trained on two ways:

* **tensor**: ``decode_files`` decodes the pool into one uint8 tensor (no cache, so the time is the decode), and
  ``TensorDualLoader`` crops, flips and normalises whole batches;
* **stream**: ``scan_files`` checks every file and computes the channel statistics (no cache), and
  ``TorchDualLoader`` over ``ImageFileDataset`` decodes each image on the fly, with 0, 1, 2... worker processes,
  augmented two ways: **batched** (what training does: the workers decode uint8 images, crop, flip and
  normalisation run on whole batches, ``spec=``) and **per image** (torchvision transforms in the workers,
  ``transform=train_transform(...)``, the path before batching).

One step is a labeled and an unlabeled batch. Reports set-up seconds and batches/s (mean ± std over seeds) and the
memory the decoded pool takes, and writes a JSON record with the command, commit, hardware, versions and wall time.

    python benchmarks/streaming.py --num-images 10000 --steps 40 --repeats 2 --workers 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_data import batches_per_second, extract_cifar10_jpeg, upscaled_copy
from provenance import portable_args, record_header, write_record

from ssl_mix.data import (
    ImageFileDataset,
    ImageFiles,
    TensorDualLoader,
    TorchDualLoader,
    channel_stats,
    decode_files,
    folder_files,
    scan_files,
    spec_from_stats,
    train_transform,
)

REPO = Path(__file__).resolve().parents[1]


def _summary(values: list[float], digits: int = 2) -> dict:
    return {"runs": [round(v, digits) for v in values], "mean": round(statistics.mean(values), digits),
            "std": round(statistics.stdev(values), digits) if len(values) > 1 else 0.0}


def _measure(files: ImageFiles, args: argparse.Namespace) -> dict:
    labeled_index = list(range(0, args.num_images, args.num_images // args.num_labels))[:args.num_labels]
    sizes = {"batch_size": args.batch_size, "unlabeled_batch_size": args.unlabeled_batch_size}
    out: dict = {"images": len(files), "labeled": len(labeled_index)}
    setup, rates = [], []
    for seed in range(args.repeats):
        start = time.perf_counter()
        pool = decode_files(files, cache=False).arrays
        spec = spec_from_stats("folder", 10, *channel_stats(pool.images), pool.images.shape[2])
        setup.append(time.perf_counter() - start)
        loader = TensorDualLoader(pool.subset(labeled_index), pool, spec, seed=seed, **sizes)
        rates.append(batches_per_second(loader, args.steps, args.warmup))
    out["decoded_pool_bytes"] = pool.images.numel()
    out["image_shape"] = list(pool.image_shape)
    out["tensor"] = {"setup_s": _summary(setup), "batches_per_s": _summary(rates)}
    del pool
    for mode in ("batched", "per_image"):
        for workers in args.workers:
            setup, rates = [], []
            for seed in range(args.repeats):
                start = time.perf_counter()
                scan = scan_files(files, cache=False)
                setup.append(time.perf_counter() - start)
                spec = spec_from_stats("folder", 10, scan.mean, scan.std, scan.image_shape[1])
                augment = ({"spec": spec} if mode == "batched" else
                           {"transform": train_transform(spec, scan.image_shape[1:])})
                loader = TorchDualLoader(ImageFileDataset(files.subset(labeled_index), scan.image_shape),
                                         ImageFileDataset(files, scan.image_shape, labeled=False), seed=seed,
                                         num_workers=workers, **augment, **sizes)
                rates.append(batches_per_second(loader, args.steps, args.warmup))
            out[f"stream_{mode}_workers{workers}"] = {"setup_s": _summary(setup), "batches_per_s": _summary(rates)}
            print(f"  {out['image_shape']} stream ({mode}), {workers} workers: {statistics.mean(rates):.1f} "
                  "batches/s", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=10_000, help="unlabeled pool size (files)")
    parser.add_argument("--num-labels", type=int, default=1000, help="labeled set size")
    parser.add_argument("--batch-size", type=int, default=64, help="labeled batch size B_l")
    parser.add_argument("--unlabeled-batch-size", type=int, default=64, help="unlabeled batch size B_u")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="seeds per loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--upscale", type=int, default=96, help="side of the upscaled copy")
    parser.add_argument("--data-root", default=None,
                        help="an image folder with train/<class>/* (default: unpack the CIFAR-10 JPEG copy)")
    parser.add_argument("--tmp", default=None, help="where to unpack and write the image sets (default: system temp)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/streaming_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    wall = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        base = Path(tmp)
        cifar = (Path(args.data_root) if args.data_root is not None else
                 extract_cifar10_jpeg(base / "cifar10", ("train/*",)))
        train = folder_files(cifar, "train")
        pool = train.subset(range(0, len(train), len(train) // args.num_images)[:args.num_images])  # every class
        upscaled = upscaled_copy(cifar, base / f"cifar10_{args.upscale}", args.upscale, files=pool.paths)
        for files in (pool, folder_files(upscaled, "train")):
            result = _measure(files, args)
            name = "x".join(str(side) for side in result["image_shape"][1:])  # 32x32 for CIFAR-10
            results[name] = result
            print(f"{name}: {json.dumps(result)}", flush=True)
    record = {
        "benchmark": "image folder: decoded in memory (tensor loader) vs streamed from the files (DataLoader workers)",
        **record_header(__file__, argv),
        "config": portable_args({k: v for k, v in vars(args).items() if k != "out"}),
        "seeds": list(range(args.repeats)),
        "results": results,
        "wall_time_s": round(time.perf_counter() - wall, 1),
    }
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
