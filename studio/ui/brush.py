"""Round brush dabs in numpy (no Qt): the brush and eraser for masks and RGBA layers.

A dab's coverage is 1 inside ``hardness * radius`` and falls off smoothly (smoothstep) to 0
at ``radius``. On a mask, the brush raises pixels to the dab's coverage (max) and the eraser
lowers them (min), so overlapping dabs of one stroke don't build up banding. On RGBA layers
the brush composites the colour "over" the pixels; the eraser lowers alpha.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

Rect = tuple[int, int, int, int]


@lru_cache(maxsize=32)
def dab(radius: float, hardness: float, frac: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Coverage in [0, 1] (float32, square of side 2*ceil(radius)+1), centred at
    (ceil(radius) + frac)."""
    r = max(0.5, float(radius))
    n = int(math.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1].astype(np.float32)
    d = np.hypot(xx - frac[0], yy - frac[1])
    inner = r * min(max(hardness, 0.0), 1.0)
    if r - inner < 1e-3:
        cov = (d <= r).astype(np.float32)
    else:
        t = np.clip((r - d) / (r - inner), 0.0, 1.0)
        cov = t * t * (3.0 - 2.0 * t)
    return cov.astype(np.float32)


def stamp(
    pixels: np.ndarray,
    x: float,
    y: float,
    radius: float,
    hardness: float,
    erase: bool = False,
    color: tuple[int, int, int] = (0, 0, 0),
) -> Rect | None:
    """Apply one dab centred at (x, y) in place. Returns the changed rect (x, y, w, h) or None
    when the dab lies outside the pixels."""
    h, w = pixels.shape[:2]
    cx, cy = int(math.floor(x)), int(math.floor(y))
    frac = (round(x - cx - 0.5, 2), round(y - cy - 0.5, 2))
    cov = dab(round(float(radius), 2), round(float(hardness), 2), frac)
    n = cov.shape[0] // 2
    x0, y0, x1, y1 = cx - n, cy - n, cx + n + 1, cy + n + 1
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    a = cov[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    region = pixels[cy0:cy1, cx0:cx1]
    if pixels.ndim == 2:
        if erase:
            np.minimum(region, ((1.0 - a) * 255.0 + 0.5).astype(np.uint8), out=region)
        else:
            np.maximum(region, (a * 255.0 + 0.5).astype(np.uint8), out=region)
    elif erase:
        alpha = region[..., 3]
        np.minimum(alpha, ((1.0 - a) * 255.0 + 0.5).astype(np.uint8), out=alpha)
    else:
        src = region.astype(np.float32) / 255.0
        da = src[..., 3]
        oa = a + da * (1.0 - a)
        col = np.asarray(color, np.float32) / 255.0
        rgb = col * a[..., None] + src[..., :3] * (da * (1.0 - a))[..., None]
        rgb = np.where(oa[..., None] > 0, rgb / np.maximum(oa, 1e-8)[..., None], 0.0)
        region[..., :3] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
        region[..., 3] = np.clip(oa * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cx0, cy0, cx1 - cx0, cy1 - cy0


def union(a: Rect | None, b: Rect | None) -> Rect | None:
    if a is None:
        return b
    if b is None:
        return a
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def line(
    pixels: np.ndarray,
    p0: tuple[float, float],
    p1: tuple[float, float],
    radius: float,
    hardness: float,
    erase: bool = False,
    color: tuple[int, int, int] = (0, 0, 0),
    spacing: float = 0.2,
) -> Rect | None:
    """Dabs from p0 (exclusive) to p1 (inclusive), ``spacing * radius`` apart."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    dist = math.hypot(dx, dy)
    step = max(1.0, spacing * radius)
    n = max(1, int(math.ceil(dist / step)))
    changed: Rect | None = None
    for i in range(1, n + 1):
        t = i / n
        r = stamp(pixels, p0[0] + dx * t, p0[1] + dy * t, radius, hardness, erase, color)
        changed = union(changed, r)
    return changed
