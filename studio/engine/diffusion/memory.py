"""The memory planner: how to run a model family on the card that is there.

From the free accelerator memory (and, optionally, the system RAM) and what a model needs
(transformer / text encoders / VAE weight sizes, per-step and decode working memory), pick

- where the weights live: ``none`` (everything on the GPU), ``model`` (diffusers'
  ``enable_model_cpu_offload``: one component on the GPU at a time), ``group``
  (``enable_group_offload``, block level with a prefetch stream: two blocks on the GPU at a
  time) or ``sequential`` (``enable_sequential_cpu_offload``: one layer at a time, slowest);
- how the weights are stored: ``bf16`` (fp16 for the UNet families), ``fp8`` (diffusers'
  layerwise casting, weights in float8_e4m3fn upcast per layer; always available; torchao's
  float8 where installed), ``q8_0`` / ``q4_k`` (GGUF files through diffusers' GGUF loader,
  where the ``gguf`` package is installed) and ``nf4`` (bitsandbytes 4-bit NormalFloat,
  Dettmers et al. 2023, where installed);
- whether the VAE decodes in tiles.

The planner is pure arithmetic (no torch at import): every candidate gets a peak estimate
and a cost (a hand-set ranking of speed and quality loss: offload to the CPU costs time,
quantization costs quality), and the cheapest candidate whose peak fits the budget wins.
Sizes come from the models' own repos (shared/MODELS.md); working-memory figures are
estimates at the family's native resolution for one image, scaled with the pixel count, and
were not measured on a GPU here.

Units: GiB (2**30 bytes) for memory; model sizes are given in decimal GB as Hugging Face
shows them and converted.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
_UNQUANTIZED_SHARE = 0.03

# cost = speed and quality penalty; the cheapest candidate that fits wins.
_OFFLOAD_COST = {"none": 0.0, "model": 1.0, "group": 1.0, "sequential": 3.0}
_WEIGHT_COST = {"bf16": 0.0, "fp8": 1.5, "q8_0": 1.5, "nf4": 3.5, "q4_k": 3.5}
_TEXT_COST = {"bf16": 0.0, "nf4": 1.0}

# Which package provides a weight format (None: built into diffusers >= 0.33).
_BACKEND = {"bf16": None, "fp8": None, "q8_0": "gguf", "q4_k": "gguf", "nf4": "bitsandbytes"}


def _gib(gb: float) -> float:
    return gb * 1e9 / GIB


@dataclass(frozen=True)
class ModelNeeds:
    """What one model needs. Sizes in decimal GB at bf16/fp16 (as the repo lists them).

    ``work_gb``: activations of one denoising step at ``native_px`` (one image, the CFG batch
    included); ``decode_gb``: the untiled VAE decode at ``native_px``; ``blocks``: the
    transformer's (or UNet's) offloadable blocks; ``te_blocks``: the text encoder's layers;
    ``te_layer_gb``: its largest single tensor (the token embedding), which no format
    quantizes.

    ``fp8_keep``: the share of the transformer's bf16 bytes that diffusers' fp8 layerwise
    casting leaves in bf16: its skip patterns ("norm", "pos_embed") keep the AdaLN modulation
    Linears (``norm1.linear``, ``norm1_context.linear``, ``norm.linear``), 27 % of FLUX.1
    and 33 % of SD 3.5 Large. ``te_keep``: the share of the text encoders' bf16 bytes that
    NF4 (transformers' bitsandbytes integration) leaves in bf16: the token embedding, a
    causal LM's output head, and T5's ``wo`` layers (its ``_keep_in_fp32_modules``, 1.0B
    of T5-XXL's 4.76B). Measured on the real architectures built on the meta device
    (tests/engine/diffusion/test_memory_oracle.py)."""

    key: str
    label: str
    family: str
    transformer_gb: float
    text_encoder_gb: float
    vae_gb: float
    blocks: int
    te_blocks: int
    work_gb: float
    decode_gb: float
    native_px: int = 1024
    te_layer_gb: float = 0.3
    quantizable: bool = True
    gguf_repo: str | None = None
    note: str = ""
    fp8_keep: float = _UNQUANTIZED_SHARE
    te_keep: float = _UNQUANTIZED_SHARE

    @property
    def total_gb(self) -> float:
        return self.transformer_gb + self.text_encoder_gb + self.vae_gb


# Sizes: shared/MODELS.md (the repos' bf16 files). The UNet families are fp16.
MODEL_NEEDS: dict[str, ModelNeeds] = {
    n.key: n
    for n in (
        ModelNeeds("sd15", "SD 1.5", "sd1", 1.72, 0.25, 0.17, 8, 12, 0.8, 1.2, 512, 0.08, False),
        # SD 2.1: UNet 865.9M, OpenCLIP ViT-H/14 text tower 340.4M params (fp16).
        ModelNeeds("sd21", "SD 2.1", "sd2", 1.73, 0.68, 0.17, 8, 23, 1.0, 2.0, 768, 0.1, False),
        ModelNeeds("sdxl", "SDXL", "sdxl", 5.14, 1.64, 0.17, 7, 32, 1.5, 3.0, 1024, 0.13, False),
        ModelNeeds(
            "flux1-schnell",
            "FLUX.1 schnell",
            "flux1",
            23.8,
            9.75,
            0.17,
            57,
            24,
            2.0,
            3.0,
            te_layer_gb=0.27,
            gguf_repo="city96/FLUX.1-schnell-gguf",
            fp8_keep=0.28,
            te_keep=0.25,
        ),
        ModelNeeds(
            "flux1-dev",
            "FLUX.1 dev",
            "flux1",
            23.8,
            9.75,
            0.17,
            57,
            24,
            2.0,
            3.0,
            te_layer_gb=0.27,
            gguf_repo="city96/FLUX.1-dev-gguf",
            fp8_keep=0.28,
            te_keep=0.25,
        ),
        ModelNeeds(
            "flux2-klein-4b",
            "FLUX.2 klein 4B",
            "flux2",
            7.75,
            8.05,
            0.17,
            25,
            36,
            1.5,
            3.0,
            te_layer_gb=0.78,
            gguf_repo="unsloth/FLUX.2-klein-4B-GGUF",
            te_keep=0.10,
        ),
        ModelNeeds(
            "flux2-klein-9b",
            "FLUX.2 klein 9B",
            "flux2",
            18.2,
            16.4,
            0.17,
            32,
            36,
            1.8,
            3.0,
            te_layer_gb=1.24,
            te_keep=0.16,
        ),
        ModelNeeds(
            "z-image-turbo",
            "Z-Image Turbo",
            "zimage",
            12.3,
            8.05,
            0.17,
            34,
            36,
            1.5,
            3.0,
            te_layer_gb=0.78,
            gguf_repo="unsloth/Z-Image-Turbo-GGUF",
            te_keep=0.10,
        ),
        ModelNeeds(
            "sd35-medium",
            "SD 3.5 Medium",
            "sd3",
            5.1,
            11.1,
            0.17,
            24,
            24,
            2.0,
            3.0,
            te_layer_gb=0.27,
            gguf_repo="city96/stable-diffusion-3.5-medium-gguf",
            # the SD3 transformer's AdaLN layout with Medium's dual-attention blocks
            fp8_keep=0.35,
            te_keep=0.23,
        ),
        ModelNeeds(
            "sd35-large",
            "SD 3.5 Large",
            "sd3",
            16.3,
            11.1,
            0.17,
            38,
            24,
            2.5,
            3.0,
            te_layer_gb=0.27,
            gguf_repo="city96/stable-diffusion-3.5-large-gguf",
            fp8_keep=0.34,
            te_keep=0.23,
        ),
        ModelNeeds(
            "qwen-image",
            "Qwen-Image",
            "qwen",
            40.9,
            16.6,
            0.25,
            60,
            28,
            3.0,
            4.0,
            1328,
            te_layer_gb=1.09,
            gguf_repo="city96/Qwen-Image-gguf",
            te_keep=0.14,
        ),
    )
}
# Same weights as their base model.
for _alias, _label, _base in (
    ("flux1-fill", "FLUX.1 Fill", "flux1-dev"),
    ("flux1-kontext", "FLUX.1 Kontext", "flux1-dev"),
    ("sd35-large-turbo", "SD 3.5 Large Turbo", "sd35-large"),
    ("qwen-image-edit", "Qwen-Image-Edit", "qwen-image"),
):
    _b = MODEL_NEEDS[_base]
    MODEL_NEEDS[_alias] = ModelNeeds(**{**_b.__dict__, "key": _alias, "label": _label})


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
        elif self.weights in ("q8_0", "q4_k"):
            calls.append(
                f"Transformer.from_single_file(<{self.weights.upper()} .gguf>, config=<shipped>, "
                "quantization_config=GGUFQuantizationConfig(compute_dtype=bfloat16))"
            )
        elif self.weights == "nf4":
            calls.append(
                "from_pretrained(quantization_config=PipelineQuantizationConfig('bitsandbytes_4bit'))"
            )
        if self.text_weights == "nf4" and self.weights != "nf4":
            calls.append(
                "text_encoder from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit))"
            )
        calls.append(
            {
                "none": "pipe.to('cuda')",
                "model": "pipe.enable_model_cpu_offload()",
                "group": "pipe.enable_group_offload('cuda', offload_type='block_level', num_blocks_per_group=1, use_stream=True)",
                "sequential": "pipe.enable_sequential_cpu_offload()",
            }[self.offload]
        )
        if self.vae_tiling:
            calls.append("pipe.vae.enable_tiling()")
        return calls


def _estimate(
    n: ModelNeeds, offload: str, weights: str, text: str, scale: float, tiling: bool
) -> tuple[float, float]:
    """(peak GiB on the accelerator, GiB of weights held in RAM) for one candidate."""

    def size(gb: float, fmt: str, keep: float = _UNQUANTIZED_SHARE) -> float:
        return _gib(gb) * (keep + (1 - keep) * _FACTOR[fmt])

    t = size(n.transformer_gb, weights, n.fp8_keep if weights == "fp8" else _UNQUANTIZED_SHARE)
    te, vae = size(n.text_encoder_gb, text, n.te_keep), _gib(n.vae_gb)
    # The token embedding is never quantized (NF4 replaces Linear layers only).
    te_layer = _gib(n.te_layer_gb)
    work = _gib(n.work_gb) * scale
    decode = (min(_gib(n.decode_gb), 1.0) if tiling else _gib(n.decode_gb)) * scale
    te_work = 0.3
    if offload == "none":
        peak = t + te + vae + max(work, decode)
        return peak, 0.0
    if offload == "model":
        peak = max(te + te_work, t + work, vae + decode)
    elif offload == "group":
        # Block-level groups with a prefetch stream: the resident non-block layers plus the
        # block running and the next one loading.
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


def _candidates(n: ModelNeeds, formats: Iterable[str]) -> list[tuple[str, str, str]]:
    fmts = [f for f in WEIGHT_FORMATS if f in set(formats)]
    if not n.quantizable:
        fmts = ["bf16"]
    text_fmts = [f for f in TEXT_FORMATS if f in fmts] if n.quantizable else ["bf16"]
    return [(o, w, t) for o in OFFLOADS for w in fmts for t in text_fmts]


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
) -> Plan:
    """The cheapest plan whose estimated peak fits ``free_vram_gib`` minus a reserve (and whose
    offloaded weights fit ``ram_gib`` minus a reserve, when given).

    ``formats``: weight formats to consider (default :func:`available_formats`); ``pixels``:
    the generation size (default the model's native size squared). ``offload`` /
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
        for tiling in (False, True):
            peak, ram = _estimate(n, o, w, t, scale, tiling)
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
    why = "over the VRAM budget" if best.peak_gib > budget else "offloaded weights exceed the RAM"
    return Plan(**{**best.__dict__, "notes": (*best.notes, why)})


def render_table(
    models: Iterable[str] = (
        "sd15",
        "sdxl",
        "flux1-schnell",
        "flux1-dev",
        "flux2-klein-4b",
        "flux2-klein-9b",
        "z-image-turbo",
        "sd35-medium",
        "sd35-large",
        "qwen-image",
    ),
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
    for key in models:
        cells = []
        for c in cards:
            p = plan_memory(key, c, ram_gib=ram_gib, formats=formats)
            cells.append(p.short() + ("" if p.fits else " (does not fit)"))
        rows.append(f"| {MODEL_NEEDS[key].label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def apply_plan(pipe, plan: Plan, device="cuda") -> None:
    """Realise the runtime part of ``plan`` on a loaded pipeline: fp8 layerwise casting of the
    transformer (or UNet), then offload or ``.to(device)``, then VAE tiling. Weight
    formats chosen at load time (GGUF, NF4) are :func:`load_kwargs`' part. On a CPU device
    offloading means nothing: the pipeline just moves there."""
    import torch

    dev = torch.device(device)
    fp8 = getattr(torch, "float8_e4m3fn", None)
    main = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if plan.weights == "fp8" and fp8 is not None and main is not None:
        # Compute in the dtype the pipeline was loaded in (bf16 on a GPU).
        main.enable_layerwise_casting(storage_dtype=fp8, compute_dtype=main.dtype)
    if dev.type == "cpu" or plan.offload == "none":
        pipe.to(dev)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=dev)
    elif plan.offload == "group":
        pipe.enable_group_offload(
            onload_device=dev, offload_type="block_level", num_blocks_per_group=1, use_stream=True
        )
    else:
        pipe.enable_sequential_cpu_offload(device=dev)
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        (vae.enable_tiling if plan.vae_tiling else vae.disable_tiling)()


def load_kwargs(plan: Plan, components: Mapping[str, str] | None = None) -> dict:
    """``from_pretrained`` keyword arguments for load-time formats: NF4 through diffusers'
    ``PipelineQuantizationConfig`` (bitsandbytes) for the transformer and, when the plan says
    so, the text encoders. GGUF transformers are loaded separately (``from_single_file`` with
    a shipped config) and fp8 is applied after loading, so both give ``{}`` here."""
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
