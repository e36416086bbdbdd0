"""The training loop: step-based, resumable, logged, and free of per-step host round trips.

One step reads top to bottom: next batch, method loss (under autocast), backward, optimiser step, learning-rate
schedule step, EMA teacher update. Everything a step logs stays on the device and is read every ``log_every``
steps; a non-finite loss is detected on the device too (the first bad step is recorded without a sync) and stops
training at the next read with a message naming that step, leaving the last good checkpoint in place.

Checkpoints (``last.pt``, and ``best.pt`` when a validation split exists) hold everything needed to continue:
student, teacher, optimiser, scheduler, loader position, every random state, step, config and evaluation
history. A run interrupted at any step and resumed ends with the same weights as an uninterrupted run on CPU.
Model selection uses the validation split only, never the test set.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ssl_mix.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from ssl_mix.config import OptimConfig, TrainConfig
from ssl_mix.metrics import ClassificationMetrics
from ssl_mix.methods import Batch, Method, StepContext, StepOutput
from ssl_mix.ramps import cosine_rampdown, linear_rampup
from ssl_mix.teacher import EMATeacher

__all__ = ["Trainer", "NonFiniteLossError", "evaluate", "resolve_device", "build_optimizer", "lr_multiplier"]

CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss became NaN or infinite; the message names the step and the kept checkpoint."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {name!r}") from err


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or Adam with multi-tensor (foreach) kernels."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def lr_multiplier(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine ramp-down reaching 0 at
    ``lr_rampdown_factor * total_steps`` (ICT: 450/400 epochs), or constant."""
    mult = linear_rampup(step, cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "cosine":
        mult *= cosine_rampdown(step, math.ceil(cfg.lr_rampdown_factor * total_steps))
    return mult


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             device: torch.device | str = "cpu", precision: str = "fp32") -> dict[str, float]:
    """Accuracy (%), mean NLL (nats) and ECE (%) of ``model`` in eval mode over ``(x, y)`` batches.

    The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    metrics = ClassificationMetrics()
    try:
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(x)
            metrics.update(logits, y)
    finally:
        model.train(was_training)
    return metrics.compute()


class _GracefulStop:
    """While active, SIGINT (Ctrl-C) and SIGTERM (cluster pre-emption) ask the loop to stop at the next step
    boundary, where it writes a checkpoint; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _LogAccumulator:
    """Sums logged values on the device between reads, and remembers the first step with a non-finite loss."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor | float] = {}
        self.count = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, step: int, loss: torch.Tensor, logs: Mapping[str, torch.Tensor | float]) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)
        for key, value in {"loss/total": loss.detach(), **logs}.items():
            value = value.float() if isinstance(value, torch.Tensor) else value
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += 1

    def read(self) -> tuple[dict[str, float], int]:
        """Means since the last read, and the first bad step (-1 if none). One host round trip."""
        keys = list(self.sums)
        tensors = [torch.as_tensor(self.sums[k], dtype=torch.float32, device=self.device) for k in keys]
        values = torch.stack([*tensors, self.first_bad.float()]).cpu().tolist() if keys else [float(self.first_bad)]
        means = {k: v / max(self.count, 1) for k, v in zip(keys, values[:-1])}
        self.sums, self.count = {}, 0
        return means, int(values[-1])


class Trainer:
    """Trains a student with a :class:`~ssl_mix.methods.Method` and keeps an EMA teacher of it.

    Args:
        model: the student classifier (any ``nn.Module``; staged models are needed for manifold mixup).
        method: the training method (ERM, Mixup, ManifoldMixup, ICT).
        loader: a dual loader yielding ``(x_l, y_l, x_u)`` forever, with ``state_dict``/``load_state_dict``.
        train: loop settings (steps, seed, evaluation, logging, checkpoints, device, precision).
        optim: optimiser and learning-rate schedule.
        ema_decay: EMA decay of the teacher.
        ema_warmup: use the mean-teacher warm-up decay min(1 - 1/(t+1), decay).
        eval_sets: named evaluation data: ``"test"`` and optionally ``"valid"`` (model selection uses ``"valid"``
            only). Each value is a re-iterable of ``(x, y)`` batches (e.g. a DataLoader or a function's result
            list), or a zero-argument callable returning such an iterable.
        config: the run's full configuration as a dict, stored in checkpoints and logged as TensorBoard hparams.
        linearity: optional ``(callable(model) -> dict[str, float])`` measured every ``train.linearity_every``
            steps and logged under ``linearity/``.

    Note:
        Logged values are read from the device every ``log_every`` steps, so a non-finite loss is reported up to
        ``log_every`` steps after it happened (the message names the exact step); checkpoints are only written
        after such a read, so a checkpoint never holds weights updated by a non-finite loss.
    """

    def __init__(self, model: nn.Module, method: Method, loader: Any, *, train: TrainConfig | None = None,
                 optim: OptimConfig | None = None, ema_decay: float = 0.999, ema_warmup: bool = True,
                 eval_sets: Mapping[str, Any] | None = None, config: dict[str, Any] | None = None,
                 linearity: Any = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(method, Method):
            raise TypeError(f"method must be an ssl_mix Method (ERM, Mixup, ManifoldMixup, ICT), got {type(method).__name__}")
        for name in ("state_dict", "load_state_dict", "__iter__"):
            if not hasattr(loader, name):
                raise TypeError(f"loader must be a dual loader with {name}() (e.g. TensorDualLoader), got {type(loader).__name__}")
        self.cfg = train or TrainConfig()
        self.optim_cfg = optim or OptimConfig()
        self.device = resolve_device(self.cfg.device)
        self.method, self.loader = method, loader
        self.eval_sets = dict(eval_sets or {})
        unknown = set(self.eval_sets) - {"test", "valid"}
        if unknown:
            raise ValueError(f"eval_sets keys must be 'test' and/or 'valid', got {sorted(unknown)}")
        self.config = config or {}
        self.linearity = linearity
        self.out_dir = Path(self.cfg.out_dir)

        self.model = model.to(self.device)
        if self.cfg.compile:
            self.student = _try_compile(self.model)
        else:
            self.student = self.model
        self.teacher = EMATeacher(self.model, decay=ema_decay, warmup=ema_warmup).to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), self.optim_cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_multiplier(s, self.cfg.steps, self.optim_cfg))
        self.generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed + 1)
        self.host_generator = torch.Generator().manual_seed(self.cfg.seed + 2)

        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._last_checkpoint_step: int | None = None
        self._writer = None

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train until ``train.steps``; returns the final report (also written to ``out_dir/report.json``)."""
        from tqdm.auto import tqdm

        self.out_dir.mkdir(parents=True, exist_ok=True)
        writer = self._tensorboard()
        logs = _LogAccumulator(self.device)
        batches = iter(self.loader)
        self.model.train()
        progress = tqdm(total=self.cfg.steps, initial=self.step, disable=not self.cfg.progress, unit="step",
                        dynamic_ncols=True, leave=True)
        start = time.perf_counter()
        start_step = self.step
        stop = _GracefulStop()
        try:
            with stop:
                self._loop(batches, logs, writer, progress, stop)
        finally:
            progress.close()
            writer.flush()
        wall = time.perf_counter() - start
        report = self._report(wall, self.step - start_step)
        _write_json(self.out_dir / "report.json", report)
        self._log_hparams(writer, report)
        writer.close()
        self._writer = None
        return report

    def _loop(self, batches, logs: _LogAccumulator, writer, progress, stop: _GracefulStop) -> None:
        window_start, window_images = time.perf_counter(), 0
        while self.step < self.cfg.steps:
            x_l, y_l, x_u = next(batches)
            batch = Batch(x_l.to(self.device, non_blocking=True), y_l.to(self.device, non_blocking=True),
                          x_u.to(self.device, non_blocking=True))
            out = self.train_step(batch)
            logs.add(self.step - 1, out.loss, out.logs)
            window_images += batch.x_l.shape[0] + (batch.x_u.shape[0] if self.method.uses_unlabeled else 0)
            done = self.step == self.cfg.steps

            if self.step % self.cfg.log_every == 0 or done:
                means = self._read_logs(logs)
                now = time.perf_counter()
                means["images_per_s"] = window_images / max(now - window_start, 1e-9)
                means["lr"] = self.optimizer.param_groups[0]["lr"]
                for key, value in means.items():
                    writer.add_scalar(key if "/" in key else f"train/{key}", value, self.step)
                progress.set_postfix(loss=f"{means['loss/total']:.4f}", img_s=f"{means['images_per_s']:.0f}",
                                     refresh=False)
                progress.update(self.step - progress.n)
                window_start, window_images = now, 0
            if self.linearity is not None and self.cfg.linearity_every and (
                    self.step % self.cfg.linearity_every == 0 or done):
                for key, value in self.linearity(self.teacher.module).items():
                    writer.add_scalar(f"linearity/{key}", value, self.step)
            if self.eval_sets and (self.step % self.cfg.eval_every == 0 or done):
                self._read_logs(logs)
                record = self._evaluate_all()
                for model_name, sets in record["models"].items():
                    for set_name, metrics in sets.items():
                        for metric, value in metrics.items():
                            if metric != "count":
                                writer.add_scalar(f"{set_name}/{model_name}_{metric}", value, self.step)
                progress.set_postfix(acc=_short_accuracy(record), refresh=False)
            if (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0) or done:
                self._read_logs(logs)
                self.save(self.out_dir / "last.pt")
            if stop.requested is not None:
                self._read_logs(logs)
                path = self.save(self.out_dir / "last.pt")
                raise KeyboardInterrupt(f"training interrupted by signal {stop.requested} after step {self.step}; "
                                        f"state saved to {path}; continue with --resume (Trainer.resume())")

    def train_step(self, batch: Batch) -> StepOutput:
        """One optimisation step: method loss (under autocast), backward, optimiser and schedule steps, teacher
        update. Returns the method's output; nothing is read back from the device."""
        ctx = StepContext(self.step, self.cfg.steps, self.generator, self.host_generator, self.teacher)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            out = self.method.loss(self.student, batch, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.teacher.update(self.model, self.step)
        return out

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, dict[str, dict[str, float]]]:
        """Evaluate student and teacher on every eval set: ``{model: {set: metrics}}``."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for model_name, model in (("student", self.model), ("teacher", self.teacher.module)):
            out[model_name] = {}
            for set_name, data in self.eval_sets.items():
                batches = data() if callable(data) else data
                out[model_name][set_name] = evaluate(model, batches, device=self.device, precision=self.cfg.precision)
        return out

    def _evaluate_all(self) -> dict[str, Any]:
        record = {"step": self.step, "models": self.evaluate()}
        self.history.append(record)
        if "valid" in self.eval_sets:
            for model_name, sets in record["models"].items():
                acc = sets["valid"]["accuracy"]
                if self.best is None or acc > self.best["valid_accuracy"]:
                    self.best = {"step": self.step, "model": model_name, "valid_accuracy": acc,
                                 "test": sets.get("test")}
                    self.save(self.out_dir / "best.pt")
        return record

    # -------------------------------------------------------------------------------------------- logging
    def _read_logs(self, logs: _LogAccumulator) -> dict[str, float]:
        means, first_bad = logs.read()
        if first_bad >= 0:
            kept = (f"the last good checkpoint ({self.out_dir / 'last.pt'}, step {self._last_checkpoint_step}) is "
                    "kept" if self._last_checkpoint_step is not None else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"the training loss became non-finite (NaN or inf) at step {first_bad}; training stopped and {kept}. "
                "Try a lower learning rate or consistency weight, or precision='fp32'."
            )
        return means

    def _tensorboard(self):
        if self._writer is None:
            with warnings.catch_warnings():
                # tensorboard's import path emits deprecation warnings from its dependencies on some versions.
                warnings.simplefilter("ignore", DeprecationWarning)
                from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
        return self._writer

    def _log_hparams(self, writer, report: dict[str, Any]) -> None:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in _flatten(self.config).items()}
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
            "selection": "validation split" if "valid" in self.eval_sets else "none (no validation split)",
            "wall_time_s": wall,
            "steps_per_s": steps_run / wall if wall > 0 else float("nan"),
            "out_dir": str(self.out_dir),
        }

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stopped."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict(),
            "generator": self.generator.get_state(),
            "host_generator": self.host_generator.get_state(),
            "rng": capture_rng_state(),
            "config": self.config,
            "history": self.history,
            "best": self.best,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (e.g. a loaded checkpoint)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {state.get('format')!r}; expected {CHECKPOINT_FORMAT}")
        self.model.load_state_dict(state["model"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(state["generator"].cpu())
        self.host_generator.set_state(state["host_generator"].cpu())
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        self._last_checkpoint_step = self.step

    def save(self, path: str | Path) -> Path:
        """Atomically write a checkpoint of the whole training state."""
        path = save_checkpoint(self.state_dict(), path)
        if Path(path).name == "last.pt":
            self._last_checkpoint_step = self.step
        return path

    def resume(self, path: str | Path | None = None) -> int:
        """Load ``path`` (default ``out_dir/last.pt``) and continue from its step. Returns that step."""
        path = Path(path) if path is not None else self.out_dir / "last.pt"
        self.load_state_dict(load_checkpoint(path, map_location="cpu"))
        return self.step


def _try_compile(model: nn.Module) -> nn.Module:
    try:
        return torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any backend failure means "run eagerly"
        warnings.warn(f"torch.compile is unavailable here ({err}); training eagerly instead", RuntimeWarning,
                      stacklevel=3)
        return model


def _short_accuracy(record: dict[str, Any]) -> str:
    parts = []
    for model_name, sets in record["models"].items():
        if "test" in sets:
            parts.append(f"{model_name[0]}{sets['test']['accuracy']:.1f}")
    return "/".join(parts)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_json(path: Path, data: Any) -> None:
    import json
    import os

    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
