"""Stable Diffusion generation: txt2img, img2img, ControlNet and LoRA, with step previews and
instant cancel. The job handler is :func:`run_generate`; the reusable pieces live in
``pipeline`` (:func:`load_pipeline`) and ``sampling`` (:func:`denoise`), which SD inpainting
(``studio.engine.diffusion.sd.inpaint``) uses too. Imports go one way: generate -> inpaint ->
sampling -> pipeline -> loader (no circle).

img2img is SDEdit (Meng et al. 2022): start the reverse process at t = strength * T from a
noised copy of the init image.

Seeds: image k of a batch uses ``seed + k`` with its own ``torch.Generator`` (AUTOMATIC1111's
convention), so any image of a batch reproduces alone. ``count`` images run as batches of up to
:data:`MAX_BATCH` in one pipeline call (one generator per image: diffusers draws each image's
initial noise, and an ancestral sampler's step noise, from its own generator); a batch that
runs out of memory continues one image at a time.
"""

from __future__ import annotations

from studio.engine.diffusion.sd.pipeline import family_of, load_pipeline
from studio.engine.diffusion.sd.prompts import prompt_kwargs
from studio.engine.diffusion.sd.sampling import (
    control_kwargs,
    denoise,
    free_cache,
    steps_per_image,
    vae_tiling,
    validate_request,
)
from studio.engine.diffusion.sd.schedulers import ran_label, seed_noise
from studio.engine.diffusion.sd.textual_inversion import ti_metadata
from studio.engine.diffusion.shared.crop import pil_image
from studio.engine.diffusion.shared.lora import prompt_loras
from studio.engine.jobs.device import generator_for, is_oom
from studio.engine.jobs.requests import GenerateRequest

# Images per pipeline call for ``count`` > 1 (memory grows with it; an OOM falls back to 1).
MAX_BATCH = 8


def with_placement(meta: dict, pipe) -> dict:
    """Add where the model ran ("GPU", "model offload", ...) to an image's metadata."""
    placement = getattr(pipe, "studio_placement", None)
    if placement:
        meta["offload"] = placement
    return ti_metadata(meta, pipe)  # the textual inversions the prompt used


def sd_generate(ctx, request: GenerateRequest):
    """txt2img / img2img / ControlNet / LoRA / Hires. fix on an SD 1.x, 2.x or SDXL model
    (``route.run_generate`` sends masked requests to ``inpaint.diffusion_inpaint``)."""
    from studio.engine.diffusion.sd.hires import SecondPass, hires_metadata

    validate_request(request)
    from studio.core.metadata import request_metadata

    task = "img2img" if request.init_image is not None else "txt2img"
    prompt, loras = prompt_loras(request.prompt, request.loras)
    pipe = load_pipeline(
        ctx,
        request.model,
        task,
        controlnets=tuple(c.model for c in request.controls),
        scheduler=request.scheduler,
        loras=loras,
        device=request.device,
        dtype=request.dtype,
        vae=request.vae,
    )
    size = (request.width, request.height)
    kwargs: dict = dict(
        **prompt_kwargs(
            pipe,
            family_of(pipe),
            prompt,
            request.negative_prompt,
            request.clip_skip,
            notify=lambda msg: ctx.progress(ctx.step, ctx.total, msg),
        ),
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
    )
    strength = None
    if task == "img2img":
        kwargs.update(image=pil_image(request.init_image, size), strength=request.strength)
        strength = request.strength
    else:
        kwargs.update(width=request.width, height=request.height)
    kwargs.update(control_kwargs(task, request.controls, *size))
    vae_tiling(pipe, request.width * request.height)
    per_image = steps_per_image(pipe, request.steps, strength)
    second = SecondPass(ctx, request, loras) if request.hires is not None else None
    if second is not None:
        vae_tiling(second.pipe, second.pipe_pixels())
    total = (per_image + (second.per_image if second else 0)) * request.count
    sampler = ran_label(request.scheduler, pipe.scheduler)  # what ran
    device = pipe.device
    images, metadata = [], []
    ctx.progress(0, total)
    batch = max(1, min(request.count, MAX_BATCH))
    k = 0
    done = 0  # image-steps so far, both passes
    while k < request.count:
        n = min(batch, request.count - k)
        seeds = [request.seed + k + j for j in range(n)]
        seed_noise(pipe.scheduler, seeds)
        generators = [generator_for(s, device) for s in seeds]
        first: dict = {}
        try:
            out = denoise(
                ctx,
                pipe,
                preview=request.preview,
                preview_of=request.preview_of,
                total_steps=total,
                step_offset=done,
                step_weight=n,
                generator=generators if n > 1 else generators[0],
                num_images_per_prompt=n,
                latents_out=first if second is not None else None,
                **kwargs,
            )
        except Exception as e:
            if n == 1 or not is_oom(e):
                raise
            batch = 1  # the batch didn't fit: the rest one image at a time
            free_cache(device)
            ctx.progress(done, total, f"Out of memory with {n} images at once; one by one")
            continue
        done += n * per_image
        for j, image in enumerate(out):
            meta = request_metadata(
                request,
                seeds[j],
                pipe.studio_model.name,
                sampler=sampler,
                model_hash=(pipe.studio_model.sha256 or "")[:10] or None,
                ran_loras=loras,
            )
            if second is not None:
                latents = first["latents"][j : j + 1] if first.get("latents") is not None else None
                image = second.run(ctx, image, latents, seeds[j], done, total)
                done += second.per_image
                meta = hires_metadata(meta, request)
            images.append(image)
            metadata.append(with_placement(meta, pipe))
        k += n
        ctx.progress(done, total)
    return ctx.finished(images, metadata)
