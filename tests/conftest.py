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


import pytest  # noqa: E402
from bench_data import CIFAR10_JPEG, extract_cifar10_jpeg  # noqa: E402


@pytest.fixture(scope="session")
def cifar10_jpeg_sample(tmp_path_factory):
    """An image folder with 30 training images per class of the CIFAR-10 JPEG copy (300 images, ``train/`` only)."""
    if not CIFAR10_JPEG.is_file():
        pytest.skip(f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG}")
    return extract_cifar10_jpeg(tmp_path_factory.mktemp("cifar10-jpeg-sample"), ["train/*/00[0-2][0-9].jpg"])
