"""Pipelines for a job: the cached base model (one at a time in the runner's cache), the task
pipelines derived from it with ``from_pipe`` (txt2img, img2img, inpaint, with or without
ControlNets; the class comes from the model's family descriptor), a fresh scheduler per job
and the job's LoRAs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families import Family, recognise_pipe
from studio.engine.diffusion.sd.schedulers import canonical_name, make_scheduler
from studio.engine.diffusion.shared.defaults import is_turbo
from studio.engine.diffusion.shared.loader import (
    ResolvedModel,
    load_controlnet,
    load_folder,
    load_single_file,
    recommended_settings,
    resolve_model,
)
from studio.engine.diffusion.shared.vae import load_vae
from studio.engine.jobs.device import pick_device

MAX_STEPS = 500


def family_of(pipe) -> Family:
    """The pipeline's model family descriptor (``families.recognise_pipe``)."""
    return recognise_pipe(pipe)


@dataclass
class LoadedModel:
    """What the runner cache keeps for one model: the base pipeline and the task pipelines
    derived from it with ``from_pipe`` (they share every module, so no extra memory)."""

    resolved: ResolvedModel
    base: object
    device: torch.device
    dtype: torch.dtype
    scheduler_config: dict
    pipes: dict = field(default_factory=dict)  # (task, controlnet refs) -> pipeline
    controlnets: dict = field(default_factory=dict)  # ref -> ControlNetModel
    loras: tuple = ()  # ((resolved path, weight), ...) currently applied
    lora_names: tuple = ()
    fused: bool = False  # the applied LoRAs are merged into the weights (fuse_lora)
    # The base weights of the LoRA-wrapped layers as they were before fusing (on the CPU):
    # unfusing subtracts the product again, which is W only to rounding; these restore it.
    unfused_weights: list = field(default_factory=list)
    own_vae: object = None  # the model's own VAE while an external one is in use
    placement: str | None = None  # "GPU", "model offload", ... (None on the CPU)
    vaes: dict = field(default_factory=dict)  # external VAE ref -> AutoencoderKL (one kept)


def _load_base(
    resolved: ResolvedModel,
    task: str,
    device: torch.device,
    dtype: torch.dtype,
    free_gib: float | None = None,
):
    """Load the model on the CPU, then place it on ``device`` whole or offloaded, as the free
    memory allows (``placement.plan_placement``); returns (pipeline, plan or None)."""
    if resolved.kind == "file":
        base = load_single_file(resolved.path, task, dtype)
    else:
        base = load_folder(resolved.path, dtype)
    return base, place_base(base, device, resolved.name, free_gib)


def place_base(base, device: torch.device, name: str, free_gib: float | None = None):
    """Put a loaded SD pipeline where the memory plan says (``placement.plan_placement``:
    whole on the device, or offloaded); returns the plan (None on the CPU)."""
    if not hasattr(base, "unet") or not hasattr(base, "vae"):
        raise ModelError(f"{name}: not a Stable Diffusion pipeline ({type(base).__name__})")
    from studio.engine.diffusion.shared.memory import apply_plan
    from studio.engine.diffusion.shared.placement import plan_placement

    plan = plan_placement(base, recognise_pipe(base), device, name, free_gib)
    try:
        if plan is None or plan.offload == "none":
            base.to(device)
        else:
            apply_plan(base, plan, device)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{name}: cannot move to {device} ({e})") from e
    # What the plan decided for decoding holds for every job (sampling.vae_tiling).
    base.vae.studio_plan_tiling = bool(plan is not None and plan.vae_tiling)
    if device.type == "cuda" and (plan is None or plan.offload == "none"):
        base.unet.to(memory_format=torch.channels_last)
    base.set_progress_bar_config(disable=True)
    return plan


