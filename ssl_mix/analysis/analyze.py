"""Analyse a trained run: per-layer non-linearity and class flattening of its student and teacher, as JSON and plots.

:func:`analyze_run` is what ``ssl-mix analyze`` runs. It loads a checkpoint written by ``ssl-mix train``, measures
the non-linearity of every layer on held-out test mixes (Chaudhry et al. eq. 3, :mod:`ssl_mix.analysis.linearity`)
and the singular-value spectra of each class at one layer (manifold mixup's flattening, Verma et al. 2019,
:mod:`ssl_mix.analysis.flattening`), reads the non-linearity logged during training back from TensorBoard, and
writes ``analysis.json`` and PNG figures. :func:`format_analysis` turns the result into the text the command prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl_mix.analysis.flattening import flattening as class_spectra
from ssl_mix.analysis.flattening import flattening_summary
from ssl_mix.analysis.linearity import linearity_probe
from ssl_mix.analysis.plots import (
    plot_linearity_comparison,
    plot_linearity_curves,
    plot_spectra,
    read_linearity_history,
)
from ssl_mix.checks import check_bool, check_positive_int
from ssl_mix.data.augment import normalize_input
from ssl_mix.data.zca import preprocess_transform
from ssl_mix.models.eval_mode import model_device
from ssl_mix.models.stages import LayerId, layer_names
from ssl_mix.run import load_trained, write_json

__all__ = ["analyze_run", "format_analysis"]


def analyze_run(
    run: str | Path,
    *,
    linearity: bool = True,
    flattening: bool = True,
    layer: LayerId | None = None,
    num_pairs: int | None = None,
    k: int = 2,
    alpha: float = 1.0,
    num_images: int = 1000,
    seed: int | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Measure a trained run's per-layer non-linearity and flattening; write ``analysis.json`` and PNG plots.

    Args:
        run: a run directory written by ``ssl-mix train`` (its latest checkpoint is analysed) or a checkpoint file.
        linearity: measure per-layer non-linearity on ``num_pairs`` test mixes of ``k`` images.
        flattening: measure the class spectra at ``layer`` on ``num_images`` test images.
        layer: the layer of the flattening measurement: ``"input"`` or a stage index; None: the pooled features
            (stage ``n - 2`` of an ``n``-stage model).
        num_pairs: held-out mixes for non-linearity; None: the run's ``train.linearity_pairs``, so the final value
            extends the curves logged during training.
        k: points per mix (2: pairs).
        alpha: Dirichlet concentration of the mixing weights.
        num_images: test images used for flattening (a seeded random subset).
        seed: seed of the held-out sample; None: the run's seed.
        dataset: use this dataset's test set instead of the run's (same classes expected).
        data_root: where that dataset lives (default: the run's).
        out_dir: where ``analysis.json`` and the plots go; None: ``analysis/`` in the run directory.
        device: ``auto``, ``cpu``, ``cuda``...

    Returns:
        What ``analysis.json`` holds: ``checkpoint``, ``step``, ``dataset``, ``model``, ``method``; ``linearity``
        (``settings``, ``final`` per model and layer, logged ``history``) and/or ``flattening`` (``layer``,
        ``layer_name``, ``num_images`` and a :func:`~ssl_mix.analysis.flattening_summary` per model); ``out_dir``
        and ``files`` (the names written there).

    Raises:
        ValueError: neither measurement requested, a layer the model does not have, or a non-positive
            ``num_images``.
        FileNotFoundError: no checkpoint at ``run``.
    """
    if not (check_bool("linearity", linearity) | check_bool("flattening", flattening)):
        raise ValueError("nothing to analyse: set linearity and/or flattening")
    num_images = check_positive_int("num_images", num_images)
    trained = load_trained(run, dataset=dataset, data_root=data_root, device=device)
    run_dir, checkpoint = trained.run_dir, trained.checkpoint
    cfg, models, test, spec = trained.config, trained.models, trained.test, trained.spec
    run_device = model_device(models["teacher"])
    preprocess = preprocess_transform(trained.preprocess, run_device)  # the run's input whitening, if any
    num_pairs = num_pairs if num_pairs is not None else cfg.train.linearity_pairs
    seed = seed if seed is not None else cfg.train.seed
    names = layer_names(models["teacher"])
    if layer is None:
        layer = max(len(names) - 2, 0)
    elif layer != "input" and not (isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(names)):
        listing = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
        raise ValueError(f"layer must be 'input' or one of {listing}; got {layer!r}")

    out = Path(out_dir) if out_dir is not None else run_dir.analysis
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "step": trained.step, "dataset": trained.dataset,
                              "model": cfg.model.name, "method": cfg.method.name}
    files: list[Path] = []
    if linearity:
        probe = linearity_probe(test, spec, num_pairs=num_pairs, seed=seed, device=run_device, k=k, alpha=alpha,
                                preprocess=preprocess)
        final = {name: probe(model) for name, model in models.items()}
        log_dir = run_dir.tensorboard
        history = read_linearity_history(log_dir) if log_dir.is_dir() else {}
        result["linearity"] = {
            "settings": {"num_pairs": num_pairs, "seed": seed, "k": k, "alpha": alpha,
                         "normalization": "shared", "held_out": "test", "reduction": "mean"},
            "final": final,
            "history": {key: [[at, value] for at, value in points] for key, points in history.items()},
        }
        files.append(plot_linearity_comparison(
            final, out / "linearity_final.png",
            title=f"Per-layer non-linearity at step {trained.step} ({cfg.method.name})"))
        if history:
            files.append(plot_linearity_curves(
                history, out / "linearity_curves.png",
                title=f"Per-layer non-linearity of the teacher during training ({cfg.method.name})"))
    if flattening:
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:num_images]
        images = normalize_input(test.images[order].to(run_device), spec.mean, spec.std)
        images = images if preprocess is None else preprocess(images)
        labels = test.targets[order]
        layer_name = "input" if layer == "input" else names[layer]
        result["flattening"] = {"layer": layer, "layer_name": layer_name, "num_images": len(order)}
        for name, model in models.items():
            spectra = class_spectra(model, images, labels, layer)
            result["flattening"][name] = flattening_summary(spectra)
            label = "input" if layer == "input" else f"{layer} ({layer_name})"
            files.append(plot_spectra(spectra, out / f"spectra_{name}.png", class_names=test.classes,
                                      title=f"Class spectra of the {name} at layer {label}"))
    json_path = out / "analysis.json"
    result["out_dir"] = str(out)
    result["files"] = [json_path.name, *(p.name for p in files)]
    write_json(json_path, result)
    return result


