"""The one atomic writer: content, the umask's permissions, and a failed write leaving the previous file."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from ssl_mix.atomic import atomic_path, temporary_name, write_atomic

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it after."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_bytes_and_a_writer_function_are_written(tmp_path):
    assert write_atomic(tmp_path / "a.txt", "é\nline\n").read_bytes() == "é\nline\n".encode()
    assert write_atomic(tmp_path / "b.txt", "é", encoding="latin-1").read_bytes() == b"\xe9"
    assert write_atomic(tmp_path / "c.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    write_atomic(tmp_path / "d.npy", lambda f: np.save(f, np.arange(3), allow_pickle=False))
    assert np.load(tmp_path / "d.npy").tolist() == [0, 1, 2]
    write_atomic(tmp_path / "e.pt", lambda f: torch.save({"w": torch.ones(2)}, f))
    assert torch.load(tmp_path / "e.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    write_atomic(tmp_path / "a.txt", "new")  # over an existing file
    assert (tmp_path / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.bin", "d.npy", "e.pt"]


def test_content_of_another_type_is_refused(tmp_path):
    with pytest.raises(TypeError, match="str, bytes or a function of a binary file object, got int"):
        write_atomic(tmp_path / "a", 3)
    assert not list(tmp_path.iterdir())


@posix_only
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask_like_a_plain_open(tmp_path, umask, mask, expected):
    umask(mask)
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert _mode(write_atomic(tmp_path / "text", "x")) == expected == _mode(plain)
    with atomic_path(tmp_path / "by_name") as tmp:
        tmp.write_bytes(b"x")
    assert _mode(tmp_path / "by_name") == expected


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_mid_write_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path, error):
    target = write_atomic(tmp_path / "f.bin", b"old")

    def half_then_fail(f):
        f.write(b"new, half written")
        raise error("disk full")

    with pytest.raises(error, match="disk full"):
        write_atomic(target, half_then_fail)
    with pytest.raises(error, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        raise error("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_first_write_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match="bad"):
        write_atomic(tmp_path / "new.json", lambda f: (_ for _ in ()).throw(ValueError("bad")))
    assert not list(tmp_path.iterdir())


def test_the_temporary_file_lies_beside_the_target_and_matches_its_pattern(tmp_path):
    with atomic_path(tmp_path / "model.onnx") as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp.stat().st_size == 0
        assert list(tmp_path.glob(temporary_name(tmp_path / "model.onnx"))) == [tmp]
        tmp.write_bytes(b"m")
    assert not tmp.exists() and (tmp_path / "model.onnx").read_bytes() == b"m"


def test_the_file_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_atomic(tmp_path / "f", b"x")
    assert events[:2] == ["fsync", "replace"]
    if os.name == "posix":
        assert events == ["fsync", "replace", "fsync"]  # the folder, so the rename survives a power cut
