"""Generation for the flow-matching families (FLUX.1, FLUX.2 klein, Z-Image, SD 3.5,
Qwen-Image): the job handler :func:`run_flow_generate` for a GenerateRequest whose model is
one of them, and :func:`denoise_flow`, the loop with progress, x0 previews and cancel.

The same contract as ``sd.sampling.denoise``: the step callback checks the cancel token first and
raises from inside the loop (no further step, no VAE decode); previews show
x0_hat = x_t - sigma_t v (``flow.FlowTap``; Lipman et al. 2023, Esser et al. 2024) inside the
job's region; image k of a batch uses seed + k with its own generator. ControlNets
(``flow.control``), an external VAE (:func:`apply_flow_vae`) and LoRAs apply per job.
Distilled models get their own settings from the caller (the catalog's ``recommended``): the
pipelines' defaults are wrong for them. Families come from the descriptors in ``families/{flux,flux2,zimage,sd3,qwen}``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from studio.core import masks
from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families.base import Family
from studio.engine.diffusion.flow.load import LoadedFlow, load_flow
from studio.engine.diffusion.flow.previews import FlowPreview, FlowTap
from studio.engine.diffusion.shared.crop import pil_image

SAMPLER = "Euler (flow matching)"


def task_pipe(entry: LoadedFlow, task: str):
    """The family's pipeline for ``task``, sharing the base's modules (``from_pipe``)."""
    import diffusers

    cls = getattr(diffusers, entry.family.pipeline_class(task))
    pipe = entry.pipes.get(task)
    if pipe is None:
        pipe = entry.base if type(entry.base) is cls else cls.from_pipe(entry.base)
        pipe.set_progress_bar_config(disable=True)
        entry.pipes[task] = pipe
    return pipe


def job_pipe(ctx, entry: LoadedFlow, task: str, controls=()):
    """The pipeline a job runs: the family's ControlNet pipeline when the request has
    controls (``flow.control.control_pipe``), else the plain task pipeline."""
    from studio.engine.diffusion.shared.speed import speed_up

    if not controls:
        pipe = task_pipe(entry, task)
    else:
        from studio.engine.diffusion.flow.control import control_pipe

        pipe = control_pipe(ctx, entry, task, controls)
    plan = entry.plan
    speed_up(
        ctx,
        pipe,
        offload=getattr(plan, "offload", "none"),
        weights=getattr(plan, "weights", "bf16"),
    )
    return pipe


def clip_skip_note(family: Family, clip_skip: int) -> str:
    """The progress message for a non-default clip skip on a flow family: clip skip picks an
    earlier CLIP layer (A1111), which means nothing to these T5/LLM-conditioned models, so it
    is ignored and said so (the UI sends its clip-skip setting with every request)."""
    if int(clip_skip) == 1:
        return ""
    return (
        f"Clip skip {clip_skip} ignored: {family.label} models are not conditioned by CLIP layers"
    )


def job_note(family: Family, clip_skip: int, text) -> str:
    """The job's one progress note: what of the request this family does not apply (clip
    skip, prompt weights, prompt editing), or ""."""
    return "; ".join(n for n in (clip_skip_note(family, clip_skip), text.note(family.label)) if n)


def apply_flow_vae(ctx, pipe, entry: LoadedFlow, ref: str | None) -> None:
    """Use the external VAE ``ref`` for this job, or the model's own when None (the cached
    model is never left with another job's VAE). Only families whose own VAE is an
    AutoencoderKL (FLUX.1, SD 3.5, Z-Image: ``ae.safetensors``-style files) take one; a single
    file needs the family's shipped VAE config (``models/configs/<config>/vae``)."""
    own = entry.__dict__.setdefault("own_vae", entry.base.vae)
    module = own
    if ref:
        from studio.engine.diffusion.shared.loader import CONFIGS
        from studio.engine.diffusion.shared.vae import load_vae
        from studio.engine.models import resolve

        fam = entry.family
        if type(own).__name__ != "AutoencoderKL":
            raise BadInput(
                f"{fam.label} models use their own {type(own).__name__}; an external VAE "
                "does not fit them"
            )
        path = resolve(ref, "vae")
        if path.is_file():
            cfg = CONFIGS / fam.configs[0] / "vae" if fam.configs else None
            if cfg is None or not (cfg / "config.json").exists():
                raise ModelError(
                    f"VAE {path.name}: a {fam.label} VAE single file can't be loaded offline "
                    "yet; use a diffusers VAE folder"
                )
        key = f"flowvae:{path.resolve()}|{entry.device}|{entry.dtype}"
        module = ctx.runner.cache(key, lambda: load_vae(ref, fam, entry.dtype, entry.device))
    if pipe.vae is not module:
        pipe.register_modules(vae=module)


