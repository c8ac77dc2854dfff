"""Identify a model file from its tensor names and shapes, without running code from it.

- ``.safetensors``: the JSON header is read directly (8-byte little-endian length + JSON);
  no tensor data is read.
- Pickle files (``.ckpt``, ``.pth``, ``.pt``, ``.bin``; torch zip archives, TorchScript
  archives and the legacy torch format): only the pickled *description* is read, with a
  restricted Unpickler whose ``find_class`` resolves a short allow-list of harmless names to
  inert stand-ins (``torch._utils._rebuild_tensor_v2`` becomes a function that records the
  shape). Every other global (``os.system``, ``builtins.eval``, any class) is refused, so a
  malicious pickle is reported as such and never runs; tensor data is never read.

Kinds: SD 1.x / 2.x / SDXL single-file checkpoints (txt2img or 9-channel inpaint), ControlNet
(original or diffusers layout), LoRA (kohya ``lora_unet_``/``lora_te_`` keys, diffusers/peft
``lora_A``/``lora_B`` keys, LyCORIS), textual-inversion embeddings (A1111 ``string_to_param``
/ ``emb_params``, SDXL ``clip_l``/``clip_g``, diffusers; :mod:`studio.engine.models.embeddings`),
VAE, TAESD, and anything spandrel's architecture registry
detects (upscalers and LaMa; detection runs on shape-only meta tensors). Anything else is
refused with a clear BadInput.
"""

from __future__ import annotations

import collections
import json
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import BadInput, StudioError

SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".sft", ".gguf")
MAX_HEADER = 100 * 1024 * 1024
MAX_PICKLE = 256 * 1024 * 1024  # a torch zip's data.pkl holds names and shapes, not weights


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str = ""


