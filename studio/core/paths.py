"""Where Studio's files are: the user's data and the files Studio ships.

User data: ``$STUDIO_HOME`` when set (tests, portable installs), else the platform's user data
folder (``~/.local/share/studio``, ``%LOCALAPPDATA%\\studio``,
``~/Library/Application Support/studio``). Settings, recovery files, Studio's own models folder
and the user catalog live under it.

Shipped files live in two top-level folders of the source tree, ``resources/`` (icons,
stylesheets, desktop entry, MIME type, pose templates) and ``models/`` (``catalog.toml``,
``configs/`` for offline single-file loading, and the portable models folder). They are found:

- in a PyInstaller bundle: ``models/`` next to the executable (a portable install keeps its
  models beside it), ``resources/`` there or in the unpacked bundle data;
- in a source checkout or an editable install: beside the ``studio`` package;
- in a wheel install: inside the package as ``studio/_shipped/{resources,models}`` (see
  ``pyproject.toml``'s ``package-dir``).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

# The portable models folder: one subfolder per kind, named as AUTOMATIC1111 and ComfyUI do.
# Which catalog kinds each holds (and the A1111/ComfyUI names also accepted in the user's
# folders): studio.engine.models.folders.KIND_FOLDERS.
MODEL_FOLDERS: dict[str, str] = {
    "checkpoints": "Stable Diffusion and other generation checkpoints (.safetensors, diffusers folders)",
    "loras": "LoRA files (.safetensors)",
    "vae": "VAE files (.safetensors)",
    "controlnet": "ControlNet models (.safetensors, diffusers folders)",
    "upscale_models": "Super-resolution models (Real-ESRGAN, SwinIR, ... .pth/.safetensors)",
    "inpaint": "Inpainting models (LaMa big-lama.pt, inpainting checkpoints)",
    "pose": "Pose detectors (DWPose .onnx pair, OpenPose .pth files)",
    "embeddings": "Textual inversion embeddings (.safetensors, .pt)",
    "segment": "Selection models (SAM 2, Grounding DINO, SAM 3 folders)",
    "depth": "Depth estimators (Depth Anything V2 folders)",
    "facerestore_models": "Face restoration models (GFPGAN .pth)",
    "facedetection": "Face detectors (YuNet .onnx)",
}

_PACKAGE = Path(__file__).resolve().parent.parent  # .../studio


def studio_home() -> Path:
    """Root of the user's Studio data."""
    env = os.environ.get("STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("studio", appauthor=False))


def config_dir() -> Path:
    """Where settings.ini lives: ``$STUDIO_HOME`` when set, else the platform config dir."""
    env = os.environ.get("STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("studio", appauthor=False))


def _candidates(name: str) -> list[Path]:
    out: list[Path] = []
    if getattr(sys, "frozen", False):
        out.append(Path(sys.executable).resolve().parent / name)
        meipass = getattr(sys, "_MEIPASS", None)
        if meipass:
            out.append(Path(meipass) / name)
    out.append(_PACKAGE.parent / name)  # source checkout / editable install
    out.append(_PACKAGE / "_shipped" / name)  # wheel install
    return out


@cache
def _shipped(name: str, marker: str) -> Path:
    for folder in _candidates(name):
        if (folder / marker).exists():
            return folder
    tried = ", ".join(str(p) for p in _candidates(name))
    raise FileNotFoundError(f"Studio's {name}/ folder is missing (looked in {tried})")


def resources_dir() -> Path:
    """The shipped ``resources/`` folder (icons, stylesheets, desktop files, pose templates)."""
    return _shipped("resources", "icon.png")


def shipped_models_dir() -> Path:
    """The shipped ``models/`` folder: ``catalog.toml``, ``configs/`` and the portable models
    folder's kind subfolders."""
    return _shipped("models", "catalog.toml")


def configs_dir() -> Path:
    """Model configs for offline single-file loading (``models/configs``)."""
    return shipped_models_dir() / "configs"


def portable_models_dir() -> Path | None:
    """The portable models folder beside the program (``models/`` with its kind subfolders),
    or None when there is none (a wheel installed into a read-only site-packages still has
    one, but it is searched only if it exists)."""
    try:
        folder = shipped_models_dir()
    except FileNotFoundError:
        return None
    return folder if folder.is_dir() else None
