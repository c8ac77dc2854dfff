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

Schedule types (A1111 >= 1.9's separate "Schedule type", ComfyUI's scheduler): a Studio
sampler name may end with one ("DPM++ 2M SDE Exponential", "Euler SGM Uniform"; see
``studio.core.sampler_names`` for how A1111 and ComfyUI spellings become such a name). Each is
a diffusers option, checked against k-diffusion / A1111's formulas in the tests:

- Uniform / Normal (``get_sigmas(n)``, t = linspace(T-1, 0, n)): "linspace" spacing, the
  k-diffusion samplers' plain names;
- Karras, Exponential, Beta: ``use_karras_sigmas`` / ``use_exponential_sigmas`` /
  ``use_beta_sigmas`` (Beta(0.6, 0.6), A1111's ``beta_dist_alpha``/``beta``), between the
  model's sigma_min and sigma_max ("leading" spacing is replaced by "linspace" for them);
- SGM Uniform (t = linspace(T-1, 0, n + 1)[:-1]) and Simple (t = T-1 - floor(k T / n)):
  "trailing" spacing (t = round(T - k T / n) - 1), as diffusers documents for sgm_uniform:
  Simple's timesteps exactly where n divides T, otherwise at most one training step off; SGM
  Uniform's within 1.5 training steps (its t are not integers);
- DDIM (t = 1, 1 + T//n, ...): "leading" spacing with steps_offset 1, for the classes whose
  leading grid is that one (not the DPM-Solver family's n + 1 points); refused at a step count
  where A1111's grid has more than n points (30 steps: 31).

A combination diffusers can't build is refused in one line naming it (Euler a has no Karras
sigmas in diffusers; DPM2 / DPM2 a drop the next-to-last sigma of their schedule, which
diffusers can only emulate for the uniform grid; ComfyUI's beta scheduler is another formula
than A1111's; Polyexponential, KL Optimal, Align Your Steps have no diffusers option).

A zero-terminal-SNR model (``rescale_betas_zero_snr`` in its scheduler config: SDXL
v-prediction ``ztsnr`` files) runs only on the classes with that option
(:data:`ZERO_SNR_CLASSES`); Heun, LMS, DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE, PNDM / PLMS and
DEIS would sample it on the unrescaled betas without a word, so they are refused in one line
naming the samplers that work (:func:`check_zero_snr`).

The metadata names what was built (:func:`ran_label` reads the scheduler's class and config),
so a build that lost an option shows under its real name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from studio.core import sampler_names as vocab
from studio.core.errors import BadInput


@dataclass(frozen=True)
class SamplerSpec:
    cls: str
    overrides: dict = field(default_factory=dict)
    # A1111 starts this sampler at t = T-1 (k-diffusion sigmas, UniPC time_uniform).
    starts_at_t_max: bool = False


# A k-diffusion sampler (A1111 starts it at sigma_max); a table entry, built at import.
_k = partial(SamplerSpec, starts_at_t_max=True)


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
    # ComfyUI sampler names (comfy/samplers.py KSAMPLER_NAMES) with an A1111 twin here
    **{k: v for k, v in vocab.COMFY_SAMPLERS.items() if v in SCHEDULERS},
}


def _key(name: str) -> str:
    return " ".join(name.strip().lower().replace("-", " ").split())


_LOOKUP = {_key(n): n for n in SCHEDULERS} | {_key(a): n for a, n in _ALIASES.items()}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


# Schedule type -> the config options that build it (see the module docstring).
SCHEDULE_OPTIONS: dict[str, dict] = {
    "Uniform": {"timestep_spacing": "linspace"},
    "Normal": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
    "DDIM": {"timestep_spacing": "leading", "steps_offset": 1},
}
_NO_DIFFUSERS_OPTION = {
    "Polyexponential": "k-diffusion's get_sigmas_polyexponential has no diffusers option",
    "KL Optimal": "diffusers has no KL-optimal sigmas",
    "Align Your Steps": "diffusers schedulers have no Align Your Steps option",
    "Linear Quadratic": "diffusers has no linear-quadratic schedule",
    vocab.COMFY_BETA: (
        "ComfyUI's beta takes the sigmas of training timesteps at Beta(0.6, 0.6) quantiles; "
        "diffusers' use_beta_sigmas (A1111's Beta) spaces the sigmas themselves"
    ),
}
# diffusers classes with use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas, and
# those without timestep_spacing (a test checks both against the installed diffusers). Static,
# so names are checked without importing diffusers (the UI resolves pasted names too).
SIGMA_CLASSES = frozenset(
    {
        "EulerDiscreteScheduler",
        "HeunDiscreteScheduler",
        "LMSDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "DPMSolverSDEScheduler",
        "UniPCMultistepScheduler",
        "DEISMultistepScheduler",
    }
)
NO_SPACING_CLASSES = frozenset({"DPMSolverSinglestepScheduler"})
# Classes whose "leading" spacing (steps_offset 1) is A1111's DDIM grid t = 1, 1 + T//n, ...;
# the DPM-Solver family (DPM++ 2M, UniPC, DEIS) spaces n + 1 points instead (tested).
_LEADING_IS_DDIM_GRID = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "HeunDiscreteScheduler",
        "LMSDiscreteScheduler",
        "DPMSolverSDEScheduler",
        "DDIMScheduler",
        "DDPMScheduler",
        "PNDMScheduler",
    }
)
# A1111 runs DPM2 / DPM2 a on their schedule without its next-to-last sigma.
_DISCARD_PENULTIMATE_CLASSES = frozenset(
    {"KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"}
)


# diffusers classes with rescale_betas_zero_snr (a test checks it against the installed
# diffusers). The others build from a zero-terminal-SNR model's config without the option and
# sample it on its original betas (SDXL: sigma_max 14.6 where the model was trained up to pure
# noise, 4096 in diffusers' rescaled schedule), with no error: they are refused for it.
ZERO_SNR_CLASSES = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "UniPCMultistepScheduler",
        "DDIMScheduler",
        "DDPMScheduler",
        "LCMScheduler",
        "TCDScheduler",
    }
)


