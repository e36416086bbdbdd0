"""Throughput of FixMatch's RandAugment: batched on the device against per-image PIL in DataLoader workers.

The batched path is :func:`ssl_mix.rand_augment` on uint8 batches already in memory (one call per batch; draws
from a CPU generator). The per-image path is what the public FixMatch reimplementations do: a Dataset whose
``__getitem__`` turns an image into a PIL image, applies the same RandAugment (two of the 14 ops, each with
probability 1/2 at a level drawn from 1..9, then a 16-pixel Cutout; the PIL calls of the official
``third_party/auto_augment/augmentations.py``) and converts it to a tensor, batched by a DataLoader with 0, 1 or 2
worker processes. ``torchvision.transforms.RandAugment`` (fixed magnitude 9, no Cutout) is timed the same way as
the off-the-shelf per-image reference. Every process runs one torch thread (``OMP_NUM_THREADS=1``).

    OMP_NUM_THREADS=1 python benchmarks/randaugment.py --batches 10 --workers 0 1 2
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from provenance import record_header, write_record

from ssl_mix import RA_OPS, rand_augment
from ssl_mix.data.randaugment import RA_CUTOUT_SIZE, RA_FILL, RA_LEVELS, RA_OP_MAX, ra_values

REPO = Path(__file__).resolve().parents[1]
GREY = (RA_FILL,) * 3


def _pil_op(img: Image.Image, op: str, level: int) -> Image.Image:
    """One official op on a PIL image (augmentations.py 226-430), the sign drawn as there."""
    sign = -1 if random.random() > 0.5 else 1
    value = ra_values(op, torch.tensor([level]), torch.tensor([sign])).item() if op in RA_OP_MAX else None
    if op == "Identity":
        return img
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Rotate":
        return img.rotate(value, fillcolor=GREY)
    if op == "Solarize":
        return ImageOps.solarize(img, int(value))
    if op == "Posterize":
        return ImageOps.posterize(img, int(value))
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return getattr(ImageEnhance, op)(img).enhance(value)
    data = {"ShearX": (1, value, 0, 0, 1, 0), "ShearY": (1, 0, 0, value, 1, 0),
            "TranslateX": (1, 0, value, 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, value)}[op]
    return img.transform(img.size, Image.AFFINE, data, fillcolor=GREY)


def pil_randaugment(img: Image.Image) -> torch.Tensor:
    """FixMatch's RandAugment on one PIL image, as the per-image reimplementations run it; returns uint8 CHW."""
    for op in random.choices(RA_OPS, k=2):  # np.random.choice(RANDOM_POLICY_OPS, 2): with replacement
        if random.random() < 0.5:
            img = _pil_op(img, op, random.randint(*RA_LEVELS))
    x = np.array(img)
    h, w = x.shape[:2]
    cy, cx, half = random.randrange(h), random.randrange(w), RA_CUTOUT_SIZE // 2
    x[max(0, cy - half):min(h, cy + half), max(0, cx - half):min(w, cx + half)] = RA_FILL
    return torch.from_numpy(x).permute(2, 0, 1)


class PILDataset(torch.utils.data.Dataset):
    """uint8 HWC images, each augmented per item by ``transform`` (a PIL image to a uint8 CHW tensor)."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i]))


def _torchvision_randaugment():
    import torchvision.transforms as T

    ra = T.RandAugment(num_ops=2, magnitude=9, fill=list(GREY))
    return lambda img: T.functional.pil_to_tensor(ra(img))


def _seed_worker(worker_id: int) -> None:
    torch.set_num_threads(1)
    random.seed(torch.initial_seed() % 2**32)


def per_image_rate(images: np.ndarray, transform, batch_size: int, batches: int, workers: int) -> float:
    """Images per second through a DataLoader, after its first batch (worker start-up excluded)."""
    loader = torch.utils.data.DataLoader(PILDataset(images, transform), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, worker_init_fn=_seed_worker,
                                         generator=torch.Generator().manual_seed(0), persistent_workers=False)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += len(next(it))
    return n / (time.perf_counter() - start)


def batched_rate(images: torch.Tensor, batch_size: int, batches: int, device: torch.device) -> float:
    """Images per second of :func:`ssl_mix.rand_augment` on uint8 batches already on ``device``."""
    pool = images.to(device)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(pool), generator=g).to(device)

    def batch(i):
        return pool[order[(i * batch_size) % len(pool):][:batch_size]]

    rand_augment(batch(0), generator=g)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    n = 0
    for i in range(batches):
        n += len(rand_augment(batch(i), generator=g))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=448, help="images per batch (FixMatch: mu * B = 7 * 64)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per path")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--device", default="cpu", help="device of the batched path")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/randaugment_cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    header = record_header(__file__, argv, device)
    num = args.batch_size * (args.batches + 1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (num, 3, args.size, args.size), generator=g, dtype=torch.uint8)
    images = torch.nn.functional.avg_pool2d(images.float(), 3, 1, 1).to(torch.uint8)  # photo-like histograms
    hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    random.seed(0)
    start = time.time()
    results = {"batched": {"device": str(device), "images_per_s": batched_rate(images, args.batch_size,
                                                                              args.batches, device)}}
    for workers in args.workers:
        for name, transform in (("pil_fixmatch", pil_randaugment), ("pil_torchvision", _torchvision_randaugment())):
            results[f"{name}_workers{workers}"] = {
                "images_per_s": per_image_rate(hwc, transform, args.batch_size, args.batches, workers)}
    for key, value in results.items():
        if key != "batched":
            value["batched_speedup"] = results["batched"]["images_per_s"] / value["images_per_s"]
    record = {**header, "benchmark": "randaugment", "batch_size": args.batch_size,
              "image_shape": [3, args.size, args.size], "batches": args.batches, "repeats": 1,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "data_note": "seeded random uint8 images smoothed by a 3x3 box filter",
              "note": "one run per path on a shared machine; per-image paths exclude DataLoader start-up",
              "wall_time_s": round(time.time() - start, 2), "results": results}
    for key, value in results.items():
        extra = f"  (batched is {value['batched_speedup']:.1f}x)" if "batched_speedup" in value else ""
        print(f"{key:28s} {value['images_per_s']:10.0f} images/s{extra}")
    write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
