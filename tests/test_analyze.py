"""ssl_mix.analysis.analyze: the analysis of a trained run, from Python and from ``ssl-mix analyze``."""

import json

import pytest
from test_plots import assert_png_with_content  # tests/ is on sys.path

from ssl_mix import analyze_run, format_analysis
from ssl_mix.cli import main

KEYS = ["0_stage1", "1_stage2", "2_stage3", "3_pooled", "4_logits"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("analyze") / "run"
    assert main(["train", "--dataset", "digits", "--model", "cnn-small", "--num-labels", "20", "--batch-size", "8",
                 "--unlabeled-batch-size", "8", "--steps", "4", "--eval-every", "4", "--log-every", "2",
                 "--linearity-every", "2", "--linearity-pairs", "16", "--out", str(run), "--no-progress"]) == 0
    return run


def test_analyze_run_measures_writes_and_returns_the_result(tiny_run):
    result = analyze_run(tiny_run, num_images=100, device="cpu")
    out = tiny_run / "analysis"
    assert json.loads((out / "analysis.json").read_text()) == json.loads(json.dumps(result))
    assert result["out_dir"] == str(out) and result["files"] == [
        "analysis.json", "linearity_final.png", "linearity_curves.png", "spectra_teacher.png", "spectra_student.png"]
    lin = result["linearity"]
    assert result["step"] == 4 and lin["settings"]["num_pairs"] == 16
    assert list(lin["final"]) == ["teacher", "student"] and list(lin["final"]["teacher"]) == KEYS
    assert all(0 < v <= 2 for values in lin["final"].values() for v in values.values())
    # With no validation split the trainer's probe draws from the test set with the run's seed and pair count, as
    # analyze_run does by default, so the final measurement on the teacher reproduces the last logged point.
    assert list(lin["history"]) == KEYS
    for key in KEYS:
        assert [step for step, _ in lin["history"][key]] == [2, 4]
        assert lin["history"][key][-1][1] == pytest.approx(lin["final"]["teacher"][key], rel=1e-4)
    flat = result["flattening"]
    assert flat["layer"] == 3 and flat["layer_name"] == "pooled" and flat["num_images"] == 100
    assert set(flat["teacher"]["classes"]) <= set(range(10))
    for name in result["files"][1:]:
        assert_png_with_content(out / name)
    text = format_analysis(result)
    assert "4_logits" in text and "significant directions" in text and str(out / "analysis.json") in text


def test_analyze_run_errors(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="layer must be 'input' or one of 0 \\(stage1\\), .* got 9"):
        analyze_run(tiny_run, layer=9, out_dir=tmp_path)
    with pytest.raises(ValueError, match="nothing to analyse"):
        analyze_run(tiny_run, linearity=False, flattening=False)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        analyze_run(tiny_run, num_images=0)
    with pytest.raises(FileNotFoundError, match="holds no last.pt"):
        analyze_run(tmp_path)


def test_analyze_cli_calls_analyze_run(tiny_run, tmp_path, capsys):
    # Only one analysis, from the checkpoint file, at another layer, into another directory.
    other = tmp_path / "other"
    assert main(["analyze", str(tiny_run / "last.pt"), "--flattening", "--layer", "0", "--num-images", "30",
                 "--out", str(other)]) == 0
    assert "significant directions" in capsys.readouterr().out
    result = json.loads((other / "analysis.json").read_text())
    assert "linearity" not in result and result["flattening"]["layer_name"] == "stage1"
    assert sorted(p.name for p in other.glob("*.png")) == ["spectra_student.png", "spectra_teacher.png"]

    assert main(["analyze", str(tiny_run), "--layer", "9"]) == 2
    assert "layer must be 'input' or one of 0 (stage1)" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
