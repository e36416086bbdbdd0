"""Choosing the images to label next from a trained run, and training on them (--add-labels)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from ssl_mix import (
    LabelSplit,
    RunDir,
    choose,
    folder_files,
    load_run,
    pool_probabilities,
    preset,
    run_experiment,
    select_for_labeling,
    unlabeled_pool,
    write_selection,
)
from ssl_mix.atomic import temporary_name
from ssl_mix.cli import main


@pytest.fixture(scope="module")
def run(cifar_run):
    return load_run(cifar_run, device="cpu")


def _select(run, budget=20, strategy="margin", **kwargs):
    return select_for_labeling(run, budget, strategy, num_workers=0, progress=False, **kwargs)


def test_pool_leaves_out_labeled_and_validation_images(run, cifar_run, cifar10_jpeg_small):
    split = LabelSplit.load(RunDir(cifar_run).split)
    assert split.labeled_in_unlabeled  # the labeled images are in the training pool, but never offered
    files = folder_files(cifar10_jpeg_small, "train")
    taken = {files.name(i) for i in (*split.labeled, *split.valid)}
    _, names = unlabeled_pool(run)
    assert len(names) == len(files) - len(split.labeled) - len(split.valid) == 100
    assert not taken & set(names)


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least-confidence", "random"])
def test_selection_is_deterministic_and_respects_the_budget(run, strategy):
    first, again = _select(run, strategy=strategy), _select(run, strategy=strategy)
    assert first.paths == again.paths and len(first.paths) == 20 == len(set(first.paths))
    assert first.pool_size == 100
    assert all(p.startswith("train/") for p in first.paths)  # relative to the data root, as --labels reads them
    assert (first.confidences > 0).all() and (first.confidences <= 1).all()


def test_seed_changes_random_picks(run):
    assert _select(run, strategy="random", seed=0).paths != _select(run, strategy="random", seed=1).paths


def test_uncertainty_picks_are_less_confident_than_the_rest(run):
    picks = _select(run, strategy="least-confidence")
    everything = _select(run, budget=100, strategy="least-confidence")
    assert picks.paths == everything.paths[:20]
    assert float(picks.confidences.max()) <= float(everything.confidences[20:].min())


def test_balance_spreads_picks_over_predicted_classes(run):
    files, _ = unlabeled_pool(run)
    probabilities, _, _ = pool_probabilities(run, files, num_workers=0, progress=False)
    in_pool = Counter(run.classes[i] for i in probabilities.argmax(dim=1).tolist())
    counts = _select(run, budget=20, balance=True).histogram()
    assert sum(counts.values()) == 20 and set(counts) <= set(in_pool)
    share = 20 // len(in_pool)
    assert all(counts.get(c, 0) >= min(n, share) for c, n in in_pool.items())  # every class gets its share


def test_choose_on_a_scored_pool_equals_select_for_labeling(run):
    files, names = unlabeled_pool(run)
    probabilities, kept, _ = pool_probabilities(run, files, num_workers=0, progress=False)
    for strategy, balance in (("margin", False), ("entropy", True), ("random", False)):
        chosen = choose(probabilities, kept, names, run.classes, 20, strategy, balance=balance, seed=3)
        selected = _select(run, budget=20, strategy=strategy, balance=balance, seed=3)
        assert chosen.paths == selected.paths and chosen.guesses == selected.guesses
        assert torch.equal(chosen.confidences, selected.confidences) and chosen.pool_size == selected.pool_size


def test_pool_directory(run, cifar10_jpeg_small, tmp_path):
    picks = _select(run, budget=5, pool=cifar10_jpeg_small / "test" / "cat")
    assert len(picks.paths) == 5 and all(p.startswith("test/cat/") for p in picks.paths)
    outside = tmp_path / "outside"
    outside.mkdir()
    for p in sorted((cifar10_jpeg_small / "test" / "dog").iterdir())[:3]:
        (outside / p.name).write_bytes(p.read_bytes())
    (outside / "zz_text.png").write_text("this is not a PNG\n")
    picks = _select(run, budget=3, pool=outside)
    assert all(Path(p).is_absolute() for p in picks.paths)
    assert picks.pool_size == 3 and [Path(p).name for p, _ in picks.skipped] == ["zz_text.png"]  # scored, skipped


def test_bad_requests_are_clear_errors(run, cifar_run, tmp_path):
    with pytest.raises(ValueError, match="budget 101 is larger than the pool of 100"):
        _select(run, budget=101)
    with pytest.raises(ValueError, match="strategy must be one of 'margin'.*; got 'best'"):
        _select(run, strategy="best")
    with pytest.raises(ValueError, match="budget must be"):
        _select(run, budget=0)
    with pytest.raises(FileNotFoundError, match="pool directory .* does not exist"):
        _select(run, pool=tmp_path / "nope")
    with pytest.raises(ValueError, match=r"\.csv"):
        write_selection(_select(run, budget=1), tmp_path / "picks.txt")


def test_non_folder_run_needs_a_pool(tmp_path):
    out = tmp_path / "digits"
    cfg = preset("demo").replace(train={"steps": 2, "eval_every": 2, "out_dir": str(out), "progress": False,
                                        "device": "cpu"})
    run_experiment(cfg)
    with pytest.raises(ValueError, match="ssl-mix select --pool DIR"):
        _select(load_run(out, device="cpu"), budget=1)


def _fill(picks: Path, filled: Path, count: int) -> list[str]:
    """Label the first ``count`` rows with the class of their folder (the oracle), leave the rest empty."""
    rows = list(csv.DictReader(picks.read_text().splitlines()))
    for i, row in enumerate(rows):
        row["label"] = row["path"].split("/")[1] if i < count else ""
    with filled.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "guess", "confidence", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return [row["path"] for row in rows[:count]]


def _train_cfg(root: Path, out: Path, **data):
    return preset("cpu-cifar10").replace(
        method={"name": "erm"}, data={"data_root": str(root), **data},
        train={"steps": 2, "eval_every": 2, "checkpoint_every": 0, "out_dir": str(out), "progress": False,
               "device": "cpu", "seed": 0})


def test_cli_select_then_train_with_added_labels(cifar_run, cifar10_jpeg_small, tmp_path, capsys):
    picks = tmp_path / "picks.csv"
    assert main(["select", str(cifar_run), "--budget", "12", "--strategy", "entropy", "--balance", "--out",
                 str(picks), "--no-progress", "--num-workers", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 12 of 100 unlabeled images" in printed and "predicted classes:" in printed
    rows = list(csv.reader(picks.read_text().splitlines()))
    assert rows[0] == ["path", "guess", "confidence", "label"] and len(rows) == 13
    assert all(row[3] == "" for row in rows[1:])
    assert not list(tmp_path.glob(temporary_name(picks)))

    filled = tmp_path / "filled.csv"
    added = _fill(picks, filled, 10)
    out = tmp_path / "round2"
    run_experiment(_train_cfg(cifar10_jpeg_small, out, split=str(RunDir(cifar_run).split), add_labels=str(filled)))
    assert "10 labeled image(s) added to the 100 of the split (2 row(s) with an empty label skipped)" in \
        capsys.readouterr().err
    old, new = LabelSplit.load(RunDir(cifar_run).split), LabelSplit.load(RunDir(out).split)
    files = folder_files(cifar10_jpeg_small, "train")
    assert len(new.labeled) == 110 and not new.balanced and new.valid == old.valid
    assert {files.name(i) for i in set(new.labeled) - set(old.labeled)} == set(added)
    # the next round selects from what is still unlabeled
    second = _select(load_run(out, device="cpu"), budget=90)
    assert not set(second.paths) & set(added)
    with pytest.raises(ValueError, match="larger than the pool of 90"):
        _select(load_run(out, device="cpu"), budget=91)


def _csv(path: Path, *rows: str) -> Path:
    path.write_text("path,guess,confidence,label\n" + "".join(r + "\n" for r in rows))
    return path


def test_add_labels_errors_name_the_line(cifar_run, cifar10_jpeg_small, tmp_path):
    split = RunDir(cifar_run).split
    files = folder_files(cifar10_jpeg_small, "train")
    labeled = files.name(LabelSplit.load(split).labeled[0])
    free = next(files.name(i) for i in LabelSplit.load(split).unlabeled
                if i not in LabelSplit.load(split).labeled)
    cls = free.split("/")[1]
    cases = [
        (_csv(tmp_path / "a.csv", "train/cat/nope.jpg,cat,0.5,cat"), r"a\.csv, line 2: .*does not exist"),
        (_csv(tmp_path / "b.csv", f"{free},x,0.5,{cls}", f"{free},x,0.5,{cls}"), r"b\.csv, line 3: .*listed again"),
        (_csv(tmp_path / "c.csv", f"{free},x,0.5,unicorn"), r"c\.csv line 2: label 'unicorn' is not one of "
                                                            r"the run's classes \(nearest: "),
        (_csv(tmp_path / "d.csv", f"{labeled},x,0.5,{labeled.split('/')[1]}"), r"d\.csv, line 2: .*already labeled"),
        (_csv(tmp_path / "e.csv", f"{free},x,0.5,{'dog' if cls != 'dog' else 'cat'}"),
         r"e\.csv, line 2: .*lies in the class folder"),
    ]
    for i, (path, message) in enumerate(cases):
        cfg = _train_cfg(cifar10_jpeg_small, tmp_path / f"r{i}", split=str(split), add_labels=str(path))
        with pytest.raises(ValueError, match=message):
            run_experiment(cfg)
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg = _train_cfg(cifar10_jpeg_small, tmp_path / "r9", split=str(split),
                     add_labels=str(_csv(tmp_path / "f.csv", f"{outside}/x.jpg,x,0.5,cat")))
    with pytest.raises(ValueError, match=r"f\.csv, line 2: .*relative to the data root"):
        run_experiment(cfg)


def test_add_labels_needs_a_folder_dataset():
    with pytest.raises(ValueError, match="data.add_labels applies to data.dataset 'folder'"):
        preset("demo").replace(data={"add_labels": "picks.csv"})


def test_cli_errors_exit_2(cifar_run, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    assert main(["select", str(cifar_run), "--budget", "1000", "--strategy", "random", "--out", out, "--no-progress",
                 "--device", "cpu", "--num-workers", "0"]) == 2
    assert "larger than the pool" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["select", str(cifar_run), "--budget", "5", "--strategy", "best", "--out", out])
    assert exit_info.value.code == 2
    assert not Path(out).exists()


def test_label_file_run_adds_labels(cifar10_jpeg_small, tmp_path, capsys):
    files = folder_files(cifar10_jpeg_small, "train")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{files.name(i)},{files.classes[int(files.targets[i])]}\n"
                                                for i in range(0, len(files), 10)))
    first = tmp_path / "first"
    run_experiment(_train_cfg(cifar10_jpeg_small, first, labels=str(labels), num_labels=None))
    picks = select_for_labeling(first, 5, "margin", num_workers=0, progress=False, device="cpu")
    assert len(picks.paths) == 5
    filled = tmp_path / "filled.csv"
    rows = "".join(f"{p},{g},0.5,{p.split('/')[1]}\n" for p, g in zip(picks.paths, picks.guesses, strict=True))
    filled.write_text("path,guess,confidence,label\n" + rows)
    second = tmp_path / "second"
    run_experiment(_train_cfg(cifar10_jpeg_small, second, labels=str(labels), num_labels=None,
                              add_labels=str(filled)))
    saved = json.loads(RunDir(second).split.read_text())
    assert saved["num_labels"] == len(range(0, len(files), 10)) + 5
    again = select_for_labeling(second, 5, "margin", num_workers=0, progress=False, device="cpu")
    assert set(again.paths).isdisjoint(picks.paths)
    # A third round: the label file does not name the second round's images, the split carries their labels.
    refilled = tmp_path / "refilled.csv"
    refilled.write_text("path,label\n" + "".join(f"{p},{p.split('/')[1]}\n" for p in again.paths))
    third = tmp_path / "third"
    run_experiment(_train_cfg(cifar10_jpeg_small, third, labels=str(labels), num_labels=None,
                              split=str(RunDir(second).split), add_labels=str(refilled)))
    merged = json.loads(RunDir(third).split.read_text())
    assert merged["num_labels"] == saved["num_labels"] + 5 and len(merged["added_labels"]) == 10
    added = {files.name(i): files.classes[c] for i, c in merged["added_labels"]}
    assert added == {p: p.split("/")[1] for p in [*picks.paths, *again.paths]}
    assert set(select_for_labeling(third, 5, "margin", num_workers=0, progress=False,
                                   device="cpu").paths).isdisjoint([*picks.paths, *again.paths])
