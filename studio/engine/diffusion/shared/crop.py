"""Crop-to-mask, the geometry every inpainting backend shares (classical, LaMa, SD and the
flow families): the mask is split into padded boxes (``core.masks.regions``: one box per
blob, overlapping boxes merged), each box is filled on its own crop, and the patch is pasted
back through the feathered mask (``core.masks.blend_alpha``), so pixels outside the boxes stay
bit-identical to the input and the cost follows the mask, not the photo. Also the validation
of an InpaintRequest and the metadata of its result."""

from __future__ import annotations

import numpy as np

from studio.core import masks
from studio.core.errors import BadInput
from studio.engine.jobs.requests import InpaintRequest

METHODS = ("auto", "telea", "ns", "lama", "diffusion")


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` if it is an RGB or RGBA uint8 array with pixels; BadInput otherwise."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] not in (3, 4)
    ):
        raise BadInput("the image must be an RGB or RGBA uint8 array")
    if min(image.shape[:2]) < 1:
        raise BadInput("the image has no pixels")
    return image


def pil_image(image: np.ndarray, size: tuple[int, int], mode: str = "RGB"):
    """``image`` (H, W[, C] uint8) as a PIL image in ``mode`` (an alpha channel dropped),
    resized to ``size`` (w, h) with Lanczos when it differs."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image)).convert(mode)
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def validate(request: InpaintRequest) -> None:
    """Reject bad values before any model loads (BadInput, one line)."""
    check_image(request.image)
    masks.check_mask(request.mask, request.image.shape)
    if request.method not in METHODS:
        raise BadInput(f"unknown inpaint method {request.method!r} (use {', '.join(METHODS[1:])})")
    if not 0 <= request.padding <= 2048:
        raise BadInput(f"padding {request.padding} must be between 0 and 2048 px")
    if not 0 <= request.feather <= 256:
        raise BadInput(f"feather {request.feather} must be between 0 and 256 px")
    if request.method == "diffusion":
        if not request.model:
            raise BadInput("Fill from prompt needs a Stable Diffusion model (--method MODEL)")
        if not 1 <= request.steps <= 1000:
            raise BadInput(f"steps {request.steps} must be between 1 and 1000")
        if not 0.0 < request.strength <= 1.0:
            raise BadInput(f"strength {request.strength} must be in (0, 1]")
        if int(request.steps * request.strength) < 1:
            raise BadInput("steps x strength is below one step; raise the steps or strength")
        if not 0 <= request.guidance <= 100:
            raise BadInput(f"guidance {request.guidance} must be between 0 and 100")
        if request.seed < 0:
            raise BadInput("seed must be >= 0")
        if not 1 <= request.clip_skip <= 12:
            raise BadInput(f"clip skip {request.clip_skip} must be between 1 and 12")


def effective_feather(feather: int, padding: int) -> int:
    """The paste-back feather actually used: the soft edge of ``blend_alpha`` reaches about
    2 * radius past the mask, so it is capped at padding / 2 to end inside the crop box (a
    feather cut off by the box edge would show as a hard line)."""
    return max(0, min(int(feather), int(padding) // 2))


def plan(mask: np.ndarray, padding: int) -> list[masks.Box]:
    """The crop boxes for ``mask``; BadInput if the mask is empty."""
    boxes = masks.regions(mask, padding)
    if not boxes:
        raise BadInput("the mask is empty: paint over the area to change first")
    return boxes


def rgb(image: np.ndarray) -> np.ndarray:
    """Three channels: a grey image repeated, an RGBA image without its alpha."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def inpaint_metadata(
    request: InpaintRequest,
    image: np.ndarray,
    method: str,
    model: str | None,
    feather: int,
    sampler: str | None = None,
    model_hash: str | None = None,
    ran_loras=None,
) -> dict:
    """The metadata dict of an InpaintRequest result (A1111 keys where they exist, see
    ``core.metadata.format_parameters``); prompt/sampling keys only for diffusion.
    ``ran_loras``: the LoRAs that ran (the prompt's ``<lora:>`` tags), for ``Lora hashes``."""
    from studio.core.metadata import request_metadata

    meta = request_metadata(
        request, request.seed, model or method, sampler, model_hash, ran_loras=ran_loras
    )
    if method != "diffusion":
        for key in ("prompt", "negative_prompt", "steps", "sampler", "cfg_scale", "seed"):
            meta.pop(key, None)
        if model is None:
            meta.pop("model", None)
    else:
        meta["denoising_strength"] = float(request.strength)
    meta.pop("width", None)
    meta.pop("height", None)
    meta.update(
        size=f"{image.shape[1]}x{image.shape[0]}",
        inpaint_method=method,
        mask_padding=request.padding,
        mask_blur=feather,
    )
    return meta
