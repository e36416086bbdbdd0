import dataclasses
import math
import os
import signal

import pytest
import torch

from ssl_mix.checkpoint import load_checkpoint
from ssl_mix.config import Config, preset
from ssl_mix.data import fit_zca
from ssl_mix.experiment import build_trainer, load_run_data, run_experiment
from ssl_mix.methods import ERM, METHODS, StepOutput
from ssl_mix.optim import head_module, lr_multiplier
from ssl_mix.teacher import EMATeacher
from ssl_mix.trainer import NonFiniteLossError, Trainer


def _cfg(tmp_path, method="ict", steps=12, **train):
    return preset("demo").replace(
        method={"name": method},
        train={"steps": steps, "eval_every": 6, "log_every": 3, "checkpoint_every": 4, "progress": False,
               "out_dir": str(tmp_path / "run"), "device": "cpu", **train},
    )


@pytest.fixture(scope="module")
def digits_data():
    return load_run_data(preset("demo"))


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_a_few_steps(tmp_path, digits_data, method):
    trainer = build_trainer(_cfg(tmp_path, method, steps=4), digits_data)
    before = _weights(trainer.teacher.module).clone()
    report = trainer.fit()
    assert report["steps"] == 4
    for sets in report["final"].values():
        assert math.isfinite(sets["test"]["nll"]) and 0 <= sets["test"]["accuracy"] <= 100
    assert not torch.equal(before, _weights(trainer.teacher.module))  # the teacher followed the student


@pytest.mark.parametrize("method", ["erm", "mixup"])
def test_methods_without_unlabeled_data_skip_the_unlabeled_stream_and_train_the_same(tmp_path, digits_data, method):
    from ssl_mix.experiment import build_loader

    skipping = build_trainer(_cfg(tmp_path / "skip", method, steps=6), digits_data)
    assert skipping.loader.with_unlabeled is False
    assert build_trainer(_cfg(tmp_path / "ict", "ict", steps=1), digits_data).loader.with_unlabeled is True
    cfg = _cfg(tmp_path / "load", method, steps=6)
    loading = build_trainer(cfg, digits_data)
    loading.loader = build_loader(cfg, digits_data, torch.device("cpu"), with_unlabeled=True)  # the old behaviour
    skipping.fit()
    loading.fit()
    assert torch.equal(_weights(skipping.student), _weights(loading.student))
    assert torch.equal(_weights(skipping.teacher.module), _weights(loading.teacher.module))


def test_teacher_changes_only_through_the_ema(tmp_path, digits_data):
    trainer = build_trainer(_cfg(tmp_path, "ict", steps=1), digits_data)
    student_before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in trainer.teacher.module.state_dict().items()}
    trainer.fit()
    d = trainer.teacher.decay_at(1)
    for name, param in trainer.teacher.module.named_parameters():
        expected = d * teacher_before[name] + (1 - d) * trainer.student.state_dict()[name]
        assert torch.allclose(param, expected, atol=1e-6), name
    assert any(not torch.equal(student_before[k], v) for k, v in trainer.student.state_dict().items())


class _Interrupting:
    """Wraps a method; at step ``at`` it either dies (like kill -9) or sends SIGINT to the process (Ctrl-C)."""

    def __init__(self, method, at, how):
        self.method, self.at, self.how = method, at, how
        self.uses_unlabeled = method.uses_unlabeled

    def loss(self, student, batch, ctx):
        if ctx.step == self.at:
            if self.how == "crash":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        return self.method.loss(student, batch, ctx)


# The official ICT recipe's parts: the teacher's own batch-norm statistics and ZCA-whitened inputs.
OFFICIAL = {"method": {"teacher_bn": "own", "supervised": "mixup", "consistency_target": "logits"},
            "data": {"zca": True}}


FROZEN = {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.01, "freeze_backbone_steps": 6, "warmup_steps": 2}