@dataclass(frozen=True)
class Identified:
    """What a model file is. ``kind``: txt2img, inpaint, controlnet, lora, embedding, vae,
    preview-decoder, upscaler or lama. ``base``: sd1, sd2, sdxl, a flow family (flux1, flux2,
    zimage, sd3, qwen and their variants) or None."""

    path: Path
    kind: str
    base: str | None
    description: str
    format: str  # "safetensors" | "pickle" | "torchscript" | "gguf"
    details: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# Reading tensor names and shapes safely


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor infos and ``__metadata__`` from a .safetensors header (no data read)."""
    try:
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise BadInput(f"{path.name} is not a valid .safetensors file (too short)")
            (n,) = struct.unpack("<Q", raw_len)
            size = path.stat().st_size
            if n <= 1 or n > MAX_HEADER or n + 8 > size:
                raise BadInput(f"{path.name} is not a valid .safetensors file (bad header)")
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, BadInput):
            raise
        raise BadInput(f"{path.name} is not a valid .safetensors file ({e})") from e
    if not isinstance(header, dict):
        raise BadInput(f"{path.name} is not a valid .safetensors file (header is not a table)")
    meta = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise BadInput(f"{path.name} is not a valid .safetensors file (bad entry {name!r})")
        tensors[name] = TensorInfo(tuple(int(d) for d in info["shape"]), str(info.get("dtype")))
    return tensors, meta if isinstance(meta, dict) else {}


class UnsafePickle(BadInput):
    """The pickle references code outside the allow-list: refused without running it."""


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = name.replace("Storage", "").lower() or "untyped"


class _StorageRef:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *args: Any) -> TensorInfo:
    dtype = getattr(storage, "dtype", "")
    return TensorInfo(tuple(int(s) for s in size), dtype)


def _rebuild_parameter(data: Any, *args: Any) -> Any:
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    return func(*args)


def _identity(*args: Any) -> Any:
    return args[0] if args else None


def _inert(*args: Any, **kwargs: Any) -> None:
    return None


class _Inert:
    """Stand-in for plain values stored next to the weights (numpy scalars such as
    ``global_step``): constructed from nothing, accepts and drops any state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _ScriptObject:
    """Stand-in for a TorchScript class (``__torch__.*``): it only stores its attributes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.attrs = state


_TORCH_STORAGES = {
    f"{t}Storage"
    for t in (
        "Float",
        "Half",
        "BFloat16",
        "Double",
        "Long",
        "Int",
        "Short",
        "Char",
        "Byte",
        "Bool",
        "ComplexFloat",
        "ComplexDouble",
        "Untyped",
        "Float8_e4m3fn",
        "Float8_e5m2",
    )
}
_TORCH_DTYPES = {
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "float8_e4m3fn",
    "float8_e5m2",
}
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("typing", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _identity,
    ("torch", "Size"): tuple,
    ("torch.jit._pickle", "build_intlist"): _identity,
    ("torch.jit._pickle", "build_doublelist"): _identity,
    ("torch.jit._pickle", "build_boollist"): _identity,
    ("torch.jit._pickle", "build_tensorlist"): _identity,
    ("torch.jit._pickle", "build_tensor_from_id"): _inert,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
    # Plain numbers some training scripts store next to the weights (global_step, epoch):
    # replaced by None, never constructed.
    ("numpy.core.multiarray", "scalar"): _Inert,
    ("numpy._core.multiarray", "scalar"): _Inert,
    ("numpy", "dtype"): _Inert,
    ("_codecs", "encode"): _Inert,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for torch checkpoints that builds shape-only stand-ins and refuses every
    global outside the allow-list (raising UnsafePickle naming it)."""

    def __init__(self, file: Any, name: str, torchscript: bool = False) -> None:
        super().__init__(file)
        self._name = name
        self._torchscript = torchscript
        self._script_classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        hit = _ALLOWED.get((module, name))
        if hit is not None:
            return hit
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return name
        if self._torchscript and (module == "__torch__" or module.startswith("__torch__.")):
            key = f"{module}.{name}"
            if key not in self._script_classes:
                self._script_classes[key] = type(name, (_ScriptObject,), {"script_type": key})
            return self._script_classes[key]
        raise UnsafePickle(
            f"Refused {self._name}: it contains a reference to code ({module}.{name}), which "
            "Studio never runs; use a .safetensors version of this model"
        )

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "storage":
            storage_type = pid[1]
            dtype = getattr(
                storage_type, "dtype", storage_type if isinstance(storage_type, str) else ""
            )
            return _StorageRef(dtype)
        raise UnsafePickle(f"Refused {self._name}: unexpected persistent id in the pickle")


def _unpickle(data: bytes | Any, name: str, torchscript: bool = False) -> Any:
    import io

    f = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        return SafeUnpickler(f, name, torchscript).load()
    except UnsafePickle:
        raise
    except RecursionError as e:
        raise BadInput(f"{name} is not a readable model file (nested too deeply)") from e
    except MemoryError as e:
        raise BadInput(f"{name} is not a readable model file (implausible sizes)") from e
    except Exception as e:  # noqa: BLE001 - hostile bytes: OverflowError, IndexError, ...
        # Nothing ran (SafeUnpickler builds only inert objects), so any failure is "unreadable".
        text = (str(e).strip().splitlines() or [""])[0][:160]
        raise BadInput(f"{name} is not a readable model file ({type(e).__name__}: {text})") from e


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_pickle_tensors(path: Path) -> tuple[dict[str, TensorInfo], str]:
    """Tensor infos from a torch pickle checkpoint (zip, TorchScript zip or legacy format).
    Returns (tensors, format) with format "pickle" or "torchscript"."""
    name = path.name
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
                if not pkl:
                    raise BadInput(f"{name} is a zip file but not a torch checkpoint")
                torchscript = any("/code/" in n for n in names) or any(
                    n.endswith("/constants.pkl") for n in names
                )
                if z.getinfo(pkl[0]).file_size > MAX_PICKLE:
                    raise BadInput(f"{name}: its pickled index is implausibly large; refused")
                obj = _unpickle(z.read(pkl[0]), name, torchscript)
        except (zipfile.BadZipFile, OSError) as e:
            raise BadInput(f"{name} is a damaged zip/torch file ({e})") from e
        fmt = "torchscript" if torchscript else "pickle"
        return _flatten(obj), fmt
    try:
        with open(path, "rb") as f:
            first = _unpickle(f, name)
            if isinstance(first, int) and first == _LEGACY_MAGIC:
                _unpickle(f, name)  # protocol version
                _unpickle(f, name)  # sys info
                obj = _unpickle(f, name)
            else:
                obj = first
    except OSError as e:
        raise BadInput(f"Cannot read {name}: {e.strerror or e}") from e
    return _flatten(obj), "pickle"


