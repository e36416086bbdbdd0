"""Tests for ssl_mix/data/randaugment.py: FixMatch's RandAugment on batches.

References: every colour op against torchvision's single-image tensor kernel (``transforms.v2.functional``) with the
same value, and every geometric op against the PIL call the official code makes (third_party/auto_augment/
augmentations.py in google-research/fixmatch), through torchvision's PIL path where torchvision has the op.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageEnhance, ImageOps
from torchvision.transforms import InterpolationMode

from ssl_mix.data.randaugment import (
    AFFINE_OPS,
    RA_CUTOUT_SIZE,
    RA_FILL,
    RA_LEVELS,
    RA_NUM_OPS,
    RA_OP_MAX,
    RA_OP_PROBABILITY,
    RA_OPS,
    RA_PARAMETER_MAX,
    RandAugmentParams,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_sharpness,
    affine_matrices,
    affine_nearest,
    apply_randaugment,
    autocontrast,
    cutout,
    equalize,
    posterize,
    ra_values,
    rand_augment,
    sample_randaugment,
    solarize,
)

NEAREST = InterpolationMode.NEAREST
GREY = (RA_FILL,) * 3


def _images(n=6, size=32, seed=0):
    """Half smooth images (narrow histograms, as photos), half uniform noise, so every op has work to do."""
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.randint(0, 256, (n, 3, size + 4, size + 4), generator=g).float(),
                                            5, 1).to(torch.uint8)
    noise = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return torch.where(torch.arange(n).view(n, 1, 1, 1) % 2 == 0, smooth, noise)


def _pil(image):
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _tensor(pil):
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


# --- the recipe equals the official code ---

def test_op_list_levels_and_recipe_equal_the_official_code():
    # libml/augment.py:37-41 RANDOM_POLICY_OPS, in this order
    assert RA_OPS == ('Identity', 'AutoContrast', 'Equalize', 'Rotate', 'Solarize', 'Color', 'Contrast',
                      'Brightness', 'Sharpness', 'ShearX', 'TranslateX', 'TranslateY', 'Posterize', 'ShearY')
    assert len(RA_OPS) == 14 and "Invert" not in RA_OPS
    # libml/augment.py:198 (op, 0.5, np.random.randint(1, self.magnitude)) with magnitude=10 (line 369), nops=2
    assert RA_LEVELS == (1, 9) and RA_OP_PROBABILITY == 0.5 and RA_NUM_OPS == 2
    # third_party/auto_augment/augmentations.py:35 PARAMETER_MAX = 10; :102 cutout_numpy(img, size=16)
    assert RA_PARAMETER_MAX == 10 and RA_CUTOUT_SIZE == 16
    assert set(AFFINE_OPS) == {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"}


def _official_value(op, level):
    """augmentations.py: int_parameter(level, maxval) = int(level * maxval / 10) (line 149), float_parameter =
    level * maxval / 10 (line 135), and each op's use of it (lines 256, 267-268, 288, 334, 390-391, 420)."""
    int_p = lambda maxval: int(level * maxval / 10)  # noqa: E731
    float_p = lambda maxval: float(level) * maxval / 10  # noqa: E731
    return {"Rotate": int_p(30), "Posterize": 4 - int_p(4), "Solarize": 256 - int_p(256),
            "ShearX": float_p(0.3), "ShearY": float_p(0.3), "TranslateX": int_p(10), "TranslateY": int_p(10),
            "Color": float_p(1.8) + .1, "Contrast": float_p(1.8) + .1, "Brightness": float_p(1.8) + .1,
            "Sharpness": float_p(1.8) + .1}[op]


@pytest.mark.parametrize("op", sorted(RA_OP_MAX))
def test_values_equal_the_official_level_mapping(op):
    levels = torch.arange(0, 11)
    expected = torch.tensor([_official_value(op, int(v)) for v in levels], dtype=torch.float64)
    assert torch.allclose(ra_values(op, levels), expected, rtol=0, atol=1e-12)
    signs = torch.tensor([1, -1] * 5 + [1])
    signed = ra_values(op, levels, signs)
    assert torch.allclose(signed, expected * signs if op in AFFINE_OPS else expected, rtol=0, atol=1e-12)