def zero_snr_samplers() -> list[str]:
    """The A1111 samplers (plain names) whose diffusers class runs a zero-terminal-SNR model."""
    return [
        n
        for n, spec in SCHEDULERS.items()
        if spec.cls in ZERO_SNR_CLASSES and vocab.a1111_label(n) == n
    ]


def check_zero_snr(name: str | None, base_config: Mapping) -> None:
    """BadInput in one line when the model's scheduler config has ``rescale_betas_zero_snr``
    (an SDXL v-prediction ``ztsnr`` file, NoobAI-XL V-Pred) and sampler ``name`` (None: the
    config's own class) is built on a diffusers class without that option, naming the
    samplers to pick instead."""
    if not base_config.get("rescale_betas_zero_snr"):
        return
    if name is None:
        cls_name = str(base_config.get("_class_name", "PNDMScheduler"))
        shown = _DEFAULT_LABEL.get(cls_name, cls_name)
    else:
        shown = canonical_name(name)
        cls_name = SCHEDULERS[split_name(shown)[0]].cls
    if cls_name in ZERO_SNR_CLASSES:
        return
    raise BadInput(
        f"Sampler {shown} can't run this zero-terminal-SNR model (diffusers' {cls_name} has no "
        f"rescale_betas_zero_snr); pick {', '.join(zero_snr_samplers())}"
    )


def schedule_types() -> list[str]:
    """The schedule types a sampler name can carry (A1111's labels)."""
    return ["Automatic", *SCHEDULE_OPTIONS]


def _unknown(name: str) -> BadInput:
    return BadInput(f"Unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")


