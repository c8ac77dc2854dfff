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
    # k-diffusion's sample_dpmpp_2s_ancestral has no diffusers twin; the closest is the
    # second-order singlestep DPM-Solver++ in its SDE form (fresh noise every step, drawn
    # from the job's generator), which is what "ancestral" means to users.
    "DPM++ 2S a": SamplerSpec(
        "DPMSolverSinglestepScheduler", {"solver_order": 2, "algorithm_type": "sde-dpmsolver++"}
    ),
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
    "DPMSolverSinglestepScheduler": "DPM++ 2S",
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


# Noise-schedule options a sampler name decides (a name without "Karras" resets them).
_SIGMA_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
# Solver options of one class that must not leak into another.
_SOLVER_OPTIONS = ("algorithm_type", "solver_order", "skip_prk_steps", "solver_type")


def is_turbo(model_name: str) -> bool:
    """Distilled few-step models by name: SD-Turbo / SDXL-Turbo (adversarial diffusion
    distillation, Sauer et al. 2023) and LCMs (latent consistency models, Luo et al. 2023):
    1-8 steps that must start at the last training timestep (trailing spacing)."""
    name = model_name.lower()
    return "turbo" in name or "lcm" in name


def _accepts(cls, option: str) -> bool:
    import inspect

    try:
        return option in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def make_scheduler(
    name: str | None, base_config: dict, turbo: bool = False, spacing: str | None = None
):
    """A fresh scheduler for one job: ``name`` (None = the model's default class) built from
    the model's ``base_config`` plus the sampler's overrides.

    - A named sampler decides the noise schedule: "DPM++ 2M" resets a model config's
      ``use_karras_sigmas`` (Karras et al. 2022 sigmas only with a "Karras" name).
    - ``spacing`` (the catalog's ``recommended.timestep_spacing``), or "trailing" for turbo and
      LCM models, is applied to every sampler class that has the option (Lin et al. 2024,
      "Common Diffusion Noise Schedules and Sample Steps are Flawed": trailing spacing makes
      the first step start at t = T-1; with "leading" a 1-step PNDM/DDIM starts at t=1 and
      UniPC at t=501)."""
    import diffusers

    cfg = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    if name is None:
        cls_name = base_config.get("_class_name", "PNDMScheduler")
        overrides: dict = {}
    else:
        spec = SCHEDULERS[canonical_name(name)]
        cls_name, overrides = spec.cls, dict(spec.overrides)
        for k in _SIGMA_OPTIONS:
            cfg.pop(k, None)
        if cls_name != base_config.get("_class_name"):
            # Options of the model's own class don't carry over to another solver.
            for k in _SOLVER_OPTIONS:
                cfg.pop(k, None)
    cfg.update(overrides)
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise BadInput(f"Scheduler {cls_name} is not available in this diffusers version")
    spacing = spacing or ("trailing" if turbo else None)
    if spacing and _accepts(cls, "timestep_spacing"):
        cfg["timestep_spacing"] = spacing
    try:
        return cls.from_config(cfg)
    except ImportError as e:  # a class whose optional dependency is missing
        raise BadInput(f"Sampler {name or cls_name} is not available here ({_first(e)})") from e


def _first(e: BaseException) -> str:
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def seed_noise(scheduler, seeds: list[int]) -> None:
    """Seed the noise of samplers that don't draw from the pipeline's generator: diffusers'
    DPMSolverSDEScheduler (DPM++ SDE) samples a Brownian tree (torchsde) from
    ``noise_sampler_seed``, which is None (fresh entropy every run) unless set, so without this
    the same seed gave different images. One seed per image of the batch."""
    if hasattr(scheduler, "noise_sampler_seed"):
        scheduler.noise_sampler_seed = seeds[0] if len(seeds) == 1 else list(seeds)
        scheduler.noise_sampler = None


def scheduler_label(scheduler) -> str:
    """The user-facing name of the scheduler that actually runs (for metadata): its class, its
    solver variant and its sigma schedule ("DPM++ 2M SDE Karras", "DPM++ 2S a", ...)."""
    cls_name = type(scheduler).__name__
    cfg = getattr(scheduler, "config", {})
    label = _DEFAULT_LABEL.get(cls_name, cls_name)
    algorithm = str(cfg.get("algorithm_type", ""))
    if cls_name == "DPMSolverMultistepScheduler" and "sde" in algorithm:
        label = "DPM++ 2M SDE"
    if cls_name == "DPMSolverSinglestepScheduler" and "sde" in algorithm:
        label = "DPM++ 2S a"
    if cfg.get("use_karras_sigmas") and _key(label + " karras") in _LOOKUP:
        label += " Karras"
    return label


def ran_label(requested: str | None, scheduler) -> str:
    """The sampler name metadata records for a job: the canonical form of the name asked for
    (A1111's spelling: "PLMS", "DPM++ 2M Karras") when that is what was built, else the name of
    the scheduler that actually ran (the model's default, or a fallback)."""
    if requested:
        name = canonical_name(requested)
        if type(scheduler).__name__ == SCHEDULERS[name].cls:
            return name
    return scheduler_label(scheduler)
