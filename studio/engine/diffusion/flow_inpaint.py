"""Inpainting with the flow-matching families on the mask's padded crop, as the SD path does
(``inpaint``): split the mask into padded boxes, run the family's inpaint pipeline (FLUX.1
Fill, or the mask-guided FluxInpaint / SD3 / Z-Image / Qwen pipelines, which keep the
unmasked latent on the noised original at every step: Lugmayr et al. 2022) on each crop
scaled to the model's native area, and paste the patch back through the feathered mask, so
pixels outside the boxes stay bit-identical to the input."""

from __future__ import annotations

import time

from studio.core import masks
from studio.core.errors import BadInput
from studio.engine.jobs.requests import GenerateRequest

# Side multiple: VAE factor 8 x the 2x2 latent packing (FLUX/SD3/Qwen patchify by 2).
SIDE_MULTIPLE = 16


def flow_target(family) -> int:
    """The side of the square the family was trained on (its ``default_size``)."""
    w, h = family.default_size
    return int(round((w * h) ** 0.5))


def flow_inpaint(ctx, request: GenerateRequest):
    """A GenerateRequest with ``init_image`` and ``mask`` on a flow model: ``count`` images
    (seeds ``seed + k``), each the init image's size, inpainted crop by crop."""
    from studio.core.metadata import request_metadata
    from studio.engine.diffusion.flow_generate import (
        SAMPLER,
        _apply_loras,
        _pil,
        denoise_flow,
        flow_kwargs,
        load_flow,
        steps_for,
        task_pipe,
    )
    from studio.engine.diffusion.inpaint import _check_image, effective_feather, plan
    from studio.engine.jobs.device import generator_for

    if request.init_image is None or request.mask is None:
        raise BadInput("inpainting needs an init image and a mask")
    image = _check_image(request.init_image)
    mask = masks.check_mask(request.mask, image.shape)
    boxes = plan(mask, request.mask_padding)
    feather = effective_feather(8, request.mask_padding)
    entry = load_flow(ctx, request.model, request.device, request.dtype)
    fam = entry.family
    if not fam.supports("inpaint"):
        raise BadInput(f"{fam.label} models can't inpaint in Studio")
    pipe = task_pipe(entry, "inpaint")
    _apply_loras(pipe, entry, request.loras)
    kw = flow_kwargs(
        fam, pipe, request.prompt, request.negative_prompt, request.steps, request.guidance
    )
    strength = None
    if "strength" in _call_params(pipe):
        strength = float(request.strength)
        kw["strength"] = strength
    per_region = steps_for(request.steps, strength)
    per_image = per_region * len(boxes)
    total = per_image * request.count
    target = flow_target(fam)
    images, metadata = [], []
    ctx.progress(0, total)
    t0 = time.perf_counter()
    for k in range(request.count):
        seed = request.seed + k
        out = image.copy()
        for i, box in enumerate(boxes):
            ctx.check()
            crop_rgb = masks.crop(out[..., :3], box)
            crop_mask = masks.crop(mask, box)
            size = masks.model_size((box[2], box[3]), target=target, multiple=SIDE_MULTIPLE)
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
                image=_pil(masks.resize(crop_rgb, size), size),
                mask_image=_pil(masks.binary(masks.resize(crop_mask, size), 0), size, "L"),
                generator=generator_for(seed, pipe.device),
                **kw,
            )[0]
            patch = masks.resize(result, (box[2], box[3]))
            alpha = masks.blend_alpha(crop_mask, feather)
            masks.paste_back(out, patch, box, alpha, inplace=True)
        images.append(out)
        meta = request_metadata(request, seed, entry.name, sampler=SAMPLER)
        meta["width"], meta["height"] = image.shape[1], image.shape[0]
        meta.update(family=fam.name, inpaint_method="diffusion", mask_padding=request.mask_padding)
        metadata.append(meta)
        ctx.progress((k + 1) * per_image, total)
    extra = {"regions": boxes, "method": "diffusion", "family": fam.name}
    extra["seconds"] = time.perf_counter() - t0
    return ctx.finished(images, metadata, extra)


def _call_params(pipe) -> set[str]:
    import inspect

    return set(inspect.signature(type(pipe).__call__).parameters)
