"""Tests for ssl_mix/data/run_data.py: a DataConfig turned into the run's data; the validation subset alone; the
decode settings (DataConfig.decode_settings) every folder path shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ssl_mix.data.run_data as run_data
from ssl_mix import Config, DataConfig, folder_run_files, load_run_data
from ssl_mix.data.run_data import load_validation


def _folder(root: Path) -> Path:
    """Two classes of 12 small PNGs each, every third one grayscale (so the whole set decodes to RGB)."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / "train" / c).mkdir(parents=True)
        (root / "test" / c).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            (image.convert("L") if i % 3 == 0 else image).save(root / "train" / c / f"{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "test" / c / "0.png")
    return root


def _cfg(root: Path, **data) -> Config:
    return Config(data=DataConfig(dataset="folder", data_root=str(root), num_labels=4, num_valid_per_class=2,
                                  cache=False, **data))


def test_decode_settings_name_the_cache_and_the_decoding():
    assert DataConfig().decode_settings() == {"image_size": None, "resize": "crop", "channels": None,
                                              "skip_bad_images": False, "cache": True, "interpolation": "bilinear"}
    settings = DataConfig(dataset="folder", image_size=16, resize="stretch", channels=1, skip_bad_images=True,
                          cache_dir="/tmp/c", interpolation="bicubic").decode_settings()
    assert settings == {"image_size": (16, 16), "resize": "stretch", "channels": 1, "skip_bad_images": True,
                        "cache": "/tmp/c", "interpolation": "bicubic"}
    assert DataConfig(cache=False, cache_dir="/tmp/c").decode_settings()["cache"] is False


@pytest.mark.parametrize("loader", ["tensor", "torch"])
def test_folder_validation_alone_equals_the_run_data_and_decodes_only_it(tmp_path, monkeypatch, loader):
    cfg = _cfg(_folder(tmp_path / "images"), loader=loader)
    full = load_run_data(cfg)
    assert full.valid is not None and len(full.valid) == 4 and full.valid.image_shape == (3, 8, 8)
    decoded: list[int] = []
    decode = run_data.decode_files

    def counting(files, **kwargs):
        decoded.append(len(files))
        return decode(files, **kwargs)

    monkeypatch.setattr(run_data, "decode_files", counting)
    valid = load_validation(cfg.data, seed=cfg.train.seed, channels=3)
    assert decoded == [4]  # the validation files only, not the 24 training images nor the test set
    assert torch.equal(valid.images, full.valid.images) and torch.equal(valid.targets, full.valid.targets)
    assert load_validation(cfg.data, seed=cfg.train.seed, channels=1).image_shape == (1, 8, 8)  # a run's own


def test_named_dataset_validation_and_none_without_one():
    cfg = Config(data=DataConfig(dataset="digits", num_labels=50, num_valid_per_class=3))
    valid = load_validation(cfg.data, seed=cfg.train.seed)
    full = load_run_data(cfg)
    assert len(valid) == 30 and torch.equal(valid.images, full.valid.images)
    assert load_validation(DataConfig(dataset="digits", num_labels=50), seed=0) is None


def test_folder_run_files_take_the_data_section_or_the_whole_config(tmp_path):
    cfg = _cfg(_folder(tmp_path / "images"))
    train, test, extra = folder_run_files(cfg.data)
    assert len(train) == 24 and len(test) == 2 and len(extra) == 0 and train.classes == ["cat", "dog"]
    assert folder_run_files(cfg)[0].paths == train.paths
    with pytest.raises(ValueError, match="data.data_root is required for dataset 'folder'"):
        folder_run_files(DataConfig(dataset="folder"))


@pytest.mark.parametrize("loader", ["tensor", "torch"])
def test_describe_run_data_says_what_was_chosen_and_why(tmp_path, loader):
    root = _folder(tmp_path / "images")
    cfg = _cfg(root, loader=loader).replace(data={"cache": True, "cache_dir": str(tmp_path / "cache")})
    for _ in range(2):  # decoded, then read back from the decoded-image cache: the same counts
        data = load_run_data(cfg)
        assert data.colour_images == (16, 24)
        text = run_data.describe_run_data(data, cfg.data)
        lines = text.splitlines()
        assert len(lines) == 3 and all(line.startswith("ssl-mix: ") for line in lines)
        where = "streamed from the files" if loader == "torch" else "in memory"
        pool = len(data.unlabeled)
        assert lines[0] == (f"ssl-mix: data: folder, 2 classes, {where}; 4 labeled, 4 validation, {pool} unlabeled "
                            "(the labeled ones included), 2 test")
        assert lines[1] == ("ssl-mix: images: 8x8 (HxW; the files' own size; data.image_size resizes), 3 channel(s) "
                            "(RGB: 16 of 24 training images are in colour)")
        mean = ", ".join(f"{m:.3f}" for m in data.spec.mean)
        assert lines[2].startswith(f"ssl-mix: normalisation: mean ({mean}), std (")
        assert lines[2].endswith("; ZCA whitening off")


def test_describe_run_data_hints_at_grayscale_and_names_forced_settings(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        (root / "test" / c).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(root / "test" / c / "0.png")
        for i in range(6):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            (image if (c, i) == ("a", 0) else image.convert("L")).save(root / "train" / c / f"{i}.png")
    cfg = Config(data=DataConfig(dataset="folder", data_root=str(root), num_labels=4, cache=False))
    text = run_data.describe_run_data(load_run_data(cfg), cfg.data)
    assert ("3 channel(s) (RGB: 1 of 12 training images are in colour; data.channels=1 trains in grayscale)"
            in text)
    assert "4 labeled, 0 validation" in text
    forced = cfg.replace(data={"channels": 1, "image_size": 8, "resize": "stretch", "zca": True})
    data = load_run_data(forced)
    assert data.colour_images is None
    text = run_data.describe_run_data(data, forced.data)
    assert ("images: 8x8 (HxW; data.image_size, data.resize='stretch'), 1 channel(s) (grayscale, data.channels=1)"
            in text)
    assert "ZCA whitening on (data.zca_eps=0.01)" in text
    digits = Config(data=DataConfig(dataset="digits", num_labels=50))
    text = run_data.describe_run_data(load_run_data(digits), digits.data)
    assert "ssl-mix: data: digits, 10 classes, in memory; 50 labeled" in text
    assert "images: 16x16 (HxW; the dataset's size), 1 channel(s) (grayscale)" in text
