"""Mask geometry and mask edits (studio.core.masks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core import masks
from studio.core.errors import BadInput


def _mask(h=100, w=120, box=(30, 20, 40, 30)):
    m = np.zeros((h, w), np.uint8)
    x, y, bw, bh = box
    m[y : y + bh, x : x + bw] = 255
    return m


def test_bbox_is_tight_and_none_for_empty():
    m = _mask()
    assert masks.bbox(m) == (30, 20, 40, 30)
    assert masks.bbox(np.zeros((5, 5), np.uint8)) is None
    m[99, 119] = 1  # a faint pixel counts at threshold 0, not at 127
    assert masks.bbox(m) == (30, 20, 90, 80)
    assert masks.bbox(m, threshold=127) == (30, 20, 40, 30)


@settings(max_examples=200, deadline=None)
@given(
    iw=st.integers(1, 300),
    ih=st.integers(1, 300),
    data=st.data(),
    padding=st.integers(0, 64),
)
def test_crop_box_contains_padded_bbox_snaps_and_stays_inside(iw, ih, data, padding):
    x = data.draw(st.integers(0, iw - 1))
    y = data.draw(st.integers(0, ih - 1))
    w = data.draw(st.integers(1, iw - x))
    h = data.draw(st.integers(1, ih - y))
    cx, cy, cw, ch = masks.crop_box((x, y, w, h), (iw, ih), padding)
    # inside the image
    assert cx >= 0 and cy >= 0 and cx + cw <= iw and cy + ch <= ih
    # holds the box plus the padding (clamped to the image)
    assert cx <= max(0, x - padding) and cy <= max(0, y - padding)
    assert cx + cw >= min(iw, x + w + padding) and cy + ch >= min(ih, y + h + padding)
    # multiple of 8 unless the whole image side is used
    assert cw % 8 == 0 or cw == iw
    assert ch % 8 == 0 or ch == ih
    # never more than 7 px of snapping beyond the clamped padded box
    assert cw - (min(iw, x + w + padding) - max(0, x - padding)) < 8


def test_crop_box_rejects_negative_padding():
    with pytest.raises(BadInput):
        masks.crop_box((0, 0, 4, 4), (10, 10), -1)


def test_model_size_area_aspect_and_multiple():
    w, h = masks.model_size((264, 264), target=512)
    assert (w, h) == (512, 512)
    w, h = masks.model_size((400, 200), target=512)
    assert w % 8 == 0 and h % 8 == 0
    assert abs(w / h - 2.0) < 0.05
    assert abs(w * h - 512 * 512) / (512 * 512) < 0.05
    w, h = masks.model_size((3000, 100), target=1024)
    assert max(w, h) <= 2048 and w % 8 == 0 and h % 8 == 0 and h >= 8


def test_pad_to_multiple_and_resize():
    a = np.random.default_rng(0).integers(0, 255, (13, 21, 3), dtype=np.uint8)
    p, (w, h) = masks.pad_to_multiple(a, 8)
    assert p.shape == (16, 24, 3) and (w, h) == (21, 13)
    assert np.array_equal(p[:13, :21], a)
    r = masks.resize(a, (42, 26))
    assert r.shape == (26, 42, 3) and r.dtype == np.uint8
    assert masks.resize(a, (21, 13)) is not a and np.array_equal(masks.resize(a, (21, 13)), a)


def test_grow_shrink_are_morphology():
    m = _mask()
    g = masks.grow(m, 5)
    assert masks.bbox(g) == (25, 15, 50, 40)
    assert (g >= m).all()
    s = masks.shrink(m, 5)
    assert masks.bbox(s) == (35, 25, 30, 20)
    assert (s <= m).all()
    assert np.array_equal(masks.grow(m, -5), s)
    assert np.array_equal(masks.grow(m, 0), m)
    # a mask touching the border shrinks away from it as well
    edge = np.zeros((20, 20), np.uint8)
    edge[:, :6] = 255
    assert masks.shrink(edge, 2)[:, 0].max() == 0


def test_feather_is_soft_and_symmetric():
    m = _mask()
    f = masks.feather(m, 8)
    assert f.dtype == np.uint8
    assert f[35, 50] == 255  # deep inside
    assert f[0, 0] == 0  # far outside
    row = f[35, 20:40].astype(int)
    assert (np.diff(row) >= 0).all()  # a monotonic ramp across the left edge
    assert 0 < f[35, 30] < 255 and 0 < f[35, 29] < 255
    assert np.array_equal(masks.feather(m, 0), m)


def test_invert_fill_clear():
    m = _mask()
    assert np.array_equal(masks.invert(masks.invert(m)), m)
    assert masks.invert(m)[0, 0] == 255 and masks.invert(m)[30, 40] == 0
    assert (masks.fill(m) == 255).all()
    assert (masks.clear(m) == 0).all()


def test_fill_holes_fills_enclosed_only():
    ring = np.zeros((50, 50), np.uint8)
    ring[10:40, 10:40] = 255
    ring[18:32, 18:32] = 0  # enclosed hole
    ring[0:5, 0:5] = 0
    open_c = ring.copy()
    open_c[20:30, 30:50] = 0  # a notch open to the border is not a hole
    filled = masks.fill_holes(ring)
    assert (filled[10:40, 10:40] == 255).all()
    assert filled[0, 0] == 0 and filled[45, 45] == 0
    notch = masks.fill_holes(open_c)
    assert notch[25, 45] == 0 and notch[25, 25] == 0


def test_check_mask_shape_errors():
    with pytest.raises(BadInput, match="the mask is 10x5 but the image is 12x5"):
        masks.check_mask(np.zeros((5, 10), np.uint8), (5, 12, 3))
    rgba = np.zeros((5, 12, 4), np.uint8)
    rgba[..., 3] = 200
    assert (masks.check_mask(rgba, (5, 12, 3)) == 200).all()
    assert masks.check_mask(np.ones((5, 12), bool), (5, 12)).max() == 255


def test_blend_alpha_covers_mask_and_falls_off_outside():
    m = _mask()
    a = masks.blend_alpha(m, 8)
    assert a.dtype == np.float32
    assert (a[m == 255] == 1.0).all()
    assert a[35, 25] > 0  # just outside the left edge
    assert a[35, 5] == 0  # far outside
    assert np.array_equal(masks.blend_alpha(m, 0), m / 255.0)


def test_paste_back_outside_box_and_zero_alpha_bit_identical():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    box = (16, 8, 32, 24)
    patch = np.full((24, 32, 3), 7, np.uint8)
    alpha = np.zeros((24, 32), np.float32)
    alpha[4:20, 4:28] = 1.0
    alpha[4:20, 2:4] = 0.5
    out = masks.paste_back(image, patch, box, alpha)
    outside = np.ones((60, 80), bool)
    outside[8:32, 16:48] = False
    assert np.array_equal(out[outside], image[outside])
    assert np.array_equal(out[8 + 4 : 8 + 20, 16 + 4 : 16 + 28], np.full((16, 24, 3), 7, np.uint8))
    assert np.array_equal(out[8:12, 16:48], image[8:12, 16:48])  # alpha 0 rows
    half = out[12, 18].astype(int)
    expect = np.rint(0.5 * 7 + 0.5 * image[12, 18].astype(float)).astype(int)
    assert np.array_equal(half, expect)
    with pytest.raises(ValueError):
        masks.paste_back(image, patch[:10], box, alpha)


def test_paste_back_rgb_on_rgba_makes_painted_area_opaque():
    image = np.zeros((20, 20, 4), np.uint8)
    image[..., 3] = 0
    alpha = np.zeros((8, 8), np.float32)
    alpha[2:6, 2:6] = 1
    out = masks.paste_back(image, np.full((8, 8, 3), 200, np.uint8), (4, 4, 8, 8), alpha)
    assert (out[6:10, 6:10, 3] == 255).all() and (out[6:10, 6:10, :3] == 200).all()
    assert out[0, 0, 3] == 0 and out[4, 4, 3] == 0


def test_regions_split_far_blobs_and_merge_near_ones():
    m = np.zeros((400, 600), np.uint8)
    m[10:30, 10:30] = 255
    m[350:380, 550:590] = 255
    boxes = masks.regions(m, padding=16)
    assert len(boxes) == 2
    covered = np.zeros_like(m, bool)
    for x, y, w, h in boxes:
        assert not covered[y : y + h, x : x + w].any()  # disjoint
        covered[y : y + h, x : x + w] = True
    assert covered[m > 0].all()
    # two blobs 10 px apart with 16 px padding: one region
    m2 = np.zeros((200, 200), np.uint8)
    m2[50:60, 50:60] = 255
    m2[50:60, 70:80] = 255
    assert len(masks.regions(m2, padding=16)) == 1
    assert masks.regions(np.zeros((10, 10), np.uint8)) == []


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), padding=st.integers(0, 40))
def test_regions_always_disjoint_and_cover_mask(seed, n, padding):
    rng = np.random.default_rng(seed)
    m = np.zeros((160, 200), np.uint8)
    for _ in range(n):
        x, y = rng.integers(0, 190), rng.integers(0, 150)
        m[y : y + rng.integers(1, 10), x : x + rng.integers(1, 10)] = 255
    boxes = masks.regions(m, padding=padding)
    covered = np.zeros(m.shape, int)
    for x, y, w, h in boxes:
        covered[y : y + h, x : x + w] += 1
    assert covered.max() == 1
    assert (covered[m > 0] == 1).all()


def test_paste_back_inplace_writes_into_image():
    image = np.zeros((10, 10, 3), np.uint8)
    alpha = np.ones((4, 4), np.float32)
    out = masks.paste_back(
        image, np.full((4, 4, 3), 9, np.uint8), (2, 2, 4, 4), alpha, inplace=True
    )
    assert out is image and image[3, 3, 0] == 9
    copy = masks.paste_back(image, np.full((4, 4, 3), 5, np.uint8), (2, 2, 4, 4), alpha)
    assert copy is not image and image[3, 3, 0] == 9 and copy[3, 3, 0] == 5
