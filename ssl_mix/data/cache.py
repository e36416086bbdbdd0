"""The decoded-image cache: image files decoded and resized once, stored as uint8 arrays for the next load.

An entry is keyed by the SHA-256 of everything that decides its pixels: the absolute path, size and modification
time (ns) of every file in order, and the decoding settings (image size, resize policy, channels). Changing,
adding, removing or touching a file, or any setting, gives another key; stale entries are never read. Each entry
is a ``KEY.npy`` (uint8 ``(N, C, H, W)``, memory-mappable with ``numpy.load(..., mmap_mode="r")``) and a
``KEY.json`` (its shape and the files that could not be decoded), both written atomically
(:func:`ssl_mix.atomic.write_atomic`), the JSON last, so an interrupted write leaves no entry. Nothing is ever
deleted: remove the directory to free it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssl_mix.atomic import write_atomic

__all__ = ["default_cache_dir", "cache_key", "read_cache", "write_cache"]

_CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ssl_mix``, or ``~/.cache/ssl_mix`` when ``XDG_CACHE_HOME`` is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssl_mix"


def cache_key(paths: Sequence[str | Path], settings: dict[str, Any]) -> str:
    """The key of the decoded images of ``paths`` under ``settings`` (see the module docstring).

    Args:
        paths: the image files, in load order. A file that cannot be stat-ed (a symlink loop) counts as
            size and time -1.
        settings: JSON-compatible decoding settings.

    Returns:
        A 64-character hex digest.
    """
    digest = hashlib.sha256(json.dumps({"format": _CACHE_FORMAT, "settings": settings}, sort_keys=True).encode())
    for path in paths:
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = -1
        digest.update(f"{os.path.abspath(path)}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def read_cache(directory: str | Path, key: str, *, images: bool = True) -> tuple[np.ndarray | None, dict] | None:
    """A cache entry: ``(images, meta)``, or None when there is none (or it is unreadable).

    Args:
        directory: the cache directory.
        key: from :func:`cache_key`.
        images: also read the ``.npy`` (False: only the metadata; ``images`` is then None).
    """
    directory = Path(directory)
    try:
        meta = json.loads((directory / f"{key}.json").read_text())
        if meta.get("format") != _CACHE_FORMAT:
            return None
        if not images or meta.get("shape") is None:
            return None, meta
        array = np.load(directory / f"{key}.npy")
    except (OSError, ValueError):
        return None
    if list(array.shape) != meta["shape"] or array.dtype != np.uint8:
        return None
    return array, meta


def write_cache(directory: str | Path, key: str, images: np.ndarray | None, meta: dict[str, Any]) -> bool:
    """Store an entry atomically; returns False (and stores nothing) when the directory is not writable.

    Args:
        directory: the cache directory (created if needed).
        key: from :func:`cache_key`.
        images: uint8 ``(N, C, H, W)``, or None to store only ``meta``.
        meta: JSON-compatible metadata; ``format`` and ``shape`` are added.
    """
    directory = Path(directory)
    meta = {**meta, "format": _CACHE_FORMAT, "shape": None if images is None else list(images.shape)}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if images is not None:
            write_atomic(directory / f"{key}.npy", lambda f: np.save(f, images, allow_pickle=False))
        write_atomic(directory / f"{key}.json", json.dumps(meta, sort_keys=True))
    except OSError:
        return False
    return True