_UNWRAP = ("state_dict", "model_state_dict", "params_ema", "params-ema", "params", "model", "net")


def _flatten(obj: Any) -> dict[str, TensorInfo]:
    """Tensor leaves of a (possibly wrapped or TorchScript) checkpoint as {dotted name: info}."""
    if isinstance(obj, _ScriptObject):
        out: dict[str, TensorInfo] = {}
        _walk_script(obj, "", out, set())
        return out
    if not isinstance(obj, dict):
        raise BadInput("the file does not hold a dictionary of tensors")
    ti = obj.get("string_to_param")  # an A1111 textual-inversion .pt: {"*": vectors}
    if isinstance(ti, dict) and any(isinstance(v, TensorInfo) for v in ti.values()):
        return {f"string_to_param.{k}": v for k, v in ti.items() if isinstance(v, TensorInfo)}
    for key in _UNWRAP:
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, TensorInfo) for v in inner.values()):
            obj = inner
            break
    out = {str(k): v for k, v in obj.items() if isinstance(v, TensorInfo)}
    if not out and len(obj) == 1:
        only = next(iter(obj.values()))
        if isinstance(only, dict):
            return _flatten(only)
    return out


def _walk_script(obj: _ScriptObject, prefix: str, out: dict[str, TensorInfo], seen: set) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for k, v in obj.attrs.items():
        if not isinstance(k, str):
            continue
        name = f"{prefix}{k}"
        if isinstance(v, TensorInfo):
            out[name] = v
        elif isinstance(v, _ScriptObject):
            _walk_script(v, name + ".", out, seen)


