"""Inpainting with the flow-matching families on the mask's padded crop, as the SD path does
(``sd.inpaint``, ``shared.crop``): split the mask into padded boxes, run the family's inpaint pipeline (FLUX.1
Fill, or the mask-guided FluxInpaint / SD3 / Z-Image / Qwen pipelines, which keep the
unmasked latent on the noised original at every step: Lugmayr et al. 2022) on each crop
scaled to the model's native area, and paste the patch back through the feathered mask, so
pixels outside the boxes stay bit-identical to the input."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from studio.core import masks
from studio.core.errors import BadInput
from studio.engine.diffusion.shared.crop import check_image, effective_feather, pil_image, plan, rgb
from studio.engine.jobs.requests import GenerateRequest


def flow_target(family) -> int:
    """The side of the square the family was trained on (its ``default_size``)."""
    w, h = family.default_size
    return int(round((w * h) ** 0.5))


def flow_inpaint(ctx, request: GenerateRequest, feather: int = 8):
    """A GenerateRequest with ``init_image`` and ``mask`` on a flow model: ``count`` images
    (seeds ``seed + k``), each the init image's size, inpainted crop by crop."""
    from studio.engine.diffusion.flow.control import control_kwargs
    from studio.engine.diffusion.flow.generate import (
        apply_flow_vae,
        apply_loras,
        denoise_flow,
        flow_image_metadata,
        flow_kwargs,
        job_note,
        job_pipe,
        steps_for,
    )
    from studio.engine.diffusion.flow.load import load_flow
    from studio.engine.jobs.device import generator_for

    if request.init_image is None or request.mask is None:
        raise BadInput("inpainting needs an init image and a mask")
    image = check_image(request.init_image)
    mask = masks.check_mask(request.mask, image.shape)
    boxes = plan(mask, request.mask_padding)
    feather = effective_feather(feather, request.mask_padding)
    if request.controls:
        from studio.engine.diffusion.flow.control import validate_controls

        validate_controls(request.controls)  # before any model loads
    from studio.engine.diffusion.flow.prompt import flow_prompt

    text = flow_prompt(request.prompt, request.negative_prompt, request.loras, request.steps)
    height, width = image.shape[:2]
    entry = load_flow(
        ctx, request.model, request.device, request.dtype, request.quant, request.offload,
        size=(width, height),  # the crop is at most the image: planned at the image's size
    )  # fmt: skip
    fam = entry.family
    if not fam.supports("inpaint"):
        raise BadInput(f"{fam.label} models can't inpaint in Studio")
    pipe = job_pipe(ctx, entry, "inpaint", request.controls)
    apply_loras(pipe, entry, text.loras)
    apply_flow_vae(ctx, pipe, entry, request.vae)
    kw = flow_kwargs(fam, pipe, text.prompt, text.negative, request.steps, request.guidance)
    strength = None
    # FLUX.1 Fill / Kontext: the image is a model input (no strength task): full schedule
    if fam.takes_strength("inpaint") and "strength" in _call_params(pipe):
        strength = float(request.strength)
        kw["strength"] = strength
    per_region = steps_for(request.steps, strength)
    per_image = per_region * len(boxes)
    total = per_image * request.count
    target = flow_target(fam)
    multiple = fam.size_multiple  # the crop runs at multiples of it, resized back to the box
    h, w = image.shape[:2]
    fitted = [  # control images of any size: fitted to the image, then cropped per box
        replace(c, image=masks.resize(np.ascontiguousarray(rgb(c.image)), (w, h)))
        for c in request.controls
    ]
    images, metadata = [], []
    ctx.progress(0, total, job_note(fam, request.clip_skip, text))
    t0 = time.perf_counter()
    for k in range(request.count):
        seed = request.seed + k
        out = image.copy()
        for i, box in enumerate(boxes):
            ctx.check()
            crop_rgb = masks.crop(out[..., :3], box)
            crop_mask = masks.crop(mask, box)
            size = masks.model_size((box[2], box[3]), target=target, multiple=multiple)
            box_controls = [replace(c, image=masks.crop(c.image, box)) for c in fitted]
            result = denoise_flow(
                ctx,
                pipe,
                fam,
                preview=request.preview,
                preview_of=request.preview_of,
                total_steps=total,
                height=size[1],
                width=size[0],
                region=box,
                step_offset=k * per_image + i * per_region,
                image=pil_image(masks.resize(crop_rgb, size), size),
                mask_image=pil_image(masks.binary(masks.resize(crop_mask, size), 0), size, "L"),
                generator=generator_for(seed, pipe.device),
                **kw,
                **fam.call_kwargs(pipe, size[0], size[1]),
                **control_kwargs(pipe, box_controls, size[0], size[1]),
            )[0]
            patch = masks.resize(result, (box[2], box[3]))
            alpha = masks.blend_alpha(crop_mask, feather)
            masks.paste_back(out, patch, box, alpha, inplace=True)
        images.append(out)
        meta = flow_image_metadata(request, seed, entry, text.loras)
        meta["width"], meta["height"] = image.shape[1], image.shape[0]
        meta.update(inpaint_method="diffusion", mask_padding=request.mask_padding)
        metadata.append(meta)
        ctx.progress((k + 1) * per_image, total)
    extra = {"regions": boxes, "method": "diffusion", "family": fam.name, "plan": entry.plan_line}
    extra["seconds"] = time.perf_counter() - t0
    return ctx.finished(images, metadata, extra)


def _call_params(pipe) -> set[str]:
    import inspect

    return set(inspect.signature(type(pipe).__call__).parameters)


def flow_inpaint_request(ctx, request, image: np.ndarray, mask: np.ndarray):
    """An InpaintRequest (``studio inpaint --method MODEL``, the canvas' inpaint tool) on a flow
    model: the same crop / paste-back job as :func:`flow_inpaint`."""
    greq = GenerateRequest(
        model=request.model,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.steps,
        guidance=request.guidance,
        seed=request.seed,
        init_image=image,
        mask=mask,
        strength=request.strength,
        mask_padding=request.padding,
        preview=request.preview,
        preview_of=request.preview_of,
        device=request.device,
        dtype=request.dtype,
    )
    return flow_inpaint(ctx, greq, feather=request.feather)
