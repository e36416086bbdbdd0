"""Tests for ssl_mix/inference.py's evaluation report: evaluate_run's per-class accuracy and confusion matrix, and
format_evaluation, what ssl-mix eval prints."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_mix.inference import RunEvaluation, evaluate_run, format_evaluation
from ssl_mix.metrics import confusion_matrix, per_class_accuracy


def _evaluation(matrix: torch.Tensor, classes: list[str]) -> RunEvaluation:
    metrics = {"accuracy": 50.0, "nll": 1.0, "ece": 5.0, "count": int(matrix.sum())}
    record = {"temperature": 1.0, "before": metrics, "after": metrics, "confusion": matrix,
              "per_class_accuracy": per_class_accuracy(matrix)}
    return RunEvaluation("folder", 7, False, {"student": dict(record), "teacher": record}, {}, classes)


def test_evaluate_run_counts_every_test_image_once_per_model(cifar_run):
    result = evaluate_run(cifar_run, device="cpu")
    assert len(result.classes) == 10 and result.classes[0] == "airplane"
    for record in result.models.values():
        matrix, accuracy = record["confusion"], record["per_class_accuracy"]
        assert matrix.shape == (10, 10) and int(matrix.sum()) == record["before"]["count"]
        assert float(matrix.diagonal().sum()) / float(matrix.sum()) * 100 == pytest.approx(
            record["before"]["accuracy"])
        assert accuracy.tolist() == pytest.approx(per_class_accuracy(matrix).tolist(), nan_ok=True)


def test_format_evaluation_prints_a_class_table_and_the_matrix():
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 1, 0, 2])
    text = format_evaluation(_evaluation(confusion_matrix(preds, targets, 4), ["shoe", "sneaker", "bag", "hat"]))
    lines = text.splitlines()
    assert lines[0].startswith("student  folder test accuracy 50.00%") and "(7 images, step 7)" in lines[0]
    assert lines[2].startswith("not calibrated")
    assert lines[3].startswith("teacher per class")
    assert lines[4].split() == ["#", "class", "images", "accuracy", "most", "confused", "with"]
    assert lines[5].split() == ["0", "shoe", "4", "50.00%", "sneaker", "(2)"]
    assert lines[6].split() == ["1", "sneaker", "2", "50.00%", "shoe", "(1)"]
    assert lines[7].split() == ["2", "bag", "1", "100.00%", "-"]
    assert lines[8].split() == ["3", "hat", "0", "-", "-"]  # no test images of that class
    assert lines[9].startswith("teacher confusion matrix (rows: true class, columns: predicted")
    assert [line.split() for line in lines[10:]] == [["0", "1", "2", "3"], ["0", "2", "2", "0", "0"],
                                                      ["1", "1", "1", "0", "0"], ["2", "0", "0", "1", "0"],
                                                      ["3", "0", "0", "0", "0"]]


def test_format_evaluation_caps_the_report_for_many_classes():
    num = 50
    targets = torch.arange(num).repeat(4)
    preds = targets.clone()
    preds[:num] = (targets[:num] + 1) % num  # one of four wrong for every class...
    preds[num:num + 5] = 0  # ...and two of four for classes 0-4 (class 0's second is right)
    preds[2 * num + 10] = 11  # class 10 mistaken for 11 twice
    matrix = confusion_matrix(preds, targets, num)
    text = format_evaluation(_evaluation(matrix, [f"c{i}" for i in range(num)]), max_classes=5, max_matrix=3)
    lines = text.splitlines()
    table = lines[lines.index(next(line for line in lines if "per class" in line)):]
    assert "the 5 least accurate of 50" in table[0]
    assert [line.split()[1] for line in table[2:7]] == ["c1", "c2", "c3", "c4", "c10"]
    assert math.isclose(float(table[2].split()[3].rstrip("%")), 50.0)
    assert table[7].startswith("teacher most frequent confusions (50 classes; ssl-mix eval --plot")
    assert table[6].split()[-2:] == ["c11", "(2)"]
    assert table[8:] == ["  c10 -> c11: 2", "  c0 -> c1: 1", "  c1 -> c0: 1"]
