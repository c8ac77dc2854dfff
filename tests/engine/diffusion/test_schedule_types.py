"""A1111 >= 1.9 schedule types and ComfyUI's sampler/scheduler pairs against their own
definitions: every sigma grid Studio builds is compared with the formula of A1111's
``modules/sd_schedulers.py`` (transcribed below, computed here from the model's betas, never
read from Studio), names resolve as A1111's ``get_sampler_and_scheduler`` and ComfyUI's
``comfy/samplers.py`` say, what diffusers can't build is refused in one line, and the schedule
type travels through the infotext, the CLI and the metadata of a generated image.

Sources (transcribed, not imported):

- A1111 ``modules/sd_schedulers.py``: ``uniform`` (``inner_model.get_sigmas(n)``),
  ``sgm_uniform`` (t = linspace(t(sigma_max), t(sigma_min), n + 1)[:-1]), ``simple_scheduler``
  (``sigmas[-(1 + int(x * len(sigmas) / n))]``), ``normal_scheduler``, ``ddim_scheduler``
  (x = 1, 1 + len // n, ... < len, reversed), ``beta_scheduler`` (sigma_min + ppf(1 -
  linspace(0, 1, n); 0.6, 0.6) (sigma_max - sigma_min)), k-diffusion's
  ``get_sigmas_exponential`` and ``get_sigmas_karras``, each with a final 0;
- A1111 1.9 ``samplers_k_diffusion`` default schedulers ("DPM++ 2M": karras, "DPM++ 2M SDE":
  exponential, "DPM2 a": karras) and ``get_sampler_and_scheduler``;
- ComfyUI ``KSAMPLER_NAMES`` / ``SCHEDULER_NAMES`` and ``sampler_object`` ("ddim" is Euler).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from studio.core.errors import BadInput
from studio.core.metadata import format_parameters, parse_parameters, request_metadata
from studio.engine.diffusion.sd.schedulers import (
    NO_SPACING_CLASSES,
    SCHEDULERS,
    SIGMA_CLASSES,
    canonical_name,
    check_schedule_steps,
    make_scheduler,
    ran_label,
    scheduler_label,
)

# The scheduler_config.json of the SD 1.5 and SDXL base repositories (runwayml/stable-diffusion-
# v1-5, stabilityai/stable-diffusion-xl-base-1.0), as shipped in models/configs: SDXL's has the
# "leading" spacing that A1111's k-diffusion samplers must not inherit.
_SD15 = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "steps_offset": 1, "trained_betas": None, "skip_prk_steps": True,
}  # fmt: skip
CONFIGS = {
    "sd15": _SD15,
    "sdxl": _SD15 | {
        "_class_name": "EulerDiscreteScheduler", "interpolation_type": "linear",
        "prediction_type": "epsilon", "sample_max_value": 1.0, "timestep_spacing": "leading",
        "use_karras_sigmas": False,
    },
}  # fmt: skip
T = 1000


# -- the model's sigmas and A1111's schedulers (k-diffusion DiscreteSchedule) --------------------
def _train_sigmas(cfg: dict) -> np.ndarray:
    betas = np.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, T, dtype=np.float64) ** 2
    abar = np.cumprod(1.0 - betas)
    return ((1 - abar) / abar) ** 0.5


def _t_to_sigma(train: np.ndarray, t: np.ndarray) -> np.ndarray:
    """k-diffusion DiscreteSchedule.t_to_sigma: log-sigma interpolated between integer t."""
    t = np.asarray(t, dtype=np.float64)
    lo, hi = np.floor(t).astype(int), np.ceil(t).astype(int)
    w = t - lo
    log = np.log(train)
    return np.exp((1 - w) * log[lo] + w * log[hi])


def a1111_uniform(train, n):
    return np.append(_t_to_sigma(train, np.linspace(T - 1, 0, n)), 0.0)


def a1111_normal(train, n):
    # sigma_to_t(sigma_max) = T - 1, sigma_to_t(sigma_min) = 0
    return np.append(_t_to_sigma(train, np.linspace(T - 1, 0, n)), 0.0)


def a1111_sgm_uniform(train, n):
    return np.append(_t_to_sigma(train, np.linspace(T - 1, 0, n + 1)[:-1]), 0.0)


def a1111_simple(train, n):
    ss = len(train) / n
    return np.append([train[-(1 + int(x * ss))] for x in range(n)], 0.0)


def a1111_ddim(train, n):
    ss = max(len(train) // n, 1)
    sigs, x = [], 1
    while x < len(train):
        sigs.append(train[x])
        x += ss
    return np.append(sigs[::-1], 0.0)


def a1111_beta(train, n, alpha=0.6, beta=0.6):
    from scipy import stats

    smin, smax = float(train[0]), float(train[-1])
    ts = [stats.beta.ppf(x, alpha, beta) for x in 1 - np.linspace(0, 1, n)]
    return np.append([smin + x * (smax - smin) for x in ts], 0.0)


def a1111_exponential(train, n):
    smin, smax = float(train[0]), float(train[-1])
    return np.append(np.exp(np.linspace(np.log(smax), np.log(smin), n)), 0.0)


def a1111_karras(train, n, rho=7.0):
    smin, smax = float(train[0]), float(train[-1])
    ramp = np.linspace(0, 1, n)
    return np.append(
        (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho, 0.0
    )


A1111 = {
    "Uniform": a1111_uniform,
    "Normal": a1111_normal,
    "Karras": a1111_karras,
    "Exponential": a1111_exponential,
    "SGM Uniform": a1111_sgm_uniform,
    "Simple": a1111_simple,
    "DDIM": a1111_ddim,
    "Beta": a1111_beta,
}
# how close diffusers' option comes: exact up to float32 where the grids coincide; SGM
# Uniform's t = 999 - 999 k / n against trailing's integer 999 - 1000 k / n (within one
# training step: 2% at the low end of a 20-step grid)
RTOL = {"SGM Uniform": 2e-2}


def _distinct(sigmas) -> np.ndarray:
    values = [float(s) for s in sigmas]
    out = [values[0]]
    for v in values[1:]:
        if v != out[-1]:
            out.append(v)
    return np.array(out)


SAMPLERS = ["Euler", "Heun", "LMS", "DPM++ SDE", "DPM++ 2M"]


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("schedule", list(A1111))
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sigmas_are_a1111s_schedule(sampler, schedule, config):
    """A1111's Euler/Heun/LMS/DPM++ with a schedule type run on the sigmas of sd_schedulers;
    Studio's build for the same pair has those sigmas (20 steps, SD 1.5 and SDXL configs:
    SDXL's "leading" spacing must not leak into any of them)."""
    n = 20
    train = _train_sigmas(CONFIGS[config])
    if sampler == "DPM++ 2M" and schedule in ("Uniform", "Normal", "DDIM"):
        # diffusers' DPM-Solver spaces n + 1 points (the sampler oracle pins its start and end)
        if schedule == "DDIM":
            with pytest.raises(BadInput, match="not A1111's DDIM grid"):
                canonical_name(sampler, schedule)
        return
    name = canonical_name(sampler, schedule)
    sched = make_scheduler(name, CONFIGS[config])
    sched.set_timesteps(n)
    got = _distinct(sched.sigmas)
    want = A1111[schedule](train, n)
    assert len(got) == len(want), (name, got, want)
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=RTOL.get(schedule, 1e-3))
    assert got[-1] == 0.0


