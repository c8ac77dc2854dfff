"""The tile grid, feather weights and streaming blend of studio.engine.restore.tiling (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core.errors import OutOfMemory
from studio.engine.restore.tiling import (
    AdaptiveTiler,
    Span,
    blend_tiles,
    feather,
    pad_to_requirements,
    spans,
)


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 3000),
    tile=st.integers(8, 600),
    overlap=st.integers(0, 64),
    align=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_spans_cover_with_exact_overlaps(length, tile, overlap, align):
    sp = spans(length, tile, overlap, align)
    assert sp[0].start == 0 and sp[-1].end == length
    ov = min(overlap, tile // 2)
    for s in sp:
        assert 0 < s.length <= max(tile, 1)
    for a, b in zip(sp, sp[1:], strict=False):
        assert a.end - b.start == ov == a.after == b.before  # adjacent: exactly the overlap
        assert b.length > ov  # never a sliver hidden inside its neighbour
    for a, c in zip(sp, sp[2:], strict=False):
        assert a.end <= c.start  # non-adjacent tiles never overlap
    if length <= tile:
        assert sp == [Span(0, length)]


def test_spans_are_balanced():
    sp = spans(520, 512, 16)
    assert [s.length for s in sp] == [268, 268]  # not 512 + a 24 px sliver
    # the model's multiple_of is honoured for all but possibly the last tile
    sp = spans(1000, 256, 16, align=8)
    assert all(s.length % 8 == 0 for s in sp[:-1])


@pytest.mark.parametrize("size", [2, 3, 7, 16, 33, 64])
def test_feather_weights_are_a_partition_of_unity(size):
    left = feather(100, 0, size)
    right = feather(100, size, 0)
    # the last `size` of one tile meet the first `size` of the next
    total = left[100 - size :] + right[:size]
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert left[: 100 - size].min() == 1.0
    m = int(size * 0.25)
    if size - 2 * m >= 1 and m > 0:
        assert right[:m].max() == 0.0  # the tile's outermost pixels are discarded


def _nearest(scale):
    return lambda t: np.repeat(np.repeat(t.astype(np.float32), scale, 0), scale, 1)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    tile=st.integers(8, 40),
    overlap=st.integers(0, 12),
    scale=st.sampled_from([1, 2, 3]),
)
def test_blend_of_a_pointwise_model_is_exact(h, w, tile, overlap, scale):
    """For a model without spatial context, tiled == untiled, and every output pixel is
    written exactly once."""
    img = np.random.default_rng(h * 1000 + w).random((h, w, 3), dtype=np.float32)
    model = _nearest(scale)
    out = np.zeros((h * scale, w * scale, 3), np.float32)
    hits = np.zeros((h * scale, w * scale), np.int32)

    def write(y, x, block):
        out[y : y + block.shape[0], x : x + block.shape[1]] = block
        hits[y : y + block.shape[0], x : x + block.shape[1]] += 1

    blend_tiles(img, model, scale, tile, overlap, write)
    assert (hits == 1).all()
    np.testing.assert_allclose(out, model(img), atol=1e-5)


def test_blend_hides_seams_of_a_context_dependent_model():
    """A 3x3 box blur with zero padding is wrong at tile edges; the margin+feather keeps
    the error far below what a hard cut gives."""
    import cv2

    img = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)

    def blur(t):
        return cv2.blur(t.astype(np.float32), (3, 3), borderType=cv2.BORDER_CONSTANT)

    ref = blur(img)
    feathered = AdaptiveTiler(blur, 1, 24, 8, is_oom=lambda e: False).run_to_array(img)
    hard = AdaptiveTiler(blur, 1, 24, 0, is_oom=lambda e: False).run_to_array(img)
    err_feather = np.abs(feathered - ref).max()
    err_hard = np.abs(hard - ref).max()
    assert err_feather < 1e-5 < err_hard


def test_check_runs_before_every_tile_and_progress_after():
    img = np.zeros((40, 40, 3), np.float32)
    log = []
    blend_tiles(
        img,
        _nearest(1),
        1,
        16,
        4,
        lambda y, x, b: None,
        check=lambda: log.append("check"),
        on_tile=lambda d, t: log.append((d, t)),
    )
    n = len(spans(40, 16, 4)) ** 2
    assert log == [x for k in range(1, n + 1) for x in ("check", (k, n))]


def test_pad_to_requirements():
    t = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    p = pad_to_requirements(t, multiple_of=4)
    assert p.shape == (8, 8, 3) and np.array_equal(p[:5, :7], t)
    assert np.array_equal(p[5, :7], t[3])  # reflected
    p = pad_to_requirements(t, minimum=16, square=True)
    assert p.shape == (16, 16, 3)
    one = np.ones((1, 1, 3), np.float32)
    assert pad_to_requirements(one, minimum=2).shape == (2, 2, 3)
    assert pad_to_requirements(t) is t


def test_adaptive_tiler_crops_padding_and_splits_after_oom():
    img = np.random.default_rng(1).random((50, 50, 3), dtype=np.float32)
    sizes = []

    class FakeOOM(RuntimeError):
        pass

    def model(t):
        sizes.append(t.shape[:2])
        assert t.shape[0] % 4 == 0 and t.shape[1] % 4 == 0
        if max(t.shape[:2]) > 12:
            raise FakeOOM("CUDA out of memory")
        return _nearest(2)(t)

    freed = []
    tiler = AdaptiveTiler(
        model,
        2,
        48,
        4,
        is_oom=lambda e: isinstance(e, FakeOOM),
        multiple_of=4,
        min_tile=8,
        on_oom=freed.append,
    )
    out = tiler.run_to_array(img)
    np.testing.assert_allclose(out, _nearest(2)(img), atol=1e-5)
    assert tiler.tile == 12 and tiler.halvings == 2 and freed == [24, 12]


def test_adaptive_tiler_gives_up_below_the_minimum():
    def model(t):
        raise MemoryError()

    tiler = AdaptiveTiler(model, 2, 64, 4, is_oom=lambda e: isinstance(e, MemoryError))
    with pytest.raises(OutOfMemory):
        tiler.run_to_array(np.zeros((64, 64, 3), np.float32))


def test_other_errors_are_not_swallowed():
    def model(t):
        raise ValueError("boom")

    tiler = AdaptiveTiler(model, 1, 16, 4, is_oom=lambda e: False)
    with pytest.raises(ValueError, match="boom"):
        tiler.run_to_array(np.zeros((20, 20, 3), np.float32))
