"""numpy <-> QImage conversions. Every QImage returned owns its pixels (``.copy()``): never a
view over numpy memory, which the producer may free or reuse."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def qimage_from_array(array: np.ndarray) -> QImage:
    """(H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA uint8 -> an independent QImage."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape[:2]
    if a.ndim == 2:
        fmt, bpl = QImage.Format.Format_Grayscale8, w
    elif a.shape[2] == 3:
        fmt, bpl = QImage.Format.Format_RGB888, 3 * w
    elif a.shape[2] == 4:
        fmt, bpl = QImage.Format.Format_RGBA8888, 4 * w
    else:
        raise ValueError(f"unsupported image shape {a.shape}")
    return QImage(a.data, w, h, bpl, fmt).copy()


def array_from_qimage(image: QImage, mode: str = "RGBA") -> np.ndarray:
    """A QImage -> a new uint8 array: "RGBA" (H, W, 4), "RGB" (H, W, 3) or "L" (H, W)."""
    fmt = {
        "RGBA": QImage.Format.Format_RGBA8888,
        "RGB": QImage.Format.Format_RGB888,
        "L": QImage.Format.Format_Grayscale8,
    }[mode]
    img = image.convertToFormat(fmt)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    channels = {"RGBA": 4, "RGB": 3, "L": 1}[mode]
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    out = buf[:, : w * channels].reshape(h, w, channels) if channels > 1 else buf[:, :w]
    return np.array(out, copy=True)