def format_analysis(result: dict[str, Any]) -> str:
    """The text ``ssl-mix analyze`` prints for a result of :func:`analyze_run`.

    Args:
        result: the dict :func:`analyze_run` returned (or ``analysis.json`` read back).

    Returns:
        A few lines: the run, a table of non-linearity per layer (teacher, student), the flattening summary and the
        files written.
    """
    lines = [f"{result['checkpoint']} (step {result['step']}, {result['method']}, {result['model']}, "
             f"{result['dataset']} test set)"]
    if "linearity" in result:
        settings, final = result["linearity"]["settings"], result["linearity"]["final"]
        lines.append(f"non-linearity, mean over {settings['num_pairs']} test mixes of k={settings['k']} "
                     f"(alpha {settings['alpha']}):")
        lines.append(f"  {'layer':<16} {'teacher':>9} {'student':>9}")
        for key in final["teacher"]:
            lines.append(f"  {key:<16} {final['teacher'][key]:9.4f} {final['student'][key]:9.4f}")
    if "flattening" in result:
        flat = result["flattening"]
        label = "input" if flat["layer"] == "input" else f"{flat['layer']} ({flat['layer_name']})"
        for name, summary in flat.items():
            if not isinstance(summary, dict):
                continue  # the layer and sample size, printed with each model's line
            lines.append(f"flattening of the {name} at layer {label}: {summary['mean_num_significant']:.1f} "
                         f"significant directions per class (singular values > {summary['threshold']} of the "
                         f"largest; {flat['num_images']} test images)")
    files = result["files"]
    lines.append(f"wrote {Path(result['out_dir']) / files[0]}" + "".join(f", {name}" for name in files[1:]))
    return "\n".join(lines)
