"""Model resolution and loading, offline: a model reference is a local diffusers folder, a
single-file checkpoint (.safetensors; .ckpt only through torch's weights_only loader), a
Hugging Face repo id already in the HF cache, or a catalog id.

Nothing here downloads: every hub call passes ``local_files_only=True``. A missing model is a
:class:`ModelError` (CLI exit 3) that says how to get it.

Single-file checkpoints load with ``from_single_file(config=<models/configs/...>)``: the
architecture is picked by inspecting the tensors (SD1.x / SD1.x inpainting with a 9-channel
UNet input / SD2.x / SDXL). Without a local ``config=`` diffusers goes online even with
``local_files_only=True``, so configs are shipped. They hold no tokenizer vocabulary (nor do
single-file checkpoints): the CLIP tokenizer is taken from ``<config>/tokenizer`` if a user put
one there, else from the HF cache copy of the base repo (or openai/clip-vit-large-patch14 for
SD1, laion/CLIP-ViT-bigG-14-laion2B-39B-b160k for SDXL's second tokenizer); if none is cached
the error says what to download.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import BadInput, ModelError, short_error
from studio.core.paths import configs_dir

CONFIGS = configs_dir()


def _single_file_configs() -> dict[str, str]:
    """config folder -> base HF repo, from every family's descriptor."""
    from studio.engine.diffusion.families import families

    return {c: repo for fam in families() for c, repo in fam.single_file_configs.items()}