def split_name(name: str) -> tuple[str, str | None]:
    """(Studio sampler, schedule type or None) of a sampler name: "DPM++ 2M Karras" ->
    ("DPM++ 2M Karras", None) (a name of its own), "DPM++ 2M SDE Exponential" ->
    ("DPM++ 2M SDE", "Exponential"). BadInput for an unknown sampler."""
    found = _LOOKUP.get(_key(name))
    if found is not None:
        return found, None
    base, label = vocab.split_schedule(name)
    found = _LOOKUP.get(_key(base)) if label is not None else None
    if found is None:
        raise _unknown(name)
    return found, label


def _unbuildable(cls: str, label: str) -> str | None:
    if cls in _DISCARD_PENULTIMATE_CLASSES:
        return (
            "A1111 drops the next-to-last sigma of DPM2's schedule, which diffusers can only "
            "emulate on the uniform grid (use it plain or with Karras)"
        )
    if label == "DDIM" and cls not in _LEADING_IS_DDIM_GRID:
        return f"diffusers' {cls} spaces n + 1 points with leading spacing, not A1111's DDIM grid"
    for option in SCHEDULE_OPTIONS[label]:
        if option.startswith("use_") and cls not in SIGMA_CLASSES:
            return f"diffusers' {cls} has no {option}"
        if option == "timestep_spacing" and cls in NO_SPACING_CLASSES:
            return f"diffusers' {cls} has no timestep_spacing"
    return None


def canonical_name(name: str, schedule_type: str | None = None, *, infotext: bool = False) -> str:
    """The canonical sampler name for ``name`` (case/spacing-insensitive, A1111, ComfyUI and
    old A1111 API spellings accepted) and ``schedule_type`` (A1111 >= 1.9's separate
    "Schedule type", or a ComfyUI scheduler: "DPM++ 2M" + "Karras" -> "DPM++ 2M Karras",
    "dpmpp_2m_sde" + "exponential" -> "DPM++ 2M SDE Exponential"; how the two combine is
    ``studio.core.sampler_names.compose``, ``infotext`` as there). Raises BadInput in one line
    for an unknown name or a combination diffusers can't build."""
    chosen = vocab.schedule_label(schedule_type)
    if chosen is not None and chosen not in (*vocab.ALL_LABELS, vocab.AUTOMATIC):
        if str(schedule_type).strip() not in vocab.COMFY_SCHEDULERS:
            raise BadInput(
                f"Unknown schedule type {chosen!r}; choose one of: {', '.join(schedule_types())}"
            )
    composed = vocab.compose(name, schedule_type, infotext=infotext)
    sampler, label = split_name(composed)
    if label is None:
        return sampler
    if label in _NO_DIFFUSERS_OPTION:
        raise BadInput(f"Schedule type {label}: {_NO_DIFFUSERS_OPTION[label]}; choose another")
    if label not in SCHEDULE_OPTIONS:
        raise BadInput(
            f"Unknown schedule type {label!r}; choose one of: {', '.join(schedule_types())}"
        )
    spec = SCHEDULERS[sampler]
    if sampler.endswith(" Karras"):
        raise BadInput(f"{sampler} has the Karras schedule already; drop {label!r}")
    if label in ("Uniform", "Normal") and spec.starts_at_t_max:
        return sampler
    if label == "DDIM" and spec.cls in ("DDIMScheduler", "PNDMScheduler"):
        return sampler  # their own grid is A1111's get_timesteps: t = 1, 1 + T/n, ...
    if label == "Karras" and f"{sampler} Karras" in SCHEDULERS:
        return f"{sampler} Karras"
    reason = _unbuildable(spec.cls, label)
    if reason:
        raise BadInput(f"{sampler} with the {label} schedule can't be built: {reason}")
    return f"{sampler} {label}"


