"""The denoising loop of every SD job: progress, step previews, instant cancel, and the VAE
decode with its overflow retry; plus the pieces every task shares (ControlNet keyword
arguments, request validation, steps per image, VAE tiling). ``generate`` and ``inpaint``
both build on this module (neither imports the other's internals).

Sampling is Rombach et al. 2022 (latent diffusion) through diffusers pipelines, with
classifier-free guidance eps = eps_uncond + w (eps_cond - eps_uncond) (Ho & Salimans 2022)."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np
import torch

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families import recognise_pipe
from studio.engine.diffusion.sd.pipeline import MAX_STEPS
from studio.engine.diffusion.sd.schedulers import canonical_name, check_schedule_steps
from studio.engine.diffusion.shared.crop import pil_image
from studio.engine.diffusion.shared.loader import load_taesd
from studio.engine.diffusion.shared.previews import (
    PreviewDecoder,
    StepTap,
    find_taesd,
    latent_for_xt,
)
from studio.engine.jobs.device import free_cache, is_oom
from studio.engine.jobs.requests import (
    MAX_SIZE,
    MIN_SIZE,
    PREVIEW_MODES,
    PREVIEW_OF,
    GenerateRequest,
)

log = logging.getLogger(__name__)

# -- previews and the denoising loop -------------------------------------------------------------

_taesd_warned: set[str] = set()


def preview_decoder(ctx, pipe, mode: str) -> PreviewDecoder | None:
    """The decoder for ``mode`` or None for "off". "taesd" falls back to "latent" with a
    one-time message when no AutoencoderTiny is installed (see previews.find_taesd)."""
    if mode == "off":
        return None
    if mode not in PREVIEW_MODES:
        raise BadInput(f"Unknown preview mode {mode!r} (use {', '.join(PREVIEW_MODES)})")
    family = recognise_pipe(pipe)
    taesd = None
    if mode == "taesd":
        folder = find_taesd(family)
        if folder is None:
            if family.name not in _taesd_warned:
                _taesd_warned.add(family.name)
                name = family.preview_decoder or "taesd"
                msg = (
                    f"No TAESD preview decoder installed ({name}); showing latent previews. "
                    f"Get it with `studio models download {name}`."
                )
                log.warning(msg)
                ctx.progress(ctx.step, ctx.total, msg)
            mode = "latent"
        else:
            dev, dt = pipe.vae.device, pipe.vae.dtype
            taesd = ctx.runner.cache(
                f"taesd:{folder}|{dev}|{dt}", lambda: load_taesd(folder, dev, dt)
            )
    return PreviewDecoder(pipe, mode, family, taesd)


def preview_budget(mode: str) -> float | None:
    """The largest share of job time previews may take before some are skipped: 10% for
    "taesd" (on a CPU its decode can cost a quarter of a small UNet step), unlimited for
    "latent" (free) and "full" (the user asked for exact previews). ``STUDIO_PREVIEW_BUDGET``
    (a fraction, or "off") overrides it for taesd and full."""
    env = os.environ.get("STUDIO_PREVIEW_BUDGET", "").strip().lower()
    if mode == "latent":
        return None
    if env:
        if env in ("off", "none", "0", "inf"):
            return None
        try:
            return max(0.0, float(env))
        except ValueError:
            pass
    return 0.1 if mode == "taesd" else None


def denoise(
    ctx,
    pipe,
    *,
    preview: str,
    preview_of: str,
    total_steps: int,
    region: tuple[int, int, int, int] | None = None,
    step_offset: int = 0,
    step_weight: int = 1,
    latents_out: dict | None = None,
    **pipe_kwargs,
) -> list[np.ndarray]:
    """Run ``pipe(**pipe_kwargs)`` with progress, previews and cancel; return RGB uint8 images.

    ``callback_on_step_end`` runs after every scheduler step: it checks the job's cancel token
    first and raises ``JobCancelled`` from inside the loop, so after a cancel no further step,
    no VAE decode and no post-processing runs (``pipe._interrupt`` would still decode).
    Then it reports ``Progress(step_offset + i + 1, total_steps)`` and, unless ``preview`` is
    "off", one preview of x0_hat (``preview_of="x0"``) or x_t, emitted synchronously: at most
    one exists at a time; the consumer keeps only the latest. With "taesd" a preview is skipped
    while previews have used more than their budget (see ``preview_budget``). A batch of n
    images counts each step as ``step_weight`` = n steps (progress stays in image-steps). ``region`` is passed through to
    the Preview events (where on the full image the preview belongs). ``latents_out``, when
    given, receives the final latents (before the decode) under "latents"."""
    if preview_of not in PREVIEW_OF:
        raise BadInput(f"Unknown preview target {preview_of!r} (use x0 or xt)")
    stepper = ConditioningStepper.for_job(pipe, pipe_kwargs)  # prompt editing / AND, or None
    decoder = preview_decoder(ctx, pipe, preview)
    tap = StepTap(pipe.scheduler) if decoder is not None and preview_of == "x0" else None
    budget = preview_budget(decoder.mode) if decoder is not None else None
    spent = 0.0  # seconds spent making previews in this call
    started = time.perf_counter()
    final: dict = {}  # the latest latents (a reference, no copy): what the VAE will decode

    def on_step_end(p, i, t, kwargs):
        nonlocal spent
        ctx.check()
        final["latents"] = kwargs["latents"]
        final["steps"], final["of"] = i + 1, getattr(p, "num_timesteps", None) or i + 1
        step = min(step_offset + (i + 1) * step_weight, total_steps)
        ctx.progress(step, total_steps)
        if decoder is not None:
            t0 = time.perf_counter()
            # Previews are droppable (latest wins): skip one while preview work is over its
            # share of the time, so a costly decoder on a slow device can't slow the job much.
            if budget is None or spent <= budget * (t0 - started - spent):
                latents = kwargs["latents"]
                if tap is not None and tap.x0 is not None:
                    latents = tap.x0
                else:
                    latents = latent_for_xt(latents, p.scheduler)
                ctx.preview(decoder(latents), step, total_steps, region)
                spent += time.perf_counter() - t0
        if stepper is not None:
            stepper.after_step(i, kwargs)  # the conditioning of the next model call
        ctx.check()  # a cancel that arrived while reporting stops before the next step
        return kwargs

    ctx.check()
    vae_dtype = pipe.vae.dtype
    inputs = ["latents", *(stepper.tensor_inputs if stepper is not None else ())]
    try:
        with torch.inference_mode(), contextlib.ExitStack() as stack:
            if stepper is not None:
                stack.enter_context(stepper.composing())
            out = pipe(
                **pipe_kwargs,
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=inputs,
            )
        images = np.asarray(out.images)
    except Exception as e:
        done = final.get("steps") is not None and final.get("steps") >= final.get("of", 1 << 30)
        if not (is_oom(e) and done):
            raise
        # Out of memory in the VAE decode after the last step: the latents are good.
        _restore_vae(pipe, vae_dtype)
        images = decode_fallback(ctx, pipe, final["latents"], total_steps)
    finally:
        if tap is not None:
            tap.remove()
        # diffusers' SDXL pipelines upcast an fp16 VAE to fp32 for the decode and cast it
        # back only when the decode succeeds: after a failure the cached VAE would stay fp32
        # and every later job would fail or run at twice the memory.
        _restore_vae(pipe, vae_dtype)
    if _bad_decode(images, final.get("latents")) and pipe.vae.dtype != torch.float32:
        msg = f"The VAE overflowed in {str(pipe.vae.dtype).removeprefix('torch.')}; decoding again in float32"
        log.warning(msg)
        ctx.progress(total_steps, total_steps, msg)
        images = decode_fp32(pipe, final["latents"])
    if latents_out is not None:
        latents_out["latents"] = final.get("latents")
    if not np.isfinite(images).all():
        raise ModelError(
            "The model produced NaN pixels (often fp16 overflow in the VAE); "
            "try --dtype float32 or a fp16-fixed VAE"
        )
    return [
        np.ascontiguousarray((np.clip(im, 0, 1) * 255).round().astype(np.uint8)) for im in images
    ]


def _repeat(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.repeat(n, *([1] * (t.ndim - 1)))


class ConditioningStepper:
    """Prompt editing, alternation and ``AND`` in a diffusers loop (the pipeline's
    ``prompts.PromptPlan``, resolved for the job's steps; see ``prompts``' module docstring).

    Model call k is A1111's ``CFGDenoiser.step``: the pipeline's loop index times the model
    calls A1111 makes per loop iteration (``per_iteration``: 2 for DPM++ 2S a, whose
    diffusers twin calls once per step; 1 otherwise, also for Heun and DPM2, whose diffusers
    loop runs once per model call), and the schedules are built for A1111's total steps
    (twice the steps for its second-order samplers, ``schedulers.prompt_schedule_steps``).

    - The embeddings of call 0 go into the pipeline's arguments; after each step
      ``callback_on_step_end`` replaces ``prompt_embeds`` (the [negative; positive] batch the
      pipeline built) and, for SDXL, ``add_text_embeds`` by those of the next call.
    - ``AND`` (or a sub-prompt weight other than 1): while the pipeline runs, the UNet's
      forward evaluates the negative and every sub-prompt in one batch and returns
      [uncond; uncond + sum_i w_i (cond_i - uncond)], so the pipeline's guidance
      uncond + g (x - uncond) gives Liu et al. 2022's uncond + g sum_i w_i (cond_i - uncond)
      (A1111 ``combine_denoised``)."""

    def __init__(self, pipe, plan, per_iteration: int, images: int) -> None:
        self.pipe, self.plan = pipe, plan
        self.per_iteration, self.images = per_iteration, images
        pooled = plan.encoded[0].pooled is not None
        self.tensor_inputs: tuple[str, ...] = ()
        if plan.varies and not plan.composed:
            self.tensor_inputs = (
                ("prompt_embeds", "add_text_embeds") if pooled else ("prompt_embeds",)
            )
            allowed = set(getattr(pipe, "_callback_tensor_inputs", ()))
            missing = [t for t in self.tensor_inputs if t not in allowed]
            if missing:
                raise BadInput(
                    f"Prompt editing / alternation: {type(pipe).__name__} cannot change "
                    f"{', '.join(missing)} between steps"
                )
        if plan.composed and getattr(pipe, "controlnet", None) is not None:
            raise BadInput("AND (composable prompts) can't be combined with ControlNet")

    @classmethod
    def for_job(cls, pipe, pipe_kwargs: dict) -> ConditioningStepper | None:
        """The stepper for the pipeline's prompt plan (None without one); puts the
        embeddings of the first model call into ``pipe_kwargs``."""
        from studio.engine.diffusion.sd.schedulers import prompt_schedule_steps

        plan = getattr(pipe, "studio_conditioning", None)
        if plan is None or "num_inference_steps" not in pipe_kwargs:
            return None
        steps = int(pipe_kwargs["num_inference_steps"])
        total = prompt_schedule_steps(pipe.scheduler, steps)
        resolved = plan.resolve(total)
        per_iteration = max(1, round(total / steps_per_image(pipe, steps, None)))
        neg, pos = resolved.at(0)
        pipe_kwargs["prompt_embeds"] = pos[0][0].embeds
        pipe_kwargs["negative_prompt_embeds"] = neg.embeds
        if "pooled_prompt_embeds" in pipe_kwargs and pos[0][0].pooled is not None:
            pipe_kwargs["pooled_prompt_embeds"] = pos[0][0].pooled
            pipe_kwargs["negative_pooled_prompt_embeds"] = neg.pooled
        images = int(pipe_kwargs.get("num_images_per_prompt") or 1)
        return cls(pipe, resolved, per_iteration, images)

    def _batch(self, neg: torch.Tensor, pos: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        n = self.images
        if like.shape[0] == 2 * n:
            out = torch.cat([_repeat(neg, n), _repeat(pos, n)])
        elif like.shape[0] == n:
            out = _repeat(pos, n)
        else:
            raise ModelError(f"Unexpected conditioning batch of {like.shape[0]} for {n} images")
        return out.to(device=like.device, dtype=like.dtype)

    def after_step(self, i: int, kwargs: dict) -> None:
        if not self.tensor_inputs:
            return
        neg, pos = self.plan.at((i + 1) * self.per_iteration)
        cond = pos[0][0]
        if "prompt_embeds" in kwargs:
            kwargs["prompt_embeds"] = self._batch(neg.embeds, cond.embeds, kwargs["prompt_embeds"])
        if "add_text_embeds" in kwargs and cond.pooled is not None:
            like = kwargs["add_text_embeds"]
            kwargs["add_text_embeds"] = self._batch(neg.pooled, cond.pooled, like)

    @contextlib.contextmanager
    def composing(self):
        """While the pipeline runs: the UNet's forward combines the sub-prompts (``AND``)."""
        if not self.plan.composed:
            yield
            return
        unet = self.pipe.unet
        own = unet.__dict__.get("forward")  # accelerate's offload hook, when there is one
        inner = unet.forward
        calls = [0]

        def forward(sample, timestep, encoder_hidden_states=None, *args, **kw):
            call = calls[0] * self.per_iteration
            calls[0] += 1
            return self._composed(inner, call, sample, timestep, encoder_hidden_states, *args, **kw)

        unet.forward = forward
        try:
            yield
        finally:
            if own is not None:
                unet.forward = own
            else:
                del unet.forward

    def _composed(self, inner, call, sample, timestep, hidden, *args, **kw):
        n = self.images
        neg, pos = self.plan.at(call)
        cfg = sample.shape[0] == 2 * n
        m = len(pos)

        def parts(t):
            """(uncond part, cond part) of a batch-sized tensor; others stay as they are."""
            if not torch.is_tensor(t) or t.ndim == 0 or t.shape[0] != sample.shape[0]:
                return None
            return (t[:n], t[n:]) if cfg else (t, t)

        def stack(t):
            p = parts(t)
            return t if p is None else torch.cat([p[0], *([p[1]] * m)])

        like = hidden if torch.is_tensor(hidden) else sample
        embeds = torch.cat([_repeat(neg.embeds, n), *(_repeat(c.embeds, n) for c, _w in pos)])
        embeds = embeds.to(device=like.device, dtype=like.dtype)
        added = kw.get("added_cond_kwargs")
        if added:
            added = {k: stack(v) for k, v in added.items()}
            if "text_embeds" in added and neg.pooled is not None:
                ref = added["text_embeds"]
                pooled = [_repeat(neg.pooled, n), *(_repeat(c.pooled, n) for c, _w in pos)]
                added["text_embeds"] = torch.cat(pooled).to(device=ref.device, dtype=ref.dtype)
            kw["added_cond_kwargs"] = added
        for key in ("timestep_cond",):
            if key in kw:
                kw[key] = stack(kw[key])
        x = torch.cat([parts(sample)[0], *([parts(sample)[1]] * m)])
        out = inner(x, stack(timestep), embeds, *args, **kw)
        pred = out[0] if isinstance(out, tuple) else out.sample
        uncond, conds = pred[:n], pred[n:].split(n)
        combined = uncond.clone()
        for c, (_cond, weight) in zip(conds, pos, strict=True):
            combined += (c - uncond) * weight  # A1111 combine_denoised (the pipeline scales)
        result = torch.cat([uncond, combined]) if cfg else combined
        if isinstance(out, tuple):
            return (result, *out[1:])
        out.sample = result
        return out


