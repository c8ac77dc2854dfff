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


# -- validation ---------------------------------------------------------------------------------
def test_check_mask_rgb_uses_the_first_channel():
    rgb = np.zeros((5, 12, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 50, 10
    got = masks.check_mask(rgb, (5, 12, 3))
    assert got.shape == (5, 12) and (got == 200).all()


@pytest.mark.parametrize("shape", [(60,), (5, 12, 3, 1)])
def test_check_mask_rejects_masks_that_are_not_images(shape):
    with pytest.raises(BadInput) as err:
        masks.check_mask(np.zeros(shape, np.uint8), (5, 12, 3))
    assert "2-D" in err.value.message and str(shape) in err.value.message


def test_check_mask_bool_becomes_0_and_255():
    m = np.zeros((5, 12), bool)
    m[1:3, 2:5] = True
    got = masks.check_mask(m, (5, 12))
    assert got.dtype == np.uint8
    assert (got[1:3, 2:5] == 255).all() and got.sum() == 255 * 6


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_check_mask_other_dtypes_are_clamped_to_0_255(dtype):
    m = np.array([[-5, 0, 1, 128, 254, 255, 300]], dtype)
    got = masks.check_mask(m, (1, 7))
    assert got.dtype == np.uint8
    assert got.tolist() == [[0, 0, 1, 128, 254, 255, 255]]


def test_check_mask_keeps_a_uint8_mask_as_is():
    m = np.arange(60, dtype=np.uint8).reshape(5, 12)
    assert np.array_equal(masks.check_mask(m, (5, 12, 4)), m)


def test_binary_threshold_is_strictly_above():
    m = np.array([[0, 126, 127, 128, 255]], np.uint8)
    assert masks.binary(m).tolist() == [[0, 0, 0, 255, 255]]
    assert masks.binary(m, 0).tolist() == [[0, 255, 255, 255, 255]]


def test_bbox_threshold_counts_only_values_above_it():
    m = np.zeros((20, 30), np.uint8)
    m[5:8, 10:14] = 255
    m[0, 0] = 1  # a faint stroke
    m[19, 29] = 127  # exactly at the default hard threshold
    assert masks.bbox(m, threshold=1) == (10, 5, 20, 15)
    assert masks.bbox(m, threshold=127) == (10, 5, 4, 3)
    assert masks.bbox(m, threshold=200) == (10, 5, 4, 3)


def test_bbox_of_one_pixel_wide_strokes():
    m = np.zeros((20, 30), np.uint8)
    m[4:15, 7] = 255  # a vertical line
    assert masks.bbox(m) == (7, 4, 1, 11)
    m[:] = 0
    m[9, 3:20] = 255  # a horizontal line
    assert masks.bbox(m) == (3, 9, 17, 1)
    m[:] = 0
    m[12, 25] = 255  # a single dot
    assert masks.bbox(m) == (25, 12, 1, 1)


def test_bbox_of_a_bool_mask():
    m = np.zeros((20, 30), bool)
    m[3:9, 4:6] = True
    assert masks.bbox(m) == (4, 3, 2, 6)


# -- crop geometry --------------------------------------------------------------------------------
def test_crop_box_is_snapped_around_the_padded_box():
    # 20x10 box at (50, 40), 16 px padding: 52x42 padded, snapped to 56x48, grown evenly.
    assert masks.crop_box((50, 40, 20, 10), (200, 100), 16) == (32, 21, 56, 48)
    # At the top-left corner the snapping grows into the image instead.
    assert masks.crop_box((0, 0, 10, 10), (200, 100), 4) == (0, 0, 16, 16)
    # At the bottom-right corner too.
    assert masks.crop_box((190, 90, 10, 10), (200, 100), 4) == (184, 84, 16, 16)
    # An image side too small for the next multiple: all of it.
    assert masks.crop_box((2, 2, 3, 3), (7, 6), 8) == (0, 0, 7, 6)


def test_crop_box_padding_error_names_the_padding():
    with pytest.raises(BadInput, match="padding must be 0 or more"):
        masks.crop_box((0, 0, 4, 4), (10, 10), -1)


def test_crop_copies_the_box():
    a = np.arange(48, dtype=np.uint8).reshape(6, 8)
    got = masks.crop(a, (2, 1, 3, 2))
    assert got.tolist() == [[10, 11, 12], [18, 19, 20]]
    got[:] = 0
    assert a[1, 2] == 10  # a copy: editing the crop leaves the image alone


@pytest.mark.parametrize("size", [(0, 64), (64, 0), (-8, 64), (64, -8)])
def test_model_size_rejects_an_empty_crop(size):
    with pytest.raises(BadInput, match="empty crop"):
        masks.model_size(size)


def test_model_size_of_thin_crops_keeps_at_least_one_multiple():
    # A 1 px wide crop (a 1 px wide image) still gets a valid model size.
    assert masks.model_size((1, 100), target=512) == (8, 1024)
    assert masks.model_size((100, 1), target=512) == (1024, 8)


def test_model_size_caps_the_long_side():
    # 3000x100 at 1024: the area rule alone would give about 5600 px wide; capped at 2048.
    assert masks.model_size((3000, 100), target=1024) == (2048, 72)
    assert masks.model_size((3000, 100), target=1024, max_side=1536) == (1536, 48)


def test_pad_to_multiple_pads_each_side_only_as_needed():
    rng = np.random.default_rng(2)
    for h, w, want in [
        (16, 21, (16, 24)),
        (15, 16, (16, 16)),
        (16, 15, (16, 16)),
        (9, 16, (16, 16)),
    ]:
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        p, size = masks.pad_to_multiple(a, 8)
        assert p.shape == want and size == (w, h)
        assert np.array_equal(p[:h, :w], a)


def test_pad_to_multiple_leaves_a_multiple_alone():
    a = np.arange(16 * 24, dtype=np.uint16).reshape(16, 24).astype(np.uint8)
    p, size = masks.pad_to_multiple(a, 8)
    assert np.array_equal(p, a) and size == (24, 16)


def test_pad_to_multiple_reflects_without_repeating_the_edge():
    a = np.arange(2 * 5, dtype=np.uint8).reshape(2, 5) * 10
    p, _ = masks.pad_to_multiple(a, 8)
    # Reflection about the last row/column, which is not repeated (numpy's "reflect").
    assert np.array_equal(p, np.pad(a, ((0, 6), (0, 3)), mode="reflect"))
    rgb = np.random.default_rng(3).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    p, _ = masks.pad_to_multiple(rgb, 8)
    assert np.array_equal(p, np.pad(rgb, ((0, 3), (0, 3), (0, 0)), mode="reflect"))


def test_pad_to_multiple_of_a_one_pixel_line_repeats_it():
    a = np.array([[10, 20, 30, 40, 50]], np.uint8)
    p, _ = masks.pad_to_multiple(a, 8)
    assert np.array_equal(p, np.pad(a, ((0, 7), (0, 3)), mode="edge"))


def test_resize_shrinks_by_area_averaging():
    a = np.random.default_rng(4).integers(0, 256, (16, 16), dtype=np.uint8)
    got = masks.resize(a, (4, 4))
    means = a.reshape(4, 4, 4, 4).astype(float).mean(axis=(1, 3))  # 4x4 blocks
    assert np.abs(got - means).max() <= 0.5


def test_resize_enlarges_with_lanczos():
    # A sharp step, enlarged 4x: Lanczos' negative lobes over- and undershoot at the edge,
    # which no averaging or linear interpolation does.
    a = np.full((8, 8), 50, np.uint8)
    a[:, 4:] = 200
    got = masks.resize(a, (32, 32))
    assert got.min() < 45 and got.max() > 205
    assert 60 < got[0, 14] < 190  # a gradual edge, not blocks


def test_resize_keeps_the_channel_axis():
    mask = np.zeros((16, 16), np.uint8)
    assert masks.resize(mask, (8, 4)).shape == (4, 8)
    one = np.zeros((16, 16, 1), np.uint8)
    assert masks.resize(one, (8, 4)).shape == (4, 8, 1)
    assert masks.resize(one, (32, 20)).shape == (20, 32, 1)


# -- mask edits ---------------------------------------------------------------------------------
def test_grow_uses_a_round_brush():
    dot = np.zeros((21, 21), np.uint8)
    dot[10, 10] = 255
    g = masks.grow(dot, 5)
    assert g[10, 15] == 255 and g[15, 10] == 255 and g[10, 5] == 255  # 5 px along the axes
    assert g[13, 13] == 255  # 4.2 px along the diagonal
    assert g[15, 15] == 0 and g[14, 14] == 0  # 7.1 and 5.7 px: outside the disk
    assert g[10, 16] == 0


def test_grow_and_shrink_by_one_pixel():
    m = _mask()
    assert masks.bbox(masks.grow(m, 1)) == (29, 19, 42, 32)
    assert masks.bbox(masks.shrink(m, 1)) == (31, 21, 38, 28)


def test_negative_shrink_grows():
    m = _mask()
    assert np.array_equal(masks.shrink(m, -5), masks.grow(m, 5))
    assert masks.bbox(masks.shrink(m, -5)) == (25, 15, 50, 40)
    assert np.array_equal(masks.shrink(m, 0), m) and masks.shrink(m, 0) is not m


def _gaussian_reference(mask, radius):
    """Separable Gaussian, sigma = radius / 2 (kernel cut at 3 sigma), with the image edge
    extended outward: computed in float with numpy."""
    sigma = radius / 2
    half = int(np.ceil(3 * sigma))
    x = np.arange(-half, half + 1)
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    a = np.pad(mask.astype(float), half, mode="edge")
    a = np.apply_along_axis(lambda v: np.convolve(v, g, mode="valid"), 0, a)
    return np.apply_along_axis(lambda v: np.convolve(v, g, mode="valid"), 1, a)


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 8])
def test_feather_is_a_gaussian_of_half_the_radius(radius):
    m = np.zeros((40, 50), np.uint8)
    m[10:30, 3:20] = 255
    m[:, 0:2] = 255  # selected up to the image's left edge
    m[0:3, 30:45] = 255  # a thin stroke along the top edge
    m[35, 40] = 255  # a single dot
    got = masks.feather(m, radius)
    assert got.dtype == np.uint8
    assert np.abs(got - _gaussian_reference(m, radius)).max() <= 1.5


