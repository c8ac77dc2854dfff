"""Chroma (lodestones 2025): an 8.9B rectified-flow transformer derived from FLUX.1 schnell,
whose per-block modulation comes from one small distilled network (the
``distilled_guidance_layer``, fed the timestep and a modulation index) instead of each
block's own AdaLN Linears and CLIP's pooled vector; T5-XXL is its only text encoder. FLUX.1's
16-channel VAE, 2x2-packed latents. Real classifier-free guidance with a negative prompt
(the pipeline runs CFG when guidance > 1; Chroma1-HD's card: 40 steps, guidance 3).

Single files are told from FLUX.1 by the distilled guidance layer, as ComfyUI's
``comfy/model_detection.py`` does (``distilled_guidance_layer.0.norms.0.scale`` or
``distilled_guidance_layer.norms.0.scale``) and diffusers' ``infer_diffusers_model_type``
(``distilled_guidance_layer.in_proj.bias``); Chroma Radiance (pixel space, ``nerf_blocks``)
is another architecture and is not matched."""

from __future__ import annotations

from studio.engine.diffusion.families.base import Family, ModelInfo, ModelNeeds, TensorProbe
from studio.engine.diffusion.families.flux import FLUX1_BIAS, FLUX1_RGB  # the FLUX.1 VAE

TRANSFORMER_CLASS = "ChromaTransformer2DModel"
# BFL/ComfyUI names (ComfyUI's two spellings) and the name diffusers' checkpoint sniffing uses.
FILE_KEYS = (
    "distilled_guidance_layer.0.norms.0.scale",
    "distilled_guidance_layer.norms.0.scale",
    "distilled_guidance_layer.in_proj.bias",
)
_PREFIXES = ("", "model.diffusion_model.", "transformer.")


def _matches(info: ModelInfo) -> bool:
    cfg = info.config("transformer")
    return info.class_name.startswith("Chroma") or cfg.get("_class_name") == TRANSFORMER_CLASS


def is_chroma_file(probe: TensorProbe) -> bool:
    """Whether a single file holds a Chroma transformer (not Chroma Radiance)."""
    if not any(p + k in probe.shapes for p in _PREFIXES for k in FILE_KEYS):
        return False
    return not probe.has_prefix(*(p + "nerf_blocks." for p in _PREFIXES))


def _call_kwargs(pipe, width: int, height: int) -> dict:
    """ChromaInpaintPipeline (diffusers 0.42) reads ``transformer.config.guidance_embeds``,
    which ChromaTransformer2DModel never registers (Chroma has no guidance embedding; the
    Chroma1-HD config's ``guidance_embeds: false`` is dropped as unexpected at load): register
    the False it means. No extra pipeline arguments."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None and "guidance_embeds" not in transformer.config:
        transformer.register_to_config(guidance_embeds=False)
    return {}


def _tiny(folder):
    """A tiny random Chroma pipeline folder (the real architecture, test sizes)."""
    from studio.engine.fixtures.tiny_flow_models import build_tiny_chroma

    return build_tiny_chroma(folder)


FAMILY = Family(
    name="chroma",
    label="Chroma",
    pipelines={
        "txt2img": "ChromaPipeline",
        "img2img": "ChromaImg2ImgPipeline",
        "inpaint": "ChromaInpaintPipeline",
    },
    matches=_matches,
    match_file=lambda probe: "chroma1-hd" if is_chroma_file(probe) else None,
    priority=23,  # a Chroma file also has FLUX.1's block names: tried before FLUX.1 and variants
    default_size=(1024, 1024),
    default_steps=40,
    default_guidance=3.0,
    prediction="flow",
    guidance_kind="cfg",
    supports_negative_prompt=True,
    text_encoders=("text_encoder",),
    prompt_weighting=False,
    latent_channels=16,
    latent_packing="2x2",
    size_multiple=16,  # VAE factor 8 x 2x2 patches
    latent_rgb=FLUX1_RGB,
    latent_rgb_bias=FLUX1_BIAS,
    preview_decoder="taef1",
    preview_repo="madebyollin/taef1",
    preview_env="STUDIO_TAEF1",
    dtypes=("bfloat16", "float32"),
    single_file_configs={"chroma1-hd": "lodestones/Chroma1-HD"},
    transformer_class=TRANSFORMER_CLASS,
    # Chroma1-HD.safetensors 17.8 GB (8.9B parameters in bf16) + T5-XXL 9.5 GB + VAE 0.17 GB;
    # 19 double + 38 single blocks as FLUX.1; working memory as FLUX.1's (same latents).
    memory=(
        ModelNeeds(
            "chroma1-hd",
            "Chroma1-HD",
            "chroma",
            17.8,
            9.5,
            0.17,
            57,
            24,
            2.0,
            3.0,
            te_layer_gb=0.27,
            te_keep=0.25,
        ),
    ),
    memory_names=((r"chroma", "chroma1-hd"),),
    call_kwargs=_call_kwargs,
    tiny_model=_tiny,
)
