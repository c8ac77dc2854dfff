"""One typed wrapper over QSettings (IniFormat). The file lives in ``$STUDIO_HOME`` when set
(tests get a temp dir) and in the platform's config location otherwise.

Usage: ``settings = Settings(); settings.theme = "light"; settings.brush_size``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QByteArray, QSettings

T = TypeVar("T")


class _Setting(Generic[T]):
    """A typed key with a default; converts the strings IniFormat hands back."""

    def __init__(self, key: str, default: T, kind: type | None = None) -> None:
        self.key = key
        self.default = default
        self.kind = kind or type(default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Settings | None, owner: type) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        raw = obj.qsettings.value(self.key, None)
        if raw is None:
            return self.default
        try:
            return self._convert(raw)
        except (TypeError, ValueError):
            return self.default

    def __set__(self, obj: Settings, value: T) -> None:
        obj.qsettings.setValue(self.key, value)

    def _convert(self, raw: Any) -> T:
        kind = self.kind
        if kind is bool:
            if isinstance(raw, str):
                return raw.strip().lower() in ("true", "1", "yes", "on")  # type: ignore[return-value]
            return bool(raw)  # type: ignore[return-value]
        if kind is list:
            if isinstance(raw, str):
                return [raw] if raw else []  # type: ignore[return-value]
            return [str(v) for v in raw]  # type: ignore[return-value]
        if kind is QByteArray:
            return raw if isinstance(raw, QByteArray) else QByteArray(raw)  # type: ignore[return-value]
        return kind(raw)  # type: ignore[return-value]


def settings_path() -> Path:
    from studio.core.paths import config_dir

    return config_dir() / "settings.ini"


class Settings:
    theme = _Setting("ui/theme", "dark")
    geometry = _Setting("ui/geometry", QByteArray(), QByteArray)
    window_state = _Setting("ui/window_state", QByteArray(), QByteArray)
    last_dir = _Setting("ui/last_dir", "")
    recent_files = _Setting("ui/recent_files", [], list)
    autosave_seconds = _Setting("document/autosave_seconds", 60)
    undo_limit = _Setting("document/undo_limit", 200)
    brush_size = _Setting("tools/brush_size", 40)
    brush_hardness = _Setting("tools/brush_hardness", 0.7)
    brush_color = _Setting("tools/brush_color", "#000000")
    mask_color = _Setting("view/mask_color", "#ff285a")
    mask_opacity = _Setting("view/mask_opacity", 0.5)
    model = _Setting("generate/model", "")
    recent_models = _Setting("generate/recent_models", [], list)
    steps = _Setting("generate/steps", 20)
    guidance = _Setting("generate/guidance", 7.0)
    width = _Setting("generate/width", 512)
    height = _Setting("generate/height", 512)
    scheduler = _Setting("generate/scheduler", "")
    preview = _Setting("generate/preview", "latent")
    strength = _Setting("generate/strength", 0.75)
    vae = _Setting("generate/vae", "")  # "" = the model's own VAE
    clip_skip = _Setting("generate/clip_skip", 1)
    dtype = _Setting("generate/dtype", "")  # "" = the best for the device and family
    quant = _Setting("generate/quant", "")  # "" = the memory planner decides (flow families)
    offload = _Setting("generate/offload", "")  # "" = the memory planner decides
    loras = _Setting("generate/loras", "")  # JSON [[path, weight], ...]
    hires_scale = _Setting("generate/hires_scale", 2.0)
    hires_steps = _Setting("generate/hires_steps", 0)
    hires_denoise = _Setting("generate/hires_denoise", 0.7)
    hires_upscaler = _Setting("generate/hires_upscaler", "Latent")
    torch_threads = _Setting("engine/torch_threads", 0)  # 0 = all cores but one
    # Regional torch.compile of the denoiser and channels-last for SD (engine.diffusion.speed).
    compile_models = _Setting("engine/compile", False, bool)
    channels_last = _Setting("engine/channels_last", False, bool)
    upscale_source = _Setting("upscale/source", "composite")  # or "layer"
    upscale_scale = _Setting("upscale/scale", 4.0)
    upscale_tile = _Setting("upscale/tile", 0)  # 0 = auto
    upscale_overlap = _Setting("upscale/overlap", 16)
    upscale_sharpen = _Setting("upscale/sharpen", 0.0)
    upscale_output = _Setting("upscale/output", "document")  # or "layer"
    inpaint_model = _Setting("inpaint/model", "")  # saved when a Fill job is submitted
    inpaint_grow = _Setting("inpaint/grow", 8)
    inpaint_feather = _Setting("inpaint/feather", 8)
    inpaint_padding = _Setting("inpaint/padding", 32)
    inpaint_blend = _Setting("inpaint/blend", 8)
    inpaint_erase_method = _Setting("inpaint/erase_method", "auto")
    inpaint_steps = _Setting("inpaint/steps", 25)
    inpaint_guidance = _Setting("inpaint/guidance", 7.0)
    inpaint_strength = _Setting("inpaint/strength", 1.0)
    inpaint_overlap = _Setting("inpaint/outpaint_overlap", 32)
    inpaint_outpaint_with = _Setting("inpaint/outpaint_with", "diffusion")  # or "erase"
    control_source = _Setting("control/source", "layer")  # or "composite"
    control_low = _Setting("control/canny_low", 100)
    control_high = _Setting("control/canny_high", 200)
    control_blur = _Setting("control/canny_blur", 0)
    control_live = _Setting("control/live_preview", True)
    control_pose_model = _Setting("control/pose_model", "")  # "" = the installed detector
    control_hands = _Setting("control/hands_and_face", True)

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else settings_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.qsettings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def push_recent(self, key: str, value: str, keep: int = 10) -> None:
        """Move ``value`` to the front of the list setting ``key`` (e.g. "recent_files")."""
        items = [v for v in getattr(self, key) if v != value]
        setattr(self, key, [value, *items][:keep])

    def sync(self) -> None:
        self.qsettings.sync()


# The engine reads its speed settings from the environment (engine.diffusion.speed), in this
# process, at each job.
SPEED_ENV = {"compile_models": "STUDIO_COMPILE", "channels_last": "STUDIO_CHANNELS_LAST"}


def export_speed(settings: Settings, chosen: bool = False) -> None:
    """Hand the speed settings to the engine (``STUDIO_COMPILE``, ``STUDIO_CHANNELS_LAST``);
    they apply from the next job on. At start (``chosen`` False) a variable the user set in
    the environment wins; a choice made in the menu (``chosen``) replaces it."""
    for attr, name in SPEED_ENV.items():
        value = "1" if getattr(settings, attr) else "0"
        if chosen:
            os.environ[name] = value
        else:
            os.environ.setdefault(name, value)
