"""VRAM-aware placement of an SD pipeline: measure the free accelerator memory, and run the
model on the GPU whole, with diffusers' model CPU offload (one component on the GPU at a time)
or with sequential offload (one layer at a time; slowest, smallest), as the memory planner
(``studio.engine.diffusion.shared.memory``) decides from the pipeline's real component sizes and the
family's per-step and decode working memory.

Free memory is ``torch.cuda.mem_get_info`` plus what PyTorch's caching allocator holds but does
not use (``memory_reserved - memory_allocated``): that memory is reusable by this process.
``STUDIO_OFFLOAD`` (none | model | group | sequential) forces a choice. On the CPU nothing is
planned. The decision is unit-tested with given memory numbers; the offload calls themselves
need a CUDA device and were not run in the test suite.
"""

from __future__ import annotations

import os

import torch

from studio.engine.diffusion.families import Family
from studio.engine.diffusion.shared.memory import GIB, MODEL_NEEDS, ModelNeeds, Plan, plan_memory

# Per-family working memory when the planner's table has no row for the family (GB at the
# family's native size): one UNet step with the CFG batch, and the untiled VAE decode.
_FALLBACK_WORK = {"work_gb": 1.0, "decode_gb": 1.5}


def free_memory_gib(device: torch.device) -> float | None:
    """Free accelerator memory in GiB including the allocator's unused cache; None when the
    device can't say (CPU, or an MPS build without the counters)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return (free + max(cached, 0)) / GIB
    if device.type == "mps" and hasattr(torch, "mps"):
        try:
            limit = torch.mps.recommended_max_memory()
            return max(limit - torch.mps.current_allocated_memory(), 0) / GIB
        except (AttributeError, RuntimeError):
            return None
    return None


def _bytes(module) -> int:
    if module is None or not hasattr(module, "parameters"):
        return 0
    return sum(p.numel() * p.element_size() for p in module.parameters())


def pipeline_needs(pipe, family: Family, name: str) -> ModelNeeds:
    """ModelNeeds of a loaded pipeline: its real weight sizes (GB, as loaded), its VAE's tile
    and the family's working memory from the planner's table."""
    by_family: dict[str, ModelNeeds] = {}
    for n in MODEL_NEEDS.values():
        by_family.setdefault(n.family, n)
    row = by_family.get(family.name)
    text = sum(_bytes(getattr(pipe, n, None)) for n in family.text_encoders)
    return ModelNeeds(
        key=name,
        label=name,
        family=family.name,
        transformer_gb=_bytes(getattr(pipe, "unet", None)) / 1e9,
        text_encoder_gb=text / 1e9,
        vae_gb=_bytes(getattr(pipe, "vae", None)) / 1e9,
        blocks=row.blocks if row else 8,
        te_blocks=row.te_blocks if row else 12,
        work_gb=row.work_gb if row else _FALLBACK_WORK["work_gb"],
        decode_gb=row.decode_gb if row else _FALLBACK_WORK["decode_gb"],
        native_px=row.native_px if row else family.default_size[0],
        quantizable=False,
        vae_tile_px=_vae_tile(getattr(pipe, "vae", None), row),
    )


def _vae_tile(vae, row: ModelNeeds | None) -> int:
    """The side above which the pipeline's VAE tiles a decode: its ``sample_size``."""
    size = getattr(getattr(vae, "config", None), "sample_size", None)
    if isinstance(size, (list, tuple)):
        size = max(size)
    if isinstance(size, int) and size > 0:
        return size
    return row.vae_tile_px if row else 1024


def plan_placement(
    pipe, family: Family, device: torch.device, name: str, free_gib: float | None = None
) -> Plan | None:
    """The memory plan for ``pipe`` on ``device`` (None on the CPU or when the free memory is
    unknown). ``free_gib`` overrides the measurement (tests)."""
    if free_gib is None:
        if device.type == "cpu":
            return None
        free_gib = free_memory_gib(device)
        if free_gib is None:
            return None
    forced = os.environ.get("STUDIO_OFFLOAD", "").strip().lower() or None
    needs = pipeline_needs(pipe, family, name)
    return plan_memory(needs, free_gib, formats=("bf16",), offload=forced)


def placement_label(plan: Plan | None) -> str | None:
    """What metadata and the event message say: "GPU", "model offload", "group offload" or
    "sequential offload" (None on the CPU)."""
    if plan is None:
        return None
    return {"none": "GPU"}.get(plan.offload, f"{plan.offload} offload")