@pytest.mark.parametrize("steps", [7, 20, 30])
def test_simple_and_sgm_uniform_at_any_step_count(steps):
    """Where n doesn't divide T, diffusers' trailing t = round(T - kT/n) - 1 is at most one
    training step from Simple's T-1 - floor(kT/n) and 1.5 from SGM Uniform's (T-1)(1 - k/n)."""
    train = _train_sigmas(CONFIGS["sdxl"])
    for schedule, bound in (("Simple", 1.0), ("SGM Uniform", 1.5)):
        sched = make_scheduler(canonical_name("Euler", schedule), CONFIGS["sdxl"])
        sched.set_timesteps(steps)
        want = A1111[schedule](train, steps)
        t_want = np.interp(np.log(want[:-1]), np.log(train), np.arange(T))
        assert float(sched.timesteps[0]) == T - 1
        assert np.abs(sched.timesteps.numpy() - t_want).max() <= bound + 1e-6, schedule


def test_ddim_schedule_refused_where_a1111_has_more_timesteps():
    check_schedule_steps("Euler DDIM", 20)
    check_schedule_steps("Euler DDIM", 25)
    with pytest.raises(BadInput, match="A1111 samples 31 timesteps"):
        check_schedule_steps("Euler DDIM", 30)
    check_schedule_steps("Euler Karras", 30)  # only DDIM's grid depends on it


