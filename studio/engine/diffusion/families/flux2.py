"""FLUX.2 [klein] (Black Forest Labs 2026): step-distilled 4B/9B flow transformers on
32-channel latents patchified 2x2 (128 channels per token), one Qwen3 text encoder whose
hidden states at layers 9/18/27 are stacked. Velocity prediction; CFG is ignored (4 steps).
Only klein is supported: FLUX.2 [dev] (Mistral text encoder) is not matched."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe

# Linear latent -> RGB preview factors (rows = latent channels, columns = R, G, B; + bias),
# from ComfyUI's latent_formats.py.
# 32 latent channels (the transformer sees 128 = 32 x 2x2 patches).
FLUX2_RGB = (
    (0.0058, 0.0113, 0.0073),
    (0.0495, 0.0443, 0.0836),
    (-0.0099, 0.0096, 0.0644),
    (0.2144, 0.3009, 0.3652),
    (0.0166, -0.0039, -0.0054),
    (0.0157, 0.0103, -0.0160),
    (-0.0398, 0.0902, -0.0235),
    (-0.0052, 0.0095, 0.0109),
    (-0.3527, -0.2712, -0.1666),
    (-0.0301, -0.0356, -0.0180),
    (-0.0107, 0.0078, 0.0013),
    (0.0746, 0.0090, -0.0941),
    (0.0156, 0.0169, 0.0070),
    (-0.0034, -0.0040, -0.0114),
    (0.0032, 0.0181, 0.0080),
    (-0.0939, -0.0008, 0.0186),
    (0.0018, 0.0043, 0.0104),
    (0.0284, 0.0056, -0.0127),
    (-0.0024, -0.0022, -0.0030),
    (0.1207, -0.0026, 0.0065),
    (0.0128, 0.0101, 0.0142),
    (0.0137, -0.0072, -0.0007),
    (0.0095, 0.0092, -0.0059),
    (0.0000, -0.0077, -0.0049),
    (-0.0465, -0.0204, -0.0312),
    (0.0095, 0.0012, -0.0066),
    (0.0290, -0.0034, 0.0025),
    (0.0220, 0.0169, -0.0048),
    (-0.0332, -0.0457, -0.0468),
    (-0.0085, 0.0389, 0.0609),
    (-0.0076, 0.0003, -0.0043),
    (-0.0111, -0.0460, -0.0614),
)
FLUX2_BIAS = (-0.0329, -0.0718, -0.0851)

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


def _tiny(folder):
    """A tiny random FLUX.2 klein pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_models import build_tiny_flux2_klein

    return build_tiny_flux2_klein(folder)


FAMILY = Family(
    name="flux2",
    label="FLUX.2 klein",
    pipelines={"txt2img": "Flux2KleinPipeline", "inpaint": "Flux2KleinInpaintPipeline"},
    matches=_matches,
    match_file=_match_file,
    priority=20,
    tiny_model=_tiny,
    memory=(
        ModelNeeds(
            "flux2-klein-4b",
            "FLUX.2 klein 4B",
            "flux2",
            7.75,
            8.05,
            0.17,
            25,
            36,
            1.5,
            3.0,
            te_layer_gb=0.78,
            gguf_repo="unsloth/FLUX.2-klein-4B-GGUF",
            te_keep=0.10,
        ),
        ModelNeeds(
            "flux2-klein-9b",
            "FLUX.2 klein 9B",
            "flux2",
            18.2,
            16.4,
            0.17,
            32,
            36,
            1.8,
            3.0,
            te_layer_gb=1.24,
            te_keep=0.16,
        ),
    ),
    # an unknown size plans as the larger model, so the plan errs on the side of fitting
    memory_default="flux2-klein-9b",
    memory_hints=(("9b", "flux2-klein-9b"), ("4b", "flux2-klein-4b")),
    memory_names=(
        (r"flux-?2.*9b|klein-?9b", "flux2-klein-9b"),
        (r"flux-?2|klein", "flux2-klein-4b"),
    ),
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
