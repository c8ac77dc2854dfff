"""Which memory-planner row a model uses, and the plan for a model reference (torch-free).

The planner (:mod:`studio.engine.diffusion.shared.memory`) works on :class:`ModelNeeds` rows. This
module maps what the rest of Studio has to those rows:

- a family name (a descriptor in ``families/``, whose ``memory`` fields hold its rows) and a hint
  (catalog id, repo id, file or folder name) to a row: ``flux2`` + "...-9B" is FLUX.2 klein
  9B, ``sd3`` + "...large..." is SD 3.5 Large; variants (Fill, Kontext, Qwen-Image-Edit) have
  rows of their own with their base model's sizes (:func:`needs_for`);
- a diffusers folder to its real weight sizes, read from the safetensors headers (parameter
  count x 2 bytes, the bf16/fp16 size the pipeline is loaded in), so a 4B and a 9B model, or a
  tiny test model, are planned with what they hold (:func:`folder_sizes`);
- the user's overrides (``quant`` in ``WEIGHT_FORMATS``, ``offload`` in ``OFFLOADS``, None =
  the planner decides) to a plan (:func:`plan_for_family`, :func:`plan_for_model`).

What "Auto" may choose (:data:`AUTO_FORMATS`): formats made from the bf16 checkpoint at load
time, bf16, fp8 (layerwise casting) and NF4 (with bitsandbytes). GGUF weights are files of
their own, so they are planned only when forced (``quant="q8_0"``) or when the model is a
.gguf file.

:func:`device_memory` is the one torch-using function (imported inside it): the device and
its free memory, which the UI's engine thread probes at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from studio.core.errors import BadInput
from studio.engine.diffusion.shared.memory import (
    MODEL_NEEDS,
    OFFLOADS,
    WEIGHT_FORMATS,
    ModelNeeds,
    Plan,
    available_formats,
    plan_memory,
)

# Formats Auto may pick: conversions of the bf16 checkpoint at load time (GGUF needs a file).
AUTO_FORMATS = ("bf16", "fp8", "nf4")


@dataclass(frozen=True)
class FamilyRows:
    """A family's planner rows: its label, the row used without a better hint, and (substring
    of the normalised hint, row) pairs tried in order."""

    label: str
    default: str
    hints: tuple[tuple[str, str], ...] = ()


def _family_rows() -> dict[str, FamilyRows]:
    from studio.engine.diffusion.families.registry import families

    return {
        f.name: FamilyRows(f.label, f.memory_default or f.memory[0].key, f.memory_hints)
        for f in families()
        if f.memory
    }


FAMILY_ROWS: dict[str, FamilyRows] = _family_rows()
# The families that take quantized weights and the quant/offload overrides.
FLOW_FAMILIES = frozenset(k for k, r in FAMILY_ROWS.items() if MODEL_NEEDS[r.default].quantizable)

# planner key -> family name (a variant's own family first: qwen-image-edit -> qwen-edit)
_KEY_FAMILY: dict[str, str] = {}
for _fam, _rows in FAMILY_ROWS.items():
    _KEY_FAMILY.setdefault(_rows.default, _fam)
for _fam, _rows in FAMILY_ROWS.items():
    for _token, _key in _rows.hints:
        _KEY_FAMILY.setdefault(_key, _fam)


def _name_rows() -> tuple[tuple[str, str], ...]:
    """Name patterns for files whose family can't be read (GGUF files), the families' own
    (``Family.memory_names``) in the registry's order: the most specific family first."""
    from studio.engine.diffusion.families.registry import families

    return tuple(p for f in families() for p in f.memory_names)


_NAME_ROWS = _name_rows()


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def is_flow_family(family: str | None) -> bool:
    """Whether ``family`` (a family name) takes the quant/offload overrides."""
    return family in FLOW_FAMILIES