# -- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sampler", "schedule", "want"),
    [
        # A1111 >= 1.9 infotexts
        ("DPM++ 2M SDE", "Exponential", "DPM++ 2M SDE Exponential"),
        ("DPM2 a", "Karras", "DPM2 a Karras"),
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("Euler a", "Automatic", "Euler a"),
        ("DPM++ 2M", "Automatic", "DPM++ 2M Karras"),  # 1.9's default for DPM++ 2M
        ("DPM++ 2M SDE", "Automatic", "DPM++ 2M SDE Exponential"),
        ("DPM2 a", "Automatic", "DPM2 a Karras"),
        ("DPM++ 2M", "Uniform", "DPM++ 2M"),
        ("Euler", "SGM Uniform", "Euler SGM Uniform"),
        ("Euler", "sgm_uniform", "Euler SGM Uniform"),
        ("Euler", "SGMUniform", "Euler SGM Uniform"),
        ("Euler", "Simple", "Euler Simple"),
        ("Euler", "Normal", "Euler"),
        ("Heun", "Beta", "Heun Beta"),
        ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras"),
        # old A1111 API names (samplers_k_diffusion aliases)
        ("k_euler_a", None, "Euler a"),
        ("k_dpmpp_2m_ka", None, "DPM++ 2M Karras"),
        ("k_dpm_2_a_ka", None, "DPM2 a Karras"),
        # ComfyUI sampler + scheduler
        ("dpmpp_2m", "karras", "DPM++ 2M Karras"),
        ("euler_ancestral", "normal", "Euler a"),
        ("dpm_2_ancestral", "karras", "DPM2 a Karras"),
        ("dpmpp_sde_gpu", "karras", "DPM++ SDE Karras"),
        ("dpmpp_2m_sde_gpu", "exponential", "DPM++ 2M SDE Exponential"),
        ("uni_pc", "normal", "UniPC"),
        ("ddim", "ddim_uniform", "DDIM"),
        ("ddim", "karras", "Euler Karras"),  # ComfyUI's ddim is Euler on the scheduler's sigmas
        ("lms", "karras", "LMS Karras"),
        ("heun", "simple", "Heun Simple"),
        ("euler", "sgm_uniform", "Euler SGM Uniform"),
        ("dpmpp_2m", "exponential", "DPM++ 2M Exponential"),
    ],
)
def test_names_resolve_like_a1111_and_comfyui(sampler, schedule, want):
    assert canonical_name(sampler, schedule) == want
    if schedule is not None:
        assert canonical_name(sampler, schedule, infotext=True) == want


def test_a1111_infotext_rules():
    """A1111 ignores the field for its timestep samplers and lets a schedule in the name win;
    an explicit choice (CLI, panel) decides itself."""
    assert canonical_name("DDIM", "Karras", infotext=True) == "DDIM"
    assert canonical_name("UniPC", "Karras", infotext=True) == "UniPC"
    assert canonical_name("UniPC", "Karras") == "UniPC Karras"
    assert canonical_name("DPM++ 2M Karras", "Exponential", infotext=True) == "DPM++ 2M Karras"
    assert canonical_name("DPM++ 2M Karras", "Exponential") == "DPM++ 2M Exponential"


@pytest.mark.parametrize(
    ("sampler", "schedule", "says"),
    [
        ("Euler a", "Karras", "EulerAncestralDiscreteScheduler has no use_karras_sigmas"),
        ("DDIM", "Karras", "DDIMScheduler has no use_karras_sigmas"),
        ("DPM2", "Exponential", "next-to-last sigma"),
        ("DPM2 a", "SGM Uniform", "next-to-last sigma"),
        ("DPM++ 2S a", "Simple", "DPMSolverSinglestepScheduler has no timestep_spacing"),
        ("Euler", "Polyexponential", "no diffusers option"),
        ("Euler", "Align Your Steps", "Align Your Steps"),
        ("euler", "beta", "ComfyUI's beta"),
        ("Euler", "Wobbly", "Unknown schedule type 'Wobbly'"),
        ("DPM fast", None, "Unknown scheduler"),
        ("dpm_adaptive", "karras", "Unknown scheduler"),
    ],
)
def test_what_diffusers_cant_build_is_refused_in_one_line(sampler, schedule, says):
    with pytest.raises(BadInput, match=says) as e:
        canonical_name(sampler, schedule)
    assert "\n" not in str(e.value)


def test_comfyui_pairs_build_what_their_a1111_twins_build():
    twins = {
        ("dpmpp_2m", "karras"): ("DPM++ 2M", "Karras"),
        ("dpmpp_2m_sde", "exponential"): ("DPM++ 2M SDE", "Exponential"),
        ("euler", "sgm_uniform"): ("Euler", "SGM Uniform"),
        ("heun", "normal"): ("Heun", "Normal"),
        ("lms", "simple"): ("LMS", "Simple"),
        ("dpmpp_sde", "karras"): ("DPM++ SDE", "Karras"),
        ("euler", "ddim_uniform"): ("Euler", "DDIM"),
    }
    for comfy, a1111 in twins.items():
        a = make_scheduler(canonical_name(*comfy), CONFIGS["sdxl"])
        b = make_scheduler(canonical_name(*a1111, infotext=True), CONFIGS["sdxl"])
        assert type(a) is type(b) and dict(a.config) == dict(b.config), comfy


