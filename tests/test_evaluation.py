"""evaluate: metrics over batches, and a stop request honoured between batches."""

import pytest
import torch
from torch import nn

from ssl_mix.evaluation import EvaluationStopped, evaluate


def _batches(n):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


def test_a_stop_request_ends_the_evaluation_between_batches_and_restores_the_mode():
    model = nn.Linear(3, 2).train()
    seen = []

    def batches():
        for i, batch in enumerate(_batches(5)):
            seen.append(i)
            yield batch

    with pytest.raises(EvaluationStopped, match="stopped before batch 2"):
        evaluate(model, batches(), should_stop=lambda: len(seen) > 2)
    assert seen == [0, 1, 2] and model.training  # nothing read past the stop; train mode is back
    assert evaluate(model, _batches(5), should_stop=lambda: False)["count"] == 20