def check_schedule_steps(name: str | None, steps: int) -> None:
    """BadInput where the build differs from A1111 at this step count: the DDIM schedule type
    (A1111's ``ddim_scheduler``: t = 1, 1 + T//n, ... while < T) has more than ``steps``
    points when T//n doesn't divide T - 1 into ``steps`` parts (30 steps: 31 timesteps), and
    diffusers' leading spacing always gives ``steps``."""
    if not name:
        return
    _sampler, label = split_name(canonical_name(name))
    if label != "DDIM" or steps < 1:
        return
    points = len(range(1, 1000, max(1000 // steps, 1)))
    if points != steps:
        raise BadInput(
            f"Schedule type DDIM at {steps} steps: A1111 samples {points} timesteps there "
            "(t = 1, 1 + 1000 // steps, ...), diffusers' leading spacing gives "
            f"{steps}; use a step count that divides 1000 (20, 25, 40, 50) or another schedule"
        )


def prompt_schedule_steps(scheduler, steps: int) -> int:
    """The step count A1111 builds prompt-editing schedules for (``total_steps`` in
    ``processing.setup_conds``): twice the steps for its ``second_order`` samplers (Heun,
    DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE), whose denoiser counts every model call."""
    return steps * (2 if vocab.second_order(scheduler_label(scheduler)) else 1)


# Noise-schedule options a sampler name decides (a name without "Karras" resets them).
_SIGMA_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
# Solver options of one class that must not leak into another.
_SOLVER_OPTIONS = ("algorithm_type", "solver_order", "skip_prk_steps", "solver_type")


def _accepts(cls, option: str) -> bool:
    import inspect

    return option in inspect.signature(cls.__init__).parameters


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

    check_zero_snr(name, base_config)
    cfg = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    schedule: dict = {}
    if name is None:
        cls_name = base_config.get("_class_name", "PNDMScheduler")
        overrides: dict = {}
    else:
        sampler, label = split_name(canonical_name(name))
        spec = SCHEDULERS[sampler]
        schedule = dict(SCHEDULE_OPTIONS[label]) if label else {}
        cls_name, overrides = spec.cls, dict(spec.overrides)
        for k in _SIGMA_OPTIONS:
            cfg.pop(k, None)
        from_sigma_max = spec.starts_at_t_max or any(k.startswith("use_") for k in schedule)
        if from_sigma_max and cfg.get("timestep_spacing") == "leading":
            # A1111's schedule for this sampler starts at sigma_max (see the module docstring)
            cfg["timestep_spacing"] = "linspace"
        if cls_name != base_config.get("_class_name"):
            # Options of the model's own class don't carry over to another solver.
            for k in _SOLVER_OPTIONS:
                cfg.pop(k, None)
        overrides.update(schedule)
    cfg.update(overrides)
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise BadInput(f"Scheduler {cls_name} is not available in this diffusers version")
    spacing = spacing or ("trailing" if turbo else None)
    if spacing and _accepts(cls, "timestep_spacing") and "timestep_spacing" not in schedule:
        # an explicit schedule type decides the spacing itself
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
    elif cfg.get("use_exponential_sigmas"):
        label += " Exponential"
    elif cfg.get("use_beta_sigmas"):
        label += " Beta"
    return label


def _build_of(name: str):
    """What a name builds (sampler spec + schedule options), None for a label that is no
    Studio name ("DPM++ 3M")."""
    try:
        sampler, label = split_name(name)
    except BadInput:
        return None
    return SCHEDULERS[sampler], SCHEDULE_OPTIONS.get(label or "", {})


def ran_label(requested: str | None, scheduler) -> str:
    """The sampler name metadata records for a job: the name of the scheduler that actually
    ran (:func:`scheduler_label`, from its class and config), spelled as requested when the
    requested name builds the very same thing ("PLMS" for the PNDM build). A requested
    spacing schedule type (SGM Uniform, Simple, DDIM, Uniform) is named only when the built
    config has that spacing."""
    label = scheduler_label(scheduler)
    if requested:
        name = canonical_name(requested)
        _sampler, schedule = split_name(name)
        options = SCHEDULE_OPTIONS.get(schedule or "", {})
        cfg = getattr(scheduler, "config", {})
        if "timestep_spacing" in options and all(cfg.get(k) == v for k, v in options.items()):
            label = f"{label} {schedule}"
        if name != label and _build_of(label) is not None and _build_of(label) == _build_of(name):
            return name
    return label
