"""Loading the flow-matching families (FLUX.1, FLUX.2 klein, Z-Image, SD 3.5, Qwen-Image):
recognition of folders and single files by the descriptors in ``families/``, the memory
plan (``shared.memory.plan_memory``) and :func:`load_flow`, which caches the pipeline in the runner
like the SD pipelines.

A model is a diffusers folder (a path, a repo id in the HF cache, a catalog id) or a single
file (``.safetensors`` / ``.sft`` / ``.gguf``; ``flow.files``): a transformer-only file is
joined to the rest of its base repo's pipeline, a full checkpoint loads with the pipeline's
``from_single_file``. The user's overrides (``quant``: ``memory.WEIGHT_FORMATS``,
``offload``: ``memory.OFFLOADS``; None = the planner decides) force the plan: fp8 is
diffusers' layerwise casting (float8_e4m3fn storage, upcast per layer; on the CPU too), nf4
is bitsandbytes at load time, q8_0 / q4_k are GGUF files (forcing them on another model is
refused in one line)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import torch

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families.base import Family
from studio.engine.diffusion.families.registry import recognise_flow, recognise_flow_file


@cache
def flow_families() -> tuple[Family, ...]:
    """Every flow-family descriptor of the registry (variants included), most specific
    first."""
    from studio.engine.diffusion.families.registry import families

    return tuple(f for f in families() if f.prediction == "flow")


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
    plan: object | None = None  # the memory.Plan it was loaded with (None: the CPU, no plan)
    source: str = "folder"  # "folder" | "transformer file" | "gguf file" | "checkpoint"

    @property
    def plan_line(self) -> str:
        """How it runs, for metadata and ``studio info``: the plan's one line on a GPU; on the
        CPU the dtype and the weights' format when it is not plain (a GGUF file, fp8)."""
        if self.device.type == "cpu" or self.plan is None:
            line = f"{self.device.type.upper()}, {str(self.dtype).removeprefix('torch.')}"
            weights = getattr(self.plan, "weights", "bf16")
            return line if weights == "bf16" else f"{line}, {weights} weights"
        return self.plan.describe()


# Load-time formats that need a file or a package of their own.
GGUF_FORMATS = ("q8_0", "q4_k")


def _check_overrides(
    family: Family, quant: str | None, offload: str | None, gguf: str | None, name: str
):
    """BadInput in one line for a quant/offload the model cannot take."""
    from studio.engine.diffusion.shared.memory import MODEL_NEEDS
    from studio.engine.diffusion.shared.memory_models import check_overrides

    check_overrides(quant, offload)
    if gguf is not None:
        if quant is not None and quant != gguf:
            raise BadInput(
                f"{name} is a {gguf.upper()} GGUF file: its weights are already quantized "
                f"(drop the quant setting or use {gguf})"
            )
    elif quant in GGUF_FORMATS:
        # the family's (else its base's) first planner row names a GGUF repo to get one from
        rows = [
            r for f in (family.name, family.root) for r in MODEL_NEEDS.values() if r.family == f
        ]
        row = rows[0] if rows else None
        repo = getattr(row, "gguf_repo", None)
        where = f", e.g. from {repo}" if repo else ""
        raise BadInput(
            f"quant {quant} means a {quant.upper()} GGUF file: choose a .gguf file of "
            f"{family.label} as the model{where} (or use fp8 / nf4 for this one)"
        )


def _cpu_ram_gib() -> float:
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return 16.0


