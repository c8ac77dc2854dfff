"""Masks for inpainting: the crop geometry (bounding box, padded box snapped to a multiple of
8, model size), resizing, feathering and paste-back, and the mask edits of the Inpaint panel
(grow/shrink, feather, invert, fill holes, fill, clear).

Masks are (H, W) uint8, 255 = regenerate this pixel, 0 = keep. Boxes are (x, y, w, h) in
full-image pixel coordinates. numpy + OpenCV only (no torch, no Qt).

Inpainting works on the padded crop of the mask, not the whole image: the crop is resized to
what the model wants, inpainted, resized back and pasted through a feathered mask, so a small
mask on a large photo costs about what the crop costs, and every pixel outside the crop box
stays bit-identical to the input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from studio.core.errors import BadInput

Box = tuple[int, int, int, int]

#: mask values above this count as "selected" when a hard decision is needed
THRESHOLD = 127


# -- validation --------------------------------------------------------------------------------
def check_mask(mask: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Return ``mask`` as a contiguous (H, W) uint8 array matching ``image_shape`` (H, W, ...),
    or raise BadInput with one line saying what is wrong. A (H, W, C) mask uses its first
    channel (or alpha, for 4 channels)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 3] if m.shape[2] == 4 else m[..., 0]
    if m.ndim != 2:
        raise BadInput(f"the mask must be a 2-D image, got shape {tuple(np.shape(mask))}")
    h, w = image_shape[:2]
    if m.shape != (h, w):
        raise BadInput(f"the mask is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
    if m.dtype == np.bool_:
        m = m.astype(np.uint8) * 255
    elif m.dtype != np.uint8:
        m = np.clip(m, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(m)


def binary(mask: np.ndarray, threshold: int = THRESHOLD) -> np.ndarray:
    """Hard 0/255 mask: 255 where ``mask > threshold``."""
    return np.where(mask > threshold, np.uint8(255), np.uint8(0))


# -- crop geometry -------------------------------------------------------------------------------
def bbox(mask: np.ndarray, threshold: int = 0) -> Box | None:
    """Tight bounding box (x, y, w, h) of the pixels where ``mask > threshold``; None if none."""
    hard = mask if threshold == 0 else (mask > threshold).view(np.uint8)
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(hard, dtype=np.uint8))
    return None if w == 0 or h == 0 else (int(x), int(y), int(w), int(h))


def _snap_span(lo: int, hi: int, limit: int, multiple: int) -> tuple[int, int]:
    """Grow [lo, hi) to a length that is a multiple of ``multiple`` (when the image allows),
    growing on both sides and shifting back inside [0, limit)."""
    length = hi - lo
    want = min(limit, math.ceil(length / multiple) * multiple)
    extra = want - length
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(0, lo), hi


def crop_box(box: Box, image_size: tuple[int, int], padding: int = 32, multiple: int = 8) -> Box:
    """The padded crop box around ``box``: ``padding`` px on every side (context for the
    model), clamped to the image (``image_size`` = (w, h)), and grown so that width and height
    are multiples of ``multiple`` where the image is large enough."""
    x, y, w, h = box
    iw, ih = image_size
    if padding < 0:
        raise BadInput("the mask padding must be 0 or more pixels")
    x0, y0 = max(0, x - padding), max(0, y - padding)
    x1, y1 = min(iw, x + w + padding), min(ih, y + h + padding)
    x0, x1 = _snap_span(x0, x1, iw, multiple)
    y0, y1 = _snap_span(y0, y1, ih, multiple)
    return (x0, y0, x1 - x0, y1 - y0)


def model_size(
    size: tuple[int, int], target: int = 512, multiple: int = 8, max_side: int | None = None
) -> tuple[int, int]:
    """The size (w, h) to run a model on a crop of ``size``: scaled (up or down) so its area is
    about ``target``**2 with the crop's aspect ratio kept, each side a multiple of
    ``multiple``, and no side above ``max_side`` (default 2 * target). SD1.5 wants
    target=512, SDXL 1024."""
    w, h = size
    if w <= 0 or h <= 0:
        raise BadInput("empty crop")
    max_side = max_side or 2 * target
    s = target / math.sqrt(w * h)
    s = min(s, max_side / max(w, h))
    mw = max(multiple, int(round(w * s / multiple)) * multiple)
    mh = max(multiple, int(round(h * s / multiple)) * multiple)
    return mw, mh


def pad_to_multiple(image: np.ndarray, multiple: int = 8) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad right/bottom by reflection so both sides are multiples of ``multiple``. Returns the
    padded array and the original (w, h) to crop back to."""
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, (w, h)
    mode = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, mode), (w, h)


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The (copied) pixels of ``array`` inside ``box``."""
    x, y, w, h = box
    return array[y : y + h, x : x + w].copy()


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (w, h): area averaging when shrinking (no aliasing), Lanczos when
    enlarging. uint8 in, uint8 out (masks too)."""
    w, h = size
    ah, aw = array.shape[:2]
    if (aw, ah) == (w, h):
        return array.copy()
    interp = cv2.INTER_AREA if w * h < aw * ah else cv2.INTER_LANCZOS4
    out = cv2.resize(array, (w, h), interpolation=interp)
    if array.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