SINGLE_FILE_CONFIGS = _single_file_configs()
# The slow-tokenizer pair (every CLIP repo has it) or the fast tokenizer.json.
_TOKENIZER_FILE_SETS = (("vocab.json", "merges.txt"), ("tokenizer.json",))


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points. ``kind``: "folder" (diffusers folder, ``path``) or
    "file" (single-file checkpoint, ``path``). ``name`` is what metadata shows."""

    ref: str
    kind: str
    path: Path
    name: str
    repo_id: str | None = None
    sha256: str | None = None

    @property
    def key(self) -> str:
        return str(self.path)


def _from_hf_cache(repo_id: str, filename: str | None = None) -> Path | None:
    from studio.engine.models.resolver import hf_cached

    return hf_cached(repo_id, filename)


def _catalog_entry(ref: str):
    from studio.engine.models.resolver import catalog_entry

    return catalog_entry(ref)


# What a diffusion model reference may name (studio.engine.models.resolve's kinds).
DIFFUSION_KINDS = ("checkpoint", "edit", "controlnet", "preview-decoder", "vae")


def resolve_model(ref: str) -> ResolvedModel:
    """Resolve a model reference without loading it. Raises ModelError if it isn't here."""
    ref = (ref or "").strip()
    if not ref:
        raise BadInput("No model given (use --model with a folder, file, repo id or catalog id)")
    path = Path(ref).expanduser()
    if path.exists():
        if path.is_dir():
            if not any((path / n).exists() for n in ("model_index.json", "config.json")):
                raise ModelError(f"{path}: not a diffusers model folder (no model_index.json)")
            return ResolvedModel(ref, "folder", path.resolve(), path.resolve().name)
        # .sft (BFL's name for safetensors) and .gguf: flow-family transformer files
        if path.suffix.lower() in (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin"):
            return ResolvedModel(ref, "file", path.resolve(), path.stem)
        raise ModelError(f"{path.name}: not a model file (expected .safetensors or .gguf)")
    from studio.engine.models.resolver import REPO_RE, resolve

    local = resolve(ref, DIFFUSION_KINDS)  # BadInput / ModelError ("not installed: ...")
    r = resolve_model(str(local))
    entry = _catalog_entry(ref)
    if entry is not None:
        shas = dict(entry.sha256 or {})
        sha = next(iter(shas.values()), None) if len(shas) == 1 else None
        return ResolvedModel(ref, r.kind, r.path, ref, entry.repo, sha)
    if REPO_RE.match(ref):
        return ResolvedModel(ref, "folder", r.path, ref, ref)
    return r


def recommended_settings(ref: str) -> dict:
    """Generation defaults for a model: the catalog's ``recommended`` table (steps, guidance,
    scheduler, width, height) for a catalog id, else for turbo models (by name) 1 step and
    guidance 0 (Sauer et al. 2023, adversarial diffusion distillation), else {}."""
    entry = _catalog_entry(ref)
    rec = dict(getattr(entry, "recommended", None) or {}) if entry is not None else {}
    if not rec and "turbo" in Path(ref).name.lower():
        rec = {"steps": 1, "guidance": 0.0}
    return rec


def looks_like_path(ref: str) -> bool:
    return (
        ref.startswith((".", "/", "~", "\\"))
        or bool(re.match(r"^[A-Za-z]:[\\/]", ref))
        or ref.lower().endswith((".safetensors", ".ckpt", ".pt", ".pth", ".bin"))
        or ref.count("/") > 1
    )


# -- single-file checkpoints -------------------------------------------------------------------


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from studio.engine.diffusion.families import probe_file

    return probe_file(path).shapes


def detect_checkpoint(path: Path | str) -> str:
    """Which shipped config fits a single-file checkpoint ("sd15", "sd15-inpaint", "sd21",
    "sd21-base", "sd21-inpaint", "sdxl", "sdxl-inpaint"), decided by the family descriptors
    from the tensor names, shapes and conv_in channels (``families.recognise_file``)."""
    from studio.engine.diffusion.families import recognise_file

    return recognise_file(Path(path)).config


def _has_tokenizer(folder: Path) -> bool:
    return any(all((folder / f).exists() for f in files) for files in _TOKENIZER_FILE_SETS)


def _tokenizer_folder(config: str, sub: str) -> Path:
    """A folder holding the CLIP tokenizer files for a single-file load (see module doc)."""
    shipped = CONFIGS / config / sub
    if _has_tokenizer(shipped):
        return shipped
    from studio.engine.diffusion.families import config_family

    fallbacks = config_family(config).tokenizer_fallbacks.get((config, sub), ())
    repos = [SINGLE_FILE_CONFIGS[config], *fallbacks]
    for repo in repos:
        for prefix in (f"{sub}/", "tokenizer/", ""):
            for names in _TOKENIZER_FILE_SETS:
                files = [_from_hf_cache(repo, prefix + f) for f in names]
                if all(files):
                    return files[0].parent
    raise ModelError(
        f"No CLIP tokenizer for this {config} checkpoint: single files don't contain one. "
        f"Download {repos[0]} ({sub}/ only is enough: `huggingface-cli download {repos[0]} "
        f"--include '{sub}/*'`) or copy vocab.json and merges.txt into {shipped}"
    )


def quiet_loading() -> None:
    """No tqdm bars while loading: windowed apps have no stderr (sys.stderr is None). Also
    mutes diffusers' ``torch_dtype`` rename notice: we keep ``torch_dtype`` because it works
    on every supported diffusers version (>= 0.32)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated.*", category=FutureWarning)
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:  # noqa: BLE001
        pass


def load_single_file(path: Path, task: str, torch_dtype):
    """Load a single-file SD checkpoint fully offline with a shipped config. A checkpoint with
    a 9-channel UNet (inpainting) always loads as the family's inpaint pipeline."""
    import diffusers

    quiet_loading()
    from transformers import CLIPTokenizer

    from studio.engine.diffusion.families import recognise_file

    match = recognise_file(path)
    config = match.config
    folder_cfg = CONFIGS / config
    index = json.loads((folder_cfg / "model_index.json").read_text())
    unet_cfg = folder_cfg / "unet" / "config.json"
    if unet_cfg.exists() and json.loads(unet_cfg.read_text()).get("in_channels") == 9:
        task = "inpaint"
    cls = getattr(diffusers, match.family.pipeline_class(task, controlnet=False))
    kwargs = {}
    subs = sorted(k for k in index if k.startswith("tokenizer"))
    for sub in subs:
        folder = _tokenizer_folder(config, sub)
        tok_cfg = {}
        cfg_file = folder_cfg / sub / "tokenizer_config.json"
        if cfg_file.exists():
            tok_cfg = json.loads(cfg_file.read_text())
        kwargs[sub] = CLIPTokenizer.from_pretrained(
            folder,
            pad_token=tok_cfg.get("pad_token", "<|endoftext|>"),
            model_max_length=tok_cfg.get("model_max_length", 77),
        )
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_single_file(
            str(path),
            config=str(folder_cfg),
            torch_dtype=torch_dtype,
            local_files_only=True,
            **kwargs,
        )
    except (ModelError, BadInput):
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"{path.name}: cannot load as {config} checkpoint ({short_error(e)})"
        ) from e
    pipe.scheduler = with_file_scheduler(pipe.scheduler, match.scheduler)
    return pipe


