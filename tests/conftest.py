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


# --- a small CIFAR-10 JPEG image folder and a run trained on it (prediction, calibration and export tests) ---
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402

import pytest  # noqa: E402

CIFAR10_JPEG = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz"


def _extract_cifar10_jpeg(dest: Path, member: str) -> Path:
    """Extract one top-level folder (``train`` or ``test``) of the CIFAR-10 JPEG archive into ``dest``."""
    if not CIFAR10_JPEG.is_file():
        pytest.skip(f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG}")
    if shutil.which("tar"):
        subprocess.run(["tar", "-xJf", str(CIFAR10_JPEG), "-C", str(dest), member], check=True)
    else:
        with tarfile.open(CIFAR10_JPEG, "r|xz") as tf:
            for item in tf:
                if item.name.startswith(f"{member}/"):
                    tf.extract(item, dest, filter="data")
    return dest


@pytest.fixture(scope="session")
def cifar10_jpeg_train(tmp_path_factory) -> Path:
    """The CIFAR-10 JPEG training images (ROOT/train/<class>/*.jpg), extracted once (about 1.5 s with GNU tar)."""
    return _extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg"), "train")


@pytest.fixture(scope="session")
def cifar10_jpeg_small(tmp_path_factory) -> Path:
    """An image folder of real CIFAR-10 JPEGs: train/<class>/ 30 images and test/<class>/ 10 per class, taken
    from the archive's test split (extracting only test/ takes a few seconds)."""
    extracted = _extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg-test"), "test")
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
