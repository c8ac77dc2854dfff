"""Where model files live, and which folder holds which kind.

The roots searched, in order:

1. Studio's own models folder, ``$STUDIO_HOME/models`` (downloads of URL entries and
   imported files);
2. the portable models folder shipped beside the program (:func:`studio.core.paths.
   portable_models_dir`).

Both have one layout, the one ComfyUI uses and AUTOMATIC1111 nearly does (``checkpoints/``,
``loras/``, ``upscale_models/``, ``controlnet/``, ``vae/``, ...), and both are drop folders: a
file put in either is found.
3. The user's extra folders (``STUDIO_MODEL_PATHS``, ``os.pathsep``-separated, and
   ``models.json`` "folders"). Such a folder may be an AUTOMATIC1111 or ComfyUI install's
   ``models/`` folder (or the install itself): their folder names are accepted too
   (``Stable-diffusion``, ``Lora``, ``ESRGAN``, ``ControlNet``, ``VAE``, ...).

:data:`KIND_FOLDERS` is the one table from Studio's catalog kinds to those folder names.
Torch-free and free of the other model modules (the bottom layer of ``studio.engine.models``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from studio.core import paths
from studio.core.atomic import atomic_write_bytes
from studio.core.catalog import KINDS, format_size
from studio.core.errors import ModelError

WEIGHT_SUFFIXES = (".safetensors", ".sft", ".gguf", ".bin", ".pth", ".pt", ".ckpt", ".onnx")
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")  # textual inversion (A1111, diffusers)
DISK_MARGIN = 64 * 1024 * 1024  # keep this much free after a download or an import

CONTROLNET_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k.startswith("controlnet-"))

# Catalog kind -> the folder names that hold it. The first name is where Studio files it, in
# its own folder and in the portable one (studio.core.paths.MODEL_FOLDERS); the others are
# what AUTOMATIC1111 (A1111) and ComfyUI call it.
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "txt2img": ("checkpoints", "Stable-diffusion", "diffusers"),
    "inpaint": ("checkpoints", "inpaint", "Stable-diffusion", "diffusers"),
    "edit": ("checkpoints", "diffusers"),  # Kontext / Qwen-Image-Edit diffusers folders
    **{k: ("controlnet", "ControlNet") for k in CONTROLNET_KINDS},
    "preview-decoder": ("vae", "vae_approx", "VAE-approx"),
    "upscaler": ("upscale_models", "ESRGAN", "RealESRGAN", "SwinIR", "HAT", "DAT"),
    "lama": ("inpaint", "lama", "LaMa"),
    "pose-detector": ("pose", "openpose", "dwpose"),
    "lora": ("loras", "Lora", "LyCORIS", "lora"),
    "embedding": ("embeddings",),  # A1111 keeps it in the install root: see kind_folders
    "vae": ("vae", "VAE"),
    "segment": ("segment", "sams", "grounding-dino"),
    "depth-estimator": ("depth", "depthanything"),
    "face-restorer": ("facerestore_models", "GFPGAN"),
    "face-detector": ("facedetection",),
}
# Groups a caller may ask for instead of one kind.
KIND_GROUPS: dict[str, tuple[str, ...]] = {
    "controlnet": CONTROLNET_KINDS,
    "checkpoint": ("txt2img", "inpaint"),
}


def kinds_of(kind: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A kind, a group name ("controlnet", "checkpoint") or several -> catalog kinds."""
    names = (kind,) if isinstance(kind, str) else tuple(kind)
    out: list[str] = []
    for name in names:
        for k in KIND_GROUPS.get(name, (name,)):
            if k not in out:
                out.append(k)
    return tuple(out)