def test_feather_does_not_fade_at_the_image_edge():
    m = np.zeros((30, 30), np.uint8)
    m[:, :15] = 255
    f = masks.feather(m, 8)
    assert (f[:, 0] == 255).all()  # the image edge is not an edge of the selection


def test_fill_holes_uses_the_given_threshold():
    ring = np.zeros((30, 30), np.uint8)
    ring[5:25, 5:25] = 100  # a faint ring ...
    ring[10:20, 10:20] = 0  # ... around a hole
    assert (masks.fill_holes(ring, threshold=50)[10:20, 10:20] == 255).all()
    assert np.array_equal(masks.fill_holes(ring), ring)  # not selected at the default 127


def test_fill_holes_keeps_soft_values_and_fills_holes_at_the_border_ring():
    m = np.zeros((20, 20), np.uint8)
    m[0:12, 0:12] = 200  # touching the top-left corner
    m[4:8, 4:8] = 0  # hole
    out = masks.fill_holes(m)
    assert (out[4:8, 4:8] == 255).all()
    assert out[0, 0] == 200 and out[15, 15] == 0


def test_fill_and_clear_keep_shape_and_type():
    m = _mask()
    for got, value in ((masks.fill(m), 255), (masks.clear(m), 0)):
        assert got.shape == m.shape and got.dtype == np.uint8
        assert (got == value).all()


