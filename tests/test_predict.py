"""Prediction: any image in, the run's input format and calibrated probabilities out; files streamed to CSV or JSON
lines with unreadable files reported, never a traceback."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_mix import InferenceModel, Predictor, find_images, load_predictor, load_run, predict_files
from ssl_mix.atomic import temporary_name
from ssl_mix.cli import main
from ssl_mix.data import decode_image


def _load(path):
    with Image.open(path) as image:
        image.load()
        return image


@pytest.fixture(scope="module")
def predictor(cifar_run) -> Predictor:
    return load_predictor(cifar_run, device="cpu")


@pytest.fixture(scope="module")
def photos(cifar10_jpeg_small, tmp_path_factory):
    """A folder of real images in many modes and sizes, a broken file, and a non-image file that is ignored."""
    root = tmp_path_factory.mktemp("photos")
    source = sorted((cifar10_jpeg_small / "test" / "cat").iterdir())
    base = _load(source[0]).convert("RGB")
    (root / "nested/deeper").mkdir(parents=True)
    base.save(root / "a_rgb.jpg")
    base.convert("L").save(root / "b_gray.png")
    base.convert("RGBA").save(root / "c_rgba.png")
    base.convert("P").save(root / "d_palette.png")
    Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257).save(root / "e_16bit.png")
    base.resize((97, 61)).save(root / "nested/f_large.jpg")
    for i, path in enumerate(source[1:4]):
        _load(path).save(root / f"nested/deeper/g{i}.jpg")
    (root / "z_broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_predict_accepts_pil_arrays_and_tensors(predictor, photos):
    images = [_load(p) for p in sorted(photos.glob("*.png"))] + [np.zeros((40, 50, 3), np.uint8),
                                                                      torch.full((1, 32, 32), 0.5)]
    out = predictor.predict(images)
    assert out.probabilities.shape == (len(images), 10) and len(out.names) == len(images)
    assert torch.allclose(out.probabilities.sum(1), torch.ones(len(images)), atol=1e-5)
    assert out.names == [predictor.classes[i] for i in out.indices.tolist()]
    assert torch.equal(out.confidence, out.probabilities.max(1).values)
    single = predictor.predict(images[0])
    assert torch.allclose(single.probabilities[0], out.probabilities[0], atol=1e-6)
    with pytest.raises(TypeError, match="PIL images, arrays or tensors"):
        predictor.predict("cat.jpg")
    with pytest.raises(ValueError, match="no images"):
        predictor.predict([])


def test_model_takes_uint8_or_float_and_applies_the_temperature(predictor, cifar_run):
    run = load_run(cifar_run, device="cpu")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    model = predictor.model
    assert isinstance(model, InferenceModel)
    assert float(model.temperature) == pytest.approx(run.calibration["temperature"]["teacher"])
    assert torch.allclose(model(x), model(x.float() / 255), atol=1e-6)
    mean, std = torch.tensor(run.spec.mean).view(1, 3, 1, 1), torch.tensor(run.spec.std).view(1, 3, 1, 1)
    logits = run.models["teacher"]((x.float() / 255 - mean) / std)
    expected = (logits / run.calibration["temperature"]["teacher"]).softmax(1)
    assert torch.allclose(model(x), expected, atol=1e-6)
    raw = load_predictor(run, calibrated=False)
    assert float(raw.model.temperature) == 1.0 and torch.allclose(raw.model(x), logits.softmax(1), atol=1e-6)
    with pytest.raises(ValueError, match="output must be one of 'probabilities', 'logits'"):
        InferenceModel(run.models["teacher"], run.spec.mean, run.spec.std, output="scores")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        InferenceModel(run.models["teacher"], run.spec.mean, run.spec.std, temperature=0.0)


def test_find_images(photos, tmp_path):
    found = find_images([photos])
    assert [p.name for p in found][:2] == ["a_rgb.jpg", "b_gray.png"] and len(found) == 10
    assert all(p.suffix != ".txt" for p in found)
    assert find_images([str(photos / "*.png"), photos / "a_rgb.jpg", photos / "a_rgb.jpg"]) == \
        sorted(photos.glob("*.png")) + [photos / "a_rgb.jpg"]
    assert len(find_images([str(photos / "**" / "*.jpg")])) == 6
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        find_images([str(tmp_path / "*.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        find_images([tmp_path / "empty"])


def test_predict_files_csv_matches_predict_and_reports_unreadable_files(predictor, photos, tmp_path):
    out = tmp_path / "pred.csv"
    result = predict_files(predictor, [photos], out, top_k=3, probabilities=True, batch_size=4, num_workers=0,
                           progress=False)
    assert result["count"] == 10 and result["predicted"] == 9 and not list(tmp_path.glob(temporary_name(out)))
    assert result["skipped"][0][0].endswith("z_broken.jpg") and "cannot read image" in result["skipped"][0][1]
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["path"] for r in rows] == [str(p) for p in find_images([photos])]
    assert rows[-1]["error"] and rows[-1]["prediction"] == ""
    assert list(rows[0])[:5] == ["path", "prediction", "confidence", "top1_class", "top1_probability"]
    assert "p_airplane" in rows[0] and "top3_probability" in rows[0]
    settings = {"image_size": predictor.image_size, "channels": predictor.channels, "resize": predictor.resize}
    expected = predictor.predict(torch.stack([decode_image(r["path"], **settings) for r in rows[:-1]]))
    assert [r["prediction"] for r in rows[:-1]] == expected.names
    for row, p in zip(rows[:-1], expected.probabilities, strict=True):
        assert float(row["confidence"]) == pytest.approx(float(p.max()), abs=2e-6)
        assert sum(float(row[f"p_{c}"]) for c in predictor.classes) == pytest.approx(1.0, abs=1e-4)


def test_predict_files_jsonl_and_errors(predictor, cifar_run, photos, tmp_path):
    out = tmp_path / "pred.jsonl"
    predict_files(predictor, [photos / "a_rgb.jpg", photos / "z_broken.jpg"], out, top_k=2, num_workers=1,
                  progress=False)
    first, broken = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["prediction"] == first["top_k"][0]["class"] and len(first["top_k"]) == 2 and first["error"] is None
    assert broken["prediction"] is None and "z_broken.jpg" in broken["error"]
    with pytest.raises(ValueError, match="z_broken.jpg.*strict mode"):
        predict_files(predictor, [photos], tmp_path / "s.csv", strict=True, num_workers=0, progress=False)
    assert not (tmp_path / "s.csv").exists() and not list(tmp_path.glob(temporary_name("s.csv")))
    with pytest.raises(ValueError, match="must end in .csv"):
        predict_files(predictor, [photos], tmp_path / "p.txt")
    with pytest.raises(ValueError, match="top_k must be at most 10 \\(the number of classes\\), got 11"):
        predict_files(predictor, [photos], out, top_k=11)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        predict_files(predictor, [photos], out, batch_size=0)
    with pytest.raises(ValueError, match="which must be one of 'student', 'teacher'"):
        load_predictor(cifar_run, which="ema", device="cpu")


def test_predict_cli(cifar_run, photos, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["predict", str(cifar_run), str(photos), "--out", str(out), "--top-k", "2", "--num-workers", "0",
                 "--device", "cpu", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "wrote 9 predictions" in captured.out and "skipped 1 unreadable file" in captured.err
    assert "z_broken.jpg" in captured.err and len(out.read_text().splitlines()) == 11
    assert main(["predict", str(cifar_run), str(photos), "--out", str(out), "--strict", "--num-workers", "0",
                 "--no-progress"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["predict", str(cifar_run), str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
