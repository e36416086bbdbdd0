import warnings

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from ssl_mix.analysis import (
    plot_confusion_matrix,
    plot_linearity_comparison,
    plot_linearity_curves,
    plot_spectra,
    read_linearity_history,
    sort_layer_keys,
)

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


@pytest.mark.parametrize("num", [3, 60])
def test_confusion_matrix_png(tmp_path, num):
    matrix = torch.randint(0, 20, (num, num))
    matrix[0] = 0  # a class without test images
    classes = [f"class {i}" for i in range(num)]
    path = plot_confusion_matrix({"student": matrix, "teacher": matrix.T.contiguous()}, classes, tmp_path / "c.png")
    assert_png_with_content(path)
    with pytest.raises(ValueError, match=r"matrix 'student' has shape \(3, 3\), but 2 class names were given"):
        plot_confusion_matrix({"student": torch.zeros(3, 3)}, ["a", "b"], tmp_path / "d.png")
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_confusion_matrix({}, classes, tmp_path / "d.png")
