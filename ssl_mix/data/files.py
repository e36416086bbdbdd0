"""Image files listed but not decoded: the image extensions, :class:`ImageFiles` (paths, targets, classes) and the
recursive, sorted listing of a directory that every image-folder path starts from."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "image_files"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
"""File extensions (case-insensitive) read as images in an image folder; other files are ignored."""


@dataclass(eq=False)
class ImageFiles:
    """Image files with their targets, listed but not decoded.

    Args:
        paths: the files, in load order.
        targets: int64 ``(N,)`` class indices, -1 for unlabeled files.
        classes: class names; index i names class i.
        root: the folder the files were listed from (names in messages are relative to it), or None.
    """

    paths: list[Path]
    targets: torch.Tensor
    classes: list[str]
    root: Path | None = None

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        self.targets = torch.as_tensor(self.targets, dtype=torch.int64).reshape(-1)
        if len(self.targets) != len(self.paths):
            raise ValueError(f"ImageFiles has {len(self.paths)} paths but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageFiles:
        """The files at ``indices``, in that order."""
        index = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        return ImageFiles([self.paths[i] for i in index], self.targets[index], list(self.classes), self.root)

    def name(self, index: int) -> str:
        """The path of file ``index``, relative to ``root`` when it lies under it."""
        path = self.paths[index]
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return str(path)


def image_files(directory: str | Path) -> list[Path]:
    """The image files under ``directory`` (recursively, hidden entries skipped), in sorted relative-path order.

    A sub-directory whose name has an image extension (``x.jpg/``) is listed as a file, so that decoding it
    fails loudly instead of silently reading what it holds.
    """
    directory = Path(directory)
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        named_like_images = [d for d in dirnames if os.path.splitext(d)[1].lower() in IMAGE_EXTENSIONS]
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in named_like_images]
        found.extend(Path(dirpath) / f for f in filenames + named_like_images
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())
