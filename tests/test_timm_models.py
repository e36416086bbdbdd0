"""timm models by name through ``create_model``."""

import re

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


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory):
    """``ssl-mix train --model timm:resnet10t --pretrained-file W`` on digits, 2 steps; ``(run, weights file, stderr
    of training)``."""
    import contextlib
    import io

    from ssl_mix.cli import main

    root = tmp_path_factory.mktemp("timm")
    torch.manual_seed(0)
    weights = root / "resnet10t.pth"
    torch.save(create_model("timm:resnet10t", 4, in_channels=1).model.state_dict(), weights)  # 4 classes: new head
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "--dataset", "digits", "--model", "timm:resnet10t", "--pretrained-file", str(weights),
                     "--method", "ict", "--num-labels", "30", "--steps", "2", "--eval-every", "2", "--log-every",
                     "2", "--checkpoint-every", "2", "--no-progress", "--device", "cpu",
                     "--out", str(root / "run")]) == 0
    return root / "run", weights, err.getvalue()


def test_the_run_records_its_starting_weights(timm_run):
    import hashlib
    import json

    from ssl_mix.checkpoint import load_checkpoint
    from ssl_mix.run import RunDir

    run, weights, err = timm_run
    record = {"model": "timm:resnet10t", "source": "file", "path": str(weights),
              "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert load_checkpoint(RunDir(run).last)["data"]["weights"] == record
    assert json.loads(RunDir(run).report.read_text())["weights"] == record
    assert f"ssl-mix: model timm:resnet10t, starting from the file {weights} (sha256 {record['sha256'][:16]}" in err


def test_a_resumed_run_takes_its_checkpoint_weights(timm_run, tmp_path, monkeypatch):
    """Resuming loads the checkpoint's weights, not the starting ones again; the record stays the run's."""
    import json
    import shutil

    import ssl_mix.experiment
    from ssl_mix.checkpoint import load_checkpoint
    from ssl_mix.cli import main
    from ssl_mix.run import RunDir

    run, _, _ = timm_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)

    def never(*args, **kwargs):
        raise AssertionError("a resumed run loaded its starting weights again")

    monkeypatch.setattr(ssl_mix.experiment, "build_starting_model", never)
    assert main(["train", "--resume", "--out", str(copy), "--steps", "3"]) == 0
    assert load_checkpoint(RunDir(copy).last)["step"] == 3
    assert (json.loads(RunDir(copy).report.read_text())["weights"]
            == load_checkpoint(RunDir(run).last)["data"]["weights"])


def test_a_timm_run_evaluates_predicts_and_exports(timm_run, tmp_path):
    import numpy as np
    import onnxruntime
    from PIL import Image

    from ssl_mix import export_model, load_predictor
    from ssl_mix.cli import main
    from ssl_mix.data import decode_image

    run, _, _ = timm_run
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(photos / f"{i}.png")
    assert main(["predict", str(run), str(photos), "--out", str(tmp_path / "p.csv"), "--workers", "0",
                 "--device", "cpu", "--no-progress"]) == 0
    assert len((tmp_path / "p.csv").read_text().strip().splitlines()) == 4
    path = tmp_path / "m.onnx"
    export_model(run, path, format="onnx")
    images = torch.stack([decode_image(p, image_size=16, channels=1) for p in sorted(photos.iterdir())])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = load_predictor(run, device="cpu").model(images)
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], expected.numpy(), atol=1e-4)


DIGITS = ["--dataset", "digits", "--num-labels", "30", "--steps", "2", "--eval-every", "2", "--log-every", "2",
          "--checkpoint-every", "2", "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize(("name", "message"), [
    ("timm:resnet10x", r"unknown timm model 'resnet10x'; close matches: timm:resnet10t"),
    ("timm:no_such_net", r"unknown timm model 'no_such_net'\. timm.list_models\(\) lists the names"),
])
def test_unknown_timm_name_from_the_cli(tmp_path, capsys, name, message):
    from ssl_mix.cli import main

    assert main(["train", "--model", name, *DIGITS, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"ssl-mix train: error: " + message, err) and "Traceback" not in err


def test_vision_transformer_gets_the_image_size() -> None:
    from ssl_mix.config import ModelConfig
    from ssl_mix.models import build_model

    vit = build_model(ModelConfig(name="timm:test_vit"), 3, 1, (32, 32))  # timm's default is 160 px
    assert vit(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    cnn = build_model(ModelConfig(name="timm:resnet10t"), 3, 1, (32, 32))  # takes no img_size: not given one
    assert cnn(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_vision_transformer_trains_with_ict_and_loads_back(tmp_path) -> None:
    from ssl_mix.cli import main

    run = tmp_path / "run"
    assert main(["train", "--model", "timm:test_vit", "--method", "ict", *DIGITS, "--out", str(run)]) == 0
    assert main(["eval", str(run), "--device", "cpu"]) == 0  # rebuilt at the run's 16 px
    from ssl_mix import export_model, load_export, load_predictor

    export_model(run, tmp_path / "vit.safetensors", format="safetensors")  # rebuilt at 16 px from the sidecar
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(load_export(tmp_path / "vit.safetensors")(images),
                           load_predictor(run, device="cpu").model(images))


@pytest.mark.parametrize(("flags", "needs"), [
    (["--method", "manifold-mixup"], "--method manifold-mixup with --mix-layers beyond input"),
    (["--method", "erm", "--linearity-every", "1"], r"the linearity analysis \(--linearity-every\)"),
])
def test_stages_needed_on_a_model_without_them(tmp_path, capsys, flags, needs) -> None:
    from ssl_mix.cli import main

    assert main(["train", "--model", "timm:test_vit", *flags, *DIGITS, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert re.search(needs + r".* need\(s\) a model split into stages.*timm:test_vit cannot be split.*"
                     r"Stages exist in ssl_mix's models \('?wrn28-2", err), err


def test_manifold_mixup_at_the_input_needs_no_stages(tmp_path) -> None:
    from ssl_mix.cli import main

    assert main(["train", "--model", "timm:test_vit", "--method", "manifold-mixup", "--mix-layers", "input",
                 *DIGITS, "--out", str(tmp_path / "run")]) == 0


def test_drop_path_goes_to_timm_as_drop_path_rate() -> None:
    from timm.layers import DropPath

    from ssl_mix.config import ModelConfig
    from ssl_mix.models import build_model

    model = build_model(ModelConfig(name="timm:test_vit", drop_path=0.2), 3, 1, 16)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="model.drop_path applies to timm models"):
        build_model(ModelConfig(name="cnn-small", drop_path=0.2), 3, 1)


def test_from_scratch_settings_leave_a_timm_network_as_timm_builds_it():
    """model.bn_momentum (0.001) and model.dropout suit ssl_mix's own CIFAR networks; a timm network, pretrained or
    not, keeps timm's batch norm and activations."""
    import timm
    from torch import nn

    from ssl_mix.config import ModelConfig
    from ssl_mix.models import build_model

    ours = build_model(ModelConfig(name="timm:test_resnet", bn_momentum=0.001, dropout=0.3), 10, 3)
    plain = timm.create_model("test_resnet", num_classes=10)
    norms = [m for m in ours.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and {m.momentum for m in norms} == {m.momentum for m in plain.modules()
                                                      if isinstance(m, nn.modules.batchnorm._BatchNorm)} == {0.1}
    assert not any(isinstance(m, nn.LeakyReLU) for m in ours.modules())
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.3 for m in ours.modules()) == 0
