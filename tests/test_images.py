"""Tests for ssl_mix/data/images.py: one image decoded from a file or from memory, modes, EXIF, resizing, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_mix.data import BadImageError, decode_image, image_size_pair, prepare_image


def _rgb(h=6, w=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1) if array.ndim == 3 else torch.from_numpy(array)[None]


def test_image_size_pair_forms_and_errors():
    assert image_size_pair(None) is None
    assert image_size_pair(32) == image_size_pair("32") == image_size_pair([32]) == (32, 32)
    assert image_size_pair("48,64") == image_size_pair("48x64") == image_size_pair((48, 64)) == (48, 64)
    for bad in (0, "a", "1,2,3", (3, -1), True, 2.5):
        with pytest.raises(ValueError, match="image size must be a positive int N or a pair H,W"):
            image_size_pair(bad)


def test_modes_become_gray_or_rgb(tmp_path):
    rgb = _rgb()
    gray = rgb[..., 0]
    cases = {
        "rgb.png": (Image.fromarray(rgb), _chw(rgb)),
        "l.png": (Image.fromarray(gray), _chw(gray)),
        "rgba.png": (Image.fromarray(np.dstack([rgb, np.full(gray.shape, 7, np.uint8)])), _chw(rgb)),  # alpha dropped
        "la.png": (Image.fromarray(np.dstack([gray, gray])).convert("LA"), None),
        "one.png": (Image.fromarray(gray > 127), _chw(np.where(gray > 127, 255, 0).astype(np.uint8))),
        "p.png": (Image.fromarray(rgb).quantize(16), None),
        "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), None),
        "sixteen.png": (Image.fromarray(gray.astype(np.uint16) * 257), _chw(gray)),  # 16-bit: the high byte
    }
    for name, (image, expected) in cases.items():
        image.save(tmp_path / name)
        out = decode_image(tmp_path / name, image_size=None)
        assert out.dtype == torch.uint8 and out.shape[1:] == (6, 8), name
        assert out.shape[0] == (1 if name in ("l.png", "la.png", "one.png", "sixteen.png") else 3), name
        if expected is not None:
            assert torch.equal(out, expected), name
    assert torch.equal(decode_image(tmp_path / "la.png", image_size=None), _chw(gray))
    palette = Image.open(tmp_path / "p.png").convert("RGB")
    assert torch.equal(decode_image(tmp_path / "p.png", image_size=None), _chw(np.array(palette)))
    # The same pixels from memory: arrays of each dtype PIL reads, and PIL images.
    assert torch.equal(prepare_image(gray.astype(np.uint16) * 257, image_size=None), _chw(gray))
    assert torch.equal(prepare_image(gray.astype(np.float32) / 255, image_size=None), _chw(gray))
    assert torch.equal(prepare_image(rgb, image_size=None), _chw(rgb))
    assert torch.equal(prepare_image(_chw(rgb), image_size=None), _chw(rgb))
    assert torch.equal(prepare_image(Image.open(tmp_path / "rgba.png"), image_size=None), _chw(rgb))
    transparent = Image.fromarray(rgb).quantize(4)
    transparent.info["transparency"] = 0
    assert prepare_image(transparent, image_size=None).shape == (3, 6, 8)  # no Pillow warning (warnings are errors)


def test_channels_forced_and_exif_orientation(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    gray = decode_image(tmp_path / "rgb.png", image_size=None, channels=1)
    assert torch.equal(gray, _chw(np.array(Image.fromarray(rgb).convert("L"))))
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    as_rgb = decode_image(tmp_path / "l.png", image_size=None, channels=3)
    assert torch.equal(as_rgb, _chw(rgb[..., 0]).expand(3, -1, -1))
    # A photo stored sideways (EXIF orientation 6: rotate 90 degrees clockwise to view) comes out upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "sideways.png", exif=exif.tobytes())
    upright = decode_image(tmp_path / "sideways.png", image_size=None)
    assert upright.shape == (3, 8, 6) and torch.equal(upright, _chw(np.ascontiguousarray(np.rot90(rgb, k=-1))))


def test_resize_crop_and_stretch():
    wide = np.zeros((4, 8, 3), dtype=np.uint8)
    wide[:, :2] = 255  # a white band at the left edge
    wide[:, 2:6] = 100
    cropped = prepare_image(wide, image_size=4, resize="crop")
    stretched = prepare_image(wide, image_size=4, resize="stretch")
    assert cropped.shape == stretched.shape == (3, 4, 4)
    assert torch.all(cropped == 100)  # the centre 4x4 of the 4x8 image: the band is cut
    assert int(stretched[0, 0, 0]) > 200  # squeezed (antialiased), the band stays
    assert prepare_image(wide, image_size=(2, 3)).shape == (3, 2, 3)
    assert torch.equal(prepare_image(wide, image_size=(4, 8)), _chw(wide))  # already the size: untouched
    with pytest.raises(ValueError, match="resize must be 'crop' .* or 'stretch'"):
        prepare_image(wide, image_size=4, resize="pad")
    with pytest.raises(ValueError, match="channels must be 1, 3 or None"):
        prepare_image(wide, image_size=4, channels=2)
    with pytest.raises(TypeError, match="takes a PIL image, a NumPy array or a uint8 tensor, got list"):
        prepare_image([1, 2], image_size=None)
    with pytest.raises(ValueError, match="a tensor image must be uint8 \\(0..255\\) or float"):
        prepare_image(torch.zeros(3, 2, 2, dtype=torch.int32), image_size=None)
    with pytest.raises(ValueError, match="a float tensor image must lie in \\[0, 1\\]"):
        prepare_image(torch.full((3, 2, 2), 2.0), image_size=None)
    half = torch.full((3, 2, 2), 0.5)
    assert torch.equal(prepare_image(half, image_size=None), torch.full((3, 2, 2), 128, dtype=torch.uint8))
    with pytest.raises(ValueError, match="an array image must be \\(H, W\\) or \\(H, W, C\\)"):
        prepare_image(np.zeros((2, 2, 2), dtype=np.uint8), image_size=None)


def test_jpeg_reduced_decoding_matches_size(tmp_path):
    big = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.jpg")
    out = decode_image(tmp_path / "big.jpg", image_size=(32, 48))
    assert out.shape == (3, 32, 48)
    full = prepare_image(Image.open(tmp_path / "big.jpg"), image_size=(32, 48))
    assert (out.float() - full.float()).abs().mean() < 10  # DCT-scaled decoding: close to the full decode


def test_broken_files_raise_bad_image_error(tmp_path, write_broken_images):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "good.jpg")
    write_broken_images(tmp_path, (tmp_path / "good.jpg").read_bytes())
    for name, reason in [("zz_truncated.jpg", "truncated"), ("zz_empty.jpg", "empty \\(0 bytes\\)"),
                         ("zz_text.png", "not an image file"), ("zz_folder.jpg", "is a directory"),
                         ("zz_loop_a.jpg", "[Ss]ymbolic links"), ("missing.jpg", "No such file")]:
        with pytest.raises(BadImageError, match=f"cannot read image .*{name}: .*{reason}") as info:
            decode_image(tmp_path / name, image_size=None)
        assert isinstance(info.value, ValueError) and info.value.path.endswith(name)
