"""Temperature scaling: the fit recovers a known temperature, changes no prediction, is stored in the run's
checkpoints at the end of training and by ``ssl-mix calibrate``, and ``ssl-mix eval`` reports it."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ssl_mix.calibration as calibration_module
from ssl_mix import (
    MIN_RELIABLE_VALID,
    NoValidationSplitError,
    calibrate_models,
    calibrate_run,
    calibration_metrics,
    fit_temperature,
    load_checkpoint,
    plot_reliability,
    preset,
    reliability_bins,
    run_experiment,
    safe_temperature,
    scale_logits,
)
from ssl_mix.cli import main


def _overconfident(n=20000, classes=10, temperature=2.5, seed=0):
    """Logits whose calibrated version is known: labels drawn from softmax(z), observed logits z * temperature."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 1.5
    targets = torch.multinomial(z.softmax(dim=1), 1, generator=g).squeeze(1)
    return z * temperature, targets


@pytest.mark.parametrize("true_t", [2.5, 0.5])
def test_fit_temperature_recovers_the_generating_temperature(true_t):
    logits, targets = _overconfident(temperature=true_t)
    assert fit_temperature(logits, targets) == pytest.approx(true_t, rel=0.05)


def test_scaling_keeps_accuracy_and_lowers_nll_and_ece():
    logits, targets = _overconfident()
    t = fit_temperature(logits, targets)
    metrics = calibration_metrics(logits, targets, t)
    assert metrics["before"]["accuracy"] == metrics["after"]["accuracy"]
    assert metrics["after"]["nll"] < metrics["before"]["nll"]
    assert metrics["after"]["ece"] < 1.5 < metrics["before"]["ece"]
    assert torch.equal(scale_logits(logits, t).argmax(1), logits.argmax(1))
    # T = 1 is a candidate of the fit, so on the fitting set the NLL never gets worse.
    assert metrics["after"]["nll"] <= calibration_metrics(logits, targets, 1.0)["after"]["nll"] + 1e-9


