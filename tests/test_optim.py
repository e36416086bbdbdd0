"""Optimiser construction: AdamW's decoupled decay and the groups without decay on biases and norms."""

import pytest
import torch
from torch import nn

from ssl_mix.config import OptimConfig
from ssl_mix.optim import build_optimizer, weight_decay_groups


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_groups_without_decay_hold_exactly_the_one_dimensional_parameters():
    model = _model()
    groups = weight_decay_groups(model, 0.1, decay_norm_bias=False)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert by_decay[0.0] == {id(p) for p in model.parameters() if p.ndim < 2}
    assert by_decay[0.1] == {id(p) for p in model.parameters() if p.ndim >= 2}
    (one,) = weight_decay_groups(model, 0.1, decay_norm_bias=True)
    assert len(one["params"]) == len(list(model.parameters())) and one["weight_decay"] == 0.1


@pytest.mark.parametrize("decay_norm_bias", [True, False])
def test_adamw_with_zero_gradients_only_shrinks_the_decayed_weights(decay_norm_bias):
    # MixMatch's official update v <- v * (1 - wd * lr) on kernels is AdamW's decoupled step with a zero gradient.
    torch.manual_seed(0)
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(model, OptimConfig(optimizer="adamw", lr=0.002, weight_decay=0.02,
                                             decay_norm_bias=decay_norm_bias))
    assert isinstance(opt, torch.optim.AdamW)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(model.parameters(), before, strict=True):
        decayed = p.ndim >= 2 or decay_norm_bias
        torch.testing.assert_close(p.detach(), b * (1 - 0.002 * 0.02) if decayed else b, rtol=0, atol=1e-7)


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="optim.optimizer"):
        OptimConfig(optimizer="lamb")