def read_tensors(path: str | Path) -> tuple[dict[str, TensorInfo], str, dict[str, str]]:
    """(tensor infos, format, metadata) for a model file; BadInput if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(
            f"{path.name}: unsupported model file type {suffix or '(none)'} "
            f"(expected {', '.join(SUFFIXES)})"
        )
    if suffix == ".gguf":  # a quantized flow transformer: its tensor table, no data
        from studio.engine.diffusion.families.registry import probe_file

        probe = probe_file(path)  # ModelError when unreadable
        return {k: TensorInfo(s) for k, s in probe.shapes.items()}, "gguf", {}
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if suffix in (".safetensors", ".sft") or (
            len(head) == 8 and 1 < struct.unpack("<Q", head)[0] < MAX_HEADER and _peek_json(path)
        ):
            tensors, meta = read_safetensors_header(path)
            return tensors, "safetensors", meta
        tensors, fmt = read_pickle_tensors(path)
        return tensors, fmt, {}
    except StudioError:
        raise
    except Exception as e:  # noqa: BLE001 - damaged bytes (zipfile's EOFError, bad names...)
        text = (str(e).strip().splitlines() or [""])[0][:160]
        raise BadInput(
            f"{path.name} is not a readable model file ({type(e).__name__}: {text})"
        ) from e


def _peek_json(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(8)
        return f.read(1) == b"{"


# ------------------------------------------------------------------------------------------
# Classification


def context_dim(tensors: dict[str, TensorInfo]) -> int | None:
    """Cross-attention context width from any attn2 key projection (768 SD1, 1024 SD2,
    2048 SDXL)."""
    for name, info in tensors.items():
        if re.search(r"attn2[._]to_k(\.weight|_lora\.down\.weight|\.lora_A\.weight)$", name) or (
            re.search(r"attn2[._]to_k[._]lora[._]down\.weight$", name)
        ):
            if len(info.shape) == 2:
                return info.shape[1]
    return None


def _lora_context_dim(tensors: dict[str, TensorInfo]) -> int | None:
    for name, info in tensors.items():
        if "attn2" in name and "to_k" in name and len(info.shape) == 2:
            if any(t in name for t in ("lora_down", "lora.down", "lora_A")):
                return info.shape[1]
    return None


# ------------------------------------------------------------------------------------------
# Textual-inversion embeddings (formats: studio.engine.models.embeddings)


def base_by_context(width: int | None, one_encoder: bool = False) -> str | None:
    """The base family of a cross-attention (or text-encoder) width, by the descriptors'
    ``context_dim``; ``one_encoder``: only a family with one text encoder (an embedding's
    single vector width: CLIP ViT-L/14 768 for SD 1.x, OpenCLIP ViT-H/14 1024 for SD 2.x)."""
    from studio.engine.diffusion.families.registry import family_by_context

    fam = family_by_context(width)
    if fam is None or (one_encoder and len(fam.text_encoders) != 1):
        return None
    return fam.name


def _rows(info: TensorInfo) -> tuple[int, int] | None:
    """(vectors, width) of a (d,) or (n, d) tensor."""
    if len(info.shape) == 1:
        return 1, info.shape[0]
    if len(info.shape) == 2:
        return info.shape[0], info.shape[1]
    return None


def classify_embedding(tensors: dict[str, TensorInfo]) -> tuple[str | None, int, str] | None:
    """(base, vectors, layout) if these tensors are a textual-inversion embedding, else None.
    ``tensors`` as :func:`~studio.engine.models.identify.read_tensors` returns them (an A1111
    ``.pt``'s vectors under ``string_to_param.*``)."""
    keys = set(tensors)
    if keys and keys <= {"clip_l", "clip_g"}:
        rows = [_rows(tensors[k]) for k in ("clip_l", "clip_g") if k in keys]
        if None in rows:
            return None
        widths = {k: r[1] for k, r in zip(("clip_l", "clip_g"), rows, strict=False) if r}
        ok = widths.get("clip_l", 768) == 768 and widths.get("clip_g", 1280) == 1280
        return ("sdxl" if ok else None), rows[0][0], "sdxl"
    a1111 = [k for k in keys if k.startswith("string_to_param.")]
    if a1111:
        key, layout = sorted(a1111)[0], "a1111-pt"
    elif "emb_params" in keys:
        key, layout = "emb_params", "emb_params"
    elif len(keys) == 1:
        key, layout = next(iter(keys)), "diffusers"
    else:
        return None
    rows = _rows(tensors[key])
    if rows is None:
        return None
    vectors, width = rows
    base = base_by_context(width, one_encoder=True)
    if layout == "diffusers" and (base is None or vectors > 75):
        return None  # a lone tensor of another width is not a recognisable embedding
    return base, vectors, layout


def describe_embedding(base: str | None, vectors: int) -> str:
    s = "" if vectors == 1 else "s"
    return f"textual-inversion embedding for {_family(base)} ({vectors} vector{s})"


def identify(path: str | Path) -> Identified:
    """Identify a model file (see module docstring). Raises BadInput if it can't."""
    path = Path(path)
    tensors, fmt, meta = read_tensors(path)
    if not tensors:
        raise BadInput(f"Could not identify {path.name}: it holds no tensors")
    keys = list(tensors)
    name = path.name

    def result(kind: str, base: str | None, description: str, **details: Any) -> Identified:
        details.setdefault("tensors", len(tensors))
        return Identified(path, kind, base, description, fmt, details)

    # --- LoRA / LyCORIS --------------------------------------------------------------------
    kohya = [k for k in keys if k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"))]
    peft = [k for k in keys if re.search(r"\.lora_[AB]\.weight$|\.lora[._](down|up)\.weight$", k)]
    if kohya or peft:
        base = base_by_context(_lora_context_dim(tensors))
        if base is None and any(k.startswith(("lora_te2_", "lora_te1_")) for k in kohya):
            base = "sdxl"
        if base is None and any(k.startswith("text_encoder_2.") for k in keys):
            base = "sdxl"
        if meta.get("ss_base_model_version", "").startswith("sdxl"):
            base = "sdxl"
        lyco = any(re.search(r"\.(hada_w1_a|lokr_w1|lokr_w1_a|oft_diag)$", k) for k in keys)
        fmt_name = "kohya" if kohya else "diffusers/peft"
        if lyco:
            fmt_name = "lycoris"
        rank = None
        for k in keys:
            if k.endswith(("lora_down.weight", "lora_A.weight", "lora.down.weight")):
                rank = tensors[k].shape[0]
                break
        fam = _family(base)
        return result(
            "lora",
            base,
            f"LoRA ({fmt_name}{f', rank {rank}' if rank else ''}) for {fam}",
            lora_format=fmt_name,
            rank=rank,
        )

    # --- Flow-matching families (FLUX.1, FLUX.2 klein, Z-Image, SD 3.5, Qwen-Image) -------------
    flow = flow_file(tensors, name)
    if flow is not None:
        kind, base, description, details = flow
        return result(kind, base, description, **details)

    # --- Families Studio does not run: say so instead of "unknown" ------------------------------
    prefixes = ("", "model.diffusion_model.")
    if any(k.startswith(tuple(p + "double_blocks." for p in prefixes)) for k in keys):
        raise BadInput(
            f"{name} is a FLUX model Studio does not run (FLUX.2 dev or another variant)"
        )
    if any(k.startswith(tuple(p + "joint_blocks." for p in prefixes)) for k in keys):
        raise BadInput(f"{name} is a Stable Diffusion 3 variant Studio does not recognise")

    # --- Textual-inversion embeddings -----------------------------------------------------------
    emb = classify_embedding(tensors)
    if emb is not None:
        base, vectors, layout = emb
        described = describe_embedding(base, vectors)
        return result("embedding", base, described, vectors=vectors, layout=layout, token=path.stem)

    # --- OpenPose (Cao et al., CVPR 2017; lllyasviel/Annotators' .pth files) -----------------------
    if "conv1_1.weight" in tensors:
        last = tensors.get("Mconv7_stage6.weight")
        part = "body" if "Mconv7_stage6_L2.weight" in tensors else None
        if part is None and last is not None and last.shape:
            part = {22: "hand", 71: "face"}.get(last.shape[0])  # 21 keypoints + background; 70+1
        if part is not None:
            return result("pose-detector", None, f"OpenPose {part} model", part=part)

    # --- Single-file SD checkpoints -------------------------------------------------------------
    conv_in = tensors.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None:
        in_ch = conv_in.shape[1] if len(conv_in.shape) == 4 else None
        if any(k.startswith("conditioner.embedders.0.model.") for k in keys) and not any(
            k.startswith("conditioner.embedders.1.") for k in keys
        ):
            raise BadInput(
                f"{name} is an SDXL refiner checkpoint; Studio supports SDXL base models only"
            )
        match = _sd_file(tensors, name)
        base, fam = match.name, match.label
        if in_ch == 9:
            kind, what = "inpaint", f"{fam} inpainting checkpoint (9-channel UNet)"
        elif in_ch == 4:
            kind, what = "txt2img", f"{fam} checkpoint"
        else:
            raise BadInput(
                f"{name} is a {fam} checkpoint with a {in_ch}-channel UNet (e.g. instruct-pix2pix "
                "or depth), which Studio does not support"
            )
        has_vae = any(k.startswith("first_stage_model.") for k in keys)
        has_te = any(k.startswith(("cond_stage_model.", "conditioner.")) for k in keys)
        if not (has_vae and has_te):
            raise BadInput(
                f"{name} holds only the UNet of a {fam} model (no VAE/text encoder); "
                "Studio needs a full checkpoint"
            )
        details: dict[str, Any] = {"in_channels": in_ch}
        if base == "sd2":
            details["note"] = (
                "SD 2.x 768-v models need v-prediction; the weights don't say which it is"
            )
        return result(kind, base, what, **details)

    # --- ControlNet -------------------------------------------------------------------------------
    stripped = {k.removeprefix("control_model."): v for k, v in tensors.items()}
    original_cn = "input_hint_block.0.weight" in stripped and any(
        k.startswith("zero_convs.") for k in stripped
    )
    diffusers_cn = "controlnet_cond_embedding.conv_in.weight" in tensors and any(
        k.startswith("controlnet_down_blocks.") for k in keys
    )
    if original_cn or diffusers_cn:
        base = base_by_context(context_dim(stripped))
        if base is None and (
            "add_embedding.linear_1.weight" in tensors or "label_emb.0.0.weight" in stripped
        ):
            base = "sdxl"
        condition = guess_condition(name)
        cond_txt = f" ({condition})" if condition else ""
        return result(
            "controlnet",
            base,
            f"ControlNet{cond_txt} for {_family(base)}",
            layout="original" if original_cn else "diffusers",
            condition=condition,
        )

    # --- Diffusers UNet on its own --------------------------------------------------------------
    if "conv_in.weight" in tensors and "time_embedding.linear_1.weight" in tensors:
        raise BadInput(
            f"{name} is a single diffusers UNet component, not a whole model; import the full "
            "pipeline folder or a single-file checkpoint instead"
        )

    # --- TAESD (AutoencoderTiny) ----------------------------------------------------------------
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        part = (
            "encoder+decoder" if any(k.startswith("encoder.layers.") for k in keys) else "decoder"
        )
        base = "sdxl" if "xl" in name.lower() else None
        return result(
            "preview-decoder",
            base,
            f"TAESD tiny autoencoder ({part})",
            note="TAESD and TAESDXL have the same shapes; the family is a guess from the name",
        )

    # --- VAE ----------------------------------------------------------------------------------------
    vae_keys = {k.removeprefix("first_stage_model.").removeprefix("vae.") for k in keys}
    if "encoder.conv_in.weight" in vae_keys and "decoder.conv_out.weight" in vae_keys:
        latent = None
        q = tensors.get("quant_conv.weight") or tensors.get("first_stage_model.quant_conv.weight")
        if q is not None:
            latent = q.shape[0] // 2
        if latent not in (None, 4):
            raise BadInput(f"{name} is a VAE with {latent} latent channels (not SD 1.x/2.x/XL)")
        return result(
            "vae",
            None,
            "VAE (SD 1.x/2.x/SDXL latent space)",
            layout="diffusers"
            if "decoder.up_blocks.0.resnets.0.conv1.weight" in vae_keys
            else "original",
        )

    # --- spandrel: upscalers, LaMa and other image-to-image GANs ----------------------------------
    found = _spandrel_identify(tensors)
    if found is not None:
        arch, purpose, scale, extra = found
        if arch == "LaMa":
            return result("lama", None, "LaMa inpainting model", architecture=arch, **extra)
        if purpose in ("SR", "Restoration", "FaceSR"):
            if scale is None:
                what = f"{arch} upscaler (scale not known until loaded)"
            elif scale > 1:
                what = f"{arch} upscaler x{scale}"
            else:
                what = f"{arch} {purpose.lower()} model (1x)"
            return result(
                "upscaler", None, what, architecture=arch, scale=scale, purpose=purpose, **extra
            )
        raise BadInput(f"{name} is a {arch} model ({purpose}); Studio has no use for it yet")

    sample = ", ".join(keys[:3])
    raise BadInput(
        f"Could not identify {name}: not a Stable Diffusion checkpoint, ControlNet, LoRA, "
        f"embedding, VAE, TAESD, OpenPose, upscaler or LaMa model ({len(keys)} tensors, e.g. {sample})"
    )


identify_file = identify  # the name studio.engine.models offers (see its docstring)

# Keys of the other components in a full flow checkpoint (ComfyUI / Stability layouts).
_FULL_PREFIXES = ("first_stage_model.", "vae.", "text_encoders.", "cond_stage_model.")


def flow_file(tensors: dict[str, TensorInfo], name: str) -> tuple | None:
    """(kind, base, description, details...) of a flow-family file by the family descriptors'
    ``match_file`` (the same test the engine loads it by), else None."""
    from studio.engine.diffusion.families.base import TensorProbe
    from studio.engine.diffusion.families.registry import families

    probe = TensorProbe({k: tuple(v.shape) for k, v in tensors.items()}, None, "", name)
    for fam in families():
        if fam.prediction != "flow":
            continue
        config = fam.match_file(probe)
        if config is None:
            continue
        full = probe.has_prefix(*_FULL_PREFIXES)
        kind = "txt2img" if fam.supports("txt2img") or fam.supports("img2img") else "inpaint"
        what = "checkpoint" if full else "transformer"
        need = "" if full else (
            f"; text encoders and VAE come from {fam.single_file_configs.get(config, config)}"
        )  # fmt: skip
        details = {"config": config, "transformer_only": not full}
        return (kind, fam.name, f"{fam.label} {what} ({config}){need}", details)
    return None


def _sd_file(tensors: dict[str, TensorInfo], name: str):
    """The family of a single-file UNet checkpoint by the descriptors' ``match_file`` (the
    test the engine loads it by)."""
    from studio.engine.diffusion.families.base import TensorProbe
    from studio.engine.diffusion.families.registry import recognise_file

    probe = TensorProbe({k: tuple(v.shape) for k, v in tensors.items()}, None, "", name)
    try:
        return recognise_file(probe).family
    except StudioError as e:
        raise BadInput(f"Could not identify {name}: {e.message}") from e


def _family(base: str | None) -> str:
    """The label of base family ``base`` ("SD 1.x", "SDXL", ...)."""
    from studio.engine.diffusion.families.registry import family

    return family(base).label if base else "an unknown base"


_CONDITIONS = {
    "canny": "canny",
    "openpose": "openpose",
    "pose": "openpose",
    "scribble": "scribble",
    "inpaint": "inpaint",
    "depth": "depth",
    "lineart": "lineart",
    "softedge": "softedge",
    "hed": "softedge",
    "mlsd": "mlsd",
    "normal": "normal",
    "seg": "seg",
    "tile": "tile",
    "shuffle": "shuffle",
}


def guess_condition(filename: str) -> str | None:
    """A ControlNet's weights don't say what it was trained on; its file name usually does."""
    tokens = re.split(r"[^a-z0-9]+", filename.lower())
    for token in tokens:
        if token in _CONDITIONS:
            return _CONDITIONS[token]
    return None


def _spandrel_identify(
    tensors: dict[str, TensorInfo],
) -> tuple[str, str, int | None, dict[str, Any]] | None:
    """Run spandrel's architecture detection on meta tensors of the right shapes (no weights
    are read or allocated). Returns (arch id, purpose, scale, extra) or None."""
    import torch
    from spandrel import MAIN_REGISTRY
    from spandrel.__helpers.canonicalize import canonicalize_state_dict

    dtypes = {
        "f32": torch.float32,
        "f16": torch.float16,
        "bf16": torch.bfloat16,
        "float": torch.float32,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
        "i64": torch.int64,
        "long": torch.int64,
    }
    state = {
        k: torch.empty(v.shape, dtype=dtypes.get(v.dtype.lower(), torch.float32), device="meta")
        for k, v in tensors.items()
    }
    state = canonicalize_state_dict(state)
    for support in MAIN_REGISTRY.architectures("detection"):
        try:
            hit = support.detect(state)
        except Exception:  # noqa: BLE001 - a detector tripping on odd shapes is a "no"
            hit = False
        if not hit:
            continue
        arch_id = str(support.architecture.id)
        try:
            with torch.device("meta"):
                desc = support.architecture.load(state)
        except Exception:  # noqa: BLE001 - detected but not loadable from shapes alone
            return arch_id, "SR", None, {"note": "architecture detected; details unknown"}
        extra = {
            "input_channels": getattr(desc, "input_channels", None),
            "output_channels": getattr(desc, "output_channels", None),
            "tags": list(getattr(desc, "tags", []) or []),
        }
        return arch_id, str(getattr(desc, "purpose", "SR")), getattr(desc, "scale", None), extra
    return None
