"""Outpainting geometry and pre-fill: extend the canvas by N px per side (or to an aspect
ratio), pre-fill the new area so a generator starts from plausible colours (edge extension,
then a blur that grows with the distance from the old edge, then noise), and build the mask
that regenerates the new area plus an overlap band of the old image so no seam shows.

The result is an ordinary inpainting job: (canvas, mask) go to any inpainting backend, which
works on the mask's padded crop and pastes back through a feathered mask.
numpy + OpenCV only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import cv2
import numpy as np

from studio.core.errors import BadInput

SIDES = ("left", "right", "top", "bottom")
MAX_EXTEND = 4096


@dataclass(frozen=True)
class Extension:
    """Pixels added on each side."""

    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0

    def __post_init__(self) -> None:
        for name in SIDES:
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0 or v > MAX_EXTEND:
                raise BadInput(f"outpaint {name}={v}: use 0 to {MAX_EXTEND} pixels")

    @property
    def empty(self) -> bool:
        return not (self.left or self.right or self.top or self.bottom)

    def passes(self) -> list[Extension]:
        """The extension split into at most two passes, left/right first, then top/bottom.
        Opposite sides give separate mask blobs (two small crops in one job); adjacent sides
        would join at the corner into one L- or ring-shaped blob whose crop is the whole
        canvas, so they go in separate passes. The second pass spans the corners."""
        out = [
            Extension(left=self.left, right=self.right),
            Extension(top=self.top, bottom=self.bottom),
        ]
        return [e for e in out if not e.empty]

    def new_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(w, h) of the extended canvas for an image of ``size`` (w, h)."""
        w, h = size
        return w + self.left + self.right, h + self.top + self.bottom


