"""Sampler identity against oracles from outside Studio: AUTOMATIC1111's sampler list and
diffusers' documented A1111 equivalence table, transcribed below, plus k-diffusion's sigma
formulas computed here from the model's betas. Studio's table (``schedulers.SCHEDULERS``) is
never read for an expected value: every name Studio accepts is built through
``make_scheduler`` on the shipped SD 1.5 and SDXL scheduler configs and the built object is
compared with the oracle (class, config flags, sigmas, timesteps, model calls per step,
whether it draws fresh noise), and the metadata label is checked to come from the object.

Sources (transcribed, not imported):

- A1111 ``modules/sd_samplers_kdiffusion.py`` (``samplers_k_diffusion``: label, k-diffusion
  function, aliases, options), ``modules/sd_samplers_timesteps.py`` (DDIM / PLMS / UniPC and
  ``get_timesteps``: ``range(0, 1000, 1000 // steps) + 1``) and ``modules/shared_options.py``
  (UniPC defaults: variant bh1, order 3, time_uniform, lower order final);
- diffusers ``docs/source/en/api/schedulers/overview.md`` (the "A1111/k-diffusion vs
  Diffusers" table and "Noise schedules and schedule types");
- k-diffusion ``sampling.get_sigmas_karras`` and ``external.DiscreteSchedule.get_sigmas``
  (t = linspace(T-1, 0, n), log-sigma interpolation, a final 0).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from studio.core.errors import BadInput
from studio.engine.diffusion.sd.schedulers import (
    canonical_name,
    make_scheduler,
    ran_label,
    scheduler_label,
    scheduler_names,
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

# -- A1111 modules/sd_samplers_kdiffusion.py, samplers_k_diffusion (label, function, aliases,
# options), as in the webui release with the SDE samplers and the "Karras" labels.
A1111_K_DIFFUSION = [
    ("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", "sample_euler", ["k_euler"], {}),
    ("LMS", "sample_lms", ["k_lms"], {}),
    ("Heun", "sample_heun", ["k_heun"], {"second_order": True}),
    ("DPM2", "sample_dpm_2", ["k_dpm_2"], {"discard_next_to_last_sigma": True}),
    ("DPM2 a", "sample_dpm_2_ancestral", ["k_dpm_2_a"],
     {"discard_next_to_last_sigma": True, "uses_ensd": True}),
    ("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a"],
     {"uses_ensd": True, "second_order": True}),
    ("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], {}),
    ("DPM++ SDE", "sample_dpmpp_sde", ["k_dpmpp_sde"],
     {"second_order": True, "brownian_noise": True}),
    ("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde_ka"], {"brownian_noise": True}),
    ("DPM fast", "sample_dpm_fast", ["k_dpm_fast"], {"uses_ensd": True}),
    ("DPM adaptive", "sample_dpm_adaptive", ["k_dpm_ad"], {"uses_ensd": True}),
    ("LMS Karras", "sample_lms", ["k_lms_ka"], {"scheduler": "karras"}),
    ("DPM2 Karras", "sample_dpm_2", ["k_dpm_2_ka"],
     {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True,
      "second_order": True}),
    ("DPM2 a Karras", "sample_dpm_2_ancestral", ["k_dpm_2_a_ka"],
     {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True,
      "second_order": True}),
    ("DPM++ 2S a Karras", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a_ka"],
     {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    ("DPM++ 2M Karras", "sample_dpmpp_2m", ["k_dpmpp_2m_ka"], {"scheduler": "karras"}),
    ("DPM++ SDE Karras", "sample_dpmpp_sde", ["k_dpmpp_sde_ka"],
     {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    ("DPM++ 2M SDE Karras", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde_ka"],
     {"scheduler": "karras", "brownian_noise": True}),
]  # fmt: skip
# A1111 modules/sd_samplers_timesteps.py, samplers_timesteps.
A1111_TIMESTEPS = [("DDIM", "ddim", ["ddim"], {}), ("PLMS", "plms", ["plms"], {})]
A1111_TIMESTEPS += [("UniPC", "unipc", ["unipc"], {})]
# A1111 modules/shared_options.py: uni_pc_variant, uni_pc_order, uni_pc_lower_order_final;
# modules/models/diffusion/uni_pc/uni_pc.py UniPC.sample: t_0 = 1 / N (the last sigma is the
# model's sigma_min, not 0: denoise_to_zero=False).
A1111_UNIPC = {"solver_type": "bh1", "solver_order": 3, "lower_order_final": True}
A1111_UNIPC["final_sigmas_type"] = "sigma_min"

# From k-diffusion's sampling.py: the functions that call the model twice per step (but on the
# last step, to sigma 0, where they take an Euler step) and those that draw fresh noise.
SECOND_ORDER = {"sample_heun", "sample_dpm_2", "sample_dpm_2_ancestral",
                "sample_dpmpp_2s_ancestral", "sample_dpmpp_sde"}  # fmt: skip
STOCHASTIC = {"sample_euler_ancestral", "sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral",
              "sample_dpmpp_sde", "sample_dpmpp_2m_sde"}  # fmt: skip

# -- diffusers docs/source/en/api/schedulers/overview.md: A1111 name -> (class, init options);
# None = "N/A".
DIFFUSERS_DOCS: dict[str, tuple[str | None, dict]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
    ),
    "DPM++ 2S a": (None, {}),  # "very similar to DPMSolverSinglestepScheduler"
    "DPM++ 2S a Karras": (None, {}),  # "... DPMSolverSinglestepScheduler(use_karras_sigmas=True)"
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM adaptive": (None, {}),
    "DPM fast": (None, {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
}
# Where the docs table says N/A or contradicts A1111's own options, the behaviour decides:
# - "DPM++ SDE" is stochastic with Brownian noise and two model calls per step in A1111
#   (brownian_noise, second_order); DPMSolverSinglestepScheduler is a deterministic ODE solver
#   with one call per step, DPMSolverSDEScheduler is k-diffusion's sample_dpmpp_sde
#   (BrownianTreeNoiseSampler, midpoint r = 1/2, order = 2). The behaviour tests below check
#   stochasticity and calls per step, which tell the two apart.
# - "DPM++ 2S a": the closest is the docs' DPMSolverSinglestepScheduler, second order, in its
#   SDE form (ancestral = fresh noise); one model call per step, not two (a known limit).
RESOLVED = {
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2S a Karras": (
        "DPMSolverSinglestepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
}
ONE_CALL_PER_STEP_EXCEPTIONS = {"DPM++ 2S a", "DPM++ 2S a Karras"}
# Names outside samplers_k_diffusion: A1111's timestep samplers and the diffusers classes
# Studio also offers, by the class the diffusers docs name.
NOT_K_DIFFUSION = {
    # A1111 >= 1.9: "Euler" with "Schedule type: Karras" (diffusers: use_karras_sigmas=True)
    "Euler Karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    # the ldm DDIM sampler A1111 runs: eta 0, alpha_prev of the last step = alphas_cumprod[0]
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False}),
    # PLMS: pseudo linear multistep, no Runge-Kutta warm-up steps
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", dict(A1111_UNIPC)),
    "DDPM": ("DDPMScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
}
K_FUNCTION = {label: fn for label, fn, _, _ in A1111_K_DIFFUSION} | {"Euler Karras": "sample_euler"}
K_OPTIONS = {label: opts for label, _, _, opts in A1111_K_DIFFUSION}


def _oracle() -> dict[str, tuple[str, dict]]:
    """name -> (diffusers class, the config values A1111's semantics need)."""
    out: dict[str, tuple[str, dict]] = {}
    for label, _fn, _aliases, opts in A1111_K_DIFFUSION:
        cls, init = RESOLVED.get(label) or DIFFUSERS_DOCS[label]
        if cls is None:
            continue
        flags = dict(init)
        flags["use_karras_sigmas"] = opts.get("scheduler") == "karras"
        if cls == "DPMSolverMultistepScheduler":  # "2M": second-order multistep DPM-Solver++
            flags.setdefault("algorithm_type", "dpmsolver++")
            flags["solver_order"] = 2
        if cls == "DPMSolverSinglestepScheduler":  # "2S": second-order singlestep
            flags["solver_order"] = 2
        out[label] = (cls, flags)
    for label, (cls, init) in NOT_K_DIFFUSION.items():
        out[label] = (cls, dict(init))
    return out


ORACLE = _oracle()
SYNONYMS = {"PLMS": "PNDM"}  # the same build under two A1111 names


# -- independent sigma formulas -------------------------------------------------------------------
def _train_sigmas(cfg: dict) -> np.ndarray:
    """k-diffusion's DiscreteSchedule sigmas ((1 - abar) / abar) ** 0.5, from the config's betas."""
    n = cfg["num_train_timesteps"]
    assert cfg["beta_schedule"] == "scaled_linear"
    betas = np.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=np.float64) ** 2
    abar = np.cumprod(1.0 - betas)
    return ((1 - abar) / abar) ** 0.5


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """k-diffusion sampling.get_sigmas_karras (Karras et al. 2022, eq. 5) with the final 0."""
    ramp = np.linspace(0, 1, n)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return np.append((max_inv + ramp * (min_inv - max_inv)) ** rho, 0.0)


