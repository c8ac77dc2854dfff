"""Generation for the flow-matching families (FLUX.1, FLUX.2 klein, Z-Image, SD 3.5,
Qwen-Image): the job handler :func:`run_flow_generate` for a GenerateRequest whose model is
one of them, and :func:`denoise_flow`, the loop with progress, x0 previews and cancel.

The same contract as ``generate.denoise``: the step callback checks the cancel token first and
raises from inside the loop (no further step, no VAE decode); previews show
x0_hat = x_t - sigma_t v (``flow.FlowTap``; Lipman et al. 2023, Esser et al. 2024) inside the
job's region; image k of a batch uses seed + k with its own generator. Distilled models get
their own settings from the caller (the catalog's ``recommended``): the pipelines' defaults are
wrong for them. Families come from the descriptors in ``families/{flux,flux2,zimage,sd3,qwen}``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families.base import Family, ModelInfo
from studio.engine.diffusion.flow import FlowPreview, FlowTap

FLOW_MODULES = ("flux", "flux2", "zimage", "sd3", "qwen")
SAMPLER = "Euler (flow matching)"


@cache
def flow_families() -> tuple[Family, ...]:
    """Every flow-family descriptor (variants included), most specific first."""
    found = []
    for mod in FLOW_MODULES:
        m = importlib.import_module(f"studio.engine.diffusion.families.{mod}")
        found += [getattr(m, n) for n in ("FAMILY", "FILL", "KONTEXT", "EDIT") if hasattr(m, n)]
    return tuple(sorted(found, key=lambda f: -f.priority))


def recognise_flow(info: ModelInfo) -> Family | None:
    for fam in flow_families():
        if fam.matches(info):
            return fam
    return None


def recognise_flow_file(probe) -> tuple[Family, str] | None:
    """(family, shipped config name) of a single transformer/checkpoint file, else None."""
    for fam in flow_families():
        config = fam.match_file(probe)
        if config is not None:
            return fam, config
    return None


def is_flow_model(folder) -> bool:
    """Whether a diffusers folder holds a flow-family pipeline (cheap: JSON only)."""
    from studio.engine.diffusion.families.registry import folder_info

    try:
        return recognise_flow(folder_info(folder)) is not None
    except Exception:  # noqa: BLE001 - not a pipeline folder
        return False


@dataclass
class LoadedFlow:
    base: object
    family: Family
    device: torch.device
    dtype: torch.dtype
    name: str
    pipes: dict = field(default_factory=dict)
    loras: tuple = ()  # ((resolved path, weight), ...) applied now (generate.apply_loras' ledger)
    lora_names: tuple = ()


def flow_plan(family: Family, device, free_gib: float | None = None):
    """The memory plan (``memory.plan_memory``) for a flow family on ``device`` from the
    planner's table row for the family (bf16 weights; load-time formats, GGUF / NF4, are not
    chosen here): None on the CPU or when the free memory is unknown. ``free_gib`` overrides
    the measurement (tests); ``STUDIO_OFFLOAD`` forces an offload mode."""
    import os

    from studio.engine.diffusion.memory import MODEL_NEEDS, plan_memory
    from studio.engine.diffusion.placement import free_memory_gib

    device = torch.device(device)
    if free_gib is None:
        if device.type == "cpu":
            return None
        free_gib = free_memory_gib(device)
        if free_gib is None:
            return None
    by_family: dict = {}
    for n in MODEL_NEEDS.values():
        by_family.setdefault(n.family, n)
    # a variant (flux1-fill, qwen-edit) uses its base family's row
    row = by_family.get(family.name) or by_family.get(family.name.split("-")[0])
    if row is None:
        return None
    forced = os.environ.get("STUDIO_OFFLOAD", "").strip().lower() or None
    return plan_memory(row, free_gib, formats=("bf16",), offload=forced)


def load_flow(ctx, model: str, device: str | None = None, dtype: str | None = None) -> LoadedFlow:
    """The flow pipeline for ``model`` (folder, repo id in the HF cache, catalog id), offline,
    cached in the runner like the SD pipelines."""
    from studio.engine.diffusion.families.registry import folder_info
    from studio.engine.diffusion.loader import load_folder, resolve_model
    from studio.engine.jobs.device import pick_device

    choice = pick_device(device or ctx.runner.device, dtype or ctx.runner.dtype)
    resolved = resolve_model(model)
    if resolved.kind != "folder":
        raise ModelError(
            f"{resolved.name}: single-file flow models are not wired yet; use the folder"
        )
    fam = recognise_flow(folder_info(resolved.path))
    if fam is None:
        raise ModelError(f"{resolved.name}: not a flow-matching model Studio knows")

    def factory() -> LoadedFlow:
        dt = (
            choice.dtype
            if choice.dtype != torch.float16 or "float16" in fam.dtypes
            else torch.bfloat16
        )
        base = load_folder(resolved.path, dt)
        plan = flow_plan(fam, choice.device)
        if plan is None:
            base.to(choice.device)
        else:
            from studio.engine.diffusion.memory import apply_plan

            apply_plan(base, plan, choice.device)  # GPU whole, or model/group/sequential offload
        base.set_progress_bar_config(disable=True)
        return LoadedFlow(base, fam, choice.device, dt, resolved.name)

    return ctx.runner.cache(f"flow:{resolved.key}|{choice.device}|{choice.dtype}", factory)


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


def _apply_loras(pipe, entry: LoadedFlow, loras) -> None:
    """Load LoRA adapters (``pipe.load_lora_weights``: the FLUX/SD3/Z-Image/Qwen/FLUX.2
    pipelines have it) and weight them with ``set_adapters``; the previous job's adapters are
    unloaded when the set changes, also after a failure, so none leaks into the next job. (The
    SD path's ``apply_loras`` also fuses; its ledger is its own, so this one stays separate.)"""
    import re
    from pathlib import Path

    wanted = []
    for spec in loras:
        p = Path(spec.path).expanduser()
        if not p.is_file():
            raise ModelError(f"{spec.path}: LoRA file not found")
        wanted.append((str(p.resolve()), float(spec.weight)))
    if tuple(wanted) == entry.loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise BadInput(f"{entry.family.label} pipelines take no LoRA in this diffusers version")
    if tuple(p for p, _ in wanted) != tuple(p for p, _ in entry.loras):
        if entry.loras:
            pipe.unload_lora_weights()
            entry.loras, entry.lora_names = (), ()
        names = []
        try:
            for i, (path, _w) in enumerate(wanted):
                name = f"l{i}_" + re.sub(r"\W", "_", Path(path).stem)[:40]
                pipe.load_lora_weights(path, adapter_name=name)
                names.append(name)
        except Exception as e:  # noqa: BLE001
            try:
                pipe.unload_lora_weights()
            except Exception:  # noqa: BLE001
                pass
            entry.loras, entry.lora_names = (), ()
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ModelError(f"{Path(path).name}: cannot apply LoRA to this model ({first})") from e
        entry.lora_names = tuple(names)
    if wanted:
        pipe.set_adapters(list(entry.lora_names), adapter_weights=[w for _, w in wanted])
    entry.loras = tuple(wanted)


def flow_kwargs(
    family: Family, pipe, prompt: str, negative: str, steps: int, guidance: float
) -> dict:
    """Pipeline arguments in each family's terms: Qwen-Image's true CFG (with the ' ' negative
    its card uses), FLUX.1 schnell's 256-token T5 limit, no negative prompt where the family
    has none."""
    kw: dict = {"prompt": prompt, "num_inference_steps": steps}
    if family.name.startswith("qwen"):
        kw["true_cfg_scale"] = guidance
        if guidance > 1:
            kw["negative_prompt"] = negative or " "
    else:
        kw["guidance_scale"] = guidance
        if family.supports_negative_prompt and negative:
            kw["negative_prompt"] = negative
    cfg = getattr(getattr(pipe, "transformer", None), "config", {})
    if family.name == "flux1" and not cfg.get("guidance_embeds", False):
        kw["max_sequence_length"] = 256  # schnell
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
        from studio.engine.diffusion.loader import resolve_model

        for ref in (family.preview_decoder, family.preview_repo):
            try:
                folder = resolve_model(ref).path
                break
            except Exception:  # noqa: BLE001 - not installed
                continue
    if folder is None:
        return None
    from studio.engine.diffusion.loader import load_taesd

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
        decoder = FlowPreview(pipe, family.name.split("-")[0], preview, height, width, tiny)
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
    images = np.asarray(out.images)
    if not np.isfinite(images).all():
        raise ModelError("The model produced NaN pixels; try --dtype float32")
    return [
        np.ascontiguousarray((np.clip(im, 0, 1) * 255).round().astype(np.uint8)) for im in images
    ]


def _pil(image: np.ndarray, size: tuple[int, int], mode: str = "RGB"):
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    im = im.convert(mode)
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def run_flow_generate(ctx, request):
    """Job handler for a GenerateRequest on a flow model: txt2img, img2img (or edit for
    Kontext / Qwen-Image-Edit: the image conditions the model, no strength), and whole-image
    inpaint when a mask is given. Returns ``ctx.finished`` with A1111-style metadata that
    records the family."""
    from studio.core.metadata import request_metadata
    from studio.engine.jobs.device import generator_for

    entry = load_flow(ctx, request.model, request.device, request.dtype)
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
    pipe = task_pipe(entry, task)
    _apply_loras(pipe, entry, request.loras)
    size = (request.width, request.height)
    kw = flow_kwargs(
        fam, pipe, request.prompt, request.negative_prompt, request.steps, request.guidance
    )
    strength = None
    edit = fam.name in ("flux1-kontext", "qwen-edit")
    if task in ("img2img", "inpaint"):
        kw["image"] = _pil(request.init_image, size)
        if not edit and fam.name != "flux1-fill":
            strength = float(request.strength)
            kw["strength"] = strength
    if task == "inpaint":
        kw["mask_image"] = _pil(request.mask, size, "L")
    if fam.name == "flux1-kontext":
        # Kontext otherwise resizes to its ~1 MP preferred sizes: keep the canvas region's.
        kw.update(max_area=request.width * request.height, _auto_resize=False)
    per_image = steps_for(request.steps, strength)
    total = per_image * request.count
    tiny = _tiny_decoder(ctx, fam, pipe) if request.preview == "taesd" else None
    images, metadata = [], []
    ctx.progress(0, total)
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
            height=request.height,
            width=request.width,
            step_offset=k * per_image,
            tiny=tiny,
            generator=generator_for(seed, pipe.device),
            **kw,
        )
        images.append(out[0])
        meta = request_metadata(request, seed, entry.name, sampler=SAMPLER)
        meta["family"] = fam.name
        metadata.append(meta)
        ctx.progress((k + 1) * per_image, total)
    return ctx.finished(images, metadata, {"family": fam.name, "seconds": time.perf_counter() - t0})
