"""Tests for ssl_mix.models: WRN-28-k, CNN-13, cnn-small and create_model."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ssl_mix.mixing import identity_plan, sample_mix_plan
from ssl_mix.models import (
    CNN13,
    PreActBlock,
    SmallCNN,
    WideResNet,
    available_models,
    create_model,
    forward_layers,
    forward_mixed,
    get_stages,
    layer_names,
    run_stages,
)

# (name, num_classes, exact count of this implementation, published count): WRN-28-2 and WRN-28-10 with the
# 10 classes of CIFAR-10 / SVHN, WRN-28-8 with the 100 classes of CIFAR-100, as each is used.
PARAMETER_COUNTS = [
    ("wrn28-2", 10, 1_467_610, 1.468e6),
    ("wrn28-8", 100, 23_401_012, 23.4e6),
    ("wrn28-10", 10, 36_479_194, 36.5e6),
]


def _num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _wrn_parameters(k: int, num_classes: int, in_channels: int = 3) -> int:
    """WRN-28-k parameter count from the architecture, independently of the module code."""
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = in_channels * 16 * 9
    for g in range(3):
        c_in, c_out = widths[g], widths[g + 1]
        for b in range(4):
            cin = c_in if b == 0 else c_out
            total += 2 * cin + cin * c_out * 9 + 2 * c_out + c_out * c_out * 9  # bn1, conv1, bn2, conv2
            if cin != c_out:
                total += cin * c_out  # 1x1 shortcut
    total += 2 * widths[3] + widths[3] * num_classes + num_classes  # head bn, fc
    return total


@pytest.mark.parametrize(("name", "num_classes", "exact", "published"), PARAMETER_COUNTS)
def test_wrn_parameter_counts_match_reference(name: str, num_classes: int, exact: int, published: float) -> None:
    with torch.device("meta"):  # counting needs no memory or initialisation time
        model = create_model(name, num_classes)
    count = _num_parameters(model)
    assert count == exact
    assert count == _wrn_parameters(int(name.split("-")[1]), num_classes)
    assert abs(count - published) / published < 0.005


def test_cnn13_parameter_count() -> None:
    with torch.device("meta"):
        model = create_model("cnn13", 10)
    convs = (3 * 128 + 2 * 128 * 128 + 128 * 256 + 2 * 256 * 256 + 256 * 512) * 9 + 512 * 256 + 256 * 128
    bns = 2 * (3 * 128 + 3 * 256 + 512 + 256 + 128)
    assert _num_parameters(model) == convs + bns + 128 * 10 + 10


def test_cnn_small_is_cheap() -> None:
    model = create_model("cnn-small", 10).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(100, 3, 32, 32))
    assert counter.get_total_flops() < 0.6e9  # well under 1 GFLOP per 100 32x32 images
    assert _num_parameters(model) < 150_000


# --- shapes and layers -------------------------------------------------------------------------------------

LAYER_SHAPES_32 = {
    "wrn28-2": [(16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8), (128,), (10,)],
    "cnn13": [(128, 32, 32), (128, 16, 16), (256, 8, 8), (128, 6, 6), (128,), (10,)],
    "cnn-small": [(32, 16, 16), (64, 8, 8), (128, 4, 4), (128,), (10,)],
}
LAYER_NAMES = {
    "wrn28-2": ["conv1", "group1", "group2", "group3", "pooled", "logits"],
    "cnn13": ["conv1a", "block1", "block2", "block3", "pooled", "logits"],
    "cnn-small": ["stage1", "stage2", "stage3", "pooled", "logits"],
}


@pytest.mark.parametrize("name", list(LAYER_SHAPES_32))
def test_layer_outputs_rgb_32(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, outputs = forward_layers(model, x)
        plain = model(x)
    assert layer_names(model) == LAYER_NAMES[name]
    assert [tuple(h.shape[1:]) for h in outputs.values()] == LAYER_SHAPES_32[name]
    assert all(h.shape[0] == 2 for h in outputs.values())
    assert torch.equal(logits, plain)


@pytest.mark.parametrize("name", ["wrn28-2", "cnn13", "cnn-small"])
def test_grey_28x28_input(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 7, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_available_models() -> None:
    assert available_models() == ("wrn28-2", "wrn28-8", "wrn28-10", "cnn13", "cnn-small", "mlp")


def test_wrn_architecture_details() -> None:
    model = create_model("wrn28-2", 10)
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 12
    assert [b.activate_before_residual for b in blocks] == [True] + [False] * 11
    assert [b.conv1.stride[0] for b in blocks[::4]] == [1, 2, 2]
    assert all(m.momentum == 0.001 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.negative_slope == 0.1 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_wrn_initialisation() -> None:
    torch.manual_seed(0)
    model = WideResNet(10, 28, 2, leaky_slope=0.1)
    conv = model.stages[3][1].conv1  # 128 -> 128 channels, fan_out = 128 * 9
    expected_std = math.sqrt(2.0 / (1 + 0.1**2)) / math.sqrt(128 * 9)
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.02
    fc = model.stages[5]
    assert abs(fc.weight.std().item() / math.sqrt(2.0 / (128 + 10)) - 1) < 0.1
    assert torch.equal(fc.bias, torch.zeros(10))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize("activate_before_residual", [False, True])
@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(4, 8, 2), (8, 8, 1)])
def test_preact_block_matches_hand_composition(
    activate_before_residual: bool, c_in: int, c_out: int, stride: int
) -> None:
    torch.manual_seed(0)
    block = PreActBlock(c_in, c_out, stride, activate_before_residual=activate_before_residual).eval()
    for bn in (block.bn1, block.bn2):  # non-trivial running statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, c_in, 6, 6)

    def bn_act(bn: nn.BatchNorm2d, h: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False), 0.1)

    pre = bn_act(block.bn1, x)
    residual = F.conv2d(bn_act(block.bn2, F.conv2d(pre, block.conv1.weight, stride=stride, padding=1)),
                        block.conv2.weight, padding=1)
    skip = pre if activate_before_residual else x
    if c_in != c_out:
        skip = F.conv2d(skip, block.shortcut.weight, stride=stride)
    with torch.no_grad():
        torch.testing.assert_close(block(x), skip + residual)


def test_cnn13_architecture_details() -> None:
    model = create_model("cnn13", 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9 and all(c.bias is None for c in convs)
    assert convs[6].padding == (0, 0) and convs[6].kernel_size == (3, 3)
    assert [c.kernel_size[0] for c in convs[7:]] == [1, 1]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in create_model("cnn13", 10, dropout=0.0).modules())


def test_cnn13_weight_norm_option() -> None:
    torch.manual_seed(0)
    model = create_model("cnn13", 10, weight_norm=True).eval()
    assert sum(hasattr(m, "parametrizations") for m in model.modules()) == 10  # 9 convs + fc
    teacher = copy.deepcopy(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(x))
    with pytest.raises(TypeError, match="weight_norm must be a bool"):
        CNN13(10, weight_norm=1)  # type: ignore[arg-type]


def test_dropout_option_reaches_each_architecture() -> None:
    wrn = create_model("wrn28-2", 10, dropout=0.3)
    assert [m.p for m in wrn.modules() if isinstance(m, nn.Dropout)] == [0.3] * 12
    assert not any(isinstance(m, nn.Dropout) for m in create_model("wrn28-2", 10).modules())
    small = create_model("cnn-small", 10, dropout=0.2)
    assert [m.p for m in small.modules() if isinstance(m, nn.Dropout)] == [0.2]


def test_cnn_small_widths_option() -> None:
    model = create_model("cnn-small", 4, widths=(8, 16))
    assert layer_names(model) == ["stage1", "stage2", "pooled", "logits"]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(TypeError, match="widths must be a non-empty sequence"):
        SmallCNN(4, widths=())
    with pytest.raises(ValueError, match=r"widths\[1\] must be >= 1, got 0"):
        SmallCNN(4, widths=(8, 0))


# --- create_model errors -----------------------------------------------------------------------------------


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"name must be one of 'wrn28-2', 'wrn28-8', 'wrn28-10', 'cnn13', "
                                         r"'cnn-small', 'mlp'; got 'resnet18'"):
        create_model("resnet18", 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (dict(num_classes=0), ValueError, r"num_classes must be >= 1, got 0"),
        (dict(num_classes=2.5), TypeError, r"num_classes must be an int"),
        (dict(num_classes=True), TypeError, r"num_classes must be an int"),
        (dict(in_channels=0), ValueError, r"in_channels must be >= 1, got 0"),
        (dict(bn_momentum=0.0), ValueError,
         r"bn_momentum must be in \(0.0, 1.0\], got 0.0; 0 would freeze.*decay of 0.999 is momentum 0.001"),
        (dict(bn_momentum=1.5), ValueError, r"bn_momentum must be in \(0.0, 1.0\], got 1.5"),
        (dict(leaky_slope=-0.1), ValueError, r"leaky_slope must be in \[0.0, 1.0\)"),
        (dict(leaky_slope=float("nan")), ValueError, r"leaky_slope must be in"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0.0, 1.0\)"),
        (dict(dropout="0.5"), TypeError, r"dropout must be a number"),
        (dict(weight_norm=True), TypeError, r"unknown option\(s\) \['weight_norm'\]; valid options for "
                                            r"'wrn28-2': none"),
    ],
)
def test_create_model_argument_errors(kwargs: dict, error: type, pattern: str) -> None:
    kwargs = {"num_classes": 10, **kwargs}
    with pytest.raises(error, match=pattern):
        create_model("wrn28-2", **kwargs)


def test_wrn_depth_must_be_6n_plus_4() -> None:
    with pytest.raises(ValueError, match=r"depth must be 6 n \+ 4"):
        WideResNet(10, depth=27)


def test_unknown_option_for_cnn13_lists_its_options() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['widths'\]; valid options for 'cnn13': "
                                        r"\['weight_norm'\]"):
        create_model("cnn13", 10, widths=(8,))


# --- mixing through the models -----------------------------------------------------------------------------

# Small inputs keep the forwards cheap; the architectures are unchanged.
MIX_CASES = [("wrn28-2", 8), ("cnn13", 12), ("cnn-small", 16)]


@pytest.mark.parametrize(("name", "size"), MIX_CASES)
def test_identity_plan_equals_plain_forward_bitwise_at_every_layer(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        plain = model(x)
        for layer in ["input", *range(len(get_stages(model)))]:
            assert torch.equal(forward_mixed(model, x, identity_plan(2), layer), plain), layer


@pytest.mark.parametrize(("name", "size"), [("cnn-small", 16), ("wrn28-2", 8)])
def test_mixing_at_layer_equals_mixing_separately_recorded_states(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    x = torch.randn(4, 3, size, size)
    plan = sample_mix_plan(4, k=3, alpha=1.0, per_sample=True, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for layer in ["input", *range(len(get_stages(model)) - 1)]:
            # each sample alone through the network, its layer output mixed by hand, the rest run on the mix
            states = [forward_layers(model, x[i:i + 1], [layer])[1][layer][0] for i in range(4)]
            mixed = torch.stack([
                sum(plan.weights[i, k] * states[int(plan.perms[k, i])] for k in range(plan.k)) for i in range(4)
            ])
            expected = run_stages(model, mixed, after=layer)
            torch.testing.assert_close(forward_mixed(model, x, plan, layer), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "size"), MIX_CASES)
def test_gradients_reach_first_convolution_when_mixing_deepest_hidden_layer(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10)  # train mode
    x = torch.randn(4, 3, size, size)
    plan = sample_mix_plan(4, k=2, alpha=1.0, generator=torch.Generator().manual_seed(3))
    deepest_hidden = len(get_stages(model)) - 2  # the pooled features
    logits = forward_mixed(model, x, plan, deepest_hidden)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None
    assert torch.isfinite(first_conv.weight.grad).all() and first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "size"), [("wrn28-2", 8), ("cnn-small", 16)])
def test_channels_last_matches_contiguous(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
        mixed = forward_mixed(model, x.to(memory_format=torch.channels_last), identity_plan(2), 2)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "size"), [("wrn28-2", 8), ("cnn-small", 16)])
def test_bfloat16_autocast_forward_and_mix(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10).eval()
    x = torch.randn(2, 3, size, size)
    plan = sample_mix_plan(2, alpha=1.0, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = forward_mixed(model, x, plan, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward_mixed(model, x, plan, 1)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 10)
    torch.testing.assert_close(out.float(), reference, rtol=0.1, atol=0.1 * reference.abs().max().item())


def test_models_follow_input_dtype() -> None:
    model = create_model("cnn-small", 3).double()
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64
