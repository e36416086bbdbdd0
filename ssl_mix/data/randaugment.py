"""RandAugment as FixMatch runs it, for a whole batch on the images' own device.

FixMatch (Sohn et al. 2020, §2.3 and appendix D) makes its strong view with a RandAugment variant: two operations
per image, drawn uniformly (with replacement) from 14, each applied with probability 1/2 at a magnitude drawn per
image, then Cutout. The official code (github.com/google-research/fixmatch) defines it across two files:

- ``libml/augment.py``: the op list ``RANDOM_POLICY_OPS`` (lines 37-41) and the ``rac`` augmentation
  (``AugmentPoolRAMC(nops=2, magnitude=10)``, lines 209-223 and 368-371), whose policy is
  ``[(op, 0.5, np.random.randint(1, 10)) for op in np.random.choice(RANDOM_POLICY_OPS, 2)]`` (line 198): an integer
  level in ``{1, ..., 9}`` per op and image, and Cutout after the two ops;
- ``third_party/auto_augment/augmentations.py``: each op as PIL calls it, with the level mapped to a value by
  ``int_parameter``/``float_parameter`` (``level * maxval / 10``, lines 124-149), a random sign for the geometric
  ops, and ``cutout_numpy(img, size=16)`` (lines 102-121).

The operations and the values a level maps to (``L`` the level, ``int`` truncation, as the official code):

| op | value | at L = 1 ... 9 |
|---|---|---|
| Identity | - | - |
| AutoContrast | per channel, stretch ``[min, max]`` to ``[0, 255]`` | - |
| Equalize | per channel histogram equalisation (PIL's lookup table) | - |
| Rotate | ``±int(30 L / 10)`` degrees, counter-clockwise about the centre | 3 ... 27 |
| Solarize | invert pixels ``>= 256 - int(256 L / 10)`` | threshold 231 ... 26 |
| Color | blend with the grey image, factor ``1.8 L / 10 + 0.1`` | 0.28 ... 1.72 |
| Contrast | blend with the mean grey level, same factor | 0.28 ... 1.72 |
| Brightness | blend with black, same factor | 0.28 ... 1.72 |
| Sharpness | blend with the 3x3 smoothed image, same factor | 0.28 ... 1.72 |
| ShearX, ShearY | ``±0.3 L / 10``: source ``x + s y`` (``y + s x``), origin at the top-left corner | 0.03 ... 0.27 |
| TranslateX, TranslateY | ``±int(10 L / 10)`` pixels (whatever the image size, as the official code) | 1 ... 9 |
| Posterize | keep ``4 - int(4 L / 10)`` bits | 4, 4, 3, 3, 2, 2, 2, 1, 1 |

Cutout then sets a square to the fill value: a centre ``(cy, cx)`` uniform over the pixels, rows
``[max(0, cy - size // 2), min(H, cy + size // 2))`` and the same for columns (16 pixels wide at most, clipped
at the border).

How this differs from the official pipeline, on purpose:

- The ops follow torchvision's tensor kernels (``torchvision.transforms.v2.functional``), which reproduce PIL's up
  to the rounding of a blend (at most one grey level); the tests check every op against them.
- Geometric ops sample the nearest source pixel, as PIL's default; out-of-frame pixels and the Cutout square take
  one fill value, mid-grey (128) by default. The official images live in ``[-1, 1]`` and get 0 there (127.5 in
  0..255) for Cutout and, through the alpha channel, for most out-of-frame pixels (black when a later op drops
  the alpha channel first).
- The official strong view is this RandAugment applied after the weak flip-and-shift (``d.d.rac``); composing the
  two is the loader's business, not this module's.

Randomness: :func:`sample_randaugment` draws every choice from one ``torch.Generator`` in a fixed order, so the
augmentation of a batch is a function of the generator's state (and a resumed run sees the same views);
:func:`apply_randaugment` is deterministic given the draws. A CPU generator (as for
:func:`~ssl_mix.data.augment.random_crop_flip`) makes the same draws for every device and lets the images be
grouped by op without waiting for the accelerator: each op then runs once, on the images that drew it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_mix.checks import check_int, check_positive_int, check_probability

__all__ = [
    "RA_OPS", "AFFINE_OPS", "RA_PARAMETER_MAX", "RA_LEVELS", "RA_OP_MAX", "RA_NUM_OPS", "RA_OP_PROBABILITY",
    "RA_CUTOUT_SIZE", "RA_FILL",
    "RandAugmentParams", "ra_values", "sample_randaugment", "apply_randaugment", "rand_augment",
    "affine_matrices", "affine_nearest", "autocontrast", "equalize", "solarize", "posterize", "adjust_brightness",
    "adjust_saturation", "adjust_contrast", "adjust_sharpness", "cutout",
]

RA_OPS: tuple[str, ...] = (
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Contrast", "Brightness", "Sharpness",
    "ShearX", "TranslateX", "TranslateY", "Posterize", "ShearY",
)
"""FixMatch's 14 RandAugment ops, in the order of ``RANDOM_POLICY_OPS`` (fixmatch ``libml/augment.py`` 37-41)."""

