"""The family registry and recognition: which :class:`Family` a diffusers folder, a loaded
pipeline, a single-file checkpoint or a ControlNet belongs to. Torch is imported only to read
``.ckpt`` files (safetensors headers are read without it)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from studio.core.errors import BadInput, ModelError, short_error
from studio.engine.diffusion.families.base import Family, ModelInfo, TensorProbe


@cache
def _registry() -> tuple[Family, ...]:
    """Every :class:`Family` instance at the top level of any module of this package (one
    module per family; a family with variants holds several), most specific first."""
    import pkgutil

    # The package by its folder and name, not by importing it: the package's face imports
    # this module.
    package = __name__.rpartition(".")[0]
    found: dict[str, Family] = {}
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        m = importlib.import_module(f"{package}.{mod.name}")
        for value in vars(m).values():
            if isinstance(value, Family):
                if found.setdefault(value.name, value) is not value:
                    raise RuntimeError(f"two families are called {value.name!r}")
    return tuple(sorted(found.values(), key=lambda f: -f.priority))


def families() -> tuple[Family, ...]:
    """Every registered family, most specific (highest priority) first."""
    return _registry()


def family(name: str | Family) -> Family:
    """The family called ``name`` (a Family passes through); BadInput for an unknown name."""
    if isinstance(name, Family):
        return name
    for fam in _registry():
        if fam.name == name:
            return fam
    names = ", ".join(f.name for f in _registry())
    raise BadInput(f"Unknown model family {name!r} (known: {names})")


def family_labels(which: Callable[[Family], bool] | None = None) -> str:
    """The labels of the registered base families (variants excluded) that ``which`` accepts
    (all when None), SD first, as prose for help texts: "SD 1.x, SDXL and FLUX.1"."""
    fams = [f for f in _registry() if f.base is None and (which is None or which(f))]
    labels = [f.label for f in sorted(fams, key=lambda f: (f.prediction == "flow", f.priority))]
    return labels[0] if len(labels) < 2 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def recognise(info: ModelInfo) -> Family:
    """The first family (by priority) whose ``matches`` accepts ``info``; ModelError if none."""
    for fam in _registry():
        if fam.matches(info):
            return fam
    raise ModelError(f"Not a model family Studio knows ({info.class_name or 'no pipeline class'})")


def family_by_context(width: int | None) -> Family | None:
    """The family whose UNet's cross-attention width (``Family.context_dim``) is ``width``."""
    return next((f for f in _registry() if width and f.context_dim == width), None)


def recognise_flow(info: ModelInfo) -> Family | None:
    """The flow-matching family (by priority) whose ``matches`` accepts ``info``, else None."""
    return next((f for f in _registry() if f.prediction == "flow" and f.matches(info)), None)


def recognise_flow_file(probe: TensorProbe) -> tuple[Family, str] | None:
    """(flow family, shipped config name) of a single transformer or checkpoint file by the
    descriptors' ``match_file`` (tensor names and shapes only), else None."""
    for fam in _registry():
        if fam.prediction == "flow":
            config = fam.match_file(probe)
            if config is not None:
                return fam, config
    return None


# -- diffusers folders and loaded pipelines ------------------------------------------------------


def folder_info(folder: Path | str) -> ModelInfo:
    """ModelInfo from a diffusers folder's model_index.json and its components' config.json."""
    folder = Path(folder)
    index_file = folder / "model_index.json"
    if not index_file.exists():
        raise ModelError(f"{folder}: not a pipeline folder (no model_index.json)")
    index = json.loads(index_file.read_text())
    comps = frozenset(
        k
        for k, v in index.items()
        if not k.startswith("_") and isinstance(v, list) and v and v[0] not in (None, "null")
    )
    configs: dict[str, dict] = {}
    for c in comps:
        cfg = folder / c / "config.json"
        if cfg.exists():
            try:
                configs[c] = json.loads(cfg.read_text())
            except ValueError:
                continue
    return ModelInfo(str(index.get("_class_name", "")), comps, configs)


def recognise_folder(folder: Path | str) -> Family:
    return recognise(folder_info(folder))


def pipe_info(pipe: Any) -> ModelInfo:
    """ModelInfo of a loaded diffusers pipeline (its components and their configs)."""
    comps = {name for name, mod in getattr(pipe, "components", {}).items() if mod is not None}
    configs = {}
    for name in comps:
        cfg = getattr(getattr(pipe, name, None), "config", None)
        if cfg is not None and hasattr(cfg, "items"):
            configs[name] = dict(cfg)
    return ModelInfo(type(pipe).__name__, frozenset(comps), configs)


