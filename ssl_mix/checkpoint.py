"""Checkpoints that survive interruption and cannot run code when loaded.

A checkpoint is a plain dict of tensors and Python primitives. It is written with :func:`ssl_mix.atomic.write_atomic`
(temporary file in the same directory, flushed to disk, renamed over the target), so a kill at any moment leaves
either the previous checkpoint or the new one, never a torn file. Loading uses
``torch.load(weights_only=True)``, which refuses pickled objects other than tensors and primitive containers,
so a crafted file cannot execute code.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mix.atomic import write_atomic

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state"]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path`` (:func:`~ssl_mix.atomic.write_atomic`); its folder is created.

    Args:
        state: tensors and Python primitives (what ``torch.load(weights_only=True)`` reads back).
        path: the checkpoint file.

    Returns:
        The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable checkpoint (truncated, or holds objects other than tensors and
            primitive containers).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{str(path)!r} is not a valid ssl_mix checkpoint (truncated, or it holds objects that are not "
            f"tensors or plain containers, which are refused for safety): {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or "format" not in state:
        raise ValueError(f"{str(path)!r} is not an ssl_mix checkpoint (no 'format' entry)")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Every global random state a training step can touch: torch (CPU and CUDA), NumPy and Python."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