def _bad_decode(images: np.ndarray, latents) -> bool:
    """NaN pixels, or an all-black image from latents that are not all zero: the signature
    of fp16 overflow in SD's VAE decoder (NaNs come out black after clipping elsewhere)."""
    if not np.isfinite(images).all():
        return True
    if latents is None or images.size == 0 or images.max() > 1.0 / 255:
        return False
    return bool(torch.isfinite(latents).all() and latents.float().std() > 1e-3)


def _restore_vae(pipe, dtype: torch.dtype) -> None:
    vae = getattr(pipe, "vae", None)
    if vae is not None and vae.dtype != dtype:
        vae.to(dtype)


def decode_latents(
    pipe, latents: torch.Tensor, dtype: torch.dtype | None = None, device=None
) -> np.ndarray:
    """Decode final latents with the pipeline's VAE (temporarily in ``dtype`` and on
    ``device`` when given), undoing the latent scaling the pipeline would have undone; the VAE
    is put back where it was whatever happens."""
    vae = pipe.vae
    old_dtype, old_device = vae.dtype, vae.device
    dtype = dtype or old_dtype
    device = torch.device(device) if device is not None else old_device
    cfg = vae.config
    lat = latents.to(device=device, dtype=torch.float32)
    mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
    if mean is not None and std is not None:  # SDXL-style normalised latents
        mean_t = torch.tensor(mean, dtype=lat.dtype, device=lat.device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=lat.dtype, device=lat.device).view(1, -1, 1, 1)
        lat = lat * std_t / cfg.scaling_factor + mean_t
    else:
        lat = lat / cfg.scaling_factor
    vae.to(device=device, dtype=dtype)
    try:
        with torch.inference_mode():
            image = vae.decode(lat.to(dtype), return_dict=False)[0]
        return np.asarray(pipe.image_processor.postprocess(image.float(), output_type="np"))
    finally:
        vae.to(device=old_device, dtype=old_dtype)


