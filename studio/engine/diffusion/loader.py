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
import os
import re
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import BadInput, ModelError
from studio.core.paths import configs_dir, studio_home

CONFIGS = configs_dir()

# config folder -> (base repo, (tokenizer subfolders), fallback tokenizer repos per subfolder)
SINGLE_FILE_CONFIGS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd15-inpaint": "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "sd21": "stabilityai/stable-diffusion-2-1",
    "sd21-base": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
_TOKENIZER_FALLBACKS = {
    ("sd15", "tokenizer"): ["openai/clip-vit-large-patch14"],
    ("sd15-inpaint", "tokenizer"): [
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "openai/clip-vit-large-patch14",
    ],
    ("sd21", "tokenizer"): ["stabilityai/stable-diffusion-2-1-base", "stabilityai/sd-turbo"],
    ("sd21-base", "tokenizer"): ["stabilityai/stable-diffusion-2-1", "stabilityai/sd-turbo"],
    ("sdxl", "tokenizer"): ["stabilityai/sdxl-turbo", "openai/clip-vit-large-patch14"],
    ("sdxl", "tokenizer_2"): [
        "stabilityai/sdxl-turbo",
        "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    ],
}
# The slow-tokenizer pair (every CLIP repo has it) or the fast tokenizer.json.
_TOKENIZER_FILE_SETS = (("vocab.json", "merges.txt"), ("tokenizer.json",))

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


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


def _how_to_get(ref: str) -> str:
    return (
        f"get it with `studio models download {ref}` or `huggingface-cli download {ref}`"
        if "/" in ref
        else f"get it with `studio models download {ref}`"
    )


def _hf_cache_dir() -> str | None:
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return env
    home = os.environ.get("HF_HOME")
    return str(Path(home) / "hub") if home else None


def _from_hf_cache(repo_id: str, filename: str | None = None) -> Path | None:
    """A repo snapshot folder (or one file) from the HF cache, never the network."""
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError:  # pragma: no cover
        return None
    cache = _hf_cache_dir()
    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, cache_dir=cache, local_files_only=True))
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached / malformed id: both mean "not here"
        return None


def _catalog_entry(ref: str):
    try:
        from studio.core.catalog import load_catalog
    except ImportError:
        return None
    try:
        return load_catalog().get(ref)
    except Exception:  # noqa: BLE001 - a broken catalog must not break explicit paths
        return None


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
        if path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
            return ResolvedModel(ref, "file", path.resolve(), path.stem)
        raise ModelError(f"{path.name}: not a model file (expected .safetensors)")
    entry = _catalog_entry(ref)
    if entry is not None:
        local = None
        try:
            from studio.engine.models.store import find_installed

            local = find_installed(entry)
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - treat a broken install as "not installed"
            local = None
        shas = dict(getattr(entry, "sha256", None) or {})
        sha = next(iter(shas.values()), None) if len(shas) == 1 else None
        if local is not None and Path(local).exists():
            r = resolve_model(str(local))
            return ResolvedModel(ref, r.kind, r.path, ref, getattr(entry, "repo", None), sha)
        raise ModelError(
            f"Model {ref!r} is in the catalog but not downloaded; get it with "
            f"`studio models download {ref}`"
        )
    local_models = studio_home() / "models" / ref
    if local_models.exists():
        return resolve_model(str(local_models))
    if looks_like_path(ref):
        # A model that isn't there is "model missing" (exit 3), like an uncached repo id.
        raise ModelError(f"{ref}: no such model file or folder")
    if _REPO_RE.match(ref):
        found = _from_hf_cache(ref)
        if found is not None:
            return ResolvedModel(ref, "folder", found, ref, ref)
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        why = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise ModelError(f"Model {ref!r} is not in the Hugging Face cache{why}; {_how_to_get(ref)}")
    raise ModelError(f"Unknown model {ref!r}: not a file, folder, catalog id or repo id")


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
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"{path.name}: not a readable .safetensors file ({e})") from e
    import torch

    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001
        if "weights only load failed" in str(e).lower():
            raise ModelError(
                f"{path.name}: refused: the file holds code or objects other than tensors, and "
                "Studio never runs code from model files (use a .safetensors version)",
                str(e),
            ) from e
        raise ModelError(f"{path.name}: cannot read checkpoint safely ({_short(e)})") from e
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else {}
    return {k: tuple(v.shape) for k, v in sd.items() if hasattr(v, "shape")}


