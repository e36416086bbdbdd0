"""First and second load of an image folder: decoding every file, then reading the decoded-image cache.

The CIFAR-10 JPEG copy (60,000 images of 32x32, train and test) and the same images upscaled to 96x96 (bicubic,
JPEG quality 90, written to a temporary folder first) are each loaded twice through ``decode_files`` with a fresh
cache directory: the first load decodes every file (PIL, a thread pool) and writes the cache entry, the second
reads it back. Writes a JSON record with the command, commit, hardware, versions and wall time.

    python benchmarks/image_cache.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_data import extract_cifar10_jpeg, upscaled_copy
from provenance import portable_args, record_header, write_record

from ssl_mix.data import ImageFiles, decode_files, folder_files

REPO = Path(__file__).resolve().parents[1]


def _all_images(root: Path) -> ImageFiles:
    train, test = folder_files(root, "train"), folder_files(root, "test")
    return ImageFiles(train.paths + test.paths, torch.cat([train.targets, test.targets]), train.classes, root)


def _loads(files: ImageFiles, cache: Path, threads: int | None) -> dict:
    start = time.perf_counter()
    first = decode_files(files, cache=cache, num_threads=threads)
    first_s = time.perf_counter() - start
    shape = list(first.arrays.images.shape)
    del first
    start = time.perf_counter()
    second = decode_files(files, cache=cache, num_threads=threads)
    second_s = time.perf_counter() - start
    assert list(second.arrays.images.shape) == shape
    size = sum(f.stat().st_size for f in cache.iterdir())
    return {"first_s": first_s, "second_s": second_s, "shape": shape, "cache_bytes": size}


def _summary(values: list[float]) -> dict:
    return {"runs": [round(v, 2) for v in values], "mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="first+second loads per image set (fresh cache each)")
    parser.add_argument("--upscale", type=int, default=96, help="side of the upscaled copy")
    parser.add_argument("--threads", type=int, default=None, help="decoding threads (default: min(8, CPUs))")
    parser.add_argument("--tmp", default=None, help="where to unpack and write the image sets (default: system temp)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/image_cache_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    wall = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        base = Path(tmp)
        cifar = extract_cifar10_jpeg(base / "cifar10")
        start = time.perf_counter()
        upscaled = upscaled_copy(cifar, base / f"cifar10_{args.upscale}", args.upscale)
        write_s = time.perf_counter() - start
        for name, root in (("cifar10-jpeg 32x32", cifar), (f"cifar10-jpeg upscaled {args.upscale}x{args.upscale}",
                                                             upscaled)):
            files = _all_images(root)
            runs = []
            for repeat in range(args.repeats):
                runs.append(_loads(files, base / f"cache-{len(results)}-{repeat}", args.threads))
                print(f"{name}: first load {runs[-1]['first_s']:.1f} s, second load {runs[-1]['second_s']:.2f} s",
                      flush=True)
            results[name] = {"images": len(files), "decoded_shape": runs[0]["shape"],
                             "file_bytes": sum(os.path.getsize(p) for p in files.paths),
                             "cache_bytes": runs[0]["cache_bytes"],
                             "first_load_s": _summary([r["first_s"] for r in runs]),
                             "second_load_s": _summary([r["second_s"] for r in runs])}
            results[name]["speedup"] = round(results[name]["first_load_s"]["mean"]
                                             / results[name]["second_load_s"]["mean"], 1)
    record = {
        "benchmark": "decoded-image cache: first load (decode + write the cache) and second load (read the cache)",
        **record_header(__file__, argv),
        "config": portable_args({k: v for k, v in vars(args).items() if k != "out"}),
        "seeds": "none (no randomness)",
        "upscaled_copy_write_s": round(write_s, 1),
        "results": results,
        "wall_time_s": round(time.perf_counter() - wall, 1),
    }
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