def decode_fp32(pipe, latents: torch.Tensor) -> np.ndarray:
    """Decode final latents with the VAE temporarily in float32 (the retry for fp16/bf16
    overflow)."""
    return decode_latents(pipe, latents, torch.float32)


def decode_fallback(ctx, pipe, latents: torch.Tensor, total_steps: int) -> np.ndarray:
    """The decode after an out-of-memory error: first in overlapping tiles on the same device
    (bounded memory, diffusers' ``enable_tiling``), then on the CPU in float32. Each fallback
    is reported as a progress message."""
    vae = pipe.vae
    device = vae.device
    upcast = bool(getattr(vae.config, "force_upcast", False)) and vae.dtype == torch.float16
    dtype = torch.float32 if upcast else vae.dtype
    was_tiled = bool(getattr(vae, "use_tiling", False))
    free_cache(device)
    msg = "Out of memory while decoding; decoding again in tiles"
    log.warning(msg)
    ctx.progress(total_steps, total_steps, msg)
    try:
        if hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        try:
            return decode_latents(pipe, latents, dtype)
        except Exception as e:
            if not is_oom(e):
                raise
        free_cache(device)
        msg = "Out of memory while decoding in tiles; decoding on the CPU (slow)"
        log.warning(msg)
        ctx.progress(total_steps, total_steps, msg)
        return decode_latents(pipe, latents, torch.float32, "cpu")
    finally:
        if hasattr(vae, "disable_tiling") and not was_tiled:
            vae.disable_tiling()