def adopt_pipeline(
    runner, model: str, pipe, device: str | None = None, dtype: str | None = None,
    free_gib: float | None = None,
):  # fmt: skip
    """Make the in-memory SD pipeline ``pipe`` the loaded model for ``model`` (a folder
    whose configs describe it; its weights need not be there): placed by the memory plan for
    ``free_gib`` (default: measured) and cached under the key :func:`load_pipeline` uses, so
    the next job for ``model`` runs it through the job path users hit (benchmarks build
    full-size random models in memory this way). Replaces whatever the runner had cached.
    Returns the plan (None on the CPU)."""
    from studio.engine.diffusion.shared.placement import placement_label

    choice = pick_dtype(model, device or runner.device, dtype or runner.dtype)
    resolved = resolve_model(model)
    pipe.to(dtype=choice.dtype)
    plan = place_base(pipe, choice.device, resolved.name, free_gib)
    entry = LoadedModel(resolved, pipe, choice.device, choice.dtype, dict(pipe.scheduler.config))
    entry.placement = placement_label(plan)
    runner.clear_cache()
    runner.cache(f"pipe:{resolved.key}|{choice.device}|{choice.dtype}", lambda: entry)
    return plan


def load_pipeline(
    ctx,
    model: str,
    task: str = "txt2img",
    controlnets: tuple[str, ...] = (),
    scheduler: str | None = None,
    loras=(),
    device: str | None = None,
    dtype: str | None = None,
    vae: str | None = None,
):
    """A ready pipeline for ``task`` ("txt2img" | "img2img" | "inpaint") on the chosen device.

    The base model is cached in ``ctx.runner.cache`` (one model at a time); switching task or
    ControlNets reuses its modules through ``Pipeline.from_pipe``. Every call installs a fresh
    scheduler (``scheduler`` by user-facing name, None = the model's default; Euler with
    trailing spacing for turbo models) and applies ``loras`` (LoraSpec-like objects with
    ``path`` and ``weight``), unloading the previous job's LoRAs when they differ, and
    ``vae`` (an external VAE: catalog id, folder or file; None = the model's own).
    The model's ResolvedModel is at ``pipe.studio_model``."""
    import diffusers

    choice = pick_dtype(model, device or ctx.runner.device, dtype or ctx.runner.dtype)
    resolved = resolve_model(model)
    if scheduler is not None:
        scheduler = canonical_name(scheduler)
    key = f"pipe:{resolved.key}|{choice.device}|{choice.dtype}"

    def factory() -> LoadedModel:
        from studio.engine.diffusion.shared.placement import placement_label

        free = os.environ.get("STUDIO_FREE_VRAM_GIB")  # the memory a test or a user asserts
        base, plan = _load_base(
            resolved, task, choice.device, choice.dtype, float(free) if free else None
        )
        entry = LoadedModel(
            resolved, base, choice.device, choice.dtype, dict(base.scheduler.config)
        )
        entry.placement = placement_label(plan)
        if plan is not None:
            ctx.progress(0, 1, f"Loaded {resolved.name}: {plan.describe()}")
        return entry

    entry: LoadedModel = ctx.runner.cache(key, factory)
    ctx.check()
    base = entry.base
    family = family_of(base)
    if base.unet.config.in_channels == 9 and task != "inpaint":
        raise BadInput(
            f"{resolved.name} is an inpainting model: use it with an init image and a mask"
        )
    cn_refs = tuple(controlnets)
    pipe_key = (task, cn_refs)
    pipe = entry.pipes.get(pipe_key)
    if pipe is None:
        cls = getattr(diffusers, family.pipeline_class(task, bool(cn_refs)))
        # Keep only the ControlNets this job uses.
        for ref in [r for r in entry.controlnets if r not in cn_refs]:
            del entry.controlnets[ref]
        entry.pipes = {k: v for k, v in entry.pipes.items() if not k[1]}
        extra = {}
        if cn_refs:
            models = []
            for ref in cn_refs:
                if ref not in entry.controlnets:
                    check_controlnet_family(ref, family, resolved.name)
                    cn = load_controlnet(ref, choice.dtype).to(choice.device)
                    entry.controlnets[ref] = cn
                models.append(entry.controlnets[ref])
            extra["controlnet"] = models[0] if len(models) == 1 else models
        if type(base) is cls and not extra:
            pipe = base
        else:
            try:
                pipe = cls.from_pipe(base, **extra)
            except Exception as e:  # noqa: BLE001
                raise ModelError(f"{resolved.name}: cannot build {cls.__name__} ({e})") from e
        pipe.set_progress_bar_config(disable=True)
        entry.pipes[pipe_key] = pipe
    spacing = recommended_settings(model).get("timestep_spacing")
    pipe.scheduler = make_scheduler(
        scheduler,
        entry.scheduler_config,
        turbo=is_turbo(resolved.ref) or is_turbo(resolved.name),
        spacing=str(spacing) if spacing else None,
    )
    apply_vae(pipe, entry, vae, family)
    apply_loras(pipe, entry, loras)
    pipe.studio_model = resolved
    pipe.studio_placement = entry.placement
    from studio.engine.diffusion.shared.speed import offload_mode, speed_up

    speed_up(ctx, pipe, offload=offload_mode(entry.placement), weights="fp16")
    return pipe