def get_sigmas_uniform(train: np.ndarray, n: int) -> np.ndarray:
    """k-diffusion DiscreteSchedule.get_sigmas(n): t = linspace(T-1, 0, n), sigma interpolated
    in log space, a final 0."""
    t = np.linspace(len(train) - 1, 0, n)
    lo, hi = np.floor(t).astype(int), np.ceil(t).astype(int)
    w = t - lo
    log = np.log(train)
    return np.append(np.exp((1 - w) * log[lo] + w * log[hi]), 0.0)


def _distinct(sigmas) -> np.ndarray:
    """The sigma grid without the repeats second-order schedulers interleave."""
    values = [float(s) for s in sigmas]
    out = [values[0]]
    for v in values[1:]:
        if v != out[-1]:
            out.append(v)
    return np.array(out)


STEPS = 20


# -- names ---------------------------------------------------------------------------------------
def test_every_name_studio_accepts_has_an_oracle_entry():
    assert set(scheduler_names()) <= set(ORACLE), set(scheduler_names()) - set(ORACLE)


@pytest.mark.parametrize("label", [row[0] for row in A1111_K_DIFFUSION + A1111_TIMESTEPS])
def test_every_a1111_name_is_accepted_or_refused(label):
    """A name with a diffusers equivalent is a Studio name (an A1111 infotext with "DPM2 Karras"
    must run); "DPM fast" / "DPM adaptive" (N/A in diffusers) are refused in one line."""
    if label in ORACLE:
        assert canonical_name(label) == label
    else:
        with pytest.raises(BadInput):
            canonical_name(label)


