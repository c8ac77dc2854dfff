"""Canny edge maps for ControlNet's canny/scribble guides (Canny 1986, "A Computational
Approach to Edge Detection"), computed by OpenCV's ``cv2.Canny``.

The result is what ControlNet canny models were trained on: white (255) edges on black, as an
RGB uint8 image the size of the input.
"""

from __future__ import annotations

import cv2
import numpy as np

from studio.core.errors import BadInput

DEFAULT_LOW = 100
DEFAULT_HIGH = 200


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luma of a gray, RGB or RGBA image. Transparent pixels count as black, so
    the outline of a cut-out layer becomes an edge."""
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise BadInput(f"Canny needs a gray, RGB or RGBA image, got shape {image.shape}")
    rgb = image[..., :3]
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.uint16)
        rgb = ((rgb.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def canny(
    image: np.ndarray,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    blur: int = 0,
    l2_gradient: bool = False,
) -> np.ndarray:
    """Edge map of ``image`` as (H, W, 3) uint8, white edges on black.

    ``low``/``high`` are the hysteresis thresholds on the Sobel gradient magnitude (0..1000 is
    a useful range; they are swapped if given in the wrong order). ``blur`` > 0 smooths first
    with a Gaussian of that kernel size (made odd), which suppresses texture edges.
    """
    return np.repeat(canny_edges(image, low, high, blur, l2_gradient)[:, :, None], 3, axis=2)


def canny_edges(
    image: np.ndarray,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    blur: int = 0,
    l2_gradient: bool = False,
) -> np.ndarray:
    """Like :func:`canny`, as a single (H, W) uint8 channel (0 or 255)."""
    if low < 0 or high < 0:
        raise BadInput("Canny thresholds must be >= 0")
    if low > high:
        low, high = high, low
    gray = to_gray(image)
    if blur and blur > 0:
        k = int(blur) | 1
        gray = cv2.GaussianBlur(gray, (k, k), 0)
    return cv2.Canny(gray, float(low), float(high), L2gradient=bool(l2_gradient))


def scribble_from_layer(image: np.ndarray, threshold: int = 32) -> np.ndarray:
    """A scribble control image from strokes painted on a control layer, as ControlNet
    scribble expects (white strokes on black). On an RGBA layer every stroke counts, whatever
    its colour (its alpha above ``threshold``; the eraser removes it); on an RGB/gray image
    the light pixels do."""
    if image.ndim == 2:
        on = image > threshold
    elif image.shape[2] == 4:
        on = image[..., 3] > threshold
    else:
        on = image[..., :3].max(axis=2) > threshold
    out = np.zeros((*on.shape, 3), dtype=np.uint8)
    out[on] = 255
    return out