def test_value_table_at_the_drawn_levels():
    levels = torch.arange(RA_LEVELS[0], RA_LEVELS[1] + 1)
    assert ra_values("Rotate", levels).tolist() == [3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert ra_values("Solarize", levels).tolist() == [231, 205, 180, 154, 128, 103, 77, 52, 26]
    assert ra_values("Posterize", levels).tolist() == [4, 4, 3, 3, 2, 2, 2, 1, 1]
    assert ra_values("TranslateX", levels).tolist() == list(range(1, 10))
    assert torch.allclose(ra_values("Brightness", levels), 0.1 + 0.18 * levels.double())


# --- each op against torchvision / PIL on the same values ---

COLOUR_CASES = [
    (adjust_brightness, TF.adjust_brightness, [0.28, 0.46, 1.0, 1.36, 1.72, 0.1]),
    (adjust_saturation, TF.adjust_saturation, [0.28, 0.46, 1.0, 1.36, 1.72, 0.1]),
    (adjust_contrast, TF.adjust_contrast, [0.28, 0.46, 1.0, 1.36, 1.72, 0.1]),
    (adjust_sharpness, TF.adjust_sharpness, [0.28, 0.46, 1.0, 1.36, 1.72, 0.1]),
    (solarize, TF.solarize, [231, 205, 128, 77, 26, 0]),
    (posterize, TF.posterize, [4, 3, 2, 1, 8, 0]),
]


@pytest.mark.parametrize("ours, theirs, values", COLOUR_CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_colour_ops_equal_torchvision_image_by_image(ours, theirs, values):
    # Same float32 arithmetic and the same truncation as torchvision's tensor kernels: equal, not just close.
    images = _images()
    out = ours(images, torch.tensor(values, dtype=torch.float64))
    for i, v in enumerate(values):
        assert torch.equal(out[i], theirs(images[i], int(v) if ours is posterize else v)), (ours.__name__, v)


@pytest.mark.parametrize("ours, theirs", [(autocontrast, TF.autocontrast), (equalize, TF.equalize)])
def test_parameterless_ops_equal_torchvision(ours, theirs):
    images = _images()
    images[1, 2] = 77  # a constant channel: both leave it as it is
    out = ours(images)
    for i in range(len(images)):
        assert torch.equal(out[i], theirs(images[i]))


@pytest.mark.parametrize("ours, pil_op", [
    (adjust_brightness, ImageEnhance.Brightness), (adjust_saturation, ImageEnhance.Color),
    (adjust_contrast, ImageEnhance.Contrast), (adjust_sharpness, ImageEnhance.Sharpness)])
def test_enhance_ops_are_within_one_grey_level_of_pil(ours, pil_op):
    # PIL forms grey levels in fixed point (L = (19595 R + 38470 G + 7471 B + 2^15) >> 16) and rounds the mean
    # for Contrast, where torchvision uses float weights: the blends then differ by at most one level.
    images = _images()
    factors = [0.28, 0.64, 1.0, 1.18, 1.72, 0.46]
    out = ours(images, torch.tensor(factors, dtype=torch.float64))
    for i, f in enumerate(factors):
        reference = _tensor(pil_op(_pil(images[i])).enhance(f))
        assert (out[i].int() - reference.int()).abs().max() <= 1


def test_histogram_ops_against_pil():
    # Equalize is PIL's lookup table exactly; AutoContrast's PIL table rounds i * scale + offset where
    # torchvision (and this module) truncate (i - min) / ((max - min) / 255): at most one level apart.
    images = _images()
    for i in range(len(images)):
        assert torch.equal(equalize(images)[i], _tensor(ImageOps.equalize(_pil(images[i]))))
        reference = _tensor(ImageOps.autocontrast(_pil(images[i])))
        assert (autocontrast(images)[i].int() - reference.int()).abs().max() <= 1


def _official_geometric(pil, op, value):
    """The PIL calls of augmentations.py (259, 291, 314, 337, 360), with the fill colour made explicit."""
    if op == "Rotate":
        return pil.rotate(value, fillcolor=GREY)
    data = {"ShearX": (1, value, 0, 0, 1, 0), "ShearY": (1, 0, 0, value, 1, 0),
            "TranslateX": (1, 0, value, 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, value)}[op]
    return pil.transform(pil.size, Image.AFFINE, data, fillcolor=GREY)


def _off_edge(matrix, size, tolerance):
    """Output pixels whose sampling point (u, v) = M (j + 0.5, i + 0.5, 1) lies farther than ``tolerance`` from
    every pixel edge. On an edge, nearest-pixel sampling is decided by rounding: PIL floors its own double
    arithmetic, torchvision's tensor path (grid_sample) rounds half to even in float32, and this module reads the
    pixel exact arithmetic gives; away from edges all three read the same pixel. Pillow's nearest-neighbour affine
    path steps through coordinates in 16.16 fixed point (``affine_fixed`` in its Geometry.c), so its points are off
    by up to ~W * 2^-16 (5e-4 pixels here): PIL comparisons use 1e-3."""
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([x, y, torch.ones_like(x)], -1) @ matrix.T  # (H, W, 2)
    distance = (points - points.round()).abs().amin(-1)
    return distance > tolerance


def _geometric_cases(op):
    levels = torch.arange(RA_LEVELS[0], RA_LEVELS[1] + 1).repeat(2)
    signs = torch.tensor([1] * 9 + [-1] * 9)
    values = ra_values(op, levels, signs)
    images = _images(len(values))
    matrices = affine_matrices([op] * len(values), values, (32, 32))
    return images, values.tolist(), matrices, affine_nearest(images, matrices, RA_FILL)


@pytest.mark.parametrize("op", AFFINE_OPS)
def test_geometric_ops_equal_the_official_pil_calls_at_every_level_and_sign(op):
    images, values, matrices, out = _geometric_cases(op)
    for i, v in enumerate(values):
        keep = _off_edge(matrices[i], 32, 1e-3)
        assert keep.double().mean() > 0.96  # edge points: a row or so of a shear, a pixel or two of a rotation
        assert torch.equal(out[i][:, keep], _tensor(_official_geometric(_pil(images[i]), op, v))[:, keep]), (op, v)


def _torchvision_geometric(image, op, value, pil=False):
    """torchvision's single-image ops with the official op's parameters (as torchvision's RandAugment calls them:
    shear about the corner ``center=[0, 0]``; PIL's translate offset moves the content by minus itself)."""
    x = _pil(image) if pil else image
    if op == "Rotate":
        out = TF.rotate(x, value, interpolation=NEAREST, fill=list(GREY))
    else:
        shear = math.degrees(math.atan(value))
        kwargs = {"ShearX": dict(shear=[shear, 0.0], center=[0, 0]), "ShearY": dict(shear=[0.0, shear], center=[0, 0]),
                  "TranslateX": dict(translate=[-value, 0]), "TranslateY": dict(translate=[0, -value])}[op]
        kwargs = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0]} | kwargs
        out = TF.affine(x, **kwargs, interpolation=NEAREST, fill=list(GREY))
    return _tensor(out) if pil else out


