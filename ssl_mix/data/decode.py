"""Decoding many image files at once: into memory (:func:`decode_files`) or, for a pool streamed from its files,
only checked and summarised (:func:`scan_files`), both in a thread pool and through the decoded-image cache of
:mod:`ssl_mix.data.cache`. Every image goes through :func:`~ssl_mix.data.images.decode_image`, the one decoding path
of training, evaluation and prediction."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from ssl_mix.choices import Interpolation
from ssl_mix.data.arrays import ImageArrays, channel_stats
from ssl_mix.data.cache import cache_key, default_cache_dir, read_cache, write_cache
from ssl_mix.data.files import ImageFiles
from ssl_mix.data.images import (
    DEFAULT_INTERPOLATION,
    BadImageError,
    ResizeMode,
    decode_image,
    image_channels,
    image_size_pair,
)

__all__ = ["decode_files", "DecodedFiles", "scan_files", "FileScan", "SKIP_HINT"]

SKIP_HINT = ("rerun with --skip-bad-images (skip_bad_images=True) to leave such files out; they are then listed in "
             "the run directory's skipped_images.txt")
"""What an error about unreadable image files tells the user to do."""

_SHOW = 5  # unreadable files named in an error message


class DecodedFiles(NamedTuple):
    """What :func:`decode_files` returns.

    Attributes:
        arrays: the decoded images of the readable files, in order.
        kept: ``(len(arrays),)`` int64 positions in the listed files of the rows of ``arrays``.
        skipped: the unreadable files left out (empty unless ``skip_bad_images``).
        colour: how many of the readable files are in colour, which is what decides the channels when ``channels``
            is None (RGB if any is); None when ``channels`` was forced, or read from a cache entry that predates
            the count.
    """

    arrays: ImageArrays
    kept: np.ndarray
    skipped: list[BadImageError]
    colour: int | None = None


def _settings(image_size: Any, resize: str, channels: int | None, interpolation: str) -> dict[str, Any]:
    size = image_size_pair(image_size)
    settings = {"image_size": list(size) if size else None, "resize": resize, "channels": channels}
    if interpolation != DEFAULT_INTERPOLATION:  # so that cache entries of the default filter keep their key
        settings["interpolation"] = interpolation
    return settings


def _threads(num_threads: int | None) -> int:
    threads = num_threads if num_threads is not None else min(8, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    return threads


def _decode_stream(paths: Sequence[Path], settings: dict[str, Any], threads: int, desc: str
                   ) -> Iterator[torch.Tensor | BadImageError]:
    """Each file decoded (or its error), in order, with a progress bar for long lists."""
    from tqdm.auto import tqdm

    def one(path: Path) -> torch.Tensor | BadImageError:
        try:
            return decode_image(path, **settings)
        except BadImageError as err:
            return err

    # Chunks amortise the thread hand-off over many small files; PIL's decoders release the GIL, which pays
    # off for large images (for CIFAR-sized JPEGs, Python-level header parsing dominates).
    chunk = max(1, min(256, -(-len(paths) // (4 * threads))))
    batches = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with tqdm(total=len(paths), desc=desc, unit="img", disable=True if len(paths) < 2000 else None,
              file=sys.stderr, leave=False) as bar:
        if threads == 1 or len(batches) == 1:
            results: Any = ([one(p) for p in b] for b in batches)
        else:
            pool = ThreadPoolExecutor(threads)
            results = pool.map(lambda b: [one(p) for p in b], batches)
        try:
            for decoded in results:
                bar.update(len(decoded))
                yield from decoded
        finally:
            if threads > 1 and len(batches) > 1:
                pool.shutdown(cancel_futures=True)


def _bad_files_error(files: ImageFiles, bad: list[tuple[int, BadImageError]]) -> BadImageError:
    index, first = bad[0]
    shown = "; ".join(f"{files.name(i)} ({err.reason})" for i, err in bad[1:_SHOW])
    more = f"; {len(bad) - 1} more unreadable file(s): {shown}" if len(bad) > 1 else ""
    if len(bad) > _SHOW:
        more += ", ..."
    return BadImageError(files.paths[index], f"{first.reason}{more}. Remove or replace the file(s), or {SKIP_HINT}")


def _size_error(files: ImageFiles, sizes: list[tuple[int, int]], where: str) -> ValueError:
    first = sizes[0]
    other = next(i for i, s in enumerate(sizes) if s != first)
    return ValueError(f"images in {where} have different sizes, e.g. {files.name(0)} is {first[0]}x{first[1]} "
                      f"(HxW) and {files.name(other)} is {sizes[other][0]}x{sizes[other][1]} ({len(set(sizes))} "
                      "sizes in all); pass --image-size N or --image-size H,W (image_size= in Python) to resize them "
                      "all, with --resize crop (cover the size, cut the centre; the default) or --resize stretch")


def _where(files: ImageFiles) -> str:
    if not len(files):
        return "the image list"
    parents = {p.parent for p in files.paths}
    return str(next(iter(parents))) if len(parents) == 1 else str(files.root or os.path.commonpath(files.paths))


def _cache_location(cache: bool | str | Path) -> Path | None:
    if cache is False:
        return None
    if cache is True or cache is None:
        return default_cache_dir()
    return Path(cache).expanduser()


def decode_files(files: ImageFiles, *, image_size: int | tuple[int, int] | None = None, resize: ResizeMode = "crop",
                 channels: Literal[1, 3] | None = None, skip_bad_images: bool = False,
                 cache: bool | str | Path = True, num_threads: int | None = None,
                 interpolation: Interpolation = DEFAULT_INTERPOLATION) -> DecodedFiles:
    """Decode listed image files into memory, through the decoded-image cache.

    Args:
        files: the files (from :func:`~ssl_mix.data.folder.folder_files` or
            :func:`~ssl_mix.data.folder.unlabeled_dir_files`).
        image_size, resize, channels, interpolation: as in :func:`~ssl_mix.data.images.decode_image`. With
            ``channels`` None, the set is RGB if any image is in colour (grayscale ones are repeated), else grayscale.
        skip_bad_images: leave unreadable files out (they are returned in ``skipped``) instead of raising.
        cache: True: the default cache directory (:func:`~ssl_mix.data.cache.default_cache_dir`); a path: that
            directory; False: decode without a cache.
        num_threads: decoding threads (default ``min(8, os.cpu_count())``).

    Returns:
        A :class:`DecodedFiles`.

    Raises:
        BadImageError: unreadable files and not ``skip_bad_images`` (the message names them).
        ValueError: images of different sizes without ``image_size``.
    """
    settings = _settings(image_size, resize, channels, interpolation)
    threads = _threads(num_threads)
    if not len(files):
        empty = ImageArrays(torch.zeros((0, 0, 0, 0), dtype=torch.uint8), files.targets[:0], list(files.classes))
        return DecodedFiles(empty, np.zeros(0, dtype=np.int64), [], None if channels else 0)
    directory = _cache_location(cache)
    key = cache_key(files.paths, settings) if directory is not None else ""
    entry = read_cache(directory, key) if directory is not None else None
    if entry is not None:
        array, meta = entry
        bad = [(int(i), BadImageError(files.paths[int(i)], reason)) for i, reason in meta["bad"]]
        images = torch.from_numpy(array)
        colour = meta.get("colour")
    else:
        decoded = list(_decode_stream(files.paths, settings, threads, f"decoding {_where(files)}"))
        bad = [(i, d) for i, d in enumerate(decoded) if isinstance(d, BadImageError)]
        good = [d for d in decoded if isinstance(d, torch.Tensor)]
        sizes = [tuple(d.shape[1:]) for d in good]
        if len(set(sizes)) > 1:
            good_files = files.subset([i for i, d in enumerate(decoded) if isinstance(d, torch.Tensor)])
            raise _size_error(good_files, sizes, _where(files))  # type: ignore[arg-type]
        colour = None if channels else sum(img.shape[0] == 3 for img in good)
        if good:
            out_channels = channels or (3 if any(img.shape[0] == 3 for img in good) else 1)
            images = torch.empty((len(good), out_channels, *sizes[0]), dtype=torch.uint8)
            for i, img in enumerate(good):
                images[i].copy_(img)  # broadcasts grayscale to RGB when the set is in colour
        else:
            images = torch.zeros((0, 0, 0, 0), dtype=torch.uint8)
        del decoded, good
        if directory is not None:
            write_cache(directory, key, images.numpy(), {"bad": [[i, err.reason] for i, err in bad], "colour": colour})
    if bad and not skip_bad_images:
        raise _bad_files_error(files, bad)
    kept = np.setdiff1d(np.arange(len(files)), np.array([i for i, _ in bad], dtype=np.int64))
    arrays = ImageArrays(images, files.targets[torch.from_numpy(kept)], list(files.classes))
    return DecodedFiles(arrays, kept, [err for _, err in bad], colour)


class FileScan(NamedTuple):
    """What :func:`scan_files` returns: what streaming needs to know about a set of files before training.

    Attributes:
        image_shape: ``(C, H, W)`` every file decodes to.
        mean, std: per-channel statistics of the readable files, as :func:`~ssl_mix.data.arrays.channel_stats`.
        kept: int64 positions of the readable files.
        skipped: the unreadable files (empty unless ``skip_bad_images``).
        colour: how many of the readable files are in colour, as in :class:`DecodedFiles`.
    """

    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kept: np.ndarray
    skipped: list[BadImageError]
    colour: int | None = None


def _header(path: Path) -> tuple[str, tuple[int, int]] | BadImageError:
    """(mode, (H, W) after EXIF orientation) from the file's header, without decoding the pixels."""
    from PIL import Image

    try:
        if path.is_dir():
            return BadImageError(path, "it is a directory, not a file")
        with Image.open(path) as im:
            orientation = int(im.getexif().get(0x0112, 1)) if hasattr(im, "getexif") else 1
            size = (im.height, im.width) if orientation not in (5, 6, 7, 8) else (im.width, im.height)
            return im.mode, size
    except Exception:  # decode_image gives the precise reason
        try:
            decode_image(path, image_size=None)
        except BadImageError as err:
            return err
        return BadImageError(path, "the header cannot be read")


