"""The memory planner's sizes against an outside oracle (studio.engine.diffusion.shared.memory and
memory_models: MODEL_NEEDS, FAMILY_ROWS, needs_for, folder_sizes, the printed GiB figures).

The oracle never reads the planner's numbers. Each model's components are built on the
``meta`` device (no weights allocated) from the configs shipped in models/configs/<id>/
(diffusers ``from_config``; transformers ``CLIPTextConfig.from_pretrained``), or, where no
config is shipped, from the published config values typed in below and checked against the
model card's parameter count, or from the card's count alone. Parameters are counted here
(``sum(p.numel())``) and turned into bytes:

- bf16 / fp16: 2 bytes a parameter (fp32 4, fp8 1);
- fp8 (the planner's ``weights="fp8"``, diffusers' layerwise casting, what ``apply_plan``
  calls): the bytes the meta model holds after ``enable_layerwise_casting(float8_e4m3fn)``,
  i.e. diffusers itself decides which layers are stored in fp8 (its skip patterns keep the
  norms, which in FLUX.1 / SD 3.5 include the AdaLN modulation Linears, in bf16);
- nf4 (bitsandbytes 4-bit NormalFloat, what ``load_kwargs`` asks for): 0.5 byte a weight
  plus one fp32 absmax per 64-weight block (no double quantization): 0.5 + 4/64 = 0.5625
  bytes, for the ``nn.Linear`` weights the library replaces; every other parameter stays at
  2 bytes. Which Linears are replaced is the library's own rule, called here without
  bitsandbytes installed: transformers' ``HfQuantizer.get_modules_to_not_convert`` +
  ``should_convert_module`` for text encoders (keeps the output head, tied weights and the
  model's ``_keep_in_fp32_modules``, e.g. T5's ``wo``), diffusers' (only the model's
  ``_keep_in_fp32_modules``) for transformers.

Tolerances. bf16 sizes: 3 %. The published counts and the planner's GB figures are rounded to
2-3 significant digits (the VAE's 0.17 GB is 1.6 % off its 0.1674 GB), while decimal GB vs
GiB differ by 7.4 % (2**30 / 1e9), so a unit slip always fails. Quantized sizes are
estimates (a 3 % "stays bf16" share for norms, biases, embeddings where not set per row):
an under-estimate may be at most 3 % (it is what makes a plan run out of memory), an
over-estimate at most 10 % (it only costs a more cautious plan).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from studio.core.paths import configs_dir
from studio.engine.diffusion.shared import memory_models
from studio.engine.diffusion.shared.memory import GIB, MODEL_NEEDS, RESERVE_GIB, plan_memory
from studio.engine.diffusion.shared.memory_models import FAMILY_ROWS, needs_for

CONFIGS = configs_dir()
GB = 1e9
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "nf4": 0.5 + 4 / 64}
TOL = 0.03  # bf16 sizes, either way
UNDER, OVER = 0.03, 0.10  # quantized sizes: how far below / above the oracle the planner may be

# -- published parameter counts (model cards) ----------------------------------------------
# Checked here against the models built from the shipped / typed configs, so a wrong config
# value can't slip into the oracle.
CARD = {
    # openai/clip-vit-large-patch14 text tower (SD 1.5, SDXL, FLUX.1, SD 3.5): 123M
    "clip-l": 123.06e6,
    # OpenCLIP ViT-H/14 text tower, 23 layers as SD 2.x uses it: 340M
    "openclip-h": 340.4e6,
    # OpenCLIP ViT-bigG/14 text tower with projection (SDXL, SD 3.5): 695M
    "clip-g": 694.7e6,
    # google/t5-v1_1-xxl encoder (FLUX.1 text_encoder_2, SD 3.5 text_encoder_3): 4.76B
    "t5-xxl": 4.76e9,
    # Qwen/Qwen2.5-VL-7B-Instruct (Qwen-Image's text encoder): 8.29B
    "qwen2.5-vl-7b": 8.29e9,
    # Qwen/Qwen3-4B (Z-Image, FLUX.2 klein 4B): 4.0B ("4.02B" on the Hub)
    "qwen3-4b": 4.02e9,
    # Qwen/Qwen3-8B (FLUX.2 klein 9B): "Number of Parameters: 8.2B"
    "qwen3-8b": 8.19e9,
    # denoisers
    "sd15-unet": 859.52e6,  # SD 1.5 UNet 859.5M
    "sd21-unet": 865.91e6,  # SD 2.x UNet 865.9M
    "sdxl-unet": 2.567e9,  # SDXL base UNet 2.567B
    "flux1": 11.9e9,  # FLUX.1 [dev]/[schnell] "12B" (11.90B / 11.89B on the Hub)
    "sd35-large": 8.06e9,  # SD 3.5 Large "8.1B"
    "sd35-medium": 2.5e9,  # SD 3.5 Medium "2.5 billion parameters" (no config shipped)
    "qwen-image": 20.43e9,  # Qwen-Image "20B MMDiT" (20.43B on the Hub)
    "z-image": 6.15e9,  # Z-Image(-Turbo) "6B", 6.15B on the Hub
    "chroma": 8.9e9,  # Chroma1-HD "8.9B parameter model" (lodestones/Chroma1-HD card)
    # Qwen-Image 2.1 (shared/MODELS.md): DiT 14.2 GB and Qwen3-VL-8B encoder 17.5 GB in bf16,
    # the VAE 1.35 GB in fp32
    "qwen-image-2-1": 14.2e9 / 2,
    "qwen3-vl-8b": 17.5e9 / 2,
    "vae-qwen21": 1.35e9 / 4,
    # VAEs
    "vae-sd": 83.65e6,  # SD 1.x/2.x/SDXL AutoencoderKL 83.7M
    "vae-16ch": 83.8e6,  # FLUX.1 / SD 3.5 / Z-Image 16-channel VAE (ae.safetensors 335 MB fp32)
    "vae-qwen": 127e6,  # Qwen-Image VAE, 254 MB in bf16 (shared/MODELS.md)
}
# FLUX.2 klein: the cards give one significant digit ("4B", "9B"): only a sanity bound.
KLEIN = {"flux2-klein-4b": 4e9, "flux2-klein-9b": 9e9}


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta(build):
    with torch.device("meta"):
        model = build()
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing allocated
    return model


# -- the components, built on meta ---------------------------------------------------------


def _diffusers(folder: str, sub: str):
    import diffusers

    cfg = json.loads((CONFIGS / folder / sub / "config.json").read_text())
    return _meta(lambda: getattr(diffusers, cfg["_class_name"]).from_config(cfg))


def _chroma():
    # No config shipped; diffusers' ChromaTransformer2DModel defaults are Chroma1-HD's (19
    # double + 38 single blocks, approximator 64 / 5120 / 5; the card's 8.9B below).
    import diffusers

    return _meta(diffusers.ChromaTransformer2DModel)


def _z_image():
    # No config shipped; diffusers' ZImageTransformer2DModel defaults are Z-Image's (dim
    # 3840, 30 layers + 2+2 refiners, checked against the card's 6.15B below).
    import diffusers

    return _meta(diffusers.ZImageTransformer2DModel)


def _clip(folder: str, sub: str, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig.from_pretrained(CONFIGS / folder / sub)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return _meta(lambda: cls(cfg))


def _t5_xxl():
    # google/t5-v1_1-xxl config.json (FLUX.1 text_encoder_2 / SD 3.5 text_encoder_3)
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
        feed_forward_proj="gated-gelu",
    )  # fmt: skip
    return _meta(lambda: T5EncoderModel(cfg))


def _qwen3(hidden: int, ffn: int, tied: bool):
    # Qwen/Qwen3-4B (hidden 2560, ffn 9728, tied) and Qwen/Qwen3-8B (4096, 12288) config.json
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=tied,
    )  # fmt: skip
    return _meta(lambda: Qwen3ForCausalLM(cfg))


def _qwen25_vl_7b():
    # Qwen/Qwen2.5-VL-7B-Instruct config.json (Qwen-Image's text_encoder class)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
            out_hidden_size=3584, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112, fullatt_block_indexes=[7, 15, 23, 31], in_chans=3,
        ),
        vocab_size=152064, tie_word_embeddings=False,
    )  # fmt: skip
    return _meta(lambda: Qwen2_5_VLForConditionalGeneration(cfg))


def _qwen3_vl_8b():
    # Qwen/Qwen3-VL-8B-Instruct config.json (Qwen-Image 2.1's text_encoder class)
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    cfg = Qwen3VLConfig(
        text_config=dict(
            hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, head_dim=128,
            num_attention_heads=32, num_key_value_heads=8, vocab_size=151936,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
            out_hidden_size=4096, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
            num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
        ),
        tie_word_embeddings=False,
    )  # fmt: skip
    return _meta(lambda: Qwen3VLForConditionalGeneration(cfg))


def _vae(kind: str):
    import diffusers

    if kind == "flux2":  # class defaults: FLUX.2's 32-channel VAE
        return _meta(diffusers.AutoencoderKLFlux2)
    if kind == "qwen":  # class defaults: Qwen-Image's (Wan 2.1) VAE
        return _meta(diffusers.AutoencoderKLQwenImage)
    return _diffusers(kind, "vae")


BUILD = {
    "sd15-unet": lambda: _diffusers("sd15", "unet"),
    "sd21-unet": lambda: _diffusers("sd21", "unet"),
    "sdxl-unet": lambda: _diffusers("sdxl", "unet"),
    "flux1-dev": lambda: _diffusers("flux1-dev", "transformer"),
    "flux1-schnell": lambda: _diffusers("flux1-schnell", "transformer"),
    "sd35-large": lambda: _diffusers("sd35-large", "transformer"),
    "qwen-image": lambda: _diffusers("qwen-image", "transformer"),
    "z-image": _z_image,
    "chroma": _chroma,
    "clip-l": lambda: _clip("sd15", "text_encoder"),
    "clip-l-proj": lambda: _clip("sd15", "text_encoder", projection=True),  # SD 3.5's
    "openclip-h": lambda: _clip("sd21", "text_encoder"),
    "clip-g": lambda: _clip("sdxl", "text_encoder_2", projection=True),
    "t5-xxl": _t5_xxl,
    "qwen3-4b": lambda: _qwen3(2560, 9728, tied=True),
    "qwen3-8b": lambda: _qwen3(4096, 12288, tied=False),
    "qwen2.5-vl-7b": _qwen25_vl_7b,
    "qwen3-vl-8b": _qwen3_vl_8b,
    "vae-sd": lambda: _vae("sd15"),
    "vae-flux2": lambda: _vae("flux2"),
    "vae-qwen": lambda: _vae("qwen"),
}
# Which card count checks which build.
CARD_OF = {
    "sd15-unet": "sd15-unet", "sd21-unet": "sd21-unet", "sdxl-unet": "sdxl-unet",
    "flux1-dev": "flux1", "flux1-schnell": "flux1", "sd35-large": "sd35-large",
    "qwen-image": "qwen-image", "z-image": "z-image", "clip-l": "clip-l", "clip-l-proj": "clip-l",
    "openclip-h": "openclip-h", "clip-g": "clip-g", "t5-xxl": "t5-xxl", "qwen3-4b": "qwen3-4b",
    "qwen3-8b": "qwen3-8b", "qwen2.5-vl-7b": "qwen2.5-vl-7b", "vae-sd": "vae-sd", "qwen3-vl-8b": "qwen3-vl-8b",
    "vae-flux2": "vae-16ch", "vae-qwen": "vae-qwen", "chroma": "chroma",
}  # fmt: skip


@functools.cache
def built(name: str):
    return BUILD[name]()


@functools.cache
def params(name: str) -> float:
    """Parameter count of a component: built on meta, or the card's figure."""
    return float(_count(built(name))) if name in BUILD else CARD[name]