def folder_names(kind: str) -> tuple[str, ...]:
    """Every folder name that may hold ``kind``: the names of :data:`KIND_FOLDERS` (Studio's
    own first), then the kind's own name (``lora/``, ``txt2img/``: where Studio's models
    folder filed downloads and imports before it took the common layout, so those stay
    found)."""
    names = [*KIND_FOLDERS.get(kind, ()), kind]
    return tuple(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------
# Roots


def models_dir() -> Path:
    """Studio's own models folder (``$STUDIO_HOME/models``)."""
    return paths.studio_home() / "models"


def kind_dir(kind: str) -> Path:
    """Where Studio stores a downloaded or imported model of ``kind``: the common layout's
    folder (``loras/``, ``checkpoints/``, ``upscale_models/``, ...)."""
    return models_dir() / folder_names(kind)[0]


def portable_dir() -> Path | None:
    """The portable models folder beside the program, if there is one."""
    return paths.portable_models_dir()


def user_folders() -> list[Path]:
    """Extra model folders from settings and ``STUDIO_MODEL_PATHS`` (existing ones only)."""
    raw: list[str] = []
    env = os.environ.get("STUDIO_MODEL_PATHS")
    if env:
        raw += [p for p in env.split(os.pathsep) if p]
    folders = load_settings().get("folders", [])
    if isinstance(folders, list):
        raw += [str(p) for p in folders if isinstance(p, str)]
    out: list[Path] = []
    for p in raw:
        path = Path(p).expanduser()
        if path.is_dir() and path not in out:
            out.append(path)
    return out


def search_roots() -> list[Path]:
    """Studio's models folder, the portable models folder, then the user's folders."""
    roots = [models_dir()]
    portable = portable_dir()
    if portable is not None:
        roots.append(portable)
    roots += user_folders()
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def kind_folders(kind: str) -> list[Path]:
    """Existing folders that may hold models of ``kind``, in search order. In a user folder,
    ``<root>/models/<name>`` is looked at too (an A1111/ComfyUI install's root), and for
    embeddings ``<root>/../embeddings`` when the folder is an install's ``models/`` (A1111
    keeps ``embeddings/`` beside ``models/``, ComfyUI inside it)."""
    own = models_dir()
    names = folder_names(kind)
    out: list[Path] = []
    for root in search_roots():
        bases = [root] if root == own or root == portable_dir() else [root, root / "models"]
        if kind == "embedding" and root != own and root.name.lower() == "models":
            bases.append(root.parent)
        for base in bases:
            for name in names:
                folder = base / name
                if folder.is_dir() and folder not in out:
                    out.append(folder)
    return out


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, following the same env vars as huggingface_hub, read now
    (so a changed ``HF_HOME`` is honoured even after huggingface_hub was imported)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


# ------------------------------------------------------------------------------------------
# Settings


def settings_path() -> Path:
    return paths.studio_home() / "models.json"


def load_settings() -> dict[str, Any]:
    """Model-manager settings: {"folders": [...], "starter_offered": bool, ...}. A missing or
    unreadable file gives the defaults (the app must start even with a broken settings file)."""
    defaults: dict[str, Any] = {"folders": [], "starter_offered": False}
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return defaults
    if not isinstance(data, dict):
        return defaults
    return {**defaults, **data}


def save_settings(settings: dict[str, Any]) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(settings, indent=2).encode("utf-8"))


def update_settings(**changes: Any) -> dict[str, Any]:
    settings = load_settings()
    settings.update(changes)
    save_settings(settings)
    return settings


def offline_mode() -> bool:
    """The app's offline switch (``STUDIO_OFFLINE=1``) or huggingface_hub's (``HF_HUB_OFFLINE``)."""

    def truthy(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")

    return truthy("STUDIO_OFFLINE") or truthy("HF_HUB_OFFLINE") or truthy("TRANSFORMERS_OFFLINE")


def check_disk_space(folder: Path, needed: int) -> None:
    """ModelError if ``folder``'s disk has less than ``needed`` bytes (+ a margin) free."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return  # unknown: let the write itself fail clearly
    if free < needed + DISK_MARGIN:
        raise ModelError(
            f"Not enough disk space in {probe}: need {format_size(needed)}, "
            f"{format_size(free)} free"
        )
