"""Tests for ``ssl-mix split`` (ssl_mix/cli.py): writing label-budget splits from the command line."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest

from ssl_mix.cli import main
from ssl_mix.data import LabelSplit, load_targets


def test_split_digits_writes_file_and_summary(tmp_path, capsys):
    out = tmp_path / "nested" / "split.json"
    assert main(["split", "--dataset", "digits", "--num-labels", "50", "--seed", "3", "--num-valid-per-class", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split() == ["class", "examples", "labeled", "valid", "unlabeled"]
    assert [line.split()[2] for line in lines[1:11]] == ["5"] * 10
    assert lines[11].split()[:4] == ["total", "1438", "50", "20"]
    assert f"wrote {out}" in printed and "kept in the unlabeled pool" in printed
    targets, _ = load_targets("digits", None)
    split = LabelSplit.load(out, dataset="digits", targets=targets)
    assert split.seed == 3 and split.num_valid_per_class == 2 and split.labeled_in_unlabeled


@pytest.mark.parametrize("flag, warned", [("--no-labeled-in-unlabeled", False), ("--labeled-not-in-unlabeled", True)])
def test_split_labeled_not_in_unlabeled(tmp_path, capsys, flag, warned):
    out = tmp_path / "split.json"
    assert main(["split", "--dataset", "digits", "--num-labels", "20", "--seed", "0", flag, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["labeled_in_unlabeled"] is False and not set(data["labeled"]) & set(data["unlabeled"])
    err = capsys.readouterr().err
    assert ("--labeled-not-in-unlabeled is deprecated and will be removed in the next release; use "
            "--no-labeled-in-unlabeled" in err) is warned, err


def test_split_flags_are_trains_flags():
    from ssl_mix.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.choices and "train" in a.choices).choices
    train, split = ({opt: a for a in commands[c]._actions for opt in a.option_strings} for c in ("train", "split"))
    shared = {opt for opt in split if opt not in ("-h", "--help", "--out") and split[opt].help != argparse.SUPPRESS}
    assert shared == {"--dataset", "--data-root", "--download", "--no-download", "--labels", "--classes",
                      "--check-labels", "--no-check-labels", "--num-labels", "--seed",
                      "--num-valid-per-class", "--labeled-in-unlabeled", "--no-labeled-in-unlabeled", "--label-column"}
    for opt in shared:
        required = {"--dataset", "--seed"}
        assert split[opt].dest == train[opt].dest and split[opt].metavar == train[opt].metavar, opt
        expected = train[opt].help.rsplit(" (default: ", 1)[0] + " (required)" if opt in required else train[opt].help
        assert split[opt].help == expected and split[opt].required is (opt in required), opt


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "digits", "--num-labels", "55", "--seed", "0"],
     "not divisible by the number of classes \\(10\\).*use 50 or 60"),
    (["--dataset", "digits", "--num-labels", "0", "--seed", "0"], "--num-labels must be >= 1, got 0"),
    (["--dataset", "digits", "--seed", "0"], "--num-labels is required \\(the label budget\\), unless --labels"),
    (["--dataset", "digits", "--labels", "l.csv", "--seed", "0"], "--labels applies to --dataset 'folder'"),
    (["--dataset", "digits", "--num-labels", "2000", "--seed", "0"], "at most num_labels=1390"),
    (["--dataset", "digits", "--num-labels", "10", "--seed", "-1"], "seed must be >= 0, got -1"),
    (["--dataset", "cifar10", "--num-labels", "250", "--seed", "0"], "--data-root is required for dataset .cifar10."),
])
def test_split_bad_input_exits_2(tmp_path, capsys, flags, message):
    assert main(["split", *flags, "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-mix split: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "s.json").exists()


def test_split_offline_missing_cifar_exits_2(tmp_path, capsys):
    assert main(["split", "--dataset", "cifar10", "--data-root", str(tmp_path), "--num-labels", "250", "--seed", "0",
                 "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "data_batch_1" in err and "--download" in err and "Traceback" not in err


def test_split_real_cifar10_folder_is_reproducible(cifar10_jpeg_train, tmp_path, capsys):
    paths = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"]
    for path, seed in zip(paths, ["0", "0", "1"], strict=True):
        assert main(["split", "--dataset", "folder", "--data-root", str(cifar10_jpeg_train), "--num-labels", "250",
                     "--seed", seed, "--out", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "airplane        5000       25       0       5000" in printed
    assert paths[0].read_bytes() == paths[1].read_bytes()  # two invocations, identical files
    assert paths[0].read_bytes() != paths[2].read_bytes()
    targets, classes = load_targets("folder", cifar10_jpeg_train)
    assert len(targets) == 50_000 and classes[0] == "airplane"
    split = LabelSplit.load(paths[0], dataset="folder", targets=targets)
    assert np.bincount(targets.numpy()[list(split.labeled)]).tolist() == [25] * 10