def apply_vae(pipe, entry: LoadedModel, ref: str | None, family: Family) -> None:
    """Use the external VAE ``ref`` for this job (loaded once and kept while jobs ask for it),
    or the model's own VAE when ``ref`` is None: the cached model is never left with another
    job's VAE."""
    if entry.own_vae is None:
        entry.own_vae = entry.base.vae
    if ref:
        module = entry.vaes.get(ref)
        if module is None:
            module = load_vae(ref, family, entry.dtype, entry.device)
            entry.vaes = {ref: module}
    else:
        module = entry.own_vae
    if pipe.vae is not module:
        pipe.register_modules(vae=module)


def pick_dtype(model: str, device: str | None, dtype: str | None):
    """The device and weight dtype for ``model``: the user's dtype (argument or
    ``STUDIO_DTYPE``) when given, else the family's preference on this device
    (``defaults.family_dtype``: fp16 on GPUs, bf16 where fp16 is unsupported, fp32 on CPU)."""
    import os

    from studio.engine.diffusion.shared.defaults import device_support, family_dtype, model_family

    requested = dtype or os.environ.get("STUDIO_DTYPE") or None
    choice = pick_device(device, requested)
    if requested:
        return choice
    fp16_ok, bf16_ok = device_support(choice.device)
    name = family_dtype(choice.device.type, model_family(model), fp16_ok, bf16_ok)
    return pick_device(str(choice.device), name)


def controlnet_family_of(ref: str) -> Family | None:
    """The family a ControlNet was trained for, read before its weights load: a folder's
    config.json or a single file's tensor names/shapes. None when it can't be told."""
    import json

    from studio.engine.diffusion.families import controlnet_family, probe_file

    resolved = resolve_model(ref)
    if resolved.kind == "file":
        return controlnet_family(probe=probe_file(resolved.path))
    folder = resolved.path
    for cfg in (folder / "config.json", folder / "controlnet" / "config.json"):
        if cfg.exists():
            try:
                return controlnet_family(json.loads(cfg.read_text()))
            except (ValueError, ModelError):
                return None
    return None


def check_controlnet_family(ref: str, family: Family, model_name: str) -> None:
    """BadInput in one line when the ControlNet ``ref`` was made for another family (an SD1.5
    ControlNet on an SDXL model fails deep inside the UNet with a shape error otherwise)."""
    cn_family = controlnet_family_of(ref)
    if cn_family is None or family.accepts_controlnet(cn_family.name):
        return
    example = next(iter(family.controlnet_defaults.values()), None)
    hint = f" (e.g. {example})" if example else ""
    raise BadInput(
        f"ControlNet {Path(ref).name} is for {cn_family.label} but {model_name} is "
        f"{family.label}: use an {family.label} ControlNet{hint}"
    )


def apply_loras(pipe, entry: LoadedModel, loras, fuse: bool = True) -> None:
    """Apply the job's LoRAs (``lora.apply``: diffusers, kohya and PEFT files; FLUX BFL keys
    converted; LyCORIS refused in one line) and, with ``fuse``, merge them into the weights
    for the job (``fuse_lora``: W <- W + w B A, Hu et al. 2021), so every step runs at the
    speed of the plain model. A fused LoRA stays fused until a job wants other LoRAs or
    weights; then the weights it changed are restored bit for bit from a copy taken before
    fusing, so the next image without it equals one made before it was loaded."""
    from studio.engine.diffusion.shared import lora

    lora.apply(pipe, entry, loras, fuse=fuse, family=family_of(pipe))
