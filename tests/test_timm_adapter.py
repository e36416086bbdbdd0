"""Tests for ssl_mix.models.timm_adapter: timm models as staged models (tiny test models, no downloads)."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.mixing import identity_plan, sample_mix_plan
from ssl_mix.models import TimmStaged, forward_layers, forward_mixed, get_stages, layer_names, run_stages


def _timm(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=5, **kwargs)


def test_resnet_split_follows_feature_info() -> None:
    model = _timm("test_resnet")
    staged = TimmStaged(model).eval()
    assert layer_names(staged) == ["act1", "layer1", "layer2", "layer3", "layer4", "pooled", "logits"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, outputs = forward_layers(staged, x)
        reference = model(x)
    torch.testing.assert_close(logits, reference, rtol=0, atol=0)
    reductions = [entry["reduction"] for entry in model.feature_info]
    channels = [entry["num_chs"] for entry in model.feature_info]
    for i, (reduction, num_chs) in enumerate(zip(reductions, channels, strict=True)):
        assert outputs[i].shape == (2, num_chs, 32 // reduction, 32 // reduction)
    assert outputs[5].shape == (2, model.num_features) and outputs[6].shape == (2, 5)


def test_modules_after_last_feature_level_join_last_stage() -> None:
    # EfficientNet's forward_features ends with conv_head + bn2 after the last block.
    model = _timm("test_efficientnet")
    staged = TimmStaged(model).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, outputs = forward_layers(staged, x)
        features = model.forward_features(x)
    torch.testing.assert_close(outputs[len(model.feature_info) - 1], features, rtol=0, atol=0)
    torch.testing.assert_close(outputs[len(get_stages(staged)) - 1], model(x), rtol=0, atol=0)


def test_parameters_and_state_dict_are_not_duplicated() -> None:
    model = _timm("test_resnet")
    staged = TimmStaged(model)
    assert list(staged.state_dict()) == [f"model.{key}" for key in model.state_dict()]
    assert sum(p.numel() for p in staged.parameters()) == sum(p.numel() for p in model.parameters())


def test_construction_restores_train_flags() -> None:
    model = _timm("test_resnet").train()
    model.layer2.eval()
    TimmStaged(model)
    assert model.training and model.layer1.training and not model.layer2.training


def test_grey_input_and_mixing() -> None:
    staged = TimmStaged(_timm("test_resnet", in_chans=1)).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        plain = staged(x)
        for layer in ["input", *range(len(get_stages(staged)))]:
            assert torch.equal(forward_mixed(staged, x, identity_plan(3), layer), plain)
        plan = sample_mix_plan(3, k=2, alpha=1.0, per_sample=True, generator=torch.Generator().manual_seed(0))
        _, outputs = forward_layers(staged, x, [2])
        expected = run_stages(staged, plan.apply(outputs[2]), after=2)
        torch.testing.assert_close(forward_mixed(staged, x, plan, 2), expected)


def test_gradients_reach_stem_when_mixing_pooled_features() -> None:
    model = _timm("test_resnet")
    staged = TimmStaged(model)
    plan = sample_mix_plan(4, alpha=1.0, generator=torch.Generator().manual_seed(0))
    logits = forward_mixed(staged, torch.randn(4, 3, 32, 32), plan, len(get_stages(staged)) - 2)  # pooled
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert model.conv1[0].weight.grad is not None and model.conv1[0].weight.grad.abs().sum() > 0


def test_deepcopy_keeps_stages_on_the_copy() -> None:
    # An EMA teacher deep-copies the student: the copy's stages must run the copy's weights.
    staged = TimmStaged(_timm("test_resnet")).eval()
    teacher = copy.deepcopy(staged)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = staged(x)
        for p in teacher.parameters():
            p.mul_(0.5)
        torch.testing.assert_close(staged(x), before, rtol=0, atol=0)
        assert not torch.allclose(teacher(x), before)
        torch.testing.assert_close(teacher(x), teacher.model(x), rtol=0, atol=0)


def test_vision_transformer_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"VisionTransformer: the chain of its child modules does not reproduce"):
        TimmStaged(_timm("test_vit"), probe_size=32)


def test_non_timm_module_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"TimmStaged needs a timm classification model.*feature_info"):
        TimmStaged(nn.Sequential(nn.Conv2d(3, 4, 3)))


class _TimmLike(nn.Module):
    """The timm classification interface on a two-layer network (a 5x5 valid convolution needs 5x5 inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.feature_info = [{"module": "act", "num_chs": 4, "reduction": 1}]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_any_model_with_the_timm_interface_works() -> None:
    model = _TimmLike()
    staged = TimmStaged(model, probe_size=8)
    assert layer_names(staged) == ["act", "pooled", "logits"]
    x = torch.randn(2, 3, 7, 7)
    torch.testing.assert_close(staged(x), model(x), rtol=0, atol=0)


def test_probe_size_errors() -> None:
    with pytest.raises(ValueError, match=r"forward_features failed on the probe input of shape \(2, 3, 3, 3\) "
                                         r"\(probe_size=3\).*Pass a probe_size the model accepts"):
        TimmStaged(_TimmLike(), probe_size=3)
    with pytest.raises(ValueError, match=r"probe_size must be >= 1, got 0"):
        TimmStaged(_TimmLike(), probe_size=0)