# planner row -> (denoiser, text encoders, VAE), each a BUILD or CARD name
ROWS = {
    "sd15": ("sd15-unet", ("clip-l",), "vae-sd"),
    "sd21": ("sd21-unet", ("openclip-h",), "vae-sd"),
    "sdxl": ("sdxl-unet", ("clip-l", "clip-g"), "vae-sd"),
    "flux1-dev": ("flux1-dev", ("clip-l", "t5-xxl"), "vae-16ch"),
    "flux1-schnell": ("flux1-schnell", ("clip-l", "t5-xxl"), "vae-16ch"),
    "sd35-large": ("sd35-large", ("clip-l-proj", "clip-g", "t5-xxl"), "vae-16ch"),
    "sd35-medium": ("sd35-medium", ("clip-l-proj", "clip-g", "t5-xxl"), "vae-16ch"),
    "qwen-image": ("qwen-image", ("qwen2.5-vl-7b",), "vae-qwen"),
    "z-image-turbo": ("z-image", ("qwen3-4b",), "vae-16ch"),
    "z-image": ("z-image", ("qwen3-4b",), "vae-16ch"),  # Base: Turbo's DiT before distillation
    "chroma1-hd": ("chroma", ("t5-xxl",), "vae-16ch"),
    "qwen-image-2-1": ("qwen-image-2-1", ("qwen3-vl-8b",), "vae-qwen21"),
    "flux2-klein-4b": (None, ("qwen3-4b",), "vae-flux2"),
    "flux2-klein-9b": (None, ("qwen3-8b",), "vae-flux2"),
}
# Variants: the same weights as their base model.
ALIASES = {
    "flux1-fill": "flux1-dev",
    "flux1-kontext": "flux1-dev",
    "sd35-large-turbo": "sd35-large",
    "qwen-image-edit": "qwen-image",
}
FLOW_SHIPPED = ("flux1-dev", "flux1-schnell", "sd35-large", "qwen-image", "z-image-turbo")


