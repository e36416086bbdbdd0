"""Calibrated confidences: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", §4.2).

A classifier's softmax confidence is often not the probability of being right: ICT teachers at the CPU scale come
out under-confident, ERM with few labels over-confident. Temperature scaling divides the logits by one scalar
T > 0 fitted on held-out labeled data by minimising the negative log-likelihood,

    T* = argmin_T  -1/N sum_i log softmax(z_i / T)[y_i],

which changes no arg-max (accuracy is unchanged) and, on held-out data of the same distribution, brings the
expected calibration error down. T is optimised as log T with L-BFGS, so it stays positive without constraints.

The maths are pure functions (:func:`fit_temperature`, :func:`scale_logits`, :func:`calibration_metrics`); the rest
fits one temperature per model (student and EMA teacher) of a checkpoint on the validation images and stores them in
the checkpoint (``state["calibration"]``), where prediction and export read them. :func:`calibrate_run`
does it for a run directory, loading its validation split; training does it at the end when the run has one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.data import ImageArrays, eval_batches, preprocess_transform
from ssl_mix.data.run_data import load_validation
from ssl_mix.evaluation import EVAL_BATCH_SIZE
from ssl_mix.metrics import ClassificationMetrics
from ssl_mix.models.eval_mode import model_device
from ssl_mix.run import RunDir, load_run, update_checkpoint

__all__ = ["fit_temperature", "safe_temperature", "scale_logits", "calibration_metrics", "model_logits",
           "calibrate_models", "calibrate_checkpoints", "calibrate_run", "NoValidationSplitError",
           "MIN_RELIABLE_VALID"]

NUM_BINS = 15
"""ECE bins used throughout (equal width, as in Guo et al. 2017)."""

MIN_RELIABLE_VALID = 200
"""The smallest validation split whose temperature is trusted without a warning.

Measured (``benchmarks/calibration_size.py``, ``benchmarks/results/calibration_size_cpu.md``: cnn-small on the
CIFAR-10 JPEG copy, 4000 labels, T fitted on 50 random subsets of n validation images per n): for a nearly calibrated
ERM teacher (test ECE 2.77 %), temperatures fitted on n <= 100 images made test ECE worse on average (3.04 % at
n = 100, 6.08 % at n = 20) and in about half of the draws; from n = 200 the average improves (2.05 %), and at n = 1000
only 1 draw in 50 was worse. An under-confident ICT teacher (10.6 %) gains from n = 50 on."""


class NoValidationSplitError(ValueError):
    """A run without a validation split cannot be calibrated (the test set must stay untouched)."""


def _no_validation_split(run: str) -> NoValidationSplitError:
    return NoValidationSplitError(
        f"{run} has no validation split, and temperature scaling must be fitted on held-out labeled images (never "
        "the test set). Train with one: ssl-mix train ... --num-valid-per-class 100 (or "
        "DataConfig(num_valid_per_class=...)), then ssl-mix calibrate RUN.")


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of ``softmax(logits / T)`` (Guo et al. 2017, §4.2).

    Args:
        logits: ``(N, C)`` held-out logits (validation split, never the test set), any float dtype.
        targets: ``(N,)`` int64 class indices.
        max_iter: L-BFGS iterations (the problem is one-dimensional and smooth; it converges in a few).

    Returns:
        T as a Python float. T > 1 softens over-confident predictions, T < 1 sharpens under-confident ones.

    Note:
        The optimisation runs in float64 on the logits' device, over log T starting at T = 1.
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1] or logits.shape[0] == 0:
        raise ValueError(f"fit_temperature needs logits (N, C) and targets (N,) with N >= 1, got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("fit_temperature got non-finite logits; the model diverged, so no temperature can help")
    z = logits.detach().double()
    y = targets.detach().long().to(z.device)
    log_t = torch.zeros((), dtype=torch.float64, device=z.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def safe_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """:func:`fit_temperature`, but never a temperature that raises the NLL of the images it was fitted on.

    The NLL at T = 1 (no scaling) is the fallback: if the fitted T does worse on ``logits`` (an optimiser failure,
    or a degenerate fit), 1.0 is returned, so calibration can never make the fitting set's likelihood worse.

    Args:
        logits: ``(N, C)`` held-out logits; targets: ``(N,)`` int64.

    Returns:
        The fitted T, or 1.0.
    """
    temperature = fit_temperature(logits, targets)
    z, y = logits.detach().double(), targets.detach().long().to(logits.device)
    if F.cross_entropy(z / temperature, y) > F.cross_entropy(z, y):
        return 1.0
    return temperature


def scale_logits(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """``logits / temperature``: the calibrated logits (their softmax is the calibrated probability).

    Args:
        logits: ``(..., C)``.
        temperature: T > 0, a number or a 0-dim tensor.
    """
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return logits / temperature


def calibration_metrics(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
                        num_bins: int = NUM_BINS) -> dict[str, dict[str, float]]:
    """Accuracy, NLL and ECE before and after dividing the logits by ``temperature``.

    Args:
        logits: ``(N, C)``; targets: ``(N,)`` int64.
        temperature: the fitted T.
        num_bins: ECE bins.

    Returns:
        ``{"before": metrics, "after": metrics}``, each as :meth:`ClassificationMetrics.compute` gives it
        (accuracy and ECE in %, NLL in nats). The accuracies are equal.
    """
    out = {}
    for name, z in (("before", logits), ("after", scale_logits(logits, temperature))):
        metrics = ClassificationMetrics(num_bins=num_bins)
        metrics.update(z, targets)
        out[name] = metrics.compute()
    return out


@torch.no_grad()
def model_logits(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of ``model`` in eval mode over ``(x, y)`` batches, concatenated (float32, on ``device``).

    Args:
        model: the classifier; its train/eval mode is restored afterwards.
        batches: normalised inputs and int64 targets, e.g. :func:`ssl_mix.eval_batches`.
        device: where the model runs.

    Returns:
        ``(logits (N, C), targets (N,))``.
    """
    was_training = model.training
    model.eval()
    logits, targets = [], []
    try:
        for x, y in batches:
            logits.append(model(x.to(device)).float())
            targets.append(y.to(device))
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(targets)


