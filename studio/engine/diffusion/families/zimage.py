"""Z-Image (Tongyi-MAI 2025): a 6B single-stream DiT (S3-DiT) with a Qwen3-4B text encoder,
16-channel FLUX.1 VAE latents (not packed: the transformer patchifies itself). Flow matching;
the Turbo model is distilled to 8 steps without CFG. Its pipeline runs CFG whenever
guidance > 0 (pred = pos + g (pos - neg)), so "no guidance" is 0 here."""

from __future__ import annotations

from dataclasses import replace

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe
from studio.engine.diffusion.families.flux import FLUX1_BIAS, FLUX1_RGB  # the FLUX.1 VAE

TRANSFORMER_CLASS = "ZImageTransformer2DModel"
_KEY = "layers.0.adaLN_modulation.0.weight"


# Turbo and Base (Z-Image) share the DiT and encoder sizes (bf16; MODELS.md); only Turbo has
# a GGUF repo.
_TURBO = ModelNeeds(
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
)


def _matches(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    return info.class_name.startswith("ZImage") or cfg.get("_class_name") == TRANSFORMER_CLASS


def _match_file(probe: TensorProbe) -> str | None:
    if probe.shape(_KEY, "transformer." + _KEY) is None:
        return None
    if probe.has_prefix("control_", "model.diffusion_model.control_"):
        return None  # a Z-Image ControlNet
    if probe.shape("cap_embedder.1.weight", "cap_embedder.0.weight") is None:
        return None  # another DiT with the same block naming (Lumina 2 has cap_embedder too)
    return "z-image-turbo"


def _tiny(folder):
    """A tiny random Z-Image pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_models import build_tiny_zimage

    return build_tiny_zimage(folder)


def _tiny_controlnet(folder):
    """A tiny random Z-Image ControlNet (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_control import build_tiny_zimage_controlnet

    return build_tiny_zimage_controlnet(folder)


FAMILY = Family(
    name="zimage",
    label="Z-Image",
    pipelines={
        "txt2img": "ZImagePipeline",
        "img2img": "ZImageImg2ImgPipeline",
        "inpaint": "ZImageInpaintPipeline",
        "controlnet-txt2img": "ZImageControlNetPipeline",
        "controlnet-inpaint": "ZImageControlNetInpaintPipeline",
    },
    matches=_matches,
    match_file=_match_file,
    priority=20,
    tiny_model=_tiny,
    tiny_controlnet=_tiny_controlnet,
    # the Z-Image Union release's control layers
    controlnet_file_keys=(
        ("control_all_x_embedder.2-1.weight",),
        ("control_layers.0.before_proj.weight",),
    ),
    memory=(_TURBO, replace(_TURBO, key="z-image", label="Z-Image", gguf_repo=None)),
    memory_default="z-image-turbo",
    memory_names=((r"z-?image", "z-image-turbo"),),
    default_size=(1024, 1024),
    default_steps=8,
    default_guidance=0.0,
    prediction="flow",
    guidance_kind="cfg",
    supports_negative_prompt=True,
    prompt_weighting=False,
    latent_channels=16,
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=FLUX1_RGB,
    latent_rgb_bias=FLUX1_BIAS,
    preview_decoder="taef1",
    preview_repo="madebyollin/taef1",
    preview_env="STUDIO_TAEF1",
    controlnet_bases=("zimage",),
    dtypes=("bfloat16", "float32"),
    single_file_configs={"z-image-turbo": "Tongyi-MAI/Z-Image-Turbo"},
    transformer_class=TRANSFORMER_CLASS,
)