def _base(key: str) -> str:
    return ALIASES.get(key, key)


def oracle_bytes(key: str, fmt: str = "bf16") -> SimpleNamespace:
    """(denoiser, text encoders, VAE) bytes of a planner row in ``fmt`` (bf16/fp16 here)."""
    den, tes, vae = ROWS[_base(key)]
    b = BYTES[fmt]
    return SimpleNamespace(
        transformer=params(den) * b if den else None,
        text=sum(params(t) for t in tes) * b,
        vae=params(vae) * b,
    )


def _close(got: float, want: float, tol: float = TOL) -> bool:
    return abs(got - want) / want <= tol


def _quant_ok(planned: float, oracle: float) -> bool:
    return oracle * (1 - UNDER) <= planned <= oracle * (1 + OVER)


def _isolated_gib(needs, part: str, weights: str = "bf16", text: str = "bf16") -> float:
    """The planner's GiB for one component in a format: the weights a model-offload plan
    holds in RAM, for a copy of the row with the other components zeroed."""
    keep = {"transformer": "transformer_gb", "text": "text_encoder_gb", "vae": "vae_gb"}[part]
    zeroed = {f: 0.0 for f in ("transformer_gb", "text_encoder_gb", "vae_gb") if f != keep}
    row = replace(needs, **zeroed)
    plan = plan_memory(row, 10_000, offload="model", weights=weights, text_weights=text)
    return plan.ram_gib