def recognise_pipe(pipe: Any) -> Family:
    """The family of a loaded pipeline (by its class and components' configs), kept on the
    pipeline after the first time: its modules don't change family."""
    fam = getattr(pipe, "studio_family", None)
    if isinstance(fam, Family):
        return fam
    fam = recognise(pipe_info(pipe))
    try:
        pipe.studio_family = fam
    except (AttributeError, TypeError):  # an object without a __dict__ (a test double)
        pass
    return fam


# -- single files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileMatch:
    """A recognised single-file checkpoint: its family and the shipped config folder."""

    family: Family
    config: str
    scheduler: Mapping[str, Any] = field(default_factory=dict)  # Family.file_scheduler's


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a .safetensors header (an 8-byte little-endian length, then
    that many bytes of JSON), read without torch."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("file too short")
        n = int.from_bytes(head, "little")
        if not 2 <= n <= 100_000_000:
            raise ValueError("bad header length")
        header = json.loads(f.read(n))
    if not isinstance(header, dict):
        raise ValueError("bad header")
    return {
        k: tuple(int(x) for x in v["shape"])
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "shape" in v
    }


def probe_file(path: Path | str) -> TensorProbe:
    """A TensorProbe of a .safetensors (header only; tensors read on demand) or a .ckpt/.pt
    (torch's weights_only loader, never pickled code); ``.sft`` (BFL's safetensors) like
    .safetensors; a ``.gguf`` from its tensor table (shapes in torch order; no values: GGUF
    tensors are quantized blocks). ModelError when unreadable."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return _probe_gguf(path)
    sidecar = ""
    yaml = path.with_suffix(".yaml")
    if yaml.is_file():
        try:
            sidecar = yaml.read_text(errors="replace")[:100_000]
        except OSError:
            sidecar = ""
    if path.suffix.lower() in (".safetensors", ".sft"):
        try:
            shapes = safetensors_shapes(path)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"{path.name}: not a readable .safetensors file ({e})") from e

        def load(name: str):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return f.get_tensor(name)

        return TensorProbe(shapes, load, sidecar, path.name)
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
        raise ModelError(f"{path.name}: cannot read checkpoint safely ({short_error(e)})") from e
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else {}
    tensors = {k: v for k, v in sd.items() if hasattr(v, "shape")}
    return TensorProbe(
        {k: tuple(v.shape) for k, v in tensors.items()}, tensors.__getitem__, sidecar, path.name
    )


def _probe_gguf(path: Path) -> TensorProbe:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"{path.name}: GGUF files need the gguf package (pip install gguf)")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: not a readable GGUF file ({short_error(e)})") from e
    return TensorProbe(shapes, None, "", path.name)


def recognise_file(source: Path | str | TensorProbe) -> FileMatch:
    """The family and config folder of a single-file checkpoint, from its tensor names and
    shapes (the keys diffusers' ``infer_diffusers_model_type`` looks at), conv_in channels
    (inpainting) and, for SD2, the v-prediction test of ``families.sd2``."""
    probe = source if isinstance(source, TensorProbe) else probe_file(source)
    name = probe.name or "checkpoint"
    if probe.unet_in_channels() is None:
        flow = recognise_flow_file(probe)
        if flow is not None:
            return FileMatch(*flow)
        if probe.has_prefix("down_blocks.", "unet."):
            raise ModelError(
                f"{name}: a diffusers-format weight file, not a full checkpoint; "
                "pass the model folder instead"
            )
        raise ModelError(f"{name}: not a Stable Diffusion checkpoint (no UNet weights)")
    for fam in _registry():
        config = fam.match_file(probe)
        if config is not None:
            return FileMatch(fam, config, dict(fam.file_scheduler(probe)))
    raise ModelError(f"{name}: not a model family Studio knows")


def config_family(config: str) -> Family:
    """The family whose shipped single-file configs include ``config``."""
    for fam in _registry():
        if config in fam.single_file_configs:
            return fam
    raise BadInput(f"Unknown checkpoint config {config!r}")


# -- ControlNets ----------------------------------------------------------------------------------


def controlnet_family(config: dict | None = None, probe: TensorProbe | None = None) -> Family:
    """The family a ControlNet was trained for, from its config (cross-attention width and
    the SDXL add-embedding) or from a single file's tensors (the same facts)."""
    cfg = dict(config or {})
    if probe is not None:
        shapes = {k.removeprefix("control_model."): v for k, v in probe.shapes.items()}
        for k, s in shapes.items():
            if "attn2" in k and k.endswith(("to_k.weight",)) and len(s) == 2:
                cfg.setdefault("cross_attention_dim", s[1])
                break
        if any(k.startswith(("label_emb.", "add_embedding.")) for k in shapes):
            cfg["addition_embed_type"] = "text_time"
    return recognise(ModelInfo("ControlNetModel", frozenset({"unet"}), {"unet": cfg}))