# -- mask edits (panel tools) ------------------------------------------------------------------
def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Morphological dilation by a disk of radius ``pixels`` (negative shrinks)."""
    if pixels < 0:
        return shrink(mask, -pixels)
    if pixels == 0:
        return mask.copy()
    return cv2.dilate(mask, _disk(int(pixels)))


def shrink(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Morphological erosion by a disk of radius ``pixels`` (negative grows). Pixels outside
    the image count as unselected, so a mask touching the border shrinks away from it too."""
    if pixels < 0:
        return grow(mask, -pixels)
    if pixels == 0:
        return mask.copy()
    return cv2.erode(mask, _disk(int(pixels)), borderType=cv2.BORDER_CONSTANT, borderValue=0)


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of the mask with sigma = radius / 2 (the soft edge is about ``radius``
    px wide on each side of the boundary). uint8 in, uint8 out."""
    if radius <= 0:
        return mask.copy()
    sigma = radius / 2.0
    k = 2 * int(math.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(
        mask, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE
    )


def invert(mask: np.ndarray) -> np.ndarray:
    """255 - mask."""
    return 255 - mask


def fill_holes(mask: np.ndarray, threshold: int = THRESHOLD) -> np.ndarray:
    """Select the enclosed holes of the mask: flood-fill the unselected area from the image
    border; whatever unselected pixels the fill cannot reach are holes and become 255."""
    hard = binary(mask, threshold)
    h, w = hard.shape
    # Pad by one unselected pixel so the flood reaches around the whole border.
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = hard
    flood_mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(padded, flood_mask, (0, 0), 128)
    holes = padded[1:-1, 1:-1] == 0
    out = mask.copy()
    out[holes] = 255
    return out


def fill(mask: np.ndarray) -> np.ndarray:
    """Select everything (all 255)."""
    return np.full_like(mask, 255)


def clear(mask: np.ndarray) -> np.ndarray:
    """Select nothing (all 0)."""
    return np.zeros_like(mask)


# -- paste-back ----------------------------------------------------------------------------------
def blend_alpha(mask: np.ndarray, radius: int) -> np.ndarray:
    """The paste-back weight (float32 in [0, 1]) for an inpainted crop: the mask itself, with a
    soft edge falling off *outside* it (grow by radius/2, then feather by radius): the weight
    is 0, and the original pixel kept exactly, farther than ``2 * radius`` px from the mask
    (tests/engine/diffusion/test_inpaint_keeps_photo.py). Masked pixels always get weight >=
    their mask value, so what the user painted is fully replaced while the model's result fades
    into the original around it."""
    m = mask.astype(np.float32) / 255.0
    if radius <= 0:
        return m
    soft = feather(grow(mask, max(1, radius // 2)), radius).astype(np.float32) / 255.0
    return np.maximum(m, soft)


def paste_back(
    image: np.ndarray, patch: np.ndarray, box: Box, alpha: np.ndarray, inplace: bool = False
) -> np.ndarray:
    """Composite ``patch`` (the inpainted crop, same size as ``box``) over ``image`` at ``box``
    with per-pixel weight ``alpha`` (crop-sized float in [0, 1]): out = a*patch + (1-a)*image.
    Pixels outside ``box``, and inside it where alpha == 0, are copied bit-for-bit. Channels:
    an RGB patch on an RGBA image is opaque: the alpha channel is composited "over" too; a
    grey (H, W) patch goes on a grey (H, W) image.
    ``inplace`` writes into ``image`` instead of a copy (one copy for many boxes)."""
    x, y, w, h = box
    if patch.shape[:2] != (h, w) or alpha.shape[:2] != (h, w):
        raise ValueError(f"patch {patch.shape} / alpha {alpha.shape} do not match box {box}")
    out = image if inplace else image.copy()
    region = out[y : y + h, x : x + w]
    if region.ndim == 2:  # a grey image: one channel, written through this view
        region = region[..., None]
    channels = patch.shape[2] if patch.ndim == 3 else 1
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0)[..., None]
    src = patch.reshape(h, w, channels).astype(np.float32)
    dst = region[..., :channels].astype(np.float32)
    mixed = np.clip(np.rint(a * src + (1.0 - a) * dst), 0, 255).astype(np.uint8)
    touched = a[..., 0] > 0
    region[..., :channels][touched] = mixed[touched]
    if image.ndim == 3 and image.shape[2] == 4 and channels == 3:
        # The patch is opaque: Porter-Duff "over", alpha_out = a + (1 - a) * alpha_in.
        over = a[..., 0] * 255.0 + (1.0 - a[..., 0]) * region[..., 3].astype(np.float32)
        region[..., 3][touched] = np.clip(np.rint(over), 0, 255).astype(np.uint8)[touched]
    return out


# -- regions ---------------------------------------------------------------------------------------
def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def regions(
    mask: np.ndarray, padding: int = 32, multiple: int = 8, threshold: int = 0
) -> list[Box]:
    """The crop boxes to inpaint ``mask`` with: one padded, snapped box (see
    :func:`crop_box`) per connected blob of the mask, with boxes that overlap merged (repeated
    until none overlap), so two small strokes at opposite corners cost two small crops, not
    one crop of the whole image. Disjoint boxes mean each holds only its own blobs. Sorted
    top-to-bottom, left-to-right; empty for an empty mask."""
    h, w = mask.shape[:2]
    whole = bbox(mask, threshold)
    if whole is None:
        return []
    # Label blobs inside the tight bounding box only: the cost follows the mask, not the image.
    bx, by, bw, bh = whole
    hard = (mask[by : by + bh, bx : bx + bw] > threshold).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    if n > 65:  # speckle: per-blob boxes would not pay off; one box around everything
        return [crop_box(whole, (w, h), padding, multiple)]
    boxes = [
        crop_box(
            (bx + int(stats[i, 0]), by + int(stats[i, 1]), int(stats[i, 2]), int(stats[i, 3])),
            (w, h),
            padding,
            multiple,
        )
        for i in range(1, n)
    ]
    merged = True
    while merged:
        merged = False
        out: list[Box] = []
        for b in boxes:
            for i, o in enumerate(out):
                if _overlaps(b, o):
                    out[i] = crop_box(_union(b, o), (w, h), 0, multiple)
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return sorted(boxes, key=lambda b: (b[1], b[0]))