# -- paste-back ---------------------------------------------------------------------------------
def _square_reach(mask, px):
    """Pixels within ``px`` (square distance, as the paste-back's separable blur reaches) of
    the mask, computed with a plain box dilation."""
    import cv2

    return cv2.dilate((mask > 0).astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


@pytest.mark.parametrize("radius", list(range(1, 13)))
def test_blend_alpha_is_zero_beyond_twice_the_radius(radius):
    m = np.zeros((100, 100), np.uint8)
    m[40:60, 40:60] = 255
    m[20, 20] = 255  # a single painted pixel
    a = masks.blend_alpha(m, radius)
    assert (a[~_square_reach(m, 2 * radius)] == 0).all()
    # ... and the soft edge is centred on the mask grown by radius / 2 (at least 1 px):
    # weight >= 0.5 there along a straight edge.
    grown = max(1, radius // 2)
    assert a[50, 40 - grown] >= 0.5 and a[50, 59 + grown] >= 0.5
    assert (a[m == 255] == 1.0).all()


def test_blend_alpha_closes_pinholes_inside_the_mask():
    m = np.zeros((40, 40), np.uint8)
    m[5:35, 5:35] = 255
    m[20, 20] = 0  # a speck the brush missed: regenerated with the rest, no seam
    assert masks.blend_alpha(m, 4)[20, 20] == 1.0


def test_blend_alpha_keeps_soft_mask_values():
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 10:30] = 102  # painted at 40 %
    a = masks.blend_alpha(m, 4)
    assert np.isclose(a[20, 20], 102 / 255)
    assert (a >= m / 255.0 - 1e-7).all()


def test_paste_back_alpha_shape_error_names_the_shapes():
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match=r"alpha \(3, 8\) do not match box"):
        masks.paste_back(image, np.zeros((8, 8, 3), np.uint8), (0, 0, 8, 8), np.ones((3, 8)))