def test_a1111_aliases_and_schedule_types():
    counts: dict[str, int] = {}
    for _label, _fn, aliases, _opts in A1111_K_DIFFUSION + A1111_TIMESTEPS:
        for a in aliases:
            counts[a] = counts.get(a, 0) + 1
    for label, _fn, aliases, _opts in A1111_K_DIFFUSION + A1111_TIMESTEPS:
        for alias in aliases:
            if counts[alias] > 1:  # A1111 gives "k_dpmpp_2m_sde_ka" to two samplers
                continue
            if label in ORACLE:
                assert canonical_name(alias) == label, alias
            else:
                with pytest.raises(BadInput):
                    canonical_name(alias)
    # A1111 >= 1.9 writes the schedule apart: "Sampler: DPM2, Schedule type: Karras".
    for label, _fn, _aliases, opts in A1111_K_DIFFUSION:
        if opts.get("scheduler") == "karras":
            base = label.removesuffix(" Karras")
            assert canonical_name(base, schedule_type="Karras") == label


# -- the built object ----------------------------------------------------------------------------
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", sorted(ORACLE))
def test_build_has_the_oracles_class_and_flags(name, config):
    cls, flags = ORACLE[name]
    sched = make_scheduler(name, CONFIGS[config])
    assert type(sched).__name__ == cls
    for key, want in flags.items():
        assert sched.config.get(key, False) == want, (name, key, sched.config.get(key))
    # the model's own schedule stays: betas, training steps, prediction type
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps"):
        assert sched.config[key] == CONFIGS[config][key]


K_NAMES = sorted(n for n in ORACLE if n in K_FUNCTION)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", sorted(n for n in K_NAMES if ORACLE[n][1]["use_karras_sigmas"]))
def test_karras_sigmas_are_k_diffusions(name, config):
    """A1111: get_sigmas_karras(n, sigma_min, sigma_max) of the model's own sigmas (SD: 0.0292,
    14.6146). DPM2 (a) Karras follow the diffusers docs' mapping (use_karras_sigmas): A1111
    also drops their penultimate sigma, which no diffusers option does (not checked here)."""
    train = _train_sigmas(CONFIGS[config])
    assert train[0] == pytest.approx(0.0292, abs=5e-5)
    assert train[-1] == pytest.approx(14.6146, abs=5e-5)
    sched = make_scheduler(name, CONFIGS[config])
    sched.set_timesteps(STEPS)
    got = _distinct(sched.sigmas)
    want = get_sigmas_karras(STEPS, float(train[0]), float(train[-1]), rho=7.0)
    assert len(got) == len(want)
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=1e-3)
    assert got[-1] == 0.0


