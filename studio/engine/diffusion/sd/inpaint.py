"""Stable Diffusion inpainting on the mask's padded crops (``shared.crop``): each crop is
scaled to the model's native area (512^2 for SD1.5, 1024^2 for SDXL; sides multiples of the
family's ``size_multiple``), inpainted, resized back and pasted through the feathered mask.

Latent diffusion inpainting (Rombach et al. 2022): 9-channel UNets see the masked image
latents and the mask as extra input channels; ordinary 4-channel models are steered by
replacing the unmasked part of the latent with the noised original at every step,
x_{t-1} <- m * x_{t-1} + (1 - m) * q(x_{t-1} | x_0) (Lugmayr et al. 2022, RePaint without
resampling). diffusers' inpaint pipelines implement both; ``pipeline.load_pipeline`` picks
the class.
"""

from __future__ import annotations

import numpy as np

from studio.core import masks
from studio.core.errors import BadInput
from studio.engine.diffusion.shared.crop import (
    check_image,
    effective_feather,
    inpaint_metadata,
    plan,
    rgb,
)
from studio.engine.jobs.requests import GenerateRequest, InpaintRequest


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

    from studio.engine.diffusion.sd.sampling import control_kwargs, denoise
    from studio.engine.diffusion.sd.schedulers import seed_noise
    from studio.engine.jobs.device import generator_for

    target = model_target(pipe)
    multiple = model_multiple(pipe)
    out = image.copy()
    h, w = image.shape[:2]
    fitted = [
        replace(c, image=masks.resize(np.ascontiguousarray(rgb(c.image)), (w, h))) for c in controls
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


def _load_inpaint_pipe(ctx, request, prompt: str, loras, controlnets: tuple = ()):
    """The inpaint pipeline and the call arguments both request kinds share (InpaintRequest and
    GenerateRequest name these fields alike)."""
    from studio.engine.diffusion.families import recognise_pipe
    from studio.engine.diffusion.sd.pipeline import load_pipeline
    from studio.engine.diffusion.sd.prompts import prompt_kwargs

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


def inpaint_job(ctx, request: InpaintRequest, image: np.ndarray, mask: np.ndarray):
    """An InpaintRequest with ``method="diffusion"`` on an SD model: every region inpainted on
    its crop and pasted back."""
    from studio.engine.diffusion.sd.sampling import steps_per_image
    from studio.engine.diffusion.sd.schedulers import ran_label
    from studio.engine.diffusion.shared.lora import prompt_loras

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
    meta = inpaint_metadata(
        request,
        image,
        "diffusion",
        model=pipe.studio_model.name,
        feather=feather,
        sampler=sampler,
        model_hash=(pipe.studio_model.sha256 or "")[:10] or None,
        ran_loras=loras,
    )
    from studio.engine.diffusion.sd.textual_inversion import ti_metadata

    ti_metadata(meta, pipe)
    return ctx.finished([out], [meta], {"regions": boxes, "method": "diffusion"})


def diffusion_inpaint(ctx, request: GenerateRequest):
    """SD inpainting for a GenerateRequest with ``init_image`` and ``mask`` (``studio generate
    --init I --mask M``): the same crop / model-size / paste-back flow as :func:`run_inpaint`,
    ``request.count`` images with seeds ``seed + k``. ``width``/``height`` are ignored: the
    output is the init image's size."""
    from studio.engine.diffusion.sd.sampling import steps_per_image, validate_request
    from studio.engine.diffusion.sd.schedulers import ran_label
    from studio.engine.diffusion.shared.lora import prompt_loras

    if request.init_image is None or request.mask is None:
        raise BadInput("inpainting needs an init image and a mask")
    validate_request(request)
    image = check_image(request.init_image)
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
    from studio.engine.diffusion.sd.textual_inversion import ti_metadata

    return ti_metadata(meta, pipe)