def to_aspect(size: tuple[int, int], aspect: float, multiple: int = 1) -> Extension:
    """The smallest extension that brings ``size`` (w, h) to width/height = ``aspect``, split
    evenly between the two sides that grow (the image stays centred). The grown side is
    rounded up to a multiple of ``multiple`` (1 = the exact ratio, to the pixel)."""
    if not (aspect > 0 and math.isfinite(aspect)):
        raise BadInput(f"bad aspect ratio {aspect!r}")
    w, h = size
    if w / h < aspect:  # too narrow: widen
        new_w = math.ceil(h * aspect / multiple) * multiple
        extra = max(0, new_w - w)
        return Extension(left=extra // 2, right=extra - extra // 2)
    new_h = math.ceil(w / aspect / multiple) * multiple
    extra = max(0, new_h - h)
    return Extension(top=extra // 2, bottom=extra - extra // 2)


def parse_aspect(text: str) -> float:
    """ "16:9", "16/9" or "1.777" -> 1.777..."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:[:/x]\s*(\d+(?:\.\d+)?))?\s*", text)
    if not m:
        raise BadInput(f"bad aspect ratio {text!r} (use W:H such as 16:9, or a number)")
    a = float(m.group(1)) / float(m.group(2) or 1)
    if a <= 0 or not math.isfinite(a):
        raise BadInput(f"bad aspect ratio {text!r}")
    return a


def parse_extension(text: str, size: tuple[int, int] | None = None) -> Extension:
    """Parse an outpaint spec: "left=128,right=128", "all=64", "x=64,y=32" (both sides of an
    axis), or an aspect ratio "16:9" / "aspect=16:9" (needs ``size``)."""
    text = text.strip()
    if not text:
        raise BadInput("empty outpaint spec (use e.g. left=128,right=128 or 16:9)")
    spec = text[len("aspect=") :] if text.startswith("aspect=") else text
    if "=" not in spec:
        if size is None:
            raise BadInput("an aspect-ratio outpaint needs the image size")
        return to_aspect(size, parse_aspect(spec))
    sides = dict.fromkeys(SIDES, 0)
    groups = {"all": SIDES, "x": ("left", "right"), "y": ("top", "bottom")}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        try:
            px = int(value.strip().removesuffix("px"))
        except ValueError:
            raise BadInput(f"outpaint {part.strip()!r}: the value must be whole pixels") from None
        if key in SIDES:
            sides[key] = px
        elif key in groups:
            for s in groups[key]:
                sides[s] = px
        else:
            raise BadInput(f"outpaint {key!r}: use left, right, top, bottom, x, y or all")
    ext = Extension(**sides)
    if ext.empty:
        raise BadInput("the outpaint spec adds no pixels")
    return ext


def _distance_from_original(h: int, w: int, ext: Extension) -> np.ndarray:
    """Chebyshev-like distance (float32, px) of each canvas pixel from the original image
    rectangle; 0 inside it."""
    H, W = h + ext.top + ext.bottom, w + ext.left + ext.right
    xs = np.arange(W, dtype=np.float32)
    ys = np.arange(H, dtype=np.float32)
    dx = np.maximum(np.maximum(ext.left - xs, xs - (ext.left + w - 1)), 0)
    dy = np.maximum(np.maximum(ext.top - ys, ys - (ext.top + h - 1)), 0)
    return np.maximum(dx[None, :], dy[:, None])


def prefill(
    image: np.ndarray,
    ext: Extension,
    blur: float = 0.25,
    noise: float = 6.0,
    seed: int = 0,
) -> np.ndarray:
    """The extended canvas with the new area pre-filled: (1) edge extension (each new pixel
    copies the nearest original edge pixel), (2) a Gaussian blur whose weight grows linearly
    with the distance d from the old edge, w = min(1, d / D) with D the widest extension, so
    the fill is sharp where it touches the image and smooth far away, (3) zero-mean Gaussian
    noise of std ``noise`` (0-255 scale) times the same weight, which gives a diffusion model
    texture to work from. ``blur`` is the blur sigma as a fraction of D. The original pixels
    are copied unchanged."""
    if ext.empty:
        return image.copy()
    h, w = image.shape[:2]
    canvas = cv2.copyMakeBorder(
        image, ext.top, ext.bottom, ext.left, ext.right, cv2.BORDER_REPLICATE
    )
    reach = max(ext.left, ext.right, ext.top, ext.bottom)
    dist = _distance_from_original(h, w, ext)
    weight = np.clip(dist / reach, 0.0, 1.0)[..., None]
    sigma = max(1.0, blur * reach)
    # Blur a downscaled copy: a wide Gaussian at full size would cost O(sigma) per pixel.
    scale = min(1.0, 8.0 / sigma)
    small = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(0.5, sigma * scale))
    blurred = cv2.resize(small, (canvas.shape[1], canvas.shape[0]), interpolation=cv2.INTER_LINEAR)
    if blurred.ndim == 2:
        blurred = blurred[..., None]
    canvas_f = canvas.astype(np.float32)
    if canvas_f.ndim == 2:
        canvas_f = canvas_f[..., None]
    out = (1.0 - weight) * canvas_f + weight * blurred.astype(np.float32)
    if noise > 0:
        rng = np.random.default_rng(seed)
        n = rng.normal(0.0, noise, size=out.shape[:2] + (1,)).astype(np.float32)
        out = out + weight * n
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(canvas.shape)
    if out.ndim == 3 and out.shape[2] == 4:
        out[..., 3] = 255  # the new area is opaque
    # Bit-exact original, whatever rounding did.
    out[ext.top : ext.top + h, ext.left : ext.left + w] = image
    return out


def outpaint_mask(size: tuple[int, int], ext: Extension, overlap: int = 32) -> np.ndarray:
    """The mask for an extended canvas of the original ``size`` (w, h): 255 on the new area
    and on a band of ``overlap`` px of the original along each side that grew (the model
    redraws the band so the old and new areas meet without a seam), 0 elsewhere."""
    w, h = size
    W, H = ext.new_size(size)
    mask = np.full((H, W), 255, np.uint8)
    x0 = ext.left + (min(overlap, w // 2) if ext.left else 0)
    x1 = ext.left + w - (min(overlap, w // 2) if ext.right else 0)
    y0 = ext.top + (min(overlap, h // 2) if ext.top else 0)
    y1 = ext.top + h - (min(overlap, h // 2) if ext.bottom else 0)
    mask[y0:y1, x0:x1] = 0
    return mask


def extend(
    image: np.ndarray,
    ext: Extension,
    overlap: int = 32,
    blur: float = 0.25,
    noise: float = 6.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(pre-filled canvas, mask) for outpainting ``image`` by ``ext``: see :func:`prefill` and
    :func:`outpaint_mask`."""
    if ext.empty:
        raise BadInput("the outpaint adds no pixels")
    h, w = image.shape[:2]
    W, H = ext.new_size((w, h))
    if W > 16384 or H > 16384:
        raise BadInput(f"the outpainted image would be {W}x{H}: at most 16384 px a side")
    canvas = prefill(image, ext, blur=blur, noise=noise, seed=seed)
    return canvas, outpaint_mask((w, h), ext, overlap)
