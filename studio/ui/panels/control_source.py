"""What the Control panel's new guides are made from: the visible image or an image layer
(the "Source" choice and the active layer), cropped to the generation region and cached
until the document, the selection or the choice changes."""

from __future__ import annotations

import numpy as np

from studio.ui.panels.control_model import place
from studio.ui.panels.control_preview import COMPOSITE, find_layer, is_canny_layer


class GuideSource:
    """The source of ``host``'s document for the panel whose settings are ``state``."""

    def __init__(self, host, state) -> None:
        self.host = host
        self.state = state  # the panel's ControlModel (its ``source`` choice)
        self.cached: tuple[np.ndarray, tuple[int, int, int, int]] | None = None

    def doc_size(self) -> tuple[int, int]:
        try:
            return tuple(self.host.image_size())  # type: ignore[return-value]
        except Exception:  # noqa: BLE001
            return (0, 0)

    def active_layer(self):
        model = self.host.model
        if model.doc.is_empty:
            return None
        return model.doc.active_layer

    def region_text(self) -> str:
        """Where the guides are made: "whole image, W×H", "selection at X,Y, W×H" or "no
        image"."""
        w, h = self.doc_size()
        if not w or not h:
            return "no image"
        x, y, rw, rh = self.host.selection_rect()
        where = "whole image" if (rw, rh) == (w, h) else f"selection at {x},{y}"
        return f"{where}, {rw}×{rh}"

    def image(self) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """(RGBA crop of the source inside the generation region, region), cached until
        ``cached`` is reset."""
        if self.cached is not None:
            return self.cached
        w, h = self.doc_size()
        if not w or not h:
            return None
        full = self._full(w, h)
        if full is None:
            return None
        x, y, rw, rh = self.host.selection_rect()
        crop = np.ascontiguousarray(full[y : y + rh, x : x + rw])
        if crop.size == 0:
            return None
        self.cached = (crop, (x, y, crop.shape[1], crop.shape[0]))
        return self.cached

    def ref(self) -> int | str:
        """The uid of an image layer, or COMPOSITE (the visible image). With "Active layer"
        chosen: the active image layer; a Canny guide active, the source it was made from
        (its siblings share it); the mask or a pose or scribble layer active, the visible
        image."""
        layer = self.active_layer()
        if self.state.source != "layer" or layer is None:
            return COMPOSITE
        if is_canny_layer(layer):
            ref = layer.metadata.get("source", COMPOSITE)
            return ref if find_layer(self.host.model.doc, ref) is not None else COMPOSITE
        return layer.uid if layer.kind == "image" else COMPOSITE

    def _full(self, w: int, h: int) -> np.ndarray | None:
        ref = self.ref()
        layer = find_layer(self.host.model.doc, ref) if ref != COMPOSITE else None
        if layer is not None:
            return place(layer.pixels, tuple(layer.offset), (w, h))
        return self.host.composite()