@pytest.mark.parametrize("op", AFFINE_OPS)
def test_geometric_ops_equal_torchvision(op):
    images, values, matrices, out = _geometric_cases(op)
    for i, v in enumerate(values):
        v = int(v) if op.startswith("Translate") or op == "Rotate" else v
        keep = _off_edge(matrices[i], 32, 1e-3)
        assert torch.equal(out[i][:, keep], _torchvision_geometric(images[i], op, v, pil=True)[:, keep]), (op, v)
        keep = _off_edge(matrices[i], 32, 1e-4)  # the tensor path forms its grid in float32
        assert keep.double().mean() > 0.96
        assert torch.equal(out[i][:, keep], _torchvision_geometric(images[i], op, v)[:, keep]), (op, v)


def test_a_point_on_a_pixel_edge_reads_the_pixel_exact_arithmetic_gives():
    # ShearX 0.12 (level 4): row 12 samples x + 0.5 + 0.12 * 12.5 = x + 2 exactly, i.e. source column x + 2
    image = torch.arange(32, dtype=torch.uint8).view(1, 1, 1, 32).expand(1, 1, 32, 32).contiguous()
    out = affine_nearest(image, affine_matrices(["ShearX"], ra_values("ShearX", torch.tensor([4])), (32, 32)))
    assert out[0, 0, 12, :30].tolist() == list(range(2, 32))
    matrix = affine_matrices(["ShearX"], torch.tensor([0.12], dtype=torch.float64), (32, 32))[0]
    assert not _off_edge(matrix, 32, 1e-9)[12].any()


