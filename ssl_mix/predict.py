"""Predicting image files in bulk: inputs to a CSV or JSON-lines file, streamed batch by batch.

:func:`find_images` expands the inputs (files, folders searched recursively, glob patterns) into a sorted list of
files; :func:`predict_files` decodes them in ``DataLoader`` workers exactly as the run's training loaded its images
(:func:`ssl_mix.data.decode_image`), runs a :class:`~ssl_mix.Predictor`'s model on each batch and writes the rows as
batches finish, so memory stays bounded by the batch, not by the number of images. A file that cannot be read is
reported by name with an ``error`` column and skipped (or, with ``strict``, stops the run).

The output is written to a temporary file beside ``OUT`` and renamed to ``OUT`` at the end
(:func:`ssl_mix.atomic.atomic_path`): an interrupted or failed run leaves any previous ``OUT`` as it was, never a
truncated one.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ssl_mix.atomic import atomic_path
from ssl_mix.checks import check_int, check_positive_int

__all__ = ["find_images", "predict_files", "iter_predictions", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""Output file extensions and the format each one selects."""


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``inputs``, without duplicates, in the order given (each folder or glob sorted).

    Args:
        inputs: image files (any extension), folders (searched recursively for
            :data:`~ssl_mix.data.IMAGE_EXTENSIONS`, hidden entries skipped) or glob patterns (``**`` recurses).

    Returns:
        The files.

    Raises:
        FileNotFoundError: an input that is neither a file, a folder nor a pattern matching a file.
        ValueError: the inputs hold no image at all.
    """
    from ssl_mix.data import IMAGE_EXTENSIONS, image_files

    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files = image_files(path)
        elif path.is_file():
            files = [path]
        elif glob.has_magic(str(item)):
            files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not files:
                raise FileNotFoundError(f"pattern {str(item)!r} matches no file")
        else:
            raise FileNotFoundError(f"input {str(item)!r} does not exist (expected an image file, a folder or a "
                                    "glob pattern such as 'photos/*.jpg')")
        found.update(dict.fromkeys(files))
    if not found:
        raise ValueError(f"no images found in {', '.join(map(str, inputs)) or 'the inputs'} (folders are searched "
                         f"recursively for {', '.join(IMAGE_EXTENSIONS)}); pass image files, folders or patterns")
    return list(found)


class _ImageFiles(Dataset):
    """Decodes one file per item: ``(uint8 image, error message or "")``; an unreadable file gives zeros."""

    def __init__(self, paths: Sequence[Path], settings: dict[str, Any]) -> None:
        self.paths, self.settings = paths, settings
        self.shape = (settings["channels"], *settings["image_size"])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        from ssl_mix.data import BadImageError, decode_image

        try:
            return decode_image(self.paths[index], **self.settings), ""
        except BadImageError as err:
            return torch.zeros(self.shape, dtype=torch.uint8), str(err)


def iter_predictions(predictor: Any, paths: Sequence[Path], *, batch_size: int = 256, num_workers: int | None = None,
                     progress: bool = True) -> Iterator[tuple[Path, torch.Tensor | None, str]]:
    """Stream the calibrated probabilities of image files, decoded in ``DataLoader`` workers batch by batch.

    Args:
        predictor: a :class:`~ssl_mix.Predictor`.
        paths: the image files, in order.
        batch_size: images per forward pass (memory is bounded by it).
        num_workers: decoding processes (default ``min(4, os.cpu_count())``; 0 decodes in this process).
        progress: show a progress bar.

    Returns:
        An iterator of ``(path, (num_classes,) probabilities or None, error)`` per file, in order; an unreadable
        file gives ``None`` and the reason.
    """
    from tqdm.auto import tqdm

    workers = min(4, os.cpu_count() or 1) if num_workers is None else check_int("num_workers", num_workers, 0)
    settings = predictor.decode_settings
    loader = DataLoader(_ImageFiles(paths, settings), batch_size=batch_size, num_workers=workers,
                        pin_memory=predictor.device.type == "cuda")
    position = 0
    with tqdm(total=len(paths), unit="img", disable=not progress, dynamic_ncols=True) as bar, torch.inference_mode():
        for images, errors in loader:
            probabilities = predictor.model(images.to(predictor.device, non_blocking=True)).float().cpu()
            for i, error in enumerate(errors):
                yield paths[position + i], (None if error else probabilities[i]), error
            position += len(errors)
            bar.update(len(errors))


def predict_files(predictor: Any, inputs: Sequence[str | Path], out: str | Path, *, top_k: int = 1,
                  probabilities: bool = False, batch_size: int = 256, num_workers: int | None = None,
                  strict: bool = False, progress: bool = True) -> dict[str, Any]:
    """Predict every image named by ``inputs`` and write one row per file to ``out``.

    Args:
        predictor: a :class:`~ssl_mix.Predictor` (e.g. from :func:`ssl_mix.load_predictor`).
        inputs: files, folders and glob patterns (see :func:`find_images`).
        out: ``.csv`` or ``.jsonl`` (``.ndjson``) file. Columns: ``path``, ``prediction`` (class name),
            ``confidence`` (its calibrated probability), ``top{i}_class``/``top{i}_probability`` for i in 1..top_k
            (JSON lines: a ``top_k`` list), with ``probabilities`` the full vector (CSV: one ``p_<class>`` column
            per class), and ``error`` (empty, or why the file was skipped).
        top_k: classes listed per image, 1..num_classes.
        probabilities: also write the full probability vector.
        batch_size: images per forward pass (memory is bounded by it).
        num_workers: decoding processes (default ``min(4, os.cpu_count())``; 0 decodes in this process).
        strict: stop with ``ValueError`` at the first unreadable file instead of skipping it.
        progress: show a progress bar.

    Returns:
        ``{"out", "count", "predicted", "skipped": [(path, error), ...], "wall_time_s", "images_per_s"}``.
    """
    out = Path(out)
    fmt = OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"the output file must end in {', '.join(OUTPUT_FORMATS)} (the extension picks the format), "
                         f"got {str(out)!r}")
    if predictor.channels not in (1, 3):
        raise ValueError(f"this model takes {predictor.channels} input channels (a run trained on feature vectors), "
                         "not images, so it cannot predict image files; predict feature vectors from Python with "
                         "predictor.predict(x), x a float (N, F, 1, 1) tensor (e.g. "
                         "ssl_mix.read_features(FILE)[1].images)")
    num_classes = len(predictor.classes)
    if check_positive_int("top_k", top_k) > num_classes:
        raise ValueError(f"top_k must be at most {num_classes} (the number of classes), got {top_k}")
    check_positive_int("batch_size", batch_size)
    paths = find_images(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[str, str]] = []
    start = time.perf_counter()
    with atomic_path(out) as tmp, tmp.open("w", newline="") as f:
        write = _writer(f, fmt, predictor.classes, top_k, probabilities)
        for path, probs, error in iter_predictions(predictor, paths, batch_size=batch_size, num_workers=num_workers,
                                                   progress=progress):
            if error:
                if strict:
                    raise ValueError(f"{error} (strict mode stops at the first unreadable file; without it, such "
                                     "files are skipped and listed)")
                skipped.append((str(path), error))
            write(str(path), probs, error)
    wall = time.perf_counter() - start
    return {"out": str(out), "count": len(paths), "predicted": len(paths) - len(skipped), "skipped": skipped,
            "wall_time_s": wall, "images_per_s": len(paths) / wall if wall > 0 else float("nan")}


def _writer(f: Any, fmt: str, classes: Sequence[str], top_k: int, with_probabilities: bool):
    """A function ``write(path, probabilities or None, error)`` appending one row to ``f``."""
    if fmt == "csv":
        columns = ["path", "prediction", "confidence"]
        for i in range(1, top_k + 1):
            columns += [f"top{i}_class", f"top{i}_probability"]
        if with_probabilities:
            columns += [f"p_{c}" for c in classes]
        columns.append("error")
        rows = csv.writer(f)
        rows.writerow(columns)

        def write_csv(path: str, probs: torch.Tensor | None, error: str) -> None:
            if probs is None:
                rows.writerow([path] + [""] * (len(columns) - 2) + [error])
                return
            values, indices = probs.topk(top_k)
            row: list[Any] = [path, classes[int(indices[0])], f"{float(values[0]):.6f}"]
            for v, i in zip(values.tolist(), indices.tolist(), strict=True):
                row += [classes[i], f"{v:.6f}"]
            if with_probabilities:
                row += [f"{v:.6f}" for v in probs.tolist()]
            rows.writerow(row + [""])

        return write_csv

    def write_jsonl(path: str, probs: torch.Tensor | None, error: str) -> None:
        record: dict[str, Any] = {"path": path}
        if probs is None:
            record.update(prediction=None, confidence=None, top_k=None, error=error)
        else:
            values, indices = probs.topk(top_k)
            record.update(prediction=classes[int(indices[0])], confidence=round(float(values[0]), 6),
                          top_k=[{"class": classes[i], "probability": round(v, 6)}
                                 for v, i in zip(values.tolist(), indices.tolist(), strict=True)])
            if with_probabilities:
                record["probabilities"] = {c: round(v, 6) for c, v in zip(classes, probs.tolist(), strict=True)}
            record["error"] = None
        f.write(json.dumps(record) + "\n")

    return write_jsonl