def calibrate_models(models: Mapping[str, nn.Module], valid: Any, spec: Any, *,
                     device: torch.device | str = "cpu", preprocess: Any = None,
                     warn: bool = True) -> dict[str, Any]:
    """Fit one temperature per model on the validation images.

    Args:
        models: ``{"student": ..., "teacher": ...}`` (any names).
        valid: the validation :class:`~ssl_mix.ImageArrays` (labeled).
        spec: the run's :class:`~ssl_mix.DataSpec` (normalisation).
        device: where the models run.
        preprocess: the run's input transform after normalisation (e.g. its ZCA; see
            :func:`~ssl_mix.preprocess_transform`), or None.
        warn: say on stderr when the validation split is too small for a reliable temperature (off for the
            second and later checkpoints calibrated on the same images).

    Returns:
        The calibration record stored in a checkpoint: ``{"method": "temperature", "fitted_on": "valid",
        "count": N, "num_bins": 15, "reliable": N >= MIN_RELIABLE_VALID, "temperature": {name: T},
        "valid": {name: {"before": ..., "after": ...}}}``.

    Note:
        Below :data:`MIN_RELIABLE_VALID` images a warning on stderr says how many to add; each temperature comes from
        :func:`safe_temperature`, so it never raises the validation NLL.
    """
    if valid is None or len(valid) == 0:
        raise _no_validation_split("this run")
    if warn and len(valid) < MIN_RELIABLE_VALID:
        print(f"ssl-mix: warning: the temperature is fitted on {len(valid)} validation image(s); below "
              f"{MIN_RELIABLE_VALID} a fitted temperature often makes confidences worse on new images. Add at least "
              f"{MIN_RELIABLE_VALID - len(valid)} labeled validation image(s) (a larger num_valid_per_class), or "
              "use the uncalibrated confidences (predict --no-calibration).", file=sys.stderr)
    record: dict[str, Any] = {"method": "temperature", "fitted_on": "valid", "count": len(valid),
                              "num_bins": NUM_BINS, "reliable": len(valid) >= MIN_RELIABLE_VALID,
                              "temperature": {}, "valid": {}}
    for name, model in models.items():
        batches = eval_batches(valid, spec, EVAL_BATCH_SIZE, device, preprocess=preprocess)
        logits, targets = model_logits(model, batches, device=device)
        temperature = safe_temperature(logits, targets)
        record["temperature"][name] = temperature
        record["valid"][name] = calibration_metrics(logits, targets, temperature)
    return record


def calibrate_checkpoints(paths: Iterable[str | Path], valid: Any, *, device: torch.device | str = "auto"
                          ) -> dict[str, Any]:
    """Fit the temperatures of each checkpoint's models on the validation images and store them in it.

    Args:
        paths: checkpoint files (e.g. a run's ``last.pt`` and ``best.pt``: each gets temperatures for its own
            weights).
        valid: the run's validation :class:`~ssl_mix.ImageArrays` (see :func:`calibrate_run`, which loads
            them).
        device: where the models run.

    Returns:
        ``{checkpoint path: calibration record}`` (see :func:`calibrate_models`); each record is also saved as the
        checkpoint's ``calibration`` entry, where prediction and export read it.
    """
    out = {}
    for i, path in enumerate(paths):
        run = load_run(path, device=device)
        run_device = model_device(run.models["teacher"])
        out[str(path)] = calibrate_models(run.models, valid, run.spec, device=run_device,
                                          preprocess=preprocess_transform(run.preprocess, run_device), warn=i == 0)
        update_checkpoint(path, calibration=out[str(path)])
    return out


def calibrate_run(run: str | Path, *, device: str | torch.device = "auto", valid: ImageArrays | None = None
                  ) -> dict[str, Any]:
    """Calibrated confidences: fit the temperature of each model of a run on its validation split and store it in
    the checkpoint(s). :func:`ssl_mix.run_experiment` does this at the end of training when the run has a validation
    split.

    Args:
        run: a run directory (its ``last.pt`` and, when present, ``best.pt`` are calibrated, each for its own
            weights) or one checkpoint file.
        device: where the models run.
        valid: the validation :class:`~ssl_mix.ImageArrays`, if already loaded (default: only they are loaded, as
            the run's training loaded them; see :func:`ssl_mix.data.run_data.load_validation`).

    Returns:
        ``{checkpoint path: calibration record}`` (see :func:`calibrate_models`).

    Raises:
        NoValidationSplitError: the run has no validation split (the message says how to add one).
    """
    run_dir, checkpoint = RunDir.of_checkpoint(run)
    paths = [p for p in (run_dir.last, run_dir.best) if p.is_file()] if Path(run).is_dir() else [checkpoint]
    if valid is None:
        loaded = load_run(paths[0], device="cpu")
        valid = load_validation(loaded.config.data, seed=loaded.config.train.seed, channels=loaded.input_shape[0])
    if valid is None or not len(valid):
        raise _no_validation_split(f"run {str(run)!r}")
    return calibrate_checkpoints(paths, valid, device=device)
