"""Tests for ssl_mix/distributed.py: torchrun launches, DDP training, sharding, failures, and the one-process helpers.

The multi-process tests start ``torchrun --standalone --nproc_per_node 2`` (CPU, gloo) in a subprocess with a hard
timeout; tests/distributed_script.py holds the checks that need the process group.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ssl_mix import (
    ERM,
    ClassificationMetrics,
    DataSpec,
    TensorDualLoader,
    TrainConfig,
    Trainer,
    arrays_from_tensors,
    distributed,
    evaluate,
    forward_mixed,
    load_arrays,
    sample_mix_plan,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "distributed_script.py"
LAUNCH_TIMEOUT_S = 120


def _torchrun(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    return proc, time.perf_counter() - start


# About one launch in five on this 2-core machine, a process of a run that otherwise succeeds dies in native code
# with "terminate called without an active exception" (SIGABRT, no Python traceback) inside torch's gloo
# backend. Runs that must succeed are retried, each in a fresh directory, on that signature only; any other
# failure, or three native aborts in a row, still fails the test.
NATIVE_ABORT = "terminate called without an active exception"


def _torchrun_expecting_success(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, Path]:
    for attempt in range(3):
        workdir = cwd / f"attempt{attempt}"
        workdir.mkdir()
        proc, _ = _torchrun(*(a.replace("{WORKDIR}", str(workdir)) for a in args), cwd=workdir)
        if proc.returncode == 0 or NATIVE_ABORT not in proc.stdout + proc.stderr:
            break
    return proc, workdir


# --- two processes under torchrun ------------------------------------------------------------------------


def test_cli_under_torchrun_writes_one_set_of_files(tmp_path):
    proc, workdir = _torchrun_expecting_success(
        "-m", "ssl_mix", "train", "--dataset", "digits", "--model", "cnn-small", "--num-labels", "30", "--steps", "4",
        "--eval-every", "2", "--log-every", "2", "--checkpoint-every", "2", "--no-progress", "--device", "cpu",
        "--dist-timeout", "30", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("trained 4 steps") == 1  # the report is printed by process 0 only
    run = workdir / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "last.pt", "report.json", "split.json",
                                                     "tensorboard"]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert len(list((run / "tensorboard").rglob("events.out.tfevents.*"))) == 2  # + the hparams summary
    report = json.loads((run / "report.json").read_text())
    test_size = len(load_arrays("digits", None, "test"))
    assert report["steps"] == 4 and report["final"]["teacher"]["test"]["count"] == test_size  # shards add up


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    proc, workdir = _torchrun_expecting_success(str(SCRIPT), "checks", "{WORKDIR}/result.json", "{WORKDIR}/runs",
                                                cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((workdir / "result.json").read_text())
    assert result["world_size"] == 2
    return result


@pytest.mark.parametrize("method", ["ict", "manifold-mixup"])
def test_student_and_teacher_are_identical_on_every_process(checks, method):
    found = checks["identical"][method]
    assert found["student_spread"] == 0.0 and found["teacher_spread"] == 0.0  # weights and buffers
    assert found["checkpoint_diff"] == 0.0 and found["checkpoint_step"] == 4
    assert found["rank_rng"] == 2  # each process's random state is in the checkpoint


def test_resume_under_torchrun_equals_the_uninterrupted_run(checks):
    found = checks["identical"]["ict"]
    assert found["resumed_from"] == 2 and found["resume_diff"] == 0.0
    assert checks["identical"]["experiment"] == {"steps": 4, "evaluated_at": [2, 4]}


def test_a_signal_to_one_process_stops_all_at_the_next_log_read(checks):
    # SIGINT reaches process 1 during step 3 (of 8); the processes agree at the read after step 4 and stop there.
    assert checks["identical"]["signal"] == {"stopped_at": [4, 4], "checkpoint_step": 4}


def test_a_signal_to_one_process_during_evaluation_stops_all_before_it_and_resume_runs_it(checks):
    # Every process checks before each round of batches; they agree on the stop at the first round.
    assert checks["identical"]["signal_in_evaluation"] == {
        "stopped_at": [2, 2], "checkpoint_step": 2, "pending": True, "evaluated_before": [],
        "evaluated_after": [2, 4], "same_history": True, "resume_diff": 0.0}


@pytest.mark.parametrize("variant", ["one_forward", "two_forwards"])
def test_two_processes_take_the_step_of_one_process_with_twice_the_batch(checks, variant):
    found = checks["sgd"][variant]
    assert found["shards_match"]  # the shards of a step, in rank order, are the batch of size 2B
    assert found["moved"] > 1e-2 and found["max_diff"] < 1e-5  # gradients are averaged, once per backward
    assert found["spread"] == 0.0


def test_a_dead_process_fails_the_run_quickly_with_a_clear_error(tmp_path):
    proc, seconds = _torchrun(str(SCRIPT), "die", str(tmp_path / "result.json"), str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode != 0
    assert not (tmp_path / "result.json").exists()
    assert "process 0 of 2 stopped after step 3: a collective operation failed" in proc.stderr
    assert "Another process most likely crashed" in proc.stderr
    assert seconds < LAUNCH_TIMEOUT_S / 2  # it fails fast; the 30 s collective timeout is the backstop


# --- one process: the helpers and the error paths ---------------------------------------------------------


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_torchrun(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")


@pytest.fixture
def one_process_group(tmp_path, no_torchrun):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_helpers_are_neutral_in_one_process(no_torchrun):
    assert not distributed.launched_by_torchrun() and not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_main() and distributed.rank_seed(7) == 7
    t = torch.arange(3.0)
    assert distributed.all_reduce_sum_(t) is t and torch.equal(t, torch.arange(3.0))
    assert torch.equal(distributed.all_gather_rows(t), t.unsqueeze(0))
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    distributed.barrier()
    with distributed.session("cpu", timeout=5) as device:
        assert device == torch.device("cpu") and not dist.is_initialized()
    assert distributed.backend_for("cpu") == "gloo" and distributed.backend_for(torch.device("cuda", 0)) == "nccl"


def test_torchrun_detection_and_device_mapping(fake_torchrun, monkeypatch):
    assert distributed.launched_by_torchrun() and distributed.local_rank() == 1
    assert distributed.local_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="train.device=cuda:0 would put all processes on one GPU"):
        distributed.local_device("cuda:0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched_by_torchrun()  # torchrun --nproc_per_node 1 is a plain run
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        distributed.launched_by_torchrun()


def test_init_rejects_bad_timeouts_and_devices(no_torchrun):
    for timeout in (0, -1.0, math.inf, "300"):
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            distributed.init("cpu", timeout=timeout)
    with pytest.raises(ValueError, match="device must be 'auto' or a torch device"):
        distributed.init("gpu0")


def test_config_validates_the_timeout():
    assert TrainConfig().dist_timeout == 300.0 and not TrainConfig().sync_bn
    with pytest.raises(ValueError, match="train.dist_timeout must be a finite number > 0"):
        TrainConfig(dist_timeout=0)
    with pytest.raises(ValueError, match="train.dist_timeout must be a finite number, got inf"):
        TrainConfig(dist_timeout=math.inf)


def test_forward_mixed_runs_through_the_ddp_wrapper(one_process_group):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    plan = sample_mix_plan(5, 2, 1.0, generator=torch.Generator().manual_seed(1))
    expected = forward_mixed(model, x, plan, 1)
    wrapped = distributed.wrap_ddp(model, torch.device("cpu"))
    assert torch.allclose(forward_mixed(wrapped, x, plan, 1), expected)
    assert torch.allclose(wrapped(x), model(x))
    with pytest.raises(TypeError, match=r"built as DistributedDataParallel\(ssl_mix.models.MixableModule"):
        forward_mixed(nn.parallel.DistributedDataParallel(model), x, plan, 1)


def test_metrics_all_reduce_is_a_no_op_in_one_process(no_torchrun):
    metrics = ClassificationMetrics()
    metrics.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    before = metrics.compute()
    metrics.all_reduce()
    assert metrics.compute() == before


def _tiny_trainer(tmp_path, **loader_kwargs) -> Trainer:
    arrays = arrays_from_tensors(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), torch.arange(8) % 2)
    spec = DataSpec("zeros", 2, (0.5,), (0.25,), crop_padding=0, flip=False)
    loader = TensorDualLoader(arrays, arrays, spec, batch_size=2, seed=0, augment=False, **loader_kwargs)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    return Trainer(model, ERM(), loader, train=TrainConfig(steps=1, device="cpu", progress=False, sync_bn=True,
                                                           out_dir=str(tmp_path)))


def test_trainer_checks_the_loader_shard_and_sync_bn(tmp_path, monkeypatch, no_torchrun):
    trainer = _tiny_trainer(tmp_path)  # one process: sync_bn has no effect
    state = trainer.state_dict()
    with pytest.raises(ValueError, match=r"written by a run of 2 process\(es\) but this run has 1"):
        trainer.load_state_dict({**state, "rank_rng": [None, None]})
    with pytest.raises(ValueError, match="evaluate got rank=1, world_size=2 but this process is rank 0 of 1"):
        evaluate(trainer.student, [], rank=1, world_size=2)

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    with pytest.raises(ValueError, match=r"the loader is shard 0 of 1 but this process is rank 1 of 2; build it with "
                                         r"rank=ssl_mix.distributed.rank\(\)"):
        _tiny_trainer(tmp_path)
    with pytest.raises(ValueError, match="sync_bn needs GPUs"):
        _tiny_trainer(tmp_path, rank=1, world_size=2)


def test_trainer_under_torchrun_needs_the_process_group(tmp_path, fake_torchrun):
    with pytest.raises(ValueError, match=r"started by torchrun as one of several, but the process group is not "
                                         r"initialised.*ssl_mix.distributed.session"):
        _tiny_trainer(tmp_path)