@pytest.mark.parametrize("interrupt_at, how, resumes_from, recipe",
                         [(5, "crash", 4, {}), (8, "crash", 8, {}), (6, "sigint", 7, {}), (5, "crash", 4, OFFICIAL),
                          # Methods with several unlabeled views: each view's draws are keyed by the step too.
                          (5, "crash", 4, {"method": {"name": "fixmatch"}}),
                          (5, "crash", 4, {"method": {"name": "mixmatch"}}),
                          # A linear probe for 6 steps: the run resumes before the backbone joins.
                          (5, "crash", 4, {"optim": FROZEN}), (8, "crash", 8, {"optim": FROZEN}),
                          # ... and on a timm model with layer decay and a head multiplier.
                          (5, "crash", 4, {"optim": {**FROZEN, "layer_decay": 0.7, "head_lr_mult": 5.0,
                                                     "decay_norm_bias": False},
                                           "model": {"name": "timm:test_resnet"}})])
def test_resumed_run_equals_uninterrupted_run(tmp_path, digits_data, interrupt_at, how, resumes_from, recipe):
    full = build_trainer(_cfg(tmp_path / "full", "ict").replace(**recipe), digits_data)
    full.fit()

    first = build_trainer(_cfg(tmp_path / "part", "ict").replace(**recipe), digits_data)
    first.method = _Interrupting(first.method, interrupt_at, how)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = build_trainer(_cfg(tmp_path / "part", "ict").replace(**recipe), digits_data)
    assert resumed.resume() == resumes_from
    resumed.fit()
    for (name, a), b in zip(full.student.state_dict().items(), resumed.student.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(full.teacher.state_dict().values(), resumed.teacher.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]


@pytest.mark.parametrize("teacher_bn", ["own", "copy"])
def test_teacher_keeps_its_own_batch_norm_statistics_or_copies_the_students(tmp_path, digits_data, teacher_bn):
    trainer = build_trainer(_cfg(tmp_path, "ict", steps=5).replace(method={"teacher_bn": teacher_bn}), digits_data)
    assert trainer.teacher.buffers_mode == teacher_bn
    initial = [b.clone() for b in trainer.teacher.module.buffers()]
    trainer.fit()
    pairs = list(zip(trainer.teacher.module.buffers(), trainer.student.buffers(), initial, strict=True))
    assert pairs
    if teacher_bn == "copy":
        assert all(torch.equal(t, s) for t, s, _ in pairs)
    else:
        # Updated by the teacher's own train-mode passes on the unlabeled batches: moved, but not to the student's.
        floats = [(t, s, i) for t, s, i in pairs if t.is_floating_point()]
        assert not any(torch.equal(t, s) for t, s, _ in floats)
        assert not any(torch.equal(t, i) for t, _, i in floats)
        counts = [t for t in trainer.teacher.module.buffers() if not t.is_floating_point()]
        assert all(int(c) == 5 for c in counts)  # one teacher pass per step


def test_teacher_bn_changes_only_the_teachers_running_statistics(tmp_path, digits_data):
    # In train mode the teacher normalises with batch statistics either way, so both settings train the same student
    # and the same teacher parameters; only the running statistics, used when the teacher is evaluated, differ.
    runs = {}
    for teacher_bn in ("own", "copy"):
        cfg = _cfg(tmp_path / teacher_bn, "ict", steps=4).replace(method={"teacher_bn": teacher_bn})
        runs[teacher_bn] = build_trainer(cfg, digits_data)
        runs[teacher_bn].fit()
    own, copy = runs["own"], runs["copy"]
    assert torch.equal(_weights(own.student), _weights(copy.student))
    for a, b in zip(own.teacher.module.parameters(), copy.teacher.module.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(own.teacher.module.buffers(), copy.teacher.module.buffers(),
                                                      strict=True))


def test_zca_transform_is_fitted_applied_saved_and_restored(tmp_path, digits_data):
    from ssl_mix import ZCA, eval_batches, load_trained, preprocess_transform

    cfg = _cfg(tmp_path, "ict", steps=2).replace(data={"zca": True, "zca_eps": 0.1})
    trainer = build_trainer(cfg, digits_data)
    zca = trainer.loader.preprocess
    assert isinstance(zca, ZCA) and zca.eps == 0.1 and zca.image_shape == (1, 16, 16)
    # Fitted on the training pool (labeled examples are in the unlabeled pool here), never on the test images.
    expected = fit_zca(digits_data.unlabeled.images, 0.1, mean=digits_data.spec.mean, std=digits_data.spec.std)
    torch.testing.assert_close(zca.matrix, expected.matrix)
    x, _ = next(iter(trainer.eval_sets["test"]()))
    plain, _ = next(eval_batches(digits_data.test, digits_data.spec, 500, "cpu"))
    torch.testing.assert_close(x, zca(plain))
    trainer.fit()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    torch.testing.assert_close(ZCA.from_state_dict(state["data"]["preprocess"]["zca"]).matrix, zca.matrix)
    run = load_trained(tmp_path / "run" / "last.pt", device="cpu")
    torch.testing.assert_close(preprocess_transform(run.preprocess).matrix, zca.matrix)
    plain_run = build_trainer(_cfg(tmp_path / "plain", "erm", steps=1), digits_data)
    plain_run.fit()
    assert preprocess_transform(load_trained(tmp_path / "plain" / "run" / "last.pt", device="cpu").preprocess) is None
    with pytest.raises(ValueError, match=r"holds \['pca'\], which this version of ssl_mix cannot apply"):
        preprocess_transform({"pca": {}})
    with pytest.raises(TypeError, match="preprocess must be a checkpoint's preprocess entry"):
        preprocess_transform(None)


def test_checkpoints_and_report_are_written(tmp_path, digits_data):
    cfg = _cfg(tmp_path, "ict", steps=8).replace(data={"num_valid_per_class": 5})
    report = run_experiment(cfg, data=load_run_data(cfg))
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt", "report.json", "split.json", "config.json"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert report["best"]["model"] in ("student", "teacher")
    assert report["selection"] == "validation split"
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 8 and Config.from_dict(state["config"]) == cfg


class _ExplodingERM(ERM):
    def __init__(self, bad_step):
        self.bad_step = bad_step

    def loss(self, student, batch, ctx):
        out = super().loss(student, batch, ctx)
        if ctx.step >= self.bad_step:
            return StepOutput(out.loss * float("nan"), out.logs)
        return out


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, digits_data):
    trainer = build_trainer(_cfg(tmp_path, "erm", steps=12), digits_data)
    trainer.method = _ExplodingERM(bad_step=6)
    with pytest.raises(NonFiniteLossError, match=r"non-finite \(NaN or inf\) at step 6; .*step 4\) is kept"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_lr_schedule_is_cosine_with_warmup():
    cfg = preset("demo").optim
    assert lr_multiplier(0, 100, cfg) == pytest.approx(1.0)
    end = lr_multiplier(100, 100, cfg.__class__(lr_rampdown_factor=1.0))
    assert end == pytest.approx(0.0, abs=1e-12)
    warm = cfg.__class__(warmup_steps=10, lr_schedule="constant")
    assert lr_multiplier(5, 100, warm) == pytest.approx(0.5)


def test_trainer_rejects_bad_arguments(digits_data, tmp_path):
    trainer = build_trainer(_cfg(tmp_path), digits_data)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Trainer("model", trainer.method, trainer.loader)
    with pytest.raises(TypeError, match="method must be an ssl_mix Method"):
        Trainer(trainer.student, "ict", trainer.loader)
    with pytest.raises(TypeError, match="loader must be a dual loader"):
        Trainer(trainer.student, trainer.method, [1, 2])
    with pytest.raises(ValueError, match="eval_sets keys must be 'test' and/or 'valid'"):
        Trainer(trainer.student, trainer.method, trainer.loader, eval_sets={"train": []})
    with pytest.raises(TypeError, match="teacher must be an ssl_mix EMATeacher of the model"):
        Trainer(trainer.student, trainer.method, trainer.loader, teacher=trainer.student)


class _Scalars:
    """A log writer that keeps what it is given."""

    def __init__(self):
        self.scalars, self.hparams, self.closed = {}, None, False

    def add_scalar(self, tag, value, step=None):
        self.scalars[tag, step] = value

    def add_hparams(self, hparams, metrics, *args, **kwargs):
        self.hparams = metrics

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_the_trainer_uses_the_teacher_and_writer_it_is_handed_and_writes_checkpoints_only(tmp_path, digits_data):
    built = build_trainer(_cfg(tmp_path, "ict", steps=6).replace(method={"ema_decay": 0.5, "ema_warmup": False}),
                          digits_data)
    assert (built.teacher.decay, built.teacher.warmup) == (0.5, False)  # build_teacher, from the config
    teacher, writer = EMATeacher(built.student, decay=0.9), _Scalars()
    train = dataclasses.replace(built.cfg, out_dir=str(tmp_path / "handed"))
    trainer = Trainer(built.student, built.method, built.loader, train=train, teacher=teacher, writer=writer,
                      eval_sets=built.eval_sets, config={"method": {"name": "ict"}})
    assert trainer.teacher is teacher
    report = trainer.fit()
    assert teacher.decay == 0.9 and not torch.equal(next(teacher.module.parameters()),
                                                    next(trainer.student.parameters()))
    assert ("loss/consistency", 6) in writer.scalars and ("test/teacher_accuracy", 6) in writer.scalars
    assert writer.closed and "hparam/teacher_test_accuracy" in writer.hparams
    assert report["steps"] == 6
    assert sorted(p.name for p in (tmp_path / "handed").iterdir()) == ["last.pt"]  # no report.json, no tensorboard/
    plain = Trainer(built.student, ERM(), built.loader, train=built.cfg)
    assert (plain.teacher.decay, plain.teacher.warmup, plain.teacher.buffers_mode) == (0.999, True, "copy")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_and_foreach_optimisers_take_the_same_steps(optimizer):
    from ssl_mix.config import OptimConfig
    from ssl_mix.models import create_model
    from ssl_mix.optim import build_optimizer

    cfg = OptimConfig(optimizer=optimizer, lr=0.05)
    torch.manual_seed(0)
    models = [create_model("cnn-small", 10, in_channels=1) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [build_optimizer(models[0].parameters(), cfg),
                  build_optimizer(models[1].parameters(), cfg, fused=False)]
    assert optimizers[0].defaults["fused"] is True  # picked automatically for CPU (and CUDA) parameters
    assert optimizers[1].defaults["foreach"] is True and not optimizers[1].defaults["fused"]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(4, 1, 8, 8, generator=g)
        for model, opt in zip(models, optimizers, strict=True):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    # The same update formula; the fused kernel orders float32 operations differently. Adam divides by sqrt(v),
    # so where a gradient is near zero a last-bit difference in v moves the step by up to ~1e-3 * lr (largest
    # difference over 20 seeds: 1.9e-5 for Adam, 2.4e-7 for SGD).
    atol = 5e-5 if optimizer == "adam" else 1e-6
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=atol)


def _broken_compile(model, **kwargs):
    def run(*args, **kw):
        model(*args, **kw)  # the graph runs partly (it updates batch-norm statistics) before a later part fails
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
    return run


def test_compile_falls_back_to_eager_when_compilation_fails_at_the_first_call(tmp_path, digits_data, monkeypatch):
    from ssl_mix.methods import Batch

    monkeypatch.setattr(torch, "compile", _broken_compile)
    eager = build_trainer(_cfg(tmp_path / "eager", "ict"), digits_data)
    compiled = build_trainer(_cfg(tmp_path / "compiled", "ict", compile=True), digits_data)
    assert compiled.wrapped_student is not compiled.student
    assert compiled.wrapped_student.stages is compiled.student.stages
    batch = Batch(*eager.loader.batch(0))
    expected = r"torch.compile failed \(RuntimeError: InvalidCxxCompiler.*training eagerly"
    with pytest.warns(RuntimeWarning, match=expected):
        out = compiled.train_step(batch)
    assert torch.equal(out.loss, eager.train_step(batch).loss)
    compiled.train_step(Batch(*eager.loader.batch(1)))  # eager from now on, without another warning
    eager.train_step(Batch(*eager.loader.batch(1)))
    assert torch.equal(_weights(compiled.student), _weights(eager.student))  # batch-norm statistics included
    assert torch.equal(_weights(compiled.teacher.module), _weights(eager.teacher.module))


def test_compile_fallback_does_not_hide_errors_of_the_model(tmp_path, digits_data, monkeypatch):
    monkeypatch.setattr(torch, "compile", _broken_compile)
    trainer = build_trainer(_cfg(tmp_path, "ict", compile=True), digits_data)
    with pytest.raises(RuntimeError, match="channels"):
        trainer.wrapped_student(torch.zeros(2, 5, 8, 8))  # the digits model takes 1 channel: eager fails too
    assert not trainer.wrapped_student.eager


def test_compile_unavailable_at_wrap_time_trains_eagerly(tmp_path, digits_data, monkeypatch):
    def unavailable(model, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python version")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable here"):
        trainer = build_trainer(_cfg(tmp_path, "ict", compile=True), digits_data)
    assert trainer.wrapped_student is trainer.student



_STOP_IN_EVALUATION = '''
import json
import sys
import time
from pathlib import Path

import torch

from ssl_mix.config import preset
from ssl_mix.experiment import build_trainer

torch.set_num_threads(1)
out, target, started, sent, resume = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
cfg = preset("demo").replace(
    method={"name": "ict"},
    train={"steps": 12, "eval_every": 6, "log_every": 3, "checkpoint_every": 4, "progress": False, "out_dir": out,
           "device": "cpu"})
trainer = build_trainer(cfg)
if resume == "resume":
    print("resumed from step", trainer.resume())
name, data = next(iter(trainer.eval_sets.items()))


def held():
    """The evaluation set, drawing a seed as a DataLoader's iterator does; at the target step its first batch waits
    until the test has sent SIGTERM."""
    torch.empty((), dtype=torch.int64).random_()
    for i, batch in enumerate(data() if callable(data) else data):
        if trainer.step == target and i == 0 and not started.exists():
            started.touch()
            while not sent.exists():
                time.sleep(0.01)
        yield batch


trainer.eval_sets = {**trainer.eval_sets, name: held, "test": held}
try:
    report = trainer.fit()
except KeyboardInterrupt as err:
    print(err)
    sys.exit(3)
(Path(out) / "report.json").write_text(json.dumps(report))
'''


def _run_script(tmp_path, out, target=-1, resume="", wait=True):
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(_STOP_IN_EVALUATION)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(target), str(tmp_path / "started"),
                             str(tmp_path / "sent"), resume], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if wait:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    return proc


