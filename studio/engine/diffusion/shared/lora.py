"""LoRA files for a cached pipeline, shared by the SD/SDXL path (``sd.pipeline.apply_loras``) and
the flow families (``flow.generate.apply_loras``): which adapters are loaded and with which
weights (the entry's ``loras``/``lora_names``), fusing them into the weights for a job
(W <- W + w B A, Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") with
an exact restore afterwards, and removing everything after a failure.

Key styles diffusers does not convert itself are converted or refused here before the
pipeline is touched: FLUX.1 LoRAs in BFL/ComfyUI names with ``lora_A``/``lora_B``
(``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``) are renamed to the
``lora_down``/``lora_up`` names diffusers' ComfyUI path converts. LyCORIS LoHa (Hyeon-Woo et
al. 2022, FedPara) and LoKr (Yeh et al. 2023, LyCORIS) files in kohya names, which diffusers
loads for none of the UNet families, are merged into the SD/SDXL UNet and text-encoder
weights here (and restored exactly from a copy); elsewhere, and for the other LyCORIS
algorithms, they are refused with one line naming the format."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch

from studio.core.errors import BadInput, ModelError, short_error
from studio.engine.diffusion.families import Family
from studio.engine.diffusion.families.flux import TRANSFORMER_CLASS as FLUX1_TRANSFORMER

# LyCORIS algorithms by the tensor names that mark them (LyCORIS' documented key suffixes).
_LYCORIS = (
    ("LyCORIS LoHa", (".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b")),
    ("LyCORIS LoKr", (".lokr_w1", ".lokr_w2")),
    ("LyCORIS IA3", (".on_input",)),
    ("LyCORIS OFT", (".oft_blocks", ".oft_diag")),
    ("LyCORIS GLoRA", (".a1.weight", ".b1.weight")),
)


def key_style(keys) -> str:
    """The naming style of a LoRA file's tensor names, for messages and for the conversion."""
    keys = list(keys)
    for label, marks in _LYCORIS:
        if any(m in k for k in keys for m in marks):
            return label
    down = any(".lora_down." in k for k in keys)
    bfl = any(k.startswith("diffusion_model.") for k in keys)
    if bfl and not down and any(".lora_A." in k for k in keys):
        return "BFL/ComfyUI (diffusion_model.*.lora_A/lora_B)"
    if bfl:
        return "ComfyUI (diffusion_model.*.lora_down/lora_up)"
    if down:
        return "kohya (lora_down/lora_up)"
    if any(".lora_A." in k or ".lora.down." in k for k in keys):
        return "diffusers/PEFT (lora_A/lora_B)"
    return "unrecognised"


def _keys(path: str) -> list[str]:
    if not path.endswith(".safetensors"):
        return []
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as f:
            return list(f.keys())
    except Exception:  # noqa: BLE001 - not readable here: load_lora_weights reports it
        return []


def prepare(path: str, family: Family | None = None):
    """What to hand to ``load_lora_weights`` for the file at ``path``: the path itself when
    diffusers reads its key style, a converted state dict, or None for a LyCORIS file that
    ``merge_lycoris`` applies (the SD families: a UNet and CLIP encoders in kohya names).
    BadInput, before anything is loaded, for a format Studio cannot apply: BFL/ComfyUI key
    names fit only FLUX.1's transformer (``FLUX1_TRANSFORMER``)."""
    keys = _keys(path)
    style = key_style(keys) if keys else ""
    name = Path(path).name
    if style in _MERGED and family is not None and family.prediction != "flow":
        return None
    if style.startswith("LyCORIS"):
        raise BadInput(
            f"{name}: {style} files are not supported yet; use a LoRA (lora_down/lora_up or "
            "lora_A/lora_B) file"
        )
    if style.startswith("BFL/ComfyUI"):
        if family is not None and family.transformer_class != FLUX1_TRANSFORMER:
            raise BadInput(
                f"{name}: a FLUX.1 LoRA ({style} keys) does not fit {family.label} models"
            )
        from safetensors.torch import load_file

        # ComfyUI reads lora_A/lora_B as lora_down/lora_up; with these names diffusers'
        # FLUX loader maps the BFL blocks (fused qkv, linear1) to its split projections.
        state = load_file(path)
        return {
            k.replace(".lora_A.weight", ".lora_down.weight").replace(
                ".lora_B.weight", ".lora_up.weight"
            ): v
            for k, v in state.items()
        }
    return path


