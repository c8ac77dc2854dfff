"""Tiled image-to-image inference with overlap, feathered seams and out-of-memory halving.

The image is cut into a grid of tiles that overlap their neighbours by ``overlap`` input
pixels; each tile goes through the model on its own and the outputs are blended with
*feathering* (linear alpha ramps across each overlap; Szeliski, "Image Alignment and
Stitching", 2006, sec. 6.1 "feathering").

Per axis, tile ``k``'s weight over an overlap of ``O`` output pixels, ``d`` pixels from its
edge, is

    w(d) = clip((d + 1/2 - m) / (O - 2m), 0, 1),     m = floor(O * margin)

so the ``m`` outermost pixels of every inner tile edge — where the model saw zero padding
instead of the real neighbourhood and is least accurate — are discarded, and
``w(d) + w(O - 1 - d) = 1``: two neighbours' weights sum to one everywhere. The grid is
built so that only *adjacent* tiles overlap (tile >= 2 * overlap), hence the product weights
``w_y (x) w_x`` form a partition of unity and no normalisation pass is needed.

That lets the blend *stream*: a tile's output is final except for its right and bottom
overlap bands, which wait (in float32) for the next tile / tile row. Working memory is
``O(tile^2 * scale^2 + overlap * width * scale)`` — it does not grow with the image height,
and only the thin overlap band grows with the width. Finished pixels go to a ``write``
callback (e.g. straight into the uint8 output).

Out of memory: :class:`AdaptiveTiler` halves the tile size and goes on. The tile that failed
(and every later tile of the current grid) is split into sub-tiles of the new size, blended
the same way, so no finished work is thrown away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from studio.core.errors import OutOfMemory

# a tile -> its output, or a callable that waits for the output (see blend_tiles)
Infer = Callable[[np.ndarray], "np.ndarray | Callable[[], np.ndarray]"]
Write = Callable[[int, int, np.ndarray], None]

FEATHER_MARGIN = 0.25


@dataclass(frozen=True)
class Span:
    """A tile's extent along one axis, in input pixels: [start, end), and how many pixels it
    shares with the previous and next tile."""

    start: int
    end: int
    before: int = 0
    after: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def spans(length: int, tile: int, overlap: int, align: int = 1) -> list[Span]:
    """Cover ``[0, length)`` with the fewest spans of at most ``tile`` pixels, adjacent spans
    sharing exactly ``overlap`` pixels and non-adjacent ones none. Sizes are balanced (a 520 px
    side with tile 512 gives two ~270 px tiles, not 512 + 24) and rounded up to ``align``
    (the model's ``multiple_of``) where that still fits in ``tile``."""
    if length <= 0:
        raise ValueError("length must be positive")
    tile = max(1, int(tile))
    if length <= tile:
        return [Span(0, length)]
    overlap = max(0, min(int(overlap), tile // 2))
    n = math.ceil((length - overlap) / (tile - overlap))
    # at least 2 * overlap, so that tile k-1 ends where tile k+1 starts at the latest
    size = max(math.ceil((length - overlap) / n) + overlap, 2 * overlap)
    if align > 1 and _ceil_to(size, align) <= tile:
        size = _ceil_to(size, align)
    stride = size - overlap
    # minimal count for this size: the last span is then longer than the overlap, and every
    # other span ends inside the image (so all overlaps are exactly ``overlap``).
    n = math.ceil((length - overlap) / stride)
    starts = [k * stride for k in range(n)]
    ends = [min(s + size, length) for s in starts]
    return [
        Span(s, e, overlap if k > 0 else 0, overlap if k < n - 1 else 0)
        for k, (s, e) in enumerate(zip(starts, ends, strict=True))
    ]


def feather(length: int, before: int, after: int, margin: float = FEATHER_MARGIN) -> np.ndarray:
    """1-D float32 weights for a tile of ``length`` output pixels whose first ``before`` and
    last ``after`` pixels overlap its neighbours (see the module docstring)."""
    w = np.ones(length, dtype=np.float32)
    for size, sl in ((before, slice(0, before)), (after, slice(length - after, length))):
        if size <= 0:
            continue
        m = int(size * margin)
        if size - 2 * m < 1:
            m = (size - 1) // 2
        d = np.arange(size, dtype=np.float32)
        ramp = np.clip((d + 0.5 - m) / (size - 2 * m), 0.0, 1.0)
        w[sl] = ramp if sl.start == 0 else ramp[::-1]
    return w


def resolve_output(value: np.ndarray | Callable[[], np.ndarray]) -> np.ndarray:
    """A tile output, or a pending one (a callable that waits for it): the array."""
    return value() if callable(value) else value


def blend_tiles(
    image: np.ndarray,
    infer: Infer,
    scale: int,
    tile: int,
    overlap: int,
    write: Write,
    align: int = 1,
    check: Callable[[], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> None:
    """Run ``infer`` over overlapping tiles of ``image`` (H, W, C float32) and stream the
    feather-blended result to ``write(y, x, block)`` in output coordinates (``scale`` x).
    Every output pixel is written exactly once. ``infer(tile)`` must return
    (h*scale, w*scale, C_out) float32, or a callable returning it once the result is ready
    (an accelerator still computing): then the next tile is handed to ``infer`` *before* this
    one is waited for and blended, so the device computes tile k+1 while the CPU blends tile
    k. A synchronous ``infer`` (an array) runs one tile after the other, nothing ahead.
    ``check()`` runs before each tile (cancel), ``on_tile(done, total)`` after each."""
    h, w = image.shape[:2]
    ys = spans(h, tile, overlap, align)
    xs = spans(w, tile, overlap, align)
    order = [(sy, sx) for sy in ys for sx in xs]
    total = len(order)
    s = int(scale)

    def submit(k: int):
        if check is not None:
            check()
        sy, sx = order[k]
        return infer(image[sy.start : sy.end, sx.start : sx.end])

    carry: np.ndarray | None = None  # previous tile row's bottom overlap band, full width
    new_carry: np.ndarray | None = None
    col_carry: np.ndarray | None = None
    pending = submit(0)
    for k, (sy, sx) in enumerate(order):
        following = None
        if callable(pending) and k + 1 < total:
            following = submit(k + 1)  # queue the next tile before waiting for this one
        out = resolve_output(pending)
        if sx is xs[0]:  # a new tile row
            carry, new_carry, col_carry = (new_carry if k else None), None, None
        wy = feather(sy.length * s, sy.before * s, sy.after * s)[:, None, None]
        top, bottom = sy.before * s, sy.after * s
        want = (sy.length * s, sx.length * s)
        if out.shape[:2] != want:
            raise RuntimeError(f"model returned {out.shape[:2]} for a tile, expected {want}")
        out = out.astype(np.float32, copy=True)
        out *= feather(want[1], sx.before * s, sx.after * s)[None, :, None]
        left, right = sx.before * s, sx.after * s
        if col_carry is not None:
            out[:, :left] += col_carry
        col_carry = out[:, want[1] - right :].copy() if right else None
        chunk = out[:, : want[1] - right]
        chunk *= wy
        x0 = sx.start * s
        cw = chunk.shape[1]
        if top:
            assert carry is not None
            chunk[:top] += carry[:, x0 : x0 + cw]
        if bottom:
            if new_carry is None:
                new_carry = np.zeros((bottom, w * s, out.shape[2]), dtype=np.float32)
            new_carry[:, x0 : x0 + cw] = chunk[want[0] - bottom :]
        write(sy.start * s, x0, chunk[: want[0] - bottom])
        if on_tile is not None:
            on_tile(k + 1, total)
        if following is None and k + 1 < total:
            following = submit(k + 1)  # synchronous: nothing runs ahead of the blend
        pending = following


def pad_to_requirements(
    tile: np.ndarray, multiple_of: int = 1, minimum: int = 0, square: bool = False
) -> np.ndarray:
    """Pad (H, W, C) at the bottom/right — reflecting, then repeating the edge when the tile
    is too small to reflect — so the size meets a model's ``size_requirements``."""
    h, w = tile.shape[:2]
    th, tw = max(h, minimum), max(w, minimum)
    th, tw = _ceil_to(th, max(1, multiple_of)), _ceil_to(tw, max(1, multiple_of))
    if square:
        th = tw = max(th, tw)
    if (th, tw) == (h, w):
        return tile
    rh, rw = min(th - h, h - 1), min(tw - w, w - 1)
    out = np.pad(tile, ((0, rh), (0, rw), (0, 0)), mode="reflect") if rh or rw else tile
    return np.pad(out, ((0, th - h - rh), (0, tw - w - rw), (0, 0)), mode="edge")


class AdaptiveTiler:
    """Tiled inference that survives running out of memory.

    ``model(tile) -> output`` works on one (h, w, C) float32 tile, already padded to the
    model's size requirements. ``is_oom(error)`` says whether an exception means "out of
    memory"; then ``on_oom(new_tile)`` runs (free caches) and the tile size halves, down to
    ``min_tile``, below which :class:`OutOfMemory` is raised.
    """

    def __init__(
        self,
        model: Infer,
        scale: int,
        tile: int,
        overlap: int,
        is_oom: Callable[[BaseException], bool],
        multiple_of: int = 1,
        minimum: int = 0,
        square: bool = False,
        min_tile: int = 32,
        check: Callable[[], None] | None = None,
        on_oom: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.scale = int(scale)
        self.tile = max(int(tile), 1)
        self.overlap = max(0, int(overlap))
        self.is_oom = is_oom
        self.multiple_of = max(1, int(multiple_of))
        self.minimum = int(minimum)
        self.square = square
        self.min_tile = max(min_tile, self.minimum, 2 * self.multiple_of)
        self.check = check
        self.on_oom = on_oom
        self.halvings = 0
        self.calls = 0

    def run(
        self,
        image: np.ndarray,
        write: Write,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> None:
        """Upscale ``image`` (H, W, C float32) tile by tile, streaming to ``write``."""
        blend_tiles(
            image,
            self._infer,
            self.scale,
            self.tile,
            self.overlap,
            write,
            align=self.multiple_of,
            check=self.check,
            on_tile=on_tile,
        )

    def run_to_array(self, image: np.ndarray) -> np.ndarray:
        """Like :meth:`run`, collecting the output in one float32 array."""
        h, w = image.shape[:2]
        out: np.ndarray | None = None

        def write(y: int, x: int, block: np.ndarray) -> None:
            nonlocal out
            if out is None:
                out = np.empty((h * self.scale, w * self.scale, block.shape[2]), np.float32)
            out[y : y + block.shape[0], x : x + block.shape[1]] = block

        self.run(image, write)
        assert out is not None
        return out

    def _call(self, tile: np.ndarray) -> np.ndarray:
        h, w = tile.shape[:2]
        padded = pad_to_requirements(tile, self.multiple_of, self.minimum, self.square)
        self.calls += 1
        out = self.model(padded)
        hs, ws = h * self.scale, w * self.scale
        if callable(out):
            return lambda: resolve_output(out)[:hs, :ws]
        return out[:hs, :ws]

    def _infer(self, tile: np.ndarray) -> np.ndarray:
        while True:
            if max(tile.shape[:2]) > self.tile:
                # The tile size shrank after an OOM: split this tile into smaller ones.
                return self.run_to_array(tile)
            try:
                return self._call(tile)
            except Exception as e:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not self.is_oom(e):
                    raise
            # Outside the except block, so the failed call's frames (and tensors) are freed.
            new = max(self.tile // 2, 1)
            if self.multiple_of > 1:
                new = new // self.multiple_of * self.multiple_of
            if new < self.min_tile:
                raise OutOfMemory(
                    f"Out of memory even with {self.tile} px tiles. Try the CPU or a smaller model."
                )
            self.tile = new
            self.halvings += 1
            if self.on_oom is not None:
                self.on_oom(new)