def test_cutout_equals_the_official_mask_for_every_centre():
    # augmentations.py:84-98: rows [max(0, cy - size // 2), min(H, cy + size // 2)), the same for columns
    size, h = 4, 8
    centres = torch.cartesian_prod(torch.arange(h), torch.arange(h))
    images = torch.full((len(centres), 1, h, h), 200, dtype=torch.uint8)
    out = cutout(images, centres, size, fill=0)
    for i, (cy, cx) in enumerate(centres.tolist()):
        mask = np.ones((h, h))
        mask[max(0, cy - size // 2):min(h, cy + size // 2), max(0, cx - size // 2):min(h, cx + size // 2)] = 0
        assert np.array_equal(out[i, 0].numpy(), (200 * mask).astype(np.uint8))


# --- the batch: per-image draws, one pass, determinism ---

def test_draws_differ_across_the_batch_with_the_official_frequencies():
    p = sample_randaugment(4480, (32, 32), generator=torch.Generator().manual_seed(0))
    assert p.ops.shape == (4480, 2) and p.ops.dtype == torch.int64
    counts = torch.bincount(p.ops.flatten(), minlength=14).double() / p.ops.numel()
    assert counts.min() > 0.06 and counts.max() < 0.085  # uniform over 14 ops with replacement: 1/14 = 0.071
    assert 0.48 < p.applied.double().mean() < 0.52
    assert set(p.levels.unique().tolist()) == set(range(1, 10))
    assert set(p.signs.unique().tolist()) == {-1, 1}
    assert p.cutout_centers.min() == 0 and p.cutout_centers.max() == 31
    assert (p.ops[:, 0] == p.ops[:, 1]).double().mean() > 0.05  # with replacement: the same op twice happens


def test_the_same_image_gets_different_views_within_a_batch():
    images = _images(1).expand(64, 3, 32, 32).contiguous()
    out = rand_augment(images, generator=torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 64


def test_the_same_generator_state_gives_the_same_batch():
    images = _images(32)
    a = rand_augment(images, generator=torch.Generator().manual_seed(5))
    b = rand_augment(images, generator=torch.Generator().manual_seed(5))
    c = rand_augment(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(5)
    sample_randaugment(32, (32, 32), generator=g)
    state = g.get_state()  # a resumed generator continues the same sequence
    second = rand_augment(images, generator=g)
    assert torch.equal(second, rand_augment(images, generator=torch.Generator().set_state(state)))


def _one_by_one(image, ops, applied, levels, signs, centre):
    """One image, op by op through this module's ops on a batch of one (each op is checked against its
    reference above), then the official Cutout mask: the batch must not depend on how images are grouped."""
    x = image.unsqueeze(0)
    for op_i, on, level, sign in zip(ops, applied, levels, signs, strict=True):
        op = RA_OPS[op_i]
        if not on or op == "Identity":
            continue
        if op in AFFINE_OPS:
            value = ra_values(op, torch.tensor([level]), torch.tensor([sign]))
            x = affine_nearest(x, affine_matrices([op], value, (32, 32)))
        elif op in ("AutoContrast", "Equalize"):
            x = {"AutoContrast": autocontrast, "Equalize": equalize}[op](x)
        else:
            fn = {"Solarize": solarize, "Posterize": posterize, "Color": adjust_saturation,
                  "Contrast": adjust_contrast, "Brightness": adjust_brightness, "Sharpness": adjust_sharpness}[op]
            x = fn(x, ra_values(op, torch.tensor([level])))
    x = x[0].clone()
    cy, cx = centre
    half = RA_CUTOUT_SIZE // 2
    x[:, max(0, cy - half):min(32, cy + half), max(0, cx - half):min(32, cx + half)] = RA_FILL
    return x


def test_the_batch_equals_its_images_augmented_one_by_one():
    images = _images(96, seed=3)
    params = sample_randaugment(96, (32, 32), generator=torch.Generator().manual_seed(1))
    out = apply_randaugment(images, params)
    for i in range(96):
        reference = _one_by_one(images[i], params.ops[i].tolist(), params.applied[i].tolist(),
                                params.levels[i].tolist(), params.signs[i].tolist(),
                                params.cutout_centers[i].tolist())
        assert torch.equal(out[i], reference), (i, [RA_OPS[o] for o in params.ops[i]], params.applied[i])


def test_float_images_are_augmented_on_256_levels():
    images = _images(16)
    params = sample_randaugment(16, (32, 32), generator=torch.Generator().manual_seed(2))
    as_uint8 = apply_randaugment(images, params)
    as_float = apply_randaugment(images.double() / 255, params)
    assert as_float.dtype == torch.float64
    assert torch.equal((as_float * 255).round().to(torch.uint8), as_uint8)


def test_no_ops_and_no_cutout_is_the_identity_and_grey_images_work():
    images = _images(8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(rand_augment(images, generator=g, probability=0.0, cutout_size=0), images)
    grey = images[:, :1].contiguous()
    out = rand_augment(grey, generator=g, num_ops=3)
    assert out.shape == grey.shape and out.dtype == torch.uint8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result():
    images = _images(64)
    cpu = rand_augment(images, generator=torch.Generator().manual_seed(0))
    cuda = rand_augment(images.cuda(), generator=torch.Generator().manual_seed(0))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)
    params = sample_randaugment(64, (32, 32), generator=torch.Generator("cuda").manual_seed(0))
    assert apply_randaugment(images.cuda(), params).device.type == "cuda"


# --- errors ---

def test_bad_arguments_are_clear_errors():
    images = _images(2)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"batch \(B, C, H, W\)"):
        rand_augment(images[0], generator=g)
    with pytest.raises(TypeError, match="must be uint8"):
        equalize(images.int())
    with pytest.raises(ValueError, match="1 or 3 channels"):
        rand_augment(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), generator=g)
    params = sample_randaugment(3, (32, 32), generator=g)
    with pytest.raises(ValueError, match="drawn for 3 images, the batch has 2"):
        apply_randaugment(images, params)
    with pytest.raises(TypeError, match="params must be RandAugmentParams"):
        apply_randaugment(images, {"ops": None})
    with pytest.raises(ValueError, match="fill must be a grey level"):
        apply_randaugment(images, sample_randaugment(2, (32, 32), generator=g), fill=300)
    with pytest.raises(ValueError, match="num_ops must be >= 1"):
        sample_randaugment(2, (32, 32), generator=g, num_ops=0)
    with pytest.raises(ValueError, match="probability"):
        sample_randaugment(2, (32, 32), generator=g, probability=1.5)
    with pytest.raises(ValueError, match=r"image_size must be \(height, width\)"):
        sample_randaugment(2, 32, generator=g)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample_randaugment(2, (32, 32), generator=0)
    with pytest.raises(ValueError, match="ops with a magnitude"):
        ra_values("Equalize", torch.tensor([1]))
    with pytest.raises(ValueError, match="must be geometric ops"):
        affine_matrices(["Color"], torch.tensor([1.0]), (8, 8))
    with pytest.raises(ValueError, match=r"matrices must have shape \(2, 2, 3\)"):
        affine_nearest(images, torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="cutout_centers must have shape"):
        RandAugmentParams(params.ops, params.applied, params.levels, params.signs, params.cutout_centers[:, :1])
    with pytest.raises(ValueError, match="size must be >= 0"):
        cutout(images, torch.zeros(2, 2, dtype=torch.long), -1)