def test_paste_back_blends_exactly():
    image = np.full((4, 4, 3), 100, np.uint8)
    patch = np.zeros((4, 4, 3), np.uint8)
    patch[..., 1] = 255
    alpha = np.array([[0.0, 0.25, 0.5, 1.0]] * 4, np.float32)
    out = masks.paste_back(image, patch, (0, 0, 4, 4), alpha)
    # a * patch + (1 - a) * image, rounded: hand-worked for 100 under 0 and under 255.
    assert out[0, :, 0].tolist() == [100, 75, 50, 0]
    assert out[0, :, 1].tolist() == [100, 139, 178, 255]


def test_paste_back_clamps_alpha_to_0_1():
    image = np.full((2, 3, 3), 100, np.uint8)
    patch = np.full((2, 3, 3), 200, np.uint8)
    alpha = np.array([[-0.5, 1.5, 2.0]] * 2, np.float32)
    out = masks.paste_back(image, patch, (0, 0, 3, 2), alpha)
    assert out[..., 0].tolist() == [[100, 200, 200]] * 2


def test_paste_back_rgb_on_rgba_composites_alpha_over():
    image = np.zeros((2, 3, 4), np.uint8)
    image[..., 3] = 100
    alpha = np.array([[0.001, 0.5, 0.8]] * 2, np.float32)
    out = masks.paste_back(image, np.full((2, 3, 3), 10, np.uint8), (0, 0, 3, 2), alpha)
    # Porter-Duff over: a * 255 + (1 - a) * 100 = 100.2, 177.5, 224.
    assert out[0, :, 3].tolist() == [100, 178, 224]
    clear = np.zeros((2, 2, 4), np.uint8)  # fully transparent image
    out = masks.paste_back(
        clear, np.zeros((2, 2, 3), np.uint8), (0, 0, 2, 2), np.full((2, 2), 0.001)
    )
    assert (out[..., 3] == 0).all()  # 0.255 rounds to 0: still transparent


def test_paste_back_grey_patch_on_grey_image():
    image = np.full((6, 8), 40, np.uint8)
    alpha = np.zeros((2, 3), np.float32)
    alpha[:, 1:] = 1.0
    out = masks.paste_back(image, np.full((2, 3), 240, np.uint8), (4, 3, 3, 2), alpha)
    assert out.shape == (6, 8) and out.dtype == np.uint8
    want = np.full((6, 8), 40, np.uint8)
    want[3:5, 5:7] = 240
    assert np.array_equal(out, want)
    masks.paste_back(image, np.full((2, 3), 240, np.uint8), (4, 3, 3, 2), alpha, inplace=True)
    assert np.array_equal(image, want)


# -- regions --------------------------------------------------------------------------------------
def _blobs(shape, *rects):
    m = np.zeros(shape, np.uint8)
    for x0, y0, x1, y1 in rects:
        m[y0:y1, x0:x1] = 255
    return m


def test_regions_defaults_snap_to_8_and_count_faint_strokes():
    m = _blobs((300, 400), (100, 100, 110, 110))
    m[250, 350] = 1  # a faint stroke far away is still part of the mask
    boxes = masks.regions(m, padding=16)
    # (100..110) +- 16 = 84..126, 42 px snapped to 48: 81..129; the faint pixel alike:
    # 250 +- 16 = 234..267, 33 px snapped to 40: 231..271 (x: 334..367 -> 331..371).
    assert boxes == [(81, 81, 48, 48), (331, 231, 40, 40)]


def test_regions_exact_boxes_with_padding_and_multiple():
    m = _blobs((64, 64), (10, 20, 14, 30))  # a 4x10 stroke
    # padding 2, no snapping: the stroke plus 2 px on each side.
    assert masks.regions(m, padding=2, multiple=1) == [(8, 18, 8, 14)]
    # padding 2, multiple 16: 8x14 grows to 16x16, evenly on both sides.
    assert masks.regions(m, padding=2, multiple=16) == [(4, 17, 16, 16)]


