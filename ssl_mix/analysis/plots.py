"""PNG figures of the linearity and flattening analyses, and reading logged non-linearity back.

- :func:`plot_linearity_curves`: per-layer non-linearity over training steps, one line per layer (the layout
  of Chaudhry et al., Figure 1).
- :func:`plot_linearity_comparison`: final per-layer non-linearity of several models or methods side by side.
- :func:`plot_spectra`: per-class singular-value spectra at a layer (the flattening of Verma et al., Figure 4).
- :func:`plot_reliability`: reliability diagrams (accuracy against confidence per bin) before and after
  calibration (Guo et al. 2017, Figure 1).
- :func:`plot_confusion_matrix`: confusion matrices (true class against predicted class), one panel per model.
- :func:`read_linearity_history`: the ``linearity/<layer key>`` scalars a training run logged to TensorBoard.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through ``pyplot``, so
plotting neither selects a global backend nor keeps figures alive in pyplot's registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssl_mix.atomic import write_atomic

__all__ = [
    "plot_linearity_curves",
    "plot_linearity_comparison",
    "plot_spectra",
    "plot_reliability",
    "plot_confusion_matrix",
    "read_linearity_history",
    "sort_layer_keys",
]


def sort_layer_keys(keys: Sequence[str] | Mapping[str, object]) -> list[str]:
    """Order layer keys (``"input"``, ``"0_conv1"``, ``"1_group1"``, ..., ``"10_x"``) by layer index.

    Keys without an index prefix (other than ``"input"``, which comes first) follow, alphabetically.
    """
    def order(key: str) -> tuple[int, int, str]:
        if key == "input":
            return (0, -1, key)
        prefix = key.split("_", 1)[0]
        return (1, int(prefix), key) if prefix.isdigit() else (2, 0, key)

    return sorted(keys, key=order)


def _new_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must name a .png file, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: figure.savefig(f, format="png"))


def plot_linearity_curves(
    history: Mapping[str, Sequence[tuple[int, float]]],
    path: str | Path,
    *,
    title: str = "Per-layer non-linearity during training",
) -> Path:
    """Plot non-linearity against training step, one line per layer.

    Args:
        history: ``{layer key: [(step, value), ...]}``, e.g. from :func:`read_linearity_history`.
        path: where to write the PNG (parent directories are created).
        title: figure title.

    Returns:
        The path written.
    """
    if not isinstance(history, Mapping) or not history or not all(len(v) for v in history.values()):
        raise ValueError("history must be a non-empty mapping {layer key: [(step, value), ...]} with at least one "
                         f"point per layer, got {history!r:.100}.")
    figure = _new_figure()
    ax = figure.add_subplot()
    for key in sort_layer_keys(history):
        steps, values = zip(*history[key], strict=True)
        ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=key)
    ax.set_xlabel("training step")
    ax.set_ylabel("non-linearity (mean over mixes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="layer", fontsize="small")
    return _save(figure, path)


def plot_linearity_comparison(
    results: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    title: str = "Per-layer non-linearity",
) -> Path:
    """Plot per-layer non-linearity of several models side by side: one line per model, x = layer.

    Args:
        results: ``{model or method name: {layer key: value}}``; the layers shown are the union of the keys,
            in layer order (a model missing a layer has a gap there).
        path: where to write the PNG.
        title: figure title.

    Returns:
        The path written.
    """
    if not isinstance(results, Mapping) or not results or not all(results.values()):
        raise ValueError("results must be a non-empty mapping {name: {layer key: value}} with at least one layer "
                         f"per name, got {results!r:.100}.")
    keys = sort_layer_keys({key for values in results.values() for key in values})
    figure = _new_figure(max(6.0, 1.0 + 0.9 * len(keys)), 4.5)
    ax = figure.add_subplot()
    positions = range(len(keys))
    for name, values in results.items():
        ax.plot(positions, [values.get(key, float("nan")) for key in keys], marker="o", label=name)
    ax.set_xticks(list(positions), keys, rotation=30, ha="right")
    ax.set_xlabel("layer")
    ax.set_ylabel("non-linearity (mean over mixes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(figure, path)


def plot_spectra(
    singular_values: Mapping[int, torch.Tensor | Sequence[float]],
    path: str | Path,
    *,
    normalize: bool = True,
    class_names: Sequence[str] | None = None,
    title: str = "Singular values of centred class representations",
) -> Path:
    """Plot each class's singular-value spectrum on a log scale, one line per class.

    Args:
        singular_values: ``{class: descending singular values}``, e.g. from
            :func:`ssl_mix.analysis.class_singular_values`.
        path: where to write the PNG.
        normalize: divide each spectrum by its largest value (``s / s_1``), so classes of different scale
            share one axis.
        class_names: names indexed by class, for the legend (default: the class numbers).
        title: figure title.

    Returns:
        The path written.

    Note:
        Values that are zero (or normalise to zero) cannot be drawn on a log axis and are left out.
    """
    if not isinstance(singular_values, Mapping) or not singular_values:
        raise ValueError("singular_values must be a non-empty mapping {class: singular values}, "
                         f"got {singular_values!r:.100}.")
    figure = _new_figure()
    ax = figure.add_subplot()
    for c in sorted(singular_values):
        s = torch.as_tensor(singular_values[c], dtype=torch.float64).flatten().cpu()
        if normalize and s.numel() and s[0] > 0:
            s = s / s[0]
        index = torch.arange(1, s.numel() + 1)
        keep = s > 0
        label = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        ax.plot(index[keep].tolist(), s[keep].tolist(), linewidth=1.2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("direction (singular value index)")
    ax.set_ylabel("singular value / largest" if normalize else "singular value")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="class", fontsize="small", ncol=2 if len(singular_values) > 10 else 1)
    return _save(figure, path)


def plot_reliability(
    curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    path: str | Path,
    *,
    num_bins: int = 15,
    title: str = "Reliability diagram",
) -> Path:
    """Plot reliability diagrams side by side: accuracy per confidence bin, against the diagonal.

    Args:
        curves: ``{panel name (e.g. "before", "after T=1.4"): (probabilities (N, C), targets (N,))}``.
        path: where to write the PNG.
        num_bins: equal-width confidence bins (as in the ECE).
        title: figure title.

    Returns:
        The path written. Each panel shows its ECE; bars are the accuracy of each bin, the gap to the diagonal is
        the miscalibration (below: over-confident, above: under-confident).
    """
    from ssl_mix.metrics import expected_calibration_error, reliability_bins

    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves must be a non-empty mapping {{name: (probabilities, targets)}}, got {curves!r:.100}.")
    figure = _new_figure(4.0 * len(curves), 4.2)
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    edges = torch.linspace(0, 1, num_bins + 1)
    for ax, (name, (probabilities, targets)) in zip(axes, curves.items(), strict=True):
        confidence, predicted = probabilities.float().cpu().max(dim=1)
        correct = predicted == targets.cpu()
        _, _, accuracy = reliability_bins(confidence, correct, num_bins)
        ece = float(expected_calibration_error(confidence, correct, num_bins)) * 100
        ax.bar(edges[:-1].tolist(), accuracy.nan_to_num(0).tolist(), width=1 / num_bins, align="edge",
               edgecolor="black", linewidth=0.5, label="accuracy")
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} (ECE {ece:.2f}%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    figure.suptitle(title)
    return _save(figure, path)


def plot_confusion_matrix(
    matrices: Mapping[str, torch.Tensor],
    classes: Sequence[str],
    path: str | Path,
    *,
    title: str = "Confusion matrix",
) -> Path:
    """Plot confusion matrices side by side, each row coloured by the share of the true class predicted as each
    column (so that small classes show as clearly as large ones).

    Args:
        matrices: ``{panel name (e.g. "teacher"): (C, C) counts}``, rows the true classes, as
            :func:`ssl_mix.metrics.confusion_matrix` gives them.
        classes: the C class names, in the order of the rows.
        path: where to write the PNG.
        title: figure title.

    Returns:
        The path written. Up to 20 classes each cell shows its count; up to 40 the axes name the classes, beyond
        that they number them.
    """
    if not isinstance(matrices, Mapping) or not matrices:
        raise ValueError(f"matrices must be a non-empty mapping {{name: (C, C) counts}}, got {matrices!r:.100}.")
    num = len(classes)
    for name, matrix in matrices.items():
        if tuple(matrix.shape) != (num, num):
            raise ValueError(f"matrix {name!r} has shape {tuple(matrix.shape)}, but {num} class names were given; "
                             "pass one name per row")
    side = min(12.0, max(4.5, 0.35 * num + 2.0))
    figure = _new_figure(side * len(matrices), side)
    axes = figure.subplots(1, len(matrices), squeeze=False)[0]
    ticks = list(range(num))
    labels = list(classes) if num <= 40 else [str(i) for i in ticks]
    for ax, (name, matrix) in zip(axes, matrices.items(), strict=True):
        counts = matrix.detach().cpu().double()
        share = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
        image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        if num <= 20:
            for i in range(num):
                for j in range(num):
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize="small",
                            color="white" if share[i, j] > 0.5 else "black")
        step = 1 if num <= 40 else num // 20  # about 20 numbered ticks for many classes
        ax.set_xticks(ticks[::step], labels[::step], rotation=45 if num <= 10 else 90,
                      ha="right" if num <= 10 else "center", fontsize="small")
        ax.set_yticks(ticks[::step], labels[::step], fontsize="small")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        accuracy = float(counts.diagonal().sum() / counts.sum().clamp_min(1)) * 100
        ax.set_title(f"{name} (accuracy {accuracy:.2f}%)")
        figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    figure.suptitle(title)
    return _save(figure, path)


def read_linearity_history(log_dir: str | Path, *, prefix: str = "linearity/") -> dict[str, list[tuple[int, float]]]:
    """Read the non-linearity a run logged to TensorBoard: ``{layer key: [(step, value), ...]}``.

    Args:
        log_dir: the directory holding the event files (``RUN_DIR/tensorboard`` for ``ssl-mix train``).
        prefix: tag prefix to read; the key is the tag without it.

    Returns:
        One sorted list of ``(step, value)`` per tag, empty if the run logged none. When a resumed run logged
        a step twice, the value written last is kept.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise FileNotFoundError(f"TensorBoard log directory {str(log_dir)!r} does not exist.")
    # size_guidance 0 = keep every scalar, not a reservoir sample of them.
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    history: dict[str, list[tuple[int, float]]] = {}
    for tag in accumulator.Tags().get("scalars", []):
        if tag.startswith(prefix):
            by_step = {event.step: event.value for event in accumulator.Scalars(tag)}
            history[tag[len(prefix):]] = sorted(by_step.items())
    return {key: history[key] for key in sort_layer_keys(history)}
