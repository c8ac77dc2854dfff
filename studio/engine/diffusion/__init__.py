"""Diffusion: model loading, generation (txt2img, img2img, ControlNet, LoRA), inpainting and
outpainting, step previews and samplers. Imports torch and diffusers on first use."""

from studio.engine._lazy import lazy_face

__all__ = [
    "OFFLOADS",
    "WEIGHT_FORMATS",
    "available_formats",
    "device_memory",
    "family_label",
    "is_flow_family",
    "model_needs",
    "plan_for_family",
    "plan_for_model",
    "plan_line",
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
    "OFFLOADS": "memory",
    "WEIGHT_FORMATS": "memory",
    "available_formats": "memory",
    "device_memory": "memory_models",  # the memory plan per model (torch-free but this one)
    "family_label": "memory_models",
    "is_flow_family": "memory_models",
    "model_needs": "memory_models",
    "plan_for_family": "memory_models",
    "plan_for_model": "memory_models",
    "plan_line": "memory_models",
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
