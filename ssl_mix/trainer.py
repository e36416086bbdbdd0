"""The training loop: step-based, resumable, logged, and free of per-step host round trips.

One step reads top to bottom: next batch, method loss (under autocast), backward, optimiser step, learning-rate
schedule step, EMA teacher update. Everything a step logs stays on the device and is read every ``log_every``
steps; a non-finite loss is detected on the device too (the first bad step is recorded without a sync) and stops
training at the next read with a message naming that step, leaving the last good checkpoint in place.

The trainer is handed its parts: the student, the method, the loader, the EMA teacher and the log writer (built
by :func:`ssl_mix.build_trainer` from a config, or by hand). The only files it writes are checkpoints, through
:mod:`ssl_mix.checkpoint`; :meth:`Trainer.fit` returns the report, which :func:`ssl_mix.run_experiment` writes.

Checkpoints (the run directory's latest and, when a validation split exists, best; see :mod:`ssl_mix.run`) hold
everything needed to continue: student, teacher, optimiser, scheduler, loader position, every random state, step,
config, the data description and evaluation history. A run interrupted at any step and resumed ends with the same
weights as an uninterrupted run on CPU. A stop signal (SIGINT, SIGTERM) is honoured at the end of a step and between
evaluation batches; a stop during an evaluation writes the checkpoint without that evaluation (and with the random
state from before it), marked ``evaluation_pending``, and the resumed run runs that evaluation first.
Model selection uses the validation split only, never the test set.

Launched by torchrun with several processes (and the process group joined, e.g. by
:func:`ssl_mix.distributed.session`), the trainer wraps the student in ``DistributedDataParallel``, evaluates a
shard of each evaluation set per process and adds the sums up, agrees on non-finite losses and stop signals at
every log read (and on stop signals before every round of evaluation batches), and writes checkpoints from
process 0 only (build the writer with :func:`ssl_mix.train_logs.tensorboard_writer`, a null writer on the other
processes); see :mod:`ssl_mix.distributed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_mix import distributed
from ssl_mix.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from ssl_mix.compile import compile_model
from ssl_mix.config import OptimConfig, TrainConfig
from ssl_mix.evaluation import EvaluationStopped, evaluate
from ssl_mix.methods import Batch, Method, StepContext, StepOutput
from ssl_mix.optim import backbone_frozen, build_optimizer, build_scheduler
from ssl_mix.run import CHECKPOINT_FORMAT, RunDir, check_checkpoint_format
from ssl_mix.teacher import EMATeacher
from ssl_mix.train_logs import GracefulStop, LogAccumulator, LogWriter, NullWriter, flatten_dict

__all__ = ["Trainer", "NonFiniteLossError", "resolve_device"]


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss became NaN or infinite; the message names the step and the kept checkpoint."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`.

    Under torchrun with several processes, CUDA means ``cuda:LOCAL_RANK`` (see
    :func:`ssl_mix.distributed.local_device`).
    """
    return distributed.local_device(name)


