"""Inpainting without a diffusion model, on the mask's padded crops (``diffusion.shared.crop``):

- Telea 2004, "An Image Inpainting Technique Based on the Fast Marching Method": pixels are
  filled in order of distance from the hole boundary with a weighted first-order
  extrapolation of the known neighbours (``cv2.INPAINT_TELEA``).
- Bertalmio, Bertozzi & Sapiro 2001, "Navier-Stokes, Fluid Dynamics, and Image and Video
  Inpainting": image smoothness (isophotes) is transported into the hole like vorticity in an
  incompressible fluid (``cv2.INPAINT_NS``).
- LaMa (Suvorov et al. 2022), see ``studio.engine.restore.lama``: the crop's own size,
  reflect-padded to a multiple of 8.
"""

from __future__ import annotations

import numpy as np

from studio.core import masks
from studio.engine.diffusion.shared.crop import effective_feather, inpaint_metadata, plan
from studio.engine.jobs.requests import InpaintRequest

CLASSICAL_RADIUS = 5  # px neighbourhood OpenCV's Telea/NS look at


def classical_inpaint(image: np.ndarray, mask: np.ndarray, method: str = "telea") -> np.ndarray:
    """OpenCV Telea (``method="telea"``) or Navier-Stokes (``"ns"``) inpainting of ``image``
    (H, W, 3 uint8) where ``mask > 0``."""
    import cv2

    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    hard = (mask > 0).astype(np.uint8) * 255
    return cv2.inpaint(np.ascontiguousarray(image[..., :3]), hard, CLASSICAL_RADIUS, flag)


def lama_backend(ctx, request: InpaintRequest):
    """The cached LaMa model for ``request`` and its file."""
    from studio.engine.jobs.device import pick_device
    from studio.engine.restore.lama import load_lama, resolve_lama

    path = resolve_lama(request.model)
    device = pick_device(request.device or ctx.runner.device).device
    desc = ctx.runner.cache(f"lama:{path.resolve()}|{device}", lambda: load_lama(path, str(device)))
    return desc, path


def run_plain_inpaint(
    ctx, request: InpaintRequest, image: np.ndarray, mask: np.ndarray, method: str
):
    """An InpaintRequest with ``method`` "lama", "telea" or "ns": every region filled on its
    crop and pasted back; one image the size of the input (RGB or RGBA as given) with
    ``extra = {"regions": [boxes], "method": method}``."""
    boxes = plan(mask, request.padding)
    feather = effective_feather(request.feather, request.padding)
    lama = lama_path = None
    if method == "lama":
        ctx.progress(0, len(boxes), "Loading LaMa")
        lama, lama_path = lama_backend(ctx, request)
    out = image.copy()
    ctx.progress(0, len(boxes))
    for i, box in enumerate(boxes):
        ctx.check()
        crop_rgb = masks.crop(image[..., :3], box)
        crop_mask = masks.crop(mask, box)
        if method == "lama":
            from studio.engine.restore.lama import lama_inpaint

            patch = lama_inpaint(lama, crop_rgb, crop_mask)
        else:
            patch = classical_inpaint(crop_rgb, crop_mask, method)
        ctx.check()
        masks.paste_back(out, patch, box, masks.blend_alpha(crop_mask, feather), inplace=True)
        ctx.preview(masks.crop(out[..., :3], box), i + 1, len(boxes), box)
        ctx.progress(i + 1, len(boxes))
    meta = inpaint_metadata(
        request,
        image,
        method,
        model=lama_path.name if lama_path is not None else None,
        feather=feather,
    )
    return ctx.finished([out], [meta], {"regions": boxes, "method": method})
