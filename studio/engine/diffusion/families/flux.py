"""FLUX.1 (Black Forest Labs 2024): a 12B rectified-flow transformer (double- then
single-stream blocks) on 2x2-packed 16-channel latents, CLIP-L pooled + T5-XXL text.
Velocity prediction (Lipman et al. 2023; Esser et al. 2024). Variants by what the folder or
file shows: schnell (timestep-distilled, no guidance embedding), dev (guidance-distilled:
the guidance scale is a model input), Fill (inpainting: the packed masked image and mask are
concatenated to the input, 384 input channels) and Kontext (edit by instruction; same
transformer shape as dev, told apart by its pipeline class or, for single files, the name)."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, TensorProbe
from studio.engine.diffusion.families.latent_factors import FLUX1_BIAS, FLUX1_RGB

TRANSFORMER_CLASS = "FluxTransformer2DModel"
# BFL/ComfyUI names (with or without "model.diffusion_model.") and diffusers names.
_BFL_KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
_DIFFUSERS_KEY = "single_transformer_blocks.0.attn.to_q.weight"


def _transformer(info: ModelInfo) -> dict:
    cfg = info.config("transformer")
    if (
        cfg.get("_class_name") == TRANSFORMER_CLASS
        or info.class_name.startswith("Flux")
        and not info.class_name.startswith("Flux2")
    ):
        return dict(cfg)
    return {}


def _is_fill(cfg) -> bool:
    return int(cfg.get("in_channels", 64)) > int(cfg.get("out_channels") or 64)


def _matches(info: ModelInfo) -> bool:
    cfg = _transformer(info)
    return bool(cfg) and "Kontext" not in info.class_name and not _is_fill(cfg)


def _matches_fill(info: ModelInfo) -> bool:
    cfg = _transformer(info)
    return bool(cfg) and _is_fill(cfg)


def _matches_kontext(info: ModelInfo) -> bool:
    return bool(_transformer(info)) and "Kontext" in info.class_name


def file_variant(probe: TensorProbe) -> str | None:
    """ "schnell" | "dev" | "fill" | "kontext" for a FLUX.1 transformer or full checkpoint
    (the keys diffusers' ``infer_diffusers_model_type`` uses), else None."""
    bfl = probe.shape(_BFL_KEY) is not None
    if not bfl and probe.shape(_DIFFUSERS_KEY, "transformer." + _DIFFUSERS_KEY) is None:
        return None
    if probe.has_prefix(
        "double_stream_modulation", "model.diffusion_model.double_stream_modulation"
    ):
        return None  # FLUX.2
    guidance = probe.shape(
        "guidance_in.in_layer.bias", "time_text_embed.guidance_embedder.linear_1.bias"
    )
    img_in = probe.shape("img_in.weight", "x_embedder.weight")
    if img_in is not None and len(img_in) == 2 and img_in[1] == 384:
        return "fill"
    if guidance is None:
        return "schnell"
    return "kontext" if "kontext" in probe.name.lower() else "dev"


def _match_file(probe: TensorProbe) -> str | None:
    v = file_variant(probe)
    return {"schnell": "flux1-schnell", "dev": "flux1-dev"}.get(v or "")


def _schnell_kwargs(pipe, width: int, height: int) -> dict:
    """FLUX.1 schnell (no guidance embedding) was trained with 256 T5 tokens, dev with 512."""
    cfg = getattr(getattr(pipe, "transformer", None), "config", {})
    return {} if cfg.get("guidance_embeds", False) else {"max_sequence_length": 256}


def _kontext_kwargs(pipe, width: int, height: int) -> dict:
    """Kontext otherwise resizes its input to its ~1 MP preferred sizes: keep the region's."""
    return {"max_area": width * height, "_auto_resize": False}


_COMMON = dict(
    prediction="flow",
    guidance_kind="distilled",
    supports_negative_prompt=False,
    text_encoders=("text_encoder", "text_encoder_2"),
    pooled_from="text_encoder",
    prompt_weighting=False,
    latent_channels=16,
    latent_packing="2x2",
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=FLUX1_RGB,
    latent_rgb_bias=FLUX1_BIAS,
    preview_decoder="taef1",
    preview_repo="madebyollin/taef1",
    preview_env="STUDIO_TAEF1",
    controlnet_bases=("flux1",),
    dtypes=("bfloat16", "float32"),
    default_size=(1024, 1024),
    transformer_class=TRANSFORMER_CLASS,
)

FAMILY = Family(
    name="flux1",
    label="FLUX.1",
    pipelines={
        "txt2img": "FluxPipeline",
        "img2img": "FluxImg2ImgPipeline",
        "inpaint": "FluxInpaintPipeline",
        "controlnet-txt2img": "FluxControlNetPipeline",
        "controlnet-img2img": "FluxControlNetImg2ImgPipeline",
        "controlnet-inpaint": "FluxControlNetInpaintPipeline",
    },
    matches=_matches,
    match_file=_match_file,
    priority=20,
    default_steps=28,
    default_guidance=3.5,
    call_kwargs=_schnell_kwargs,
    single_file_configs={
        "flux1-schnell": "black-forest-labs/FLUX.1-schnell",
        "flux1-dev": "black-forest-labs/FLUX.1-dev",
    },
    **_COMMON,
)

FILL = Family(
    name="flux1-fill",
    label="FLUX.1 Fill",
    pipelines={"inpaint": "FluxFillPipeline"},
    matches=_matches_fill,
    match_file=lambda probe: "flux1-fill" if file_variant(probe) == "fill" else None,
    priority=21,
    default_steps=50,
    default_guidance=30.0,
    base="flux1",
    strength_tasks=(),  # the masked image and mask are inputs of the model
    single_file_configs={"flux1-fill": "black-forest-labs/FLUX.1-Fill-dev"},
    **_COMMON,
)

KONTEXT = Family(
    name="flux1-kontext",
    label="FLUX.1 Kontext",
    # Edit by instruction: the input image conditions the model (no strength); "img2img" is
    # the canvas task it serves.
    pipelines={"img2img": "FluxKontextPipeline", "inpaint": "FluxKontextInpaintPipeline"},
    matches=_matches_kontext,
    match_file=lambda probe: "flux1-kontext" if file_variant(probe) == "kontext" else None,
    priority=22,
    default_steps=28,
    default_guidance=2.5,
    base="flux1",
    edit=True,
    strength_tasks=(),
    call_kwargs=_kontext_kwargs,
    single_file_configs={"flux1-kontext": "black-forest-labs/FLUX.1-Kontext-dev"},
    **_COMMON,
)