def scan_files(files: ImageFiles, *, image_size: int | tuple[int, int] | None = None, resize: ResizeMode = "crop",
               channels: Literal[1, 3] | None = None, skip_bad_images: bool = False,
               cache: bool | str | Path = True, num_threads: int | None = None,
               interpolation: Interpolation = DEFAULT_INTERPOLATION) -> FileScan:
    """Check that every file decodes, and compute the channel statistics, keeping no pixels (for streaming).

    Reads the headers (modes, sizes), then decodes every file once in chunks; the result is cached like
    :func:`decode_files`'s (metadata only). The arguments are those of :func:`decode_files`.

    Returns:
        A :class:`FileScan`; its statistics equal those of the decoded set held in memory.
    """
    settings = _settings(image_size, resize, channels, interpolation)
    threads = _threads(num_threads)
    if not len(files):
        raise ValueError("scan_files needs at least one file")
    directory = _cache_location(cache)
    key = cache_key(files.paths, {**settings, "scan": True}) if directory is not None else ""
    entry = read_cache(directory, key, images=False) if directory is not None else None
    if entry is not None:
        meta = entry[1]
        bad = [(int(i), BadImageError(files.paths[int(i)], reason)) for i, reason in meta["bad"]]
        shape, mean, std = tuple(meta["image_shape"]), tuple(meta["mean"]), tuple(meta["std"])
        colour = meta.get("colour")
    else:
        with ThreadPoolExecutor(threads) as pool:
            headers = list(pool.map(_header, files.paths, chunksize=64))
        bad = [(i, h) for i, h in enumerate(headers) if isinstance(h, BadImageError)]
        good_index = [i for i, h in enumerate(headers) if not isinstance(h, BadImageError)]
        if not good_index:
            raise _bad_files_error(files, bad)
        modes_sizes = [headers[i] for i in good_index]
        size = image_size_pair(image_size)
        if size is None:
            sizes = [s for _, s in modes_sizes]  # type: ignore[misc]
            if len(set(sizes)) > 1:
                raise _size_error(files.subset(good_index), sizes, _where(files))
            size = sizes[0]
        out_channels = channels or max(image_channels(m) for m, _ in modes_sizes)  # type: ignore[misc]
        shape = (out_channels, *size)
        late_bad: list[tuple[int, BadImageError]] = []

        def chunks() -> Iterator[torch.Tensor]:
            batch: list[torch.Tensor] = []
            decoded = _decode_stream([files.paths[i] for i in good_index], settings, threads,
                                     f"checking {_where(files)}")
            for i, img in zip(good_index, decoded, strict=True):
                if isinstance(img, BadImageError):
                    late_bad.append((i, img))
                    continue
                batch.append(img.expand(out_channels, -1, -1))
                if len(batch) == 1024:
                    yield torch.stack(batch)
                    batch = []
            if batch:
                yield torch.stack(batch)

        mean, std = channel_stats(chunks())
        bad = sorted(bad + late_bad, key=lambda b: b[0])
        late = {i for i, _ in late_bad}
        colour = None if channels else sum(image_channels(headers[i][0]) == 3  # type: ignore[index]
                                           for i in good_index if i not in late)
        if directory is not None:
            write_cache(directory, key, None, {"bad": [[i, err.reason] for i, err in bad], "image_shape": list(shape),
                                               "mean": list(mean), "std": list(std), "colour": colour})
    if bad and not skip_bad_images:
        raise _bad_files_error(files, bad)
    kept = np.setdiff1d(np.arange(len(files)), np.array([i for i, _ in bad], dtype=np.int64))
    return FileScan(shape, mean, std, kept, [err for _, err in bad], colour)  # type: ignore[arg-type]
