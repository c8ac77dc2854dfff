"""Qwen-Image (Qwen team 2025): a 20B MMDiT on 2x2-packed 16-channel latents of the Wan 2.1
VAE (normalised by per-channel mean/std), Qwen2.5-VL-7B text encoder. Flow matching with
*true* classifier-free guidance (``true_cfg_scale``, two passes; the pipeline's
``guidance_scale`` is unused by the base model). Qwen-Image-Edit (2509/2511) is the same
transformer shape driven by QwenImageEditPlusPipeline: edit by instruction."""

from __future__ import annotations

from dataclasses import replace

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe

# Linear latent -> RGB preview factors (rows = latent channels, columns = R, G, B; + bias),
# from ComfyUI's latent_formats.py.
# Qwen-Image's VAE is Wan 2.1's (16 channels, normalised by per-channel mean/std).
QWEN_RGB = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
QWEN_BIAS = (-0.1835, -0.0868, -0.3360)

TRANSFORMER_CLASS = "QwenImageTransformer2DModel"
GUIDANCE_PARAM = "true_cfg_scale"
_KEYS = ("txt_norm.weight", "img_in.weight", "transformer_blocks.0.img_mod.1.weight")


def _is_qwen(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    own = info.class_name.startswith("QwenImage") and not info.class_name.startswith("QwenImage21")
    return own or cfg.get("_class_name") == TRANSFORMER_CLASS


def _match_file(probe: TensorProbe) -> str | None:
    if all(probe.shape(k, "transformer." + k) is not None for k in _KEYS):
        return "qwen-image-edit" if "edit" in probe.name.lower() else "qwen-image"
    return None


def decode_latents(vae, lat):
    """Full-VAE preview of (B, 16, h, w) latents: Qwen-Image normalises the Wan 2.1 VAE's
    latents by per-channel mean/std and the VAE is a video VAE (B, C, T, h, w). Returns the
    first image, (3, H, W) in [-1, 1]."""
    import torch

    cfg = vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(lat)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(lat)
    x = (lat * std + mean).unsqueeze(2)
    return vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0][0, :, 0]


# Qwen-Image's Wan VAE tiles at 256 px (192 px stride).
_NEEDS = ModelNeeds(
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
    vae_tile_px=256,
)


def _tiny(folder):
    """A tiny random Qwen-Image pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_models import build_tiny_qwen_image

    return build_tiny_qwen_image(folder)


def _tiny_controlnet(folder):
    """A tiny random Qwen-Image ControlNet (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_control import build_tiny_qwen_controlnet

    return build_tiny_qwen_controlnet(folder)


_COMMON = dict(
    prediction="flow",
    guidance_kind="cfg",
    supports_negative_prompt=True,
    prompt_weighting=False,
    latent_channels=16,
    latent_packing="2x2",
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=QWEN_RGB,
    latent_rgb_bias=QWEN_BIAS,
    dtypes=("bfloat16", "float32"),
    default_size=(1328, 1328),
    default_guidance=4.0,
    controlnet_bases=("qwen",),
    transformer_class=TRANSFORMER_CLASS,
    guidance_param=GUIDANCE_PARAM,
    cfg_negative=" ",
    decode_latents=decode_latents,
)

FAMILY = Family(
    name="qwen",
    label="Qwen-Image",
    pipelines={
        "txt2img": "QwenImagePipeline",
        "img2img": "QwenImageImg2ImgPipeline",
        "inpaint": "QwenImageInpaintPipeline",
        "controlnet-txt2img": "QwenImageControlNetPipeline",
        "controlnet-inpaint": "QwenImageControlNetInpaintPipeline",
    },
    matches=lambda info: _is_qwen(info) and "Edit" not in info.class_name,
    match_file=lambda probe: "qwen-image" if _match_file(probe) == "qwen-image" else None,
    priority=20,
    tiny_model=_tiny,
    tiny_controlnet=_tiny_controlnet,
    default_steps=50,
    controlnet_file_keys=(("img_in.weight", "controlnet_x_embedder.weight"),),
    memory=(_NEEDS,),
    memory_hints=(("edit", "qwen-image-edit"),),
    memory_names=((r"qwen", "qwen-image"),),
    single_file_configs={"qwen-image": "Qwen/Qwen-Image"},
    **_COMMON,
)

EDIT = Family(
    name="qwen-edit",
    label="Qwen-Image-Edit",
    pipelines={"img2img": "QwenImageEditPlusPipeline", "inpaint": "QwenImageEditInpaintPipeline"},
    matches=lambda info: _is_qwen(info) and "Edit" in info.class_name,
    match_file=lambda probe: "qwen-image-edit" if _match_file(probe) == "qwen-image-edit" else None,
    priority=21,
    default_steps=40,
    memory=(replace(_NEEDS, key="qwen-image-edit", label="Qwen-Image-Edit"),),
    memory_names=((r"qwen.*edit", "qwen-image-edit"),),
    base="qwen",
    edit=True,
    strength_tasks=("inpaint",),  # QwenImageEditInpaintPipeline: strength, default 0.6
    single_file_configs={"qwen-image-edit": "Qwen/Qwen-Image-Edit-2511"},
    **_COMMON,
)
