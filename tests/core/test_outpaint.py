"""Outpainting geometry, pre-fill and mask (studio.core.outpaint)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.errors import BadInput
from studio.core.imageio import load_image
from studio.core.outpaint import (
    Extension,
    extend,
    outpaint_mask,
    parse_aspect,
    parse_extension,
    prefill,
    to_aspect,
)


def column_steps(image: np.ndarray) -> np.ndarray:
    """g[x] = mean |I[:, x] - I[:, x-1]| over rows and channels, for x = 1..W-1 (g[0] = 0)."""
    d = np.abs(np.diff(image.astype(np.float32), axis=1)).mean(axis=(0, 2))
    return np.concatenate([[0.0], d])


def test_extension_sizes_and_validation():
    ext = Extension(left=10, right=20, top=3)
    assert ext.new_size((100, 50)) == (130, 53)
    assert Extension().empty and not ext.empty
    with pytest.raises(BadInput):
        Extension(left=-1)


@pytest.mark.parametrize(
    "size, aspect, expect",
    [
        ((400, 300), 16 / 9, (534, 300)),
        ((300, 400), 1.0, (400, 400)),
        ((400, 300), 1.0, (400, 400)),
    ],
)
def test_to_aspect_reaches_ratio(size, aspect, expect):
    ext = to_aspect(size, aspect)
    assert ext.new_size(size) == expect
    # centred: the two grown sides differ by at most one pixel
    assert abs(ext.left - ext.right) <= 1 and abs(ext.top - ext.bottom) <= 1


def test_parse_extension_forms():
    assert parse_extension("left=128,right=64") == Extension(left=128, right=64)
    assert parse_extension("all=16") == Extension(16, 16, 16, 16)
    assert parse_extension("x=8, y=4") == Extension(8, 8, 4, 4)
    assert parse_extension("16:9", (400, 300)).new_size((400, 300)) == (534, 300)
    assert parse_extension("aspect=1", (300, 400)) == Extension(left=50, right=50)
    assert parse_aspect("3/2") == 1.5
    for bad in ("left=abc", "middle=3", "left=0", "", "16:9x"):
        with pytest.raises(BadInput):
            parse_extension(bad, (100, 100))


def test_prefill_keeps_original_and_is_continuous(photos):
    img = load_image(photos.coffee)  # 600x400
    ext = Extension(left=96, top=64)
    canvas = prefill(img, ext, seed=3)
    assert canvas.shape == (400 + 64, 600 + 96, 3)
    assert np.array_equal(canvas[64:, 96:], img)
    # next to the old edge the fill equals the edge (edge extension, weight ~ 0)
    assert np.abs(canvas[200, 95].astype(int) - img[136, 0].astype(int)).max() <= 6
    # far from the edge it is blurred: much less column-to-column variation than the edge copy
    far = canvas[64:, :8].astype(np.float32)
    assert (
        np.abs(np.diff(far, axis=0)).mean()
        < np.abs(np.diff(img[:, :1].astype(np.float32), axis=0)).mean()
    )
    # the noise makes it differ between seeds, only in the new area
    other = prefill(img, ext, seed=4)
    assert not np.array_equal(other[:64], canvas[:64])
    assert np.array_equal(other[64:, 96:], canvas[64:, 96:])


def test_prefill_rgba_new_area_opaque():
    img = np.zeros((20, 20, 4), np.uint8)
    img[..., 3] = 128
    out = prefill(img, Extension(right=10))
    assert out.shape == (20, 30, 4)
    assert (out[:, 20:, 3] == 255).all() and (out[:, :20] == img).all()


def test_outpaint_mask_band():
    ext = Extension(left=50, bottom=20)
    m = outpaint_mask((100, 80), ext, overlap=16)
    assert m.shape == (100, 150)
    assert (m[:, :66] == 255).all()  # new area + 16 px band on the left
    assert (m[80:, :] == 255).all()  # band of 16 at the bottom (rows 64..80) and new rows
    assert (m[64:80] == 255).all()
    assert (m[:64, 66:] == 0).all()  # top and right did not grow: no band there
    canvas, mask = extend(np.zeros((80, 100, 3), np.uint8), ext, overlap=16)
    assert canvas.shape[:2] == mask.shape == (100, 150)
    with pytest.raises(BadInput):
        extend(np.zeros((8, 8, 3), np.uint8), Extension())


def test_seam_measure_detects_a_hard_seam(photos):
    """The continuity measure used by the outpaint tests can fail: a flat grey fill shows."""
    img = load_image(photos.coffee)
    flat = np.concatenate([np.full((400, 96, 3), 128, np.uint8), img], axis=1)
    g = column_steps(flat)
    interior = g[100:]
    assert g[96] > np.percentile(interior, 99)


def test_passes_split_adjacent_sides():
    assert Extension(left=8, right=4).passes() == [Extension(left=8, right=4)]
    assert Extension(left=8, top=4).passes() == [Extension(left=8), Extension(top=4)]
    assert Extension(5, 6, 7, 8).passes() == [Extension(5, 6), Extension(top=7, bottom=8)]
    assert Extension(top=3).passes() == [Extension(top=3)]
    assert Extension().passes() == []