def test_sigterm_during_evaluation_stops_at_once_and_resume_reruns_it(tmp_path):
    import json
    import time

    target = 6  # an evaluation in the middle: resuming runs it, then trains on

    started, sent, part = tmp_path / "started", tmp_path / "sent", tmp_path / "part"
    proc = _run_script(tmp_path, part, target, wait=False)
    deadline = time.monotonic() + 300
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    sent.touch()
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - signalled < 10, "the stop took too long"
    assert proc.returncode == 3, stderr
    assert f"interrupted by signal {int(signal.SIGTERM)} during the evaluation of step {target}" in stdout

    saved = load_checkpoint(part / "last.pt")
    assert saved["step"] == target and saved["evaluation_pending"] is True
    assert all(record["step"] < target for record in saved["history"])  # no half-done evaluation recorded

    _run_script(tmp_path, tmp_path / "full")
    assert "resumed from step " + str(target) in _run_script(tmp_path, part, resume="resume").communicate()[0]
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(part / "last.pt")
    for key in ("model", "teacher"):
        assert all(torch.equal(a, b) for a, b in zip(full[key].values(), resumed[key].values(), strict=True)), key
    assert torch.equal(full["rng"]["torch"], resumed["rng"]["torch"])  # the cut evaluation's draws were undone
    assert resumed["history"] == full["history"] and resumed["evaluation_pending"] is False
    reports = [json.loads((run / "report.json").read_text()) for run in (tmp_path / "full", part)]
    assert reports[0]["final"] == reports[1]["final"] and reports[0]["best"] == reports[1]["best"]


