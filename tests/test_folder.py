"""Tests for ssl_mix/data/folder.py, files.py, labels.py, decode.py and streaming.py: image folders as users have
them, on real CIFAR-10 JPEGs rewritten at mixed sizes and modes: class folders and label files, extra unlabeled
folders, the decoded-image cache, streaming and broken files; each case ends in a trained run (through
``ssl-mix train``) or in the expected one-line error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_mix.cli import main
from ssl_mix.data import (
    BadImageError,
    ImageFileDataset,
    TensorDualLoader,
    TorchDualLoader,
    channel_stats,
    decode_files,
    folder_files,
    image_files,
    read_label_rows,
    read_labels,
    scan_files,
    spec_from_stats,
    unlabeled_dir_files,
)

MODES = ["RGB", "L", "RGBA", "P", "CMYK", "I;16", "EXIF"]


def _rewrite(source: Path, target: Path, index: int) -> Path:
    """``source`` at a size and in a mode that depend on ``index`` (all of MODES in turn)."""
    rng = np.random.default_rng(index)
    image = Image.open(source).convert("RGB")
    image = image.resize((int(rng.integers(20, 64)), int(rng.integers(20, 64))))
    mode = MODES[index % len(MODES)]
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("RGB", "EXIF", "CMYK"):
        target = target.with_suffix(".jpg")
        if mode == "EXIF":
            exif = Image.Exif()
            exif[0x0112] = 6  # stored sideways
            image.transpose(Image.Transpose.ROTATE_90).save(target, exif=exif.tobytes())
        else:
            image.convert(mode).save(target)
    else:
        target = target.with_suffix(".png")
        if mode == "I;16":
            Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257).save(target)
        elif mode == "P":
            image.quantize(64).save(target)
        else:
            image.convert(mode).save(target)
    return target


@pytest.fixture(scope="module")
def mixed(cifar10_jpeg_sample, tmp_path_factory) -> Path:
    """Real CIFAR-10 images at mixed sizes and modes in the class-folder layout (train/, test/, unlabeled/)."""
    root = tmp_path_factory.mktemp("mixed")
    sources = sorted(cifar10_jpeg_sample.glob("*/*/*.jpg"))
    for i, src in enumerate(sources):
        split, cls = src.parts[-3], src.parts[-2]
        if split == "train" and int(src.stem) >= 30:
            _rewrite(src, root / "unlabeled" / f"{cls}{src.stem}", i)
        else:
            _rewrite(src, root / split / cls / src.stem, i)
    return root


@pytest.fixture(scope="module")
def labeled_by_file(mixed, tmp_path_factory) -> tuple[Path, Path, Path]:
    """The same images with labels in a CSV: ``(root, labels.csv, an extra unlabeled folder elsewhere)``.

    Images sit in one flat folder; the file labels 12 cats, 6 dogs and 3 ships (imbalanced); the rest of the
    folder is unlabeled; ``test/<class>/`` stays the test set.
    """
    base = tmp_path_factory.mktemp("by-file")
    root, extra = base / "photos", base / "more"
    shutil.copytree(mixed / "test", root / "test")
    rows = ["path,label"]
    counts = {"cat": 12, "dog": 6, "ship": 3}
    (root / "all").mkdir(parents=True)
    for path in sorted((mixed / "train").glob("*/*")):
        name = f"{path.parent.name}_{path.name}"
        shutil.copy(path, root / "all" / name)
        if counts[path.parent.name] > 0:
            counts[path.parent.name] -= 1
            rows.append(f"all/{name},{path.parent.name}")
    shutil.copytree(mixed / "unlabeled", extra)
    labels = base / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return root, labels, extra


def _train(*args: str, out: Path, steps: int = 3) -> list[str]:
    return ["train", "--dataset", "folder", "--model", "cnn-small", "--method", "ict", "--steps", str(steps),
            "--batch-size", "8", "--unlabeled-batch-size", "8", "--eval-every", str(steps), "--no-progress",
            "--device", "cpu", "--out", str(out), *args]


def _fails(capsys, argv: list[str], *patterns: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for pattern in patterns:
        assert pattern in err, (pattern, err)
    return err


# --- listing and label files ------------------------------------------------------------------------------


def test_mixed_folder_needs_an_image_size_then_trains(mixed, tmp_path, capsys):
    _fails(capsys, _train("--data-root", str(mixed), "--num-labels", "9", out=tmp_path / "r"),
           "have different sizes", "pass --image-size N or --image-size H,W")
    assert main(_train("--data-root", str(mixed), "--num-labels", "9", "--image-size", "24,20", "--resize", "stretch",
                       out=tmp_path / "r")) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    config = json.loads((tmp_path / "r" / "config.json").read_text())["data"]
    assert config["image_size"] == [24, 20] and config["resize"] == "stretch" and config["channels"] is None
    # Evaluation decodes the (mixed-size) test folder as training did, from the settings recorded in the run.
    assert main(["eval", str(tmp_path / "r"), "--device", "cpu"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_label_file_errors_name_the_line(labeled_by_file, tmp_path, capsys):
    root, labels, _ = labeled_by_file
    good = labels.read_text().splitlines()
    cases = [
        (good[:3] + ["all/nothing_here.jpg,cat"], "line 4: all/nothing_here.jpg does not exist"),
        (good[:3] + [good[1]], f"line 4: {good[1].split(',')[0]} is listed again (first on line 2)"),
        (good[:2] + [good[2].split(",")[0] + ","], "line 3: " + good[2].split(",")[0] + " has an empty label"),
        (good[:2] + ["a,b,c"], "line 3: expected two fields path,label, got 3"),
        (good[:2] + ["test/cat/0000.jpg,cat"], "line 3: test/cat/0000.jpg lies in test/"),
        (good[:2] + ["../escape.jpg,cat"], "line 3: ../escape.jpg must be a path relative to the data root"),
    ]
    for lines, message in cases:
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match="bad.csv, " + message.replace("(", "\\(").replace(")", "\\)")):
            read_labels(bad, root)
        _fails(capsys, _train("--data-root", str(root), "--labels", str(bad), "--image-size", "16", out=tmp_path / "r"),
               message)
    with pytest.raises(FileNotFoundError, match="label file .*nowhere.csv does not exist"):
        read_labels(tmp_path / "nowhere.csv", root)
    (tmp_path / "headless.csv").write_text("\n".join(good[1:]) + "\n\n")  # the header is optional
    assert read_labels(tmp_path / "headless.csv", root) == read_labels(labels, root)


def test_label_file_listing(labeled_by_file):
    root, labels, extra = labeled_by_file
    named, classes = read_labels(labels, root)
    assert classes == ["cat", "dog", "ship"] and len(named) == 21
    train = folder_files(root, "train", labels=labels)
    assert len(train) == 90
    assert (train.targets >= 0).sum() == 21 and (train.targets == -1).sum() == 69
    assert torch.bincount(train.targets[train.targets >= 0]).tolist() == [12, 6, 3]
    test = folder_files(root, "test", labels=labels)
    assert len(test) == 30 and test.classes == classes
    assert len(folder_files(root, "unlabeled", labels=labels)) == 0
    assert len(unlabeled_dir_files([extra])) == 30
    with pytest.raises(FileNotFoundError, match="unlabeled directory .*nowhere does not exist"):
        unlabeled_dir_files([root / "nowhere"])
    (root / "test" / "zebra").mkdir()
    try:
        with pytest.raises(ValueError, match="class folder\\(s\\) zebra that the label file .* lacks"):
            folder_files(root, "test", labels=labels)
    finally:
        (root / "test" / "zebra").rmdir()


def _table(printed: str) -> dict[str, list[int]]:
    rows = {}
    for line in printed.splitlines()[1:]:
        parts = line.rsplit(None, 4)
        if len(parts) == 5 and all(p.isdigit() for p in parts[1:]):
            rows[parts[0]] = [int(p) for p in parts[1:]]
    return rows


def test_split_with_a_label_file_shows_per_class_counts(labeled_by_file, tmp_path, capsys):
    root, labels, _ = labeled_by_file
    out = tmp_path / "split.json"
    assert main(["split", "--dataset", "folder", "--data-root", str(root), "--labels", str(labels), "--seed", "0",
                 "--out", str(out)]) == 0
    rows = _table(capsys.readouterr().out)
    # Every labeled row, imbalanced as given; the images the file does not name are unlabeled.
    assert rows["cat"] == [12, 12, 0, 12] and rows["dog"] == [6, 6, 0, 6] and rows["ship"] == [3, 3, 0, 3]
    assert rows["(no label)"] == [69, 0, 0, 69] and rows["total"] == [90, 21, 0, 90]
    assert main(["split", "--dataset", "folder", "--data-root", str(root), "--labels", str(labels), "--seed", "0",
                 "--num-labels", "6", "--out", str(tmp_path / "six.json")]) == 0
    rows = _table(capsys.readouterr().out)  # a class-balanced subset of the rows
    assert [rows[c][1] for c in ("cat", "dog", "ship")] == [2, 2, 2]
    _fails(capsys, ["split", "--dataset", "folder", "--data-root", str(root), "--seed", "0", "--out", str(out)],
           "--num-labels is required")


def test_label_file_unlabeled_dirs_and_balanced_sampling_train(labeled_by_file, tmp_path, capsys):
    root, labels, extra = labeled_by_file
    run = tmp_path / "r"
    assert main(_train("--data-root", str(root), "--labels", str(labels), "--unlabeled-dir", str(extra),
                       "--image-size", "20", "--channels", "1", "--balance-labeled", "--num-valid-per-class", "1",
                       out=run)) == 0
    printed = capsys.readouterr().out
    assert "teacher  test" in printed and "valid" in printed
    split = json.loads((run / "split.json").read_text())
    assert split["balanced"] is False and split["num_labels"] == 18 and len(split["valid"]) == 3
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["labels"] == str(labels) and data["unlabeled_dirs"] == [str(extra)] and data["channels"] == 1
    assert not (run / "skipped_images.txt").exists()


# --- decoding, the cache and streaming --------------------------------------------------------------------


def test_decode_files_caches_and_invalidates(mixed, tmp_path, monkeypatch):
    files = folder_files(mixed, "test")
    first = decode_files(files, image_size=16, cache=tmp_path / "cache")
    assert first.arrays.images.shape == (30, 3, 16, 16) and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    import ssl_mix.data.decode as decode

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(decode, "decode_image", refuse)
    again = decode_files(files, image_size=16, cache=tmp_path / "cache")  # served from the cache
    assert torch.equal(again.arrays.images, first.arrays.images) and torch.equal(again.arrays.targets, files.targets)
    for change in ({"image_size": 17}, {"image_size": 16, "resize": "stretch"}, {"image_size": 16, "channels": 1}):
        with pytest.raises(AssertionError, match="decoded again"):
            decode_files(files, cache=tmp_path / "cache", **change)
    os.utime(files.paths[3], ns=(1, 1))  # a touched file is a new key
    with pytest.raises(AssertionError, match="decoded again"):
        decode_files(files, image_size=16, cache=tmp_path / "cache")
    monkeypatch.undo()
    uncached = decode_files(files, image_size=16, cache=False)
    assert torch.equal(uncached.arrays.images, first.arrays.images)


def test_scan_and_streaming_match_the_decoded_pool(mixed, tmp_path):
    files = folder_files(mixed, "train")
    decoded = decode_files(files, image_size=20, cache=False)
    scan = scan_files(files, image_size=20, cache=tmp_path / "cache")
    assert scan.image_shape == decoded.arrays.image_shape == (3, 20, 20)
    assert np.allclose(scan.mean, channel_stats(decoded.arrays.images)[0], atol=0, rtol=0)
    assert scan_files(files, image_size=20, cache=tmp_path / "cache").std == scan.std  # cached
    dataset = ImageFileDataset(files, scan.image_shape, image_size=20)
    for i in (0, 5, 44, 89):  # the on-the-fly decode is the in-memory decode
        image, target = dataset[i]
        assert torch.equal(image, decoded.arrays.images[i]) and target == int(files.targets[i])
    # The streaming loader is exactly resumable: a loader resumed at step 2 continues with the same batches.
    # Augmented in batches on the device (as training streams), they are the tensor loader's batches exactly.
    unlabeled = ImageFileDataset(files, scan.image_shape, image_size=20, labeled=False)
    spec = spec_from_stats("folder", len(files.classes), scan.mean, scan.std, 20)
    make = lambda: TorchDualLoader(dataset, unlabeled, batch_size=4, seed=3, num_workers=0,  # noqa: E731
                                   balance_labeled=files.targets, spec=spec)
    loader = make()
    batches = [b for _, b in zip(range(4), loader, strict=False)]
    in_memory = TensorDualLoader(decoded.arrays, decoded.arrays, spec, batch_size=4,
                                 seed=3, balance_labeled=True)
    for a, b in zip(batches, in_memory, strict=False):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    resumed = make()
    state = loader.state_dict()
    state["step"] = 2
    resumed.load_state_dict(state)
    for a, b in zip(batches[2:], resumed, strict=False):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="different sizes"):
        scan_files(files, cache=False)


def test_streaming_run_chosen_by_the_memory_budget(mixed, tmp_path, capsys):
    assert main(_train("--data-root", str(mixed), "--num-labels", "9", "--image-size", "16", "--max-memory-gb",
                       "0.00005", out=tmp_path / "r")) == 0
    captured = capsys.readouterr()
    assert "more than --max-memory-gb 5e-05; streaming the images from their files" in captured.err
    assert "trained 3 steps" in captured.out


# --- broken files -----------------------------------------------------------------------------------------


def test_broken_files_stop_the_run_or_are_skipped_and_listed(mixed, tmp_path, capsys, write_broken_images):
    root = tmp_path / "broken"
    shutil.copytree(mixed, root)
    names = write_broken_images(root / "unlabeled", sorted((root / "unlabeled").glob("*.jpg"))[0].read_bytes())
    assert [p.name for p in image_files(root / "unlabeled") if p.name.startswith("zz")] == names
    err = _fails(capsys, _train("--data-root", str(root), "--num-labels", "9", "--image-size", "16",
                                out=tmp_path / "r"), "cannot read image", "--skip-bad-images", "5 more unreadable")
    assert all(name in err for name in names[:5])
    for loader in ("tensor", "torch"):
        run = tmp_path / loader
        assert main(_train("--data-root", str(root), "--num-labels", "9", "--image-size", "16", "--skip-bad-images",
                           "--loader", loader, out=run)) == 0
        captured = capsys.readouterr()
        assert "skipped 6 unreadable image file(s)" in captured.err and "trained 3 steps" in captured.out
        listed = (run / "skipped_images.txt").read_text().splitlines()
        assert [Path(line.split("\t")[0]).name for line in listed] == names
        assert "empty (0 bytes)" in listed[0] and "truncated" in listed[-1]
    with pytest.raises(BadImageError, match="zz_empty.jpg"):
        decode_files(folder_files(root, "unlabeled"), image_size=16, cache=False)


def test_label_rows_by_header_with_empty_labels_skipped(labeled_by_file, tmp_path):
    root, labels, _ = labeled_by_file
    rows = [line.split(",") for line in labels.read_text().splitlines()[1:4]]
    picks = tmp_path / "picks.csv"
    picks.write_text("path,guess,confidence,label\n" + f"{rows[0][0]},dog,0.4,{rows[0][1]}\n"
                     + f"{rows[1][0]},dog,0.3,\n" + f"{rows[2][0]},cat,0.2,{rows[2][1]}\n")
    read = read_label_rows(picks, root, skip_empty=True)
    assert read.labels == {rows[0][0]: rows[0][1], rows[2][0]: rows[2][1]}
    assert read.lines == {rows[0][0]: 2, rows[2][0]: 4} and read.skipped == 1
    with pytest.raises(ValueError, match=r"picks\.csv, line 3: .* has an empty label"):
        read_label_rows(picks, root)
    picks.write_text("path,guess,confidence,label\n" + f"{rows[0][0]},dog,{rows[0][1]}\n")
    with pytest.raises(ValueError, match=r"line 2: expected 4 fields like the header, got 3"):
        read_label_rows(picks, root, skip_empty=True)


def test_label_typo_is_an_error_unless_allowed(labeled_by_file, tmp_path, capsys):
    # On earlier code a typo such as 'dogg' trained a model with one more class, exit 0.
    root, labels, _ = labeled_by_file
    lines = labels.read_text().splitlines()
    typo = lines[:-1] + [lines[-1].rsplit(",", 1)[0] + ",dogg"]
    bad = tmp_path / "labels.csv"
    bad.write_text("\n".join(typo) + "\n")
    common = ("--data-root", str(root), "--labels", str(bad), "--image-size", "16")
    _fails(capsys, _train(*common, out=tmp_path / "r"),
           f"labels.csv line {len(typo)}: class 'dogg' has 1 row and differs by one character from 'dog' (6 rows)",
           "--no-check-labels")
    _fails(capsys, ["split", "--dataset", "folder", "--data-root", str(root), "--labels", str(bad),
                    "--seed", "0", "--out", str(tmp_path / "s.json")], "class 'dogg' has 1 row")
    _fails(capsys, _train(*common, "--classes", "cat,dog,ship", out=tmp_path / "r"),
           f"labels.csv line {len(typo)}: label 'dogg' is not one of the classes of --classes (nearest: 'dog')")
    assert main(_train(*common, "--no-check-labels", "--steps", "1", out=tmp_path / "r")) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data"]["check_labels"] is False


def test_preset_budget_gives_way_to_a_label_file(labeled_by_file, tmp_path, capsys):
    root, labels, _ = labeled_by_file
    common = ["--preset", "cpu-cifar10", "--data-root", str(root), "--image-size", "16"]
    assert main(_train(*common, "--labels", str(labels), "--steps", "1", out=tmp_path / "r")) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data"]["num_labels"] is None
    # A budget the user gives is still checked against the file.
    capsys.readouterr()
    assert main(_train(*common, "--labels", str(labels), "--num-labels", "1000", out=tmp_path / "r2")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "num_labels=1000" in err.replace("--num-labels ", "num_labels="), err
    split = tmp_path / "s.json"
    assert main(["split", "--dataset", "folder", "--data-root", str(root), "--labels", str(labels), "--seed", "0",
                 "--num-labels", "9", "--out", str(split)]) == 0
    assert main(_train(*common, "--labels", str(labels), "--split", str(split), "--steps", "1",
                       out=tmp_path / "r3")) == 0
    assert json.loads((tmp_path / "r3" / "config.json").read_text())["data"]["num_labels"] is None
