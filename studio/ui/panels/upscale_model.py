"""The Upscale panel's state, without widgets: the model (a catalog id, a file or Lanczos),
the source, scale, tile, overlap, Lanczos sharpening and where the result goes. Properties
persist themselves through the typed settings (``studio.ui.properties``; the model choice is
not persisted: the panel picks an installed model over Lanczos, as before), and
``request(image)`` turns the state into an ``UpscaleRequest``, so what Upscale sends is
testable without a window.
"""

from __future__ import annotations

import numpy as np

from studio.engine.jobs import UpscaleRequest
from studio.ui.properties import PanelModel, Property

LANCZOS = "lanczos"
MAX_SIDE = 16384  # the largest result side the panel asks for


class UpscaleModel(PanelModel):
    """What the Upscale panel shows and sends."""

    model = Property(LANCZOS)  # LANCZOS, a catalog id or a model file's path
    source = Property("composite", setting="upscale_source")  # "composite" | "layer"
    scale = Property(4.0, setting="upscale_scale")
    tile = Property(0, setting="upscale_tile")  # 0 = auto (from free GPU memory)
    overlap = Property(16, setting="upscale_overlap")
    sharpen = Property(0.0, setting="upscale_sharpen")  # Lanczos only: unsharp amount
    output = Property("document", setting="upscale_output")  # "document" | "layer"

    @property
    def lanczos(self) -> bool:
        return (self.model or LANCZOS) == LANCZOS

    def check(self, image: np.ndarray | None) -> str | None:
        """Why ``image`` cannot be upscaled with these settings (one message), or None."""
        if image is None:
            return "Nothing to upscale: open an image first."
        w, h = image.shape[1], image.shape[0]
        if max(w, h) * self.scale > MAX_SIDE:
            return (
                f"{w}x{h} at {self.scale:g}x is larger than {MAX_SIDE} px a side; lower the scale."
            )
        return None

    def request(self, image: np.ndarray) -> UpscaleRequest:
        """The engine request for ``image`` (RGB or RGBA uint8); an opaque RGBA image is sent
        as RGB (faster, and the same result)."""
        if image.ndim == 3 and image.shape[2] == 4 and int(image[..., 3].min()) == 255:
            image = np.ascontiguousarray(image[..., :3])
        if self.lanczos:
            return UpscaleRequest(
                image=image, method="lanczos", scale=self.scale, sharpen=self.sharpen
            )
        return UpscaleRequest(
            image=image,
            model=self.model,
            method="model",
            scale=self.scale,
            tile=self.tile,
            overlap=self.overlap,
        )