def test_static_option_tables_match_the_installed_diffusers():
    """canonical_name decides without importing diffusers (the UI resolves pasted names)."""
    import diffusers

    for spec in SCHEDULERS.values():
        params = inspect.signature(getattr(diffusers, spec.cls).__init__).parameters
        flags = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"}
        assert (spec.cls in SIGMA_CLASSES) == (flags <= set(params)), spec.cls
        assert (spec.cls in NO_SPACING_CLASSES) == ("timestep_spacing" not in params), spec.cls


# -- the label, the infotext and the CLI ---------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["DPM++ 2M SDE Exponential", "Euler Beta", "Euler SGM Uniform", "Heun Simple", "Euler DDIM"],
)
def test_metadata_names_the_schedule_that_ran(name):
    sched = make_scheduler(name, CONFIGS["sd15"])
    assert ran_label(name, sched) == name
    lost = type(sched).from_config(
        {**sched.config, "use_exponential_sigmas": False, "use_beta_sigmas": False}
        | {"timestep_spacing": "linspace"}
    )
    assert ran_label(name, lost) == scheduler_label(lost) != name


def test_infotext_schedule_type_read_and_written_as_a1111_does():
    info = parse_parameters(
        "a cat\nSteps: 20, Sampler: DPM++ 2M SDE, Schedule type: Exponential, CFG scale: 7, "
        "Seed: 1, Size: 512x512"
    )
    assert info["sampler"] == "DPM++ 2M SDE Exponential" and info["schedule_type"] == "Exponential"
    dpm2 = parse_parameters("a\nSteps: 20, Sampler: DPM2 a, Schedule type: Karras, Seed: 1")
    assert dpm2["sampler"] == "DPM2 a Karras" and canonical_name(dpm2["sampler"]) == "DPM2 a Karras"
    ddim = parse_parameters("a\nSteps: 20, Sampler: DDIM, Schedule type: Karras, Seed: 1")
    assert ddim["sampler"] == "DDIM"  # A1111's DDIM ignores the field
    assert parse_parameters(format_parameters(info)) == info

    from studio.engine.jobs.requests import GenerateRequest

    request = GenerateRequest(model="m", prompt="a cat")
    for sampler, fields in [
        ("DPM++ 2M SDE Exponential", "Sampler: DPM++ 2M SDE, Schedule type: Exponential"),
        ("DPM++ 2M Karras", "Sampler: DPM++ 2M, Schedule type: Karras"),
        # plain k-diffusion names are Uniform: without it A1111 >= 1.9 reads DPM++ 2M as Karras
        ("DPM++ 2M", "Sampler: DPM++ 2M, Schedule type: Uniform"),
        ("Euler SGM Uniform", "Sampler: Euler, Schedule type: SGM Uniform"),
    ]:
        meta = request_metadata(request, 1, "m", sampler=sampler)
        text = format_parameters(meta)
        assert fields in text, text
        back = parse_parameters(text)
        assert canonical_name(back["sampler"]) == sampler
    ddim_text = format_parameters(request_metadata(request, 1, "m", sampler="DDIM"))
    assert "Sampler: DDIM" in ddim_text and "Schedule type" not in ddim_text


def test_cli_schedule_type_option(tmp_path):
    import argparse

    from studio.cli import args as shared

    p = argparse.ArgumentParser()
    shared.add_sampling(p)
    a = p.parse_args(["--scheduler", "DPM++ 2M SDE", "--schedule-type", "exponential"])
    assert shared.resolve_sampling(a, None)["scheduler"] == "DPM++ 2M SDE Exponential"
    a = p.parse_args(["--scheduler", "dpmpp_2m", "--schedule-type", "karras"])
    assert shared.resolve_sampling(a, None)["scheduler"] == "DPM++ 2M Karras"
    a = p.parse_args(["--scheduler", "Euler a", "--schedule-type", "karras"])
    with pytest.raises(BadInput, match="no use_karras_sigmas"):
        shared.resolve_sampling(a, None)
    a = p.parse_args(["--schedule-type", "karras"])
    with pytest.raises(BadInput, match="needs --scheduler"):
        shared.resolve_sampling(a, None)
