"""Lanczos resampling and unsharp masking (studio.core.resample)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core import resample
from studio.core.errors import BadInput


def test_sizes_and_dtypes():
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    up = resample.resize(img, (100, 75))
    assert up.shape == (75, 100, 3) and up.dtype == np.uint8
    f = resample.resize(resample.to_float(img), (13, 7))
    assert f.shape == (7, 13, 3) and f.dtype == np.float32
    assert 0.0 <= f.min() and f.max() <= 1.0
    assert resample.upscale_lanczos(img, 2.5).shape == (75, 100, 3)
    gray = img[..., 0]
    assert resample.resize(gray, (20, 15)).shape == (15, 20)


def test_constant_images_stay_constant():
    for value in (0, 37, 255):
        img = np.full((17, 23, 4), value, np.uint8)
        for size in ((50, 40), (5, 3)):
            assert (resample.resize(img, size) == value).all()


def test_lanczos_upscale_is_smooth_and_interpolates():
    """A linear ramp stays a ramp (Lanczos reproduces linear functions away from borders)."""
    ramp = np.tile(np.linspace(0.2, 0.8, 32, dtype=np.float32), (8, 1))
    up = resample.resize_float(ramp, (128, 32))
    inner = up[:, 20:-20]
    d = np.diff(inner, axis=1)
    assert d.min() > 0  # monotonic
    assert np.abs(d - d.mean()).max() < 1e-3


def test_downscale_is_antialiased():
    """A 1-px checkerboard shrunk 4x must come out flat gray; naive decimation keeps the
    pattern (all black or all white)."""
    y, x = np.mgrid[0:64, 0:64]
    checker = (((x + y) % 2) * 255).astype(np.uint8)
    small = resample.resize(checker, (16, 16))
    assert abs(float(small.mean()) - 127.5) < 2 and small.std() < 2
    naive = checker[::4, ::4]
    assert naive.std() == 0 and naive.mean() in (0, 255)


def test_alpha_premultiplied_no_colour_bleed():
    """Transparent red next to opaque green: the visible edge must not turn reddish."""
    img = np.zeros((8, 16, 4), np.uint8)
    img[:, :8] = (255, 0, 0, 0)
    img[:, 8:] = (0, 255, 0, 255)
    up = resample.resize(img, (64, 32))
    visible = up[..., 3] > 8
    assert up[..., 0][visible].max() <= 2
    straight = resample.resize(img[..., :3], (64, 32))  # what ignoring alpha would give
    assert straight[..., 0][visible].max() > 50


def test_unsharp_mask_raises_edge_contrast_and_leaves_flat_areas():
    img = np.full((32, 32, 3), 100, np.uint8)
    img[:, 16:] = 160
    sharp = resample.unsharp_mask(img, amount=1.0, radius=1.5)
    assert sharp[:, 14].mean() < 100 and sharp[:, 17].mean() > 160  # overshoot at the edge
    assert (sharp[:, :8] == 100).all() and (sharp[:, 24:] == 160).all()  # flat: untouched
    assert np.array_equal(resample.unsharp_mask(img, amount=0.0), img)


def test_unsharp_mask_threshold_and_alpha():
    rng = np.random.default_rng(1)
    noisy = (128 + rng.integers(-2, 3, (32, 32, 4))).astype(np.uint8)
    out = resample.unsharp_mask(noisy, amount=2.0, radius=1.0, threshold=10 / 255)
    assert np.array_equal(out, noisy)  # noise below the threshold is not amplified
    out = resample.unsharp_mask(noisy, amount=2.0, radius=1.0)
    assert not np.array_equal(out[..., :3], noisy[..., :3])
    assert np.array_equal(out[..., 3], noisy[..., 3])  # alpha is never sharpened


def test_sharpened_upscale_is_crisper():
    img = np.full((16, 16, 3), 60, np.uint8)
    img[:, 8:] = 200
    soft = resample.upscale_lanczos(img, 4)
    sharp = resample.upscale_lanczos(img, 4, sharpen=0.8)
    grad = lambda a: np.abs(np.diff(a[..., 0].astype(int), axis=1)).max()  # noqa: E731
    assert grad(sharp) > grad(soft)


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_bad_scale(scale):
    with pytest.raises(BadInput):
        resample.upscale_lanczos(np.zeros((4, 4, 3), np.uint8), scale)


def test_bad_sizes():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(BadInput):
        resample.resize(img, (0, 5))
    with pytest.raises(BadInput):
        resample.resize(img, (20000, 5))


def test_unsharp_mask_in_strips_equals_one_piece():
    img = np.random.default_rng(2).integers(0, 256, (101, 37, 4), dtype=np.uint8)
    whole = resample.unsharp_mask(img, amount=0.7, radius=2.0, strip=10_000)
    strips = resample.unsharp_mask(img, amount=0.7, radius=2.0, strip=16)
    assert np.array_equal(whole, strips)
    f = resample.to_float(img[..., 0])
    np.testing.assert_array_equal(
        resample.unsharp_mask(f, 1.0, 1.5, strip=7), resample.unsharp_mask(f, 1.0, 1.5)
    )


def test_uint8_and_float_paths_agree():
    """Pillow's 8-bit path rounds and clips between its horizontal and vertical passes; on a
    photo that differs from the float path by a fraction of a level on average."""
    from pathlib import Path

    from PIL import Image

    photo = Path(__file__).parents[1] / "data" / "photos" / "astronaut.png"
    img = np.asarray(Image.open(photo).convert("RGB"))[::4, ::4].copy()
    for size in ((300, 300), (50, 50)):
        a = resample.resize(img, size).astype(int)
        b = resample.to_uint8(resample.resize(resample.to_float(img), size)).astype(int)
        d = np.abs(a - b)
        assert d.mean() < 0.5 and np.percentile(d, 99) <= 3
