"""The CPU thread count: the rule (requested, OMP_NUM_THREADS, usable cores), the busy-machine warning, and the
flag reaching torch."""

import pytest
import torch

from ssl_mix import threads as threads_module
from ssl_mix.cli import main
from ssl_mix.threads import apply_threads, resolve_threads, usable_cores


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_requested_count_wins_over_the_environment_and_the_cores():
    assert resolve_threads(3, env={"OMP_NUM_THREADS": "1"}, cores=8, load=0.0) == (3, None)


def test_omp_num_threads_is_respected_when_nothing_is_requested():
    assert resolve_threads(None, env={"OMP_NUM_THREADS": "2"}, cores=8, load=0.0) == (2, None)
    assert resolve_threads(None, env={"OMP_NUM_THREADS": "4,2"}, cores=8, load=0.0) == (4, None)  # nested levels


def test_otherwise_the_cores_the_process_may_run_on():
    assert resolve_threads(None, env={}, cores=6, load=None) == (6, None)
    for bad in ("", "0", "many", "-1"):  # not a count: ignored
        assert resolve_threads(None, env={"OMP_NUM_THREADS": bad}, cores=6, load=None) == (6, None)
    assert usable_cores() >= 1


def test_a_busy_machine_gets_advice_unless_one_thread_is_used():
    threads, warning = resolve_threads(None, env={}, cores=2, load=3.5)
    assert threads == 2 and "load 3.5 on 2 core(s)" in warning and "--threads 1" in warning
    assert resolve_threads(1, env={}, cores=2, load=3.5) == (1, None)
    assert resolve_threads(None, env={}, cores=2, load=2.0)[1] is None  # not beyond the cores


def test_a_bad_request_is_refused():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        resolve_threads(0, env={}, cores=2, load=None)
    with pytest.raises(TypeError, match="threads must be an int"):
        resolve_threads(1.5, env={}, cores=2, load=None)


def test_apply_sets_torch_and_warns_once(monkeypatch, capsys, keep_threads):
    monkeypatch.setattr(threads_module, "load_average", lambda: 99.0)
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "_warned", False)
    assert apply_threads(2) == torch.get_num_threads() == 2
    assert apply_threads(2) == 2
    err = capsys.readouterr().err
    assert err.count("ssl-mix: the machine is busy") == 1


def test_the_flag_reaches_torch_in_commands_that_compute(tmp_path, monkeypatch, capsys, keep_threads):
    monkeypatch.setattr(threads_module, "load_average", lambda: None)
    torch.set_num_threads(1)
    assert main(["calibrate", str(tmp_path / "missing"), "--threads", "2"]) == 2  # no run, but threads applied
    assert torch.get_num_threads() == 2
    assert main(["eval", str(tmp_path / "missing"), "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_train_applies_and_reports_its_thread_count(tmp_path, monkeypatch, keep_threads):
    import json

    monkeypatch.setattr(threads_module, "load_average", lambda: None)
    run = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--model", "cnn-small", "--num-labels", "30", "--eval-every", "2",
            "--log-every", "1", "--no-progress", "--device", "cpu", "--out", str(run)]
    assert main([*args, "--steps", "2", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    assert json.loads((run / "report.json").read_text())["threads"] == 2
    # resuming with another count is allowed: it changes speed, not the run's settings
    assert main([*args, "--steps", "3", "--resume", "--threads", "1"]) == 0
    assert json.loads((run / "report.json").read_text())["threads"] == 1
