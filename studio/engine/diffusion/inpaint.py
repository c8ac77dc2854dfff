"""Inpainting and outpainting jobs: classical (OpenCV Telea / Navier-Stokes), LaMa (GAN) and
Stable Diffusion (9-channel inpainting UNets, or any txt2img model through mask-guided
denoising), all on the mask's padded crop.

Flow for every backend (:func:`run_inpaint`):

1. split the mask into regions (``core.masks.regions``: one padded box per blob, overlapping
   boxes merged; padding = ``request.padding``, boxes snapped to multiples of 8);
2. per region: crop image and mask, run the backend at the size it wants (classical and LaMa:
   the crop's own size, LaMa reflect-padded to a multiple of 8; diffusion: the crop scaled to
   the model's native area, 512^2 for SD1.5, 1024^2 for SDXL, sides multiples of the family's
   ``size_multiple``: 8 for SD, 16 for the flow families), resize back to the crop;
3. paste back through the feathered mask (``core.masks.blend_alpha``). Pixels outside the
   boxes are never written, so they stay bit-identical to the input, and the cost follows the
   mask, not the photo.

Backends:

- Telea 2004, "An Image Inpainting Technique Based on the Fast Marching Method": pixels are
  filled in order of distance from the hole boundary with a weighted first-order
  extrapolation of the known neighbours (``cv2.INPAINT_TELEA``).
- Bertalmio, Bertozzi & Sapiro 2001, "Navier-Stokes, Fluid Dynamics, and Image and Video
  Inpainting": image smoothness (isophotes) is transported into the hole like vorticity in an
  incompressible fluid (``cv2.INPAINT_NS``).
- LaMa (Suvorov et al. 2022), see ``studio.engine.restore.lama``.
- Latent diffusion inpainting (Rombach et al. 2022): 9-channel UNets see the masked image
  latents and the mask as extra input channels; ordinary 4-channel models are steered by
  replacing the unmasked part of the latent with the noised original at every step,
  x_{t-1} <- m * x_{t-1} + (1 - m) * q(x_{t-1} | x_0) (Lugmayr et al. 2022, RePaint without
  resampling). diffusers' inpaint pipelines implement both; ``pipeline.load_pipeline`` picks
  the class.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from studio.core import masks
from studio.core.errors import BadInput
from studio.core.outpaint import Extension, extend
from studio.engine.jobs.requests import GenerateRequest, InpaintRequest

METHODS = ("auto", "telea", "ns", "lama", "diffusion")
CLASSICAL_RADIUS = 5  # px neighbourhood OpenCV's Telea/NS look at


# -- validation -----------------------------------------------------------------------------------
def _check_image(image: np.ndarray) -> np.ndarray:
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


def validate(request: InpaintRequest) -> None:
    """Reject bad values before any model loads (BadInput, one line)."""
    _check_image(request.image)
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


# -- backends (crop in, crop out; RGB uint8) ------------------------------------------------------
def classical_inpaint(image: np.ndarray, mask: np.ndarray, method: str = "telea") -> np.ndarray:
    """OpenCV Telea (``method="telea"``) or Navier-Stokes (``"ns"``) inpainting of ``image``
    (H, W, 3 uint8) where ``mask > 0``."""
    import cv2

    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    hard = (mask > 0).astype(np.uint8) * 255
    return cv2.inpaint(np.ascontiguousarray(image[..., :3]), hard, CLASSICAL_RADIUS, flag)


def _lama_backend(ctx, request: InpaintRequest):
    from studio.engine.jobs.device import pick_device
    from studio.engine.restore.lama import load_lama, resolve_lama

    path = resolve_lama(request.model)
    device = pick_device(request.device or ctx.runner.device).device
    desc = ctx.runner.cache(f"lama:{path.resolve()}|{device}", lambda: load_lama(path, str(device)))
    return desc, path


def resolve_method(request: InpaintRequest) -> str:
    """ "auto" means LaMa when it is installed (or a LaMa file is given), else Telea."""
    if request.method != "auto":
        return request.method
    if request.model:
        return "lama"
    from studio.engine.restore.lama import find_lama

    return "lama" if find_lama() is not None else "telea"


# -- the job ---------------------------------------------------------------------------------------
def run_inpaint(ctx, request: InpaintRequest):
    """Job handler for InpaintRequest: inpaint every region of the mask with the chosen
    backend and paste it back; returns one image the size of the input (RGB or RGBA as
    given) with ``extra = {"regions": [boxes], "method": backend}``."""
    validate(request)
    image = request.image
    mask = masks.check_mask(request.mask, image.shape)
    method = resolve_method(request)
    if method == "diffusion":
        return _diffusion_job(ctx, request, image, mask)
    boxes = plan(mask, request.padding)
    feather = effective_feather(request.feather, request.padding)
    lama = lama_path = None
    if method == "lama":
        ctx.progress(0, len(boxes), "Loading LaMa")
        lama, lama_path = _lama_backend(ctx, request)
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
    meta = _metadata(
        request,
        image,
        method,
        model=lama_path.name if lama_path is not None else None,
        feather=feather,
    )
    return ctx.finished([out], [meta], {"regions": boxes, "method": method})


def outpaint_request(request: InpaintRequest, ext: Extension, overlap: int = 32) -> InpaintRequest:
    """The InpaintRequest that outpaints ``request.image`` by ``ext``: the canvas extended and
    pre-filled (``core.outpaint.extend``: edge extension + distance-weighted blur + noise) and
    the mask of the new area plus an ``overlap`` band of the old image (``request.mask`` is
    replaced). The seam is hidden twice: the model redraws the band with the old image as
    context, and the paste-back feathers into the untouched interior. Torch-free, so the UI
    can build it. The old image's origin moves to (ext.left, ext.top)."""
    image = _check_image(request.image)
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


