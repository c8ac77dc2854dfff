"""Generation defaults per model, from its family descriptor, without loading it (torch-free
for folders and .safetensors files, so the CLI and the UI can ask before a job):

- :func:`model_family`: the family of a model reference (folder: model_index/configs; single
  file: tensor names and shapes);
- :func:`recommended_settings`: the catalog's ``recommended`` table (or the turbo rule), with
  whatever it leaves out filled from the family: the model's native size (UNet sample size x
  the VAE's downsampling: 512 SD1, 768 SD2-768, 512 SD2-base, 1024 SDXL), steps, guidance and
  the family's sampler;
- :func:`family_dtype`: the weight dtype for a device when the user chose none: the family's
  preference order (``Family.dtypes``), skipping what the device can't run (bf16 where fp16
  is unsupported, fp32 on the CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.core.errors import StudioError
from studio.engine.diffusion.families import Family, config_family, recognise_file
from studio.engine.diffusion.families import recognise_folder as _recognise_folder
from studio.engine.diffusion.shared.loader import CONFIGS, resolve_model
from studio.engine.diffusion.shared.loader import recommended_settings as catalog_settings


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _native(folder: Path) -> int | None:
    """UNet sample size x 2^(VAE blocks - 1) of a diffusers (or shipped config) folder."""
    unet = _read(folder / "unet" / "config.json")
    vae = _read(folder / "vae" / "config.json")
    sample = unet.get("sample_size")
    if isinstance(sample, list | tuple):
        sample = sample[0] if sample else None
    blocks = vae.get("block_out_channels") or [0, 0, 0, 0]
    if not sample:
        return None
    return int(sample) * 2 ** (len(blocks) - 1)


def _flow_file(path: Path) -> tuple[Family, str] | None:
    from studio.engine.diffusion.families import probe_file
    from studio.engine.diffusion.families.registry import recognise_flow_file

    return recognise_flow_file(probe_file(path))


def flow_file_catalog_id(ref: str) -> str | None:
    """The catalog id whose recommended settings fit a flow family's single file: its config
    name (flux1-schnell, z-image-turbo, ...), or ``<config>-turbo`` when the file is named a
    turbo and the catalog has one (SD 3.5 Large Turbo has SD 3.5 Large's shapes)."""
    try:
        resolved = resolve_model(ref)
        if resolved.kind != "file" or resolved.path.suffix.lower() not in FLOW_SUFFIXES:
            return None
        found = _flow_file(resolved.path)
    except StudioError:
        return None
    if found is None:
        return None
    config = found[1]
    from studio.engine.models.resolver import catalog_entry

    turbo = config + "-turbo"
    if "turbo" in resolved.path.name.lower() and catalog_entry(turbo) is not None:
        return turbo
    return config


FLOW_SUFFIXES = (".safetensors", ".sft", ".gguf")


def repo_catalog_id(ref: str) -> str | None:
    """The catalog id of a Hugging Face repo id the catalog knows, or of a local copy of one:
    a folder named as the repo (``Z-Image-Turbo``) or the hub cache's
    ``models--<org>--<name>/snapshots/<revision>``. None otherwise."""
    from studio.core.catalog import load_catalog

    ref = (ref or "").strip().rstrip("/\\")
    if not ref:
        return None
    parts = [p.lower() for p in Path(ref).parts]
    for entry in load_catalog():
        repo = (getattr(entry, "repo", "") or "").lower()
        if not repo or getattr(entry, "kind", "") not in ("txt2img", "inpaint", "edit"):
            continue
        org, _, name = repo.partition("/")
        if ref.lower() == repo or (parts and parts[-1] == name):
            return entry.id
        if f"models--{org}--{name}" in parts:
            return entry.id
    return None


# (path, the files' stats) -> model_info's answer: a job asks its model's family in the route,
# for the dtype and at load; the files are read once while they stay the same.
_INFO: dict[tuple, tuple[Family, int | None] | None] = {}


def _stamp(path: Path) -> tuple:
    """What changes when a model's files do: the stats of the file, or of a folder's
    model_index.json and component configs."""
    files = [path] if path.is_file() else [path / "model_index.json", *path.glob("*/config.json")]
    stats = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        stats.append((f.name, f.parent.name, st.st_mtime_ns, st.st_size))
    return (str(path), tuple(sorted(stats)))


def model_info(ref: str) -> tuple[Family, int | None] | None:
    """(family, native size) of a model reference, or None when it can't be told without
    loading it (not found, a .ckpt, unknown layout). Read once per state of the files."""
    try:
        resolved = resolve_model(ref)
    except StudioError:
        return None
    key = _stamp(resolved.path)
    if key not in _INFO:
        if len(_INFO) > 256:
            _INFO.clear()
        _INFO[key] = _read_info(resolved)
    return _INFO[key]


def _read_info(resolved) -> tuple[Family, int | None] | None:
    try:
        if resolved.kind == "folder":
            return _recognise_folder(resolved.path), _native(resolved.path)
        if resolved.path.suffix.lower() not in FLOW_SUFFIXES:
            return None  # reading a .ckpt needs torch
        flow = _flow_file(resolved.path)
        if flow is not None:
            return flow[0], None
        if resolved.path.suffix.lower() != ".safetensors":
            return None
        match = recognise_file(resolved.path)
        return config_family(match.config), _native(CONFIGS / match.config)
    except StudioError:
        return None


def model_family(ref: str) -> Family | None:
    """The family of a model reference (folder: its JSON; single file: its tensor header),
    without loading weights or importing torch; None when it can't be told here (then the
    loader gives its own one-line refusal)."""
    try:
        info = model_info(ref)
    except Exception:  # noqa: BLE001 - unreadable: the loader says why
        return None
    return info[0] if info else None


def recommended_settings(ref: str) -> dict:
    """Defaults for ``ref``: the catalog's ``recommended`` values first, then the family's
    (``width``/``height`` = the native size, ``steps``, ``guidance``, ``scheduler``; turbo and
    LCM models keep their own scheduler). {} when nothing is known."""
    # A flow model's settings are its model's: by its file's layout, or by the repo it is (or
    # is a copy of). The name-based turbo rule is SD-Turbo's 1 step, not Z-Image Turbo's 8 or
    # SD 3.5 Large Turbo's 4.
    known = flow_file_catalog_id(ref) or repo_catalog_id(ref)
    rec = dict(catalog_settings(known or ref))
    info = model_info(ref)
    if info is None:
        return rec
    fam, native = info
    if fam.prediction == "flow" and known is None and not _is_catalog_id(ref):
        rec = {}  # an unknown flow model: its family's values, not the SD turbo rule
    width, height = (native, native) if native else fam.default_size
    rec.setdefault("width", width)
    rec.setdefault("height", height)
    rec.setdefault("steps", fam.default_steps)
    rec.setdefault("guidance", fam.default_guidance)
    if fam.default_sampler and not is_turbo(Path(ref).name) and "scheduler" not in rec:
        rec["scheduler"] = fam.default_sampler
    rec.setdefault("family", fam.name)
    return rec


def _is_catalog_id(ref: str) -> bool:
    from studio.engine.models.resolver import catalog_entry

    return catalog_entry(ref) is not None


def family_dtype(
    device_type: str, family: Family | None, fp16_ok: bool = True, bf16_ok: bool = False
) -> str:
    """The weight dtype name for ``device_type`` ("cuda", "mps", "cpu", ...) when the user gave
    none: the first of the family's ``dtypes`` the device runs (``fp16_ok``/``bf16_ok`` say
    what it supports), float32 on the CPU (half precision is emulated and slow there)."""
    if device_type == "cpu":
        return "float32"
    order = family.dtypes if family is not None else ("float16", "bfloat16", "float32")
    usable = {"float16": fp16_ok, "bfloat16": bf16_ok, "float32": True}
    return next((d for d in order if usable.get(d)), "float32")


def device_support(device) -> tuple[bool, bool]:
    """(fp16 usable, bf16 usable) on a torch device: CUDA fp16 from compute capability 5.3 on
    (native half arithmetic), bf16 where ``torch.cuda.is_bf16_supported()``; MPS fp16 yes,
    bf16 no (not on every macOS)."""
    import torch

    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return (major, minor) >= (5, 3), bool(torch.cuda.is_bf16_supported())
    if device.type == "mps":
        return True, False
    return False, True


def is_turbo(model_name: str) -> bool:
    """Distilled few-step models by name: SD-Turbo / SDXL-Turbo (adversarial diffusion
    distillation, Sauer et al. 2023) and LCMs (latent consistency models, Luo et al. 2023):
    1-8 steps that must start at the last training timestep (trailing spacing)."""
    name = model_name.lower()
    return "turbo" in name or "lcm" in name