def test_dpmpp_2m_karras_sigmas_from_the_formula():
    """The issue's numbers: 20 steps on SD 1.5, sigma_min 0.0292, sigma_max 14.6146, rho 7
    (rounded to 4 decimals: the true sigma_min is 0.029167, hence 1.5e-3, not 1e-3, at the
    last sigma)."""
    sched = make_scheduler("DPM++ 2M Karras", CONFIGS["sd15"])
    sched.set_timesteps(20)
    smin, smax, rho, n = 0.0292, 14.6146, 7.0, 20
    want = [
        (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        for i in range(n)
    ]
    np.testing.assert_allclose(sched.sigmas[:n].numpy(), want, rtol=1.5e-3)
    assert float(sched.sigmas[n]) == 0.0


UNIFORM_GRID = ["Euler", "Euler a", "Heun", "LMS", "DPM++ SDE"]


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", UNIFORM_GRID)
def test_uniform_sigmas_are_k_diffusions(name, config):
    """A1111's default schedule for these: DiscreteSchedule.get_sigmas(n) from sigma_max down
    to sigma_min (a model config's "leading" spacing started SDXL at t=951, sigma 11.0)."""
    train = _train_sigmas(CONFIGS[config])
    sched = make_scheduler(name, CONFIGS[config])
    sched.set_timesteps(STEPS)
    got = _distinct(sched.sigmas)
    want = get_sigmas_uniform(train, STEPS)
    assert len(got) == len(want)
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=1e-3)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", ["DPM2", "DPM2 a"])
def test_dpm2_drops_the_penultimate_sigma_like_a1111(name, config):
    """A1111 (discard_next_to_last_sigma): get_sigmas(n + 1) without its second-to-last entry."""
    assert K_OPTIONS[name]["discard_next_to_last_sigma"]
    train = _train_sigmas(CONFIGS[config])
    full = get_sigmas_uniform(train, STEPS + 1)
    want = np.concatenate([full[:-2], full[-1:]])
    sched = make_scheduler(name, CONFIGS[config])
    sched.set_timesteps(STEPS)
    got = _distinct(sched.sigmas)
    assert len(got) == len(want)
    # diffusers' "trailing" grid (integer t) is A1111's to within ~1%; "linspace" ended at
    # sigma_min (0.029 instead of 0.225 before the final step: 87% off)
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=2e-2)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize(
    "name", ["DPM++ 2M", "DPM++ 2M SDE", "DPM++ 2S a", "UniPC", "DPM2 Karras", "DPM2 a Karras"]
)
def test_other_a1111_schedules_start_at_sigma_max(name, config):
    """The DPM-Solver grids of diffusers (n + 1 points, the last dropped) differ from
    k-diffusion's by construction; what A1111's semantics pin is the start: t = T-1, the
    model's sigma_max, and the end: 0, or sigma_min for A1111's UniPC."""
    train = _train_sigmas(CONFIGS[config])
    sched = make_scheduler(name, CONFIGS[config])
    sched.set_timesteps(STEPS)
    assert float(sched.timesteps[0]) == pytest.approx(len(train) - 1, abs=0.5)
    assert float(sched.sigmas[0]) == pytest.approx(float(train[-1]), rel=1e-3)
    end = float(train[0]) if name == "UniPC" else 0.0
    assert float(sched.sigmas[-1]) == pytest.approx(end, rel=1e-3)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", ["DDIM", "PLMS"])