def detect_checkpoint(path: Path | str) -> str:
    """Which shipped config fits a single-file SD checkpoint: "sd15", "sd15-inpaint", "sd21",
    "sd21-base" or "sdxl", from its tensor names and shapes (the same keys diffusers' own
    ``infer_diffusers_model_type`` looks at)."""
    path = Path(path)
    shapes = _checkpoint_shapes(path)
    prefixes = ("model.diffusion_model.", "")
    conv_in = None
    for p in prefixes:
        conv_in = shapes.get(p + "input_blocks.0.0.weight")
        if conv_in:
            break
    if any(k.startswith("conditioner.embedders.1") for k in shapes) or any(
        "label_emb.0.0.weight" in k for k in shapes
    ):
        return "sdxl"
    if conv_in is None:
        if any(k.startswith(("down_blocks.", "unet.")) for k in shapes):
            raise ModelError(
                f"{path.name}: a diffusers-format weight file, not a full checkpoint; "
                "pass the model folder instead"
            )
        raise ModelError(f"{path.name}: not a Stable Diffusion checkpoint (no UNet weights)")
    ctx_key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    if any(k.startswith("cond_stage_model.model.") for k in shapes) or (
        ctx_key in shapes and shapes[ctx_key][-1] == 1024
    ):
        # SD2 (OpenCLIP-H). The 768 px v-prediction and 512 px epsilon models share every
        # shape; like A1111 we go by the file name for the 512 base (and sd-turbo).
        name = path.name.lower()
        return "sd21-base" if any(w in name for w in ("base", "512", "turbo")) else "sd21"
    return "sd15-inpaint" if conv_in[1] == 9 else "sd15"


def _has_tokenizer(folder: Path) -> bool:
    return any(all((folder / f).exists() for f in files) for files in _TOKENIZER_FILE_SETS)


def _tokenizer_folder(config: str, sub: str) -> Path:
    """A folder holding the CLIP tokenizer files for a single-file load (see module doc)."""
    shipped = CONFIGS / config / sub
    if _has_tokenizer(shipped):
        return shipped
    repos = [SINGLE_FILE_CONFIGS[config], *_TOKENIZER_FALLBACKS.get((config, sub), [])]
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
    """Load a single-file SD checkpoint fully offline with a shipped config."""
    import diffusers

    quiet_loading()
    from transformers import CLIPTokenizer

    config = detect_checkpoint(path)
    if config == "sd15-inpaint":
        task = "inpaint"
    family = "sdxl" if config == "sdxl" else "sd1" if config.startswith("sd15") else "sd2"
    cls = getattr(diffusers, pipeline_class_name(family, task, controlnet=False))
    kwargs = {}
    subs = ("tokenizer", "tokenizer_2") if config == "sdxl" else ("tokenizer",)
    for sub in subs:
        folder = _tokenizer_folder(config, sub)
        tok_cfg = {}
        cfg_file = CONFIGS / config / sub / "tokenizer_config.json"
        if cfg_file.exists():
            tok_cfg = json.loads(cfg_file.read_text())
        kwargs[sub] = CLIPTokenizer.from_pretrained(
            folder,
            pad_token=tok_cfg.get("pad_token", "<|endoftext|>"),
            model_max_length=tok_cfg.get("model_max_length", 77),
        )
    if family != "sdxl":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return cls.from_single_file(
            str(path),
            config=str(CONFIGS / config),
            torch_dtype=torch_dtype,
            local_files_only=True,
            **kwargs,
        )
    except (ModelError, BadInput):
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: cannot load as {config} checkpoint ({_short(e)})") from e


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
        raise ModelError(f"{folder.name}: cannot load model ({_short(e)})") from e


def load_controlnet(ref: str, torch_dtype):
    """A ControlNetModel from a folder, repo id, catalog id or single file (SD1.x files use
    the shipped sd15-controlnet config)."""
    from diffusers import ControlNetModel

    quiet_loading()
    resolved = resolve_model(ref)
    try:
        if resolved.kind == "file":
            shapes = _checkpoint_shapes(resolved.path)
            if any("label_emb" in k or "add_embedding" in k for k in shapes):
                # Only the SD1.5 ControlNet config ships with Studio (see models/configs).
                raise ModelError(
                    f"{resolved.path.name}: an SDXL ControlNet single file can't be loaded "
                    "offline; use its diffusers folder (e.g. `studio models download "
                    "sdxl-canny`)"
                )
            cfg = CONFIGS / "sd15-controlnet"
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
        raise ModelError(f"ControlNet {ref}: cannot load ({_short(e)})") from e


def load_taesd(folder: Path, device, torch_dtype):
    from diffusers import AutoencoderTiny

    quiet_loading()

    try:
        return AutoencoderTiny.from_pretrained(
            folder, torch_dtype=torch_dtype, local_files_only=True
        ).to(device)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"TAESD {folder}: cannot load ({_short(e)})") from e


# -- pipeline classes ----------------------------------------------------------------------------

_CLASSES = {
    # (xl, task, controlnet) -> diffusers class name
    (False, "txt2img", False): "StableDiffusionPipeline",
    (False, "img2img", False): "StableDiffusionImg2ImgPipeline",
    (False, "inpaint", False): "StableDiffusionInpaintPipeline",
    (False, "txt2img", True): "StableDiffusionControlNetPipeline",
    (False, "img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
    (False, "inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    (True, "txt2img", False): "StableDiffusionXLPipeline",
    (True, "img2img", False): "StableDiffusionXLImg2ImgPipeline",
    (True, "inpaint", False): "StableDiffusionXLInpaintPipeline",
    (True, "txt2img", True): "StableDiffusionXLControlNetPipeline",
    (True, "img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    (True, "inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}
TASKS = ("txt2img", "img2img", "inpaint")


def pipeline_class_name(family: str, task: str, controlnet: bool) -> str:
    if task not in TASKS:
        raise BadInput(f"Unknown task {task!r} (use {', '.join(TASKS)})")
    return _CLASSES[(family == "sdxl", task, bool(controlnet))]


def _short(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]