class Trainer:
    """Trains a student with a :class:`~ssl_mix.methods.Method` and keeps an EMA teacher of it.

    Args:
        model: the student classifier (any ``nn.Module``; staged models are needed for manifold mixup).
        method: the training method (ERM, Mixup, ManifoldMixup, ICT).
        loader: a dual loader yielding ``(x_l, y_l, x_u)`` forever, with ``state_dict``/``load_state_dict``.
        train: loop settings (steps, seed, evaluation, logging, checkpoints, device, precision).
        optim: optimiser and learning-rate schedule.
        teacher: the :class:`~ssl_mix.EMATeacher` of ``model`` (its decay, warm-up and buffer convention; see
            :func:`ssl_mix.build_teacher` for one from a config); default ``EMATeacher(model)`` (decay 0.999 with
            warm-up, the student's buffers copied). It is moved to the training device and, in a distributed run,
            restarted from the student's weights as DistributedDataParallel broadcast them.
        writer: where logged values go: a TensorBoard ``SummaryWriter`` (see
            :func:`ssl_mix.train_logs.tensorboard_writer`) or anything with its ``add_scalar``, ``add_hparams``,
            ``flush`` and ``close``; default a :class:`~ssl_mix.train_logs.NullWriter`, which keeps nothing.
        eval_sets: named evaluation data: ``"test"`` and optionally ``"valid"`` (model selection uses ``"valid"``
            only). Each value is a re-iterable of ``(x, y)`` batches (e.g. a DataLoader or a function's result
            list), or a zero-argument callable returning such an iterable.
        config: the run's full configuration as a dict, stored in checkpoints and logged as TensorBoard hparams.
        data_info: what it takes to use the model without the training data (classes, input shape,
            normalisation; see :func:`ssl_mix.run.data_info`), stored in checkpoints as ``"data"``.
        linearity: optional ``(callable(model) -> dict[str, float])`` measured every ``train.linearity_every``
            steps and logged under ``linearity/``.

    Attributes:
        student: the model being trained (on the training device): optimised, averaged into ``teacher``, evaluated
            and checkpointed.
        wrapped_student: what the training step calls: ``student`` itself, or behind DistributedDataParallel
            and/or ``torch.compile``.
        teacher: the :class:`~ssl_mix.EMATeacher` of ``student``.

    Note:
        Logged values are read from the device every ``log_every`` steps, so a non-finite loss is reported up to
        ``log_every`` steps after it happened (the message names the exact step); checkpoints are only written
        after such a read, so a checkpoint never holds weights updated by a non-finite loss.

        In a distributed run (process group initialised, more than one process) build the trainer on every
        process with a loader sharded by ``rank``/``world_size``; the student is wrapped in
        ``DistributedDataParallel`` (``train.sync_bn`` converts its batch norms to ``SyncBatchNorm`` first), each
        process draws its own mixing weights (generators seeded from ``(seed, rank)``), and :meth:`fit`,
        :meth:`evaluate`, :meth:`save` and :meth:`state_dict` must be called on every process.
    """

    def __init__(self, model: nn.Module, method: Method, loader: Any, *, train: TrainConfig | None = None,
                 optim: OptimConfig | None = None, teacher: EMATeacher | None = None, writer: LogWriter | None = None,
                 eval_sets: Mapping[str, Any] | None = None, config: dict[str, Any] | None = None,
                 linearity: Any = None, data_info: Mapping[str, Any] | None = None) -> None:
        _check_arguments(model, method, loader, teacher, eval_sets)
        self.cfg = train or TrainConfig()
        self.optim_cfg = optim or OptimConfig()
        self.device = resolve_device(self.cfg.device)
        self.method, self.loader = method, loader
        self.eval_sets = dict(eval_sets or {})
        self.config = config or {}
        self.data_info = dict(data_info or {})
        self.linearity = linearity
        self.writer = writer if writer is not None else NullWriter()
        self.run = RunDir(self.cfg.out_dir)
        self.out_dir = self.run.root

        self.distributed = distributed.is_distributed()
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.student = model.to(self.device)  # the raw student: optimised, averaged into the teacher, checkpointed
        self.wrapped_student = self.student  # what the training step calls: the student behind DDP / compile
        self._wrap_student(loader)
        self.teacher = self._place_teacher(teacher)
        self.optimizer = build_optimizer(self.student, self.optim_cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.steps, self.optim_cfg)
        # optim.freeze_backbone_steps: these parameters get no gradient (so no optimiser state, momentum or weight
        # decay) while frozen; whether they are is a function of the step, set in train_step.
        self._backbone = [p for g in self.optimizer.param_groups if g.get("head") is False for p in g["params"]]
        self._backbone_frozen: bool | None = None
        # Each process mixes its own shard with its own draws; rank 0 keeps the one-process seeds.
        self.generator = torch.Generator(device=self.device).manual_seed(distributed.rank_seed(self.cfg.seed + 1))
        self.host_generator = torch.Generator().manual_seed(distributed.rank_seed(self.cfg.seed + 2))

        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._last_checkpoint_step: int | None = None
        self._stop_signal: GracefulStop | None = None
        self._stop_agreed = False
        self._evaluation_pending = False  # a stop cut this step's evaluation short (see _end_of_step)

    def _wrap_student(self, loader: Any) -> None:
        """DDP (with SyncBatchNorm if asked) in a distributed run, then ``torch.compile`` if asked."""
        if distributed.launched_by_torchrun() and not self.distributed:
            raise ValueError("this process was started by torchrun as one of several, but the process group is not "
                             "initialised, so every process would train alone and write the same files; wrap the "
                             "training in `with ssl_mix.distributed.session(device):` (run_experiment does this) "
                             "or call ssl_mix.distributed.init(device) before building the Trainer")
        if self.distributed:
            if self.optim_cfg.freeze_backbone_steps:
                raise ValueError("optim.freeze_backbone_steps does not work in a distributed run yet "
                                 "(DistributedDataParallel needs the same parameters to get gradients at every step); "
                                 "set optim.freeze_backbone_steps=0 or train in one process")
            _check_sharded(loader, self.rank, self.world_size)
            if self.cfg.sync_bn and self.device.type == "cpu":
                raise ValueError("train.sync_bn needs GPUs (SyncBatchNorm has no CPU implementation); set "
                                 "train.sync_bn=false or train on CUDA devices")
            if self.cfg.sync_bn:
                self.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
            # Copies process 0's weights everywhere, so the teacher built next starts identical on every process.
            self.wrapped_student = distributed.wrap_ddp(self.student, self.device)
        if self.cfg.compile:
            self.wrapped_student = compile_model(self.wrapped_student)

    def _place_teacher(self, teacher: EMATeacher | None) -> EMATeacher:
        """The teacher on the training device; in a distributed run, with the student's batch-norm layers and
        weights (process 0's, as DDP broadcast them), so that it starts identical on every process."""
        if teacher is None:
            return EMATeacher(self.student).to(self.device)
        teacher = teacher.to(self.device)
        if self.distributed:
            if self.cfg.sync_bn:
                teacher.module = nn.SyncBatchNorm.convert_sync_batchnorm(teacher.module)
            teacher.module.load_state_dict(self.student.state_dict())
        return teacher

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train until ``train.steps``; returns the final report (:func:`ssl_mix.run_experiment` writes it to the run
        directory's ``report.json``). The writer is flushed and closed at the end (a ``SummaryWriter`` reopens on its
        next write).

        In a distributed run every process calls it and gets the same report, after process 0 wrote its files."""
        from tqdm.auto import tqdm

        writer = self.writer
        logs = LogAccumulator(self.device, distributed_run=self.distributed)
        batches = iter(self.loader)
        self.student.train()
        progress = tqdm(total=self.cfg.steps, initial=self.step, disable=not (self.cfg.progress and self.is_main),
                        unit="step", dynamic_ncols=True, leave=True)
        start = time.perf_counter()
        start_step = self.step
        stop = self._stop_signal = GracefulStop()
        self._stop_agreed = False
        try:
            with stop:
                self._loop(batches, logs, writer, progress, stop)
        except RuntimeError as err:
            if self.distributed and not isinstance(err, NonFiniteLossError) and distributed.is_collective_failure(err):
                raise distributed.DistributedError(
                    f"process {self.rank} of {self.world_size} stopped after step {self.step}: a collective operation "
                    f"failed ({str(err).strip().splitlines()[0][:300]}). Another process most likely crashed or was "
                    f"killed (see its error above), or stopped responding for longer than the timeout "
                    f"(train.dist_timeout). Fix that and continue with ssl-mix train --resume (Trainer.resume()) from "
                    f"{self.run.last} (step {self._last_checkpoint_step})."
                ) from err
            raise
        finally:
            progress.close()
            writer.flush()
        wall = time.perf_counter() - start
        report = self._report(wall, self.step - start_step)
        self._log_hparams(writer, report)
        writer.close()
        distributed.barrier()  # every process returns once process 0 has written the final files
        return report

    def _loop(self, batches, logs: LogAccumulator, writer, progress, stop: GracefulStop) -> None:
        window_start, window_images = time.perf_counter(), 0
        if self._evaluation_pending:  # a stop interrupted this step's evaluation: it runs now, as it would have
            self._evaluation_pending = False
            self._end_of_step(logs, writer, progress, stop, evaluate=bool(self.eval_sets))
        while self.step < self.cfg.steps:
            x_l, y_l, x_u = next(batches)
            x_l, y_l = x_l.to(self.device, non_blocking=True), y_l.to(self.device, non_blocking=True)
            # A tuple: the views the method asked for (Method.views_for).
            x_u = (tuple(v.to(self.device, non_blocking=True) for v in x_u) if isinstance(x_u, tuple)
                   else x_u.to(self.device, non_blocking=True))
            batch = Batch.of(x_l, y_l, x_u)
            out = self.train_step(batch)
            logs.add(self.step - 1, out.loss, out.logs)
            window_images += self.world_size * (
                batch.x_l.shape[0] + (batch.x_u.shape[0] if self.method.uses_unlabeled else 0))
            done = self.step == self.cfg.steps

            if self.step % self.cfg.log_every == 0 or done:
                means = self._read_logs(logs)
                now = time.perf_counter()
                means["images_per_s"] = window_images / max(now - window_start, 1e-9)
                # The largest group's rate: the head's where groups differ (layer decay, head_lr_mult, frozen backbone).
                means["lr"] = max(group["lr"] for group in self.optimizer.param_groups)
                for key, value in means.items():
                    writer.add_scalar(key if "/" in key else f"train/{key}", value, self.step)
                progress.set_postfix(loss=f"{means['loss/total']:.4f}", img_s=f"{means['images_per_s']:.0f}",
                                     refresh=False)
                progress.update(self.step - progress.n)
                window_start, window_images = now, 0
            if self.linearity is not None and self.cfg.linearity_every and self.is_main and (
                    self.step % self.cfg.linearity_every == 0 or done):
                for key, value in self.linearity(self.teacher.module).items():
                    writer.add_scalar(f"linearity/{key}", value, self.step)
            self._end_of_step(logs, writer, progress, stop,
                              evaluate=bool(self.eval_sets) and (self.step % self.cfg.eval_every == 0 or done))

    def _end_of_step(self, logs: LogAccumulator, writer, progress, stop: GracefulStop, *, evaluate: bool) -> None:
        """After a step: its evaluation when due, its checkpoint when due, and a stop when one was requested."""
        done = self.step == self.cfg.steps
        if evaluate:
            self._read_logs(logs)
            rng = capture_rng_state()  # what the stop checkpoint records if the evaluation is cut short
            try:
                record, improved = self._evaluate_and_select(
                    should_stop=lambda: stop.requested is not None or self._stop_agreed)
            except EvaluationStopped:
                # The checkpoint holds the state before this evaluation (its random draws undone) and says it is
                # due, so --resume runs it first and the run continues as if never stopped.
                restore_rng_state(rng)
                self._evaluation_pending = True
                self._stop(logs, stop, during="during the evaluation of step")
            if improved:
                self.save(self.run.best)
            for model_name, sets in record["models"].items():
                for set_name, metrics in sets.items():
                    for metric, value in metrics.items():
                        if metric != "count":
                            writer.add_scalar(f"{set_name}/{model_name}_{metric}", value, self.step)
            progress.set_postfix(acc=_short_accuracy(record), refresh=False)
        if (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0) or done:
            self._read_logs(logs)
            self.save(self.run.last)
        # Processes may see a signal at different steps; they agree at the log reads and stop together there.
        if (self._stop_agreed if self.distributed else stop.requested is not None):
            self._stop(logs, stop, during="after step")

    def _stop(self, logs: LogAccumulator, stop: GracefulStop, *, during: str) -> None:
        """Write the latest checkpoint and leave the loop with a KeyboardInterrupt saying how to continue."""
        self._read_logs(logs)
        path = self.save(self.run.last)
        by = f"signal {stop.requested}" if stop.requested is not None else "a signal to another process"
        raise KeyboardInterrupt(f"training interrupted by {by} {during} {self.step}; "
                                f"state saved to {path}; continue with ssl-mix train --resume "
                                "(Trainer.resume() in Python)")

    def train_step(self, batch: Batch) -> StepOutput:
        """One optimisation step: method loss (under autocast), backward, optimiser and schedule steps, teacher
        update. Returns the method's output; nothing is read back from the device."""
        ctx = StepContext(self.step, self.generator, self.host_generator, self.teacher)
        frozen = backbone_frozen(self.step, self.optim_cfg)
        if frozen is not self._backbone_frozen:  # twice per run: the first step and the end of the freeze
            for p in self._backbone:
                p.requires_grad_(not frozen)
            self._backbone_frozen = frozen
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            out = self.method.loss(self.wrapped_student, batch, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.distributed:
            # Batch-norm statistics were updated from each process's own batch: take process 0's everywhere, so
            # the teacher copies the same buffers on every process.
            distributed.broadcast_buffers_(self.student)
            if self.teacher.buffers_mode == "own":
                distributed.broadcast_buffers_(self.teacher.module)
        self.teacher.update(self.student, self.step)
        return out

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self, *, should_stop: Callable[[], bool] | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """Evaluate student and teacher on every eval set: ``{model: {set: metrics}}``.

        In a distributed run each process evaluates its shard of each set and all get the totals.

        Args:
            should_stop: checked between batches (see :func:`ssl_mix.evaluation.evaluate`); when it returns True,
                :class:`~ssl_mix.evaluation.EvaluationStopped` is raised and nothing is returned.
        """
        out: dict[str, dict[str, dict[str, float]]] = {}
        for model_name, model in (("student", self.student), ("teacher", self.teacher.module)):
            out[model_name] = {}
            for set_name, data in self.eval_sets.items():
                batches = data() if callable(data) else data
                out[model_name][set_name] = evaluate(model, batches, device=self.device, precision=self.cfg.precision,
                                                     rank=self.rank, world_size=self.world_size,
                                                     should_stop=should_stop)
        return out

    def _evaluate_and_select(self, should_stop: Callable[[], bool] | None = None) -> tuple[dict[str, Any], bool]:
        """Evaluate, append to the history, and update the validation-selected best. Returns the record and
        whether the best changed (the caller then saves the best checkpoint); a stopped evaluation changes
        nothing."""
        record = {"step": self.step, "models": self.evaluate(should_stop=should_stop)}
        self.history.append(record)
        improved = False
        if "valid" in self.eval_sets:
            for model_name, sets in record["models"].items():
                acc = sets["valid"]["accuracy"]
                if self.best is None or acc > self.best["valid_accuracy"]:
                    self.best = {"step": self.step, "model": model_name, "valid_accuracy": acc,
                                 "test": sets.get("test")}
                    improved = True
        return record, improved

    # -------------------------------------------------------------------------------------------- logging
    def _read_logs(self, logs: LogAccumulator) -> dict[str, float]:
        means, first_bad, stop = logs.read(self._stop_signal is not None and self._stop_signal.requested is not None)
        self._stop_agreed = self._stop_agreed or stop
        if first_bad >= 0:
            kept = (f"the last good checkpoint ({self.run.last}, step {self._last_checkpoint_step}) is "
                    "kept" if self._last_checkpoint_step is not None else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"the training loss became non-finite (NaN or inf) at step {first_bad}; training stopped and {kept}. "
                "Try a lower learning rate or consistency weight, or precision='fp32'."
            )
        return means

    def _log_hparams(self, writer, report: dict[str, Any]) -> None:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                   for k, v in flatten_dict(self.config).items()}
        final = report["final"]
        metrics = {f"hparam/{m}_{s}_accuracy": v["accuracy"] for m, sets in final.items() for s, v in sets.items()}
        if hparams and metrics:
            writer.add_hparams(hparams, metrics, run_name="hparams")

    def _report(self, wall: float, steps_run: int) -> dict[str, Any]:
        final = self.history[-1]["models"] if self.history and self.history[-1]["step"] == self.step else {}
        return {
            "steps": self.step,
            "final": final,
            "best": self.best,
            "history": self.history,
            "selection": "validation split" if "valid" in self.eval_sets else "none (no validation split)",
            "wall_time_s": wall,
            "steps_per_s": steps_run / wall if wall > 0 else float("nan"),
            "out_dir": str(self.out_dir),
        }

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stopped.

        In a distributed run this is collective (call it on every process): the top-level random states are
        process 0's and ``"rank_rng"`` holds every process's, in rank order; the rest is the same everywhere.
        """
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.student.state_dict(),
            "teacher": self.teacher.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict(),
            "generator": self.generator.get_state(),
            "host_generator": self.host_generator.get_state(),
            "rng": capture_rng_state(),
            "config": self.config,
            "data": self.data_info,
            "history": self.history,
            "best": self.best,
            # True when a stop cut this step's evaluation short: resuming runs it before the next step.
            "evaluation_pending": self._evaluation_pending,
        }
        if self.distributed:
            state["rank_rng"] = distributed.all_gather_objects(
                {"generator": self.generator.get_state(), "host_generator": self.host_generator.get_state(),
                 "rng": capture_rng_state()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (e.g. a loaded checkpoint)."""
        check_checkpoint_format(state, "the checkpoint to resume")
        rank_rng = state.get("rank_rng")
        saved_world = len(rank_rng) if rank_rng is not None else 1
        if saved_world != self.world_size:
            raise ValueError(f"cannot resume: the checkpoint was written by a run of {saved_world} process(es) but "
                             f"this run has {self.world_size}; resume with the same number of processes (torchrun "
                             "--nproc_per_node and --nnodes), since the data order and random streams depend on it")
        random_state = rank_rng[self.rank] if rank_rng is not None else state
        self.student.load_state_dict(state["model"])
        self.teacher.module.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(random_state["generator"].cpu())
        self.host_generator.set_state(random_state["host_generator"].cpu())
        restore_rng_state(random_state["rng"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        self._evaluation_pending = bool(state.get("evaluation_pending", False))
        self._last_checkpoint_step = self.step

    def save(self, path: str | Path) -> Path:
        """Atomically write a checkpoint of the whole training state (in a distributed run: call on every process;
        process 0 writes)."""
        state = self.state_dict()
        path = save_checkpoint(state, path) if self.is_main else Path(path)
        if Path(path) == self.run.last:
            self._last_checkpoint_step = self.step
        return path

    def resume(self, path: str | Path | None = None) -> int:
        """Load ``path`` (default: the run directory's latest checkpoint) and continue from its step. Returns that
        step."""
        path = Path(path) if path is not None else self.run.last
        self.load_state_dict(load_checkpoint(path, map_location="cpu"))
        return self.step


def _check_arguments(model: Any, method: Any, loader: Any, teacher: Any, eval_sets: Mapping[str, Any] | None) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(method, Method):
        raise TypeError(f"method must be an ssl_mix Method (ERM, Mixup, ManifoldMixup, ICT), got "
                        f"{type(method).__name__}")
    if teacher is not None and not isinstance(teacher, EMATeacher):
        raise TypeError(f"teacher must be an ssl_mix EMATeacher of the model (e.g. EMATeacher(model, decay=0.999)), "
                        f"got {type(teacher).__name__}")
    for name in ("state_dict", "load_state_dict", "__iter__"):
        if not hasattr(loader, name):
            raise TypeError(f"loader must be a dual loader with {name}() (e.g. TensorDualLoader), got "
                            f"{type(loader).__name__}")
    unknown = set(eval_sets or {}) - {"test", "valid"}
    if unknown:
        raise ValueError(f"eval_sets keys must be 'test' and/or 'valid', got {sorted(unknown)}")


def _check_sharded(loader: Any, rank: int, world_size: int) -> None:
    # Loaders without these attributes (user-written) are trusted to shard the data themselves.
    loader_world, loader_rank = getattr(loader, "world_size", None), getattr(loader, "rank", None)
    if loader_world is not None and (loader_world, loader_rank) != (world_size, rank):
        raise ValueError(f"the loader is shard {loader_rank} of {loader_world} but this process is rank {rank} of "
                         f"{world_size}; build it with rank=ssl_mix.distributed.rank(), "
                         "world_size=ssl_mix.distributed.world_size() so each process gets its own shard")


def _short_accuracy(record: dict[str, Any]) -> str:
    parts = []
    for model_name, sets in record["models"].items():
        if "test" in sets:
            parts.append(f"{model_name[0]}{sets['test']['accuracy']:.1f}")
    return "/".join(parts)
