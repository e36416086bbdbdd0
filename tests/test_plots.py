import json
import warnings

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from ssl_mix.analysis import (
    plot_linearity_comparison,
    plot_linearity_curves,
    plot_spectra,
    read_linearity_history,
    sort_layer_keys,
)
from ssl_mix.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png_with_content(path, size=None):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    if size is not None:
        assert pixels.shape[:2] == size
    # Something was drawn: a blank canvas has a single colour.
    assert np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0).shape[0] > 10


def test_linearity_curves_png(tmp_path):
    history = {"1_group1": [(10, 0.3), (20, 0.25)], "0_conv1": [(10, 0.1), (20, 0.12)], "10_fc": [(10, 0.4)]}
    path = plot_linearity_curves(history, tmp_path / "sub" / "curves.png")
    assert path == tmp_path / "sub" / "curves.png"
    assert_png_with_content(path, size=(450, 700))  # 7 x 4.5 inches at 100 dpi


def test_linearity_comparison_png(tmp_path):
    results = {"erm": {"0_conv1": 0.1, "1_group1": 0.2, "2_logits": 0.3},
               "ict[4]": {"0_conv1": 0.05, "2_logits": 0.1}}  # a missing layer leaves a gap
    assert_png_with_content(plot_linearity_comparison(results, tmp_path / "final.png"))


def test_spectra_png_with_tensors_lists_and_zeros(tmp_path):
    spectra = {0: torch.tensor([3.0, 1.0, 0.1, 0.0]), 1: [2.0, 0.5], 2: torch.zeros(3)}
    path = plot_spectra(spectra, tmp_path / "spectra.png", class_names=["zero", "one", "two"])
    assert_png_with_content(path)
    assert_png_with_content(plot_spectra(spectra, tmp_path / "raw.png", normalize=False))


def test_sort_layer_keys():
    keys = ["10_fc", "2_b", "input", "0_a", "extra", "1_c"]
    assert sort_layer_keys(keys) == ["input", "0_a", "1_c", "2_b", "10_fc", "extra"]


def test_read_linearity_history_keeps_last_value_per_step(tmp_path):
    with warnings.catch_warnings():
        # tensorboard's import path emits deprecation warnings from its dependencies on some versions.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(log_dir=str(tmp_path))
    for step, value in ((5, 0.5), (10, 0.4), (5, 0.45)):  # step 5 logged again, as after a resume
        writer.add_scalar("linearity/1_group1", value, step)
    writer.add_scalar("linearity/0_conv1", 0.1, 5)
    writer.add_scalar("train/loss", 2.0, 5)
    writer.close()
    history = read_linearity_history(tmp_path)
    assert list(history) == ["0_conv1", "1_group1"]
    assert history["1_group1"] == [(5, pytest.approx(0.45)), (10, pytest.approx(0.4))]
    assert read_linearity_history(tmp_path, prefix="none/") == {}


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="path must name a .png file"):
        plot_linearity_curves({"0_a": [(1, 0.1)]}, tmp_path / "curves.pdf")
    with pytest.raises(ValueError, match="history must be a non-empty mapping"):
        plot_linearity_curves({"0_a": []}, tmp_path / "curves.png")
    with pytest.raises(ValueError, match="results must be a non-empty mapping"):
        plot_linearity_comparison({}, tmp_path / "final.png")
    with pytest.raises(ValueError, match="singular_values must be a non-empty mapping"):
        plot_spectra({}, tmp_path / "spectra.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_linearity_history(tmp_path / "missing")


# --- ssl-mix analyze (end to end on a tiny run) ----------------------------------------------------------


def test_analyze_cli_on_a_tiny_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--model", "cnn-small", "--num-labels", "20", "--batch-size", "8",
                 "--unlabeled-batch-size", "8", "--steps", "4", "--eval-every", "4", "--log-every", "2",
                 "--linearity-every", "2", "--linearity-pairs", "16", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--num-images", "100"]) == 0
    printed = capsys.readouterr().out
    out = run / "analysis"
    result = json.loads((out / "analysis.json").read_text())
    keys = ["0_stage1", "1_stage2", "2_stage3", "3_pooled", "4_logits"]
    lin = result["linearity"]
    assert result["step"] == 4 and lin["settings"]["num_pairs"] == 16
    assert list(lin["final"]) == ["teacher", "student"] and list(lin["final"]["teacher"]) == keys
    assert all(0 < v <= 2 for values in lin["final"].values() for v in values.values())
    # The logged curves: steps 2 and 4, every layer. With no validation split the trainer's probe draws from
    # the test set with the run's seed and pair count, as analyze does by default, so the final measurement on
    # the teacher reproduces the last logged point.
    assert list(lin["history"]) == keys
    for key in keys:
        assert [step for step, _ in lin["history"][key]] == [2, 4]
        assert lin["history"][key][-1][1] == pytest.approx(lin["final"]["teacher"][key], rel=1e-4)
    flat = result["flattening"]
    assert flat["layer"] == 3 and flat["layer_name"] == "pooled" and flat["num_images"] == 100
    assert set(flat["teacher"]["classes"]) <= {str(c) for c in range(10)}
    for name in ("linearity_final", "linearity_curves", "spectra_teacher", "spectra_student"):
        assert_png_with_content(out / f"{name}.png")
    assert "4_logits" in printed and "significant directions" in printed

    # Only one analysis, from the checkpoint file, at another layer, into another directory.
    other = tmp_path / "other"
    assert main(["analyze", str(run / "last.pt"), "--flattening", "--layer", "0", "--num-images", "30",
                 "--out", str(other)]) == 0
    result = json.loads((other / "analysis.json").read_text())
    assert "linearity" not in result and result["flattening"]["layer_name"] == "stage1"
    assert sorted(p.name for p in other.glob("*.png")) == ["spectra_student.png", "spectra_teacher.png"]

    assert main(["analyze", str(run), "--layer", "9"]) == 2
    assert "--layer must be 'input' or one of 0 (stage1)" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
