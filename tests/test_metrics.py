import math

import pytest
import torch

from ssl_mix.metrics import ClassificationMetrics, expected_calibration_error


def test_ece_hand_computed():
    # Two bins used with 2 bins total: (0, .5] holds conf .4 (wrong); (.5, 1] holds .9 (right) and .7 (wrong).
    conf = torch.tensor([0.4, 0.9, 0.7])
    correct = torch.tensor([False, True, False])
    expected = (1 / 3) * abs(0.0 - 0.4) + (2 / 3) * abs(0.5 - 0.8)
    assert expected_calibration_error(conf, correct, num_bins=2).item() == pytest.approx(expected)


def test_ece_is_zero_when_perfectly_calibrated():
    conf = torch.full((4,), 0.75)
    correct = torch.tensor([True, True, True, False])
    assert expected_calibration_error(conf, correct).item() == pytest.approx(0.0, abs=1e-7)


def test_metrics_accumulate_over_batches_like_one_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 5, generator=g)
    targets = torch.randint(0, 5, (50,), generator=g)
    whole, parts = ClassificationMetrics(), ClassificationMetrics()
    whole.update(logits, targets)
    for lo, hi in ((0, 17), (17, 40), (40, 50)):
        parts.update(logits[lo:hi], targets[lo:hi])
    a, b = whole.compute(), parts.compute()
    assert a["count"] == b["count"] == 50
    for key in ("accuracy", "nll", "ece"):
        assert a[key] == pytest.approx(b[key], rel=1e-5)
    assert a["accuracy"] == pytest.approx(100.0 * (logits.argmax(1) == targets).float().mean().item())
    assert a["nll"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-5)


def test_metrics_errors():
    m = ClassificationMetrics()
    with pytest.raises(ValueError, match="no batches were added"):
        m.compute()
    with pytest.raises(ValueError, match=r"expected logits \(B, C\) and targets \(B,\)"):
        m.update(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="must be 1-D of the same length"):
        expected_calibration_error(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="num_bins must be >= 1"):
        expected_calibration_error(torch.zeros(3), torch.zeros(3), num_bins=0)
    assert math.isfinite(1.0)


def test_confusion_matrix_hand_computed():
    from ssl_mix.metrics import confusion_matrix, per_class_accuracy

    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 1, 0, 1, 1, 0, 2, 1, 2])
    matrix = confusion_matrix(preds, targets, 4)  # class 3 has no examples
    assert matrix.dtype == torch.int64
    assert matrix.tolist() == [[2, 1, 0, 0],
                               [0, 2, 0, 0],
                               [1, 1, 2, 0],
                               [0, 0, 0, 0]]
    accuracy = per_class_accuracy(matrix)
    assert accuracy[:3].tolist() == pytest.approx([200 / 3, 100.0, 50.0])
    assert math.isnan(accuracy[3])
    assert confusion_matrix(preds[:0], targets[:0], 2).tolist() == [[0, 0], [0, 0]]


def test_confusion_matrix_errors():
    from ssl_mix.metrics import confusion_matrix, per_class_accuracy

    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 2)
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 2\), got values from 0 to 2"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="square"):
        per_class_accuracy(torch.zeros(2, 3))