def system_ram_gib() -> float | None:
    """The machine's RAM in GiB (what offloaded weights live in), None where it can't be
    read. The total, not the free RAM: a cached model about to be replaced still holds some."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def flow_plan(
    family: Family,
    device,
    free_gib: float | None = None,
    *,
    quant: str | None = None,
    offload: str | None = None,
    hint: str | None = None,
    gguf: str | None = None,
    label: str | None = None,
    folder=None,
    size: tuple[int, int] | None = None,
    ram_gib: float | None = None,
):
    """The memory plan (``shared.memory.plan_memory``) for a flow family on ``device`` from the
    planner's row for the family (``hint``: a single file's config name picks its row), or
    None when nothing is forced and the device is the CPU or its free memory is unknown.
    ``quant`` / ``offload`` force the weights / offload (the request's overrides);
    ``STUDIO_OFFLOAD`` forces an offload mode too. ``gguf``: the format of a GGUF file (its
    weights are that, whatever else). On the CPU a forced plan is made against the free RAM
    (fp8 layerwise casting applies there; offloading means nothing: a note says so).
    ``free_gib`` overrides the measurement (tests); ``label`` names the model in messages;
    ``folder``: a diffusers folder whose real component sizes replace the row's (the same
    :func:`memory_models.needs_for` the UI's plan line and ``studio plan`` use, so what they
    show is what loads); ``size``: the job's (width, height), planned at (default the native
    size); ``ram_gib``: the RAM the offloaded weights must fit (default the machine's,
    :func:`system_ram_gib`). Bad overrides: BadInput."""
    from studio.engine.diffusion.shared.memory import plan_memory
    from studio.engine.diffusion.shared.memory_models import auto_formats, env_offload, needs_for
    from studio.engine.diffusion.shared.placement import free_memory_gib

    _check_overrides(family, quant, offload, gguf, label or hint or family.label)
    device = torch.device(device)
    offload = offload or env_offload()
    weights = gguf or quant
    forced = weights is not None or offload is not None
    if free_gib is None:
        if device.type == "cpu":
            if not forced:
                return None
            free_gib = _cpu_ram_gib()
        else:
            free_gib = free_memory_gib(device)
            if free_gib is None:
                if not forced:
                    return None
                free_gib = 0.0  # unknown: the forced plan is shown as not fitting
    row = needs_for(family.name, hint, folder)
    if row is None:
        return None
    formats = (weights, "bf16") if weights else auto_formats()  # bf16: the text encoders
    if device.type != "cpu" and ram_gib is None:
        ram_gib = system_ram_gib()
    plan = plan_memory(
        row, free_gib, formats=formats, offload=offload, weights=weights, size=size,
        ram_gib=ram_gib if device.type != "cpu" else None,
    )  # fmt: skip
    if device.type == "cpu" and plan.offload != "none":
        plan = replace(plan, notes=(*plan.notes, "on the CPU offloading does nothing"))
    return plan


def _nf4_ready(device: torch.device) -> None:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise BadInput("NF4 weights need the bitsandbytes package: pip install bitsandbytes")
    if device.type != "cuda":
        raise BadInput(
            f"NF4 weights (bitsandbytes) run on a CUDA GPU, not the {device.type.upper()}: "
            "use quant fp8 or bf16 here"
        )


def _local_file(model: str) -> Path | None:
    """The single file ``model`` names (a path, a catalog id or a dropped file's name, through
    the one resolver), or None when it is a folder."""
    from studio.engine.diffusion.flow.files import FLOW_FILE_SUFFIXES
    from studio.engine.diffusion.shared.loader import DIFFUSION_KINDS
    from studio.engine.models.resolver import resolve

    path = Path((model or "").strip()).expanduser()
    if not path.exists():
        try:
            path = resolve(model, DIFFUSION_KINDS)
        except (BadInput, ModelError):
            return None  # resolve_model gives the one-line refusal
    if path.is_file() and path.suffix.lower() in FLOW_FILE_SUFFIXES:
        return path.resolve()
    return None


def _final_dtype(family: Family, dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype != torch.float16 or "float16" in family.dtypes else torch.bfloat16


def dtype_requested(ctx, dtype: str | None) -> bool:
    """Whether the job names a dtype: its own, the runner's or ``STUDIO_DTYPE``."""
    import os

    return bool(dtype or ctx.runner.dtype or os.environ.get("STUDIO_DTYPE"))


