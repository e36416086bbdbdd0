"""Image sets shared by the speed benchmarks: random CIFAR-shaped images, or the CIFAR-10 JPEG copy."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import time
from fnmatch import fnmatch
from itertools import islice
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
        extract_cifar10_jpeg(Path(tmp), ("train/*",))
        return load_arrays("folder", tmp, "train", cache=False).subset(range(min(num_images, 50_000)))


def extract_cifar10_jpeg(dest: Path, patterns: tuple[str, ...] | list[str] = ("train/*", "test/*")) -> Path:
    """Extract the members of the CIFAR-10 JPEG copy matching shell ``patterns`` (``"train/*"``, the default: all)
    into ``dest`` (ImageFolder layout); returns ``dest``."""
    if not CIFAR10_JPEG.is_file():
        raise FileNotFoundError(f"the CIFAR-10 JPEG copy is not at {CIFAR10_JPEG}")
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("tar"):
        subprocess.run(["tar", "-xJf", str(CIFAR10_JPEG), "-C", str(dest), "--wildcards", *patterns], check=True)
    else:
        with tarfile.open(CIFAR10_JPEG, "r|xz") as tf:
            for member in tf:
                if member.isfile() and any(fnmatch(member.name, p) for p in patterns):
                    tf.extract(member, dest, filter="data")
    return dest


def upscaled_copy(source: Path, dest: Path, size: int, *, quality: int = 90, threads: int = 2,
                  files: list[Path] | None = None) -> Path:
    """Every JPEG under ``source`` (or just ``files``) resized (bicubic) to ``size`` x ``size`` and saved under
    ``dest`` at the same relative path, as JPEG of the given quality: the same images as a larger-image folder."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    files = sorted(source.rglob("*.jpg")) if files is None else files

    def one(path: Path) -> None:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(target, quality=quality)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, files, chunksize=256))
    return dest


def batches_per_second(loader, steps: int, warmup: int) -> float:
    """Steps per second of a dual loader over ``steps`` timed steps, after ``warmup`` untimed ones (worker start-up,
    first-epoch permutations)."""
    batches = iter(loader)
    for _ in islice(batches, warmup):
        pass
    start = time.perf_counter()
    for _ in islice(batches, steps):
        pass
    return steps / (time.perf_counter() - start)
