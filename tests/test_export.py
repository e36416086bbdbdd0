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


def _preprocess_from_sidecar(path, meta) -> np.ndarray:
    """A consumer's preprocessing, written with Pillow and NumPy from the sidecar alone: uint8 (C, H, W)."""
    from PIL import Image, ImageOps

    steps = meta["preprocessing"]["decode"]
    assert steps["order"] == ["open", "jpeg_draft", "exif_orientation", "mode", "channels", "resize", "array"]
    draft, exif, modes = steps["jpeg_draft"], steps["exif_orientation"], steps["mode"]
    height, width = steps["resize"]["size"]
    with Image.open(path) as im:
        orientation = im.getexif().get(exif["tag"], 1)
        if draft["enabled"] and im.format == "JPEG":
            transposed = orientation in draft["transposed_orientations"]
            im.draft(im.mode, tuple(draft["request_when_transposed" if transposed else "request"]))
        if orientation in exif["applies_to"]:
            im = ImageOps.exif_transpose(im)
        if im.mode in modes["keep"]:
            pass
        elif im.mode == "I" or im.mode.startswith("I;16"):
            im = Image.fromarray((np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8).astype(np.uint8))
        elif im.mode == "F":
            values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
            im = Image.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8))
        elif im.mode in modes["gray_modes"]:
            im = im.convert("L")
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA").convert("RGB")
        else:
            im = im.convert("RGB")
        if im.mode != steps["channels"]["mode"]:
            im = im.convert(steps["channels"]["mode"])
        if (im.height, im.width) != (height, width):
            method = Image.Resampling[steps["resize"]["filter"]]
            im = (im.resize((width, height), method) if steps["resize"]["policy"] == "stretch" else
                  ImageOps.fit(im, (width, height), method=method, centering=(0.5, 0.5)))
        array = np.array(im, dtype=np.uint8)
    return (array[:, :, None] if array.ndim == 2 else array).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def mixed_files(cifar10_jpeg_small, tmp_path_factory):
    """Real photos as JPEG and PNG files of mixed sizes and modes: large JPEGs (decoded in draft mode), a rotated
    one (EXIF orientation 6), CMYK, grayscale, 16-bit, palette with transparency, RGBA, and smaller than the input."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    sources = sorted((cifar10_jpeg_small / "test" / "dog").iterdir())
    rng = np.random.default_rng(0)

    def photo(i, size):  # a real image enlarged, with grain so that the decoding scale shows in the pixels
        with Image.open(sources[i]) as im:
            big = np.asarray(im.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
        return Image.fromarray(np.clip(big + rng.normal(0, 12, big.shape), 0, 255).astype(np.uint8))

    exif = Image.Exif()
    exif[0x0112] = 6
    photo(0, (203, 157)).save(root / "a_large.jpg", quality=90)
    photo(1, (300, 90)).convert("L").save(root / "b_gray_wide.jpg")
    photo(2, (64, 160)).save(root / "c_rotated.jpg", exif=exif)
    photo(3, (120, 120)).convert("CMYK").save(root / "d_cmyk.jpg")
    photo(4, (20, 25)).save(root / "e_small.jpg")
    photo(5, (50, 40)).convert("RGBA").save(root / "f_rgba.png")
    palette = photo(6, (70, 33)).convert("P")
    palette.save(root / "g_palette.png", transparency=0)
    gray16 = np.asarray(photo(7, (45, 45)).convert("L")).astype(np.uint16) * 257 + 100
    Image.fromarray(gray16).save(root / "h_16bit.png")
    photo(8, (32, 32)).convert("L").save(root / "i_gray_exact.png")
    photo(9, (90, 64)).convert("LA").save(root / "j_gray_alpha.png")
    return sorted(root.iterdir())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("resize", ["crop", "stretch"])
def test_sidecar_preprocessing_by_hand_matches_predict(cifar_run, mixed_files, resize, tmp_path):
    import dataclasses

    import onnxruntime

    from ssl_mix import load_run
    from ssl_mix.predict import iter_predictions

    run = load_run(cifar_run, device="cpu")
    run = dataclasses.replace(run, config=run.config.replace(data={"resize": resize}))
    predicted = torch.stack([p for _, p, _ in iter_predictions(load_predictor(run), mixed_files, num_workers=0,
                                                               progress=False)]).numpy()
    export_model(run, tmp_path / "model.onnx", format="onnx")
    export_model(run, tmp_path / "model.pt", format="torchscript")
    meta = json.loads(sidecar_path(tmp_path / "model.onnx").read_text())
    assert meta["input"]["resize"] == meta["preprocessing"]["decode"]["resize"]["policy"] == resize
    batch = np.stack([_preprocess_from_sidecar(path, meta) for path in mixed_files])
    assert batch.shape == (len(mixed_files), *meta["input"]["shape"][1:])
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": batch})[0], predicted, atol=1e-5, rtol=0)
    with torch.no_grad():
        scripted = torch.jit.load(str(tmp_path / "model.pt"))(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(scripted, predicted, atol=1e-5, rtol=0)
    # the draft step is what makes these files match: without it the large JPEGs give other pixels
    meta["preprocessing"]["decode"]["jpeg_draft"]["enabled"] = False
    undrafted = np.stack([_preprocess_from_sidecar(path, meta) for path in mixed_files])
    assert not np.array_equal(undrafted, batch)


def test_sidecar_states_the_model_steps(cifar_run, tmp_path):
    meta = export_model(cifar_run, tmp_path / "m.safetensors", format="safetensors")
    inside = meta["preprocessing"]["in_model"]
    assert inside["normalize"]["mean"] == pytest.approx(meta["mean"]) and len(inside["normalize"]["std"]) == 3
    assert inside["temperature"]["T"] == pytest.approx(meta["temperature"]) and inside["zca"]["applied"] is False
    decode = meta["preprocessing"]["decode"]
    assert decode["library"] == "Pillow" and decode["resize"]["filter"] == "BILINEAR"
    assert decode["jpeg_draft"]["request"] == [32, 32] and decode["channels"]["value"] == 3


def test_an_export_rebuilds_the_architecture_options(tmp_path):
    """A run of a cnn-small with other widths (the demo's) exports and loads back with those widths."""
    from ssl_mix import preset, run_experiment

    out = tmp_path / "run"
    run_experiment(preset("demo").replace(train={"steps": 2, "eval_every": 2, "out_dir": str(out), "progress": False,
                                                 "device": "cpu"}))
    meta = export_model(out, tmp_path / "m.safetensors", format="safetensors")
    assert meta["model_options"] == {"widths": [16, 32, 64]}
    loaded = load_export(tmp_path / "m.safetensors")
    assert loaded.model.stages[0][0].out_channels == 16
