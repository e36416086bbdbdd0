"""The fast paths of a training step: no host synchronisation, and the same loss as the plain path.

The speed itself is measured by ``benchmarks/throughput.py`` (a benchmark, not a timed test); this module checks
the properties that make it fast and that speed costs no accuracy, on the CPU with the small model.
"""

import json

import pytest
import throughput as bench  # benchmarks/ is on sys.path (tests/conftest.py)
import torch

from ssl_mix import Batch, preset
from ssl_mix.experiment import build_trainer, load_run_data
from ssl_mix.train_logs import LogAccumulator

# Every way a tensor reaches the host as a Python value or a host copy.
_HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture(scope="module")
def digits_data():
    return load_run_data(preset("demo"))


def _trainer(tmp_path, data, **sections):
    sections["train"] = {"device": "cpu", "progress": False, "out_dir": str(tmp_path / "run"),
                         **sections.get("train", {})}
    return build_trainer(preset("demo").replace(**sections), data)


@pytest.mark.parametrize("method", [{"name": "ict", "k": 3, "supervised": "mixup"}, {"name": "mixup"},
                                    {"name": "ict", "joint_forward": True}])
def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, digits_data, monkeypatch, method):
    trainer = _trainer(tmp_path, digits_data, method=method)
    logs = LogAccumulator(trainer.device)
    batches = iter(trainer.loader)
    trainer.train_step(Batch(*next(batches)))  # first step: lazy initialisation (optimizer state) is allowed
    reads: list[str] = []
    for name in _HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for _ in range(3):
        batch = Batch(*next(batches))
        out = trainer.train_step(batch)
        logs.add(trainer.step - 1, out.loss, out.logs)  # the loop's per-step bookkeeping stays on the device too
    monkeypatch.undo()
    assert reads == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the sync debug mode only sees device syncs")
def test_ict_steps_on_cuda_do_not_synchronise(tmp_path, digits_data):
    # The demo's 30 labels make every step start a new labeled epoch, so the loader's permutation copies are
    # exercised too; the first steps warm up the pinned-memory and CUDA caching allocators.
    trainer = _trainer(tmp_path, digits_data, method={"name": "ict", "k": 4}, train={"device": "cuda"})
    logs = LogAccumulator(trainer.device)
    batches = iter(trainer.loader)
    for _ in range(2):
        trainer.train_step(Batch(*next(batches)))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = trainer.train_step(Batch(*next(batches)))
            logs.add(trainer.step - 1, out.loss, out.logs)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bf16_autocast_step_on_cpu_matches_fp32(tmp_path, digits_data):
    outs = {}
    for precision in ("fp32", "bf16"):
        trainer = _trainer(tmp_path / precision, digits_data, train={"precision": precision})
        outs[precision] = trainer.train_step(Batch(*trainer.loader.batch(0)))
    assert torch.isfinite(outs["bf16"].loss)
    assert outs["bf16"].loss.dtype == torch.float32  # losses are computed in float32 from bf16 logits
    # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 ~ 0.002 per operation); measured difference 2e-4.
    torch.testing.assert_close(outs["bf16"].loss, outs["fp32"].loss, rtol=1e-2, atol=1e-3)


def test_channels_last_step_on_cpu_matches_the_default_layout(tmp_path, digits_data):
    losses = {}
    for channels_last in (False, True):
        trainer = _trainer(tmp_path / str(channels_last), digits_data, model={"channels_last": channels_last})
        if channels_last:
            assert trainer.student.stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        losses[channels_last] = trainer.train_step(Batch(*trainer.loader.batch(0))).loss
    # Same arithmetic in another memory layout: equal up to float32 summation order.
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)


def test_joint_forward_step_matches_separate_forwards_without_batch_statistics(tmp_path, digits_data):
    losses = {}
    for joint in (False, True):
        trainer = _trainer(tmp_path / str(joint), digits_data, method={"name": "ict", "joint_forward": joint})
        trainer.student.eval()  # running statistics: each example is normalised on its own
        losses[joint] = trainer.train_step(Batch(*trainer.loader.batch(0))).loss
    assert torch.equal(losses[True], losses[False])


def test_throughput_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    threads = torch.get_num_threads()
    try:
        record = bench.main(["--models", "cnn-small", "--methods", "erm", "ict2", "--batch-size", "4",
                             "--unlabeled-batch-size", "6", "--warmup", "1", "--steps", "2", "--rounds", "2",
                             "--num-images", "40", "--num-labels", "20", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    for key in ("command", "git_commit", "hardware", "torch_version", "load_average_1_5_15", "results"):
        assert key in record
    assert [(r["model"], r["method"]) for r in record["results"]] == [("cnn-small", "erm"), ("cnn-small", "ict2")]
    ict = record["results"][1]
    assert ict["images_per_step"] == 10 and ict["ours"]["steps"] == 4
    assert ict["overhead_ratio"] > 0 and ict["speedup_vs_naive"] > 0
    # The step does all the floor's model work plus loading, mixing, the optimiser and the EMA teacher (the floor
    # clears the gradients the step before it left, or its backward would add to them).
    for r in record["results"]:
        assert r["ours"]["ops_per_step"] > r["floor"]["ops_per_step"]
    assert ict["floor"]["ops_per_step"] > record["results"][0]["floor"]["ops_per_step"]
    assert ict["naive"]["ops_per_step"] is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("cnn-small ict2 4+6 cpu fp32: ours") and "overhead" in lines[1]
    assert f"{ict['ours']['ops_per_step']} ops/step" in lines[1]



def test_op_count_sees_kernels_below_autograd_and_skips_views_and_allocations():
    x = torch.randn(4, 3, requires_grad=True)

    def step():
        y = (x * 2).sum()  # mul, sum
        y.backward()  # ones_like (a fill), expand (a view), mul; then x.grad: taken as is, or added in place
        torch.empty(5)  # an allocation
        x.detach().view(12)  # views

    assert bench.count_ops(step) == 4  # mul, sum, ones_like, mul: the first gradient becomes x.grad without a copy
    assert bench.count_ops(step) == 5  # ... and the second is added to it (add_)


def test_the_floor_does_the_same_work_whatever_ran_before_it(tmp_path, digits_data):
    trainer = _trainer(tmp_path, digits_data, method={"name": "ict"})
    batch = Batch(*trainer.loader.batch(0))
    floor = bench._floor_step(trainer, "ict", batch, batch.x_u.flip(0), "fp32")
    trainer.train_step(batch)  # leaves the gradients of its backward pass on the parameters
    after_a_step = bench.count_ops(floor)
    assert after_a_step == bench.count_ops(floor)
