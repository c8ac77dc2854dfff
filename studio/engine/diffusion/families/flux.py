"""FLUX.1 (Black Forest Labs 2024): a 12B rectified-flow transformer (double- then
single-stream blocks) on 2x2-packed 16-channel latents, CLIP-L pooled + T5-XXL text.
Velocity prediction (Lipman et al. 2023; Esser et al. 2024). Variants by what the folder or
file shows: schnell (timestep-distilled, no guidance embedding), dev (guidance-distilled:
the guidance scale is a model input), Fill (inpainting: the packed masked image and mask are
concatenated to the input, 384 input channels) and Kontext (edit by instruction; same
transformer shape as dev, told apart by its pipeline class or, for single files, the name)."""

from __future__ import annotations

from dataclasses import replace

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe

# Linear latent -> RGB preview factors (rows = latent channels, columns = R, G, B; + bias),
# from ComfyUI's latent_formats.py.
FLUX1_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX1_BIAS = (-0.0329, -0.0718, -0.0851)

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
    if probe.has_prefix(
        "distilled_guidance_layer.", "model.diffusion_model.distilled_guidance_layer."
    ):
        return None  # Chroma (families.chroma): FLUX.1 blocks without a modulation of their own
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


_SCHNELL = ModelNeeds(
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
)
_DEV = replace(_SCHNELL, key="flux1-dev", label="FLUX.1 dev", gguf_repo="city96/FLUX.1-dev-gguf")


def _tiny(folder):
    """A tiny random FLUX.1 schnell pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_models import build_tiny_flux

    return build_tiny_flux(folder)


def _tiny_controlnet(folder):
    """A tiny random FLUX.1 ControlNet (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_control import build_tiny_flux_controlnet

    return build_tiny_flux_controlnet(folder)


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
    tiny_model=_tiny,
    tiny_controlnet=_tiny_controlnet,
    # diffusers-format keys as InstantX saves them; XLabs' files use the BFL names
    controlnet_file_keys=(
        ("controlnet_x_embedder.weight",),
        ("input_hint_block.0.weight",),
        ("double_blocks.", "controlnet_blocks."),
    ),
    default_steps=28,
    default_guidance=3.5,
    memory=(_SCHNELL, _DEV),
    memory_default="flux1-dev",
    memory_hints=(("schnell", "flux1-schnell"), ("dev", "flux1-dev")),
    # "flux" alone is FLUX.1 dev; FLUX.2 names are flux2's
    memory_names=((r"flux-?1.*schnell|schnell", "flux1-schnell"), (r"flux(?!-?2)", "flux1-dev")),
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
    memory=(replace(_DEV, key="flux1-fill", label="FLUX.1 Fill"),),
    memory_names=((r"flux-?1.*fill|fill.*flux", "flux1-fill"),),
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
    memory=(replace(_DEV, key="flux1-kontext", label="FLUX.1 Kontext"),),
    memory_names=((r"kontext", "flux1-kontext"),),
    default_guidance=2.5,
    base="flux1",
    edit=True,
    strength_tasks=(),
    call_kwargs=_kontext_kwargs,
    single_file_configs={"flux1-kontext": "black-forest-labs/FLUX.1-Kontext-dev"},
    **_COMMON,
)