def test_ddim_and_plms_timesteps_are_a1111s(name, config):
    """A1111 get_timesteps: range(0, 1000, 1000 // steps) + 1 (the ldm DDIM grid)."""
    want = sorted(t + 1 for t in range(0, 1000, 1000 // STEPS))
    sched = make_scheduler(name, CONFIGS[config])
    sched.set_timesteps(STEPS)
    got = [int(t) for t in sched.timesteps]
    assert sorted(set(got)) == want
    assert got[0] == max(want)


# -- behaviour -----------------------------------------------------------------------------------
def _run(name: str, seed: int, steps: int = 4) -> tuple[torch.Tensor, int]:
    """A few steps of the scheduler on a fixed fake eps-model, noise from ``seed``; the final
    latent and the number of model calls."""
    sched = make_scheduler(name, CONFIGS["sd15"])
    sched.set_timesteps(steps)
    if hasattr(sched, "noise_sampler_seed"):  # DPMSolverSDEScheduler's Brownian tree
        sched.noise_sampler_seed = seed
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    x = x * sched.init_noise_sigma
    takes_generator = "generator" in inspect.signature(sched.step).parameters
    calls = 0
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        eps = 0.3 * torch.tanh(inp)  # any fixed function of the input
        calls += 1
        kw = {"generator": gen} if takes_generator else {}
        x = sched.step(eps, t, x, **kw).prev_sample
    return x, calls


@pytest.mark.parametrize("name", sorted(n for n in ORACLE if n in K_FUNCTION))
def test_fresh_noise_exactly_where_k_diffusion_draws_it(name):
    stochastic = K_FUNCTION[name] in STOCHASTIC
    a, _ = _run(name, seed=1)
    b, _ = _run(name, seed=2)
    assert torch.isfinite(a).all()
    assert (not torch.equal(a, b)) == stochastic, (name, stochastic)


@pytest.mark.parametrize("name", ["DDIM", "PLMS", "UniPC"])
def test_timestep_samplers_are_deterministic(name):
    """A1111's DDIM (eta 0), PLMS and UniPC draw no noise."""
    a, _ = _run(name, seed=1)
    b, _ = _run(name, seed=2)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(n for n in ORACLE if n in K_FUNCTION))
def test_model_calls_per_step_follow_k_diffusion(name):
    """Second-order k-diffusion samplers call the model twice per step but the last (2n - 1);
    the others once (n)."""
    n = 5
    _, calls = _run(name, seed=1, steps=n)
    if name in ONE_CALL_PER_STEP_EXCEPTIONS:
        assert calls == n
    elif K_FUNCTION[name] in SECOND_ORDER:
        assert calls == 2 * n - 1
    else:
        assert calls == n


# -- the label metadata records ------------------------------------------------------------------
@pytest.fixture(scope="module")
def built() -> dict:
    return {name: make_scheduler(name, CONFIGS["sd15"]) for name in scheduler_names()}


@pytest.mark.parametrize("name", sorted(ORACLE))
def test_label_of_an_independent_build_is_the_name(name):
    """A scheduler built straight from the oracle (diffusers class + documented options, no
    Studio code) is labelled with the A1111 name: the label is read from the object."""
    import diffusers

    cls, flags = ORACLE[name]
    base = {k: v for k, v in CONFIGS["sd15"].items() if not k.startswith("_")}
    sched = getattr(diffusers, cls).from_config({**base, **flags})
    assert scheduler_label(sched) == SYNONYMS.get(name, name)
    assert ran_label(None, sched) == SYNONYMS.get(name, name)
    assert ran_label(name, sched) == name


@pytest.mark.parametrize("asked", sorted(ORACLE))
def test_a_wrong_build_shows_in_the_metadata(asked, built):
    """Whatever was asked for, the metadata names what was built."""
    for built_name, sched in built.items():
        label = ran_label(asked, sched)
        if ORACLE[built_name] == ORACLE[asked]:
            assert label == asked
        else:
            assert label != asked, (asked, built_name)
            assert label == ran_label(None, sched)


def test_dropped_karras_or_sde_is_named_by_what_ran():
    import diffusers

    base = {k: v for k, v in CONFIGS["sd15"].items() if not k.startswith("_")}
    plain = diffusers.DPMSolverMultistepScheduler.from_config(base)
    assert ran_label("DPM++ 2M Karras", plain) == "DPM++ 2M"
    assert ran_label("DPM++ 2M SDE", plain) == "DPM++ 2M"
    assert ran_label("Euler a", diffusers.EulerDiscreteScheduler.from_config(base)) == "Euler"
    heun_karras = diffusers.HeunDiscreteScheduler.from_config({**base, "use_karras_sigmas": True})
    assert ran_label("Heun", heun_karras) == "Heun Karras"
    third = diffusers.DPMSolverMultistepScheduler.from_config({**base, "solver_order": 3})
    assert ran_label("DPM++ 2M", third) == "DPM++ 3M"