# -- the oracle itself: built models vs the cards -----------------------------------------


@pytest.mark.parametrize("name", sorted(BUILD))
def test_built_components_match_the_model_cards(name):
    n = params(name)
    card = CARD[CARD_OF[name]]
    # Cards give 3-4 significant digits (0.5 %); CLIP-L with SD 3.5's projection adds 0.5M.
    assert abs(n - card) / card < 0.006, f"{name}: {n:,.0f} parameters vs the card's {card:,.0f}"


# -- bf16 sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(MODEL_NEEDS))
def test_row_sizes_are_the_components_in_bf16_decimal_gb(key):
    row = MODEL_NEEDS[key]
    want = oracle_bytes(key)
    got = SimpleNamespace(transformer=row.transformer_gb, text=row.text_encoder_gb, vae=row.vae_gb)
    for part in ("transformer", "text", "vae"):
        w = getattr(want, part)
        if w is None:  # FLUX.2 klein's transformer: the card's one-digit figure only
            n = getattr(got, part) * GB / 2
            assert abs(n - KLEIN[key]) / KLEIN[key] < 0.125, f"{key}: {n:,.0f} parameters"
            continue
        g = getattr(got, part) * GB
        assert _close(g, w), f"{key} {part}: planner {g / GB:.3f} GB, oracle {w / GB:.3f} GB"