def apply_loras(pipe, entry: LoadedFlow, loras) -> None:
    """Load the job's LoRA adapters (``lora.apply``: ``pipe.load_lora_weights``, which the
    FLUX/SD3/Z-Image/Qwen/FLUX.2 pipelines have; FLUX BFL keys converted) and weight them
    with ``set_adapters``, unfused: the weights may be offloaded or quantized (GGUF). The
    previous job's adapters are unloaded when the set changes, also after a failure."""
    from studio.engine.diffusion.shared import lora

    if not loras and not entry.loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise BadInput(f"{entry.family.label} pipelines take no LoRA in this diffusers version")
    lora.apply(pipe, entry, loras, fuse=False, family=entry.family)


def flow_kwargs(
    family: Family, pipe, prompt: str, negative: str, steps: int, guidance: float
) -> dict:
    """Pipeline arguments in the family's terms (its descriptor): the guidance argument
    (``guidance_param``: Qwen-Image's true CFG ``true_cfg_scale``), the negative prompt where
    the family takes one (``cfg_negative`` when guidance is on and none was given), and the
    family's own extras (``call_kwargs``: FLUX.1 schnell's 256-token T5 limit)."""
    kw: dict = {"prompt": prompt, "num_inference_steps": steps, family.guidance_param: guidance}
    if family.supports_negative_prompt:
        if negative:
            kw["negative_prompt"] = negative
        elif family.cfg_negative is not None and guidance > 1:
            kw["negative_prompt"] = family.cfg_negative
    return kw


def steps_for(steps: int, strength: float | None) -> int:
    """Step callbacks per image: the FLUX/SD3/Z-Image/Qwen img2img pipelines keep the last
    ``min(steps * strength, steps)`` of the schedule (rounded as they round)."""
    if strength is None:
        return steps
    init = min(steps * strength, steps)
    return max(1, steps - int(max(steps - init, 0)))


def _tiny_decoder(ctx, family: Family, pipe):
    """An AutoencoderTiny for the family (TAEF1/TAESD3) when installed, else None."""
    import os
    from pathlib import Path

    folder = None
    env = os.environ.get(family.preview_env or "", "")
    if env and Path(env).is_dir():
        folder = Path(env)
    elif family.preview_decoder:
        from studio.engine.diffusion.shared.loader import resolve_model

        for ref in (family.preview_decoder, family.preview_repo):
            try:
                folder = resolve_model(ref).path
                break
            except Exception:  # noqa: BLE001 - not installed
                continue
    if folder is None:
        return None
    from studio.engine.diffusion.shared.loader import load_taesd

    dev, dt = pipe.vae.device, pipe.vae.dtype
    return ctx.runner.cache(
        f"taesd:{folder}|{dev}|{dt}", lambda: load_taesd(folder, dev, dt), keep=2
    )


