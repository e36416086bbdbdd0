"""Decoding one image, from a file or from memory, into the uint8 ``(C, H, W)`` tensor that training sees.

Training, evaluation and prediction all decode through :func:`prepare_image`, so an image file gives the same
pixels whichever of them reads it. The steps, in order:

1. EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a photo taken sideways is upright.
2. The mode becomes grayscale (``L``) or RGB: ``1``, ``L``, ``LA``, 16-bit (``I;16``) and 32-bit (``I``, ``F``)
   grayscale become ``L``; every other mode (``RGB``, ``RGBA``, palette ``P``, ``CMYK``, ``YCbCr``, ...) becomes
   RGB. Alpha is dropped (not composited). 16-bit and ``I`` values keep their 8 most significant bits (value >> 8,
   clipped to 0..65535 first); ``F`` values are read as [0, 1] (clipped) and scaled by 255.
3. ``channels`` forces 1 (grayscale, ITU-R 601 luma) or 3 (RGB, gray repeated).
4. ``image_size`` resizes with the ``interpolation`` filter (bilinear unless asked otherwise; antialiased when
   shrinking): ``resize="crop"`` scales the
   image so that it covers ``(H, W)`` and cuts the centre (aspect ratio kept, borders lost); ``"stretch"`` scales
   each axis to the target (nothing lost, aspect ratio changed). JPEG files are decoded at a reduced scale (DCT
   scaling) when that still leaves at least the target size.

:func:`describe_decoding` states these steps, with the Pillow calls that reproduce them, as JSON-ready data (the
``preprocessing.decode`` field of an export's sidecar).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssl_mix.checks import image_size_pair
from ssl_mix.choices import DEFAULT_INTERPOLATION, INTERPOLATIONS, Interpolation, ResizeMode

__all__ = ["BadImageError", "ResizeMode", "decode_image", "prepare_image", "image_size_pair", "image_channels",
           "describe_decoding", "RESAMPLING", "DEFAULT_INTERPOLATION"]

RESAMPLING = DEFAULT_INTERPOLATION.upper()
"""The ``PIL.Image.Resampling`` name of the default filter (Pillow's resize is antialiased when shrinking)."""

_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class BadImageError(ValueError):
    """An image file that cannot be decoded (truncated, empty, not an image, a directory, a symlink loop...).

    Args:
        path: the file.
        reason: what went wrong, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read image {path}: {reason}")


def image_channels(mode: str) -> int:
    """The number of channels (1 or 3) that :func:`prepare_image` gives an image of PIL mode ``mode``."""
    return 1 if mode in _GRAY_MODES or mode.startswith("I;16") else 3


def _check_options(resize: str, channels: int | None, interpolation: str = DEFAULT_INTERPOLATION) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if resize not in ("crop", "stretch"):
        raise ValueError(f"resize must be 'crop' (cover the target size, cut the centre) or 'stretch' (scale each "
                         f"axis), got {resize!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None (automatic), got {channels!r}")


def _orientation(im: Any) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block is no reason to refuse the pixels
        return 1


def _to_gray_or_rgb(im: Any) -> Any:
    from PIL import Image

    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(im).astype(np.int64)
        return Image.fromarray((np.clip(array, 0, 65535) >> 8).astype(np.uint8))
    if mode == "F":
        array = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        return Image.fromarray(np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8))
    if mode in _GRAY_MODES:
        return im.convert("L")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # Pillow asks for this step for palettes with transparency
    return im.convert("RGB")


def _resize(im: Any, size: tuple[int, int], resize: str, interpolation: str) -> Any:
    from PIL import Image, ImageOps

    height, width = size
    if (im.height, im.width) == (height, width):
        return im
    method = Image.Resampling[interpolation.upper()]
    if resize == "stretch":
        return im.resize((width, height), method)
    return ImageOps.fit(im, (width, height), method=method, centering=(0.5, 0.5))


def _prepare_pil(im: Any, size: tuple[int, int] | None, resize: str, channels: int | None,
                 interpolation: str) -> torch.Tensor:
    from PIL import ImageOps

    if _orientation(im) in range(2, 9):
        im = ImageOps.exif_transpose(im)
    im = _to_gray_or_rgb(im)
    if channels is not None and image_channels(im.mode) != channels:
        im = im.convert("L" if channels == 1 else "RGB")
    if size is not None:
        im = _resize(im, size, resize, interpolation)
    array = np.array(im, dtype=np.uint8)  # a writable copy: torch refuses read-only arrays
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def prepare_image(image: Any, *, image_size: int | tuple[int, int] | None, resize: ResizeMode = "crop",
                  channels: Literal[1, 3] | None = None, interpolation: Interpolation = DEFAULT_INTERPOLATION
                  ) -> torch.Tensor:
    """An image already in memory as the uint8 ``(C, H, W)`` tensor training would make of the same file.

    Args:
        image: a PIL image; a NumPy array ``(H, W)`` or ``(H, W, C)`` (C in 1, 3, 4; uint8, uint16, int32 or
            float32 in [0, 1], read as PIL reads such pixels); or a uint8 (0..255) or float (0..1) tensor
            ``(C, H, W)`` or ``(H, W)``.
        image_size: ``(H, W)`` to resize to (an int means square); None keeps the size.
        resize: ``"crop"`` (cover the size, cut the centre) or ``"stretch"``; see the module docstring.
        channels: 1 or 3 to force grayscale or RGB; None keeps what the image has (1 or 3).
        interpolation: the resize filter, ``bilinear``, ``bicubic`` or ``lanczos``.

    Returns:
        uint8 ``(C, H, W)``, C in {1, 3}.
    """
    from PIL import Image

    size = image_size_pair(image_size)
    _check_options(resize, channels, interpolation)
    if isinstance(image, torch.Tensor):
        if image.dim() not in (2, 3) or not (image.dtype == torch.uint8 or image.is_floating_point()):
            raise ValueError(f"a tensor image must be uint8 (0..255) or float (0..1), (C, H, W) or (H, W), got "
                             f"{image.dtype} {tuple(image.shape)}")
        if image.is_floating_point():
            if image.numel() and not bool(((image >= 0) & (image <= 1)).all()):
                raise ValueError(f"a float tensor image must lie in [0, 1], got values in [{float(image.min()):.4g}, "
                                 f"{float(image.max()):.4g}]; divide by 255 first if they are 0..255")
            image = (image.float() * 255).round().to(torch.uint8)
        array = image.detach().cpu().numpy()
        image = array if array.ndim == 2 else array.transpose(1, 2, 0)
    if isinstance(image, np.ndarray):
        array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ValueError(f"an array image must be (H, W) or (H, W, C) with C in 1, 3, 4, got shape {image.shape}")
        try:
            image = Image.fromarray(np.ascontiguousarray(array))
        except TypeError as err:
            raise ValueError(f"an array image of dtype {array.dtype} and shape {image.shape} is not a format PIL "
                             f"reads ({err}); give uint8 pixels") from None
    if not isinstance(image, Image.Image):
        raise TypeError(f"prepare_image takes a PIL image, a NumPy array or a uint8 tensor, got "
                        f"{type(image).__name__}")
    return _prepare_pil(image, size, resize, channels, interpolation)


def decode_image(path: str | Path, *, image_size: int | tuple[int, int] | None, resize: ResizeMode = "crop",
                 channels: Literal[1, 3] | None = None, interpolation: Interpolation = DEFAULT_INTERPOLATION
                 ) -> torch.Tensor:
    """Decode one image file exactly as training, evaluation and prediction do (see the module docstring).

    Args:
        path: the image file (any format PIL reads).
        image_size: ``(H, W)`` to resize to (an int means square); None keeps the file's size.
        resize: ``"crop"`` (cover the size, cut the centre) or ``"stretch"``.
        channels: 1 or 3 to force grayscale or RGB; None keeps what the file has (1 or 3).
        interpolation: the resize filter, ``bilinear``, ``bicubic`` or ``lanczos``.

    Returns:
        uint8 ``(C, H, W)``, C in {1, 3}.

    Raises:
        BadImageError: (a ``ValueError``) the file cannot be decoded; the message names it and says why.
    """
    from PIL import Image, UnidentifiedImageError

    size = image_size_pair(image_size)
    _check_options(resize, channels, interpolation)
    path = Path(path)
    if path.is_dir():
        raise BadImageError(path, "it is a directory, not a file")
    try:
        if os.path.getsize(path) == 0:
            raise BadImageError(path, "the file is empty (0 bytes)")
        with Image.open(path) as im:
            if size is not None and im.format == "JPEG":
                request = size if _orientation(im) not in _TRANSPOSED else (size[1], size[0])
                im.draft(im.mode, (request[1], request[0]))  # DCT scaling; keeps at least the requested size
            return _prepare_pil(im, size, resize, channels, interpolation)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image file PIL can identify (wrong extension, or damaged)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else str(err)
        raise BadImageError(path, reason) from None


def describe_decoding(*, image_size: int | tuple[int, int], resize: ResizeMode, channels: Literal[1, 3],
                      interpolation: Interpolation = DEFAULT_INTERPOLATION) -> dict[str, Any]:
    """What :func:`decode_image` does to a file, step by step, with the Pillow calls that reproduce it exactly.

    Args:
        image_size: the target ``(H, W)`` (an int means square).
        resize: ``"crop"`` or ``"stretch"``.
        channels: 1 or 3.
        interpolation: the resize filter.

    Returns:
        A JSON-ready dict: ``library``, ``order`` (the step names, in the order they run) and one entry per step
        (``jpeg_draft``, ``exif_orientation``, ``mode``, ``channels``, ``resize``, ``array``), each with a ``pil``
        call where one reproduces it. ``W`` and ``H`` in the calls are the target width and height.
    """
    import PIL

    height, width = image_size_pair(image_size) or (0, 0)
    _check_options(resize, channels, interpolation)
    method = interpolation.upper()
    resize_call = (f"im.resize((W, H), Image.Resampling.{method})" if resize == "stretch" else
                   f"ImageOps.fit(im, (W, H), method=Image.Resampling.{method}, centering=(0.5, 0.5))")
    return {
        "library": "Pillow", "pillow_version": PIL.__version__,
        "order": ["open", "jpeg_draft", "exif_orientation", "mode", "channels", "resize", "array"],
        "open": {"pil": "im = Image.open(path)"},
        "jpeg_draft": {
            "enabled": True, "applies_to": "files whose im.format is 'JPEG', before the pixels are loaded",
            "pil": "im.draft(im.mode, request)",
            "request": [width, height], "request_when_transposed": [height, width],
            "transposed_orientations": list(_TRANSPOSED),
            "rule": "Pillow's DCT scaling: s = the largest of 8, 4, 2, 1 with s <= min(w0 // request[0], "
                    "h0 // request[1]) (1 if none); the file decodes to (ceil(w0 / s), ceil(h0 / s)) pixels with "
                    "libjpeg's scaled IDCT, so never smaller than the request",
        },
        "exif_orientation": {"tag": _EXIF_ORIENTATION, "applies_to": list(range(2, 9)),
                             "pil": "im = ImageOps.exif_transpose(im)"},
        "mode": {
            "gray_modes": list(_GRAY_MODES), "gray_prefixes": ["I;16"],
            "keep": ["L", "RGB"],
            "integer": "modes 'I' and 'I;16*': L = clip(v, 0, 65535) >> 8 as uint8 (the 8 most significant bits)",
            "float": "mode 'F': L = round(clip(nan_to_num(v, nan=0), 0, 1) * 255) as uint8",
            "other_gray": "the other gray modes: im.convert('L')",
            "palette_transparency": "mode 'P' with 'transparency' in im.info: im.convert('RGBA').convert('RGB')",
            "other": "every other mode: im.convert('RGB') (alpha dropped, not composited)",
        },
        "channels": {"value": channels, "mode": "L" if channels == 1 else "RGB",
                     "pil": f"im = im.convert({'L' if channels == 1 else 'RGB'!r}) when im.mode differs",
                     "note": "RGB to L is ITU-R 601-2 luma (L = R * 299/1000 + G * 587/1000 + B * 114/1000); "
                             "L to RGB repeats the gray value"},
        "resize": {"policy": resize, "filter": method, "size": [height, width],
                   "skip_when": "the image is already H x W", "pil": resize_call,
                   "crop": "none" if resize == "stretch" else
                           "centre: scale to cover H x W keeping the aspect ratio, the overflow cut evenly from both "
                           "sides (ImageOps.fit crops and resizes in one step, with a fractional box)"},
        "array": {"pil": "np.array(im, dtype=np.uint8)",
                  "layout": "(H, W) -> (1, H, W); (H, W, C) -> (C, H, W); images stacked into (N, C, H, W)"},
    }