def with_file_scheduler(scheduler, declared: Mapping[str, Any]):
    """The pipeline's scheduler with what the file declares (v-prediction, zero terminal SNR)
    on top of the shipped config; every sampler a job picks is built from this config, so
    they all inherit it."""
    if not declared:
        return scheduler
    # Without the private keys: diffusers drops every key listed in "_use_default_values"
    # (those the shipped file left out, rescale_betas_zero_snr among them).
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return type(scheduler).from_config({**config, **declared})


# -- diffusers folders ---------------------------------------------------------------------------

_WEIGHT_EXT = (".safetensors", ".bin")


def pick_variant(folder: Path, prefer_fp16: bool) -> str | None:
    """ "fp16" when some component only has fp16 weights (e.g. sd15-inpaint's unet) or when
    fp16 is wanted and every component has them; else None (the default files)."""
    index = folder / "model_index.json"
    if not index.exists():
        return None
    comps = [
        k
        for k, v in json.loads(index.read_text()).items()
        if not k.startswith("_") and isinstance(v, list) and v[0] not in (None, "null")
    ]
    has_plain, has_fp16 = [], []
    for c in comps:
        files = [f.name for f in (folder / c).glob("*") if f.name.endswith(_WEIGHT_EXT)]
        if not files:
            continue  # tokenizer/scheduler
        has_fp16.append(any(".fp16." in f for f in files))
        has_plain.append(any(".fp16." not in f for f in files))
    if not has_fp16:
        return None
    if not all(has_plain):
        return "fp16"
    return "fp16" if prefer_fp16 and all(has_fp16) else None


def load_folder(folder: Path, torch_dtype):
    """DiffusionPipeline.from_pretrained, offline, without the safety checker."""
    import torch
    from diffusers import DiffusionPipeline

    quiet_loading()
    index_file = folder / "model_index.json"
    if not index_file.exists():
        raise ModelError(f"{folder}: not a pipeline folder (no model_index.json)")
    index = json.loads(index_file.read_text())
    kwargs: dict = {}
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    variant = pick_variant(folder, torch_dtype == torch.float16)
    try:
        return DiffusionPipeline.from_pretrained(
            folder, torch_dtype=torch_dtype, local_files_only=True, variant=variant, **kwargs
        )
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{folder.name}: cannot load model ({short_error(e)})") from e


def load_controlnet(ref: str, torch_dtype):
    """A ControlNetModel from a folder, repo id, catalog id or single file (SD1.x files use
    the shipped sd15-controlnet config)."""
    from diffusers import ControlNetModel

    quiet_loading()
    resolved = resolve_model(ref)
    try:
        if resolved.kind == "file":
            from studio.engine.diffusion.families import controlnet_family, probe_file

            fam = controlnet_family(probe=probe_file(resolved.path))
            if fam.controlnet_config is None:
                # Only the SD1.5 ControlNet config ships with Studio (see models/configs).
                example = next(iter(fam.controlnet_defaults.values()), "")
                raise ModelError(
                    f"{resolved.path.name}: an {fam.label} ControlNet single file can't be "
                    "loaded offline; use its diffusers folder"
                    + (f" (e.g. `studio models download {example}`)" if example else "")
                )
            cfg = CONFIGS / fam.controlnet_config
            return ControlNetModel.from_single_file(
                str(resolved.path),
                config=str(cfg),
                torch_dtype=torch_dtype,
                local_files_only=True,
            )
        folder = resolved.path
        if not (folder / "config.json").exists() and (folder / "controlnet").is_dir():
            folder = folder / "controlnet"
        variant = None
        files = [f.name for f in folder.glob("*") if f.name.endswith(_WEIGHT_EXT)]
        if files and all(".fp16." in f for f in files):
            variant = "fp16"
        return ControlNetModel.from_pretrained(
            folder, torch_dtype=torch_dtype, local_files_only=True, variant=variant
        )
    except (ModelError, BadInput):
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"ControlNet {ref}: cannot load ({short_error(e)})") from e


def load_taesd(folder: Path, device, torch_dtype):
    from diffusers import AutoencoderTiny

    quiet_loading()

    try:
        return AutoencoderTiny.from_pretrained(
            folder, torch_dtype=torch_dtype, local_files_only=True
        ).to(device)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"TAESD {folder}: cannot load ({short_error(e)})") from e


# -- pipeline classes ----------------------------------------------------------------------------

TASKS = ("txt2img", "img2img", "inpaint")


def pipeline_class_name(family, task: str, controlnet: bool) -> str:
    """The diffusers class name for ``task`` in ``family`` (a Family or its name)."""
    from studio.engine.diffusion.families import family as family_of_name

    return family_of_name(family).pipeline_class(task, controlnet)
