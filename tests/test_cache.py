"""Tests for ssl_mix/data/cache.py: keys that change with the files and settings, atomic entries."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from ssl_mix.data.cache import cache_key, default_cache_dir, read_cache, write_cache


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "ssl_mix"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ssl_mix"


def test_key_changes_with_files_times_sizes_and_settings(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    settings = {"image_size": [8, 8], "resize": "crop", "channels": None}
    key = cache_key([a, b], settings)
    assert key == cache_key([a, b], dict(settings)) and len(key) == 64
    assert key != cache_key([b, a], settings)  # order
    assert key != cache_key([a], settings)  # the list
    assert key != cache_key([a, b], {**settings, "resize": "stretch"})  # the settings
    os.utime(a, ns=(5, 5))
    touched = cache_key([a, b], settings)
    assert touched != key
    a.write_bytes(b"12")
    os.utime(a, ns=(5, 5))
    assert cache_key([a, b], settings) != touched  # same time, other size
    os.symlink("loop", tmp_path / "loop")
    assert len(cache_key([tmp_path / "loop"], settings)) == 64  # cannot be stat-ed: still a key


def test_entries_round_trip_and_partial_entries_are_ignored(tmp_path):
    images = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    assert read_cache(tmp_path, "k") is None
    assert write_cache(tmp_path / "cache", "k", images, {"bad": [[1, "empty"]]})
    array, meta = read_cache(tmp_path / "cache", "k")
    assert np.array_equal(array, images) and meta["bad"] == [[1, "empty"]] and meta["shape"] == [2, 3, 4, 4]
    assert read_cache(tmp_path / "cache", "k", images=False)[0] is None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k.json", "k.npy"]  # no temporary files left
    (tmp_path / "cache" / "k.npy").write_bytes(b"truncated")  # a damaged entry reads as none
    assert read_cache(tmp_path / "cache", "k") is None
    (tmp_path / "blocked").write_text("a file where the directory should be")
    assert write_cache(tmp_path / "blocked", "k", images, {}) is False


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
def test_entries_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        assert write_cache(tmp_path, "k", np.zeros((1, 1, 2, 2), dtype=np.uint8), {})
    finally:
        os.umask(old)
    assert sorted(oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()) == ["0o644", "0o644"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_no_entry(tmp_path, monkeypatch, interrupt):
    import ssl_mix.data.cache as cache

    def fail(*args, **kwargs):
        raise interrupt("stopped")

    monkeypatch.setattr(cache.np, "save", fail)
    images = np.zeros((1, 1, 2, 2), dtype=np.uint8)
    if interrupt is OSError:
        assert write_cache(tmp_path, "k", images, {}) is False
    else:
        with pytest.raises(KeyboardInterrupt):
            write_cache(tmp_path, "k", images, {})
    assert list(tmp_path.iterdir()) == [] and read_cache(tmp_path, "k") is None
