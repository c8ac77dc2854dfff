"""The memory planner: how to run a model family on the card that is there.

From the free accelerator memory (and, optionally, the system RAM) and what a model needs
(transformer / text encoders / VAE weight sizes, per-step and decode working memory), pick

- where the weights live: ``none`` (everything on the GPU), ``model`` (diffusers'
  ``enable_model_cpu_offload``: one component on the GPU at a time), ``group``
  (diffusers' group offloading, block level with a prefetch stream: two blocks on the GPU at a
  time; a text encoder's blocks sit one or two levels down, ``T5EncoderModel.encoder.block``,
  ``CLIPTextModel.text_model.encoder.layers``, ``Qwen3ForCausalLM.model.layers``, so
  :func:`group_block_modules` names the way down for diffusers' ``block_modules``, otherwise
  each encoder would be one group) or ``sequential`` (``enable_sequential_cpu_offload``: one
  layer at a time, slowest);
- how the weights are stored: ``bf16`` (fp16 for the UNet families), ``fp8`` (diffusers'
  layerwise casting, weights in float8_e4m3fn upcast per layer; always available; torchao's
  float8 where installed), ``q8_0`` / ``q4_k`` (GGUF files through diffusers' GGUF loader,
  where the ``gguf`` package is installed) and ``nf4`` (bitsandbytes 4-bit NormalFloat,
  Dettmers et al. 2023, where installed; never with group offload: diffusers' group offload
  assigns ``tensor.data`` when it moves a group and leaves bitsandbytes' quantization state
  on the other device);
- whether the VAE decodes in tiles (only offered where tiling applies: diffusers tiles a
  decode only when a side exceeds the VAE's tile, ``ModelNeeds.vae_tile_px``).

The planner is pure arithmetic (no torch at import): every candidate gets a peak estimate
and a cost (a hand-set ranking of speed and quality loss: offload to the CPU costs time,
quantization costs quality), and the cheapest candidate whose peak fits the budget wins.
Sizes come from the models' own repos (shared/MODELS.md); working-memory figures are
estimates at the family's native resolution for one image, scaled with the pixel count of the
job (``plan_memory(size=...)``), and were not measured on a GPU here.

The runtime part (torch imported inside the functions): :func:`apply_plan` (fp8 layerwise
casting with LoRA adapters kept in the compute dtype, the offload, VAE tiling),
:func:`apply_group_offload`, :func:`offload_groups` and :func:`install_decode_fallback` (an
out-of-memory VAE decode is retried once in smaller tiles).

Units: GiB (2**30 bytes) for memory; model sizes are given in decimal GB as Hugging Face
shows them and converted.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from studio.engine.diffusion.families.base import _UNQUANTIZED_SHARE, ModelNeeds

GIB = 2**30
# CUDA context, cuBLAS workspace, allocator fragmentation: kept free on top of the estimate.
RESERVE_GIB = 0.8
# RAM the OS and Studio itself need besides the offloaded weights.
RAM_RESERVE_GIB = 4.0

OFFLOADS = ("none", "model", "group", "sequential")
WEIGHT_FORMATS = ("bf16", "fp8", "q8_0", "nf4", "q4_k")
# Text encoders: no fp8. Layerwise casting changes a transformers model's ``dtype`` (the
# pipelines take their latent dtype from ``text_encoder.dtype``) and T5 casts activations to
# its ``wo`` weight dtype; both break (found on the tiny FLUX.1). NF4 goes through
# transformers' bitsandbytes integration instead.
TEXT_FORMATS = ("bf16", "nf4")

# Bytes per weight relative to bf16 for the quantized part, and the share that stays in
# bf16 (norms, embeddings, biases) unless a row says otherwise (ModelNeeds.fp8_keep /
# te_keep). GGUF Q8_0 is 8.5 bits/weight, Q4_K ~4.5-4.8, NF4 4 bits plus one fp32 absmax per
# 64 weights (no double quantization: load_kwargs does not ask for it).
_FACTOR = {"bf16": 1.0, "fp8": 0.5, "q8_0": 8.5 / 16, "nf4": 4.5 / 16, "q4_k": 4.8 / 16}

# cost = speed and quality penalty; the cheapest candidate that fits wins.
_OFFLOAD_COST = {"none": 0.0, "model": 1.0, "group": 1.0, "sequential": 3.0}
_WEIGHT_COST = {"bf16": 0.0, "fp8": 1.5, "q8_0": 1.5, "nf4": 3.5, "q4_k": 3.5}
_TEXT_COST = {"bf16": 0.0, "nf4": 1.0}

# Which package provides a weight format (None: built into diffusers >= 0.33).
_BACKEND = {"bf16": None, "fp8": None, "q8_0": "gguf", "q4_k": "gguf", "nf4": "bitsandbytes"}


def _gib(gb: float) -> float:
    return gb * 1e9 / GIB


# The rows come from the family descriptors (``Family.memory``), in the registry's order: the
# base families' rows first, then their variants'.
def _rows() -> dict[str, ModelNeeds]:
    from studio.engine.diffusion.families.registry import families

    fams = sorted(families(), key=lambda f: f.base is not None)
    return {n.key: n for fam in fams for n in fam.memory}


MODEL_NEEDS: dict[str, ModelNeeds] = _rows()


def available_formats() -> frozenset[str]:
    """Weight formats this installation can load: bf16 and fp8 (diffusers' layerwise
    casting) always; GGUF with the ``gguf`` package; NF4 with ``bitsandbytes``."""
    out = {"bf16", "fp8"}
    for fmt, pkg in _BACKEND.items():
        if pkg is not None and importlib.util.find_spec(pkg) is not None:
            out.add(fmt)
    return frozenset(out)


def torchao_available() -> bool:
    """torchao installed: fp8 can use its float8 weight-only kernels instead of layerwise
    casting (needs a GPU with fp8 support, compute capability >= 8.9)."""
    return importlib.util.find_spec("torchao") is not None


@dataclass(frozen=True)
class Plan:
    """One way to run a model: where weights live, how they are stored, the estimated peak
    accelerator memory (GiB) against the budget, and the RAM the offloaded weights need."""

    needs: ModelNeeds
    offload: str
    weights: str
    text_weights: str
    vae_tiling: bool
    peak_gib: float
    budget_gib: float
    ram_gib: float
    ram_budget_gib: float | None
    cost: float
    forced: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        ram_ok = self.ram_budget_gib is None or self.ram_gib <= self.ram_budget_gib
        return self.peak_gib <= self.budget_gib and ram_ok

    @property
    def backend(self) -> str | None:
        """The package the weight format needs (None: diffusers alone)."""
        return _BACKEND[self.weights] or (
            _BACKEND[self.text_weights] if self.text_weights == "nf4" else None
        )

    def short(self) -> str:
        """e.g. ``model offload, fp8 / text nf4, 10.2 GiB``."""
        where = {"none": "GPU", "model": "model offload", "group": "group offload"}.get(
            self.offload, "sequential offload"
        )
        wt = (
            self.weights
            if self.text_weights == self.weights
            else f"{self.weights} / text {self.text_weights}"
        )
        if not self.needs.quantizable:
            wt = "fp16"
        tiled = ", tiled VAE" if self.vae_tiling else ""
        return f"{where}, {wt}{tiled}, {self.peak_gib:.1f} GiB"

    def summary(self) -> str:
        """e.g. ``model offload, fp8, 10.2 GiB of 11.2 GiB, fits`` (the UI's plan line)."""
        state = "fits" if self.fits else "does NOT fit"
        return f"{self.short()} of {self.budget_gib:.1f} GiB, {state}"

    def describe(self) -> str:
        """One line for the UI / ``studio info``: the plan and why."""
        state = "fits" if self.fits else "does NOT fit"
        ram = f", RAM {self.ram_gib:.0f} GiB" if self.offload != "none" else ""
        return f"{self.needs.label}: {self.short()} of {self.budget_gib:.1f} GiB ({state}{ram})" + (
            f"; {'; '.join(self.notes)}" if self.notes else ""
        )

    def pipeline_calls(self) -> list[str]:
        """The diffusers calls that realise the plan (what :func:`apply_plan` does)."""
        calls = []
        if self.weights == "fp8":
            calls.append(
                "transformer.enable_layerwise_casting(storage_dtype=float8_e4m3fn, compute_dtype=bfloat16)"
            )
            calls.append("<each cast layer>.compute_dtype = bfloat16  (LoRA adapters stay bf16)")
        elif self.weights in ("q8_0", "q4_k"):
            calls.append(
                f"Transformer.from_single_file(<{self.weights.upper()} .gguf>, config=<shipped>, "
                "quantization_config=GGUFQuantizationConfig(compute_dtype=bfloat16))"
            )
        elif self.weights == "nf4":
            calls.append(
                "Transformer.from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit), "
                "device_map={'': 'cuda'})" + (".to('cpu')" if self.offload != "none" else "")
            )
        if self.text_weights == "nf4":
            calls.append(
                "TextEncoder.from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit), "
                "device_map={'': 'cuda'})" + (".to('cpu')" if self.offload != "none" else "")
            )
        calls.append(
            {
                "none": "pipe.to('cuda')",
                "model": "pipe.enable_model_cpu_offload()",
                "group": "transformer/vae.enable_group_offload('cuda', offload_type='block_level', num_blocks_per_group=1, use_stream=True); "
                "text encoders: apply_group_offloading(<same>, block_modules=group_block_modules(<encoder>))",
                "sequential": "pipe.enable_sequential_cpu_offload()",
            }[self.offload]
        )
        if self.vae_tiling:
            calls.append("pipe.vae.enable_tiling()")
        return calls


def tiling_applies(n: ModelNeeds, side: int) -> bool:
    """Whether a VAE decode of an image whose longest side is ``side`` px is split into tiles
    once tiling is on: diffusers tiles only when a side exceeds the VAE's tile."""
    return int(side) > int(n.vae_tile_px)


def decode_gib(n: ModelNeeds, scale: float, tiling: bool, side: int | None = None) -> float:
    """Working memory (GiB) of the VAE decode of one image at ``scale`` x the native pixel
    count: the untiled figure scaled with the pixels, or, tiled where tiling applies
    (:func:`tiling_applies`), one tile's figure plus the full-size output being blended."""
    side = int(side if side is not None else n.native_px * math.sqrt(scale))
    untiled = _gib(n.decode_gb) * scale
    if not (tiling and tiling_applies(n, side)):
        return untiled
    tile = min(scale, (n.vae_tile_px / n.native_px) ** 2)
    pixels = scale * n.native_px**2
    return min(untiled, _gib(n.decode_gb) * tile + pixels * 3 * 4 * 2 / GIB)


def _weights_gib(n: ModelNeeds, weights: str, text: str) -> tuple[float, float, float]:
    """GiB of the transformer, the text encoders and the VAE in the plan's formats."""

    def size(gb: float, fmt: str, keep: float = _UNQUANTIZED_SHARE) -> float:
        return _gib(gb) * (keep + (1 - keep) * _FACTOR[fmt])

    t = size(n.transformer_gb, weights, n.fp8_keep if weights == "fp8" else _UNQUANTIZED_SHARE)
    return t, size(n.text_encoder_gb, text, n.te_keep), _gib(n.vae_gb)


def _estimate(
    n: ModelNeeds,
    offload: str,
    weights: str,
    text: str,
    scale: float,
    tiling: bool,
    side: int | None = None,
) -> tuple[float, float]:
    """(peak GiB on the accelerator, GiB of weights held in RAM) for one candidate; ``side``:
    the job's longest side in px (default: a square of ``scale`` x the native pixels)."""
    t, te, vae = _weights_gib(n, weights, text)
    # The token embedding is never quantized (NF4 replaces Linear layers only).
    te_layer = _gib(n.te_layer_gb)
    work = _gib(n.work_gb) * scale
    decode = decode_gib(n, scale, tiling, side)
    te_work = 0.3
    if offload == "none":
        peak = t + te + vae + max(work, decode)
        return peak, 0.0
    if offload == "model":
        peak = max(te + te_work, t + work, vae + decode)
    elif offload == "group":
        # Block-level groups with a prefetch stream: the resident non-block layers plus the
        # block running and the next one loading; for a text encoder too
        # (apply_group_offload splits its inner block list, see group_block_modules).
        t_res = t * (_UNQUANTIZED_SHARE + 2 / n.blocks)
        te_res = max(te * _UNQUANTIZED_SHARE, te_layer) + te * 2 / n.te_blocks
        peak = max(te_res + te_work, t_res + work, vae + decode)
    else:  # sequential: one leaf module at a time
        layer = max(0.1, te_layer)
        peak = max(layer + te_work, 0.1 + work, vae + decode)
    return peak, t + te + vae


def _cost(offload: str, weights: str, text: str, tiling: bool, streamed_gib: float) -> float:
    """Speed and quality penalty of a candidate. Group and sequential offload copy the
    weights over PCIe every step, so their cost grows with the bytes streamed (about 1 s per
    step for 20 GiB); model offload copies each component once per job."""
    per_step = {
        "none": 0.0,
        "model": 0.0,
        "group": streamed_gib / 8,
        "sequential": streamed_gib / 2,
    }
    return (
        _OFFLOAD_COST[offload]
        + per_step[offload]
        + _WEIGHT_COST[weights]
        + _TEXT_COST[text]
        + (0.2 if tiling else 0.0)
    )


# Why NF4 is never group-offloaded (the one line a forced combination is refused with).
NF4_GROUP_REASON = (
    "NF4 (bitsandbytes) weights can't be group-offloaded: diffusers' group offload moves each "
    "tensor's data and leaves bitsandbytes' quantization state behind; use model offload, or "
    "fp8 weights with group offload"
)


def combination_ok(offload: str, weights: str, text: str) -> bool:
    """Whether the offload mode can run the weight formats: no NF4 part under group offload
    (:data:`NF4_GROUP_REASON`)."""
    return not (offload == "group" and "nf4" in (weights, text))


def _candidates(n: ModelNeeds, formats: Iterable[str]) -> list[tuple[str, str, str]]:
    fmts = [f for f in WEIGHT_FORMATS if f in set(formats)]
    if not n.quantizable:
        fmts = ["bf16"]
    text_fmts = [f for f in TEXT_FORMATS if f in fmts] if n.quantizable else ["bf16"]
    return [(o, w, t) for o in OFFLOADS for w in fmts for t in text_fmts if combination_ok(o, w, t)]


def plan_memory(
    model: str | ModelNeeds,
    free_vram_gib: float,
    *,
    ram_gib: float | None = None,
    formats: Iterable[str] | None = None,
    pixels: int | None = None,
    offload: str | None = None,
    weights: str | None = None,
    text_weights: str | None = None,
    size: tuple[int, int] | None = None,
) -> Plan:
    """The cheapest plan whose estimated peak fits ``free_vram_gib`` minus a reserve (and whose
    offloaded weights fit ``ram_gib`` minus a reserve, when given).

    ``formats``: weight formats to consider (default :func:`available_formats`); ``pixels``:
    the generation size (default the model's native size squared); ``size``: (width, height)
    of the job, which also gives ``pixels`` and the longest side that decides whether VAE
    tiling applies (a tiled plan is only offered where it does). ``offload`` /
    ``weights`` / ``text_weights`` force a choice (the UI's and ``--quant``'s override): the
    best plan with it is returned even when it does not fit (``plan.fits`` is False and a
    note says so). When nothing fits, the plan with the smallest peak is returned, not fitting."""
    n = MODEL_NEEDS[model] if isinstance(model, str) else model
    for name, value, allowed in (
        ("offload", offload, OFFLOADS),
        ("weights", weights, WEIGHT_FORMATS),
        ("text_weights", text_weights, TEXT_FORMATS),
    ):
        if value is not None and value not in allowed:
            from studio.core.errors import BadInput

            raise BadInput(f"Unknown {name} {value!r} (use {', '.join(allowed)})")
    fmts = set(available_formats() if formats is None else formats)
    forced = any(v is not None for v in (offload, weights, text_weights))
    for v in (weights, text_weights):
        if v is not None:
            fmts.add(v)  # a forced format is considered even if its package is missing
    if offload == "group" and "nf4" in (weights, text_weights):
        from studio.core.errors import BadInput

        raise BadInput(f"{n.label}: {NF4_GROUP_REASON}")
    if size is not None:
        pixels = int(size[0]) * int(size[1])
        side = max(int(size[0]), int(size[1]))
    else:
        side = n.native_px if pixels is None else math.isqrt(int(pixels))
    scale = 1.0 if pixels is None else max(pixels / n.native_px**2, 0.05)
    budget = max(free_vram_gib - RESERVE_GIB, 0.0)
    ram_budget = None if ram_gib is None else max(ram_gib - RAM_RESERVE_GIB, 0.0)
    plans: list[Plan] = []
    for o, w, t in _candidates(n, fmts):
        if (
            (offload and o != offload)
            or (weights and w != weights)
            or (text_weights and t != text_weights)
        ):
            continue
        for tiling in (False, True) if tiling_applies(n, side) else (False,):
            peak, ram = _estimate(n, o, w, t, scale, tiling, side)
            cost = _cost(o, w, t, tiling, ram)
            notes = []
            pkg = _BACKEND[w] or (_BACKEND[t] if t == "nf4" else None)
            if pkg and importlib.util.find_spec(pkg) is None:
                notes.append(f"needs the {pkg} package")
            if w in ("q8_0", "q4_k"):
                notes.append(
                    f"needs a {w.upper()} GGUF file" + (f" ({n.gguf_repo})" if n.gguf_repo else "")
                )
            plans.append(
                Plan(
                    n,
                    o,
                    w,
                    t,
                    tiling,
                    round(peak, 2),
                    round(budget, 2),
                    round(ram, 2),
                    None if ram_budget is None else round(ram_budget, 2),
                    cost,
                    forced,
                    tuple(notes),
                )
            )
    if not plans:  # forced an impossible combination (e.g. fp8 on a UNet family)
        from studio.core.errors import BadInput

        raise BadInput(
            f"{n.label}: no plan with offload={offload}, weights={weights}, text={text_weights}"
        )
    fitting = [p for p in plans if p.fits]
    if fitting:
        return min(fitting, key=lambda p: (p.cost, p.peak_gib))
    best = min(plans, key=lambda p: (p.peak_gib, p.cost))
    why = (
        "over the VRAM budget"
        if best.peak_gib > best.budget_gib
        else "offloaded weights exceed the RAM"
    )
    return Plan(**{**best.__dict__, "notes": (*best.notes, why)})


def table_models() -> tuple[str, ...]:
    """The planner rows of every base family (variants share their base's weights), SD
    first: the models ``studio plan`` lists."""
    from studio.engine.diffusion.families.registry import families

    fams = [f for f in families() if f.base is None]
    fams.sort(key=lambda f: (f.prediction == "flow", f.priority))
    return tuple(n.key for f in fams for n in f.memory)


def render_table(
    models: Iterable[str] | None = None,
    cards_gib: Iterable[float] = (8, 12, 16, 24),
    *,
    ram_gib: float | None = 32,
    formats: Iterable[str] | None = tuple(WEIGHT_FORMATS),
) -> str:
    """The plans as a Markdown table: one row per model, one column per card size (free
    memory = the card size), each cell the plan's short form. ``formats`` defaults to every
    format (what is possible with the optional packages installed)."""
    cards = list(cards_gib)
    head = "| model | " + " | ".join(f"{c:g} GiB" for c in cards) + " |"
    rows = [head, "|" + "---|" * (len(cards) + 1)]
    for key in table_models() if models is None else models:
        cells = []
        for c in cards:
            p = plan_memory(key, c, ram_gib=ram_gib, formats=formats)
            cells.append(p.short() + ("" if p.fits else " (does not fit)"))
        rows.append(f"| {MODEL_NEEDS[key].label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def apply_plan(pipe, plan: Plan, device="cuda") -> None:
    """Realise the runtime part of ``plan`` on a loaded pipeline: fp8 layerwise casting of the
    transformer (or UNet) with later LoRA adapters kept in the compute dtype
    (:func:`keep_adapters_in_compute_dtype`), then offload (group offload through
    :func:`apply_group_offload`, which splits the text encoders too) or ``.to(device)``, then
    VAE tiling. Weight formats chosen at load time (GGUF, NF4) are the loader's part. On a CPU
    device offloading means nothing: the pipeline just moves there."""
    import torch

    dev = torch.device(device)
    fp8 = getattr(torch, "float8_e4m3fn", None)
    main = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if plan.weights == "fp8" and fp8 is not None and main is not None:
        # Compute in the dtype the pipeline was loaded in (bf16 on a GPU).
        main.enable_layerwise_casting(storage_dtype=fp8, compute_dtype=main.dtype)
        keep_adapters_in_compute_dtype(main)
    if dev.type == "cpu" or plan.offload == "none":
        pipe.to(dev)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=dev)
    elif plan.offload == "group":
        apply_group_offload(pipe, dev)
    else:
        pipe.enable_sequential_cpu_offload(device=dev)
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        (vae.enable_tiling if plan.vae_tiling else vae.disable_tiling)()


# -- the runtime pieces (torch and diffusers imported inside) ----------------------------------

# diffusers' hook names (diffusers.hooks.layerwise_casting / group_offloading)
_CASTING_HOOK = "layerwise_casting"
_GROUP_HOOK = "group_offloading"


def _hook(module, name: str):
    registry = getattr(module, "_diffusers_hook", None)
    return registry.get_hook(name) if registry is not None else None


def keep_adapters_in_compute_dtype(model) -> int:
    """Make LoRA adapters loaded *after* fp8 layerwise casting live in the compute dtype.

    diffusers skips PEFT layers when casting (``enable_layerwise_casting`` adds the LoRA
    layer names to its skip patterns), which covers adapters that exist at casting time; an
    adapter injected later gets its base layer's dtype from PEFT
    (``BaseTunerLayer._move_adapter_to_device_of_base_layer``), i.e. float8, and the first
    step fails ("mul_cpu_reduced_float" not implemented for Float8_e4m3fn on the CPU). PEFT
    reads a base layer's ``compute_dtype`` attribute first (bitsandbytes layers have one), so
    every cast layer gets its hook's compute dtype as ``compute_dtype``: new adapters are
    created, and their weights loaded, in bf16 and have no casting hook of their own.
    Returns how many layers were marked."""
    n = 0
    for module in model.modules():
        hook = _hook(module, _CASTING_HOOK)
        if hook is not None:
            module.compute_dtype = hook.compute_dtype
            n += 1
    return n


def group_block_modules(model, share: float = 0.05) -> list[str] | None:
    """diffusers ``block_modules`` for group-offloading ``model`` block by block when its
    blocks are not a direct child (transformers text encoders: ``T5EncoderModel.encoder.block``,
    ``CLIPTextModel.text_model.encoder.layers``, ``Qwen3ForCausalLM.model.layers``,
    ``Qwen2_5_VL...model.language_model.layers`` and ``.visual.blocks``); None when a direct
    child already is a block list (diffusers models, ``Qwen3Model``) or there is none.

    diffusers' block-level offload splits only a module's direct ``ModuleList`` /
    ``Sequential`` children and recurses into the children named in ``block_modules`` (the
    same names at every level). A block list is a list of 2+ modules holding at least
    ``share`` of the parameters of the largest such list. The names returned are every child
    of every level above a level that holds a block list, so those levels keep no group of
    their own. With a prefetch stream that matters: each level with a group of its own gets
    a lazy-prefetch hook, and nested ones register the same layer tracker twice (diffusers
    raises "Hook with name layer_execution_tracker already exists")."""
    import torch

    kinds = (torch.nn.ModuleList, torch.nn.Sequential)
    sizes: dict[int, int] = {}

    def count(m) -> int:
        if id(m) not in sizes:
            sizes[id(m)] = sum(p.numel() for p in m.parameters())
        return sizes[id(m)]

    lists = [m for m in model.modules() if isinstance(m, kinds) and len(m) > 1]
    if not lists:
        return None
    biggest = max(max(count(m) for m in lists), 1)
    names: set[str] = set()

    def holds(m) -> bool:
        return any(
            isinstance(c, kinds) and len(c) > 1 and count(c) >= share * biggest
            for c in m.children()
        )

    def visit(m) -> bool:
        if holds(m):
            return True
        below = [name for name, c in m.named_children() if visit(c)]
        if below:
            names.update(name for name, _ in m.named_children())
        return bool(below)

    if holds(model) or not visit(model):
        return None
    return sorted(names)


def apply_group_offload(pipe, device, *, use_stream: bool | None = None) -> None:
    """Block-level group offload of every component of ``pipe`` (one block on ``device`` at a
    time, the next one prefetched on a CUDA stream): diffusers models with their own
    ``enable_group_offload`` (their block lists, the VAE's ``_group_offload_block_modules``),
    other modules (the transformers text encoders) with ``apply_group_offloading`` and
    :func:`group_block_modules`, so an encoder is split into its layers rather than being one
    group. ``use_stream`` defaults to whether ``device`` is a CUDA device."""
    import torch
    from diffusers.hooks import apply_group_offloading

    dev = torch.device(device)
    stream = dev.type == "cuda" if use_stream is None else use_stream
    kwargs = dict(
        onload_device=dev,
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
        use_stream=stream,
    )
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        if hasattr(component, "enable_group_offload"):
            component.enable_group_offload(**kwargs)
        else:
            apply_group_offloading(
                component, block_modules=group_block_modules(component), **kwargs
            )


def offload_groups(module) -> list:
    """The distinct diffusers ``ModuleGroup`` objects group offloading installed in ``module``
    (one per block, plus the groups of the remaining layers)."""
    groups, seen = [], set()
    for m in module.modules():
        hook = _hook(m, _GROUP_HOOK)
        if hook is not None and id(hook.group) not in seen:
            seen.add(id(hook.group))
            groups.append(hook.group)
    return groups


def block_groups(module) -> int:
    """How many of ``module``'s offload groups are blocks of a block list (groups whose
    modules are entries of a ``ModuleList`` / ``Sequential``)."""
    import torch

    entries = {
        id(c)
        for m in module.modules()
        if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential))
        for c in m.children()
    }
    return sum(
        1 for g in offload_groups(module) if g.modules and all(id(m) in entries for m in g.modules)
    )


