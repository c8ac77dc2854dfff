"""Generation metadata fit for a shared image: an exported PNG names the model and tells
nothing about the user's disk. Pure Python (no Qt), used by ``documents.Documents.export``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODEL_SUFFIXES", "shareable"]


def shareable(meta: dict | None) -> dict | None:
    """Metadata fit for a shared image: every absolute local path (the model folder, LoRA
    and ControlNet files, in the fields and in the A1111 text) becomes the model's name, so
    an exported PNG names the model and tells nothing about the user's disk."""
    if not meta:
        return meta
    paths: dict[str, str] = {}

    def name_of(value: str) -> str:
        p = Path(value)
        name = p.stem if p.suffix.lower() in MODEL_SUFFIXES else p.name
        paths[value] = name
        return name

    def clean(v, key: str = ""):
        if isinstance(v, dict):
            return {k: clean(x, k) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x, key) for x in v]
        if isinstance(v, str) and key not in _TEXT_KEYS and _is_local_path(v):
            return name_of(v)
        return v

    out = clean(meta)
    text = out.get("parameters")
    if isinstance(text, str):
        for path in sorted(paths, key=len, reverse=True):
            text = text.replace(path, paths[path])
        out["parameters"] = text
    return out


_TEXT_KEYS = {"prompt", "negative_prompt", "parameters"}  # the user's words stay as written
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")


def _is_local_path(value: str) -> bool:
    if "\n" in value or len(value) > 1000:
        return False
    return value.startswith(("/", "~")) or (len(value) > 2 and value[1:3] in (":\\", ":/"))
