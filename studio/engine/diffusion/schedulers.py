"""Samplers by the names users know (AUTOMATIC1111 / ComfyUI vocabulary) mapped onto diffusers
schedulers.

Each name is a diffusers scheduler class plus config overrides, applied on top of the model's
own scheduler config (so beta schedule, prediction type and training timesteps stay the
model's). The mapping follows the diffusers documentation table "A1111/k-diffusion vs
diffusers" (e.g. "DPM++ 2M Karras" = DPMSolverMultistepScheduler with use_karras_sigmas=True)
and A1111's own sampler list (``modules/sd_samplers_kdiffusion.py``, ``samplers_k_diffusion``):

- every A1111 name has its entry, the Karras ones too ("DPM2 Karras", "DPM2 a Karras",
  "DPM++ 2S a Karras"), and A1111's internal aliases ("k_dpmpp_2m_ka", ...) are accepted;
  "DPM fast" and "DPM adaptive" have no diffusers twin and are refused;
- A1111 runs the k-diffusion samplers on ``get_sigmas(n)`` / ``get_sigmas_karras(n, sigma_min,
  sigma_max)``, which start at the model's sigma_max (t = T-1), and UniPC with skip type
  "time_uniform" (t from T-1 down): those names (``starts_at_t_max``) replace a model config's
  "leading" spacing (SDXL's ships one, which started Euler at t=951 of 1000 for 20 steps and
  the Karras schedules at sigma 11.0 instead of 14.6) by "linspace";
- A1111 runs "DPM2" and "DPM2 a" with ``discard_next_to_last_sigma``: the schedule of n + 1
  steps without its smallest non-zero sigma, so the last step goes from sigma(t ~ T/n) to 0.
  diffusers has no such option; "trailing" spacing (t = T-1, T-1-T/n, ..., T/n-1) gives that
  grid to within about 1%, where "linspace" ended at sigma_min. The Karras variants keep
  diffusers' documented mapping (Karras sigmas down to sigma_min): A1111 drops the last one;
- "UniPC" is A1111's default UniPC: variant "bh1", order 3 (``uni_pc_variant``,
  ``uni_pc_order`` in ``modules/shared_options.py``), not diffusers' bh2 / order 2, ending at
  t = 1/N, sigma_min, as A1111's ``UniPC.sample`` does (t_0 = 1/N, no denoise_to_zero); a
  bh1 step to sigma 0 divides by h = inf in diffusers and gives NaN.

The metadata names what was built (:func:`ran_label` reads the scheduler's class and config),
so a build that lost an option shows under its real name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.core.errors import BadInput


@dataclass(frozen=True)
class SamplerSpec:
    cls: str
    overrides: dict = field(default_factory=dict)
    # A1111 starts this sampler at t = T-1 (k-diffusion sigmas, UniPC time_uniform).
    starts_at_t_max: bool = False


def _k(cls: str, overrides: dict | None = None) -> SamplerSpec:
    return SamplerSpec(cls, dict(overrides or {}), starts_at_t_max=True)


_KARRAS = {"use_karras_sigmas": True}
_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
_2S_A = {"solver_order": 2, "algorithm_type": "sde-dpmsolver++"}
_DISCARD_PENULTIMATE = {"timestep_spacing": "trailing"}  # see the module docstring


SCHEDULERS: dict[str, SamplerSpec] = {
    "Euler": _k("EulerDiscreteScheduler"),
    "Euler a": _k("EulerAncestralDiscreteScheduler"),
    "Euler Karras": _k("EulerDiscreteScheduler", _KARRAS),
    "Heun": _k("HeunDiscreteScheduler"),
    "LMS": _k("LMSDiscreteScheduler"),
    "LMS Karras": _k("LMSDiscreteScheduler", _KARRAS),
    "DPM2": _k("KDPM2DiscreteScheduler", _DISCARD_PENULTIMATE),
    "DPM2 Karras": _k("KDPM2DiscreteScheduler", _KARRAS),
    "DPM2 a": _k("KDPM2AncestralDiscreteScheduler", _DISCARD_PENULTIMATE),
    "DPM2 a Karras": _k("KDPM2AncestralDiscreteScheduler", _KARRAS),
    "DPM++ 2M": _k("DPMSolverMultistepScheduler", _2M),
    "DPM++ 2M Karras": _k("DPMSolverMultistepScheduler", _2M | _KARRAS),
    "DPM++ 2M SDE": _k("DPMSolverMultistepScheduler", _2M_SDE),
    "DPM++ 2M SDE Karras": _k("DPMSolverMultistepScheduler", _2M_SDE | _KARRAS),
    # k-diffusion's sample_dpmpp_2s_ancestral has no diffusers twin; the closest is the
    # second-order singlestep DPM-Solver++ in its SDE form (fresh noise every step, drawn
    # from the job's generator), which is what "ancestral" means to users.
    "DPM++ 2S a": _k("DPMSolverSinglestepScheduler", _2S_A),
    "DPM++ 2S a Karras": _k("DPMSolverSinglestepScheduler", _2S_A | _KARRAS),
    "DPM++ SDE": _k("DPMSolverSDEScheduler"),
    "DPM++ SDE Karras": _k("DPMSolverSDEScheduler", _KARRAS),
    "DDIM": SamplerSpec("DDIMScheduler", {"set_alpha_to_one": False}),
    "DDPM": SamplerSpec("DDPMScheduler"),
    "PNDM": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": _k(
        "UniPCMultistepScheduler",
        {"solver_type": "bh1", "solver_order": 3, "final_sigmas_type": "sigma_min"},
    ),
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
    # A1111's own aliases (samplers_k_diffusion, third column)
    "k_euler_ancestral": "Euler a",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "k_dpmpp_2s_a": "DPM++ 2S a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_lms_ka": "LMS Karras",
    "k_dpm_2_ka": "DPM2 Karras",
    "k_dpm_2_a_ka": "DPM2 a Karras",
    "k_dpmpp_2s_a_ka": "DPM++ 2S a Karras",
    "k_dpmpp_2m_ka": "DPM++ 2M Karras",
    "k_dpmpp_sde_ka": "DPM++ SDE Karras",
    "k_dpmpp_2m_sde_ka": "DPM++ 2M SDE Karras",
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
        if spec.starts_at_t_max and cfg.get("timestep_spacing") == "leading":
            # A1111's schedule for this sampler starts at sigma_max (see the module docstring)
            cfg["timestep_spacing"] = "linspace"
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
    """The user-facing name of the scheduler that actually runs (for metadata), read from its
    class and config only: the solver variant ("DPM++ 2M SDE", "DPM++ 3M", "DPM++ 2S a") and
    the sigma schedule (" Karras" whenever ``use_karras_sigmas`` is set)."""
    cls_name = type(scheduler).__name__
    cfg = getattr(scheduler, "config", {})
    label = _DEFAULT_LABEL.get(cls_name, cls_name)
    algorithm = str(cfg.get("algorithm_type", ""))
    if cls_name == "DPMSolverMultistepScheduler":
        label = f"DPM++ {int(cfg.get('solver_order', 2) or 2)}M"
        if "sde" in algorithm:
            label += " SDE"
    if cls_name == "DPMSolverSinglestepScheduler" and "sde" in algorithm:
        label = "DPM++ 2S a"
    if cfg.get("use_karras_sigmas"):
        label += " Karras"
    return label


def ran_label(requested: str | None, scheduler) -> str:
    """The sampler name metadata records for a job: the name of the scheduler that actually
    ran (:func:`scheduler_label`, from its class and config), spelled as requested when the
    requested name builds the very same thing ("PLMS" for the PNDM build)."""
    label = scheduler_label(scheduler)
    if requested:
        name = canonical_name(requested)
        if name != label and SCHEDULERS.get(label) == SCHEDULERS[name]:
            return name
    return label
