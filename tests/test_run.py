import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_mix.checkpoint import load_checkpoint, save_checkpoint
from ssl_mix.cli import main
from ssl_mix.config import Config, preset
from ssl_mix.run import (
    CHECKPOINT_FORMAT,
    RESUMABLE_CHANGES,
    RunDir,
    check_checkpoint_format,
    check_resume,
    load_run,
    load_test_set,
    load_trained,
    update_checkpoint,
    write_json,
)

TINY = ["--model", "cnn-small", "--steps", "4", "--eval-every", "2", "--log-every", "2", "--checkpoint-every", "2",
        "--no-progress", "--device", "cpu", "--batch-size", "8", "--unlabeled-batch-size", "8"]


def _image_folder(root, classes=("cat", "dog"), train_per_class=12, test_per_class=5, size=8):
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 100, (size, size, 3)) + 120 * c  # the classes differ in brightness
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")
    return root


def test_run_dir_names_every_file_and_finds_checkpoints(tmp_path):
    run = RunDir(tmp_path / "r")
    names = {run.last.name, run.best.name, run.config.name, run.split.name, run.report.name,
             run.skipped_images.name, run.tensorboard.name, run.analysis.name}
    assert len(names) == 8 and all(p.parent == run.root for p in (run.last, run.config, run.tensorboard))
    with pytest.raises(FileNotFoundError, match="does not exist; pass a run directory"):
        RunDir.of_checkpoint(tmp_path / "missing.pt")
    run.root.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no last.pt"):
        RunDir.of_checkpoint(run.root)
    save_checkpoint({"format": CHECKPOINT_FORMAT}, run.best)
    assert RunDir.of_checkpoint(run.best) == (run, run.best)
    save_checkpoint({"format": CHECKPOINT_FORMAT}, run.last)
    assert RunDir.of_checkpoint(run.root) == (run, run.last)


def test_write_json_is_atomic_and_sorted(tmp_path, monkeypatch):
    path = write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"c": 3})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}  # the old file survives an interrupted write


@pytest.mark.parametrize("found, hint", [(1, "predates self-contained checkpoints"), (CHECKPOINT_FORMAT + 1, "newer"),
                                         (None, "format None")])
def test_checkpoints_of_another_format_are_refused_with_the_version(found, hint):
    with pytest.raises(ValueError, match=f"format {found!r}.*reads format {CHECKPOINT_FORMAT}.*|{hint}"):
        check_checkpoint_format({"format": found}, "x.pt")
    check_checkpoint_format({"format": CHECKPOINT_FORMAT}, "x.pt")


def test_resume_is_checked_against_the_checkpoint_itself():
    cfg = preset("demo")
    state = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict()}
    check_resume(cfg.replace(train={"steps": 5000, "progress": False}), state, "last.pt")  # longer is fine
    with pytest.raises(ValueError, match=r"cannot resume: .*\): method.k: 2 in the run -> 3 now\. Use the run's"):
        check_resume(cfg.replace(method={"k": 3}), state, "last.pt")
    # Many differences: the first few with both values, the rest by name.
    other = Config().replace(train={"out_dir": cfg.train.out_dir})
    diffs = [(s, k) for s, values in other.to_dict().items() for k, v in values.items()
             if cfg.to_dict()[s][k] != v and (s, k) not in RESUMABLE_CHANGES]
    assert len(diffs) > 7
    more = len(diffs) - 6
    last = rf"{diffs[-1][0]}.{diffs[-1][1]}"
    with pytest.raises(ValueError, match=rf"\): data.dataset: 'digits' in the run -> 'cifar10' now; .*; and {more} "
                                         rf"more: [\w.]+, .*{last}\. Use the run's"):
        check_resume(other, state, "last.pt")


def test_resume_without_a_checkpoint_starts_anew_and_says_so(tmp_path, capsys):
    out = tmp_path / "typo"
    assert main(["train", "--dataset", "digits", "--num-labels", "30", *TINY, "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"no checkpoint at {out / 'last.pt'}; starting a new run in {out}" in err


def test_checkpoints_are_self_contained(tmp_path, capsys):
    data = _image_folder(tmp_path / "photos")
    run = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-root", str(data), "--num-labels", "4", "--method", "ict",
                 *TINY, "--out", str(run)]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["format"] == CHECKPOINT_FORMAT
    info = state["data"]
    assert info["classes"] == ["cat", "dog"] and info["input_shape"] == [3, 8, 8] and info["dataset"] == "folder"
    assert len(info["spec"]["mean"]) == 3 and info["split"]["num_labeled"] == 4
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    before = capsys.readouterr().out
    assert main(["analyze", str(run), "--device", "cpu", "--num-pairs", "8", "--num-images", "10",
                 "--out", str(tmp_path / "a1")]) == 0
    analysis_before = json.loads((tmp_path / "a1" / "analysis.json").read_text())

    # The training folder goes away; a copy of only the test images stays elsewhere.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(data / "test", elsewhere / "test")
    shutil.rmtree(data)
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(run), "--dataset", "folder", "--data-root", str(elsewhere), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == before  # the same normalisation, hence the same numbers
    assert main(["analyze", str(run), "--data-root", str(elsewhere), "--device", "cpu", "--num-pairs", "8",
                 "--num-images", "10", "--out", str(tmp_path / "a2")]) == 0
    analysis_after = json.loads((tmp_path / "a2" / "analysis.json").read_text())
    assert analysis_after["linearity"]["final"] == analysis_before["linearity"]["final"]
    assert analysis_after["flattening"] == analysis_before["flattening"]

    loaded = load_run(run, device="cpu")
    assert loaded.classes == ["cat", "dog"] and loaded.input_shape == (3, 8, 8) and loaded.test is None
    assert loaded.step == 4 and loaded.run_dir == RunDir(run) and loaded.calibration is None
    x = torch.zeros(2, 3, 8, 8)
    assert loaded.models["teacher"](x).shape == (2, 2)


def test_a_test_set_of_another_shape_or_classes_is_refused(tmp_path):
    data = _image_folder(tmp_path / "photos")
    run = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-root", str(data), "--num-labels", "4", "--method", "erm",
                 *TINY, "--out", str(run)]) == 0
    bigger = _image_folder(tmp_path / "bigger", size=12)
    with pytest.raises(ValueError, match=r"test images are \(3, 12, 12\).*take \(3, 8, 8\)"):
        load_trained(run, data_root=str(bigger), device="cpu")
    other = _image_folder(tmp_path / "other", classes=("ant", "bee"))
    with pytest.raises(ValueError, match="class folder\\(s\\) ant, bee that the trained run lacks"):
        load_trained(run, data_root=str(other), device="cpu")
    digits_run = tmp_path / "digits"
    assert main(["train", "--dataset", "digits", "--num-labels", "30", "--method", "erm", *TINY, "--out",
                 str(digits_run)]) == 0
    renamed = load_run(digits_run, device="cpu")
    renamed.classes = [f"class {c}" for c in renamed.classes]
    with pytest.raises(ValueError, match="digits test set has classes"):
        load_test_set(renamed)


def test_update_checkpoint_adds_entries_atomically(tmp_path):
    path = save_checkpoint({"format": CHECKPOINT_FORMAT, "step": 3}, tmp_path / "last.pt")
    update_checkpoint(path, calibration={"temperature": {"teacher": 1.5}})
    state = load_checkpoint(path)
    assert state["step"] == 3 and state["calibration"]["temperature"]["teacher"] == 1.5
    save_checkpoint({"format": 1}, path)
    with pytest.raises(ValueError, match="format 1"):
        update_checkpoint(path, calibration={})
