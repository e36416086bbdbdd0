"""Optimiser construction: AdamW's decoupled decay and the groups without decay on biases and norms."""

import pytest
import torch
from torch import nn

from ssl_mix.config import OptimConfig
from ssl_mix.optim import (
    backbone_frozen,
    build_optimizer,
    head_module,
    lr_multiplier,
    parameter_groups,
    weight_decay_groups,
)


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


# ------------------------------------------------------------------------------------------- fine-tuning groups
def _timm(name="test_resnet"):
    from ssl_mix.models import create_model

    torch.manual_seed(0)
    return create_model(f"timm:{name}", 5)


def _lr_of(groups) -> dict[int, float]:
    return {id(p): g["lr"] for g in groups for p in g["params"]}


def _ft(**kw) -> OptimConfig:
    return OptimConfig(**{"optimizer": "adamw", "lr": 1.0, "weight_decay": 0.05, "decay_norm_bias": False, **kw})


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_layer_decay_scales_the_rate_down_from_head_to_stem(name):
    model = _timm(name)
    lrs = _lr_of(parameter_groups(model, _ft(layer_decay=0.5)))
    names = dict(model.named_parameters())
    head = {id(p) for p in head_module(model).parameters()}
    assert all(lrs[i] == 1.0 for i in head)
    # In the order of the network, the rates never rise, and fall by 0.5 per layer group: stem at 0.5 ** depth.
    order = [lrs[id(p)] for p in names.values()]
    assert order == sorted(order) and len(set(order)) >= 4
    assert set(order) == {0.5 ** i for i in range(len(set(order)))}
    stem = next(iter(names.values()))
    assert lrs[id(stem)] == min(order)


def test_layer_groups_reach_through_the_staged_wrapper():
    staged = _timm("test_resnet")
    assert type(staged).__name__ == "TimmStaged"
    wrapped = parameter_groups(staged, _ft(layer_decay=0.7))
    inner = parameter_groups(staged.model, _ft(layer_decay=0.7))
    assert _lr_of(wrapped) == _lr_of(inner) and len(wrapped) == len(inner)
    assert head_module(staged) is staged.model.get_classifier()
    staged.model = nn.Linear(2, 2)  # a wrapped model without a group_matcher
    with pytest.raises(TypeError, match="Linear has no group_matcher"):
        staged.group_matcher()


@pytest.mark.parametrize("layer_decay", [None, 0.6])
def test_head_lr_mult_multiplies_exactly_the_head(layer_decay):
    model = _timm()
    base = _lr_of(parameter_groups(model, _ft(layer_decay=layer_decay)))
    groups = parameter_groups(model, _ft(layer_decay=layer_decay, head_lr_mult=10.0))
    head = {id(p) for p in head_module(model).parameters()}
    assert {id(p) for g in groups if g["head"] for p in g["params"]} == head
    assert _lr_of(groups) == {i: lr * (10.0 if i in head else 1.0) for i, lr in base.items()}
    # Weight decay stays as timm groups it: the head's bias is not decayed, its weight is.
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert sorted(decay[id(p)] for p in head_module(model).parameters()) == [0.0, 0.05]


def test_an_ssl_mix_model_has_its_last_stage_as_head_but_no_layer_groups():
    from ssl_mix.models import create_model

    model = create_model("cnn-small", 3)
    assert head_module(model) is model.stages[-1]
    opt = build_optimizer(model, _ft(head_lr_mult=3.0))
    assert sorted({g["lr"] for g in opt.param_groups}) == [1.0, 3.0]
    with pytest.raises(TypeError, match="optim.layer_decay needs .* which SmallCNN does not have"):
        parameter_groups(model, _ft(layer_decay=0.5))


def test_head_settings_need_a_model_with_a_findable_head():
    with pytest.raises(TypeError, match="optim.head_lr_mult and optim.freeze_backbone_steps need the classifier "
                                        "head of the model, but Linear has neither"):
        parameter_groups(nn.Linear(2, 2), _ft(freeze_backbone_steps=3))
    with pytest.raises(ValueError, match="pass the model to build_optimizer, not its parameters"):
        build_optimizer(_model().parameters(), _ft(layer_decay=0.5))
    # Layer decay 1 is off: any model, any parameter list.
    assert len(build_optimizer(_model().parameters(), _ft(layer_decay=1.0)).param_groups) == 1


@pytest.mark.parametrize("field, value, match", [
    ("layer_decay", 0.0, "optim.layer_decay"), ("layer_decay", 1.5, "optim.layer_decay"),
    ("head_lr_mult", 0.0, "optim.head_lr_mult"), ("freeze_backbone_steps", -1, "optim.freeze_backbone_steps")])
def test_bad_fine_tuning_settings_are_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**{field: value})


def test_the_backbone_schedule_is_zero_while_frozen_then_warms_up_again():
    cfg = OptimConfig(warmup_steps=4, freeze_backbone_steps=6, lr_schedule="constant")
    head = [lr_multiplier(s, 20, cfg) for s in range(12)]
    backbone = [lr_multiplier(s, 20, cfg, backbone=True) for s in range(12)]
    assert head == [0, 0.25, 0.5, 0.75] + [1.0] * 8
    assert backbone == [0.0] * 6 + [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [backbone_frozen(s, cfg) for s in (0, 5, 6)] == [True, True, False]


def test_schedule_notes_say_when_the_freeze_or_the_warmup_lasts_the_whole_run():
    from ssl_mix import preset
    from ssl_mix.optim import schedule_notes

    optim = preset("finetune").optim  # 250 frozen steps, 250 warm-up steps
    assert schedule_notes(optim, 5000) == []
    notes = schedule_notes(optim, 200)
    assert len(notes) == 2
    assert notes[0].startswith("optim.freeze_backbone_steps=250 is not below train.steps=200: only the classifier "
                               "head trains")
    assert "optim.warmup_steps=250 is not below train.steps=200: the learning rate never reaches" in notes[1]
    assert schedule_notes(preset("demo").optim, 10) == []