@pytest.mark.parametrize("family", sorted(FAMILY_ROWS))
def test_family_rows_and_hints_give_rows_of_the_right_size(family):
    """FAMILY_ROWS / needs_for: a family name (and each of its hints) reaches a row whose
    sizes are its model's (a row of the wrong model would be off by far more than 3 %)."""
    rows = FAMILY_ROWS[family]
    for hint, key in ((None, rows.default), *rows.hints):
        needs = needs_for(family, hint)
        want = oracle_bytes(key)
        assert _close(needs.text_encoder_gb * GB, want.text), (family, hint)
        if want.transformer is not None:
            assert _close(needs.transformer_gb * GB, want.transformer), (family, hint)


@pytest.mark.parametrize("key", sorted(ROWS))
def test_planned_memory_is_gib_of_the_oracle_bytes(key):
    """The planner's figures are labelled GiB: its RAM figure for a bf16 model-offload plan
    is the oracle's bytes / 2**30 (not / 1e9), and the printed numbers are those figures."""
    row = MODEL_NEEDS[key]
    want = oracle_bytes(key)
    t = want.transformer if want.transformer is not None else row.transformer_gb * GB
    total = t + want.text + want.vae
    plan = plan_memory(key, 10_000, offload="model", weights="bf16", text_weights="bf16")
    assert _close(plan.ram_gib, total / GIB), (plan.ram_gib, total / GIB)
    assert not _close(plan.ram_gib, total / GB), "a decimal-GB figure labelled GiB"
    assert f"RAM {plan.ram_gib:.0f} GiB" in plan.describe()
    # All on the GPU: the printed peak is the weights in GiB plus the working memory.
    gpu = plan_memory(key, 10_000, offload="none", weights="bf16", text_weights="bf16")
    work_gib = max(row.work_gb, row.decode_gb) * GB / GIB  # the planner's own estimate
    printed = re.search(r"([\d.]+) GiB of ([\d.]+) GiB", gpu.summary())
    assert printed, gpu.summary()
    assert _close(float(printed.group(1)), total / GIB + work_gib, 0.03)
    assert not _close(float(printed.group(1)), total / GB + max(row.work_gb, row.decode_gb))
    assert float(printed.group(2)) == pytest.approx(10_000 - RESERVE_GIB, abs=0.05)


def test_catalog_download_sizes_are_the_rows_in_decimal_bytes():
    """models/catalog.toml's repo sizes (bytes) and the planner's rows (decimal GB) say the
    same; a part stored in fp32 is twice its bf16 size (Z-Image Turbo's transformer, Qwen-Image
    2.1's VAE: 1.35 GB in shared/MODELS.md)."""
    from studio.core.catalog import load_catalog

    fp32 = {"z-image-turbo": "transformer_gb", "qwen-image-2-1": "vae_gb"}
    seen = 0
    for entry in load_catalog():
        if entry.id not in MODEL_NEEDS or entry.repo is None:
            continue
        row = MODEL_NEEDS[entry.id]
        extra = getattr(row, fp32[entry.id]) if entry.id in fp32 else 0.0
        assert _close(entry.size, (row.total_gb + extra) * GB, 0.01), entry.id
        seen += 1
    assert seen >= 10


# -- quantized sizes ----------------------------------------------------------------------


@functools.cache
def fp8_bytes(key: str) -> int:
    """Bytes of the transformer after diffusers' layerwise casting to float8_e4m3fn (the call
    apply_plan makes), on a fresh meta model."""
    model = BUILD[ROWS[key][0]]().to(torch.bfloat16)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("key", FLOW_SHIPPED)
