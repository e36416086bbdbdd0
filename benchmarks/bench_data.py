"""Image sets shared by the speed benchmarks: random CIFAR-shaped images, or the CIFAR-10 JPEG copy."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from ssl_mix import ImageArrays, load_arrays

REPO = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = REPO.parent / "shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz"


def benchmark_images(source: str, num_images: int) -> ImageArrays:
    """``num_images`` uint8 3x32x32 images: ``random`` (seeded) or ``cifar10-jpeg`` (the training JPEGs)."""
    if source == "random":
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (num_images, 3, 32, 32), generator=g, dtype=torch.uint8)
        return ImageArrays(images, torch.arange(num_images) % 10, [str(c) for c in range(10)])
    if not CIFAR10_JPEG.is_file():
        raise SystemExit(f"--source cifar10-jpeg needs {CIFAR10_JPEG}")
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("tar"):
            subprocess.run(["tar", "-xJf", str(CIFAR10_JPEG), "-C", tmp, "train"], check=True)
        else:
            import tarfile

            with tarfile.open(CIFAR10_JPEG) as tf:
                tf.extractall(tmp, members=[m for m in tf if m.name.startswith("train/")], filter="data")
        return load_arrays("folder", tmp, "train").subset(range(min(num_images, 50_000)))