def test_sigterm_during_the_final_evaluation_leaves_it_to_the_resumed_run(tmp_path, digits_data):
    cfg = _cfg(tmp_path / "part", "ict")
    first = build_trainer(cfg, digits_data)
    name, data = next(iter(first.eval_sets.items()))

    def signalled():
        for i, batch in enumerate(data()):
            if first.step == 12 and i == 0:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    first.eval_sets[name] = signalled
    with pytest.raises(KeyboardInterrupt, match="during the evaluation of step 12"):
        first.fit()
    saved = load_checkpoint(first.run.last)
    assert saved["step"] == 12 and saved["evaluation_pending"] and saved["history"][-1]["step"] == 6
    full = build_trainer(_cfg(tmp_path / "full", "ict"), digits_data)
    full_report = full.fit()
    resumed = build_trainer(cfg, digits_data)
    assert resumed.resume() == 12
    report = resumed.fit()
    assert report["final"] == full_report["final"] and report["best"] == full_report["best"]
    assert resumed.history == full.history and not load_checkpoint(resumed.run.last)["evaluation_pending"]


def test_tensorboard_writer_writes_on_process_0_only(tmp_path, monkeypatch):
    from ssl_mix import train_logs

    writer = train_logs.tensorboard_writer(tmp_path / "tb")
    writer.add_scalar("train/x", 1.0, 1)
    writer.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    monkeypatch.setattr(train_logs.distributed, "is_main", lambda: False)
    assert isinstance(train_logs.tensorboard_writer(tmp_path / "other"), train_logs.NullWriter)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("loader", ["tensor", "torch"])
