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

What a file is: ``families.registry.probe_file`` reads the tensor names and shapes (a ``.safetensors``
/ ``.sft`` header, a ``.gguf`` file's tensor table through the ``gguf`` reader; GGUF stores
dimensions innermost first, so they are reversed to torch order) for the family descriptors'
``match_file``. A *full* checkpoint also holds the VAE / text encoders (ComfyUI's all-in-one
FLUX files, Stability's SD 3.5 files: ``first_stage_model.*``, ``vae.*``, ``text_encoders.*``)
and loads with the pipeline's own ``from_single_file`` where diffusers has one
(:func:`load_full_checkpoint`); a transformer-only file takes the rest from the base repo
(:func:`base_folder`, found by the one resolver: Studio's model folders, the catalog's
download, the HF cache; never the network).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.core.errors import BadInput, ModelError

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


def load_transformer_file(
    path: str | Path,
    transformer_class: str,
    config: str | Path,
    dtype,
    quantization_config=None,
):
    """A transformer from one file (GGUF quantized when the file is ``.gguf``), offline.
    ``quantization_config``: another load-time format (bitsandbytes NF4) for a non-GGUF file.
    A ``.sft`` file (BFL's name for safetensors) is read here: diffusers picks its reader by
    the ``.safetensors`` suffix and would hand it to ``torch.load``."""
    import diffusers

    path = Path(path)
    cls = getattr(diffusers, transformer_class)
    kwargs: dict = {}
    source: object = str(path)
    if path.suffix.lower() == ".gguf":
        _need_gguf(path)
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    elif quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    try:
        if path.suffix.lower() == ".sft":
            from safetensors.torch import load_file

            source = load_file(str(path))
        return cls.from_single_file(
            source,
            config=str(config),
            subfolder="transformer",
            torch_dtype=dtype,
            local_files_only=True,
            **kwargs,
        )
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"{path.name}: cannot load as {transformer_class} ({first})") from e


def pipeline_with_transformer(base_folder: str | Path, transformer, dtype, **kwargs):
    """The diffusers pipeline of ``base_folder`` with its transformer replaced (the folder's
    own transformer weights are not read). ``kwargs`` go to ``from_pretrained`` (a
    quantization config for the text encoders)."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(
            base_folder,
            transformer=transformer,
            torch_dtype=dtype,
            local_files_only=True,
            **kwargs,
        )
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"{Path(base_folder).name}: cannot build the pipeline ({first})") from e


# -- what a single file is ------------------------------------------------------------------------

FLOW_FILE_SUFFIXES = (".safetensors", ".sft", ".gguf")
# Keys of the other components in a full checkpoint (LDM / ComfyUI / SD3 names).
_FULL_PREFIXES = ("first_stage_model.", "vae.", "text_encoders.", "cond_stage_model.")


def _need_gguf(path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"{path.name}: GGUF files need the gguf package (pip install gguf)")


def gguf_weights(path: str | Path) -> str:
    """The memory planner's weight format of a GGUF file from its tensors' types: ``q8_0``
    when most quantized tensors are Q8_0, else ``q4_k`` (the planner's one low-bit GGUF row:
    Q4_K, Q5_K, Q6_K, Q4_0 ... are planned alike, an estimate)."""
    from collections import Counter

    from gguf import GGMLQuantizationType, GGUFReader

    plain = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
    kinds = Counter(
        t.tensor_type for t in GGUFReader(str(path)).tensors if t.tensor_type not in plain
    )
    if not kinds:
        return "bf16"  # an unquantized GGUF (F16/F32 only)
    return "q8_0" if kinds.most_common(1)[0][0] == GGMLQuantizationType.Q8_0 else "q4_k"


def is_full_checkpoint(probe) -> bool:
    """Whether a single file also holds the VAE or text encoders (not just the denoiser)."""
    return probe.has_prefix(*_FULL_PREFIXES)


def base_folder(family, config: str, file_name: str = "") -> Path:
    """The local diffusers folder of the base repo of a single file of ``family`` with the
    shipped config name ``config`` (``family.single_file_configs[config]``): a catalog
    model of that repo installed by Studio, else the repo in the HF cache, both through the
    one resolver (never the network). ModelError naming the download when it is not here."""
    from studio.core.catalog import load_catalog
    from studio.engine.diffusion.shared.loader import DIFFUSION_KINDS
    from studio.engine.models.resolver import resolve

    repo = family.single_file_configs[config]
    try:
        ids = [e.id for e in load_catalog() if e.repo == repo]
    except Exception:  # noqa: BLE001 - no catalog: the HF cache alone
        ids = []
    for ref in (*ids, repo):
        try:
            found = resolve(ref, DIFFUSION_KINDS)
        except (BadInput, ModelError):
            continue
        if found.is_dir() and (found / "model_index.json").is_file():
            return found
    get = f"`studio models download {ids[0]}`" if ids else f"`huggingface-cli download {repo}`"
    what = f"{file_name}: a {family.label} file" if file_name else f"A {family.label} file"
    raise ModelError(
        f"{what} holds only the transformer; the text encoders, VAE and tokenizers come from "
        f"{repo}, which is not downloaded. Get it with {get}, then load the file again"
    )


def transformer_config(config: str, base: Path | None = None) -> Path:
    """The folder whose ``transformer/config.json`` describes a file with the shipped config
    name ``config``: the local base repo's own (``base``) when it has one, else the shipped
    ``models/configs/<config>``. ModelError when neither exists."""
    from studio.core.paths import configs_dir

    for folder in (base, configs_dir() / config):
        if folder is not None and (Path(folder) / "transformer" / "config.json").is_file():
            return Path(folder)
    raise ModelError(
        f"No transformer config for {config}: neither the base repo's transformer/config.json "
        f"nor models/configs/{config}/transformer/config.json is here"
    )


def load_full_checkpoint(path: str | Path, pipeline_class: str, base: str | Path, dtype):
    """A full single-file checkpoint (denoiser + VAE / text encoders) with the pipeline's
    ``from_single_file``, offline: ``config=`` the local base repo (its configs, tokenizers
    and any component the file lacks, e.g. T5 in an SD 3.5 file without it)."""
    import diffusers

    path = Path(path)
    cls = getattr(diffusers, pipeline_class)
    try:
        return cls.from_single_file(
            str(path), config=str(base), torch_dtype=dtype, local_files_only=True
        )
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: cannot load as {pipeline_class} ({_first(e)})") from e


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
