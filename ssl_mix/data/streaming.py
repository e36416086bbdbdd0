"""Image files decoded on the fly, for pools that do not fit in memory: the map-style dataset the ``DataLoader``
path streams an image folder with (its files checked first by :func:`~ssl_mix.data.decode.scan_files`)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from ssl_mix.choices import Interpolation
from ssl_mix.data.files import ImageFiles
from ssl_mix.data.images import DEFAULT_INTERPOLATION, BadImageError, ResizeMode, decode_image, image_size_pair

__all__ = ["ImageFileDataset"]


class ImageFileDataset(Dataset):
    """A map-style dataset that decodes image files on the fly (for pools that do not fit in memory).

    Items are ``(image, target)`` when ``labeled``, else ``image``: the uint8 ``(C, H, W)`` tensor
    :func:`~ssl_mix.data.images.decode_image` gives, with grayscale repeated to ``channels`` = 3.

    Args:
        files: the files (every target >= 0 when ``labeled``).
        image_shape: ``(C, H, W)`` every file decodes to (see :func:`~ssl_mix.data.decode.scan_files`); ``H, W``
            is passed as ``image_size`` unless ``image_size`` is None (the files already have that size).
        resize: the resize policy.
        image_size: the requested size (None: the files' own).
        labeled: whether items carry targets.
        interpolation: the resize filter.
    """

    def __init__(self, files: ImageFiles, image_shape: tuple[int, int, int], *, resize: ResizeMode = "crop",
                 image_size: int | tuple[int, int] | None = None, labeled: bool = True,
                 interpolation: Interpolation = DEFAULT_INTERPOLATION) -> None:
        if labeled and len(files) and int(files.targets.min()) < 0:
            raise ValueError("a labeled ImageFileDataset needs every target >= 0; pass labeled=False or select the "
                             "labeled files")
        self.files, self.image_shape, self.labeled = files, tuple(image_shape), labeled
        # Forcing the scanned channel count repeats a grayscale file's plane, as decode_files does.
        self.settings = {"image_size": image_size_pair(image_size), "resize": resize, "channels": self.image_shape[0],
                         "interpolation": interpolation}

    def __len__(self) -> int:
        return len(self.files)

    @property
    def classes(self) -> list[str]:
        """The class names of the files' targets."""
        return self.files.classes

    def __getitem__(self, index: int) -> Any:
        image = decode_image(self.files.paths[index], **self.settings)
        if tuple(image.shape) != self.image_shape:  # the file changed since it was scanned
            raise BadImageError(self.files.paths[index], f"it decodes to {tuple(image.shape)}, not "
                                f"{self.image_shape}; was it replaced during training?")
        return (image, int(self.files.targets[index])) if self.labeled else image