def test_regions_merge_overlapping_boxes_into_their_snapped_union():
    # A tall stroke and, right of it, a wide one; padding 16, snapped to 8:
    #   tall (100..110, 100..140) -> box x 81..129, y 84..156
    #   wide (120..150, 100..110) -> box x 103..167, y 81..129
    # They overlap: union x 81..167 (86 -> 88: 80..168), y 81..156 (75 -> 80: 79..159).
    m = _blobs((300, 400), (100, 100, 110, 140), (120, 100, 150, 110))
    assert masks.regions(m, padding=16) == [(80, 79, 88, 80)]


def test_regions_merge_a_stroke_that_starts_lower_and_further_left():
    # The lower stroke's box (x 1..49) starts left of the first one's (x 21..69): merged, and
    # the union is shifted back inside the image at the left edge.
    m = _blobs((300, 400), (40, 200, 50, 210), (20, 205, 30, 215))
    assert masks.regions(m, padding=16) == [(0, 180, 72, 56)]


def test_regions_merging_repeats_until_no_boxes_overlap():
    # Boxes (2 px padding, no snapping): C x 16..24 y 0..8, A x 24..40 y 4..20 (touches C),
    # B x 0..25 y 12..20 (overlaps A only). A and B merge into x 0..40 y 4..20, which now
    # overlaps C: all three end up in one box.
    m = _blobs((64, 64), (18, 0, 22, 6), (26, 6, 38, 18), (2, 14, 23, 18))
    assert masks.regions(m, padding=2, multiple=1) == [(0, 0, 40, 20)]


def test_regions_boxes_that_only_touch_stay_apart():
    # No padding, snapped to 8: each stroke's box is one 8x8 cell; neighbours share an edge.
    side = _blobs((64, 64), (2, 10, 6, 14), (10, 10, 14, 14))  # left one first
    assert masks.regions(side, padding=0) == [(0, 8, 8, 8), (8, 8, 8, 8)]
    right_first = _blobs((64, 64), (2, 10, 6, 14), (10, 6, 14, 10))
    assert masks.regions(right_first, padding=0) == [(8, 4, 8, 8), (0, 8, 8, 8)]
    stacked = _blobs((64, 64), (10, 2, 14, 6), (10, 10, 14, 14))
    assert masks.regions(stacked, padding=0) == [(8, 0, 8, 8), (8, 8, 8, 8)]
    # A one-row stroke and, starting on the next row, a hook reaching under it (not touching).
    hook = _blobs((16, 16), (6, 3, 10, 4), (2, 4, 4, 5), (2, 5, 8, 7))
    assert masks.regions(hook, padding=0, multiple=1) == [(6, 3, 4, 1), (2, 4, 6, 3)]


def test_regions_far_apart_in_one_direction_stay_apart():
    same_rows = _blobs((100, 200), (10, 40, 20, 50), (150, 40, 160, 50))
    assert len(masks.regions(same_rows, padding=8)) == 2
    same_columns = _blobs((200, 100), (40, 10, 50, 20), (40, 150, 50, 160))
    assert len(masks.regions(same_columns, padding=8)) == 2


def test_regions_sorted_top_to_bottom_then_left_to_right():
    m = _blobs((100, 100), (50, 2, 60, 6), (2, 40, 6, 44))  # top-right wide, bottom-left
    assert masks.regions(m, padding=0, multiple=1) == [(50, 2, 10, 4), (2, 40, 4, 4)]
    # Same top after clamping (y 0): left before right, whichever stroke starts higher.
    m = _blobs((100, 100), (2, 3, 6, 6), (40, 1, 44, 4))
    assert masks.regions(m, padding=4, multiple=1) == [(0, 0, 10, 10), (36, 0, 12, 8)]


def _dots(n, step=3):
    m = np.zeros((40, 40), np.uint8)
    for i in range(n):
        m[2 + step * (i // 8), 2 + step * (i % 8)] = 255
    return m


def test_regions_up_to_64_blobs_get_their_own_boxes():
    boxes = masks.regions(_dots(64), padding=0, multiple=1)
    assert len(boxes) == 64 and all(b[2:] == (1, 1) for b in boxes)


def test_regions_speckle_gets_one_box_around_everything():
    m = _dots(65)  # dots at x 2..23, y 2..26
    assert masks.regions(m, padding=0, multiple=1) == [(2, 2, 22, 25)]
    assert masks.regions(m, padding=2, multiple=8) == [(0, 0, 32, 32)]
    m[38, 38] = 50  # faint, below the threshold given
    assert masks.regions(m, padding=1, multiple=1, threshold=60) == [(1, 1, 24, 27)]