def test_fp8_transformer_size_matches_layerwise_casting(key):
    oracle = fp8_bytes(key)
    planned = _isolated_gib(MODEL_NEEDS[key], "transformer", weights="fp8") * GIB
    assert _quant_ok(planned, oracle), (
        f"{key}: planner {planned / GB:.2f} GB in fp8, diffusers keeps "
        f"{oracle / GB:.2f} GB ({oracle / (params(ROWS[key][0]) * 2):.1%} of bf16)"
    )


def _nf4_bytes(model, skip: list[str]) -> float:
    from transformers.quantizers.quantizers_utils import should_convert_module

    quantized = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if type(m) is torch.nn.Linear and should_convert_module(name, skip)
    )
    return quantized * BYTES["nf4"] + (_count(model) - quantized) * BYTES["bf16"]


@functools.cache
def nf4_text_bytes(name: str) -> float:
    """A text encoder in NF4 as transformers' bitsandbytes integration converts it."""
    from transformers.quantizers.base import HfQuantizer

    model = built(name)
    skip = HfQuantizer.get_modules_to_not_convert(model, None, model._keep_in_fp32_modules)
    return _nf4_bytes(model, skip)


@pytest.mark.parametrize("key", FLOW_SHIPPED)
def test_nf4_transformer_size(key):
    """diffusers' bitsandbytes quantizer replaces every nn.Linear but the model's
    _keep_in_fp32_modules (load_kwargs sets no skip list)."""
    model = built(ROWS[key][0])
    oracle = _nf4_bytes(model, list(getattr(model, "_keep_in_fp32_modules", None) or []))
    planned = _isolated_gib(MODEL_NEEDS[key], "transformer", weights="nf4") * GIB
    assert _quant_ok(planned, oracle), (key, planned / GB, oracle / GB)


NF4_TEXT = [k for k in ROWS if MODEL_NEEDS[k].quantizable]


@pytest.mark.parametrize("key", NF4_TEXT)
def test_nf4_text_encoder_size(key):
    """Text encoders in NF4 keep more in bf16 than a transformer: the token embedding (never
    a Linear), the output head of a causal LM (Qwen: 0.5-0.6B parameters each) and T5's
    ``wo`` layers (T5's _keep_in_fp32_modules: 1.0B of its 4.76B)."""
    oracle = sum(nf4_text_bytes(t) for t in ROWS[key][1])
    planned = _isolated_gib(MODEL_NEEDS[key], "text", weights="nf4", text="nf4") * GIB
    bf16 = oracle_bytes(key).text
    assert _quant_ok(planned, oracle), (
        f"{key}: planner {planned / GB:.2f} GB for the NF4 text encoders, transformers keeps "
        f"{oracle / GB:.2f} GB ({oracle / bf16:.1%} of bf16)"
    )


def _largest_text_tensor(key: str) -> int:
    return max(p.numel() for t in ROWS[key][1] for p in built(t).parameters())


@pytest.mark.parametrize("key", sorted(ROWS))
def test_largest_text_tensor_is_the_token_embedding_in_bf16(key):
    """te_layer_gb (what one offloaded text layer costs at least) is the encoders' largest
    tensor, the token embedding / output head, in bf16."""
    oracle = _largest_text_tensor(key) * BYTES["bf16"]
    assert _quant_ok(MODEL_NEEDS[key].te_layer_gb * GB, oracle), (key, oracle / GB)


@pytest.mark.parametrize("key", NF4_TEXT)
def test_sequential_nf4_peak_holds_the_unquantized_embedding(key):
    """Sequential offload moves one module at a time, and an nn.Embedding (or a Linear that
    transformers keeps out of NF4, the lm_head) moves whole in bf16: the plan's peak can't
    be below that tensor."""
    plan = plan_memory(
        key, 10_000, offload="sequential", weights="nf4", text_weights="nf4", pixels=64 * 64
    )
    tensor_gib = _largest_text_tensor(key) * BYTES["bf16"] / GIB
    assert plan.peak_gib >= tensor_gib * (1 - UNDER), (key, plan.peak_gib, tensor_gib)