_MERGED = ("LyCORIS LoHa", "LyCORIS LoKr")
_COMPONENTS = (("unet", ("lora_unet_",)), ("text_encoder", ("lora_te_", "lora_te1_")),
               ("text_encoder_2", ("lora_te2_",)))  # fmt: skip


def lycoris_delta(t: dict, shape) -> torch.Tensor:
    """The weight delta of one LyCORIS module (its tensors without the module prefix), with
    its ``alpha / rank`` scale, in the weight's ``shape``. LoHa (Hyeon-Woo et al. 2022,
    FedPara, eq. 2): (w1a w1b) * (w2a w2b), scale alpha / rank(w1b). LoKr (Yeh et al. 2023,
    LyCORIS): w1 (x) w2 (Kronecker product), each factor full or a product a b, scale
    alpha / rank of a decomposed factor (1 when neither is). Plain LoRA modules in the same
    file: up down, scale alpha / rank (Hu et al. 2021)."""
    alpha = t.get("alpha")
    if "hada_t1" in t or "lokr_t2" in t:
        raise BadInput("Tucker-decomposed (hada_t1 / lokr_t2) LyCORIS modules")
    if "hada_w1_a" in t:
        m1 = t["hada_w1_a"].float() @ t["hada_w1_b"].float()
        m2 = t["hada_w2_a"].float() @ t["hada_w2_b"].float()
        rank, delta = t["hada_w1_b"].shape[0], m1 * m2
    elif "lokr_w1" in t or "lokr_w1_a" in t:
        rank = None
        w1 = t.get("lokr_w1")
        if w1 is None:
            rank, w1 = t["lokr_w1_b"].shape[0], t["lokr_w1_a"].float() @ t["lokr_w1_b"].float()
        w2 = t.get("lokr_w2")
        if w2 is None:
            rank, w2 = t["lokr_w2_b"].shape[0], t["lokr_w2_a"].float() @ t["lokr_w2_b"].float()
        w1, w2 = w1.float(), w2.float()
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        delta = torch.kron(w1, w2)
        if rank is None:
            alpha = None
    elif "lora_down.weight" in t:
        down, up = t["lora_down.weight"].float(), t["lora_up.weight"].float()
        rank, delta = down.shape[0], up.flatten(1) @ down.flatten(1)
    else:
        raise BadInput(f"LyCORIS module with tensors {sorted(t)}")
    scale = float(alpha) / rank if alpha is not None and rank else 1.0
    return (delta * scale).reshape(shape)


def _kohya_modules(pipe) -> dict:
    """kohya/A1111 module names (``lora_unet_`` + the diffusers path with ``_``) -> layer."""
    out = {}
    for comp, prefixes in _COMPONENTS:
        module = getattr(pipe, comp, None)
        if not isinstance(module, torch.nn.Module):
            continue
        for name, layer in module.named_modules():
            if ".lora_" in name or not isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                continue  # a PEFT adapter's own layers; its wrapped layer is ``base_layer``
            name = name.replace(".base_layer", "")
            for prefix in prefixes:
                out[prefix + name.replace(".", "_")] = layer
    return out


