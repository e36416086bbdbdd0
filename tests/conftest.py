"""Shared test set-up.

The benchmark scripts import their siblings (``benchmarks/provenance.py``...) the way they do when run as
``python benchmarks/NAME.py`` (the script's folder is then on ``sys.path``). The folder is put on the path here
too, so the tests import the scripts by name (``import label_budget``) and the scripts find their siblings.
"""

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

# The tests run tiny models, where a second intra-op thread buys little; on a 2-core machine that is busy with
# anything else, every parallel op then waits for a descheduled thread and a test can slow down tenfold. One thread
# keeps the suite's run time predictable (and its floating-point reduction order fixed).
import torch  # noqa: E402

torch.set_num_threads(1)

import os  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402
from bench_data import CIFAR10_JPEG, extract_cifar10_jpeg  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_image_cache(tmp_path_factory):
    """Folder loads cache decoded images under $XDG_CACHE_HOME; the tests keep theirs out of the user's cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def _extract_cifar10_jpeg(dest: Path, *patterns: str) -> Path:
    """The CIFAR-10 JPEG members matching ``patterns`` (shell wildcards) extracted into ``dest``; skips the test when
    the archive is not beside the repository."""
    if not CIFAR10_JPEG.is_file():
        pytest.skip(f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG}")
    return extract_cifar10_jpeg(dest, patterns)


@pytest.fixture(scope="session")
def cifar10_jpeg_sample(tmp_path_factory) -> Path:
    """A few real CIFAR-10 JPEGs in their ImageFolder layout: 40 training and 10 test images of cat, dog and ship."""
    patterns = [f"{split}/{c}/00{digits}.jpg" for c in ("cat", "dog", "ship")
                for split, digits in (("train", "[0-3][0-9]"), ("test", "0[0-9]"))]
    return _extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg-sample"), *patterns)


@pytest.fixture(scope="session")
def cifar10_jpeg_train300(tmp_path_factory) -> Path:
    """An image folder with 30 training images per class of the CIFAR-10 JPEG copy (300 images, ``train/`` only)."""
    return _extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg-300"), "train/*/00[0-2][0-9].jpg")


@pytest.fixture(scope="session")
def cifar10_jpeg_train(tmp_path_factory) -> Path:
    """The CIFAR-10 JPEG training images (ROOT/train/<class>/*.jpg), extracted once (about 1.5 s with GNU tar)."""
    return _extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg"), "train/*")


@pytest.fixture(scope="session")
def write_broken_images():
    """A function that writes one image file of each broken kind into a folder and returns their names, sorted.

    The kinds: a truncated JPEG (half of ``good``, the bytes of a valid JPEG), a zero-byte file, a text file named
    ``.png``, a directory named like an image, and a symlink loop (two links to each other).
    """

    def write(folder: Path, good: bytes) -> list[str]:
        (folder / "zz_truncated.jpg").write_bytes(good[: len(good) // 2])
        (folder / "zz_empty.jpg").write_bytes(b"")
        (folder / "zz_text.png").write_text("this is not a PNG\n")
        (folder / "zz_folder.jpg").mkdir()
        os.symlink("zz_loop_b.jpg", folder / "zz_loop_a.jpg")
        os.symlink("zz_loop_a.jpg", folder / "zz_loop_b.jpg")
        return ["zz_empty.jpg", "zz_folder.jpg", "zz_loop_a.jpg", "zz_loop_b.jpg", "zz_text.png", "zz_truncated.jpg"]

    return write


@pytest.fixture(scope="session")
def cifar10_jpeg_small(tmp_path_factory) -> Path:
    """An image folder of real CIFAR-10 JPEGs: train/<class>/ 30 images and test/<class>/ 10 per class, taken
    from the archive's test split (extracting only test/ takes a few seconds)."""
    extracted = _extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg-test"), "test/*")
    root = tmp_path_factory.mktemp("cifar10-small")
    for class_dir in sorted((extracted / "test").iterdir()):
        files = sorted(class_dir.iterdir())
        for split, chosen in (("train", files[:30]), ("test", files[30:40])):
            (root / split / class_dir.name).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, root / split / class_dir.name / f.name)
    return root


@pytest.fixture(scope="session")
def cifar_run(cifar10_jpeg_small, tmp_path_factory) -> Path:
    """A run directory: cnn-small trained for 30 steps on the small CIFAR-10 folder with a validation split (so it
    is calibrated at the end of training)."""
    from ssl_mix import preset, run_experiment

    out = tmp_path_factory.mktemp("runs") / "cifar"
    cfg = preset("cpu-cifar10").replace(
        method={"name": "erm"},
        data={"data_root": str(cifar10_jpeg_small), "num_labels": 100, "num_valid_per_class": 10},
        train={"steps": 30, "eval_every": 30, "checkpoint_every": 0, "out_dir": str(out), "progress": False,
               "device": "cpu", "seed": 0})
    run_experiment(cfg)
    return out
