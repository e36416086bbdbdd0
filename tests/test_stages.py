"""Tests for ssl_mix.models.stages: the staged-model protocol, forward_layers, forward_mixed, run_stages."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from ssl_mix.mixing import MixPlan, identity_plan, sample_mix_plan
from ssl_mix.models import (
    StagedModel,
    create_model,
    forward_layers,
    forward_mixed,
    get_stages,
    layer_names,
    run_stages,
)


def _scalar_linear(weight: float, bias: float) -> nn.Linear:
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return layer


def _tiny_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


class _NoStages(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


# --- finding the stages ------------------------------------------------------------------------------------


def test_sequential_children_are_the_stages() -> None:
    model = _tiny_mlp()
    assert list(get_stages(model)) == list(model.children())
    assert layer_names(model) == ["0", "1", "2"]
    named = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.Tanh(), fc2=nn.Linear(8, 3)))
    assert layer_names(named) == ["fc1", "act", "fc2"]


def test_staged_model_exposes_stages_and_names() -> None:
    model = StagedModel([nn.Linear(2, 3), nn.ReLU()], ("hidden", "out"))
    assert get_stages(model) is model.stages
    assert layer_names(model) == ["hidden", "out"]
    x = torch.randn(5, 2)
    assert torch.equal(model(x), torch.relu(model.stages[0](x)))


def test_custom_module_with_stages_attribute_and_default_names() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stages = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 1)])

    assert layer_names(Custom()) == ["stage0", "stage1"]


def test_model_without_stages_raises_type_error_explaining_protocol() -> None:
    with pytest.raises(TypeError, match=r"has no `stages`.*nn.ModuleList.*nn.Sequential.*TimmStaged"):
        get_stages(_NoStages())
    with pytest.raises(TypeError, match="has no `stages`"):
        forward_mixed(_NoStages(), torch.randn(2, 2), identity_plan(2), 0)
    with pytest.raises(TypeError, match="has no `stages`"):
        forward_layers(_NoStages(), torch.randn(2, 2))


def test_non_module_and_malformed_stages_raise_type_error() -> None:
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        get_stages(lambda x: x)  # type: ignore[arg-type]

    bad = _NoStages()
    bad.stages = [1, 2]  # type: ignore[assignment]
    with pytest.raises(TypeError, match="non-empty sequence of nn.Module"):
        get_stages(bad)
    empty = _NoStages()
    empty.stages = nn.ModuleList()
    with pytest.raises(TypeError, match="non-empty sequence of nn.Module"):
        get_stages(empty)
    with pytest.raises(TypeError, match="non-empty sequence of nn.Module"):
        get_stages(nn.Sequential())


def test_layer_names_must_match_stages() -> None:
    model = StagedModel([nn.Linear(2, 2), nn.Linear(2, 2)], ("a", "b"))
    model.layer_names = ("a",)
    with pytest.raises(TypeError, match="one string per stage"):
        layer_names(model)


def test_staged_model_constructor_errors() -> None:
    with pytest.raises(ValueError, match="at least one module"):
        StagedModel([], ())
    with pytest.raises(ValueError, match="one entry per stage"):
        StagedModel([nn.Linear(2, 2)], ("a", "b"))


# --- layer ids ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [6, -1, "pooled", "Input", True, 1.0, None])
def test_bad_layer_id_lists_valid_layers(bad: object) -> None:
    model = create_model("wrn28-2", 10, in_channels=1).eval()
    x = torch.randn(2, 1, 8, 8)
    pattern = r"layer must be 'input' or an int in 0\.\.5: 0 \(conv1\), 1 \(group1\).*5 \(logits\)"
    with pytest.raises(ValueError, match=pattern):
        forward_mixed(model, x, identity_plan(2), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"layers must be 'input' or an int in 0\.\.5"):
        forward_layers(model, x, [0, bad])  # type: ignore[list-item]


def test_layers_argument_must_be_iterable_of_ids() -> None:
    with pytest.raises(TypeError, match="iterable of layer ids"):
        forward_layers(_tiny_mlp(), torch.randn(2, 4), "input")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of layer ids"):
        forward_layers(_tiny_mlp(), torch.randn(2, 4), 1)  # type: ignore[arg-type]


# --- forward_layers ----------------------------------------------------------------------------------------


def test_forward_layers_returns_every_stage_output_in_one_pass() -> None:
    model = _tiny_mlp()
    x = torch.randn(5, 4)
    calls = []
    for stage in model:
        stage.register_forward_hook(lambda m, i, o: calls.append(m))
    logits, outputs = forward_layers(model, x)
    assert len(calls) == 3  # one pass: each stage ran once
    assert list(outputs) == [0, 1, 2]
    h0 = model[0](x)
    torch.testing.assert_close(outputs[0], h0, rtol=0, atol=0)
    torch.testing.assert_close(outputs[1], torch.tanh(h0), rtol=0, atol=0)
    assert outputs[2] is logits
    torch.testing.assert_close(logits, model(x), rtol=0, atol=0)


def test_forward_layers_selection_order_input_and_duplicates() -> None:
    model = _tiny_mlp()
    x = torch.randn(3, 4)
    _, outputs = forward_layers(model, x, [2, "input", 0, 2])
    assert list(outputs) == [2, "input", 0]
    assert outputs["input"] is x
    assert outputs[0].shape == (3, 8) and outputs[2].shape == (3, 3)


def test_forward_layers_keeps_graph() -> None:
    model = _tiny_mlp()
    _, outputs = forward_layers(model, torch.randn(3, 4), [1])
    outputs[1].sum().backward()
    assert model[0].weight.grad is not None and model[2].weight.grad is None


# --- forward_mixed -----------------------------------------------------------------------------------------


def test_forward_mixed_hand_computed_value() -> None:
    # layer 0 doubles, layer 1 is a ReLU, layer 2 adds 1. x = (1, 3) -> h0 = (2, 6); with weights
    # (0.25, 0.75) and partner perm (1, 0): mixed h0 = (0.25*2 + 0.75*6, 0.25*6 + 0.75*2) = (5, 3) -> (6, 4).
    model = nn.Sequential(_scalar_linear(2.0, 0.0), nn.ReLU(), _scalar_linear(1.0, 1.0))
    plan = MixPlan(weights=torch.tensor([[0.25, 0.75]]), perms=torch.tensor([[0, 1], [1, 0]]))
    x = torch.tensor([[1.0], [3.0]])
    out = forward_mixed(model, x, plan, 0)
    torch.testing.assert_close(out, torch.tensor([[6.0], [4.0]]))
    # mixing the input: (0.25*1 + 0.75*3, 0.25*3 + 0.75*1) = (2.5, 1.5) -> doubled + 1 = (6, 4) as well
    # (the first stage is linear); mixing after the ReLU gives the same too.
    torch.testing.assert_close(forward_mixed(model, x, plan, "input"), torch.tensor([[6.0], [4.0]]))
    # mixing the logits (3, 7): (0.25*3 + 0.75*7, 0.25*7 + 0.75*3) = (6, 4).
    torch.testing.assert_close(forward_mixed(model, x, plan, 2), torch.tensor([[6.0], [4.0]]))
    # with a non-linear stage the layer matters: |x - 2| gives h1 = (1, 1): every mix is 1 -> 2.
    absolute = nn.Sequential(_scalar_linear(1.0, -2.0), _Abs(), _scalar_linear(1.0, 1.0))
    torch.testing.assert_close(forward_mixed(absolute, x, plan, 1), torch.tensor([[2.0], [2.0]]))
    # ...while mixing the input first gives |(2.5, 1.5) - 2| + 1 = (1.5, 1.5).
    torch.testing.assert_close(forward_mixed(absolute, x, plan, "input"), torch.tensor([[1.5], [1.5]]))


class _Abs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


@pytest.mark.parametrize("layer", ["input", 0, 1, 2])
def test_identity_plan_is_plain_forward_bitwise(layer: object) -> None:
    model = _tiny_mlp()
    x = torch.randn(6, 4)
    out = forward_mixed(model, x, identity_plan(6, k=3), layer)  # type: ignore[arg-type]
    assert torch.equal(out, model(x))


@pytest.mark.parametrize("layer", ["input", 0, 1])
def test_forward_mixed_equals_mixing_recorded_layer_outputs(layer: object) -> None:
    model = _tiny_mlp()
    x = torch.randn(6, 4)
    plan = sample_mix_plan(6, k=3, alpha=1.0, per_sample=True, generator=torch.Generator().manual_seed(1))
    _, outputs = forward_layers(model, x, [layer])  # type: ignore[list-item]
    h = outputs[layer]
    mixed = torch.stack([
        sum(plan.weights[i, k] * h[plan.perms[k, i]] for k in range(plan.k)) for i in range(6)
    ])
    expected = run_stages(model, mixed, after=layer)  # type: ignore[arg-type]
    torch.testing.assert_close(forward_mixed(model, x, plan, layer), expected)  # type: ignore[arg-type]


def test_forward_mixed_argument_errors() -> None:
    model = _tiny_mlp()
    with pytest.raises(ValueError, match=r"x has batch size 3 but plan.batch_size is 4"):
        forward_mixed(model, torch.randn(3, 4), identity_plan(4), 0)
    with pytest.raises(TypeError, match="plan must be a MixPlan"):
        forward_mixed(model, torch.randn(3, 4), torch.ones(3, 2), 0)  # type: ignore[arg-type]


# --- run_stages --------------------------------------------------------------------------------------------


def test_run_stages_slices_compose_to_forward() -> None:
    model = _tiny_mlp()
    x = torch.randn(4, 4)
    _, outputs = forward_layers(model, x)
    assert torch.equal(run_stages(model, x), model(x))
    assert torch.equal(run_stages(model, x, until=1), outputs[1])
    assert torch.equal(run_stages(model, outputs[0], after=0, until=1), outputs[1])
    assert torch.equal(run_stages(model, outputs[1], after=1), outputs[2])
    assert run_stages(model, outputs[1], after=1, until=1) is outputs[1]
    assert run_stages(model, x, until="input") is x


def test_run_stages_errors() -> None:
    model = _tiny_mlp()
    with pytest.raises(ValueError, match=r"until=0 comes before after=1"):
        run_stages(model, torch.randn(2, 8), after=1, until=0)
    with pytest.raises(ValueError, match=r"after must be 'input' or an int in 0\.\.2"):
        run_stages(model, torch.randn(2, 8), after=3)
    with pytest.raises(ValueError, match=r"until must be 'input' or an int in 0\.\.2"):
        run_stages(model, torch.randn(2, 8), until=-1)
