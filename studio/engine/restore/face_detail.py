"""A face detail pass in the manner of ADetailer (Bing-su/adetailer, "After Detailer"): find
the faces, then redraw each one with diffusion inpainting at its own prompt and denoising
strength.

Each face's detector box, grown by ``dilate`` px, is the inpainting mask. Studio's inpaint
job (:func:`studio.engine.diffusion.route.run_inpaint`, method "diffusion") does the rest
the way ADetailer's "inpaint only masked" does: the mask's box padded by ``padding`` px is
cropped, scaled to the model's native area (512^2 for SD1.5, 1024^2 for SDXL), so a small
face is redrawn at a higher resolution than it has in the photo, inpainted at ``strength =
denoising_strength``, scaled back and pasted through the mask feathered by ``mask_blur``; the
pixels outside stay bit-identical. Faces are done one after another, each on the result of
the one before, as ADetailer does.

The result's infotext records the pass with ADetailer's own keys (:mod:`studio.core.adetailer`)
so an A1111-compatible reader sees what was done.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.core.adetailer import ADetailerUnit, format_adetailer
from studio.core.errors import BadInput
from studio.engine.jobs.requests import DetailFacesRequest
from studio.engine.restore.faces import DEFAULT_DETECTOR, Face, _face_info, resolve_detector

if TYPE_CHECKING:
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import InpaintRequest
    from studio.engine.jobs.runner import JobContext

_SEP = re.compile(r"\s*\[SEP\]\s*")


def split_prompts(prompt: str) -> list[str]:
    """ADetailer's ``[SEP]``-separated prompts: one per detection, in order."""
    return _SEP.split(prompt or "")


def pick(prompts: Sequence[str], index: int) -> str:
    """The prompt of detection ``index``: the index-th, or the last for the ones after."""
    return prompts[index] if index < len(prompts) else prompts[-1]


def face_mask(face: Face, shape: tuple[int, ...], dilate: int) -> np.ndarray:
    """The (H, W) uint8 mask of a face: its box, grown by ``dilate`` px on every side (shrunk
    for a negative value), clipped to the image."""
    h, w = shape[:2]
    x, y, bw, bh = face.box
    x0, y0 = max(0, math.floor(x - dilate)), max(0, math.floor(y - dilate))
    x1, y1 = min(w, math.ceil(x + bw + dilate)), min(h, math.ceil(y + bh + dilate))
    mask = np.zeros((h, w), np.uint8)
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = 255
    return mask


def check_detail_request(request: DetailFacesRequest) -> np.ndarray:
    """The request's image once the request is valid (BadInput, exit 2)."""
    image = request.image
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] not in (3, 4)
    ):
        raise BadInput("the image must be an 8-bit RGB or RGBA picture")
    d, c = request.denoising_strength, request.confidence
    if not (isinstance(d, (int, float)) and math.isfinite(d) and 0.0 < d <= 1.0):
        raise BadInput(f"denoising strength {d} is out of range (more than 0, at most 1)")
    if not (isinstance(c, (int, float)) and math.isfinite(c) and 0.0 <= c <= 1.0):
        raise BadInput(f"confidence {c} is out of range (0 to 1)")
    if request.padding < 0 or request.mask_blur < 0:
        raise BadInput("padding and mask blur must be 0 or more")
    if not (request.model or "").strip():
        raise BadInput("no inpainting model given (an SD model for the detail pass)")
    return image


def face_request(
    image: np.ndarray, face: Face, index: int, request: DetailFacesRequest
) -> InpaintRequest:
    """The inpaint request that redraws face ``index`` of ``image``."""
    from studio.engine.jobs.requests import InpaintRequest

    return InpaintRequest(
        image=image,
        mask=face_mask(face, image.shape, request.dilate),
        method="diffusion",
        model=request.model,
        prompt=pick(split_prompts(request.prompt), index),
        negative_prompt=pick(split_prompts(request.negative_prompt), index),
        steps=request.steps,
        guidance=request.guidance,
        strength=float(request.denoising_strength),
        seed=int(request.seed) + index,
        padding=request.padding,
        feather=request.mask_blur,
        device=request.device,
        dtype=request.dtype,
    )


def detail_faces(
    image: np.ndarray,
    faces: Sequence[Face],
    request: DetailFacesRequest,
    inpaint: Callable[[InpaintRequest], np.ndarray],
    check: Callable[[], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> np.ndarray:
    """Inpaint each face in turn with ``inpaint`` (an InpaintRequest -> the image)."""
    out = image
    for i, face in enumerate(faces):
        if check is not None:
            check()
        if progress is not None:
            progress(i, len(faces), f"detailing face {i + 1}/{len(faces)}")
        out = inpaint(face_request(out, face, i, request))
    return out


def adetailer_unit(request: DetailFacesRequest) -> ADetailerUnit:
    """The pass as ADetailer would record it (the detector's name as the model)."""
    return ADetailerUnit(
        model=(request.detector or DEFAULT_DETECTOR),
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        confidence=float(request.confidence),
        dilate_erode=int(request.dilate),
        mask_blur=int(request.mask_blur),
        denoising_strength=float(request.denoising_strength),
        inpaint_only_masked=True,
        inpaint_padding=int(request.padding),
    )


def run_detail(
    ctx: JobContext,
    request: DetailFacesRequest,
    inpaint: Callable[[InpaintRequest], np.ndarray] | None = None,
) -> Finished:
    """Runner handler for :class:`DetailFacesRequest`: one image out; ``extra["faces"]`` the
    faces found (with ``detailed`` true for those above the confidence), ``extra["adetailer"]``
    the infotext pairs. ``inpaint`` replaces Studio's inpaint job (tests)."""
    image = check_detail_request(request)
    det_key, det_factory = resolve_detector(request.detector)
    ctx.progress(0, 1, "detecting faces")
    detector = ctx.runner.cache(f"face-detector:{det_key}", det_factory)
    found = list(detector(np.ascontiguousarray(image[..., :3])))
    ctx.check()
    faces = [f for f in found if f.score >= request.confidence]
    info: dict[str, Any] = {
        "faces": [{**_face_info(f), "detailed": f.score >= request.confidence} for f in found],
        "detailed": len(faces),
        "adetailer": format_adetailer([adetailer_unit(request)]),
    }
    if not faces:
        ctx.progress(1, 1, "no faces above the confidence; the image is unchanged")
        return ctx.finished([image.copy()], [{"detail_faces": info}], info)
    if inpaint is None:
        from studio.engine.diffusion.route import run_inpaint

        def inpaint(req: InpaintRequest) -> np.ndarray:
            return run_inpaint(ctx, req).images[0]

    out = detail_faces(image, faces, request, inpaint, check=ctx.check, progress=ctx.progress)
    ctx.check()
    ctx.progress(len(faces), len(faces), f"detailed {len(faces)} face(s)")
    return ctx.finished([out], [{"detail_faces": info}], info)
