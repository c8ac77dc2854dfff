"""Qwen-Image 2.1 (Qwen team 2026): a 7.1B single-stream, block-causal transformer on
*unpatched* 64-channel latents of its own 16x VAE (``AutoencoderKLQwenImage21``, RGBA,
normalised by per-channel mean/std), one token per 16x16 px; prompt and reference images are
encoded together by a Qwen3-VL model (hidden width 4096: Qwen3-VL-8B's). Flow matching with
*true* classifier-free guidance (``true_cfg_scale``, on only above 1 with a negative prompt;
the pipeline's default 1.0: "meant to be sampled without guidance").

One pipeline, ``QwenImage21Pipeline``, does text-to-image and image-conditioned generation:
``image=`` reference images are read by the text encoder as vision context and by the VAE as
latent tokens in front of the noise, so an input image conditions the model by instruction
(an edit, no strength). diffusers 0.42 has no inpaint or ControlNet pipeline for it.

Where the values come from (diffusers 0.42, ``pipeline_qwenimage21.py`` and the model classes;
no model card was at hand):

- size: ``output_resolution`` defaults to 1024 (1024 x 1024); the pipeline floors width and
  height to multiples of 32 (``vae_scale_factor * 2``: the VAE's 16x and the 2x2 latent group
  one vision slot stands for), so 32 is the size multiple here;
- steps 40: ``num_inference_steps``' default (a model folder whose ``model_index.json`` sets
  ``sample_sigmas`` fixes its own step count: the pipeline then ignores the steps asked);
- guidance 1.0: ``true_cfg_scale``'s default;
- 64 latent channels: ``AutoencoderKLQwenImage21``'s default ``z_dim``;
- single files: diffusers' checkpoint sniffing tells a 2.1 transformer by
  ``txt_in.text_norm.weight`` (``CHECKPOINT_KEY_NAMES["qwen-image-2.1"]``, bare or under
  ``model.diffusion_model.``), its default repo ``Qwen/Qwen-Image-2.1``. Qwen-Image 1's
  ``txt_norm.weight`` / ``img_mod`` keys are absent from 2.1 (one shared ``modulation``), and
  Qwen-Image 1's ``txt_in`` is a plain Linear, so neither family claims the other's files.

Latent previews use ComfyUI's ``comfy/latent_formats.py`` ``QwenImage21`` factors (64 rows,
applied to the mean/std-normalised latents the transformer sees, the same latents_mean /
latents_std as diffusers' VAE defaults); the ``full`` preview is :func:`decode_latents`. ComfyUI
names a tiny decoder for it (``taeqi2_1_decoder``) but no download repo is known here, so there
is no ``preview_decoder``.
"""

from __future__ import annotations

import math

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe

PIPELINE = "QwenImage21Pipeline"
TRANSFORMER_CLASS = "QwenImage21Transformer2DModel"
CONFIG = "qwen-image-2-1"
REPO = "Qwen/Qwen-Image-2.1"  # the pipeline's docstring example and diffusers' default path
# diffusers' marker key for a 2.1 transformer file (single_file_utils.CHECKPOINT_KEY_NAMES)
FILE_KEY = "txt_in.text_norm.weight"
LATENT_CHANNELS = 64

# Linear latent -> RGB preview factors (rows = latent channels, columns = R, G, B; + bias),
# from ComfyUI's latent_formats.py (QwenImage21).
QWEN21_RGB = (
    (-0.0158, -0.0115, -0.0174),
    (0.0030, 0.0120, 0.0027),
    (0.0637, 0.0470, -0.0127),
    (0.0360, 0.0661, -0.0030),
    (0.0159, 0.0181, 0.0082),
    (0.0132, 0.0326, 0.0169),
    (0.0191, 0.0261, 0.0136),
    (-0.0146, -0.0276, -0.0361),
    (0.0187, -0.0024, -0.0072),
    (-0.1059, -0.0090, 0.0350),
    (-0.0195, -0.0226, -0.0138),
    (-0.0295, 0.0024, -0.0215),
    (0.0191, -0.0393, -0.0001),
    (-0.0144, -0.0166, -0.0272),
    (0.0389, 0.0430, 0.0445),
    (-0.0153, -0.0336, 0.0031),
    (0.0339, 0.0122, 0.0220),
    (-0.0136, -0.0078, -0.0120),
    (-0.0340, -0.0282, -0.0245),
    (-0.0133, -0.0176, -0.0133),
    (0.0109, -0.0087, 0.0096),
    (-0.0010, 0.0044, 0.0016),
    (0.0301, 0.0053, 0.0361),
    (-0.0281, -0.0205, -0.0032),
    (-0.0725, 0.0002, 0.0160),
    (-0.0036, 0.0158, 0.0807),
    (0.0087, 0.0040, -0.0053),
    (-0.0260, 0.0183, -0.0077),
    (-0.0039, -0.0035, -0.0107),
    (-0.0026, 0.0172, 0.0237),
    (0.0088, 0.0078, 0.0078),
    (-0.0087, -0.0310, -0.0122),
    (-0.0027, 0.0018, 0.0094),
    (-0.0064, 0.0292, -0.0256),
    (0.0594, 0.1049, 0.1180),
    (0.0103, -0.0103, -0.0026),
    (-0.0091, 0.0025, -0.0015),
    (0.0178, 0.0243, 0.0292),
    (-0.0063, -0.0012, 0.0202),
    (0.0452, 0.0246, 0.0143),
    (0.0149, 0.0270, 0.0052),
    (0.1484, 0.0801, 0.0804),
    (-0.0120, 0.0040, 0.0010),
    (0.0181, 0.0051, -0.0021),
    (0.0132, 0.0050, 0.0019),
    (0.0291, 0.0020, 0.0092),
    (0.0066, -0.0410, -0.1314),
    (-0.1153, -0.0629, -0.0802),
    (0.0258, 0.0378, 0.0298),
    (0.0375, 0.1139, 0.0468),
    (-0.0142, -0.0126, -0.0276),
    (0.0339, 0.0153, 0.0138),
    (0.0346, 0.0211, 0.0267),
    (0.0369, -0.0431, -0.0993),
    (-0.0052, -0.0092, 0.0056),
    (-0.0279, 0.0410, -0.0357),
    (0.0036, 0.0017, -0.0083),
    (-0.0441, -0.0367, -0.0454),
    (-0.0001, -0.0092, -0.0001),
    (-0.0222, -0.0183, -0.0051),
    (0.0039, 0.0053, -0.0184),
    (-0.0094, -0.0075, -0.0143),
    (-0.0066, -0.0088, -0.0063),
    (0.0220, 0.0074, 0.0100),
)
QWEN21_BIAS = (-0.1228, -0.1869, -0.3083)


