import numpy as np
import pytest
import torch
from torch import nn

from ssl_mix.analysis import (
    DEFAULT_THRESHOLD,
    class_singular_values,
    flattening,
    flattening_summary,
    normalized_spectrum,
    num_significant,
)


def subspace_points(n: int, dim: int, k: int, *, noise: float, seed: int) -> torch.Tensor:
    """n points on a random k-dimensional affine subspace of R^dim, plus isotropic noise."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, k, generator=g, dtype=torch.float64))
    offset = 5 * torch.randn(dim, generator=g, dtype=torch.float64)
    coords = torch.randn(n, k, generator=g, dtype=torch.float64)
    return coords @ basis.T + offset + noise * torch.randn(n, dim, generator=g, dtype=torch.float64)


def test_summary_recovers_the_dimension_of_each_class_subspace():
    dims = {0: 1, 1: 3, 2: 5}
    features = torch.cat([subspace_points(80, 24, k, noise=1e-4, seed=c) for c, k in dims.items()]).float()
    labels = torch.arange(3).repeat_interleave(80)
    spectra = class_singular_values(features, labels)
    summary = flattening_summary(spectra)
    assert summary["threshold"] == DEFAULT_THRESHOLD == 0.1
    assert {c: v["num_significant"] for c, v in summary["classes"].items()} == dims
    assert summary["mean_num_significant"] == pytest.approx(3.0)
    for c, k in dims.items():
        spectrum = summary["classes"][c]["normalized_spectrum"]
        assert spectrum[0] == 1.0 and len(spectrum) == 24
        assert spectrum[k] < 1e-3 < spectrum[k - 1]  # a clear gap after k directions, noise below it


def test_singular_values_match_numpy_and_ignore_offsets_and_unlabeled():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(30, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([2] * 12 + [0] * 15 + [-1] * 2 + [5])
    spectra = class_singular_values(features, labels)
    assert list(spectra) == [0, 2, 5]  # increasing class order, -1 (unlabeled) skipped
    for c in (0, 2):
        members = features[labels == c].numpy()
        expected = np.linalg.svd(members - members.mean(0), compute_uv=False)
        np.testing.assert_allclose(spectra[c].numpy(), expected, rtol=1e-10)
        assert spectra[c].dtype == torch.float64
    torch.testing.assert_close(spectra[5], torch.zeros(1, dtype=torch.float64))  # one example: nothing varies
    shifted = class_singular_values(features + torch.tensor([100.0, -3.0, 0.0, 7.0], dtype=torch.float64), labels)
    torch.testing.assert_close(shifted[0], spectra[0])  # centred per class


def test_images_are_flattened_and_half_precision_is_upcast():
    features = torch.randn(10, 2, 3, 3).half()
    spectra = class_singular_values(features, torch.zeros(10, dtype=torch.long))
    assert spectra[0].dtype == torch.float32 and spectra[0].shape == (10,)


def test_normalized_spectrum_and_num_significant():
    s = torch.tensor([4.0, 2.0, 0.4, 0.3, 0.0])
    torch.testing.assert_close(normalized_spectrum(s), torch.tensor([1.0, 0.5, 0.1, 0.075, 0.0]))
    assert num_significant(s) == 2  # 0.4 is not > 0.1 * 4
    assert num_significant(s, threshold=0.05) == 4
    assert num_significant(s, threshold=0.0) == 4  # exact zeros never count
    zeros = torch.zeros(3)
    assert num_significant(zeros) == 0
    torch.testing.assert_close(normalized_spectrum(zeros), zeros)


def test_flattening_runs_the_model_layer_in_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 4))
    model.train()
    images = torch.randn(40, 1, 4, 4)
    labels = torch.arange(4).repeat(10)
    spectra = flattening(model, images, labels, 2, batch_size=7)
    assert model.training  # eval mode was used and the mode restored
    with torch.no_grad():
        model.eval()
        expected = class_singular_values(model[2](model[1](model[0](images))), labels)
    assert list(spectra) == [0, 1, 2, 3]
    for c in spectra:
        torch.testing.assert_close(spectra[c], expected[c], rtol=1e-5, atol=1e-6)
    raw = flattening(model, images, labels, "input")
    torch.testing.assert_close(raw[1], class_singular_values(images, labels)[1])


def test_errors():
    features = torch.randn(6, 3)
    labels = torch.zeros(6, dtype=torch.long)
    with pytest.raises(TypeError, match="features must be a floating-point tensor"):
        class_singular_values(features.long(), labels)
    with pytest.raises(ValueError, match=r"features must have shape \(N, D\)"):
        class_singular_values(torch.randn(6), labels)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        class_singular_values(features, labels.float())
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(6,\)"):
        class_singular_values(features, labels[:5])
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\), got .*; a fraction of the largest singular"):
        num_significant(torch.ones(3), threshold=1.0)
    with pytest.raises(ValueError, match="singular values must be a non-empty 1-d"):
        normalized_spectrum(torch.ones(2, 2))
    with pytest.raises(ValueError, match="singular_values must be a non-empty mapping"):
        flattening_summary({})
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        flattening(nn.Sequential(nn.Flatten()), torch.zeros(2, 3, dtype=torch.uint8), labels[:2], 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        flattening(nn.Sequential(nn.Flatten()), features, labels, 0, batch_size=0)
    with pytest.raises(ValueError, match="layers must be"):
        flattening(nn.Sequential(nn.Flatten()), features, labels, 3)
