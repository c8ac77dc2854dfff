"""Diffusion: model loading, generation (txt2img, img2img, ControlNet, LoRA), inpainting and
outpainting, step previews and samplers. Imports torch and diffusers on first use."""

from studio.engine._lazy import lazy_face

__all__ = [
    "StepTap",
    "canonical_name",
    "detect_checkpoint",
    "latent_to_rgb",
    "load_controlnet",
    "load_pipeline",
    "make_scheduler",
    "model_family",
    "outpaint",
    "outpaint_request",
    "recommended_settings",
    "render_capabilities",
    "render_table",
    "run_flow_generate",
    "run_generate",
    "run_inpaint",
    "scheduler_names",
    "validate_request",
]

_EXPORTS = {
    "load_pipeline": "pipeline",
    "run_generate": "generate",
    "run_flow_generate": "flow_generate",
    "render_capabilities": "capabilities",
    "render_table": "memory",
    "validate_request": "generate",
    "outpaint": "inpaint",
    "outpaint_request": "inpaint",
    "run_inpaint": "inpaint",
    "detect_checkpoint": "loader",
    "load_controlnet": "loader",
    "recommended_settings": "defaults",
    "model_family": "defaults",
    "StepTap": "previews",
    "latent_to_rgb": "previews",
    "canonical_name": "schedulers",
    "make_scheduler": "schedulers",
    "scheduler_names": "schedulers",
}

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
