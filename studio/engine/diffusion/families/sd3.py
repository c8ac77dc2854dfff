"""Stable Diffusion 3 / 3.5 (Esser et al. 2024, "Scaling Rectified Flow Transformers"): MMDiT
on 16-channel latents (not packed), CLIP-L + CLIP-G pooled and T5-XXL text, rectified flow
with classifier-free guidance. Medium (2.5B, MMDiT-X) and Large (8B, 38 blocks; Turbo is
Large distilled to 4 steps without guidance)."""

from __future__ import annotations

from dataclasses import replace

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe

# Linear latent -> RGB preview factors (rows = latent channels, columns = R, G, B; + bias),
# from ComfyUI's latent_formats.py.
SD3_RGB = (
    (-0.0922, -0.0175, 0.0749),
    (0.0311, 0.0633, 0.0954),
    (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496),
    (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427),
    (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268),
    (0.0922, 0.0988, 0.0951),
    (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895),
    (-0.0069, -0.0030, -0.0810),
    (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189),
)
SD3_BIAS = (0.2394, 0.2135, 0.1925)

TRANSFORMER_CLASS = "SD3Transformer2DModel"
_BFL_KEY = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
_DIFFUSERS_KEY = "transformer_blocks.0.attn.add_q_proj.weight"


def _matches(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    return (
        info.class_name.startswith("StableDiffusion3")
        or cfg.get("_class_name") == TRANSFORMER_CLASS
    )


def _match_file(probe: TensorProbe) -> str | None:
    """sd35-large (38 joint blocks) or sd35-medium, from SD3 checkpoint keys (diffusers'
    ``infer_diffusers_model_type``: joint_blocks.37 exists only in Large)."""
    if probe.shape(_BFL_KEY) is not None:
        return (
            "sd35-large" if probe.shape("joint_blocks.37.x_block.mlp.fc1.weight") else "sd35-medium"
        )
    if probe.shape(_DIFFUSERS_KEY, "transformer." + _DIFFUSERS_KEY) is not None and probe.shape(
        "pos_embed.proj.weight", "transformer.pos_embed.proj.weight"
    ):
        return (
            "sd35-large"
            if probe.has_prefix("transformer_blocks.37.", "transformer.transformer_blocks.37.")
            else "sd35-medium"
        )
    return None


_LARGE = ModelNeeds(
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
)


def _tiny(folder):
    """A tiny random SD 3.5 pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_models import build_tiny_sd3

    return build_tiny_sd3(folder)


def _tiny_controlnet(folder):
    """A tiny random SD 3.5 ControlNet (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_control import build_tiny_sd3_controlnet

    return build_tiny_sd3_controlnet(folder)


FAMILY = Family(
    name="sd3",
    label="SD 3.5",
    pipelines={
        "txt2img": "StableDiffusion3Pipeline",
        "img2img": "StableDiffusion3Img2ImgPipeline",
        "inpaint": "StableDiffusion3InpaintPipeline",
        "controlnet-txt2img": "StableDiffusion3ControlNetPipeline",
        "controlnet-inpaint": "StableDiffusion3ControlNetInpaintingPipeline",
    },
    matches=_matches,
    match_file=_match_file,
    priority=20,
    tiny_model=_tiny,
    tiny_controlnet=_tiny_controlnet,
    controlnet_file_keys=(("pos_embed_input.proj.weight",),),
    memory=(
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
        _LARGE,
        replace(_LARGE, key="sd35-large-turbo", label="SD 3.5 Large Turbo"),
    ),
    memory_default="sd35-large",
    memory_hints=(
        ("large-turbo", "sd35-large-turbo"),
        ("large", "sd35-large"),
        ("medium", "sd35-medium"),
    ),
    memory_names=(
        (r"(sd|stable-diffusion)-?3.*large.*turbo", "sd35-large-turbo"),
        (r"(sd|stable-diffusion)-?3.*large", "sd35-large"),
        (r"(sd|stable-diffusion)-?3", "sd35-medium"),
    ),
    default_size=(1024, 1024),
    default_steps=28,
    default_guidance=3.5,
    prediction="flow",
    guidance_kind="cfg",
    supports_negative_prompt=True,
    text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"),
    pooled_from="text_encoder_2",
    prompt_weighting=False,
    latent_channels=16,
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=SD3_RGB,
    latent_rgb_bias=SD3_BIAS,
    preview_decoder="taesd3",
    preview_repo="madebyollin/taesd3",
    preview_env="STUDIO_TAESD3",
    controlnet_bases=("sd3",),
    dtypes=("bfloat16", "float16", "float32"),
    single_file_configs={
        "sd35-medium": "stabilityai/stable-diffusion-3.5-medium",
        "sd35-large": "stabilityai/stable-diffusion-3.5-large",
    },
    transformer_class=TRANSFORMER_CLASS,
)