def merge_lycoris(pipe, path: str, weight: float, saved: list) -> None:
    """Add ``weight`` times the LyCORIS deltas of the file at ``path`` to the pipeline's
    weights, as A1111, Forge and ComfyUI apply them; the weights are copied into ``saved``
    first so they can be restored exactly. SDXL files in the original UNet's block names are
    renamed by diffusers' own mapping (``_maybe_map_sgm_blocks_to_diffusers``)."""
    from safetensors.torch import load_file

    state = load_file(path)
    groups: dict = {}
    for k, v in state.items():
        module, _, rest = k.partition(".")
        groups.setdefault(module, {})[rest] = v
    unet = getattr(pipe, "unet", None)
    names = {m: m for m in groups}
    if unet is not None and any(
        "_input_blocks_" in m or "_output_blocks_" in m or "_middle_block_" in m for m in groups
    ):
        from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers

        # Each name's position rides in its placeholder tensor: the mapping reorders keys.
        order = list(groups)
        marks = {f"{m}.lora_down.weight": torch.tensor([float(i)]) for i, m in enumerate(order)}
        mapped = _maybe_map_sgm_blocks_to_diffusers(dict(marks), unet.config)
        blocks = (("_input_blocks_", "_down_blocks_"), ("_middle_block_", "_mid_block_"),
                  ("_output_blocks_", "_up_blocks_"))  # fmt: skip
        for k, v in mapped.items():
            name = k.split(".")[0]
            for sgm, ours in blocks:
                name = name.replace(sgm, ours)
            names[order[int(v.item())]] = name
    layers = _kohya_modules(pipe)
    missing = [m for m in groups if names[m] not in layers]
    if missing:
        raise BadInput(f"no layer of this model is named {missing[0]}")
    seen = {id(p) for p, _ in saved}
    with torch.no_grad():
        for m, t in groups.items():
            param = layers[names[m]].weight
            delta = lycoris_delta(t, param.shape)
            if id(param) not in seen:
                seen.add(id(param))
                saved.append((param, param.detach().to("cpu", copy=True)))
            param.add_((weight * delta).to(param.device, param.dtype))


def adapter_name(i: int, path: str) -> str:
    return f"l{i}_" + re.sub(r"\W", "_", Path(path).stem)[:40]


def wanted_loras(loras) -> tuple:
    """``((resolved path, weight), ...)`` for LoraSpec-like objects; ModelError when a file
    is missing."""
    wanted = []
    for spec in loras:
        p = Path(spec.path).expanduser()
        if not p.is_file():
            raise ModelError(f"{spec.path}: LoRA file not found")
        wanted.append((str(p.resolve()), float(spec.weight)))
    return tuple(wanted)


def _present(pipe) -> set:
    try:
        listed = pipe.get_list_adapters()
    except Exception:  # noqa: BLE001 - no PEFT layer anywhere yet
        return set()
    return {n for names in listed.values() for n in names}


