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


def test_timm_model_trains_from_the_cli(tmp_path) -> None:
    from ssl_mix.cli import main

    args = ["train", "--dataset", "digits", "--model", "timm:resnet10t", "--num-labels", "30", "--steps", "2",
            "--eval-every", "2", "--log-every", "2", "--checkpoint-every", "2", "--no-progress", "--device", "cpu",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
