import os
import random
import stat

import numpy as np
import pytest
import torch

from ssl_mix.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def test_round_trip(tmp_path):
    state = {"format": 1, "w": torch.arange(3.0), "nested": {"step": 4, "names": ["a", "b"]}}
    path = save_checkpoint(state, tmp_path / "sub" / "last.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == state["nested"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["last.pt"]  # no temp files left behind


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
def test_a_checkpoint_gets_the_umask_permissions_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint({"format": 1}, tmp_path / "last.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by others, as a plain open() would make it


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"format": 1, "step": 1}, path)

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # as if the process were killed while writing

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"format": 1, "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_truncated_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / "bad.pt"
    save_checkpoint({"format": 1, "w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])  # truncated, as by a full disk
    with pytest.raises(ValueError, match="is not a valid ssl_mix checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="no 'format' entry"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_code_in_a_crafted_file_is_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": _Evil()}, path)
    with pytest.raises(ValueError, match="refused for safety"):
        load_checkpoint(path)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    state = capture_rng_state()
    first = (torch.rand(2), np.random.rand(2), random.random())
    save_checkpoint({"format": 1, "rng": state}, tmp_path / "r.pt")
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