# -- diffusion --------------------------------------------------------------------------------------
def model_target(pipe) -> int:
    """The side of the square the model was trained on: UNet sample_size x the VAE factor
    (SD1.5 64 x 8 = 512, SD2 768, SDXL 1024)."""
    sample = pipe.unet.config.sample_size
    sample = sample[0] if isinstance(sample, list | tuple) else sample
    factor = getattr(pipe, "vae_scale_factor", 8) or 8
    return int(sample * factor) if sample else 512


def model_multiple(pipe) -> int:
    """What the model's sides must be multiples of: its family's ``size_multiple`` (8 for the
    SD UNets), whatever the pipeline's own VAE factor."""
    from studio.core.errors import StudioError
    from studio.engine.diffusion.families import recognise_pipe

    try:
        return int(recognise_pipe(pipe).size_multiple)
    except StudioError:  # a pipeline no descriptor claims: the SD rule
        return 8


def _diffuse(
    ctx,
    pipe,
    *,
    image: np.ndarray,
    mask: np.ndarray,
    boxes: list[masks.Box],
    feather: int,
    seed: int,
    preview: str,
    preview_of: str,
    total: int,
    step_offset: int,
    per_region: int,
    kwargs: dict,
    controls: tuple = (),
) -> np.ndarray:
    """Inpaint every box with ``pipe`` (one pipeline call per box) and paste back. Control
    images (ControlInput, any size: fitted to the image first) are cropped to each box."""
    from dataclasses import replace

    from PIL import Image

    from studio.engine.diffusion.sampling import control_kwargs, denoise
    from studio.engine.diffusion.schedulers import seed_noise
    from studio.engine.jobs.device import generator_for

    target = model_target(pipe)
    multiple = model_multiple(pipe)
    out = image.copy()
    h, w = image.shape[:2]
    fitted = [
        replace(c, image=masks.resize(np.ascontiguousarray(_rgb(c.image)), (w, h)))
        for c in controls
    ]
    for i, box in enumerate(boxes):
        ctx.check()
        crop_rgb = masks.crop(out[..., :3], box)
        crop_mask = masks.crop(mask, box)
        size = masks.model_size((box[2], box[3]), target=target, multiple=multiple)
        box_controls = [replace(c, image=masks.crop(c.image, box)) for c in fitted]
        model_img = Image.fromarray(masks.resize(crop_rgb, size))
        model_mask = Image.fromarray(masks.binary(masks.resize(crop_mask, size), 0))
        seed_noise(pipe.scheduler, [seed])
        result = denoise(
            ctx,
            pipe,
            preview=preview,
            preview_of=preview_of,
            total_steps=total,
            step_offset=step_offset + i * per_region,
            region=box,
            image=model_img,
            mask_image=model_mask,
            width=size[0],
            height=size[1],
            generator=generator_for(seed, pipe.device),
            **control_kwargs(
                "inpaint",
                box_controls,
                size[0],
                size[1],
                inpaint_source=(np.asarray(model_img), np.asarray(model_mask)),
            ),
            **kwargs,
        )[0]
        patch = masks.resize(result, (box[2], box[3]))
        masks.paste_back(out, patch, box, masks.blend_alpha(crop_mask, feather), inplace=True)
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _load_inpaint_pipe(ctx, request, prompt: str, loras, controlnets: tuple = ()):
    """The inpaint pipeline and the call arguments both request kinds share (InpaintRequest and
    GenerateRequest name these fields alike)."""
    from studio.engine.diffusion.families import recognise_pipe
    from studio.engine.diffusion.pipeline import load_pipeline
    from studio.engine.diffusion.prompts import prompt_kwargs

    pipe = load_pipeline(
        ctx,
        request.model,
        task="inpaint",
        controlnets=controlnets,
        scheduler=request.scheduler,
        loras=loras,
        device=request.device,
        dtype=request.dtype,
        vae=request.vae,
    )
    kwargs = dict(
        **prompt_kwargs(
            pipe,
            recognise_pipe(pipe),
            prompt,
            request.negative_prompt,
            request.clip_skip,
            notify=lambda msg: ctx.progress(ctx.step, ctx.total, msg),
        ),
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        strength=request.strength,
    )
    return pipe, kwargs


