"""timm models by name through ``create_model``."""

import pytest
import torch

from ssl_mix.models.factory import create_model


def test_timm_name_builds_a_classifier() -> None:
    model = create_model("timm:resnet10t", 7, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_unknown_timm_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="unknown timm model 'resnet10x'.*close matches"):
        create_model("timm:resnet10x", 3)