def flow_dtype(family: Family, choice, requested: bool) -> torch.dtype:
    """The dtype a flow model loads in: the requested one (fp16 turned into bf16 for families
    that don't run fp16), else on an accelerator the family's preference
    (``Family.dtypes`` through ``shared.defaults.family_dtype``, as ``sd.pipeline.pick_dtype`` does for
    the SD families: bf16 for SD 3.5 rather than the device's fp16 default), float32 on the
    CPU."""
    if requested or choice.device.type == "cpu":
        return _final_dtype(family, choice.dtype)
    from studio.engine.diffusion.shared.defaults import device_support, family_dtype

    return getattr(torch, family_dtype(choice.device.type, family, *device_support(choice.device)))


def _place(base, plan, device: torch.device) -> None:
    from studio.engine.diffusion.shared.memory import apply_plan, install_decode_fallback

    if plan is None:
        base.to(device)
    else:
        apply_plan(base, plan, device)  # fp8 casting; GPU whole, or model/group/sequential
    # The pipelines decode inside their __call__: an out-of-memory decode is retried in tiles
    # there (and with a plan, each decode tiles where its size needs it).
    install_decode_fallback(getattr(base, "vae", None), plan)
    base.set_progress_bar_config(disable=True)


def _bnb_config(library: str, dtype):
    """bitsandbytes 4-bit NF4 settings of ``library`` ("diffusers" or "transformers")."""
    cfg = importlib.import_module(library).BitsAndBytesConfig
    return cfg(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def nf4_parts(plan, family: Family) -> tuple[str, ...]:
    """The components a plan loads in NF4: the transformer and / or the text encoders."""
    parts = ("transformer",) if plan is not None and plan.weights == "nf4" else ()
    if plan is not None and plan.text_weights == "nf4":
        parts += tuple(family.text_encoders)
    return parts


def load_nf4_parts(folder: Path, names, dtype, plan, device) -> dict:
    """Each NF4 component of a diffusers folder, loaded on its own with bitsandbytes.

    bitsandbytes quantizes while the weights go to the GPU and its quantizers put a model on
    ``cuda:<current device>`` when no ``device_map`` is given, so each part is loaded with
    ``device_map={"": device}`` (the job's device, not whichever GPU is current) and, under
    an offload plan, moved to the CPU before the next part loads: at most one NF4 part is on
    the GPU while loading, and the offload hooks bring it back when it runs."""
    import json

    index = json.loads((Path(folder) / "model_index.json").read_text())
    out = {}
    for name in names:
        entry = index.get(name)
        if not isinstance(entry, list) or entry[0] not in ("diffusers", "transformers"):
            continue
        library, cls_name = entry[0], entry[1]
        cls = getattr(importlib.import_module(library), cls_name)
        dtype_kw = "dtype" if library == "transformers" else "torch_dtype"
        module = cls.from_pretrained(
            folder,
            subfolder=name,
            quantization_config=_bnb_config(library, dtype),
            device_map={"": str(device)},
            local_files_only=True,
            **{dtype_kw: dtype},
        )
        if plan.offload != "none":
            module.to("cpu")
        out[name] = module
    return out


def _load_folder(folder: Path, family: Family, dtype, plan, device=None):
    """A diffusers folder; NF4 plans quantize at load time (bitsandbytes), one part at a time
    (:func:`load_nf4_parts`), the rest loads on the CPU."""
    from studio.engine.diffusion.shared.loader import load_folder, quiet_loading

    names = nf4_parts(plan, family)
    if not names:
        return load_folder(folder, dtype)
    from diffusers import DiffusionPipeline

    quiet_loading()
    try:
        parts = load_nf4_parts(folder, names, dtype, plan, device or "cuda")
        return DiffusionPipeline.from_pretrained(
            folder, torch_dtype=dtype, local_files_only=True, **parts
        )
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"{folder.name}: cannot load model with NF4 weights ({first})") from e


