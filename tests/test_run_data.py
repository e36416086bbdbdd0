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
                                              "skip_bad_images": False, "cache": True}
    settings = DataConfig(dataset="folder", image_size=16, resize="stretch", channels=1, skip_bad_images=True,
                          cache_dir="/tmp/c").decode_settings()
    assert settings == {"image_size": (16, 16), "resize": "stretch", "channels": 1, "skip_bad_images": True,
                        "cache": "/tmp/c"}
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
    with pytest.raises(ValueError, match="--data-root is required for dataset 'folder'"):
        folder_run_files(DataConfig(dataset="folder"))