def base_weights(pipe) -> list:
    """``[(parameter, CPU copy)]`` of the weight and bias of every layer a LoRA wraps in the
    pipeline's modules: what fusing changes. A1111 and ComfyUI restore weights after a LoRA
    the same way (a backup of the patched weights), since W + w B A - w B A is W only to
    rounding."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    saved, seen = [], set()
    for module in getattr(pipe, "components", {}).values():
        if not isinstance(module, torch.nn.Module):
            continue
        for layer in module.modules():
            if not isinstance(layer, BaseTunerLayer):
                continue
            base = layer.get_base_layer()
            for param in (getattr(base, "weight", None), getattr(base, "bias", None)):
                if isinstance(param, torch.Tensor) and id(param) not in seen:
                    seen.add(id(param))
                    saved.append((param, param.detach().to("cpu", copy=True)))
    return saved


def restore_weights(saved: list) -> None:
    with torch.no_grad():
        for param, copy in saved:
            param.data.copy_(copy)


def _unfuse(pipe, entry) -> None:
    if getattr(entry, "fused", False):
        with contextlib.suppress(Exception):
            pipe.unfuse_lora()
    restore_weights(getattr(entry, "unfused_weights", []) or [])
    entry.fused = False
    entry.unfused_weights = []


def _clear(pipe, entry) -> None:
    """Back to the plain model: unfused, weights restored, every adapter removed."""
    _unfuse(pipe, entry)
    with contextlib.suppress(Exception):
        pipe.unload_lora_weights()
    entry.loras, entry.lora_names = (), ()


def apply(pipe, entry, loras, fuse: bool = False, family: Family | None = None) -> None:
    """Make the pipeline run with ``loras`` (LoraSpec-like: ``path``, ``weight``) and nothing
    else. ``entry`` keeps the ledger (``loras``: ((path, weight), ...) applied now,
    ``lora_names``, ``fused``, ``unfused_weights``). Unchanged LoRAs and weights cost nothing;
    other weights only re-weight (and re-fuse) the loaded adapters; other files unload the old
    adapters first. Files are checked before the pipeline is touched; a failure while loading
    returns the pipeline to the plain model and raises one ModelError naming the file."""
    wanted = wanted_loras(loras)
    fused = bool(getattr(entry, "fused", False))
    if wanted == entry.loras and fused == (fuse and bool(wanted)):
        return
    paths = tuple(p for p, _ in wanted)
    sources = (
        {} if paths == tuple(p for p, _ in entry.loras) else {p: prepare(p, family) for p in paths}
    )
    _unfuse(pipe, entry)
    path = ""
    try:
        if sources or not wanted:
            if entry.loras:
                pipe.unload_lora_weights()
                entry.loras, entry.lora_names = (), ()
            names = []
            for i, path in enumerate(paths):
                if sources[path] is None:
                    names.append("")
                    continue
                name = adapter_name(i, path)
                pipe.load_lora_weights(sources[path], adapter_name=name)
                if name not in _present(pipe):
                    style = key_style(_keys(path)) or "unreadable"
                    raise ModelError(
                        f"{Path(path).name}: no layer of this model matches the LoRA's keys "
                        f"({style}); is it for another model family?"
                    )
                names.append(name)
            entry.lora_names = tuple(names)
        peft = [(n, w) for n, (_, w) in zip(entry.lora_names, wanted, strict=True) if n]
        saved = base_weights(pipe) if fuse and peft else []
        entry.unfused_weights = saved
        for (path, w), n in zip(wanted, entry.lora_names, strict=True):
            if not n:
                merge_lycoris(pipe, path, w, saved)
        if peft:
            path = paths[0]
            pipe.set_adapters([n for n, _ in peft], adapter_weights=[w for _, w in peft])
            if fuse:
                pipe.fuse_lora(adapter_names=[n for n, _ in peft], lora_scale=1.0)
        entry.fused = bool(fuse and wanted)
    except Exception as e:  # noqa: BLE001
        _clear(pipe, entry)
        if isinstance(e, ModelError):
            raise
        if isinstance(e, BadInput):
            raise BadInput(f"{Path(path).name}: cannot apply ({e.message})") from e
        raise ModelError(
            f"{Path(path).name}: cannot apply LoRA to this model ({short_error(e)})", str(e)
        ) from e
    entry.loras = wanted


def prompt_loras(prompt: str, explicit=()) -> tuple[str, tuple]:
    """Resolve the ``<lora:name:weight>`` tags of ``prompt`` (A1111's extra-network syntax) by
    name through the model folders and imports (``studio.engine.models.find_lora``): (the
    prompt without the tags, ``explicit`` + one LoraSpec per tag whose file isn't already in
    ``explicit``). BadInput in one line for a name that isn't installed."""
    from studio.core.errors import BadInput
    from studio.core.prompt_syntax import extract_loras
    from studio.engine.jobs.requests import LoraSpec
    from studio.engine.models import find_lora

    clean, tags = extract_loras(prompt or "")
    if not tags:
        return prompt, tuple(explicit)
    specs = list(explicit)
    have = {str(Path(s.path).expanduser().resolve()) for s in specs}
    for tag in tags:
        path = find_lora(tag.name)
        if path is None:
            raise BadInput(
                f"LoRA {tag.name!r} (from <lora:{tag.name}:...> in the prompt) is not installed: "
                "put it in the models' loras folder or import it (studio models import FILE)"
            )
        key = str(Path(path).resolve())
        if key not in have:
            have.add(key)
            specs.append(LoraSpec(str(path), float(tag.weight)))
    return clean, tuple(specs)