@pytest.mark.parametrize("method", ["fixmatch", "mixmatch"])
def test_methods_with_several_views_get_them_from_the_run_loader(tmp_path, digits_data, method, loader):
    cfg = _cfg(tmp_path, method, steps=2).replace(data={"loader": loader})
    trainer = build_trainer(cfg, digits_data)
    views = type(trainer.method).views_for(cfg.method)
    assert len(views) == 2 and trainer.loader.unlabeled_views == views
    x_l, _, x_u = next(iter(build_trainer(cfg, digits_data).loader))
    assert isinstance(x_u, tuple) and len(x_u) == 2 and all(v.shape[1:] == x_l.shape[1:] for v in x_u)
    assert trainer.fit()["steps"] == 2


def test_a_frozen_backbone_stays_bit_identical_while_the_head_trains_then_moves(tmp_path, digits_data):
    cfg = _cfg(tmp_path, "erm", steps=4).replace(optim=FROZEN)
    trainer = build_trainer(cfg, digits_data)
    head = {id(p) for p in head_module(trainer.student).parameters()}
    backbone = [p for p in trainer.student.parameters() if id(p) not in head]
    start = [p.detach().clone() for p in trainer.student.parameters()]
    teacher_start = [p.detach().clone() for p in trainer.teacher.module.parameters()]
    trainer.fit()
    after = list(trainer.student.parameters())
    for p, s in zip(after, start, strict=True):
        assert torch.equal(p, s) == (id(p) not in head)
    # No gradient reached the backbone, so its optimiser state is empty (no momentum, no decay); the teacher's
    # backbone still follows the student's (the same weights), its head moves.
    assert all(p not in trainer.optimizer.state for p in backbone) and all(
        id(p) not in head or p in trainer.optimizer.state for p in after)
    for t, t0, p in zip(trainer.teacher.module.parameters(), teacher_start, after, strict=True):
        assert torch.equal(t, t0) == (id(p) not in head)

    longer = build_trainer(cfg.replace(train={"steps": 8}), digits_data)
    longer.fit()
    moved = [not torch.equal(p, s) for p, s in zip(longer.student.parameters(), start, strict=True)]
    assert all(moved)