def inpaint_condition(image: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """The conditioning image of an inpainting ControlNet (lllyasviel control_v11p_sd15_inpaint):
    the init image in [0, 1] with the masked pixels set to -1, as a (1, 3, H, W) tensor (the
    ``make_inpaint_condition`` of diffusers' ControlNet inpainting docs). ``mask``: > 127 =
    regenerate."""
    rgb = np.asarray(image[..., :3], dtype=np.float32) / 255.0
    rgb[np.asarray(mask) > 127] = -1.0
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def control_kwargs(
    task: str,
    controls,
    width: int,
    height: int,
    inpaint_source: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Pipeline keyword arguments for ``controls`` (ControlInput): the control images resized to
    the generation size, with per-ControlNet conditioning scale and guidance start/end. The
    txt2img ControlNet pipelines take them as ``image``, img2img/inpaint as ``control_image``.
    An "inpaint" control gets its conditioning built from ``inpaint_source`` (the init image
    and mask at the generation size, see :func:`inpaint_condition`) instead of its image."""
    if not controls:
        return {}
    images = []
    for c in controls:
        if c.kind == "inpaint" and inpaint_source is not None:
            images.append(inpaint_condition(*inpaint_source))
        else:
            images.append(pil_image(c.image, (width, height)))
    one = len(controls) == 1

    def pick(values):
        return values[0] if one else list(values)

    for c in controls:
        if not 0.0 <= c.start < c.end <= 1.0:
            raise BadInput(f"ControlNet {c.kind}: start/end must satisfy 0 <= start < end <= 1")
    return {
        ("image" if task == "txt2img" else "control_image"): pick(images),
        "controlnet_conditioning_scale": pick([float(c.weight) for c in controls]),
        "control_guidance_start": pick([float(c.start) for c in controls]),
        "control_guidance_end": pick([float(c.end) for c in controls]),
    }


def validate_request(request: GenerateRequest) -> None:
    """Reject bad values before any model loads (BadInput, one line)."""
    for label, v in (("width", request.width), ("height", request.height)):
        if not MIN_SIZE <= v <= MAX_SIZE or v % 8:
            raise BadInput(f"{label} {v} must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE}")
    if not 1 <= request.steps <= MAX_STEPS:
        raise BadInput(f"steps {request.steps} must be between 1 and {MAX_STEPS}")
    if not 1 <= request.count <= 1000:
        raise BadInput(f"count {request.count} must be between 1 and 1000")
    if not 0 <= request.guidance <= 100:
        raise BadInput(f"guidance {request.guidance} must be between 0 and 100")
    if request.seed < 0:
        raise BadInput("seed must be >= 0")
    if not 1 <= request.clip_skip <= 12:
        raise BadInput(f"clip skip {request.clip_skip} must be between 1 and 12")
    from studio.engine.diffusion.shared.lora import prompt_loras

    prompt_loras(request.prompt)  # a <lora:name> tag that isn't installed: say so now
    if request.init_image is not None:
        if not 0.0 < request.strength <= 1.0:
            raise BadInput(f"strength {request.strength} must be in (0, 1]")
        if int(request.steps * request.strength) < 1:
            raise BadInput(
                f"steps x strength = {request.steps * request.strength:g} is below one step; "
                "raise --steps or --strength"
            )
    if request.preview not in PREVIEW_MODES:
        raise BadInput(f"Unknown preview mode {request.preview!r}")
    if request.preview_of not in PREVIEW_OF:
        raise BadInput(f"Unknown preview target {request.preview_of!r}")
    if request.scheduler is not None:
        canonical_name(request.scheduler)
        check_schedule_steps(request.scheduler, request.steps)
    for c in request.controls:
        if c.image is None or c.image.ndim not in (2, 3):
            raise BadInput(f"ControlNet {c.kind}: no control image")
        if not c.model:
            raise BadInput(f"ControlNet {c.kind}: no ControlNet model given (--controlnet)")


# Above this many pixels the VAE decodes in overlapping tiles (bounded memory on big images).
VAE_TILING_PIXELS = 1536 * 1536


def vae_tiling(pipe, pixels: int) -> None:
    """Tiled VAE decoding for this job: above ``VAE_TILING_PIXELS``, or whenever the memory
    plan chose it for this card (``pipeline.place_base`` marks the VAE), never turned off
    under the plan's feet for a small image."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    if pixels > VAE_TILING_PIXELS or getattr(vae, "studio_plan_tiling", False):
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def steps_per_image(pipe, steps: int, strength: float | None) -> int:
    """How many step callbacks one image takes: the length of the scheduler's timestep list
    for ``steps`` (PNDM adds one, Heun evaluates twice per step), cut as the img2img/inpaint
    pipelines cut it for ``strength`` (they skip the first ``steps - int(steps * strength)``
    steps, times the solver order)."""
    sched = pipe.scheduler
    order = int(getattr(sched, "order", 1) or 1)
    try:
        probe = type(sched).from_config(sched.config)
        probe.set_timesteps(steps)
        n = len(probe.timesteps)
    except Exception:  # noqa: BLE001 - an estimate is fine for progress
        n = steps * order
    if strength is not None:
        t_start = max(steps - min(int(steps * strength), steps), 0)
        n -= t_start * order
    return max(1, n)
