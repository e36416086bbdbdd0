"""Tests for ssl_mix/data/augment.py: batched crop/flip and normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_mix.data import crop_flip, normalize, random_crop_flip


def _reference(images, oy, ox, flips, padding, mode):
    padded = F.pad(images.double(), [padding] * 4, mode=mode)
    h, w = images.shape[-2:]
    out = torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(len(images))])
    if flips is not None:
        out = torch.where(flips.view(-1, 1, 1, 1), out.flip(-1), out)
    return out.to(images.dtype)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_crop_flip_matches_pad_then_slice_for_every_offset(mode):
    g = torch.Generator().manual_seed(0)
    padding, size = 3, 5
    grid = torch.cartesian_prod(torch.arange(2 * padding + 1), torch.arange(2 * padding + 1))  # all 49 offsets
    n = len(grid)
    images = torch.randint(0, 256, (n, 2, size, size + 1), generator=g, dtype=torch.uint8)
    flips = torch.arange(n) % 2 == 1
    out = crop_flip(images, grid[:, 0], grid[:, 1], flips, padding, mode)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, _reference(images, grid[:, 0], grid[:, 1], flips, padding, mode))
    floats = images.float() / 255
    assert torch.equal(crop_flip(floats, grid[:, 0], grid[:, 1], None, padding, mode),
                       _reference(floats, grid[:, 0], grid[:, 1], None, padding, mode))


def test_centred_crop_without_flip_is_identity():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    centre = torch.full((4,), 4)
    assert torch.equal(crop_flip(images, centre, centre, torch.zeros(4, dtype=torch.bool), 4), images)
    assert torch.equal(crop_flip(images, centre, centre, torch.ones(4, dtype=torch.bool), 4), images.flip(-1))


def _coordinate_images(n: int, size: int) -> torch.Tensor:
    rows = torch.arange(size).view(size, 1).expand(size, size)
    cols = torch.arange(size).view(1, size).expand(size, size)
    return torch.stack([rows, cols]).unsqueeze(0).expand(n, 2, size, size).to(torch.uint8).contiguous()


def read_back(out: torch.Tensor, padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offsets and flips of crops of `_coordinate_images` (valid while padding <= size / 2)."""
    size = out.shape[-1]
    mid = size // 2
    oy = out[:, 0, mid, mid].long() - mid + padding
    a, b = out[:, 1, mid, mid].long(), out[:, 1, mid, mid + 1].long()
    flipped = b < a
    ox = torch.where(flipped, a - (size - 1 - mid), a - mid) + padding
    return oy, ox, flipped


def test_random_crop_flip_distribution_and_determinism():
    n, padding = 4000, 4
    images = _coordinate_images(n, 16)
    out = random_crop_flip(images, padding, True, generator=torch.Generator().manual_seed(1))
    oy, ox, flipped = read_back(out, padding)
    assert torch.equal(out, crop_flip(images, oy, ox, flipped, padding))  # every output is a crop (+flip)
    for offsets in (oy, ox):
        freq = torch.bincount(offsets, minlength=9).double() / n
        assert len(freq) == 9 and torch.all((freq - 1 / 9).abs() < 0.03), freq  # uniform on 0..8
    assert abs(flipped.double().mean().item() - 0.5) < 0.04
    again = random_crop_flip(images, padding, True, generator=torch.Generator().manual_seed(1))
    other = random_crop_flip(images, padding, True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.equal(out, other)
    no_flip = random_crop_flip(images[:500], padding, False, generator=torch.Generator().manual_seed(1))
    assert not read_back(no_flip, padding)[2].any()


def test_random_crop_flip_noop_returns_input():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    assert random_crop_flip(images, 0, False, generator=None) is images


def test_crop_flip_errors():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    z = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="reflect padding must be smaller than the image"):
        crop_flip(images, z, z, None, 4)
    with pytest.raises(ValueError, match="padding_mode must be"):
        crop_flip(images, z, z, None, 1, "circular")
    with pytest.raises(ValueError, match="batch \\(B, C, H, W\\)"):
        crop_flip(images[0], z, z, None, 1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        crop_flip(images, z, z, None, -1)


def test_normalize_reference_values():
    images = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    out = normalize(images, (0.5, 0.2), (0.25, 0.4))
    expected = torch.tensor([[[[-2.0, 2.0]], [[0.0, 0.5]]]])
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32
    assert normalize(images, torch.tensor([0.5, 0.2]), torch.tensor([0.25, 0.4]), torch.float64).dtype == torch.float64
    assert normalize(images[0], (0.5, 0.2), (0.25, 0.4)).shape == (2, 1, 2)  # single image
    with pytest.raises(ValueError, match="one value per channel \\(2\\)"):
        normalize(images, (0.5,), (0.25,))
    with pytest.raises(ValueError, match="\\(\\.\\.\\., C, H, W\\)"):
        normalize(images[0, 0, 0], (0.5,), (0.25,))
