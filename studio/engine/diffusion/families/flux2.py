"""FLUX.2 [klein] (Black Forest Labs 2026): step-distilled 4B/9B flow transformers on
32-channel latents patchified 2x2 (128 channels per token), one Qwen3 text encoder whose
hidden states at layers 9/18/27 are stacked. Velocity prediction; CFG is ignored (4 steps).
Only klein is supported: FLUX.2 [dev] (Mistral text encoder) is not matched."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, TensorProbe
from studio.engine.diffusion.families.latent_factors import FLUX2_BIAS, FLUX2_RGB

TRANSFORMER_CLASS = "Flux2Transformer2DModel"
_KEYS = ("single_stream_modulation.lin.weight", "single_stream_modulation.linear.weight")


def _matches(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    is_flux2 = info.class_name.startswith("Flux2") or cfg.get("_class_name") == TRANSFORMER_CLASS
    return is_flux2 and (
        info.class_name.startswith("Flux2Klein") or cfg.get("guidance_embeds") is False
    )


def file_variant(probe: TensorProbe) -> str | None:
    """ "klein-4b" | "klein-9b" from a FLUX.2 transformer file's width (img_in: 3072 wide for
    4B, 4096 for 9B), None if not FLUX.2 or not klein (a guidance embedding means FLUX.2 dev)."""
    if probe.shape(*_KEYS, *("transformer." + k for k in _KEYS)) is None:
        return None
    if probe.shape(
        "guidance_in.in_layer.weight", "time_guidance_embed.guidance_embedder.linear_1.weight"
    ):
        return None
    img_in = probe.shape("img_in.weight", "x_embedder.weight")
    width = img_in[0] if img_in else 0
    return "klein-9b" if width >= 4096 else "klein-4b"


def _match_file(probe: TensorProbe) -> str | None:
    v = file_variant(probe)
    return f"flux2-{v}" if v else None


def decode_latents(vae, lat):
    """Full-VAE preview of (B, 32, h, w) latents: FLUX.2 normalises the 2x2-patchified latents
    with the VAE's batch-norm statistics (diffusers' Flux2KleinPipeline), so undo that in the
    patchified layout, then decode. Returns the first image, (3, H, W) in [-1, 1]."""
    b, c, h, w = lat.shape
    packed = lat.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    packed = packed.reshape(b, c * 4, h // 2, w // 2)
    bn = vae.bn
    mean = bn.running_mean.view(1, -1, 1, 1).to(packed)
    std = (bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).sqrt().to(packed)
    x = packed * std + mean
    x = x.reshape(b, c, 2, 2, h // 2, w // 2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w)
    return vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0][0]


FAMILY = Family(
    name="flux2",
    label="FLUX.2 klein",
    pipelines={"txt2img": "Flux2KleinPipeline", "inpaint": "Flux2KleinInpaintPipeline"},
    matches=_matches,
    match_file=_match_file,
    priority=20,
    default_size=(1024, 1024),
    default_steps=4,
    default_guidance=1.0,
    prediction="flow",
    guidance_kind="none",
    supports_negative_prompt=False,
    text_encoders=("text_encoder",),
    prompt_weighting=False,
    latent_channels=32,
    latent_packing="2x2",
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=FLUX2_RGB,
    latent_rgb_bias=FLUX2_BIAS,
    dtypes=("bfloat16", "float32"),
    # Without a local config diffusers takes a klein file for flux-2-dev (size mismatch).
    single_file_configs={
        "flux2-klein-4b": "black-forest-labs/FLUX.2-klein-4B",
        "flux2-klein-9b": "black-forest-labs/FLUX.2-klein-9B",
    },
    transformer_class=TRANSFORMER_CLASS,
    decode_latents=decode_latents,
)
