"""The one engine route for image jobs: a GenerateRequest or an InpaintRequest is checked,
its model's family is resolved once (``shared.defaults.model_family``: a folder's JSON or a
single file's tensor header, no weights loaded), and the handler is picked from
:data:`HANDLERS` by what the job is, the task (txt2img/img2img, a masked generate, an
inpaint) times the family's track (``Family.prediction``: "flow" for the flow-matching
families, the UNet track for epsilon and v prediction). Inpainting without a model (LaMa,
Telea, Navier-Stokes) runs in ``restore.inpaint``; outpainting is inpainting of an extended
canvas."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace

from studio.core import masks
from studio.core.errors import BadInput
from studio.core.outpaint import Extension, extend
from studio.engine.diffusion.shared.crop import check_image, validate
from studio.engine.jobs.requests import GenerateRequest, InpaintRequest

# (task, track) -> "module:function". Tasks: "generate" (txt2img / img2img / ControlNet),
# "masked" (a GenerateRequest with init image and mask), "inpaint" (an InpaintRequest).
HANDLERS: dict[tuple[str, str], str] = {
    ("generate", "sd"): "studio.engine.diffusion.sd.generate:sd_generate",
    ("masked", "sd"): "studio.engine.diffusion.sd.inpaint:diffusion_inpaint",
    ("inpaint", "sd"): "studio.engine.diffusion.sd.inpaint:inpaint_job",
    ("generate", "flow"): "studio.engine.diffusion.flow.generate:run_flow_generate",
    ("masked", "flow"): "studio.engine.diffusion.flow.inpaint:flow_inpaint",
    ("inpaint", "flow"): "studio.engine.diffusion.flow.inpaint:flow_inpaint_request",
}


def track(family) -> str:
    """ "flow" for a flow-matching family, else "sd" (also when the family can't be told from
    the files: the SD loader then says why in one line)."""
    return "flow" if family is not None and family.prediction == "flow" else "sd"


def handler(task: str, family) -> Callable:
    """The job function for ``task`` on ``family``'s track."""
    module, name = HANDLERS[(task, track(family))].split(":")
    return getattr(importlib.import_module(module), name)


def run_generate(ctx, request: GenerateRequest):
    """Job handler for GenerateRequest: txt2img, img2img, ControlNet, LoRA, Hires. fix, and
    inpainting when the request has a mask (cropped to the mask, pasted back)."""
    from studio.engine.diffusion.sd.hires import validate_hires
    from studio.engine.diffusion.shared.defaults import model_family

    validate_hires(request)
    fam = model_family(request.model)
    if request.hires is not None and track(fam) == "flow":
        raise BadInput(f"Hires. fix runs on SD 1.x, SD 2.x and SDXL in Studio, not {fam.label}")
    if request.mask is None:
        return handler("generate", fam)(ctx, request)
    if request.init_image is None:
        raise BadInput("A mask needs an init image (--init)")
    return handler("masked", fam)(ctx, request)


def resolve_method(request: InpaintRequest) -> str:
    """ "auto" means LaMa when it is installed (or a LaMa file is given), else Telea."""
    if request.method != "auto":
        return request.method
    if request.model:
        return "lama"
    from studio.engine.restore.lama import find_lama

    return "lama" if find_lama() is not None else "telea"


def run_inpaint(ctx, request: InpaintRequest):
    """Job handler for InpaintRequest: every region of the mask filled with the chosen backend
    and pasted back; one image the size of the input (RGB or RGBA as given) with
    ``extra = {"regions": [boxes], "method": backend}``."""
    validate(request)
    image = request.image
    mask = masks.check_mask(request.mask, image.shape)
    method = resolve_method(request)
    if method == "diffusion":
        from studio.engine.diffusion.shared.defaults import model_family

        return handler("inpaint", model_family(request.model))(ctx, request, image, mask)
    from studio.engine.restore.inpaint import run_plain_inpaint

    return run_plain_inpaint(ctx, request, image, mask, method)


def outpaint_request(request: InpaintRequest, ext: Extension, overlap: int = 32) -> InpaintRequest:
    """The InpaintRequest that outpaints ``request.image`` by ``ext``: the canvas extended and
    pre-filled (``core.outpaint.extend``: edge extension + distance-weighted blur + noise) and
    the mask of the new area plus an ``overlap`` band of the old image (``request.mask`` is
    replaced). The seam is hidden twice: the model redraws the band with the old image as
    context, and the paste-back feathers into the untouched interior. Torch-free, so the UI
    can build it. The old image's origin moves to (ext.left, ext.top)."""
    image = check_image(request.image)
    canvas, mask = extend(image, ext, overlap=overlap, seed=request.seed)
    return replace(request, image=canvas, mask=mask)


def outpaint(ctx, request: InpaintRequest, ext: Extension, overlap: int = 32):
    """Outpaint in one job, in ``ext.passes()`` (left/right, then top/bottom, each pass on the
    previous result), so every crop stays a strip along one side instead of the whole canvas.
    ``extra["offset"]`` = (-left, -top), where the old image's origin lies relative to the
    new canvas's."""
    done = None
    image = request.image
    for step in ext.passes():
        ctx.check()
        done = run_inpaint(ctx, outpaint_request(replace(request, image=image), step, overlap))
        image = done.images[0]
    if done is None:
        raise BadInput("the outpaint adds no pixels")
    extra = dict(done.extra, offset=(-ext.left, -ext.top))
    extra["outpaint"] = (ext.left, ext.right, ext.top, ext.bottom)
    return replace(done, extra=extra)