def quant_family_labels() -> str:
    """The labels of the families that take the quant/offload overrides, as prose."""
    from studio.engine.diffusion.families.registry import family_labels

    return family_labels(lambda f: is_flow_family(f.name))


def family_label(family: str) -> str:
    rows = FAMILY_ROWS.get(family)
    return rows.label if rows else family


def row_for(family: str, hint: str | None = None) -> ModelNeeds | None:
    """The planner row for ``family`` refined by ``hint`` (catalog id, repo id, file or folder
    name); None for a family the planner has no row for. A variant family (``flux1-fill``) has
    its own row; an unknown variant name falls back to its base (``flux1-x`` -> ``flux1``)."""
    rows = FAMILY_ROWS.get(family) or FAMILY_ROWS.get(family.split("-")[0])
    if rows is None:
        return None
    key = None
    h = _norm(Path(hint).name if hint else "")
    if h in MODEL_NEEDS and MODEL_NEEDS[h].family == MODEL_NEEDS[rows.default].family:
        key = h
    else:
        key = next((k for token, k in rows.hints if token in h), None)
    if key is None:
        return replace(MODEL_NEEDS[rows.default], label=rows.label)
    return MODEL_NEEDS[key]


def row_from_name(name: str) -> ModelNeeds | None:
    """A row from a file name alone (GGUF files, whose tensors Studio does not read here)."""
    h = _norm(Path(name).name)
    return next((MODEL_NEEDS[k] for pat, k in _NAME_ROWS if re.search(pat, h)), None)


def gguf_format(name: str) -> str:
    """The planner's weight format for a GGUF file by its quant tag: Q8_0 -> q8_0, any other
    (Q4_K_S, Q5_K_M, Q6_K, ...) -> q4_k, the planner's one low-bit GGUF row (an estimate)."""
    return "q8_0" if re.search(r"q8", Path(name).name.lower()) else "q4_k"


def _params(path: Path) -> int:
    from studio.engine.diffusion.families.registry import safetensors_shapes

    n = 0
    for shape in safetensors_shapes(path).values():
        size = 1
        for d in shape:
            size *= d
        n += size
    return n


def _component_gb(folder: Path) -> float:
    """bf16 GB of one component folder: its .safetensors files (one variant: the plain files
    if there are any, else the first variant's, e.g. ``*.fp16.safetensors``)."""
    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if not re.search(r"\.(fp16|bf16|fp32|fp8)[.-]", f.name)]
    if not plain and files:
        tag = re.search(r"\.(fp16|bf16|fp32|fp8)[.-]", files[0].name).group(1)
        plain = [f for f in files if f".{tag}" in f.name]
    return sum(_params(f) for f in plain) * 2 / 1e9


def folder_sizes(folder: str | Path) -> tuple[float, float, float] | None:
    """(denoiser, text encoders, VAE) in decimal GB at 2 bytes per weight for a diffusers
    folder, from the safetensors headers (no weights read, no torch); None when the folder
    has no readable denoiser weights (a config-only folder, .bin files)."""
    folder = Path(folder)
    try:
        main = next((folder / n for n in ("transformer", "unet") if (folder / n).is_dir()), None)
        if main is None:
            return None
        t = _component_gb(main)
        te = sum(_component_gb(d) for d in folder.glob("text_encoder*") if d.is_dir())
        vae = _component_gb(folder / "vae") if (folder / "vae").is_dir() else 0.0
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return (t, te, vae) if t > 0 else None


def needs_for(
    family: str, hint: str | None = None, folder: str | Path | None = None
) -> ModelNeeds | None:
    """The :class:`ModelNeeds` a model is planned with: the family's row (:func:`row_for`)
    and, for a diffusers ``folder`` with readable weights, that folder's real sizes (the row
    keeps the working memory, block counts and native size)."""
    row = row_for(family, hint)
    if row is None or folder is None:
        return row
    sizes = folder_sizes(folder)
    if sizes is None:
        return row
    t, te, vae = sizes
    return replace(row, transformer_gb=t, text_encoder_gb=te, vae_gb=vae)