# -- block counts from the configs --------------------------------------------------------


def test_block_counts_are_the_configs():
    flux = built("flux1-dev").config  # 19 double- + 38 single-stream blocks
    assert MODEL_NEEDS["flux1-dev"].blocks == flux.num_layers + flux.num_single_layers
    assert MODEL_NEEDS["sd35-large"].blocks == built("sd35-large").config.num_layers
    assert MODEL_NEEDS["qwen-image"].blocks == built("qwen-image").config.num_layers
    z = built("z-image").config
    assert MODEL_NEEDS["z-image-turbo"].blocks == z.n_layers + 2 * z.n_refiner_layers
    layers = {
        "clip-l": 12, "openclip-h": 23, "clip-g": 32, "t5-xxl": 24, "qwen3-4b": 36,
        "qwen2.5-vl-7b": 28,
    }  # fmt: skip
    for name, n in layers.items():
        c = built(name).config
        c = getattr(c, "text_config", c)
        assert (getattr(c, "num_hidden_layers", None) or c.num_layers) == n, name
    te = {"sd15": "clip-l", "sd21": "openclip-h", "sdxl": "clip-g", "flux1-dev": "t5-xxl"}
    te |= {"sd35-large": "t5-xxl", "qwen-image": "qwen2.5-vl-7b", "z-image-turbo": "qwen3-4b"}
    for key, name in te.items():
        assert MODEL_NEEDS[key].te_blocks == layers[name], key


# -- real folders and loaded pipelines ----------------------------------------------------


def test_folder_sizes_count_parameters_at_two_bytes(tmp_path):
    """folder_sizes reads the safetensors headers: parameters x 2 bytes in decimal GB, even
    for fp32 files (the pipeline is loaded in bf16), one variant per component."""
    from safetensors.torch import save_file

    shapes = {
        "transformer": {"a": (1000, 300), "b": (7,)},  # 300,007 parameters
        "text_encoder": {"e": (500, 100)},  # 50,000
        "text_encoder_2": {"f": (250, 4)},  # 1,000
        "vae": {"v": (33, 3)},  # 99
    }
    for sub, tensors in shapes.items():
        (tmp_path / sub).mkdir()
        data = {k: torch.zeros(s, dtype=torch.float32) for k, s in tensors.items()}
        save_file(data, str(tmp_path / sub / "diffusion_pytorch_model.safetensors"))
    # a second variant of the same weights must not be counted twice
    save_file(
        {"a": torch.zeros(1000, 300, dtype=torch.float16), "b": torch.zeros(7)},
        str(tmp_path / "transformer" / "diffusion_pytorch_model.fp16.safetensors"),
    )
    t, te, vae = memory_models.folder_sizes(tmp_path)
    assert t * GB == pytest.approx(300_007 * 2)
    assert te * GB == pytest.approx(51_000 * 2)
    assert vae * GB == pytest.approx(99 * 2)
    needs = needs_for("flux1", "flux1-schnell", tmp_path)
    assert (needs.transformer_gb, needs.text_encoder_gb, needs.vae_gb) == (t, te, vae)
    plan = plan_memory(needs, 100, offload="model", weights="bf16", text_weights="bf16")
    assert plan.ram_gib == pytest.approx((300_007 + 51_000 + 99) * 2 / GIB, abs=0.01)