def _matches(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    return info.class_name == PIPELINE or cfg.get("_class_name") == TRANSFORMER_CLASS


def _match_file(probe: TensorProbe) -> str | None:
    """``CONFIG`` for a Qwen-Image 2.1 transformer file (diffusers or ComfyUI key names; the
    ComfyUI layout only fuses the MLP's gate and up projections), else None."""
    if probe.shape(FILE_KEY, "transformer." + FILE_KEY) is not None:
        return CONFIG
    return None


def decode_latents(vae, lat):
    """Full-VAE preview of (B, 64, h, w) latents: undo the per-channel mean/std normalisation,
    decode as one video frame (B, C, 1, h, w) and keep the RGB of the VAE's RGBA output.
    Returns the first image, (3, H, W) in [-1, 1]."""
    import torch

    cfg = vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(lat)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(lat)
    x = (lat * std + mean).unsqueeze(2)
    return vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0][0, :3, 0]


def _call_kwargs(pipe, width: int, height: int) -> dict:
    """``output_resolution`` = the side of a square of the job's area: the pipeline resizes
    each reference image to that area at its own aspect ratio, so an input image of the job's
    aspect (what Studio passes) is read at the job's own size rather than at the default
    1024 x 1024 area. Width and height themselves are passed explicitly."""
    return {"output_resolution": int(round(math.sqrt(width * height)))}


def _tiny(folder):
    """A tiny random Qwen-Image 2.1 pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_qwen21 import build_tiny_qwen_image21

    return build_tiny_qwen_image21(folder)


# Sizes in decimal GB at bf16, from the parameter counts of the architecture built on the meta
# device: the transformer at diffusers' default config (32 blocks, 32 heads x 128, MLP ratio 3)
# 7.12B -> 14.2 GB; the text encoder at Qwen3-VL-8B's shape (36 layers, width 4096, 8 KV
# heads, vocabulary 151936, 27-layer vision tower; 8B because its width is the transformer's
# context_in_dim, 4096)
# 8.77B -> 17.5 GB, its token embedding 0.62B -> 1.24 GB, embedding + untied LM head 14 % of
# it (what NF4 leaves in bf16); the VAE 0.34B -> 0.68 GB. The transformer's layerwise-casting
# skip patterns ("pos_embed", "norm") cover 0.24 % of it, within the default share.
# work_gb / decode_gb are estimates scaled from Qwen-Image 1's row (3.0 / 4.0 GB at 1328 px):
# 4096 image tokens at 1024 px instead of 6889, width 4096 instead of 3072; a decoder base
# width of 144 instead of 96. The VAE tiles at 256 px (192 px stride), as Qwen-Image 1's.
NEEDS = ModelNeeds(
    CONFIG,
    "Qwen-Image 2.1",
    "qwen21",
    14.2,
    17.5,
    0.68,
    32,
    36,
    2.5,
    3.6,
    1024,
    te_layer_gb=1.24,
    te_keep=0.14,
    vae_tile_px=256,
    note="sizes from the architecture's parameter counts; working memory estimated",
)

FAMILY = Family(
    name="qwen21",
    label="Qwen-Image 2.1",
    pipelines={"txt2img": PIPELINE, "img2img": PIPELINE},
    matches=_matches,
    match_file=_match_file,
    # Qwen-Image 1's recognition takes any "QwenImage*" pipeline class: tried before it.
    priority=22,
    default_size=(1024, 1024),
    default_steps=40,
    default_guidance=1.0,
    prediction="flow",
    guidance_kind="cfg",
    supports_negative_prompt=True,
    text_encoders=("text_encoder",),
    prompt_weighting=False,
    latent_channels=LATENT_CHANNELS,
    latent_packing="tokens",  # unpatched: (B, h*w, 64), one token per latent pixel
    latent_rgb=QWEN21_RGB,
    latent_rgb_bias=QWEN21_BIAS,
    size_multiple=32,
    dtypes=("bfloat16", "float32"),
    memory=(NEEDS,),
    memory_names=((r"qwen-?image-?2-?1(?!\d)", CONFIG),),
    tiny_model=_tiny,
    single_file_configs={CONFIG: REPO},
    transformer_class=TRANSFORMER_CLASS,
    guidance_param="true_cfg_scale",
    # With guidance on and no negative prompt the pipeline would skip CFG; it encodes an empty
    # prompt as " " itself, so " " is the empty negative.
    cfg_negative=" ",
    edit=True,
    strength_tasks=(),
    call_kwargs=_call_kwargs,
    decode_latents=decode_latents,
)
