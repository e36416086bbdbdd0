"""Classification metrics for evaluation: accuracy, negative log-likelihood and expected calibration error, and the
confusion matrix with the per-class accuracy read from it.

Mixup's calibration gains (Thulasidasan et al. 2019) are one reason people use it, so every evaluation reports
ECE next to accuracy. Metrics accumulate as device tensors across batches and are read once at the end, so an
evaluation pass costs one host round trip. In distributed training each process accumulates its shard of the
evaluation set and :meth:`ClassificationMetrics.all_reduce` adds the sums up, so all processes get the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["ClassificationMetrics", "expected_calibration_error", "reliability_bins", "confusion_matrix",
           "per_class_accuracy"]


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int = 15) -> torch.Tensor:
    """ECE with equal-width confidence bins (Guo et al. 2017).

    Args:
        confidence: (N,) max softmax probability per example, in [0, 1].
        correct: (N,) bool or {0, 1}: whether the arg-max prediction was right.
        num_bins: number of equal-width bins on [0, 1].

    Returns:
        A 0-dim tensor: sum over bins of (bin size / N) * |accuracy(bin) - mean confidence(bin)|.
    """
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(
            f"confidence and correct must be 1-D of the same length, got {tuple(confidence.shape)} "
            f"and {tuple(correct.shape)}"
        )
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    counts, conf_sum, correct_sum = _bin_sums(confidence, correct, num_bins)
    return _ece_from_sums(counts, conf_sum, correct_sum)


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int = 15
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin statistics of a reliability diagram, in the bins :func:`expected_calibration_error` uses.

    Args:
        confidence: (N,) max softmax probability per example, in [0, 1].
        correct: (N,) bool or {0, 1}.
        num_bins: equal-width bins on [0, 1].

    Returns:
        ``(count, mean confidence, accuracy)``, each ``(num_bins,)`` float; empty bins have NaN mean and accuracy.
    """
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-D of the same length, got {tuple(confidence.shape)} "
                         f"and {tuple(correct.shape)}")
    counts, conf_sum, correct_sum = _bin_sums(confidence, correct, num_bins)
    return counts, conf_sum / counts, correct_sum / counts


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts of each (true class, predicted class) pair.

    Args:
        preds: (N,) int predicted class indices in ``[0, num_classes)``.
        targets: (N,) int true class indices in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        ``(C, C)`` int64 on the CPU: entry ``[i, j]`` counts the examples of class i predicted as class j (rows sum
        to the class counts, the diagonal is the correct predictions).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if preds.shape != targets.shape or preds.ndim != 1:
        raise ValueError(f"preds and targets must be 1-D of the same length, got {tuple(preds.shape)} and "
                         f"{tuple(targets.shape)}")
    preds, targets = preds.detach().cpu().long(), targets.detach().cpu().long()
    for name, values in (("preds", preds), ("targets", targets)):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got values from "
                             f"{int(values.min())} to {int(values.max())}")
    flat = torch.bincount(targets * num_classes + preds, minlength=num_classes * num_classes)
    return flat.view(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """The accuracy of each class from a :func:`confusion_matrix`.

    Args:
        matrix: ``(C, C)`` counts, rows the true classes.

    Returns:
        ``(C,)`` float64 in %: the diagonal over the row sums; NaN for a class with no examples.
    """
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be a square (C, C) confusion matrix, got shape {tuple(matrix.shape)}")
    counts = matrix.sum(dim=1).double()
    return 100.0 * matrix.diagonal().double() / counts  # 0 / 0 is NaN: no examples of that class


def _bin_sums(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int):
    # Bin b holds confidences in (b/num_bins, (b+1)/num_bins]; a confidence of exactly 0 goes to bin 0.
    bins = (confidence.float() * num_bins).ceil().long().clamp(1, num_bins) - 1
    counts = torch.zeros(num_bins, device=confidence.device).index_add_(0, bins, torch.ones_like(confidence.float()))
    conf_sum = torch.zeros(num_bins, device=confidence.device).index_add_(0, bins, confidence.float())
    correct_sum = torch.zeros(num_bins, device=confidence.device).index_add_(0, bins, correct.float())
    return counts, conf_sum, correct_sum


def _ece_from_sums(counts: torch.Tensor, conf_sum: torch.Tensor, correct_sum: torch.Tensor) -> torch.Tensor:
    total = counts.sum().clamp_min(1)
    return (conf_sum - correct_sum).abs().sum() / total


@dataclass
class ClassificationMetrics:
    """Accumulates accuracy, NLL and ECE over batches of logits; call :meth:`compute` once at the end.

    Args:
        num_bins: ECE bins.
    """

    num_bins: int = 15
    _count: torch.Tensor | None = field(default=None, repr=False)
    _correct: torch.Tensor | None = field(default=None, repr=False)
    _nll: torch.Tensor | None = field(default=None, repr=False)
    _bins: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, C), ``targets`` (B,) int64 class indices."""
        if logits.ndim != 2 or targets.shape != logits.shape[:1]:
            raise ValueError(f"expected logits (B, C) and targets (B,), got {tuple(logits.shape)} and "
                             f"{tuple(targets.shape)}")
        logp = F.log_softmax(logits.float(), dim=1)
        conf, pred = logp.max(dim=1)
        correct = pred == targets
        nll = F.nll_loss(logp, targets, reduction="sum")
        bins = _bin_sums(conf.exp(), correct, self.num_bins)
        if self._count is None:
            self._count = torch.zeros((), device=logits.device)
            self._correct = torch.zeros((), device=logits.device)
            self._nll = torch.zeros((), device=logits.device)
            self._bins = tuple(torch.zeros_like(b) for b in bins)
        self._count += targets.numel()
        self._correct += correct.sum()
        self._nll += nll
        self._bins = tuple(a + b for a, b in zip(self._bins, bins, strict=True))

    @torch.no_grad()
    def all_reduce(self, device: torch.device | str | None = None) -> None:
        """Add up the statistics of every process of a distributed run (each process ends with the totals).

        Every process must call it, also one that added no batches (its shard of a small evaluation set may be
        empty); outside a distributed run it does nothing.

        Args:
            device: where a process that added no batches creates its zero statistics (the evaluation device;
                CUDA under NCCL). Ignored once a batch was added.
        """
        from ssl_mix import distributed

        if not distributed.is_distributed():
            return
        if self._count is None:
            zeros = torch.zeros(self.num_bins, device=device)
            self._count, self._correct, self._nll = (torch.zeros((), device=device) for _ in range(3))
            self._bins = (zeros, zeros.clone(), zeros.clone())
        flat = torch.cat([torch.stack([self._count, self._correct, self._nll]), *self._bins])
        distributed.all_reduce_sum_(flat)
        self._count, self._correct, self._nll = flat[0], flat[1], flat[2]
        self._bins = tuple(flat[3:].split(self.num_bins))

    def compute(self) -> dict[str, float]:
        """``{"accuracy": %, "nll": mean nats, "ece": %, "count": N}`` (one host round trip)."""
        if self._count is None:
            raise ValueError("no batches were added before compute()")
        ece = _ece_from_sums(*self._bins)
        values = torch.stack([self._count, self._correct, self._nll, ece]).cpu().tolist()
        count, correct, nll, ece = values
        return {"accuracy": 100.0 * correct / count, "nll": nll / count, "ece": 100.0 * ece, "count": int(count)}
