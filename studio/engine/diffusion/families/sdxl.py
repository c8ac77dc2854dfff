"""Stable Diffusion XL (Podell et al. 2023): two text encoders (CLIP ViT-L and OpenCLIP
ViT-bigG, penultimate hidden states concatenated to 2048 wide, bigG's pooled output as an extra
condition with the size/crop "time ids"), 1024 px. Its VAE overflows in fp16 (decode in fp32,
or use madebyollin/sdxl-vae-fp16-fix, which was finetuned to keep activations small)."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe


def _matches(info: ModelInfo) -> bool:
    unet = info.config("unet")
    if "transformer" in info.components:
        return False  # FLUX.1 / SD3 also have a text_encoder_2, but a transformer, no UNet
    return "text_encoder_2" in info.components or unet.get("addition_embed_type") == "text_time"


def _match_file(probe: TensorProbe) -> str | None:
    if not (
        probe.has_prefix("conditioner.embedders.1")
        or any("label_emb.0.0.weight" in k for k in probe.shapes)
    ):
        return None
    return "sdxl-inpaint" if probe.unet_in_channels() == 9 else "sdxl"


def _file_scheduler(probe: TensorProbe) -> dict:
    """What an SDXL file says of its noise schedule by marker keys, as ComfyUI reads them
    (``supported_models.SDXL.model_type``): a ``v_pred`` key makes it a v-prediction model
    (NoobAI-XL V-Pred and its merges), and ``ztsnr`` beside it a zero-terminal-SNR one (Lin et
    al. 2024: the last timestep is pure noise), diffusers' ``rescale_betas_zero_snr``."""
    if "v_pred" not in probe.shapes:
        return {}
    out: dict = {"prediction_type": "v_prediction"}
    if "ztsnr" in probe.shapes:
        out["rescale_betas_zero_snr"] = True
    return out


def _tiny(folder):
    """A tiny random SDXL pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(folder)


FAMILY = Family(
    name="sdxl",
    context_dim=2048,
    label="SDXL",
    pipelines={
        "txt2img": "StableDiffusionXLPipeline",
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
        "controlnet-txt2img": "StableDiffusionXLControlNetPipeline",
        "controlnet-img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
        "controlnet-inpaint": "StableDiffusionXLControlNetInpaintPipeline",
    },
    matches=_matches,
    match_file=_match_file,
    file_scheduler=_file_scheduler,
    priority=20,
    tiny_model=_tiny,
    memory=(
        ModelNeeds("sdxl", "SDXL", "sdxl", 5.14, 1.64, 0.17, 7, 32, 1.5, 3.0, 1024, 0.13, False),
    ),
    default_size=(1024, 1024),
    default_steps=25,
    default_guidance=6.0,
    default_sampler="DPM++ 2M Karras",
    prediction="epsilon",
    text_encoders=("text_encoder", "text_encoder_2"),
    pooled_from="text_encoder_2",
    clip_hidden="penultimate",
    latent_rgb=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    latent_rgb_bias=(0.1084, -0.0175, -0.0011),
    preview_decoder="taesdxl",
    preview_repo="madebyollin/taesdxl",
    preview_env="STUDIO_TAESDXL",
    controlnet_bases=("sdxl",),
    controlnet_defaults={
        "canny": "sdxl-canny",
        "pose": "sdxl-openpose",
    },
    controlnet_scale=0.5,
    vae_upcast=True,
    vae_fp16_fix="sdxl-vae-fp16-fix",
    single_file_configs={
        "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
        "sdxl-inpaint": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    },
    tokenizer_fallbacks={
        ("sdxl", "tokenizer"): ("stabilityai/sdxl-turbo", "openai/clip-vit-large-patch14"),
        ("sdxl", "tokenizer_2"): (
            "stabilityai/sdxl-turbo",
            "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
        ),
        ("sdxl-inpaint", "tokenizer"): (
            "stabilityai/stable-diffusion-xl-base-1.0",
            "stabilityai/sdxl-turbo",
            "openai/clip-vit-large-patch14",
        ),
        ("sdxl-inpaint", "tokenizer_2"): (
            "stabilityai/stable-diffusion-xl-base-1.0",
            "stabilityai/sdxl-turbo",
            "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
        ),
    },
)