def test_a_frozen_backbone_is_refused_in_a_distributed_run(tmp_path, digits_data, monkeypatch):
    from ssl_mix import trainer as trainer_module

    for name, value in (("is_distributed", True), ("rank", 0), ("world_size", 2)):
        monkeypatch.setattr(trainer_module.distributed, name, lambda value=value: value)
    with pytest.raises(ValueError, match="optim.freeze_backbone_steps does not work in a distributed run yet"):
        build_trainer(_cfg(tmp_path, "erm").replace(optim=FROZEN), digits_data)


def test_the_finetune_recipe_trains_a_timm_model(tmp_path, digits_data):
    import dataclasses

    cfg = preset("finetune").replace(
        data=dataclasses.asdict(preset("demo").data), model={"name": "timm:test_resnet", "pretrained": False},
        optim={"warmup_steps": 2, "freeze_backbone_steps": 3},
        train={"steps": 6, "eval_every": 6, "log_every": 3, "checkpoint_every": 0, "progress": False,
               "out_dir": str(tmp_path / "run"), "device": "cpu"})
    trainer = build_trainer(cfg, digits_data)
    lrs = sorted({g["initial_lr"] for g in trainer.optimizer.param_groups})  # before the warm-up
    assert len(lrs) >= 4 and lrs[-1] == pytest.approx(5e-4) and lrs[0] < 5e-4 * 0.65 ** 3
    report = trainer.fit()
    assert report["steps"] == 6 and math.isfinite(report["final"]["teacher"]["test"]["nll"])