def env_offload() -> str | None:
    """``STUDIO_OFFLOAD`` (none | model | group | sequential): forces the offload wherever
    the user gave none (the engine's loaders read it too)."""
    import os

    return os.environ.get("STUDIO_OFFLOAD", "").strip().lower() or None


def auto_formats() -> tuple[str, ...]:
    """:data:`AUTO_FORMATS` that this installation can load (NF4 needs bitsandbytes)."""
    have = available_formats()
    return tuple(f for f in AUTO_FORMATS if f in have)


def check_overrides(quant: str | None, offload: str | None) -> None:
    """BadInput in one line for a quant / offload value that is not one of the planner's."""
    if quant is not None and quant not in WEIGHT_FORMATS:
        raise BadInput(f"Unknown quant {quant!r} (use auto, {', '.join(WEIGHT_FORMATS)})")
    if offload is not None and offload not in OFFLOADS:
        raise BadInput(f"Unknown offload {offload!r} (use auto, {', '.join(OFFLOADS)})")


def plan_for_needs(
    needs: ModelNeeds,
    free_gib: float | None,
    *,
    pixels: int | None = None,
    quant: str | None = None,
    offload: str | None = None,
    formats: Iterable[str] | None = None,
    ram_gib: float | None = None,
) -> Plan | None:
    """:func:`memory.plan_memory` for ``needs`` with the user's overrides; None when the free
    memory is unknown (the CPU). ``formats`` defaults to :data:`AUTO_FORMATS` that this
    installation can load; ``offload`` None takes ``STUDIO_OFFLOAD`` when set. A UNet family
    (SD 1.x/2.x/SDXL) runs in fp16 only: a quant other than bf16 is refused there (BadInput)."""
    offload = offload or env_offload()
    check_overrides(quant, offload)
    if free_gib is None:
        return None
    if not needs.quantizable and quant not in (None, "bf16"):
        raise BadInput(
            f"{needs.label} runs in fp16: quantized weights (--quant {quant}) are for the "
            f"flow families ({quant_family_labels()})"
        )
    if formats is None:
        formats = auto_formats()
    weights = quant if needs.quantizable else None
    return plan_memory(
        needs, free_gib, ram_gib=ram_gib, formats=formats, pixels=pixels, offload=offload,
        weights=weights,
    )  # fmt: skip


def plan_for_family(
    family: str,
    free_gib: float | None,
    pixels: int | None = None,
    quant: str | None = None,
    offload: str | None = None,
    *,
    hint: str | None = None,
    folder: str | Path | None = None,
    formats: Iterable[str] | None = None,
    ram_gib: float | None = None,
) -> Plan | None:
    """The plan for a model of ``family`` (a family name) on ``free_gib`` free accelerator
    memory (None: the CPU or unknown -> None). ``hint``/``folder``: see :func:`needs_for`;
    ``quant``/``offload``: the user's overrides (None = the planner decides); ``pixels``:
    width x height of the job (default the native size). None for a family with no row."""
    check_overrides(quant, offload)
    needs = needs_for(family, hint, folder)
    if needs is None:
        return None
    return plan_for_needs(
        needs, free_gib, pixels=pixels, quant=quant, offload=offload, formats=formats,
        ram_gib=ram_gib,
    )  # fmt: skip


@dataclass(frozen=True)
class ModelPlanInput:
    """What :func:`model_needs` found out about a model reference."""

    needs: ModelNeeds
    family: str
    quant: str | None = None  # the format the file itself fixes (a .gguf file)


