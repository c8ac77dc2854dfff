"""Samplers by the names users know (AUTOMATIC1111 / ComfyUI vocabulary) mapped onto diffusers
schedulers.

Each name is a diffusers scheduler class plus config overrides, applied on top of the model's
own scheduler config (so beta schedule, prediction type and training timesteps stay the
model's). The mapping follows the diffusers documentation table "A1111/k-diffusion vs
diffusers" (e.g. "DPM++ 2M Karras" = DPMSolverMultistepScheduler with use_karras_sigmas=True).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.core.errors import BadInput


@dataclass(frozen=True)
class SamplerSpec:
    cls: str
    overrides: dict = field(default_factory=dict)


SCHEDULERS: dict[str, SamplerSpec] = {
    "Euler": SamplerSpec("EulerDiscreteScheduler"),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "Euler Karras": SamplerSpec("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": SamplerSpec("HeunDiscreteScheduler"),
    "LMS": SamplerSpec("LMSDiscreteScheduler"),
    "LMS Karras": SamplerSpec("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2": SamplerSpec("KDPM2DiscreteScheduler"),
    "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler"),
    "DPM++ 2M": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    "DPM++ 2M Karras": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ 2M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
    ),
    "DPM++ 2M SDE Karras": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ 2S a": SamplerSpec("DPMSolverSinglestepScheduler", {"solver_order": 2}),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler"),
    "DPM++ SDE Karras": SamplerSpec("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": SamplerSpec("DDIMScheduler", {"set_alpha_to_one": False}),
    "DDPM": SamplerSpec("DDPMScheduler"),
    "PNDM": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": SamplerSpec("UniPCMultistepScheduler"),
    "DEIS": SamplerSpec("DEISMultistepScheduler"),
    "LCM": SamplerSpec("LCMScheduler"),
    "TCD": SamplerSpec("TCDScheduler"),
}

# diffusers class -> the name we report for a model's own default scheduler.
_DEFAULT_LABEL = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DPMSolverSinglestepScheduler": "DPM++ 2S a",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM",
    "DDPMScheduler": "DDPM",
    "PNDMScheduler": "PNDM",
    "UniPCMultistepScheduler": "UniPC",
    "DEISMultistepScheduler": "DEIS",
    "LCMScheduler": "LCM",
    "TCDScheduler": "TCD",
}

# Spellings seen in the wild (A1111 internal names, ComfyUI names) -> our names.
_ALIASES = {
    "euler_a": "Euler a",
    "euler_ancestral": "Euler a",
    "euler a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_karras": "DPM++ SDE Karras",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpm2_ancestral": "DPM2 a",
    "k_euler": "Euler",
    "k_euler_a": "Euler a",
    "k_lms": "LMS",
    "uni_pc": "UniPC",
    "unipc": "UniPC",
    "lms_karras": "LMS Karras",
    "dpm++": "DPM++ 2M",
    "dpmpp": "DPM++ 2M",
    "dpm++ karras": "DPM++ 2M Karras",
    "ddim_uniform": "DDIM",
}


def _key(name: str) -> str:
    return " ".join(name.strip().lower().replace("-", " ").split())


_LOOKUP = {_key(n): n for n in SCHEDULERS} | {_key(a): n for a, n in _ALIASES.items()}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def canonical_name(name: str, schedule_type: str | None = None) -> str:
    """The canonical sampler name for ``name`` (case/spacing-insensitive, A1111 and ComfyUI
    spellings accepted). ``schedule_type`` is A1111's separate "Schedule type" field (e.g.
    "Karras" with "DPM++ 2M"). Raises BadInput for an unknown name."""
    found = _LOOKUP.get(_key(name))
    if found is None:
        raise BadInput(f"Unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    if schedule_type and schedule_type.strip().lower() == "karras":
        karras = _LOOKUP.get(_key(found + " karras"))
        if karras:
            found = karras
    return found


def is_turbo(model_name: str) -> bool:
    """SD-Turbo / SDXL-Turbo (adversarial diffusion distillation): 1-4 steps, guidance 0,
    Euler with trailing timestep spacing (Sauer et al. 2023)."""
    return "turbo" in model_name.lower()


def make_scheduler(name: str | None, base_config: dict, turbo: bool = False):
    """A fresh scheduler for one job: ``name`` (None = the model's default class) built from
    the model's ``base_config`` plus the sampler's overrides. For turbo models, Euler-type
    samplers use trailing timestep spacing so 1 step starts at the last training timestep."""
    import diffusers

    cfg = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    if name is None:
        cls_name = base_config.get("_class_name", "PNDMScheduler")
        overrides: dict = {}
    else:
        spec = SCHEDULERS[canonical_name(name)]
        cls_name, overrides = spec.cls, dict(spec.overrides)
        if cls_name != base_config.get("_class_name"):
            # Options of the model's own class don't carry over to another solver.
            for k in ("use_karras_sigmas", "algorithm_type", "solver_order", "skip_prk_steps"):
                cfg.pop(k, None)
    cfg.update(overrides)
    if turbo and cls_name in ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"):
        cfg["timestep_spacing"] = "trailing"
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise BadInput(f"Scheduler {cls_name} is not available in this diffusers version")
    return cls.from_config(cfg)


def scheduler_label(scheduler) -> str:
    """The user-facing name of a scheduler instance (for metadata)."""
    cls_name = type(scheduler).__name__
    cfg = getattr(scheduler, "config", {})
    label = _DEFAULT_LABEL.get(cls_name, cls_name)
    if cls_name == "DPMSolverMultistepScheduler" and "sde" in str(cfg.get("algorithm_type", "")):
        label = "DPM++ 2M SDE"
    if cfg.get("use_karras_sigmas") and _key(label + " karras") in _LOOKUP:
        label += " Karras"
    return label