def _diffusion_job(ctx, request: InpaintRequest, image: np.ndarray, mask: np.ndarray):
    from studio.engine.diffusion.defaults import model_family
    from studio.engine.diffusion.flow_inpaint import flow_inpaint_request
    from studio.engine.diffusion.prompts import prompt_loras
    from studio.engine.diffusion.sampling import steps_per_image
    from studio.engine.diffusion.schedulers import ran_label

    fam = model_family(request.model)
    if fam is not None and fam.prediction == "flow":
        return flow_inpaint_request(ctx, request)
    boxes = plan(mask, request.padding)
    feather = effective_feather(request.feather, request.padding)
    prompt, loras = prompt_loras(request.prompt)
    pipe, kwargs = _load_inpaint_pipe(ctx, request, prompt, loras)
    per_region = steps_per_image(pipe, request.steps, request.strength)
    total = per_region * len(boxes)
    ctx.progress(0, total)
    out = _diffuse(
        ctx,
        pipe,
        image=image,
        mask=mask,
        boxes=boxes,
        feather=feather,
        seed=request.seed,
        preview=request.preview,
        preview_of=request.preview_of,
        total=total,
        step_offset=0,
        per_region=per_region,
        kwargs=kwargs,
    )
    sampler = ran_label(request.scheduler, pipe.scheduler)  # what ran
    meta = _metadata(
        request,
        image,
        "diffusion",
        model=pipe.studio_model.name,
        feather=feather,
        sampler=sampler,
        model_hash=(pipe.studio_model.sha256 or "")[:10] or None,
        ran_loras=loras,
    )
    from studio.engine.diffusion.textual_inversion import ti_metadata

    ti_metadata(meta, pipe)
    return ctx.finished([out], [meta], {"regions": boxes, "method": "diffusion"})


def diffusion_inpaint(ctx, request: GenerateRequest):
    """SD inpainting for a GenerateRequest with ``init_image`` and ``mask`` (``studio generate
    --init I --mask M``): the same crop / model-size / paste-back flow as :func:`run_inpaint`,
    ``request.count`` images with seeds ``seed + k``. ``width``/``height`` are ignored: the
    output is the init image's size."""
    from studio.engine.diffusion.prompts import prompt_loras
    from studio.engine.diffusion.sampling import steps_per_image, validate_request
    from studio.engine.diffusion.schedulers import ran_label

    if request.init_image is None or request.mask is None:
        raise BadInput("inpainting needs an init image and a mask")
    validate_request(request)
    image = _check_image(request.init_image)
    mask = masks.check_mask(request.mask, image.shape)
    boxes = plan(mask, request.mask_padding)
    feather = effective_feather(8, request.mask_padding)
    prompt, loras = prompt_loras(request.prompt, request.loras)
    controlnets = tuple(c.model for c in request.controls)
    pipe, kwargs = _load_inpaint_pipe(ctx, request, prompt, loras, controlnets)
    per_region = steps_per_image(pipe, request.steps, request.strength)
    per_image = per_region * len(boxes)
    total = per_image * request.count
    sampler = ran_label(request.scheduler, pipe.scheduler)  # what ran
    images, metadata = [], []
    ctx.progress(0, total)
    for k in range(request.count):
        seed = request.seed + k
        images.append(
            _diffuse(
                ctx,
                pipe,
                image=image,
                mask=mask,
                boxes=boxes,
                feather=feather,
                seed=seed,
                preview=request.preview,
                preview_of=request.preview_of,
                total=total,
                step_offset=k * per_image,
                per_region=per_region,
                kwargs=kwargs,
                controls=request.controls,
            )
        )
        metadata.append(_generate_metadata(request, seed, pipe, sampler, loras))
        ctx.progress((k + 1) * per_image, total)
    return ctx.finished(images, metadata, {"regions": boxes, "method": "diffusion"})


def _metadata(
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


def _generate_metadata(request: GenerateRequest, seed: int, pipe, sampler: str, loras) -> dict:
    from studio.core.metadata import request_metadata

    meta = request_metadata(
        request,
        seed,
        pipe.studio_model.name,
        sampler=sampler,
        model_hash=(pipe.studio_model.sha256 or "")[:10] or None,
        ran_loras=loras,
    )
    # The output has the init image's size, not the request's width/height.
    meta["width"], meta["height"] = request.init_image.shape[1], request.init_image.shape[0]
    meta.update(inpaint_method="diffusion", mask_padding=request.mask_padding)
    from studio.engine.diffusion.textual_inversion import ti_metadata

    return ti_metadata(meta, pipe)
