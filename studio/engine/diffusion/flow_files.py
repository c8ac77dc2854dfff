"""Single files of the flow families, offline: transformer-only ``.safetensors`` (diffusers,
BFL or ComfyUI key layouts) and ``.gguf`` files, loaded with the family's transformer class
``from_single_file(path, config=<local config folder>, subfolder="transformer")`` (a GGUF file
with ``GGUFQuantizationConfig``), then joined to the rest of the pipeline (text encoders, VAE,
scheduler, tokenizers) from a local diffusers folder of the same model (a download of the base
repo, or the HF cache copy).

Always with a local ``config=``: without it diffusers fetches the config of its guess of the
default repo (gated FLUX.1-dev, or flux-2-dev for a klein file, which then fails with size
mismatches). The config folders are ``models/configs/<config>`` (see :func:`export_config`,
which makes one from a downloaded repo: every JSON and tokenizer file, no weights).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.core.errors import ModelError

_CONFIG_SUFFIXES = (".json", ".txt", ".model", ".jinja")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".sft")


def export_config(repo_folder: str | Path, dest: str | Path) -> Path:
    """Copy a diffusers repo's configs and tokenizer files (no weights) to ``dest``: what
    ``from_single_file(config=...)`` and the shipped ``models/configs/<name>`` need."""
    src, dest = Path(repo_folder), Path(dest)
    if not (src / "model_index.json").exists():
        raise ModelError(f"{src}: not a diffusers pipeline folder (no model_index.json)")
    for f in src.rglob("*"):
        if f.is_file() and f.suffix in _CONFIG_SUFFIXES and f.suffix not in _WEIGHT_SUFFIXES:
            if "index.json" in f.name and f.name != "model_index.json":
                continue  # sharded-weight indexes name files that are not shipped
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    return dest


def load_transformer_file(path: str | Path, transformer_class: str, config: str | Path, dtype):
    """A transformer from one file (GGUF quantized when the file is ``.gguf``), offline."""
    import diffusers

    path = Path(path)
    cls = getattr(diffusers, transformer_class)
    kwargs: dict = {}
    if path.suffix.lower() == ".gguf":
        if __import__("importlib").util.find_spec("gguf") is None:
            raise ModelError(f"{path.name}: GGUF files need the gguf package (pip install gguf)")
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    try:
        return cls.from_single_file(
            str(path),
            config=str(config),
            subfolder="transformer",
            torch_dtype=dtype,
            local_files_only=True,
            **kwargs,
        )
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"{path.name}: cannot load as {transformer_class} ({first})") from e


def pipeline_with_transformer(base_folder: str | Path, transformer, dtype):
    """The diffusers pipeline of ``base_folder`` with its transformer replaced (the folder's
    own transformer weights are not read)."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(
            base_folder, transformer=transformer, torch_dtype=dtype, local_files_only=True
        )
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"{Path(base_folder).name}: cannot build the pipeline ({first})") from e