def _load_file(path: Path, family: Family, config: str, probe, dtype, plan, device=None):
    """(pipeline, source) of a single file: a full checkpoint through the pipeline's
    ``from_single_file`` where diffusers has one, else the transformer joined to the base."""
    import diffusers

    from studio.engine.diffusion.flow import files as flow_files
    from studio.engine.diffusion.shared.loader import quiet_loading

    quiet_loading()
    base = flow_files.base_folder(family, config, path.name)
    gguf = path.suffix.lower() == ".gguf"
    task = family.tasks[0]
    cls_name = family.pipeline_class(task)
    full = flow_files.is_full_checkpoint(probe)
    weights = getattr(plan, "weights", None)
    if (
        full
        and not gguf
        and weights != "nf4"
        and hasattr(getattr(diffusers, cls_name), "from_single_file")
    ):
        pipe = flow_files.load_full_checkpoint(path, cls_name, base, dtype)
        return pipe, "checkpoint"
    qcfg = None
    if weights == "nf4" and not gguf:
        qcfg = _bnb_config("diffusers", dtype)
    cfg = flow_files.transformer_config(config, base)
    tr = flow_files.load_transformer_file(path, family.transformer_class, cfg, dtype, qcfg)
    if qcfg is not None and plan.offload != "none":
        tr.to("cpu")  # before the NF4 text encoders load (see load_nf4_parts)
    text = [n for n in nf4_parts(plan, family) if n != "transformer"] if plan else []
    text_kwargs = load_nf4_parts(base, text, dtype, plan, device or "cuda") if text else {}
    pipe = flow_files.pipeline_with_transformer(base, tr, dtype, **text_kwargs)
    return pipe, "gguf file" if gguf else "transformer file"


def load_flow(
    ctx,
    model: str,
    device: str | None = None,
    dtype: str | None = None,
    quant: str | None = None,
    offload: str | None = None,
    size: tuple[int, int] | None = None,
) -> LoadedFlow:
    """The flow pipeline for ``model`` (folder, repo id in the HF cache, catalog id, or a
    single .safetensors / .sft / .gguf file), offline, cached in the runner like the SD
    pipelines. ``quant`` / ``offload``: the request's overrides (None = the planner);
    ``size``: the job's (width, height), which a new load is planned at (default the
    family's native size; a cached model keeps its plan, and its VAE decodes in tiles where
    a larger job needs them, ``shared.memory.install_decode_fallback``). Without a dtype from the
    job, the runner or ``STUDIO_DTYPE`` the family's preferred one is used
    (:func:`flow_dtype`). The cache key holds the model (a file with its size and mtime), the
    device, the dtype and the overrides, so changing any of them loads again."""
    from studio.engine.jobs.device import pick_device

    requested = dtype_requested(ctx, dtype)
    choice = pick_device(device or ctx.runner.device, dtype or ctx.runner.dtype)
    file = _local_file(model)
    if file is not None:
        return _load_flow_file(ctx, file, choice, quant, offload, size, requested)
    resolved, fam, plan, dt, key = _folder_job(choice, requested, model, quant, offload, size)
    if plan is not None and "nf4" in (plan.weights, plan.text_weights):
        _nf4_ready(choice.device)

    def factory() -> LoadedFlow:
        base = _load_folder(resolved.path, fam, dt, plan, choice.device)
        _place(base, plan, choice.device)
        return LoadedFlow(base, fam, choice.device, dt, resolved.name, plan=plan)

    return ctx.runner.cache(key, factory)


def _folder_job(choice, requested, model, quant, offload, size, free_gib=None):
    """(resolved, family, plan, dtype, cache key) of a diffusers folder for a job."""
    from studio.engine.diffusion.shared.loader import resolve_model

    resolved = resolve_model(model)
    if resolved.kind != "folder":
        raise ModelError(f"{resolved.name}: not a flow-matching model file Studio knows")
    from studio.engine.diffusion.shared.defaults import model_family

    fam = model_family(str(resolved.path))
    if fam is None or fam.prediction != "flow":
        raise ModelError(f"{resolved.name}: not a flow-matching model Studio knows")
    plan = flow_plan(
        fam, choice.device, free_gib, quant=quant, offload=offload, hint=resolved.name,
        folder=resolved.path, size=size,
    )  # fmt: skip
    dt = flow_dtype(fam, choice, requested)
    key = f"flow:{resolved.key}|{choice.device}|{dt}|{_overrides(quant, offload)}"
    return resolved, fam, plan, dt, key