def test_calibration_errors():
    with pytest.raises(ValueError, match="logits \\(N, C\\) and targets \\(N,\\)"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-finite logits"):
        fit_temperature(torch.tensor([[math.nan, 0.0]]), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        scale_logits(torch.zeros(1, 2), 0.0)
    with pytest.raises(NoValidationSplitError, match="--num-valid-per-class"):
        calibrate_models({}, None, None)


def test_safe_temperature_never_raises_the_fitting_sets_nll(monkeypatch):
    logits, targets = _overconfident(n=2000)
    assert safe_temperature(logits, targets) == fit_temperature(logits, targets)
    # A fit that went wrong (here forced to T = 50 on over-confident logits whose best T is 2.5) falls back to 1.
    monkeypatch.setattr(calibration_module, "fit_temperature", lambda z, y: 50.0)
    nll = torch.nn.functional.cross_entropy
    assert nll(logits / 50.0, targets) > nll(logits, targets)
    assert calibration_module.safe_temperature(logits, targets) == 1.0


class _Fixed(torch.nn.Module):
    """A "model" returning stored logits for its inputs' first pixel (an index), to calibrate known logits."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x):
        return self.table[x.flatten(1)[:, 0].round().long()]


def test_calibrating_on_a_small_split_warns_and_says_how_many_to_add(capsys):
    from ssl_mix import DataSpec, ImageArrays

    logits, targets = _overconfident(n=50)
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    valid = ImageArrays(images, targets, [str(c) for c in range(10)])
    spec = DataSpec("custom", 10, (0.0,), (1 / 255,), crop_padding=0, flip=False)
    record = calibrate_models({"teacher": _Fixed(logits)}, valid, spec)
    err = capsys.readouterr().err
    assert "fitted on 50 validation image(s)" in err and f"at least {MIN_RELIABLE_VALID - 50}" in err
    assert record["reliable"] is False and record["count"] == 50
    assert record["temperature"]["teacher"] == pytest.approx(safe_temperature(logits, targets))


def test_reliability_bins_by_hand():
    confidence = torch.tensor([0.1, 0.15, 0.9, 0.95, 1.0])
    correct = torch.tensor([0, 1, 1, 1, 0])
    count, mean_conf, accuracy = reliability_bins(confidence, correct, num_bins=2)
    assert count.tolist() == [2, 3]
    assert mean_conf[0].item() == pytest.approx(0.125) and accuracy[1].item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="1-D of the same length"):
        reliability_bins(confidence, correct[:2])


def test_plot_reliability(tmp_path):
    logits, targets = _overconfident(n=500)
    path = plot_reliability({"raw": (logits.softmax(1), targets)}, tmp_path / "r.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_reliability({}, tmp_path / "r.png")
    with pytest.raises(ValueError, match=".png"):
        plot_reliability({"raw": (logits.softmax(1), targets)}, tmp_path / "r.jpg")


def test_training_with_a_validation_split_stores_the_temperatures(cifar_run):
    report = json.loads((cifar_run / "report.json").read_text())
    for name in ("last.pt", "best.pt"):
        calibration = load_checkpoint(cifar_run / name)["calibration"]
        assert report["calibration"][name]["temperature"] == calibration["temperature"]
        assert calibration["fitted_on"] == "valid" and calibration["count"] == 100
        assert calibration["reliable"] is False  # 100 < MIN_RELIABLE_VALID
        assert set(calibration["temperature"]) == {"student", "teacher"}
        assert all(t > 0 for t in calibration["temperature"].values())
        teacher = calibration["valid"]["teacher"]
        assert teacher["after"]["nll"] <= teacher["before"]["nll"] + 1e-6
        assert teacher["after"]["accuracy"] == teacher["before"]["accuracy"]


def test_calibrate_cli_refits_the_same_temperature(cifar_run, capsys):
    before = load_checkpoint(cifar_run / "last.pt")["calibration"]["temperature"]
    assert main(["calibrate", str(cifar_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "best.pt" in out and "teacher  T=" in out
    after = calibrate_run(cifar_run / "last.pt", device="cpu")[str(cifar_run / "last.pt")]["temperature"]
    assert after["teacher"] == pytest.approx(before["teacher"], rel=1e-6)


def test_eval_reports_before_and_after_and_plots(cifar_run, tmp_path, capsys):
    png = tmp_path / "reliability.png"
    assert main(["eval", str(cifar_run / "last.pt"), "--device", "cpu", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.count("calibrated (T=") == 2 and png.stat().st_size > 1000
    assert "teacher per class (accuracy on the class's test images" in out
    assert "teacher confusion matrix (rows: true class, columns: predicted" in out
    confusion = tmp_path / "reliability-confusion.png"
    assert confusion.stat().st_size > 1000 and f"wrote {confusion}" in out


def test_no_validation_split_says_how_to_add_one(tmp_path, capsys):
    cfg = preset("demo").replace(method={"name": "erm"}, train={"steps": 2, "out_dir": str(tmp_path / "run"),
                                                               "progress": False, "device": "cpu"})
    report = run_experiment(cfg)
    assert "calibration" not in report and "calibration" not in load_checkpoint(tmp_path / "run/last.pt")
    with pytest.raises(NoValidationSplitError, match="--num-valid-per-class"):
        calibrate_run(tmp_path / "run", device="cpu")
    assert main(["calibrate", str(tmp_path / "run")]) == 2
    assert "--num-valid-per-class" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run/last.pt"), "--device", "cpu"]) == 0
    assert "not calibrated" in capsys.readouterr().out


def test_train_summary_prints_the_temperatures_and_warns_on_a_small_split(tmp_path, capsys):
    argv = ["train", "--preset", "demo", "--method", "erm", "--num-valid-per-class", "3", "--steps", "2",
            "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.count("fitted on 30 validation image(s)") == 1  # once, not once per checkpoint
    for checkpoint in ("last.pt", "best.pt"):
        for model in ("student", "teacher"):
            assert f"calibrated {checkpoint} {model}: T=" in captured.out
    assert "on 30 validation images, ece " in captured.out
