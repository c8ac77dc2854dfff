"""Stable Diffusion 1.x (Rombach et al. 2022): CLIP ViT-L/14 text encoder (768-wide cross
attention), 4-channel latents, epsilon prediction, 512 px. Also the catch-all for
``UNet2DConditionModel`` pipelines that no more specific family claims."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe

# Latent -> RGB factors for SD1.x/2.x latents (rows = channels; the widely used approximation
# from the community "latent preview" tables, also used by ComfyUI's latent_formats.SD15).
SD_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)

SD_PIPELINES = {
    "txt2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
    "controlnet-txt2img": "StableDiffusionControlNetPipeline",
    "controlnet-img2img": "StableDiffusionControlNetImg2ImgPipeline",
    "controlnet-inpaint": "StableDiffusionControlNetInpaintPipeline",
}


def _matches(info: ModelInfo) -> bool:
    unet = info.config("unet")
    return bool(unet) and unet.get("addition_embed_type") != "text_time"


def _match_file(probe: TensorProbe) -> str | None:
    channels = probe.unet_in_channels()
    if channels is None:
        return None
    return "sd15-inpaint" if channels == 9 else "sd15"


def _tiny(folder):
    """A tiny random SD 1.x pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_models import build_tiny_sd

    return build_tiny_sd(folder)


FAMILY = Family(
    name="sd1",
    context_dim=768,
    label="SD 1.x",
    pipelines=SD_PIPELINES,
    matches=_matches,
    match_file=_match_file,
    priority=0,
    tiny_model=_tiny,
    # fp16 UNet 1.72 GB, CLIP-L 0.25 GB, VAE 0.17 GB; the VAE's sample_size 512 tiles it
    memory=(
        ModelNeeds(
            "sd15",
            "SD 1.5",
            "sd1",
            1.72,
            0.25,
            0.17,
            8,
            12,
            0.8,
            1.2,
            512,
            0.08,
            False,
            vae_tile_px=512,
        ),
    ),
    default_size=(512, 512),
    default_steps=20,
    default_guidance=7.0,
    default_sampler="DPM++ 2M Karras",
    prediction="epsilon",
    latent_rgb=SD_LATENT_RGB,
    preview_decoder="taesd",
    preview_repo="madebyollin/taesd",
    preview_env="STUDIO_TAESD",
    controlnet_bases=("sd1",),
    controlnet_defaults={
        "canny": "sd15-canny",
        "pose": "sd15-openpose",
        "scribble": "sd15-scribble",
    },
    controlnet_scale=1.0,
    controlnet_config="sd15-controlnet",
    single_file_configs={
        "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "sd15-inpaint": "stable-diffusion-v1-5/stable-diffusion-inpainting",
    },
    tokenizer_fallbacks={
        ("sd15", "tokenizer"): ("openai/clip-vit-large-patch14",),
        ("sd15-inpaint", "tokenizer"): (
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "openai/clip-vit-large-patch14",
        ),
    },
)
