"""Classical resampling: Lanczos up/downscaling and unsharp-mask sharpening.

Lanczos-3 (Duchon 1979, "Lanczos filtering in one and two dimensions") reconstructs with the
windowed sinc kernel

    L(x) = sinc(x) * sinc(x / a)   for |x| < a,  0 otherwise   (a = 3, sinc(x) = sin(pi x)/(pi x)).

Pillow implements it as a separable filter whose support is widened by the scale factor when
shrinking, so a downscale low-pass filters before decimating (no aliasing / moire) — that is
what makes it a *high-quality* downscale, unlike OpenCV's fixed 8x8 ``INTER_LANCZOS4``.

8-bit RGB and gray images use Pillow's native 8-bit resampler (no float copy of what may be
a 16k-pixel output). Float images and RGBA are resampled per channel in float32 (Pillow mode
"F"); RGBA colour is premultiplied by alpha first so transparent pixels do not bleed their
(meaningless) colour into visible edges.

Unsharp mask (the darkroom technique; e.g. Gonzalez & Woods, "Digital Image Processing",
sec. 3.6.3): ``out = img + amount * (img - G_sigma * img)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from studio.core.errors import BadInput

MAX_SIDE = 16384


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise BadInput(f"cannot resize to {w}x{h}")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise BadInput(f"{w}x{h} is too large (at most {MAX_SIDE} px a side)")
    return w, h


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-resize one float32 (H, W) plane to ``size`` (w, h)."""
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), "F")
    return np.asarray(im.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)


def resize_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-3 resize of a float image (H, W) or (H, W, C), values in [0, 1], to ``size``
    (w, h). With 4 channels the last is alpha and colour is resampled premultiplied. The
    result is clipped to [0, 1] (Lanczos rings slightly past the input range)."""
    w, h = _check_size(size)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        return np.clip(_resize_plane(img, (w, h)), 0.0, 1.0)
    channels = img.shape[2]
    out = np.empty((h, w, channels), dtype=np.float32)
    if channels == 4:
        alpha = img[..., 3]
        a = np.clip(_resize_plane(alpha, (w, h)), 0.0, 1.0)
        out[..., 3] = a
        safe = np.where(a > 1e-6, a, 1.0)
        for c in range(3):
            premul = _resize_plane(img[..., c] * alpha, (w, h))
            out[..., c] = np.where(a > 1e-6, premul / safe, 0.0)
    else:
        for c in range(channels):
            out[..., c] = _resize_plane(img[..., c], (w, h))
    return np.clip(out, 0.0, 1.0, out=out)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 with rounding to nearest."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-3 resize of a uint8 or float image to ``size`` (w, h); keeps the dtype.
    Downscaling is antialiased (the kernel widens with the reduction factor)."""
    if image.dtype == np.uint8:
        if (image.shape[1], image.shape[0]) == tuple(size):
            return image.copy()
        if image.ndim == 2 or image.shape[2] == 3:
            # Pillow's native 8-bit path: no float copy of a possibly huge image (a 16k
            # output would need 3 GiB as float32). It rounds and clips between its two
            # passes, so it differs from the float path by a fraction of a level on average.
            w, h = _check_size(size)
            mode = "L" if image.ndim == 2 else "RGB"
            im = Image.fromarray(np.ascontiguousarray(image), mode)
            return np.asarray(im.resize((w, h), Image.Resampling.LANCZOS)).copy()
        return to_uint8(resize_float(to_float(image), size))
    return resize_float(image, size)


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(w, h) * scale, rounded, at least 1 px."""
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def unsharp_mask(
    image: np.ndarray,
    amount: float = 0.5,
    radius: float = 1.0,
    threshold: float = 0.0,
    strip: int = 1024,
) -> np.ndarray:
    """Sharpen with an unsharp mask: ``img + amount * (img - gaussian(img, sigma=radius))``.

    ``threshold`` (0..1 of full range) leaves pixels whose local contrast is below it alone,
    so flat areas and noise are not amplified. Alpha (4th channel) is never sharpened.
    Works on uint8 or float [0, 1] images and keeps the dtype. Processed in horizontal
    strips of ``strip`` rows (plus the blur's reach above and below), so the float working
    copy stays small on huge images; the result is identical to doing it in one piece."""
    if amount <= 0:
        return image.copy()
    if radius <= 0:
        raise BadInput("sharpen radius must be positive")
    is_u8 = image.dtype == np.uint8
    out = image.copy()
    h = image.shape[0]
    reach = int(math.ceil(4 * radius)) + 2  # OpenCV's float Gaussian kernel is 8 sigma + 1 wide
    for y0 in range(0, h, max(1, strip)):
        y1 = min(h, y0 + strip)
        a, b = max(0, y0 - reach), min(h, y1 + reach)
        part = image[a:b]
        img = to_float(part) if is_u8 else np.asarray(part, dtype=np.float32).copy()
        color = img if img.ndim == 2 else img[..., : min(3, img.shape[2])]
        blurred = cv2.GaussianBlur(
            color, (0, 0), sigmaX=float(radius), borderType=cv2.BORDER_REFLECT
        )
        detail = color - blurred
        if threshold > 0:
            detail = np.where(np.abs(detail) >= threshold, detail, 0.0)
        sharpened = np.clip(color + float(amount) * detail, 0.0, 1.0)
        rows = slice(y0 - a, y1 - a)
        done = to_uint8(sharpened[rows]) if is_u8 else sharpened[rows].astype(np.float32)
        if out.ndim == 2:
            out[y0:y1] = done
        else:
            out[y0:y1, :, : color.shape[2]] = done
    return out


def upscale_lanczos(
    image: np.ndarray, scale: float, sharpen: float = 0.0, radius: float | None = None
) -> np.ndarray:
    """The classical upscaler: Lanczos-3 to ``scale`` x, then an optional unsharp mask of
    strength ``sharpen`` (0 = off; 0.3-1.0 typical) with a radius that grows with the scale
    (the blur Lanczos leaves is about ``scale/2`` output pixels wide)."""
    if not (scale > 0) or not math.isfinite(scale):
        raise BadInput(f"scale must be a positive number (got {scale})")
    h, w = image.shape[:2]
    out = resize(image, scaled_size(w, h, scale))
    if sharpen > 0:
        out = unsharp_mask(out, amount=sharpen, radius=radius or max(0.8, scale / 2.0))
    return out
