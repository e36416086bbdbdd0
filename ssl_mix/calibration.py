"""Calibrated confidences: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", §4.2).

A classifier's softmax confidence is often not the probability of being right: ICT teachers at the CPU scale come
out under-confident, ERM with few labels over-confident. Temperature scaling divides the logits by one scalar
T > 0 fitted on held-out labeled data by minimising the negative log-likelihood,

    T* = argmin_T  -1/N sum_i log softmax(z_i / T)[y_i],

which changes no arg-max (accuracy is unchanged) and, on held-out data of the same distribution, brings the
expected calibration error down. T is optimised as log T with L-BFGS, so it stays positive without constraints.

The maths are pure functions (:func:`fit_temperature`, :func:`scale_logits`, :func:`calibration_metrics`); the rest
fits one temperature per model (student and EMA teacher) of a checkpoint on the validation images and stores them in
the checkpoint (``state["calibration"]``), where prediction and export read them. :func:`ssl_mix.calibrate_run`
does it for a run directory, loading its validation split; training does it at the end when the run has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_mix.data import eval_batches, preprocess_transform
from ssl_mix.evaluation import EVAL_BATCH_SIZE
from ssl_mix.metrics import ClassificationMetrics
from ssl_mix.models.eval_mode import model_device
from ssl_mix.run import load_run, update_checkpoint

__all__ = ["fit_temperature", "scale_logits", "calibration_metrics", "model_logits", "calibrate_models",
           "calibrate_checkpoints", "NoValidationSplitError"]

NUM_BINS = 15
"""ECE bins used throughout (equal width, as in Guo et al. 2017)."""


class NoValidationSplitError(ValueError):
    """A run without a validation split cannot be calibrated (the test set must stay untouched)."""


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
                     device: torch.device | str = "cpu", preprocess: Any = None) -> dict[str, Any]:
    """Fit one temperature per model on the validation images.

    Args:
        models: ``{"student": ..., "teacher": ...}`` (any names).
        valid: the validation :class:`~ssl_mix.ImageArrays` (labeled).
        spec: the run's :class:`~ssl_mix.DataSpec` (normalisation).
        device: where the models run.
        preprocess: the run's input transform after normalisation (e.g. its ZCA; see
            :func:`~ssl_mix.preprocess_transform`), or None.

    Returns:
        The calibration record stored in a checkpoint: ``{"method": "temperature", "fitted_on": "valid",
        "count": N, "num_bins": 15, "temperature": {name: T}, "valid": {name: {"before": ..., "after": ...}}}``.
    """
    if valid is None or len(valid) == 0:
        raise NoValidationSplitError(
            "this run has no validation split, and temperature scaling must be fitted on held-out labeled images "
            "(never the test set). Train with one: ssl-mix train ... --num-valid-per-class 100 (or "
            "DataConfig(num_valid_per_class=...)), then ssl-mix calibrate RUN.")
    record: dict[str, Any] = {"method": "temperature", "fitted_on": "valid", "count": len(valid),
                              "num_bins": NUM_BINS, "temperature": {}, "valid": {}}
    for name, model in models.items():
        batches = eval_batches(valid, spec, EVAL_BATCH_SIZE, device, preprocess=preprocess)
        logits, targets = model_logits(model, batches, device=device)
        temperature = fit_temperature(logits, targets)
        record["temperature"][name] = temperature
        record["valid"][name] = calibration_metrics(logits, targets, temperature)
    return record


def calibrate_checkpoints(paths: Iterable[str | Path], valid: Any, *, device: torch.device | str = "auto"
                          ) -> dict[str, Any]:
    """Fit the temperatures of each checkpoint's models on the validation images and store them in it.

    Args:
        paths: checkpoint files (e.g. a run's ``last.pt`` and ``best.pt``: each gets temperatures for its own
            weights).
        valid: the run's validation :class:`~ssl_mix.ImageArrays` (see :func:`ssl_mix.calibrate_run`, which loads
            them).
        device: where the models run.

    Returns:
        ``{checkpoint path: calibration record}`` (see :func:`calibrate_models`); each record is also saved as the
        checkpoint's ``calibration`` entry, where prediction and export read it.
    """
    out = {}
    for path in paths:
        run = load_run(path, device=device)
        run_device = model_device(run.models["teacher"])
        out[str(path)] = calibrate_models(run.models, valid, run.spec, device=run_device,
                                          preprocess=preprocess_transform(run.preprocess, run_device))
        update_checkpoint(path, calibration=out[str(path)])
    return out
