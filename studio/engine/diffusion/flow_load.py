"""Loading the flow-matching families (FLUX.1, FLUX.2 klein, Z-Image, SD 3.5, Qwen-Image):
recognition of folders and single files by the descriptors in ``families/``, the memory
plan (``memory.plan_memory``) and :func:`load_flow`, which caches the pipeline in the runner
like the SD pipelines."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache

import torch

from studio.core.errors import ModelError
from studio.engine.diffusion.families.base import Family, ModelInfo

FLOW_MODULES = ("flux", "flux2", "zimage", "sd3", "qwen")


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
    row = by_family.get(family.name) or by_family.get(family.root)
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
