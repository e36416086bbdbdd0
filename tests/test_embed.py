"""Embeddings from a frozen encoder (ssl_mix/embed.py), and the rest of the loop on the feature runs trained on them:
predict from the feature file and from images end to end, export of the head and of encoder + head."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ssl_mix
from ssl_mix.cli import main
from ssl_mix.data import read_feature_meta, read_features
from ssl_mix.embed import embed_images, encoder_from_record, encoder_predictor, load_encoder
from ssl_mix.export import export_model
from ssl_mix.run import load_run
from ssl_mix.weights import file_sha256


def _images(root: Path) -> Path:
    """A tiny image folder: train/{a,b}/ (6 each), test/{a,b}/ (2 each), PNGs of two sizes, class a darker."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for k, name in enumerate("ab"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (20, 24) if i % 2 else (28, 22)
                pixels = rng.integers(0, 128, (*size, 3)) + 127 * k
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def _weights(path: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(timm.create_model("test_resnet").state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A folder, a weights file, its embeddings (32x32 inputs) and an ICT head trained on them."""
    root = tmp_path_factory.mktemp("embed")
    images, weights = _images(root / "images"), _weights(root / "w.safetensors")
    features, run = root / "emb.npz", root / "run"
    assert main(["embed", str(images), "--encoder", "timm:test_resnet", "--pretrained-file", str(weights),
                 "--image-size", "32", "--out", str(features), "--cache-dir", str(root / "cache"),
                 "--no-progress"]) == 0
    assert main(["train", "--dataset", "features", "--data-root", str(features), "--model", "mlp", "--method", "ict",
                 "--steps", "20", "--num-labels", "4", "--widths", "64,32", "--out", str(run), "--device", "cpu",
                 "--no-progress"]) == 0
    return {"root": root, "images": images, "weights": weights, "features": features, "run": run}


def test_embed_is_deterministic_and_records_the_encoder_its_preprocessing_and_the_paths(tmp_path):
    images, weights = _images(tmp_path / "images"), _weights(tmp_path / "w.safetensors")
    encoder = load_encoder("timm:test_resnet", pretrained_file=weights)  # inputs as the pretrained config says
    first = embed_images(encoder, [images], tmp_path / "a.npz", batch_size=5, cache=tmp_path / "cache",
                         progress=False)
    again = load_encoder("timm:test_resnet", pretrained_file=weights)
    embed_images(again, [images], tmp_path / "b.npz", batch_size=5, cache=False, progress=False)
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert sorted(a.files) == ["classes", "meta", "x_test", "x_train", "y_test", "y_train"]
    for key in ("x_train", "y_train", "x_test", "y_test", "classes"):
        assert np.array_equal(a[key], b[key]), key
    assert a["x_train"].shape == (12, 96) and a["x_train"].dtype == np.float32
    assert a["y_train"].tolist() == [0] * 6 + [1] * 6 and a["classes"].tolist() == ["a", "b"]
    meta = read_feature_meta(tmp_path / "a.npz")
    assert meta == {k: v for k, v in first.items() if k != "out"}
    record = meta["encoder"]
    assert record["name"] == "timm:test_resnet" and record["kind"] == "timm"
    assert record["weights"] == {"model": "timm:test_resnet", "source": "file", "path": str(weights.resolve()),
                                 "sha256": file_sha256(weights)}
    prep = ssl_mix.pretrained_inputs("timm:test_resnet")
    assert record["preprocessing"] == {"image_size": list(prep["image_size"]), "channels": 3,
                                       "mean": list(prep["mean"]), "std": list(prep["std"]), "resize": "crop",
                                       "interpolation": prep["interpolation"], "zca": False}
    assert meta["paths"]["train"][0] == str(images / "train" / "a" / "0.png") and len(meta["paths"]["test"]) == 4
    # The features equal the network's pre-logits on the decoded, normalised images.
    net = encoder.inputs.model.network
    x = ssl_mix.decode_image(images / "test" / "b" / "1.png", image_size=prep["image_size"], channels=3)
    x = (x.float()[None] / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = net.forward_head(net.forward_features(x), pre_logits=True)
    assert torch.allclose(torch.from_numpy(a["x_test"][3]), expected[0], atol=1e-5)
    train, test = read_features(tmp_path / "a.npz")  # the meta array is accepted
    assert train.image_shape == (96, 1, 1) and len(test) == 4
    # Files or a flat folder give unlabeled rows.
    flat = embed_images(encoder, [images / "test" / "a", images / "test" / "b" / "0.png"], tmp_path / "c.npz",
                        cache=False, progress=False)
    c = np.load(tmp_path / "c.npz")
    assert c["y_train"].tolist() == [-1, -1, -1] and "classes" not in c.files and "x_test" not in c.files
    assert len(flat["paths"]["train"]) == 3
    # An unreadable file stops embedding, or with skip_bad_images is left out and listed.
    (images / "train" / "b" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ssl_mix.BadImageError, match=r"bad.png.*--skip-bad-images"):
        embed_images(encoder, [images], tmp_path / "d.npz", cache=False, progress=False)
    meta = embed_images(encoder, [images], tmp_path / "d.npz", cache=False, skip_bad_images=True, progress=False)
    d = np.load(tmp_path / "d.npz")
    assert np.array_equal(d["x_train"], a["x_train"]) and d["y_train"].tolist() == a["y_train"].tolist()
    assert [Path(p).name for p, _ in meta["skipped"]] == ["bad.png"] and len(meta["paths"]["train"]) == 12


def test_the_meta_array_must_be_a_json_object_and_other_arrays_are_still_refused(tmp_path):
    x = np.zeros((3, 2))
    np.savez(tmp_path / "f.npz", x_train=x, y_train=np.zeros(3), meta=np.array("[1, 2]"))
    with pytest.raises(ValueError, match=r"the 'meta' array must be one JSON object string"):
        read_feature_meta(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", x_train=x, y_train=np.zeros(3), extra=np.zeros(3))
    with pytest.raises(ValueError, match=r"unknown array\(s\) extra .* optionally x_test, y_test, classes and meta"):
        read_features(tmp_path / "g.npz")
    assert read_feature_meta(tmp_path / "g.npz") is None


def _probabilities(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {row["path"]: np.array([float(v) for k, v in row.items() if k.startswith("p_")]) for row in rows}


def test_a_head_on_embeddings_predicts_feature_files_and_images_end_to_end_alike(embedded, tmp_path):
    run = load_run(embedded["run"], device="cpu")
    assert run.encoder == read_feature_meta(embedded["features"])["encoder"]  # recorded when training
    assert main(["predict", str(embedded["run"]), str(embedded["features"]), "--out", str(tmp_path / "f.csv"),
                 "--probs"]) == 0
    assert main(["predict", str(embedded["run"]), str(embedded["images"]), "--out", str(tmp_path / "i.csv"),
                 "--probs", "--num-workers", "0", "--no-progress"]) == 0
    from_features, from_images = _probabilities(tmp_path / "f.csv"), _probabilities(tmp_path / "i.csv")
    assert sorted(from_features) == sorted(from_images) and len(from_images) == 16
    for path, probabilities in from_features.items():
        np.testing.assert_allclose(from_images[path], probabilities, atol=1e-5)
    # The Python API gives the same numbers, unrounded.
    train, test = read_features(embedded["features"])
    head = ssl_mix.load_predictor(run)
    e2e = encoder_predictor(run)
    listed = read_feature_meta(embedded["features"])["paths"]["test"]
    images = torch.stack([ssl_mix.decode_image(p, **e2e.decode_settings) for p in listed])
    torch.testing.assert_close(e2e.predict(images).probabilities, head.predict(test.images).probabilities,
                               atol=1e-5, rtol=0)
    # A CSV of features without a label column is predicted too, rows named train[i].
    columns = [f"f{i}" for i in range(train.image_shape[0])]
    lines = [",".join(columns)] + [",".join(f"{v:.9g}" for v in row) for row in test.images.flatten(1).tolist()]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    assert main(["predict", str(embedded["run"]), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "r.csv"),
                 "--probs"]) == 0
    rows = _probabilities(tmp_path / "r.csv")
    assert list(rows) == ["train[0]", "train[1]", "train[2]", "train[3]"]
    for i, path in enumerate(listed):
        np.testing.assert_allclose(rows[f"train[{i}]"], from_features[path], atol=1e-5)


def test_the_head_exports_to_onnx_and_torchscript_equal_to_eager_and_with_its_encoder(embedded, tmp_path):
    import onnxruntime

    run = load_run(embedded["run"], device="cpu")
    train, test = read_features(embedded["features"])
    # The embedded rows, and rows near the training mean, where this tiny head is not saturated (so that a missing
    # standardisation would show).
    mean, std = torch.tensor(run.spec.mean), torch.tensor(run.spec.std)
    probes = mean + 0.05 * std * torch.randn((8, len(mean)), generator=torch.Generator().manual_seed(0))
    x = torch.cat([train.images.flatten(1), test.images.flatten(1), probes.float()])
    with torch.no_grad():
        expected = ssl_mix.load_predictor(run).model(x.reshape(len(x), -1, 1, 1))
    assert ((expected[-8:, 0] > 0.05) & (expected[-8:, 0] < 0.95)).any()
    sidecar = export_model(run, tmp_path / "head.onnx", format="onnx")
    assert sidecar["input"]["shape"] == ["N", 96] and sidecar["input"]["dtype"] == "float32"
    assert sidecar["encoder"] == run.encoder
    session = onnxruntime.InferenceSession(str(tmp_path / "head.onnx"))
    (out,) = session.run(None, {"features": x.numpy()})
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-5)
    export_model(run, tmp_path / "head.pt", format="torchscript")
    export_model(run, tmp_path / "head.safetensors", format="safetensors")
    for path in ("head.pt", "head.safetensors"):
        with torch.no_grad():
            torch.testing.assert_close(ssl_mix.load_export(tmp_path / path)(x), expected, atol=1e-6, rtol=0)
    # Encoder + head: raw uint8 images in, the end-to-end predictor's probabilities out.
    e2e = encoder_predictor(run)
    listed = read_feature_meta(embedded["features"])["paths"]["test"]
    images = torch.stack([ssl_mix.decode_image(p, **e2e.decode_settings) for p in listed])
    sidecar = export_model(run, tmp_path / "e2e.onnx", format="onnx", with_encoder=True)
    assert sidecar["input"]["shape"] == ["N", 3, 32, 32] and sidecar["encoder"]["name"] == "timm:test_resnet"
    (out,) = onnxruntime.InferenceSession(str(tmp_path / "e2e.onnx")).run(None, {"images": images.numpy()})
    np.testing.assert_allclose(out, e2e.predict(images).probabilities.numpy(), atol=1e-5)
    assert main(["export", str(embedded["run"]), "--format", "torchscript", "--with-encoder", "--out",
                 str(tmp_path / "e2e.pt")]) == 0
    with torch.no_grad():
        torch.testing.assert_close(ssl_mix.load_export(tmp_path / "e2e.pt")(images),
                                   e2e.predict(images).probabilities, atol=1e-5, rtol=0)


def test_an_ssl_mix_run_is_an_encoder_with_its_own_preprocessing(tmp_path):
    from ssl_mix.models import get_stages

    images = _images(tmp_path / "images")
    run_dir = tmp_path / "image-run"
    assert main(["train", "--dataset", "folder", "--data-root", str(images), "--image-size", "16", "--model",
                 "cnn-small", "--num-labels", "4", "--steps", "1", "--out", str(run_dir), "--device", "cpu",
                 "--no-progress"]) == 0
    encoder = load_encoder(run_dir)
    record = encoder.record
    assert record["kind"] == "run" and record["weights"]["source"] == "run"
    assert record["weights"]["sha256"] == file_sha256(run_dir / "last.pt")
    run = load_run(run_dir, device="cpu")
    assert record["preprocessing"]["image_size"] == [16, 16]
    assert record["preprocessing"]["mean"] == list(run.spec.mean) and record["preprocessing"]["std"] == list(
        run.spec.std)
    embed_images(encoder, [images / "test"], tmp_path / "e.npz", cache=False, progress=False)
    x = np.load(tmp_path / "e.npz")["x_train"]
    paths = read_feature_meta(tmp_path / "e.npz")["paths"]["train"]
    batch = torch.stack([ssl_mix.decode_image(p, image_size=16, channels=3) for p in paths]).float() / 255
    mean, std = torch.tensor(run.spec.mean).view(1, -1, 1, 1), torch.tensor(run.spec.std).view(1, -1, 1, 1)
    h = (batch - mean) / std
    with torch.no_grad():
        for stage in get_stages(run.models["teacher"])[:-1]:  # up to the pooled features, before the classifier
            h = stage(h)
    np.testing.assert_allclose(x, h.flatten(1).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"image_size: an ssl_mix run encoder prepares images as the run was "):
        load_encoder(run_dir, image_size=32)
    with pytest.raises(ValueError, match=r"pretrained and pretrained_file apply to timm:NAME encoders"):
        load_encoder(run_dir, pretrained=True)


def test_embed_errors_say_what_to_do(embedded, tmp_path, capsys, monkeypatch):
    weights = embedded["weights"]
    for kwargs, what in (({}, "neither"), ({"pretrained": True, "pretrained_file": weights}, "both")):
        with pytest.raises(ValueError, match=rf"give its weights, either pretrained=True .* not {what}"):
            load_encoder("timm:test_resnet", **kwargs)
    with pytest.raises(FileNotFoundError, match=r"neither a timm model name .* nor an existing ssl_mix run"):
        load_encoder(tmp_path / "nothing")
    monkeypatch.setattr("ssl_mix.models.pretrained_inputs", lambda name: None)  # an architecture without one
    with pytest.raises(ValueError, match=r"no pretrained configuration for 'timm:test_resnet' .* give image_size, "
                                         r"mean, std \(ssl-mix embed --image-size"):
        load_encoder("timm:test_resnet", pretrained_file=weights)
    assert load_encoder("timm:test_resnet", pretrained_file=weights, image_size=8, mean=0.5, std=0.25).record[
        "preprocessing"]["std"] == [0.25] * 3
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"mean needs 1 or 3 values"):
        load_encoder("timm:test_resnet", pretrained_file=weights, mean=(0.1, 0.2))
    encoder = load_encoder("timm:test_resnet", pretrained_file=weights, image_size=8)
    with pytest.raises(ValueError, match=r"written as a .npz feature file; got out='x.csv'"):
        embed_images(encoder, [embedded["images"]], "x.csv")
    assert main(["embed", str(embedded["images"]), "--encoder", "timm:test_resnet", "--out",
                 str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err
    assert "ssl-mix embed: error: encoder 'timm:test_resnet': give its weights" in err and "Traceback" not in err
    # The record refuses weights that changed or went away.
    changed = tmp_path / "w.safetensors"
    changed.write_bytes(weights.read_bytes())
    record = load_encoder("timm:test_resnet", pretrained_file=changed, image_size=8).record
    _weights(changed)  # the same bytes: accepted
    encoder_from_record(record)
    changed.write_bytes(changed.read_bytes() + b" ")
    with pytest.raises(ValueError, match=r"changed since the features were made .* restore that file, or embed"):
        encoder_from_record(record)
    changed.unlink()
    with pytest.raises(FileNotFoundError, match=r"are gone; put the file back there, or embed the images again"):
        encoder_from_record(record)
    with pytest.raises(ValueError, match=r"not an encoder record of format 1"):
        encoder_from_record({"name": "x"})


def test_feature_run_errors_say_what_to_do(embedded, tmp_path, capsys):
    run = embedded["run"]
    np.savez(tmp_path / "plain.npz", **{k: v for k, v in np.load(embedded["features"]).items() if k != "meta"})
    plain = tmp_path / "plain-run"
    assert main(["train", "--dataset", "features", "--data-root", str(tmp_path / "plain.npz"), "--model", "mlp",
                 "--steps", "1", "--num-labels", "4", "--out", str(plain), "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    cases = [
        (["predict", str(plain), str(embedded["images"]), "--out", str(tmp_path / "p.csv")],
         "record no encoder (not made by ssl-mix embed), so it cannot predict images; predict a feature file"),
        (["predict", str(run), str(embedded["features"]), str(embedded["features"]), "--out", str(tmp_path / "p.csv")],
         "predicts one feature file (.npz, .csv, .parquet) at a time"),
        (["export", str(plain), "--format", "onnx", "--with-encoder", "--out", str(tmp_path / "m.onnx")],
         "no encoder (not made by ssl-mix embed), so there is no encoder to export; export the head alone"),
        (["export", str(run), "--format", "safetensors", "--with-encoder", "--out", str(tmp_path / "m.st")],
         "an export with the encoder is written as onnx or torchscript"),
        (["select", str(run), "--budget", "2", "--strategy", "entropy", "--out", str(tmp_path / "s.csv")],
         "choosing images to label and --add-labels are for image folders (--dataset 'folder')"),
    ]
    for command, message in cases:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (command, err)
    np.savez(tmp_path / "narrow.npz", x_train=np.zeros((2, 5)), y_train=np.zeros(2))
    with pytest.raises(ValueError, match=r"has 5 features per row but the run was trained on 96"):
        ssl_mix.predict_features(ssl_mix.load_predictor(run), tmp_path / "narrow.npz", tmp_path / "p.csv")
    image_run = tmp_path / "image-run"
    assert main(["train", "--dataset", "digits", "--model", "cnn-small", "--num-labels", "20", "--steps", "1",
                 "--out", str(image_run), "--device", "cpu", "--no-progress"]) == 0
    with pytest.raises(ValueError, match=r"this run takes images already, so drop it"):
        export_model(image_run, tmp_path / "m.onnx", format="onnx", with_encoder=True)
    with pytest.raises(ValueError, match=r"is a feature file, but this run takes images"):
        ssl_mix.predict_features(ssl_mix.load_predictor(image_run), embedded["features"], tmp_path / "p.csv")
    assert json.loads((image_run / "config.json").read_text())["data"]["dataset"] == "digits"