def adopt_flow(
    runner, model: str, pipe, device: str | None = None, dtype: str | None = None,
    quant: str | None = None, offload: str | None = None, free_gib: float | None = None,
    size: tuple[int, int] | None = None,
) -> LoadedFlow:  # fmt: skip
    """Make the in-memory flow pipeline ``pipe`` the loaded model for ``model`` (a diffusers
    folder whose configs describe it; its weights need not be there): planned as
    :func:`load_flow` plans it (for ``free_gib``, default measured), placed by Studio's own
    :func:`_place` (fp8 casting, offload, the decode fallback) and cached under the key
    :func:`load_flow` computes for the same request, so the next job for ``model`` with
    these overrides runs it (benchmarks build full-size random models in memory this way).
    Load-time formats (NF4, GGUF) are not made here (BadInput). Replaces whatever the runner
    had cached."""
    from studio.engine.jobs.device import pick_device

    requested = dtype_requested(SimpleNamespace(runner=runner), dtype)
    choice = pick_device(device or runner.device, dtype or runner.dtype)
    resolved, fam, plan, dt, key = _folder_job(
        choice, requested, model, quant, offload, size, free_gib
    )
    if plan is not None and any(
        f in ("nf4", *GGUF_FORMATS) for f in (plan.weights, plan.text_weights)
    ):
        raise BadInput(
            f"{resolved.name}: a {plan.weights} plan is made while loading, not in memory"
        )
    pipe.to(dtype=dt)
    _place(pipe, plan, choice.device)
    entry = LoadedFlow(pipe, fam, choice.device, dt, resolved.name, plan=plan)
    runner.clear_cache()
    return runner.cache(key, lambda: entry)


def _overrides(quant: str | None, offload: str | None) -> str:
    from studio.engine.diffusion.shared.memory_models import env_offload

    offload = offload or env_offload()
    return f"quant={quant or 'auto'},offload={offload or 'auto'}"


def _load_flow_file(
    ctx, path: Path, choice, quant: str | None, offload: str | None, size=None, requested=False
):
    from studio.engine.diffusion.families.registry import probe_file
    from studio.engine.diffusion.flow import files as flow_files

    probe = probe_file(path)
    found = recognise_flow_file(probe)
    if found is None:
        raise ModelError(
            f"{path.name}: not a flow-matching model file Studio knows (FLUX.1, FLUX.2 klein, "
            "Z-Image, SD 3.5, Qwen-Image transformers or checkpoints)"
        )
    fam, config = found
    gguf = flow_files.gguf_weights(path) if path.suffix.lower() == ".gguf" else None
    if gguf == "bf16":
        gguf = None  # an unquantized GGUF: planned as bf16, any load-time format refused
        if quant not in (None, "bf16"):
            raise BadInput(f"{path.name} is an unquantized GGUF file: drop the quant setting")
    plan = flow_plan(
        fam, choice.device, quant=quant, offload=offload, hint=config, gguf=gguf,
        label=path.name, size=size,
    )  # fmt: skip
    if plan is not None and "nf4" in (plan.weights, plan.text_weights):
        _nf4_ready(choice.device)
    st = path.stat()
    dt = flow_dtype(fam, choice, requested)

    def factory() -> LoadedFlow:
        pipe, source = _load_file(path, fam, config, probe, dt, plan, choice.device)
        _place(pipe, plan, choice.device)
        return LoadedFlow(pipe, fam, choice.device, dt, path.stem, plan=plan, source=source)

    key = (
        f"flow:{path}|{st.st_size}|{st.st_mtime_ns}|{choice.device}|{dt}|"
        f"{_overrides(quant, offload)}"
    )
    return ctx.runner.cache(key, factory)
