"""The label-file class checks: near matches, too-small classes and a classes list."""

from __future__ import annotations

import pytest

from ssl_mix.config import DataConfig
from ssl_mix.data.labels import MIN_CLASS_ROWS, LabelRows, check_label_classes, near_match, normalized_class


def _rows(*labels: str) -> LabelRows:
    names = [f"all/{i}.jpg" for i in range(len(labels))]
    return LabelRows(dict(zip(names, labels, strict=True)), {n: i + 2 for i, n in enumerate(names)}, 0)


def test_near_match():
    assert normalized_class("T-Shirt ok_x") == "tshirtokx"
    assert near_match("sneakr", "sneaker") == "differs by one character from"
    assert near_match("sneaker", "sneakre") is None  # a transposition is two edits
    assert near_match("snaeker", "sneaker") is None
    assert near_match("cat", "bat") == "differs by one character from"
    assert near_match("T-shirt", "t_shirt") == "differs only by case, spacing, underscores or hyphens from"
    assert near_match("Dog", "dog") == "differs only by case, spacing, underscores or hyphens from"
    assert near_match("cat", "cat") is None and near_match("cat", "dog") is None
    assert near_match("cats", "cat") == "differs by one character from"


def test_typo_and_small_class_errors():
    many = ["sneaker"] * 5 + ["boot"] * 5
    with pytest.raises(ValueError, match=r"labels.csv line 12: class 'sneakr' has 1 row and differs by one character "
                                         r"from 'sneaker' \(5 rows\); fix the row, list the classes with data.classes, "
                                         r"or set data.check_labels=false to keep it"):
        check_label_classes(_rows(*many, "sneakr"), "x/labels.csv")
    with pytest.raises(ValueError, match=r"line 12: class 'Boot' .* differs only by case"):
        check_label_classes(_rows(*many, "Boot"), "labels.csv")
    small = rf"lines 12, 13: class 'sandal' has only 2 rows \(fewer than {MIN_CLASS_ROWS}\)"
    with pytest.raises(ValueError, match=small):
        check_label_classes(_rows(*many, "sandal", "sandal"), "labels.csv")
    check_label_classes(_rows(*many, "sneakr"), "labels.csv", check=False)  # allowed on purpose
    check_label_classes(_rows(*many, "sandal", "sandal", "sandal"), "labels.csv")


def test_classes_list():
    rows = _rows("sneaker", "boot", "sneakr")
    check_label_classes(_rows("sneaker", "boot"), "labels.csv", ["boot", "sneaker", "sandal"])  # small is fine
    with pytest.raises(ValueError, match=r"labels.csv line 4: label 'sneakr' is not one of the classes of "
                                         r"data.classes \(nearest: 'sneaker'\)"):
        check_label_classes(rows, "labels.csv", ["boot", "sneaker"], check=False)


def test_classes_setting(tmp_path):
    assert DataConfig(dataset="folder", classes="cat, dog,ship").class_list() == ["cat", "dog", "ship"]
    (tmp_path / "classes.txt").write_text("cat\n\ndog\n")
    assert DataConfig(dataset="folder", classes=str(tmp_path / "classes.txt")).class_list() == ["cat", "dog"]
    assert DataConfig().class_list() is None
    with pytest.raises(ValueError, match="data.classes=' , ' lists no classes"):
        DataConfig(dataset="folder", classes=" , ").class_list()
    with pytest.raises(ValueError, match="data.classes"):
        DataConfig(classes="cat,dog")


def test_added_labels_name_the_nearest_class(tmp_path):
    """--add-labels checks its labels as a label file is checked: a typo names the row and the run's nearest class."""
    from ssl_mix.data.files import ImageFiles
    from ssl_mix.data.labels import added_labels

    paths = [tmp_path / f"all/{i}.jpg" for i in range(4)]
    paths[0].parent.mkdir()
    for path in paths:
        path.write_bytes(b"")  # listed, never decoded here
    files = ImageFiles(paths, [0, 1, -1, -1], ["boot", "sneaker"], tmp_path)
    picks = tmp_path / "picks.csv"
    picks.write_text("path,guess,confidence,label\nall/2.jpg,boot,0.9,boot\nall/3.jpg,boot,0.8,sneakr\n")
    with pytest.raises(ValueError, match=r"picks.csv line 3: label 'sneakr' is not one of the run's classes "
                                         r"\(nearest: 'sneaker'\); fix the row \(a new class needs a new run"):
        added_labels(files, picks)
    picks.write_text("path,guess,confidence,label\nall/2.jpg,boot,0.9,boot\nall/3.jpg,boot,0.8,sneaker\n")
    added = added_labels(files, picks)
    assert added.targets.tolist() == [0, 1, 0, 1]