def model_needs(ref: str) -> ModelPlanInput | None:
    """The planner input for a model reference, torch-free: an installed folder or
    .safetensors (its family and, for a folder, real sizes), a .gguf file (family and quant
    from its name), a catalog id not installed (its catalog row). None when unknown."""
    ref = (ref or "").strip()
    if not ref:
        return None
    if ref.lower().endswith(".gguf"):
        row = row_from_name(ref)
        return ModelPlanInput(row, row.family, gguf_format(ref)) if row else None
    from studio.engine.diffusion.shared.defaults import model_info

    info = model_info(ref)
    if info is not None:
        fam = info[0].name
        folder = None
        hint = ref
        try:
            from studio.engine.diffusion.shared.loader import resolve_model

            resolved = resolve_model(ref)
            folder = resolved.path if resolved.kind == "folder" else None
            hint = resolved.name  # the catalog id, repo id, folder or file name
        except Exception:  # noqa: BLE001 - model_info found it; the sizes are a refinement
            pass
        needs = needs_for(fam, hint, folder)
        return ModelPlanInput(needs, fam) if needs else None
    key = _norm(ref)
    if key in _KEY_FAMILY:  # a catalog id (or planner key) not installed
        return ModelPlanInput(MODEL_NEEDS[key], _KEY_FAMILY[key])
    try:  # another catalog model not installed: its base family's row
        from studio.core.catalog import load_catalog

        kinds = ("txt2img", "inpaint", "edit")
        entry = next((e for e in load_catalog() if e.id == ref and e.kind in kinds), None)
    except Exception:  # noqa: BLE001 - no catalog: nothing more to know
        entry = None
    if entry is not None and entry.bases:
        needs = needs_for(entry.bases[0], ref)
        return ModelPlanInput(needs, entry.bases[0]) if needs else None
    return None


def plan_for_model(
    ref: str,
    free_gib: float | None,
    pixels: int | None = None,
    quant: str | None = None,
    offload: str | None = None,
    *,
    formats: Iterable[str] | None = None,
    ram_gib: float | None = None,
) -> Plan | None:
    """The plan for a model reference (:func:`model_needs`); None when the free memory or the
    model is unknown. A .gguf file fixes the weights' format (a different ``quant`` is
    refused)."""
    check_overrides(quant, offload)
    found = model_needs(ref)
    if found is None:
        return None
    if found.quant is not None:
        if quant not in (None, found.quant):
            raise BadInput(f"{Path(ref).name} is a {found.quant.upper()} GGUF file: drop --quant")
        quant = found.quant
    return plan_for_needs(
        found.needs, free_gib, pixels=pixels, quant=quant, offload=offload, formats=formats,
        ram_gib=ram_gib,
    )  # fmt: skip


def plan_line(plan: Plan | None, device: str | None = "cuda") -> str:
    """The one line the UI and ``studio plan`` show: ``Plan: model offload, fp8, 10.2 GiB of
    11.2 GiB free, fits``; on the CPU (or when the device reports no free memory) what
    happens instead."""
    if device == "cpu":
        return "CPU: no memory plan, runs in float32 on the CPU"
    if plan is None:
        return "Plan: decided when the model loads (its size is not known here)"
    return f"Plan: {plan.summary()}"


def device_memory(device: str | None = None) -> dict:
    """The device jobs run on and its free memory: ``{"device": "cuda" | "mps" | "cpu",
    "name": ..., "free_gib": float | None, "total_gib": float | None}``. Imports torch (the
    engine thread calls it at start-up; the UI only reads the result)."""
    from studio.engine.jobs.device import free_bytes, pick_device

    dev = pick_device(device).device
    out: dict = {"device": dev.type, "name": dev.type.upper(), "free_gib": None, "total_gib": None}
    if dev.type == "cuda":
        import torch

        out["name"] = torch.cuda.get_device_name(dev)
        fb = free_bytes(dev)
        if fb is not None:
            out["free_gib"], out["total_gib"] = fb[0] / 2**30, fb[1] / 2**30
    elif dev.type == "mps":
        from studio.engine.diffusion.shared.placement import free_memory_gib

        out["name"] = "Apple GPU (MPS)"
        out["free_gib"] = free_memory_gib(dev)
    return out
