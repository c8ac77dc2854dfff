"""The Control panel's live Canny overlay on the canvas.

It is drawn only while the user is editing a Canny guide: the Control panel is the dock in
front (tabbed docks behind it still report isVisible() true, so the dock's visibilityChanged
tells, through ``set_shown``), "Live preview" is on, and the active layer is a Canny control
layer. Then it shows that layer's edges for the panel's current thresholds, computed from the
layer's own source (the image layer it was made from, or the visible image when it was made
from that) inside the layer's own rectangle. Anything else (no control layer, the mask or a
photo active, another panel in front) draws nothing over the photo: edges of the whole
picture over the picture only emboss it.

A Canny layer records its source when it is made (``source_ref``): the uid of an image
layer, or "composite". A guide without one (made before it was recorded) has no known
source, and no overlay.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from PySide6.QtCore import QObject, QTimer, Slot

from studio.core.canny import canny_edges, to_gray
from studio.ui.panels.control_model import place

PREVIEW_DEBOUNCE_MS = 15
COMPOSITE = "composite"  # a guide made from the visible image (image layers only)


def is_canny_layer(layer) -> bool:
    return (
        layer is not None and layer.kind == "control" and layer.metadata.get("control") == "canny"
    )


def find_layer(doc, uid):
    return next((la for la in doc.layers if la.uid == uid), None)


def layer_source(host, layer) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """(RGBA pixels the Canny ``layer`` was made from, cropped to the layer's rectangle;
    that rectangle (x, y, w, h)), or None when its source is not known or gone."""
    doc = host.model.doc
    ref = layer.metadata.get("source")
    w, h = doc.width, doc.height
    if ref == COMPOSITE:
        full = host.composite()
    else:
        src = find_layer(doc, ref) if isinstance(ref, int) else None
        if src is None or src.kind != "image":
            return None
        full = place(src.pixels, tuple(src.offset), (w, h))
    if full is None:
        return None
    x, y = (int(v) for v in layer.offset)
    lw, lh = layer.size
    x0, y0 = max(0, x), max(0, y)
    crop = np.ascontiguousarray(full[y0 : y + lh, x0 : x + lw])
    if crop.size == 0:
        return None
    return crop, (x0, y0, crop.shape[1], crop.shape[0])


class CannyPreview(QObject):
    """The overlay (see the module doc) of the panel whose settings are ``state``
    (``low``, ``high``, ``blur``, ``live``), drawn through ``host.show_preview``."""

    def __init__(self, host, state, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.state = state
        self.shown = True  # the panel's dock is the one in front (set_shown)
        self.last_ms = 0.0  # how long the last overlay took
        self._drawn = False  # an overlay of ours is on the canvas
        self._serial = 0  # bumped when any pixels or layers change
        self._source: tuple | None = None  # (key, (crop, region))
        self._gray: tuple | None = None  # (key, blurred luma of the crop)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self.timer.timeout.connect(self.update)

    def edited_layer(self):
        """The Canny layer being edited (the active layer), or None."""
        doc = self.host.model.doc
        if doc.is_empty:
            return None
        layer = doc.active_layer
        return layer if is_canny_layer(layer) else None

    def wanted(self) -> bool:
        return bool(self.shown and self.state.live and self.edited_layer() is not None)

    @Slot()
    def invalidate(self) -> None:
        """Pixels or layers changed: the next overlay reads its source again."""
        self._serial += 1
        self._source = None
        self.schedule()

    @Slot()
    def schedule(self) -> None:
        """Redraw soon (debounced), or take the overlay away at once when none is wanted."""
        if self.wanted():
            self.timer.start()
        else:
            self.clear()

    def set_shown(self, shown: bool) -> None:
        self.shown = shown
        self.schedule()

    def clear(self) -> None:
        self.timer.stop()
        if self._drawn:
            self._drawn = False
            self.host.clear_preview()

    @Slot()
    def update(self) -> None:
        """Recompute the edges and show them over the canvas: white edges, transparent
        elsewhere."""
        layer = self.edited_layer() if self.shown and self.state.live else None
        src = self._source_of(layer) if layer is not None else None
        if src is None:
            self.clear()
            return
        t0 = time.perf_counter()
        crop, region = src
        low, high = self.state.thresholds()
        edges = canny_edges(self._luma(crop), low, high)
        self.host.show_preview(cv2.merge([edges, edges, edges, edges]), region)
        self._drawn = True
        self.last_ms = (time.perf_counter() - t0) * 1000.0

    def _source_of(self, layer):
        key = (layer.uid, layer.metadata.get("source"), tuple(layer.offset), layer.size)
        key += (self._serial,)
        if self._source is None or self._source[0] != key:
            self._source = (key, layer_source(self.host, layer))
        return self._source[1]

    def _luma(self, crop: np.ndarray) -> np.ndarray:
        """The (blurred) luma of the source crop, kept while only the thresholds change: a
        slider move then costs one cv2.Canny."""
        key = (self._source[0] if self._source else None, int(self.state.blur))
        if self._gray is None or self._gray[0] != key:
            gray = to_gray(crop)
            blur = int(self.state.blur)
            if blur > 0:
                gray = cv2.GaussianBlur(gray, (blur | 1, blur | 1), 0)
            self._gray = (key, gray)
        return self._gray[1]
