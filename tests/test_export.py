"""Export: ONNX (run with onnxruntime) and TorchScript match the eager model within 1e-4 on real CIFAR-10 JPEG
images, safetensors round-trips bit-exactly, and the sidecar says how to feed the model."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest
import torch

from ssl_mix import export_model, load_export, load_predictor
from ssl_mix.cli import main
from ssl_mix.data import decode_image, image_files
from ssl_mix.export import sidecar_path


@pytest.fixture(scope="module")
def eager(cifar_run):
    return load_predictor(cifar_run, device="cpu").model


@pytest.fixture(scope="module")
def images(cifar10_jpeg_small) -> torch.Tensor:
    """50 real CIFAR-10 test JPEGs, uint8 (50, 3, 32, 32)."""
    return torch.stack([decode_image(p, image_size=32, channels=3)
                        for p in image_files(cifar10_jpeg_small / "test")[::2]])


def test_onnx_matches_eager(cifar_run, eager, images, tmp_path):
    import onnxruntime

    path = tmp_path / "model.onnx"
    meta = export_model(cifar_run, path, format="onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = eager(images)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-4, rtol=0)
    assert meta["input"]["dtype"] == "uint8" and json.loads(sidecar_path(path).read_text()) == meta
    # the batch size is free
    assert session.run(None, {"images": images[:3].numpy()})[0].shape == (3, 10)


# torch 2.14 deprecates TorchScript (torch.jit.load warns); the format is still what runs without Python source.
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_matches_eager_for_uint8_and_float(cifar_run, eager, images, tmp_path):
    path = tmp_path / "model.pt"
    assert main(["export", str(cifar_run), "--format", "torchscript", "--out", str(path)]) == 0
    scripted = torch.jit.load(str(path))
    with torch.no_grad():
        expected = eager(images)
        assert torch.allclose(scripted(images), expected, atol=1e-4, rtol=0)
        assert torch.allclose(scripted(images.float() / 255), expected, atol=1e-4, rtol=0)
    assert isinstance(load_export(path), torch.jit.ScriptModule)


def test_safetensors_round_trips_bit_exactly(cifar_run, eager, images, tmp_path):
    from safetensors.torch import load_file

    path = tmp_path / "model.safetensors"
    meta = export_model(cifar_run, path, format="safetensors")
    stored = load_file(str(path))
    assert stored.keys() == eager.state_dict().keys()
    assert all(torch.equal(stored[k], v) for k, v in eager.state_dict().items())
    loaded = load_export(path)
    with torch.no_grad():
        assert torch.equal(loaded(images), eager(images))
    run = load_predictor(cifar_run, device="cpu")
    assert meta["classes"] == run.classes and meta["input"]["shape"] == ["N", 3, 32, 32]
    assert meta["temperature"] == pytest.approx(float(eager.temperature)) and meta["temperature"] != 1.0
    assert len(meta["mean"]) == 3 and meta["input"]["resize"] == "crop" and meta["model"] == "cnn-small"


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("format", ["onnx", "torchscript", "safetensors"])
def test_an_export_and_its_sidecar_get_the_umask_permissions(cifar_run, tmp_path, format):
    path = tmp_path / f"model.{format}"
    old = os.umask(0o027)
    try:
        export_model(cifar_run, path, format=format)
    finally:
        os.umask(old)
    # 0o666 less the umask, as a plain open() would give, not the 0o600 of a temporary file: a colleague in the
    # group can read the model
    assert [stat.S_IMODE(p.stat().st_mode) for p in (path, sidecar_path(path))] == [0o640, 0o640]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, sidecar_path(path).name]


def test_export_errors(cifar_run, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="format must be one of 'onnx', 'torchscript', 'safetensors'"):
        export_model(cifar_run, tmp_path / "m", format="tflite")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were not installed
    with pytest.raises(ImportError, match="ssl-mix\\[export\\]"):
        export_model(cifar_run, tmp_path / "m.onnx", format="onnx")
    assert main(["export", str(cifar_run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ssl-mix[export]" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_export(tmp_path / "nothing.safetensors")
