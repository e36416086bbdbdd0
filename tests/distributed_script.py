"""Checks that tests/test_distributed.py runs under ``torchrun --nproc_per_node 2`` (CPU, gloo), through the public API.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_script.py MODE RESULT RUN_DIR

Process 0 writes its findings as JSON to RESULT; the test asserts on them. MODE is one of:

- ``checks``, all of:
  ``identical``: ICT and manifold mixup train a few steps; the student and teacher (weights and buffers) are
  gathered from both processes and compared, and with process 0's checkpoint. ICT is also interrupted after
  step 2 and resumed, and compared with the uninterrupted run; and ``run_experiment(resume=True)`` continues a
  finished run. A SIGINT to process 1 alone stops both processes at the same step.
  ``sgd``: ERM with plain SGD on a model without batch norm, with one and with two student forward passes per
  step; the weights after a few steps are compared with a single-process computation on batches of twice the
  size, and each step's shards with that batch.
- ``die``: process 1 exits abruptly at step 3; process 0 must fail with a clear error instead of hanging.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix import (
    ERM,
    DataSpec,
    Method,
    OptimConfig,
    StepOutput,
    TensorDualLoader,
    TrainConfig,
    Trainer,
    arrays_from_tensors,
    build_trainer,
    distributed,
    load_checkpoint,
    load_run_data,
    preset,
    run_experiment,
)

TIMEOUT_S = 30.0


def _config(run_dir: Path, method: str, steps: int):
    return preset("demo").replace(
        method={"name": method},
        train={"steps": steps, "eval_every": 2, "log_every": 2, "checkpoint_every": 2, "progress": False,
               "out_dir": str(run_dir), "device": "cpu", "dist_timeout": TIMEOUT_S},
    )


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([v.detach().double().flatten() for v in module.state_dict().values()])


def _spread(t: torch.Tensor) -> float:
    """Largest difference between any process's copy of ``t`` and process 0's."""
    rows = distributed.all_gather_rows(t)
    return float((rows - rows[0]).abs().max())


class _Interrupt(Method):
    """Wraps a method; at step ``at`` raises KeyboardInterrupt (every process) or exits process ``rank`` at once."""

    def __init__(self, method: Method, at: int, exit_rank: int | None = None) -> None:
        self.method, self.at, self.exit_rank = method, at, exit_rank
        self.uses_unlabeled = method.uses_unlabeled

    def loss(self, student, batch, ctx):
        if ctx.step == self.at:
            if self.exit_rank is None:
                raise KeyboardInterrupt
            if distributed.rank() == self.exit_rank:
                os._exit(1)
        return self.method.loss(student, batch, ctx)


class _SignalOne(Method):
    """Wraps a method; at step ``at`` process ``rank`` sends itself SIGINT (as Ctrl-C would), the others do not."""

    def __init__(self, method: Method, at: int, rank: int) -> None:
        self.method, self.at, self.rank = method, at, rank
        self.uses_unlabeled = method.uses_unlabeled

    def loss(self, student, batch, ctx):
        if ctx.step == self.at and distributed.rank() == self.rank:
            os.kill(os.getpid(), signal.SIGINT)
        return self.method.loss(student, batch, ctx)


def signal_stop(run_dir: Path, data) -> dict:
    trainer = build_trainer(_config(run_dir, "ict", 8), data)
    trainer.method = _SignalOne(trainer.method, at=2, rank=1)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        distributed.barrier()
    return {"stopped_at": distributed.all_gather_objects(trainer.step),
            "checkpoint_step": load_checkpoint(run_dir / "last.pt")["step"]}


def signal_in_evaluation(run_dir: Path, data, reference: Path) -> dict:
    """Process 1 alone gets SIGINT while the first batch of the evaluation of step 2 (of 4) is drawn: both processes
    stop there, before that evaluation; the resumed run runs it and ends as the uninterrupted ``reference`` run."""
    trainer = build_trainer(_config(run_dir, "ict", 4), data)
    name, eval_data = next(iter(trainer.eval_sets.items()))

    def signalled():
        for i, batch in enumerate(eval_data()):
            if trainer.step == 2 and i == 0 and distributed.rank() == 1:
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    trainer.eval_sets[name] = signalled
    try:
        trainer.fit()
    except KeyboardInterrupt:
        distributed.barrier()
    state = load_checkpoint(run_dir / "last.pt")
    found = {"stopped_at": distributed.all_gather_objects(trainer.step), "checkpoint_step": state["step"],
             "pending": state["evaluation_pending"], "evaluated_before": [r["step"] for r in state["history"]]}
    resumed = build_trainer(_config(run_dir, "ict", 4), data)
    resumed.resume()
    resumed.fit()
    expected = load_checkpoint(reference)
    found["evaluated_after"] = [r["step"] for r in resumed.history]
    found["same_history"] = resumed.history == expected["history"]
    found["resume_diff"] = max(float((a.double() - b.double()).abs().max())
                               for a, b in zip(resumed.student.state_dict().values(), expected["model"].values(),
                                               strict=True) if a.is_floating_point())
    return found


def identical(run_dir: Path) -> dict:
    data = load_run_data(_config(run_dir, "ict", 4))
    out = {}
    for method in ("ict", "manifold-mixup"):
        trainer = build_trainer(_config(run_dir / method, method, 4), data)
        trainer.fit()
        state = load_checkpoint(run_dir / method / "last.pt")
        saved = torch.cat([v.double().flatten() for v in state["model"].values()])
        out[method] = {"student_spread": _spread(_flat(trainer.student)),
                       "teacher_spread": _spread(_flat(trainer.teacher)),
                       "checkpoint_diff": float((saved - _flat(trainer.student)).abs().max()),
                       "checkpoint_step": state["step"], "rank_rng": len(state["rank_rng"])}
        if method == "ict":
            part = build_trainer(_config(run_dir / "part", method, 4), data)
            part.method = _Interrupt(part.method, at=3)
            try:
                part.fit()
            except KeyboardInterrupt:
                distributed.barrier()  # process 0 may still be writing last.pt when the others get here
            resumed = build_trainer(_config(run_dir / "part", method, 4), data)
            out[method]["resumed_from"] = resumed.resume()
            resumed.fit()
            out[method]["resume_diff"] = max(float((_flat(resumed.student) - _flat(trainer.student)).abs().max()),
                                             float((_flat(resumed.teacher) - _flat(trainer.teacher)).abs().max()))
    run_experiment(_config(run_dir / "experiment", "ict", 2), data=data)
    report = run_experiment(_config(run_dir / "experiment", "ict", 4), data=data, resume=True)
    history = load_checkpoint(run_dir / "experiment" / "last.pt")["history"]
    out["experiment"] = {"steps": report["steps"], "evaluated_at": [record["step"] for record in history]}
    out["signal"] = signal_stop(run_dir / "signal", data)
    out["signal_in_evaluation"] = signal_in_evaluation(run_dir / "signal-eval", data, run_dir / "ict" / "last.pt")
    return out


class _TwoForwardERM(ERM):
    """ERM computed as the mean of two half-batch losses: two student forward passes before one backward."""

    def loss(self, student, batch, ctx):
        h = batch.x_l.shape[0] // 2
        loss = (F.cross_entropy(student(batch.x_l[:h]), batch.y_l[:h])
                + F.cross_entropy(student(batch.x_l[h:]), batch.y_l[h:])) / 2
        return StepOutput(loss, {"loss/supervised": loss.detach()})


def sgd(run_dir: Path, batch: int = 8, steps: int = 3, lr: float = 0.5) -> dict:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=gen)
    arrays = arrays_from_tensors(images, torch.arange(40) % 10)
    spec = DataSpec("noise", 10, (0.5,), (0.25,), crop_padding=0, flip=False)
    optim = OptimConfig(optimizer="sgd", lr=lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                        lr_schedule="constant")
    out = {}
    for name, method in (("one_forward", ERM()), ("two_forwards", _TwoForwardERM())):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
        initial = copy.deepcopy(model)
        loader = TensorDualLoader(arrays, arrays, spec, batch_size=batch, seed=3, augment=False,
                                  rank=distributed.rank(), world_size=distributed.world_size())
        reference_loader = TensorDualLoader(arrays, arrays, spec, batch_size=2 * batch, seed=3, augment=False)
        shards_match = all(
            torch.equal(distributed.all_gather_rows(loader.batch(s)[0]).flatten(0, 1), reference_loader.batch(s)[0])
            for s in range(steps))
        trainer = Trainer(model, method, loader, optim=optim,
                          train=TrainConfig(steps=steps, log_every=1, checkpoint_every=0, progress=False,
                                            device="cpu", out_dir=str(run_dir / name), dist_timeout=TIMEOUT_S))
        trainer.fit()
        reference = copy.deepcopy(initial)  # one process, batch 2B, plain gradient descent by hand
        for s in range(steps):
            x, y, _ = reference_loader.batch(s)
            grads = torch.autograd.grad(F.cross_entropy(reference(x), y), list(reference.parameters()))
            with torch.no_grad():
                for p, g in zip(reference.parameters(), grads, strict=True):
                    p -= lr * g
        out[name] = {"max_diff": float((_flat(trainer.student) - _flat(reference)).abs().max()),
                     "moved": float((_flat(trainer.student) - _flat(initial)).abs().max()),
                     "shards_match": shards_match, "spread": _spread(_flat(trainer.student))}
    return out


def die(run_dir: Path) -> dict:
    trainer = build_trainer(_config(run_dir, "ict", 20))
    trainer.method = _Interrupt(trainer.method, at=3, exit_rank=1)
    trainer.fit()
    return {"finished": True}  # not reached: process 0 must fail


def main() -> int:
    mode, result, run_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    torch.set_num_threads(1)
    with distributed.session("cpu", timeout=TIMEOUT_S):
        try:
            if mode == "checks":
                out = {"identical": identical(run_dir / "identical"), "sgd": sgd(run_dir / "sgd")}
            else:
                out = die(run_dir)
        except distributed.DistributedError as err:
            print(f"distributed_script: error: {err}", file=sys.stderr)
            return 1
        out["world_size"] = distributed.world_size()
        if distributed.is_main():
            result.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