def denoise_flow(
    ctx,
    pipe,
    family: Family,
    *,
    preview: str,
    total_steps: int,
    height: int,
    width: int,
    preview_of: str = "x0",
    region: tuple[int, int, int, int] | None = None,
    step_offset: int = 0,
    tiny=None,
    **pipe_kwargs,
) -> list[np.ndarray]:
    """Run a flow pipeline at ``height`` x ``width`` with progress, x0_hat (or x_t) previews and
    cancel; RGB uint8 images."""
    decoder = None
    if preview != "off":
        decoder = FlowPreview(pipe, family, preview, height, width, tiny)
    tap = FlowTap(pipe.scheduler) if decoder is not None and preview_of == "x0" else None

    def on_step_end(p, i, t, kwargs):
        ctx.check()
        step = min(step_offset + i + 1, total_steps)
        ctx.progress(step, total_steps)
        if decoder is not None:
            lat = tap.x0 if tap is not None and tap.x0 is not None else kwargs["latents"]
            ctx.preview(decoder(lat), step, total_steps, region)
        ctx.check()  # a cancel during the preview stops before the next step
        return kwargs

    ctx.check()
    try:
        with torch.inference_mode():
            out = pipe(
                **pipe_kwargs,
                height=height,
                width=width,
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
    finally:
        if tap is not None:
            tap.remove()
    images = np.asarray(out.images)[..., :3]  # RGB of an RGBA VAE's output (Qwen-Image 2.1)
    if not np.isfinite(images).all():
        raise ModelError("The model produced NaN pixels; try --dtype float32")
    return [
        np.ascontiguousarray((np.clip(im, 0, 1) * 255).round().astype(np.uint8)) for im in images
    ]


def run_flow_generate(ctx, request):
    """Job handler for a GenerateRequest on a flow model: txt2img, img2img (or edit for
    Kontext / Qwen-Image-Edit: the image conditions the model, no strength), and whole-image
    inpaint when a mask is given, each with ControlNets when the request has controls
    (``flow.control``). The model runs at ``Family.work_size`` of the request's size and each
    image comes back at exactly ``width`` x ``height``. Returns ``ctx.finished`` with
    A1111-style metadata that records the family."""
    from studio.engine.diffusion.flow.prompt import flow_prompt
    from studio.engine.jobs.device import generator_for

    if request.controls:
        from studio.engine.diffusion.flow.control import validate_controls

        validate_controls(request.controls)  # before any model loads
    text = flow_prompt(request.prompt, request.negative_prompt, request.loras, request.steps)
    entry = load_flow(
        ctx, request.model, request.device, request.dtype, request.quant, request.offload,
        size=(request.width, request.height),  # a new load is planned at the job's size
    )  # fmt: skip
    fam = entry.family
    ctx.check()
    task = (
        "inpaint"
        if request.mask is not None
        else "img2img"
        if request.init_image is not None
        else "txt2img"
    )
    if not fam.supports(task):
        raise BadInput(f"{fam.label} models can't do {task} in Studio")
    pipe = job_pipe(ctx, entry, task, request.controls)
    apply_loras(pipe, entry, text.loras)
    apply_flow_vae(ctx, pipe, entry, request.vae)
    # The model works at a multiple of the family's size multiple (SD 3.5 and Z-Image refuse
    # other sizes, FLUX/Qwen silently shrink to one); results are resized back to the asked
    # size, so they cover the region exactly.
    out_size = (request.width, request.height)
    size = fam.work_size(*out_size)
    kw = flow_kwargs(fam, pipe, text.prompt, text.negative, request.steps, request.guidance)
    kw.update(fam.call_kwargs(pipe, *size))
    strength = None
    if task in ("img2img", "inpaint"):
        kw["image"] = pil_image(request.init_image, size)
        if fam.takes_strength(task):
            strength = float(request.strength)
            kw["strength"] = strength
    if task == "inpaint":
        kw["mask_image"] = pil_image(request.mask, size, "L")
    if request.controls:
        from studio.engine.diffusion.flow.control import control_kwargs

        kw.update(control_kwargs(pipe, request.controls, *size))
    per_image = steps_for(request.steps, strength)
    total = per_image * request.count
    tiny = _tiny_decoder(ctx, fam, pipe) if request.preview == "taesd" else None
    images, metadata = [], []
    ctx.progress(0, total, job_note(fam, request.clip_skip, text))
    t0 = time.perf_counter()
    for k in range(request.count):
        seed = request.seed + k
        out = denoise_flow(
            ctx,
            pipe,
            fam,
            preview=request.preview,
            preview_of=request.preview_of,
            total_steps=total,
            height=size[1],
            width=size[0],
            step_offset=k * per_image,
            tiny=tiny,
            generator=generator_for(seed, pipe.device),
            **kw,
        )
        images.append(out[0] if size == out_size else masks.resize(out[0], out_size))
        metadata.append(flow_image_metadata(request, seed, entry, text.loras))
        ctx.progress((k + 1) * per_image, total)
    extra = {"family": fam.name, "plan": entry.plan_line}
    return ctx.finished(images, metadata, {**extra, "seconds": time.perf_counter() - t0})


def flow_image_metadata(request, seed: int, entry, ran_loras=None) -> dict:
    """One flow image's metadata: the request's, its family and memory plan; clip skip left
    out (not applied, see clip_skip_note). A guidance-distilled family (FLUX.1 dev, Fill,
    Kontext) writes its guidance as Forge does, ``CFG scale: 1, Distilled CFG Scale: g``, so
    Forge and A1111-style readers set the guidance embedding, not classifier-free guidance."""
    from studio.core.metadata import request_metadata

    fam = entry.family
    meta = request_metadata(request, seed, entry.name, sampler=SAMPLER, ran_loras=ran_loras)
    meta["family"] = fam.name
    meta["offload"] = entry.plan_line  # how it ran: the memory plan, or the CPU
    meta.pop("clip_skip", None)
    if fam.guidance_kind == "distilled":
        meta["distilled_cfg_scale"] = meta["cfg_scale"]
        meta["cfg_scale"] = 1.0
    return meta
