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