AFFINE_OPS: tuple[str, ...] = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
"""The geometric ops: one per-image matrix and one resampling; each takes a random sign."""

RA_PARAMETER_MAX = 10
"""The level a value's maximum corresponds to (``PARAMETER_MAX``, fixmatch ``augmentations.py`` 35)."""

RA_LEVELS: tuple[int, int] = (1, 9)
"""Inclusive range of the level drawn per op and image: ``np.random.randint(1, 10)`` (``libml/augment.py`` 198)."""

RA_OP_MAX: dict[str, float] = {
    "Rotate": 30, "Solarize": 256, "Color": 1.8, "Contrast": 1.8, "Brightness": 1.8, "Sharpness": 1.8,
    "ShearX": 0.3, "ShearY": 0.3, "TranslateX": 10, "TranslateY": 10, "Posterize": 4,
}
"""``maxval`` of each op with a magnitude (fixmatch ``third_party/auto_augment/augmentations.py`` 256-420)."""

RA_NUM_OPS = 2
"""Ops per image (``nops=2``, fixmatch ``libml/augment.py`` 369)."""

RA_OP_PROBABILITY = 0.5
"""Probability that each drawn op is applied (``libml/augment.py`` 198)."""

RA_CUTOUT_SIZE = 16
"""Side of the Cutout square in pixels (``cutout_numpy(img, size=16)``, ``augmentations.py`` 102)."""

RA_FILL = 128
"""Grey level (0..255) of out-of-frame pixels and of the Cutout square: the official 0 in ``[-1, 1]``, rounded."""

_INT_OPS = ("Rotate", "Solarize", "TranslateX", "TranslateY", "Posterize")  # int_parameter: truncated
_ENHANCE_OPS = ("Color", "Contrast", "Brightness", "Sharpness")  # float_parameter(level, 1.8) + 0.1
_GREY = (0.2989, 0.587, 0.114)  # ITU-R 601 weights as torchvision's rgb_to_grayscale
_OP_INDEX = {name: i for i, name in enumerate(RA_OPS)}
_EDGE_SNAP = 1e-9  # pixels; float64 errors of the sampling point are ~1e-14 at these sizes