_TILE_ATTRS = (
    "use_tiling",
    "tile_sample_min_size",
    "tile_latent_min_size",
    "tile_sample_min_height",
    "tile_sample_min_width",
    "tile_sample_stride_height",
    "tile_sample_stride_width",
)


def _vae_factor(vae) -> int:
    blocks = getattr(vae.config, "block_out_channels", None)
    if blocks and hasattr(vae, "tile_latent_min_size"):
        return 2 ** (len(blocks) - 1)
    return 8


def smaller_tiles(vae, side: int, floor: int = 256) -> int:
    """Turn tiling on with tiles half the size of the current tile or of ``side`` (the
    image's longest side in px), whichever is smaller, and no smaller than ``floor`` px (or
    half the VAE's tile for a smaller VAE): diffusers only tiles above its tile size (the
    VAE's ``sample_size``, 1024 px for FLUX / SD 3.5), so plain ``enable_tiling`` would
    decode a 1024 px image in one piece. Returns the tile side."""
    vae.enable_tiling()
    if isinstance(getattr(vae, "tile_sample_min_size", None), int) and hasattr(
        vae, "tile_latent_min_size"
    ):
        cur = vae.tile_sample_min_size
        factor = max(1, cur // max(1, int(vae.tile_latent_min_size)))
        tile = max(min(cur, side) // 2, min(floor, cur // 2))
        if tile > factor * 8:
            tile -= tile % (factor * 8)  # whole latent pixels, in steps of 8
        vae.tile_sample_min_size, vae.tile_latent_min_size = tile, max(1, tile // factor)
        return tile
    if isinstance(getattr(vae, "tile_sample_min_height", None), int):
        cur = vae.tile_sample_min_height
        tile = max(min(cur, side) // 2, min(floor, cur // 2))
        vae.tile_sample_min_height = vae.tile_sample_min_width = tile
        if hasattr(vae, "tile_sample_stride_height"):
            vae.tile_sample_stride_height = vae.tile_sample_stride_width = tile * 3 // 4
        return tile
    return side


def install_decode_fallback(vae, plan: Plan | None = None) -> bool:
    """Wrap ``vae.decode`` (on the instance, so the pipelines' own final decode goes through
    it) with the out-of-memory fallback of the SD path (``sd.sampling.decode_fallback``): on an
    OOM the cache is freed and the decode runs once more in tiles smaller than the image
    (:func:`smaller_tiles`); a second OOM is raised. With ``plan``, each decode also decides
    tiling at its real size: where the plan's placement would not fit the budget untiled at
    this size but would tiled, the decode runs tiled. The VAE's tiling settings are restored
    after every call. Returns False when there is nothing to wrap (no tiling) or it is
    wrapped already."""
    if vae is None or not hasattr(vae, "enable_tiling") or "decode" in vars(vae):
        return False
    import logging

    import torch

    from studio.engine.jobs.device import is_oom

    log = logging.getLogger(__name__)
    factor = _vae_factor(vae)

    def inner(*args, **kwargs):  # the class's decode, looked up at each call
        return type(vae).decode(vae, *args, **kwargs)

    def decode(z, *args, **kwargs):
        state = {a: vars(vae)[a] for a in _TILE_ATTRS if a in vars(vae)}
        h, w = (int(d) * factor for d in z.shape[-2:])
        side = max(h, w)
        try:
            if plan is not None and not getattr(vae, "use_tiling", False):
                if tiled_decode_needed(plan, w, h):
                    vae.enable_tiling()  # the VAE's own tiles, as the planner counts them
            try:
                return inner(z, *args, **kwargs)
            except Exception as e:
                if not is_oom(e):
                    raise
            dev = z.device
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            tile = smaller_tiles(vae, side)
            log.warning(
                "Out of memory while decoding %dx%d; decoding again in %d px tiles", w, h, tile
            )
            return inner(z, *args, **kwargs)
        finally:
            for a, v in state.items():
                setattr(vae, a, v)

    decode.__wrapped__ = type(vae).decode
    vae.decode = decode
    return True


def tiled_decode_needed(plan: Plan, width: int, height: int) -> bool:
    """Whether the VAE decode at ``width`` x ``height`` needs tiles with ``plan``'s placement:
    the decode's own peak (the VAE and its working memory, plus the other weights where they
    stay on the GPU, ``offload="none"``) is over the plan's budget untiled, and tiling (where
    it applies) lowers it."""
    n = plan.needs
    side = max(width, height)
    if not tiling_applies(n, side):
        return False
    scale = max(width * height / n.native_px**2, 0.05)
    t, te, vae = _weights_gib(n, plan.weights, plan.text_weights)
    resident = vae + (t + te if plan.offload == "none" else 0.0)
    untiled = resident + decode_gib(n, scale, False, side)
    tiled = resident + decode_gib(n, scale, True, side)
    return untiled > plan.budget_gib and tiled < untiled


def load_kwargs(plan: Plan, components: Mapping[str, str] | None = None) -> dict:
    """``from_pretrained`` keyword arguments for load-time formats: NF4 through diffusers'
    ``PipelineQuantizationConfig`` (bitsandbytes) for the transformer and, when the plan says
    so, the text encoders. GGUF transformers are loaded separately (``from_single_file`` with
    a shipped config) and fp8 is applied after loading, so both give ``{}`` here. This is the
    one-call form (every NF4 part lands on the current GPU at once); Studio's flow loader
    loads each part itself with a ``device_map`` and, under offload, parks it on the CPU
    before the next one (``flow.load.load_nf4_parts``)."""
    comps = []
    if plan.weights == "nf4":
        comps.append("transformer")
    if plan.text_weights == "nf4":
        comps.extend((components or {}).get("text_encoders", "text_encoder").split(","))
    if not comps:
        return {}
    import torch
    from diffusers.quantizers import PipelineQuantizationConfig

    return {
        "quantization_config": PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit",
            quant_kwargs={
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_compute_dtype": torch.bfloat16,
            },
            components_to_quantize=comps,
        )
    }


# The per-model side (family rows, folder sizes, overrides, the device probe) is
# memory_models (which imports this module, never the other way round).
