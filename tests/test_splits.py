"""Tests for ssl_mix/data/splits.py: class-balanced label-budget splits and their JSON files."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from ssl_mix.data import SPLIT_FORMAT_VERSION, LabelSplit, make_split, split_summary


def _targets(per_class: int = 30, classes: int = 10, seed: int = 0) -> np.ndarray:
    targets = np.repeat(np.arange(classes), per_class)
    return np.random.default_rng(seed).permutation(targets)


def test_class_balanced_sizes_and_disjointness():
    targets = _targets()
    split = make_split(targets, 50, seed=1, num_valid_per_class=3)
    assert np.bincount(targets[list(split.labeled)], minlength=10).tolist() == [5] * 10
    assert np.bincount(targets[list(split.valid)], minlength=10).tolist() == [3] * 10
    assert set(split.labeled).isdisjoint(split.valid)
    assert split.labeled_in_unlabeled is True  # the documented default
    assert set(split.unlabeled) == set(range(300)) - set(split.valid)
    assert set(split.labeled) <= set(split.unlabeled)
    for indices in (split.labeled, split.valid, split.unlabeled):
        assert list(indices) == sorted(set(indices))
    assert split.num_examples == 300 and split.num_classes == 10 and split.dataset == "custom"


def test_labeled_removed_from_unlabeled_pool():
    targets = _targets()
    split = make_split(targets, 20, seed=1, num_valid_per_class=2, labeled_in_unlabeled=False)
    assert set(split.labeled).isdisjoint(split.unlabeled)
    assert set(split.labeled) | set(split.valid) | set(split.unlabeled) == set(range(300))
    assert split.num_examples == 300


def test_hand_computed_reference():
    # PCG64(0).random(6) = [.637, .270, .041, .017, .813, .913]: the smallest key of class 0 (indices 0, 2, 4)
    # is at index 2, of class 1 (indices 1, 3, 5) at index 3.
    keys = np.random.Generator(np.random.PCG64(0)).random(6)
    np.testing.assert_allclose(keys[:4], [0.63696169, 0.26978671, 0.04097352, 0.01652764], rtol=1e-6)
    split = make_split([0, 1, 0, 1, 0, 1], 2, seed=0)
    assert split.labeled == (2, 3)


def test_pinned_reference_split_is_machine_independent():
    # Pinned output: fails if NumPy's PCG64 stream or the drawing procedure ever changes.
    split = make_split(np.arange(100) % 10, 20, seed=123)
    assert split.labeled == (1, 3, 13, 17, 21, 25, 40, 46, 47, 52, 58, 65, 74, 79, 80, 82, 94, 96, 98, 99)


def test_same_inputs_same_file_and_seed_matters(tmp_path):
    targets = _targets()
    a = make_split(targets, 30, seed=7, dataset="toy")
    b = make_split(targets.tolist(), 30, seed=7, dataset="toy")
    c = make_split(torch.from_numpy(targets), 30, seed=7, dataset="toy")
    assert a == b == c
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert make_split(targets, 30, seed=8, dataset="toy").labeled != a.labeled


def test_larger_budget_extends_smaller_and_validation_leaves_labels_alone():
    targets = _targets()
    small = make_split(targets, 20, seed=3)
    large = make_split(targets, 50, seed=3)
    with_valid = make_split(targets, 20, seed=3, num_valid_per_class=4)
    assert set(small.labeled) <= set(large.labeled)
    assert with_valid.labeled == small.labeled


def test_no_global_random_state_touched():
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    make_split(_targets(), 50, seed=1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert random.getstate() == py_state


def test_save_load_roundtrip_and_format(tmp_path):
    targets = _targets()
    split = make_split(targets, 40, seed=5, dataset="toy", num_valid_per_class=2)
    path = tmp_path / "split.json"
    split.save(path)
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == sorted(data)  # sorted keys
    assert data["format_version"] == SPLIT_FORMAT_VERSION and data["num_examples"] == 300
    assert data["labeled_in_unlabeled"] is True and data["seed"] == 5 and data["num_labels"] == 40
    assert text.endswith("}\n") and "\r" not in text
    loaded = LabelSplit.load(path, dataset="toy", targets=targets)
    assert loaded == split
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_load_refuses_other_dataset_and_other_targets(tmp_path):
    targets = _targets()
    path = tmp_path / "split.json"
    make_split(targets, 40, seed=5, dataset="cifar10").save(path)
    with pytest.raises(ValueError, match="made for dataset 'cifar10', not 'svhn'"):
        LabelSplit.load(path, dataset="svhn")
    with pytest.raises(ValueError, match="indexes 300 training examples but the given training set has 299"):
        LabelSplit.load(path, targets=targets[:299])
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        LabelSplit.load(path, targets=np.roll(targets, 1))


def test_load_malformed_files(tmp_path):
    path = tmp_path / "split.json"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LabelSplit.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LabelSplit.load(path)
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not an ssl_mix split file"):
        LabelSplit.load(path)
    good = make_split(_targets(), 20, seed=0).to_dict()
    for change, message in [({"format_version": 99}, "format version 99"),
                            ({"labeled": None}, "must be a list"),
                            ({"extra": 1}, "unknown field"),
                            ({"num_examples": 5}, "says num_examples=5"),
                            ({"valid": [good["labeled"][0]]}, "not a valid split"),
                            ({"labeled": good["labeled"][:-1]}, "num_labels=20 but 19 labeled"),
                            ({"labeled": good["labeled"][::-1]}, "must be sorted")]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError, match=message):
            LabelSplit.load(path)
    del good["seed"]
    path.write_text(json.dumps(good))
    with pytest.raises(ValueError, match="missing field"):
        LabelSplit.load(path)


def test_budget_errors_name_the_fix():
    targets = _targets()
    with pytest.raises(ValueError, match="not divisible by the number of classes \\(10\\).*use 250 or 260"):
        make_split(targets, 255, seed=0)
    with pytest.raises(ValueError, match="use 10$"):
        make_split(targets, 7, seed=0)
    with pytest.raises(ValueError, match="positive multiple.*got 0"):
        make_split(targets, 0, seed=0)
    with pytest.raises(ValueError, match="positive multiple.*got -10"):
        make_split(targets, -10, seed=0)
    with pytest.raises(ValueError, match="has 30 examples but 31 labeled \\+ 0 validation.*at most num_labels=300"):
        make_split(targets, 310, seed=0)
    with pytest.raises(ValueError, match="28 labeled \\+ 5 validation.*at most num_labels=250"):
        make_split(targets, 280, seed=0, num_valid_per_class=5)


def test_argument_errors():
    targets = _targets()
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        make_split(targets, 10, seed=-1)
    with pytest.raises(ValueError, match="class indices >= 0, or -1 for an example without a label"):
        make_split([0, 1, -2], 2, seed=0)
    with pytest.raises(ValueError, match="no labeled example \\(all -1\\)"):
        make_split([-1, -1], None, seed=0)
    with pytest.raises(ValueError, match="num_classes must be an int >= max\\(targets\\) \\+ 1 = 10"):
        make_split(targets, 10, seed=0, num_classes=5)
    with pytest.raises(ValueError, match="one-dimensional"):
        make_split(targets.reshape(30, 10), 10, seed=0)
    with pytest.raises(ValueError, match="integer class indices"):
        make_split([0.5, 1.0], 2, seed=0)
    with pytest.raises(ValueError, match="targets is empty"):
        make_split([], 2, seed=0)
    with pytest.raises(ValueError, match="num_valid_per_class must be >= 0"):
        make_split(targets, 10, seed=0, num_valid_per_class=-1)
    with pytest.raises(ValueError, match="class 10 has 0 examples"):  # a declared class with no examples
        make_split(targets, 11, seed=0, num_classes=11)


def test_constructor_rejects_inconsistent_splits():
    base = make_split([0, 1, 0, 1], 2, seed=0)
    fields = {k: getattr(base, k) for k in ("dataset", "num_classes", "num_labels", "seed", "num_valid_per_class",
                                            "labeled_in_unlabeled", "labeled", "valid", "unlabeled")}
    with pytest.raises(ValueError, match="contradicts the index lists"):
        LabelSplit(**{**fields, "labeled_in_unlabeled": False})
    with pytest.raises(ValueError, match="cover 0 .. num_examples-1"):
        LabelSplit(**{**fields, "unlabeled": (0, 1, 2, 3, 5)})
    with pytest.raises(ValueError, match="dataset must be a non-empty string"):
        LabelSplit(**{**fields, "dataset": ""})


def test_split_summary_counts():
    targets = _targets()
    split = make_split(targets, 20, seed=0, num_valid_per_class=1)
    table = split_summary(split, targets, [f"c{i}" for i in range(10)])
    lines = table.splitlines()
    assert lines[0].split() == ["class", "examples", "labeled", "valid", "unlabeled"]
    assert lines[1].split() == ["c0", "30", "2", "1", "29"]
    assert lines[-1].split() == ["total", "300", "20", "10", "290"]
    with pytest.raises(ValueError, match="3 names but the split has 10 classes"):
        split_summary(split, targets, ["a", "b", "c"])


def test_examples_without_labels_stay_unlabeled_and_none_takes_every_label(tmp_path):
    # A label file's targets: imbalanced classes (5, 3, 2 rows) and images it does not name (-1).
    targets = np.array([0, -1, 0, 1, 0, -1, 2, 0, 1, 0, -1, 2, 1])
    balanced = make_split(targets, 3, seed=0)
    assert balanced.balanced and np.bincount(targets[list(balanced.labeled)]).tolist() == [1, 1, 1]
    assert {1, 5, 10} <= set(balanced.unlabeled)
    every = make_split(targets, None, seed=0, num_valid_per_class=1, labeled_in_unlabeled=False)
    assert not every.balanced and every.num_labels == 7 and len(every.valid) == 3
    assert sorted(every.labeled + every.valid) == [i for i, t in enumerate(targets) if t >= 0]
    assert every.unlabeled == (1, 5, 10)
    every.save(tmp_path / "every.json")
    assert LabelSplit.load(tmp_path / "every.json", targets=targets) == every
    table = split_summary(every, targets, ["a", "b", "c"])
    assert "a                  5        4       1          0" in table and "(no label)" in table
    assert table.splitlines()[-1].split()[1:] == ["13", "7", "3", "3"]
    with pytest.raises(ValueError, match="class 1 has 3 labeled example\\(s\\), but 3 are held out"):
        make_split(targets[targets != 2], None, seed=0, num_valid_per_class=3)
    relabeled = targets.copy()
    relabeled[list(every.labeled)[0]] = -1
    with pytest.raises(ValueError, match="labels examples that have no label"):
        dataclasses.replace(every, targets_sha256=None).check_targets(relabeled)


def test_version_1_files_read_as_balanced(tmp_path):
    split = make_split(_targets(), 20, seed=0)
    data = split.to_dict()
    del data["balanced"], data["added_labels"]
    data["format_version"] = 1
    (tmp_path / "v1.json").write_text(json.dumps(data))
    assert LabelSplit.load(tmp_path / "v1.json") == split


def test_with_labeled_adds_examples_and_refuses_taken_ones():
    targets = np.repeat(np.arange(3), 10)
    split = make_split(targets, 3, seed=0, num_valid_per_class=2)
    free = [i for i in split.unlabeled if i not in split.labeled][:4]
    merged = split.with_labeled(free, targets)
    assert set(merged.labeled) == set(split.labeled) | set(free) and merged.num_labels == 7
    assert not merged.balanced and merged.valid == split.valid and merged.unlabeled == split.unlabeled
    merged.check_targets(targets)
    removed = make_split(targets, 3, seed=0, labeled_in_unlabeled=False)
    assert not set(removed.with_labeled(free[:2], targets).unlabeled) & set(free[:2])
    for taken in (split.labeled[0], split.valid[0], 30):
        with pytest.raises(ValueError, match=f"cannot add example {taken} to the labeled subset"):
            split.with_labeled([taken], targets)
    unlabeled = targets.copy()
    unlabeled[free[0]] = -1
    with pytest.raises(ValueError, match="every added example needs a label"):
        split.with_labeled([free[0]], unlabeled)
    with pytest.raises(ValueError, match="targets has 29 entries"):
        split.with_labeled(free, targets[:-1])


def test_added_labels_travel_with_the_split(tmp_path):
    # A label file names some images (-1: not named); a round of labelling adds two it did not name.
    targets = np.repeat(np.arange(3), 10)
    listed = targets.copy()
    listed[[5, 15, 25, 26]] = -1
    split = make_split(listed, None, seed=0)
    merged = listed.copy()
    merged[[5, 15]] = [0, 1]
    second = split.with_labeled([15, 5], merged)
    assert second.added_labels == ((5, 0), (15, 1))
    second.save(tmp_path / "second.json")
    loaded = LabelSplit.load(tmp_path / "second.json", targets=listed)  # the label file alone: no digest mismatch
    assert loaded == second
    np.testing.assert_array_equal(loaded.targets_with_added(listed), merged)
    # The next round adds on top; both rounds' labels are kept.
    merged[25] = 2
    third = loaded.with_labeled([25], merged)
    assert third.added_labels == ((5, 0), (15, 1), (25, 2)) and third.num_labels == split.num_labels + 3
    third.check_targets(listed)
    contradicted = listed.copy()
    contradicted[5] = 2
    with pytest.raises(ValueError, match="example 5 was added .* with class 0, but the given targets say 2"):
        third.check_targets(contradicted)
    with pytest.raises(ValueError, match="added_labels must name labeled examples"):
        dataclasses.replace(split, added_labels=((26, 0),))


def test_version_2_files_have_no_added_labels(tmp_path):
    split = make_split(_targets(), 20, seed=0)
    data = split.to_dict()
    del data["added_labels"]
    data["format_version"] = 2
    (tmp_path / "v2.json").write_text(json.dumps(data))
    assert LabelSplit.load(tmp_path / "v2.json") == split