@dataclass(frozen=True, eq=False)
class RandAugmentParams:
    """Every random choice of one RandAugment batch, one row per image (see :func:`sample_randaugment`).

    Attributes:
        ops: ``(B, num_ops)`` int64 indices into :data:`RA_OPS`, applied left to right.
        applied: ``(B, num_ops)`` bool, whether each op is applied.
        levels: ``(B, num_ops)`` int64 levels in :data:`RA_LEVELS`.
        signs: ``(B, num_ops)`` int64, +1 or -1 (used by the geometric ops only).
        cutout_centers: ``(B, 2)`` int64 ``(row, column)`` of each Cutout square's centre.
    """

    ops: torch.Tensor
    applied: torch.Tensor
    levels: torch.Tensor
    signs: torch.Tensor
    cutout_centers: torch.Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.ops.shape)
        if len(shape) != 2:
            raise ValueError(f"ops must have shape (batch, num_ops), got {shape}")
        for name in ("applied", "levels", "signs"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have the shape of ops {shape}, got {tuple(getattr(self, name).shape)}")
        if tuple(self.cutout_centers.shape) != (shape[0], 2):
            raise ValueError(f"cutout_centers must have shape ({shape[0]}, 2), got {tuple(self.cutout_centers.shape)}")

    def to(self, device: torch.device | str) -> RandAugmentParams:
        """The same draws on ``device`` (non-blocking copies)."""
        device = torch.device(device)
        # an asynchronous copy to pageable host memory could be read before it lands
        return RandAugmentParams(*(t.to(device, non_blocking=device.type != "cpu") for t in
                                   (self.ops, self.applied, self.levels, self.signs, self.cutout_centers)))


def ra_values(op: str, levels: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """The value each level gives ``op`` (the table in the module docstring), as float64.

    Args:
        op: a name in :data:`RA_OPS` other than Identity, AutoContrast and Equalize (they take no value).
        levels: integer levels of any shape (the official ones lie in :data:`RA_LEVELS`).
        signs: +1/-1 of the same shape, multiplied into the geometric ops' values; None for +1.

    Returns:
        Degrees (Rotate), a threshold (Solarize), a blend factor (Color, Contrast, Brightness, Sharpness), a shear
        coefficient, pixels (Translate) or a number of bits (Posterize), same shape as ``levels``.
    """
    if op not in RA_OP_MAX:
        raise ValueError(f"op must be one of {sorted(RA_OP_MAX)} (the ops with a magnitude), got {op!r}")
    levels = levels.to(torch.int64)
    if op in _INT_OPS:  # int(level * maxval / PARAMETER_MAX), with integers so no float rounds it down
        scaled = (levels * int(RA_OP_MAX[op])).div(RA_PARAMETER_MAX, rounding_mode="floor").double()
    else:
        scaled = levels.double() * RA_OP_MAX[op] / RA_PARAMETER_MAX
    if op == "Solarize":
        return 256 - scaled
    if op == "Posterize":
        return 4 - scaled
    if op in _ENHANCE_OPS:
        return scaled + 0.1
    return scaled if signs is None else scaled * signs.double()


def sample_randaugment(batch_size: int, image_size: tuple[int, int], *, generator: torch.Generator | None,
                       num_ops: int = RA_NUM_OPS, probability: float = RA_OP_PROBABILITY,
                       device: torch.device | str | None = None) -> RandAugmentParams:
    """Draw every choice of a RandAugment batch: ops, whether each applies, levels, signs and Cutout centres.

    A pure function of the generator's state: five draws, always in this order and of these shapes, whatever
    their values (ops ``randint(0, 14)``, applied ``rand < probability``, levels ``randint(1, 10)``, signs, then
    the Cutout rows and columns), so the same state gives the same batch and the generator advances by the same
    amount every call.

    Args:
        batch_size: images in the batch, >= 0.
        image_size: ``(H, W)`` of the images (for the Cutout centres).
        generator: the source of randomness; draws are made on its device. None uses the global generator of
            ``device``.
        num_ops: ops per image (FixMatch: 2).
        probability: chance that each op is applied (FixMatch: 1/2).
        device: where to draw when ``generator`` is None (default: the CPU).

    Returns:
        A :class:`RandAugmentParams` on the generator's device.
    """
    check_int("batch_size", batch_size, 0)
    check_positive_int("num_ops", num_ops)
    probability = check_probability("probability", probability)
    if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    h, w = (check_positive_int(name, v) for name, v in zip(("height", "width"), image_size, strict=True))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else torch.device(device or "cpu")
    shape = (batch_size, num_ops)
    kwargs = {"generator": generator, "device": device}
    ops = torch.randint(0, len(RA_OPS), shape, **kwargs)
    applied = torch.rand(shape, **kwargs) < probability
    levels = torch.randint(RA_LEVELS[0], RA_LEVELS[1] + 1, shape, **kwargs)
    signs = torch.randint(0, 2, shape, **kwargs) * 2 - 1
    rows = torch.randint(0, h, (batch_size,), **kwargs)
    cols = torch.randint(0, w, (batch_size,), **kwargs)
    return RandAugmentParams(ops, applied, levels, signs, torch.stack([rows, cols], 1))


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a batch (B, C, H, W), got {shape}")
    if images.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8 (0..255), got {images.dtype}; apply_randaugment converts float "
                        "images in [0, 1]")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels (grey or RGB), got {images.shape[1]}")


def _per_image(values: torch.Tensor | float, images: torch.Tensor) -> torch.Tensor:
    """``(B,)`` (or a scalar) as a float32 ``(B, 1, 1, 1)`` on the images' device."""
    values = torch.as_tensor(values, device=images.device)
    return values.to(torch.float32).reshape(-1, 1, 1, 1).expand(images.shape[0], 1, 1, 1)


def _fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a + b * c`` for float32 tensors, rounded once to float32 (a fused multiply-add, as the vectorised CPU and
    the CUDA kernels of ``add(a, c, alpha=b)`` compute it): the float64 product of two float32 values is exact."""
    return a.double().addcmul_(b.double(), c.double()).float()


def _blend(images: torch.Tensor, other: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """``images * f + other * (1 - f)`` in float32, clamped to 0..255 and truncated to uint8 (torchvision's
    ``_blend``, PIL's ``Image.blend``), in torchvision's order of operations: ``1 - f`` formed in float64 as from
    a Python float, the product ``images * f`` rounded, then added to ``other * (1 - f)`` with one rounding."""
    factors = torch.as_tensor(factors, device=images.device).double().reshape(-1, 1, 1, 1)
    scaled = images.float() * factors.float()
    out = _fma(scaled, (1.0 - factors).float(), other.float().expand_as(scaled))
    return out.clamp_(0, 255).to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` float32 grey levels, floored (torchvision's ``rgb_to_grayscale`` without dtype)."""
    if images.shape[1] == 1:
        return images.float()
    r, g, b = images.float().unbind(1)
    weights = torch.tensor(_GREY, dtype=torch.float32, device=images.device)
    return _fma(_fma(r * weights[0], weights[1], g), weights[2], b).floor_().unsqueeze(1)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Brightness: blend with black, ``clamp(x * f)`` (PIL ``ImageEnhance.Brightness``).

    Args:
        images: ``(B, C, H, W)`` uint8, C in {1, 3}.
        factors: ``(B,)`` factors >= 0, one per image (or one number).

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    return _blend(images, torch.zeros((), device=images.device), factors)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Color: blend with the image's grey version, ``x f + grey (1 - f)`` (PIL ``ImageEnhance.Color``); grey
    images are returned unchanged.

    Args:
        images: ``(B, C, H, W)`` uint8, C in {1, 3}.
        factors: ``(B,)`` factors >= 0 (or one number).

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    if images.shape[1] == 1:
        return images.clone()
    return _blend(images, _grey(images), factors)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Contrast: blend with the image's mean grey level, ``x f + mean (1 - f)`` (PIL ``ImageEnhance.Contrast``).

    Args:
        images: ``(B, C, H, W)`` uint8, C in {1, 3}.
        factors: ``(B,)`` factors >= 0 (or one number).

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    return _blend(images, _grey(images).mean(dim=(1, 2, 3), keepdim=True), factors)


def adjust_sharpness(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Sharpness: blend with the image smoothed by the 3x3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``,
    rounded, ``x f + smooth (1 - f)``; the one-pixel border is kept (PIL ``ImageEnhance.Sharpness``).

    Args:
        images: ``(B, C, H, W)`` uint8, C in {1, 3}.
        factors: ``(B,)`` factors >= 0 (or one number).

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    b, c, h, w = images.shape
    if h <= 2 or w <= 2:
        return images.clone()
    # The 3x3 sum in integers, so no convolution algorithm (nor TF32) rounds it; k / 13 is never within 1/26 of a
    # half, so rounding the quotient gives torchvision's rounded float32 convolution.
    x = images.to(torch.int32)
    total = 4 * x[..., 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total = total + x[..., dy:dy + h - 2, dx:dx + w - 2]
    smooth = (total.float() / 13.0).round_()
    factors = torch.as_tensor(factors, device=images.device).double().reshape(-1, 1, 1, 1).expand(b, 1, 1, 1)
    out = images.float()
    inner = out[..., 1:-1, 1:-1]  # x + (1 - f)(smooth - x), as torchvision forms it
    inner.copy_(_fma(inner, (1.0 - factors).float(), smooth - inner))
    return out.clamp_(0, 255).to(torch.uint8)


def posterize(images: torch.Tensor, bits: torch.Tensor | int) -> torch.Tensor:
    """Posterize: keep the ``bits`` most significant bits of every value, ``x & (255 << (8 - bits))``.

    Args:
        images: ``(B, C, H, W)`` uint8.
        bits: ``(B,)`` integers in ``[0, 8]`` (or one number).

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    bits = torch.as_tensor(bits, device=images.device).to(torch.int64).reshape(-1, 1, 1, 1)
    mask = (255 << (8 - bits.clamp(0, 8))) & 255
    return images & mask.to(torch.uint8)


def solarize(images: torch.Tensor, thresholds: torch.Tensor | float) -> torch.Tensor:
    """Solarize: invert every value at or above the image's threshold, ``255 - x`` where ``x >= t``.

    Args:
        images: ``(B, C, H, W)`` uint8.
        thresholds: ``(B,)`` thresholds (or one number); 256 leaves the image unchanged.

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    thresholds = _per_image(thresholds, images)
    return torch.where(images >= thresholds, 255 - images, images)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """AutoContrast: per image and channel, ``(x - min) * 255 / (max - min)``, truncated; a constant channel is
    left as it is (PIL ``ImageOps.autocontrast`` with no cutoff).

    Args:
        images: ``(B, C, H, W)`` uint8.

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    x = images.float()
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    inv_scale = (high - low).mul_(1.0 / 255)
    low = low.masked_fill(flat, 0.0)
    inv_scale = inv_scale.masked_fill(flat, 1.0)
    return x.sub_(low).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Equalize: per image and channel, PIL's histogram equalisation (``ImageOps.equalize``).

    With ``n`` pixels, ``h`` the histogram and ``step = (n - h[last non-empty bin]) // 255``, value ``v`` maps to
    ``(cumsum(h)[v - 1] + step // 2) // step`` (0 for ``v = 0``), clamped to 255; ``step = 0`` leaves the channel
    unchanged.

    Args:
        images: ``(B, C, H, W)`` uint8.

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    b, c, h, w = images.shape
    flat = images.reshape(b, c, h * w).long()
    hist = torch.zeros(b, c, 256, dtype=torch.int64, device=images.device)
    hist.scatter_add_(2, flat, torch.ones_like(flat))
    cum = hist.cumsum(2)
    last = cum.argmax(2, keepdim=True)  # the first bin reaching the total: the last non-empty one
    step = (h * w - hist.gather(2, last)).div(255, rounding_mode="floor")
    lut = (cum[..., :-1] + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp(0, 255)
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut], 2).to(torch.uint8)
    out = lut.gather(2, flat).view(b, c, h, w)
    return torch.where((step != 0).view(b, c, 1, 1), out, images)


def affine_matrices(ops: list[str] | tuple[str, ...], values: torch.Tensor, image_size: tuple[int, int]
                    ) -> torch.Tensor:
    """Per-image inverse affine maps of the geometric ops, in pixel units with the origin at the top-left corner.

    A map sends an output point ``(x, y)`` (pixel centres at ``i + 0.5``) to the input point it reads, as PIL's
    ``Image.transform(AFFINE, (a, b, c, d, e, f))``: ``(a x + b y + c, d x + e y + f)``.

    - ShearX ``s``: ``(x + s y, y)``; ShearY ``s``: ``(x, s x + y)`` (``augmentations.py`` 291 and 314);
    - TranslateX ``t``: ``(x + t, y)``; TranslateY ``t``: ``(x, y + t)`` (the content moves by ``-t``; 337, 360);
    - Rotate ``d`` degrees: ``R(-d)`` about the centre ``(W / 2, H / 2)``, i.e. the content turns counter-clockwise
      by ``d`` (PIL ``Image.rotate``, 259).

    Args:
        ops: one name from :data:`AFFINE_OPS` per image.
        values: ``(B,)`` the ops' values (degrees, shear coefficients, pixels), e.g. from :func:`ra_values`.
        image_size: ``(H, W)``.

    Returns:
        ``(B, 2, 3)`` float64 on ``values``' device.
    """
    unknown = sorted(set(ops) - set(AFFINE_OPS))
    if unknown:
        raise ValueError(f"ops must be geometric ops {AFFINE_OPS}, got {unknown}")
    if len(ops) != values.shape[0]:
        raise ValueError(f"need one value per op, got {len(ops)} ops and {values.shape[0]} values")
    h, w = image_size
    v = values.double()
    kinds = torch.tensor([AFFINE_OPS.index(op) for op in ops], device=values.device)
    m = torch.zeros(len(ops), 2, 3, dtype=torch.float64, device=values.device)
    m[:, 0, 0] = 1.0
    m[:, 1, 1] = 1.0
    m[:, 0, 1] = torch.where(kinds == 1, v, 0.0)  # ShearX
    m[:, 1, 0] = torch.where(kinds == 2, v, 0.0)  # ShearY
    m[:, 0, 2] = torch.where(kinds == 3, v, 0.0)  # TranslateX
    m[:, 1, 2] = torch.where(kinds == 4, v, 0.0)  # TranslateY
    rotate = kinds == 0
    if bool(rotate.any()):
        theta = torch.deg2rad(torch.where(rotate, v, 0.0))
        cos, sin = theta.cos(), theta.sin()
        cx, cy = w / 2, h / 2
        rot = torch.stack([torch.stack([cos, -sin, cx - cos * cx + sin * cy], 1),
                           torch.stack([sin, cos, cy - sin * cx - cos * cy], 1)], 1)
        m = torch.where(rotate.view(-1, 1, 1), rot, m)
    return m


def affine_nearest(images: torch.Tensor, matrices: torch.Tensor, fill: int = RA_FILL) -> torch.Tensor:
    """Resample each image through its own inverse affine map, reading the nearest source pixel.

    Output pixel ``(i, j)`` reads source pixel ``(floor(v), floor(u))`` with ``(u, v) = M (j + 0.5, i + 0.5, 1)``
    (PIL's nearest filter); a point outside the image reads ``fill``. One gather for the whole batch. A point on a
    pixel edge (up to 1e-9 pixels) reads the pixel it starts, as exact arithmetic would: PIL's own rounding may
    pick the other one there (shear 0.12 on row 12, say).

    Args:
        images: ``(B, C, H, W)`` uint8.
        matrices: ``(B, 2, 3)`` inverse maps (:func:`affine_matrices`).
        fill: grey level 0..255 of out-of-frame pixels.

    Returns:
        ``(B, C, H, W)`` uint8.
    """
    _check_images(images)
    b, c, h, w = images.shape
    if tuple(matrices.shape) != (b, 2, 3):
        raise ValueError(f"matrices must have shape ({b}, 2, 3), got {tuple(matrices.shape)}")
    check_int("fill", fill, 0)
    if fill > 255:
        raise ValueError(f"fill must be a grey level in 0..255, got {fill}")
    # float64 keeps the sampling point exact enough that floor() agrees with PIL's double arithmetic
    m = matrices.to(images.device, torch.float64)
    ys = torch.arange(h, device=images.device, dtype=torch.float64) + 0.5
    xs = torch.arange(w, device=images.device, dtype=torch.float64) + 0.5
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy") + (torch.ones(h, w, dtype=torch.float64,
                                                                        device=images.device),), -1)  # (H, W, 3)
    # A point within _EDGE_SNAP of a pixel edge is read as lying on it: the result is then what exact arithmetic
    # gives (PIL's and the GPU's rounding of the same product differ there), the same on every device.
    src = torch.einsum("bkj,hwj->bhwk", m, grid).add_(_EDGE_SNAP).floor_().long()  # (B, H, W, 2): column, row
    col, row = src[..., 0], src[..., 1]
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    index = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
    out = images.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)
    return out.masked_fill(~inside.unsqueeze(1), fill)


def cutout(images: torch.Tensor, centers: torch.Tensor, size: int = RA_CUTOUT_SIZE, fill: int = RA_FILL
           ) -> torch.Tensor:
    """Cutout: set rows ``[cy - size // 2, cy + size // 2)`` by the same columns (clipped to the image) to ``fill``
    (fixmatch ``augmentations.py`` 66-121).

    Args:
        images: ``(B, C, H, W)`` of any dtype.
        centers: ``(B, 2)`` integer ``(row, column)`` centres.
        size: side of the square in pixels, >= 0 (0 or 1: nothing is cut).
        fill: the value written.

    Returns:
        ``(B, C, H, W)``, the input's dtype.
    """
    check_int("size", size, 0)
    b, _, h, w = images.shape
    half = size // 2
    centers = centers.to(images.device)
    rows = torch.arange(h, device=images.device).view(1, h)
    cols = torch.arange(w, device=images.device).view(1, w)
    cy, cx = centers[:, 0:1], centers[:, 1:2]
    in_rows = (rows >= cy - half) & (rows < cy + half)
    in_cols = (cols >= cx - half) & (cols < cx + half)
    square = in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w)
    return images.masked_fill(square, fill)


_COLOUR_OPS = {
    "AutoContrast": lambda x, v: autocontrast(x),
    "Equalize": lambda x, v: equalize(x),
    "Solarize": solarize,
    "Color": adjust_saturation,
    "Contrast": adjust_contrast,
    "Brightness": adjust_brightness,
    "Sharpness": adjust_sharpness,
    "Posterize": posterize,
}


def apply_randaugment(images: torch.Tensor, params: RandAugmentParams, *, cutout_size: int = RA_CUTOUT_SIZE,
                      fill: int = RA_FILL) -> torch.Tensor:
    """Apply drawn RandAugment choices to a batch: each op slot in turn, then Cutout.

    Per op slot, the images that drew a geometric op go through one gather with their own matrices, and each
    colour op runs once on the images that drew it, with their own values. Deterministic given its arguments.

    Args:
        images: ``(B, C, H, W)`` uint8 (0..255) or floating point (0..1), C in {1, 3}, on any device. Floating
            point images are rounded to 256 levels first (the official code converts to 8-bit PIL images too)
            and returned in their dtype, divided by 255.
        params: the draws for this batch (:func:`sample_randaugment`) with ``B`` rows. When they live on another
            device than the images, the grouping by op reads them on the CPU (a CPU generator costs nothing; an
            accelerator's draws cost one synchronisation per call).
        cutout_size: side of the Cutout square (FixMatch: 16; 0 for none).
        fill: grey level 0..255 of out-of-frame pixels and of the Cutout square.

    Returns:
        ``(B, C, H, W)`` of the input's dtype and device.
    """
    if not isinstance(params, RandAugmentParams):
        raise TypeError(f"params must be RandAugmentParams (from sample_randaugment), got {type(params).__name__}")
    floating = isinstance(images, torch.Tensor) and images.is_floating_point()
    x = images.mul(255).round_().clamp_(0, 255).to(torch.uint8) if floating else images
    _check_images(x)
    check_int("fill", fill, 0)
    if fill > 255:
        raise ValueError(f"fill must be a grey level in 0..255, got {fill}")
    b, _, h, w = x.shape
    if params.ops.shape[0] != b:
        raise ValueError(f"params were drawn for {params.ops.shape[0]} images, the batch has {b}")
    device = x.device
    host = params.to("cpu")  # grouping by op needs the choices on the host
    chosen = torch.where(host.applied, host.ops, -1)
    out = x.clone()
    for slot in range(chosen.shape[1]):
        op_of = chosen[:, slot]
        levels, signs = host.levels[:, slot], host.signs[:, slot]
        geometric = torch.isin(op_of, torch.tensor([_OP_INDEX[op] for op in AFFINE_OPS]))
        idx = geometric.nonzero().squeeze(1)
        if idx.numel():
            values = torch.zeros(b, dtype=torch.float64)
            for name in AFFINE_OPS:
                mine = op_of == _OP_INDEX[name]
                values[mine] = ra_values(name, levels[mine], signs[mine])
            names = [RA_OPS[i] for i in op_of[idx].tolist()]
            matrices = affine_matrices(names, values[idx].to(device, non_blocking=True), (h, w))
            idx_d = idx.to(device, non_blocking=True)
            out.index_copy_(0, idx_d, affine_nearest(out.index_select(0, idx_d), matrices, fill))
        for name, fn in _COLOUR_OPS.items():
            idx = (op_of == _OP_INDEX[name]).nonzero().squeeze(1)
            if not idx.numel():
                continue
            values = ra_values(name, levels[idx]) if name in RA_OP_MAX else None
            idx_d = idx.to(device, non_blocking=True)
            out.index_copy_(0, idx_d, fn(out.index_select(0, idx_d), values))
    if cutout_size:
        out = cutout(out, params.cutout_centers, cutout_size, fill)
    return out.to(images.dtype).div_(255) if floating else out


def rand_augment(images: torch.Tensor, *, generator: torch.Generator | None, num_ops: int = RA_NUM_OPS,
                 probability: float = RA_OP_PROBABILITY, cutout_size: int = RA_CUTOUT_SIZE,
                 fill: int = RA_FILL) -> torch.Tensor:
    """FixMatch's RandAugment for a whole batch: :func:`sample_randaugment` then :func:`apply_randaugment`.

    Args:
        images: ``(B, C, H, W)`` uint8 or float in [0, 1], C in {1, 3}, on any device.
        generator: the source of randomness (a CPU generator: same draws on every device, no synchronisation);
            None uses the CPU's global generator.
        num_ops, probability: see :func:`sample_randaugment` (FixMatch: 2 ops, each with probability 1/2).
        cutout_size, fill: see :func:`apply_randaugment` (FixMatch: 16 pixels, mid-grey).

    Returns:
        ``(B, C, H, W)`` of the input's dtype and device.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a batch (B, C, H, W), got {shape}")
    params = sample_randaugment(images.shape[0], tuple(images.shape[-2:]), generator=generator, num_ops=num_ops,
                                probability=probability)
    return apply_randaugment(images, params, cutout_size=cutout_size, fill=fill)
