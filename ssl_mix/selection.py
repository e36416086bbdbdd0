"""Which images to label next: uncertainty scores of a model's predictions and a budgeted, seeded pick.

Uncertainty sampling (Lewis & Gale 1994; Settles 2009, "Active Learning Literature Survey", §3.1) ranks unlabeled
images by how unsure the model is about them, from its class probabilities p (calibrated ones, ideally):

- ``least-confidence``: 1 - max_c p_c
- ``margin``: -(p_(1) - p_(2)), the gap between the two most probable classes, negated so that small gaps rank first
- ``entropy``: -sum_c p_c log p_c
- ``random``: a seeded uniform draw, the baseline every strategy has to beat

Scores are pure functions of the probabilities; :func:`select_top` turns scores into a pick of ``budget``
indices, optionally spread evenly over the predicted classes (``balance``), with ties broken by a seeded random
order so that the same inputs and seed give the same pick on any machine.
"""

from __future__ import annotations

import torch

from ssl_mix.checks import check_in
from ssl_mix.choices import STRATEGIES, Strategy

__all__ = ["Strategy", "STRATEGIES", "check_strategy", "acquisition_scores", "select_top"]



def check_strategy(strategy: str) -> str:
    """``strategy`` if it is one of :data:`STRATEGIES`, else ``ValueError`` listing them."""
    return check_in("strategy", strategy, STRATEGIES)


def _check_probs(probs: torch.Tensor) -> None:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or not probs.is_floating_point():
        got = f"{probs.dtype} tensor of shape {tuple(probs.shape)}" if isinstance(probs, torch.Tensor) else \
            type(probs).__name__
        raise ValueError(f"probs must be a float tensor of shape (N, num_classes), got {got}")
    if probs.shape[1] < 2:
        raise ValueError(f"probs needs at least 2 classes to rank uncertainty, got {probs.shape[1]}")


def acquisition_scores(probs: torch.Tensor, strategy: Strategy, *, seed: int = 0) -> torch.Tensor:
    """How much labelling each image is worth under ``strategy``: higher first.

    Args:
        probs: ``(N, C)`` class probabilities (rows sum to 1), C >= 2.
        strategy: one of :data:`STRATEGIES`.
        seed: seeds the ``random`` strategy (ignored by the others).

    Returns:
        ``(N,)`` float32 scores on the CPU.
    """
    _check_probs(probs)
    check_strategy(strategy)
    p = probs.detach().float().cpu()
    if strategy == "random":
        return torch.rand(p.shape[0], generator=torch.Generator().manual_seed(seed))
    if strategy == "least-confidence":
        return 1.0 - p.max(dim=1).values
    if strategy == "margin":
        top2 = p.topk(2, dim=1).values
        return -(top2[:, 0] - top2[:, 1])
    return -(p * p.clamp_min(1e-12).log()).sum(dim=1)


def select_top(scores: torch.Tensor, budget: int, *, seed: int = 0, classes: torch.Tensor | None = None
               ) -> torch.Tensor:
    """The indices of the ``budget`` highest scores, optionally spread evenly over classes.

    Args:
        scores: ``(N,)`` scores, higher first (from :func:`acquisition_scores`).
        budget: how many to pick, ``1 <= budget <= N``.
        seed: breaks ties between equal scores (a seeded random order), so the pick is deterministic.
        classes: ``(N,)`` predicted class of each image to balance over: each class gets ``budget // K`` picks
            (K = number of predicted classes), the first ``budget % K`` classes in order of their best score one
            more, and a class with too few images leaves its share to the others, in score order.

    Returns:
        ``(budget,)`` int64 indices, best first (with ``classes``: grouped by class, best first within each).
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(f"scores must be a 1-D tensor, got {getattr(scores, 'shape', type(scores).__name__)}")
    n = scores.shape[0]
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= n:
        raise ValueError(f"the budget must be an integer between 1 and the pool size {n}, got {budget!r}"
                         + ("; use a larger pool or a smaller budget" if isinstance(budget, int) and budget > n
                            else ""))
    tie_break = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    # Sort by score, then by the random key: stable sorts applied last-key-first.
    order = torch.argsort(tie_break, descending=True, stable=True)
    order = order[torch.argsort(scores.float().cpu()[order], descending=True, stable=True)]
    if classes is None:
        return order[:budget]
    if classes.shape != (n,):
        raise ValueError(f"classes must have one entry per score ({n}), got shape {tuple(classes.shape)}")
    ranked = classes.cpu()[order]
    queues = {int(c): order[ranked == c] for c in dict.fromkeys(ranked.tolist())}  # classes in order of best score
    picked: list[torch.Tensor] = []
    remaining = budget
    while remaining:
        live = [c for c, q in queues.items() if len(q)]
        share, extra = divmod(remaining, len(live))
        for i, c in enumerate(live):
            take = min(share + (i < extra), len(queues[c]))
            picked.append(queues[c][:take])
            queues[c] = queues[c][take:]
            remaining -= take
    return torch.cat(picked)
