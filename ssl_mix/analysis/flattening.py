"""Flattening of class representations: the singular-value spectrum of each class at a layer.

Manifold mixup (Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States",
ICML 2019, §3 and Figure 4) argues that training on interpolated hidden states *flattens* the
representations of each class: they occupy fewer directions of significant variance. The measurement is the
singular value decomposition of each class's centred hidden representations: for the ``n_c`` examples of
class ``c`` at layer ``l``, stacked as rows of ``H_c`` (``n_c x D``),

    s_1 >= s_2 >= ... = svdvals(H_c - mean(H_c)),

and ``s_i^2 / (n_c - 1)`` is the variance along the i-th principal direction. A flatter class has a spectrum
that falls faster. The summary counts the *significant directions*, the singular values above a fraction
``threshold`` (default 0.1) of the largest, and reports the spectrum normalised by its largest value
(``s / s_1``, so it starts at 1 and is comparable across classes, layers and models of different scale).

The default threshold 0.1 keeps directions with at least 1% of the variance of the main one
(``(s_i / s_1)^2 >= 0.01``); a lower threshold such as 0.01 counts nearly every direction of real, noisy
features and stops telling models apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ssl_mix.checks import check_number, check_positive_int
from ssl_mix.models.eval_mode import eval_mode, model_device
from ssl_mix.models.stages import LayerId, forward_layers, get_stages

__all__ = [
    "DEFAULT_THRESHOLD",
    "class_singular_values",
    "normalized_spectrum",
    "num_significant",
    "flattening_summary",
    "flattening",
]

DEFAULT_THRESHOLD = 0.1
"""Fraction of the largest singular value above which a direction counts as significant."""


def class_singular_values(features: torch.Tensor, labels: torch.Tensor) -> dict[int, torch.Tensor]:
    """Singular values of each class's centred representations.

    Args:
        features: ``(N, D)`` representations (``(N, ...)`` is flattened per example), floating point.
        labels: ``(N,)`` integer class labels; negative labels (unlabeled, ``-1``) are ignored.

    Returns:
        ``{class: singular values}`` for every class present, in increasing class order; each a 1-d tensor of
        ``min(n_c, D)`` values in descending order, float32 (float64 for float64 features), on the features'
        device.

    Note:
        Centring removes one direction, so ``n_c`` examples have at most ``n_c - 1`` non-zero singular values;
        a class with a single example has the spectrum ``[0]``.
    """
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        raise TypeError(
            "features must be a floating-point tensor (N, D), got "
            f"{type(features).__name__ if not isinstance(features, torch.Tensor) else features.dtype}."
        )
    if features.ndim < 2:
        raise ValueError(f"features must have shape (N, D) with one row per example, got {tuple(features.shape)}.")
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor (N,), got "
                        f"{type(labels).__name__ if not isinstance(labels, torch.Tensor) else labels.dtype}.")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must have shape (N,) = ({features.shape[0]},) to match features {tuple(features.shape)}, "
            f"got {tuple(labels.shape)}."
        )
    x = features.flatten(1)
    # SVD is not implemented for half precision, and float32 is enough for a spectrum.
    x = x.double() if x.dtype == torch.float64 else x.float()
    labels = labels.to(x.device)
    result: dict[int, torch.Tensor] = {}
    for c in labels.unique().tolist():
        if c < 0:
            continue
        members = x[labels == c]
        result[int(c)] = torch.linalg.svdvals(members - members.mean(0))
    return result


def _check_spectrum(s: object) -> torch.Tensor:
    if not isinstance(s, torch.Tensor) or s.ndim != 1 or s.numel() == 0 or not s.is_floating_point():
        raise ValueError(
            "singular values must be a non-empty 1-d floating-point tensor in descending order (as returned by "
            f"class_singular_values), got {s!r:.80}."
        )
    return s


def _check_threshold(threshold: object) -> float:
    return check_number("threshold", threshold, low=0, high=1, high_open=True,
                        hint="a fraction of the largest singular value.")


def normalized_spectrum(singular_values: torch.Tensor) -> torch.Tensor:
    """The spectrum divided by its largest value: ``s / s_1``, starting at 1.

    Args:
        singular_values: 1-d, descending, non-negative.

    Returns:
        Same shape; all zeros if every singular value is zero (a class of identical points).
    """
    s = _check_spectrum(singular_values)
    return s / s[0] if bool(s[0] > 0) else torch.zeros_like(s)


def num_significant(singular_values: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> int:
    """Number of directions of significant variance: singular values ``> threshold * s_1``.

    Args:
        singular_values: 1-d, descending, non-negative.
        threshold: fraction of the largest singular value, in ``[0, 1)``.

    Returns:
        An int in ``0..len(singular_values)``; 0 when every singular value is zero.
    """
    s = _check_spectrum(singular_values)
    threshold = _check_threshold(threshold)
    return int((s > threshold * s[0]).sum()) if bool(s[0] > 0) else 0


def flattening_summary(
    singular_values: Mapping[int, torch.Tensor],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Summarise per-class spectra as plain Python values (ready for ``json.dump``).

    Args:
        singular_values: ``{class: singular values}`` as returned by :func:`class_singular_values`.
        threshold: fraction of the largest singular value that makes a direction significant, in ``[0, 1)``.

    Returns:
        ``{"threshold": t, "mean_num_significant": mean over classes, "classes": {class: {"num_significant":
        int, "largest": s_1, "normalized_spectrum": [s_i / s_1, ...]}}}``.
    """
    threshold = _check_threshold(threshold)
    if not isinstance(singular_values, Mapping) or not singular_values:
        raise ValueError("singular_values must be a non-empty mapping {class: singular values}, "
                         f"got {singular_values!r:.80}.")
    classes: dict[int, dict[str, Any]] = {}
    for c, s in singular_values.items():
        s = _check_spectrum(s)
        classes[int(c)] = {
            "num_significant": num_significant(s, threshold),
            "largest": float(s[0]),
            "normalized_spectrum": normalized_spectrum(s).tolist(),
        }
    mean = sum(v["num_significant"] for v in classes.values()) / len(classes)
    return {"threshold": threshold, "mean_num_significant": mean, "classes": classes}


def flattening(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    layer: LayerId,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[int, torch.Tensor]:
    """Per-class singular values of ``model``'s representations at ``layer`` (see :func:`class_singular_values`).

    Args:
        model: a model following the staged-model protocol; run in eval mode without gradients, and every
            submodule's mode is restored afterwards.
        images: ``(N, ...)`` model inputs, already normalised.
        labels: ``(N,)`` integer labels (negative ones ignored).
        layer: ``"input"`` or a stage index ``0..n-1`` (e.g. the pooled features, ``n-2``).
        batch_size: images per forward pass.
        device: where to run; ``None`` means the model's device. The model must already be there.

    Returns:
        ``{class: singular values}``, as :func:`class_singular_values`.

    Note:
        All ``N x D`` features of the layer are held at once (``D`` is ``C*H*W`` for convolutional layers), so
        use a few hundred images per class for early layers of large networks.
    """
    get_stages(model)
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError("images must be a floating-point tensor of model inputs (N, ...), already normalised; "
                        f"got {type(images).__name__ if not isinstance(images, torch.Tensor) else images.dtype}.")
    if device is None:
        device = model_device(model, images.device)
    chunks = []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            _, outputs = forward_layers(model, images[start:start + batch_size].to(device), [layer])
            chunks.append(next(iter(outputs.values())).flatten(1))
    return class_singular_values(torch.cat(chunks), labels)
