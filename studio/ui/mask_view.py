"""How the mask looks on the canvas: a tint (colour and opacity from the settings, as a
quick mask does) and an outline of "marching ants" (a white line under a black dashed one
whose dashes move), so the masked area is visible over any picture and its edge is exact.

The outline follows the mask's contours (OpenCV ``findContours`` on mask >= 128); it is
recomputed shortly after the mask changes, not on every dab.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QStyleOptionGraphicsItem

DEFAULT_COLOR = "#ff285a"
DEFAULT_OPACITY = 0.5
ANTS_MS = 120  # one step of the dashes


def mask_overlay(mask: np.ndarray, color: QColor | None = None, opacity: float = 0.5):
    """(H, W) mask -> RGBA tint in ``color``, alpha = mask * ``opacity``."""
    c = color or QColor(DEFAULT_COLOR)
    out = np.empty(mask.shape + (4,), np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = c.red(), c.green(), c.blue()
    alpha = int(round(255 * max(0.0, min(1.0, opacity))))
    out[..., 3] = (mask.astype(np.uint16) * alpha // 255).astype(np.uint8)
    return out


def outline_path(mask: np.ndarray) -> QPainterPath:
    """The boundary of mask >= 128 as a path in pixel coordinates (pixel edges)."""
    path = QPainterPath()
    if mask is None or not mask.any():
        return path
    binary = (mask >= 128).astype(np.uint8)
    # Upscale x2 so contours run along pixel edges, not through pixel centres.
    big = cv2.resize(binary, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        pts = c.reshape(-1, 2)
        if len(pts) < 2:
            continue
        path.moveTo(QPointF(*(pts[0] + 0.5) / 2))
        for p in pts[1:]:
            path.lineTo(QPointF(*(p + 0.5) / 2))
        path.closeSubpath()
    return path


class MaskOutlineItem(QGraphicsObject):
    """Marching ants around the mask: call ``set_mask`` (debounced) when it changes."""

    def __init__(self) -> None:
        super().__init__()
        self.path = QPainterPath()
        self.offset = 0.0
        self._pending: np.ndarray | None = None
        self._timer = QTimer(self)  # owned by the item: gone with it
        self._timer.setSingleShot(True)
        self._timer.setInterval(60)
        self._timer.timeout.connect(self._rebuild)
        self.ants = QTimer(self)
        self.ants.setInterval(ANTS_MS)
        self.ants.timeout.connect(self._march)

    def set_mask(self, mask: np.ndarray | None, now: bool = False) -> None:
        self._pending = mask
        if now:
            self._rebuild()
        else:
            self._timer.start()

    def _rebuild(self) -> None:
        self.prepareGeometryChange()
        self.path = outline_path(self._pending) if self._pending is not None else QPainterPath()
        self._pending = None
        self._sync_ants()
        self.update()

    def _sync_ants(self) -> None:
        if self.isVisible() and not self.path.isEmpty():
            if not self.ants.isActive():
                self.ants.start()
        else:
            self.ants.stop()

    def itemChange(self, change, value):  # noqa: N802 - Qt API
        if change == QGraphicsItem.GraphicsItemChange.ItemVisibleHasChanged:
            self._sync_ants()
        return super().itemChange(change, value)

    def _march(self) -> None:
        self.offset = (self.offset + 1) % 8
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return self.path.boundingRect().adjusted(-2, -2, 2, 2)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if self.path.isEmpty():
            return
        white = QPen(QColor(255, 255, 255), 1.5)
        white.setCosmetic(True)
        painter.setPen(white)
        painter.drawPath(self.path)
        black = QPen(QColor(0, 0, 0), 1.5, Qt.PenStyle.CustomDashLine)
        black.setCosmetic(True)
        black.setDashPattern([4, 4])
        black.setDashOffset(self.offset)
        painter.setPen(black)
        painter.drawPath(self.path)