def test_loaded_pipeline_sizes_are_bytes_as_loaded():
    """placement.pipeline_needs: the loaded modules' bytes (numel x element size) in decimal
    GB, so the plan's RAM figure is those bytes / 2**30."""
    from studio.engine.diffusion.shared import placement

    with torch.device("meta"):
        unet = torch.nn.Linear(4096, 4096 * 16, dtype=torch.float16)  # 268.5M parameters
        text = torch.nn.Embedding(49408, 768, dtype=torch.float32)
        vae = torch.nn.Conv2d(512, 512, 3, dtype=torch.float16)
    pipe = SimpleNamespace(unet=unet, text_encoder=text, vae=vae)
    family = SimpleNamespace(name="sd1", text_encoders=("text_encoder",), default_size=(512, 512))
    needs = placement.pipeline_needs(pipe, family, "x")
    want = {
        "transformer_gb": (4096 * 4096 * 16 + 4096 * 16) * 2,
        "text_encoder_gb": 49408 * 768 * 4,
        "vae_gb": (512 * 512 * 9 + 512) * 2,
    }
    for field, b in want.items():
        assert getattr(needs, field) * GB == pytest.approx(b), field
    plan = plan_memory(needs, 100, offload="model", formats=("bf16",))
    assert plan.ram_gib == pytest.approx(sum(want.values()) / GIB, abs=0.01)


def test_device_free_memory_is_reported_in_gib(monkeypatch):
    """The free memory the plans start from: bytes from the device / 2**30, as labelled."""
    from studio.engine.diffusion.shared import placement
    from studio.engine.jobs import device as jobs_device

    free, total = 12 * 10**9, 16 * 10**9  # a "16 GB" card with 12 GB free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (free, total))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev=None: 3 * 10**8)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev=None: 10**8)
    got = placement.free_memory_gib(torch.device("cuda"))
    assert got == pytest.approx((free + 2 * 10**8) / 2**30)

    monkeypatch.setattr(jobs_device, "free_bytes", lambda dev: (free, total))
    monkeypatch.setattr(
        jobs_device, "pick_device", lambda d=None: SimpleNamespace(device=torch.device("cuda"))
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Fake GPU")
    info = memory_models.device_memory()
    assert info["free_gib"] == pytest.approx(free / 2**30)  # 11.18, not 12
    assert info["total_gib"] == pytest.approx(total / 2**30)
    plan = memory_models.plan_for_family("sd1", info["free_gib"])
    line = memory_models.plan_line(plan)
    assert f"of {free / 2**30 - RESERVE_GIB:.1f} GiB" in line, line


# -- the card sizes where the placement changes -------------------------------------------

BOUNDARY_ROWS = ("sd15", "sd21", "sdxl", "flux1-dev", "sd35-large", "z-image-turbo")


@pytest.mark.parametrize("key", BOUNDARY_ROWS)
def test_all_on_the_gpu_from_the_card_that_holds_the_oracle_bytes(key):
    """Everything on the GPU needs the weights (the oracle's bytes in GiB) plus the larger of
    the step's and the decode's working memory (the row's estimates) and the reserve: a card
    4 % above that runs the model whole, one 4 % below does not."""
    row = MODEL_NEEDS[key]
    want = oracle_bytes(key)
    weights = (want.transformer + want.text + want.vae) / GIB
    need = weights + max(row.work_gb, row.decode_gb) * GB / GIB
    above = plan_memory(key, need * 1.04 + RESERVE_GIB, formats=("bf16",))
    assert (above.offload, above.vae_tiling, above.fits) == ("none", False, True)
    below = plan_memory(key, need * 0.96 + RESERVE_GIB, formats=("bf16",))
    assert (below.offload, below.vae_tiling) != ("none", False) and below.fits


@pytest.mark.parametrize("key", BOUNDARY_ROWS)
def test_model_offload_from_the_card_that_holds_the_largest_component(key):
    """Model offload keeps one component on the GPU at a time (diffusers'
    enable_model_cpu_offload): the denoiser (the largest part of each of these models) and
    its step's working memory. 4 % above that and below the whole model: model offload;
    4 % below: a finer offload."""
    row = MODEL_NEEDS[key]
    want = oracle_bytes(key)
    assert want.transformer > max(want.text, want.vae)
    need = want.transformer / GIB + row.work_gb * GB / GIB
    above = plan_memory(key, need * 1.04 + RESERVE_GIB, formats=("bf16",), ram_gib=256)
    assert (above.offload, above.weights, above.fits) == ("model", "bf16", True)
    below = plan_memory(key, need * 0.96 + RESERVE_GIB, formats=("bf16",), ram_gib=256)
    assert below.offload in ("group", "sequential") and below.fits
