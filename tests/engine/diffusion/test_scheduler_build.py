"""How a sampler name becomes a diffusers scheduler for one job, built straight from a scheduler
config dict (no pipeline): the model's own config and the catalog's spacing, turbo models,
the classes a model's options must not leak into, seeding, the label metadata records, the
step counts of prompt schedules and A1111's DDIM grid, and the one-line refusals.

Expected values come from the peers: diffusers' scheduler classes built directly with their
documented options, A1111's ``samplers_k_diffusion`` (``second_order``) and
``sd_schedulers.ddim_scheduler`` (t = 1, 1 + T // n, ... < T), computed here.
"""

from __future__ import annotations

import diffusers
import pytest

from studio.core.errors import BadInput
from studio.engine.diffusion.sd.schedulers import (
    canonical_name,
    check_schedule_steps,
    make_scheduler,
    prompt_schedule_steps,
    ran_label,
    schedule_types,
    scheduler_label,
    scheduler_names,
    seed_noise,
    split_name,
)
from studio.engine.diffusion.shared.defaults import is_turbo

# SD 1.5's scheduler_config.json (runwayml/stable-diffusion-v1-5)
SD15 = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "steps_offset": 1, "trained_betas": None, "skip_prk_steps": True,
}  # fmt: skip
PLAIN = {k: v for k, v in SD15.items() if not k.startswith("_")}


def _diffusers(cls: str, **options):
    """A scheduler built by diffusers alone, as its docs say to."""
    return getattr(diffusers, cls).from_config({**PLAIN, **options})


def a1111_ddim_points(steps: int, T: int = 1000) -> int:
    """A1111 sd_schedulers.ddim_scheduler: ss = max(T // n, 1); x = 1, 1 + ss, ... while x < T."""
    ss = max(T // steps, 1)
    x, count = 1, 0
    while x < T:
        count += 1
        x += ss
    return count


# -- turbo models ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["sd-turbo", "SDXL-Turbo", "stabilityai/sdxl-turbo", "lcm-lora-sdxl", "LCM_Dreamshaper"]
)
def test_distilled_models_are_recognised_by_name(name):
    assert is_turbo(name)


@pytest.mark.parametrize("name", ["sd15", "stable-diffusion-xl-base-1.0", "dreamshaper_8", ""])
def test_ordinary_models_are_not_turbo(name):
    assert not is_turbo(name)


# -- the model's config, the catalog's spacing ----------------------------------------------------
def test_no_name_builds_the_models_own_scheduler():
    sched = make_scheduler(None, SD15)
    assert type(sched).__name__ == "PNDMScheduler"
    assert sched.config.skip_prk_steps and sched.config.steps_offset == 1
    euler = make_scheduler(None, {**SD15, "_class_name": "EulerDiscreteScheduler"})
    assert type(euler).__name__ == "EulerDiscreteScheduler"
    # a config without a class: diffusers' StableDiffusionPipeline default
    assert type(make_scheduler(None, PLAIN)).__name__ == "PNDMScheduler"


def test_the_options_of_a_loaded_config_are_applied():
    """A config read from a scheduler_config.json lists the keys the file left out in
    ``_use_default_values``, and diffusers' from_config resets every key listed there: a
    sampler's options must be built without that list."""
    loaded = diffusers.EulerDiscreteScheduler.from_config(PLAIN).config
    assert "use_karras_sigmas" in loaded["_use_default_values"]
    sched = make_scheduler("Euler Karras", dict(loaded))
    assert sched.config.use_karras_sigmas is True
    assert make_scheduler("DPM++ 2M", dict(loaded), spacing="trailing").config.timestep_spacing == (
        "trailing"
    )


def test_a_turbo_models_own_scheduler_is_trailing_too():
    """No sampler chosen on SD-Turbo: its own scheduler must still start at t = 999."""
    sched = make_scheduler(None, SD15, turbo=True)
    assert type(sched).__name__ == "PNDMScheduler"
    assert sched.config.timestep_spacing == "trailing"
    assert make_scheduler(None, SD15, spacing="trailing").config.timestep_spacing == "trailing"


def test_catalog_spacing_reaches_every_class_that_has_it():
    for name in ("Euler", "DDIM", "DPM++ 2M", "UniPC", "PLMS"):
        sched = make_scheduler(name, SD15, spacing="trailing")
        assert sched.config.timestep_spacing == "trailing", name
        sched.set_timesteps(4)
        assert int(sched.timesteps[0]) == 999, name
    # DPMSolverSinglestepScheduler has no timestep_spacing: nothing to set
    single = make_scheduler("DPM++ 2S a", SD15, spacing="trailing")
    assert "timestep_spacing" not in single.config


def test_an_explicit_schedule_type_decides_the_spacing_itself():
    """A catalog's (or turbo's) spacing yields to the user's SGM Uniform / DDIM choice."""
    sgm = make_scheduler("Euler SGM Uniform", SD15, spacing="leading")
    assert sgm.config.timestep_spacing == "trailing"
    ddim = make_scheduler("Euler DDIM", SD15, turbo=True)
    assert ddim.config.timestep_spacing == "leading" and ddim.config.steps_offset == 1
    # without a spacing schedule type the turbo spacing applies
    assert make_scheduler("Euler Karras", SD15, turbo=True).config.timestep_spacing == "trailing"


def test_non_turbo_models_keep_the_samplers_spacing():
    sdxl = {**SD15, "_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading"}
    assert make_scheduler("DDIM", sdxl).config.timestep_spacing == "leading"
    # A1111's k-diffusion samplers and any sigma schedule type start at sigma_max
    assert make_scheduler("Euler", sdxl).config.timestep_spacing == "linspace"
    deis = make_scheduler("DEIS Karras", sdxl)
    assert deis.config.timestep_spacing == "linspace" and deis.config.use_karras_sigmas
    # a spacing other than "leading" is the model's choice and stays
    trailing = {**sdxl, "timestep_spacing": "trailing"}
    assert make_scheduler("Euler", trailing).config.timestep_spacing == "trailing"


def test_a_models_solver_options_stay_with_its_own_class():
    """A DPM-Solver model config tuned to order 3 / SDE keeps that for its own class only:
    "DEIS" or "DDIM" get their classes' defaults (diffusers: DEIS solver_order 2)."""
    dpm = {
        **PLAIN, "_class_name": "DPMSolverMultistepScheduler", "solver_order": 3,
        "algorithm_type": "sde-dpmsolver++", "solver_type": "heun",
    }  # fmt: skip
    deis = make_scheduler("DEIS", dpm)
    default = _diffusers("DEISMultistepScheduler")
    for key in ("solver_order", "algorithm_type", "solver_type"):
        assert deis.config[key] == default.config[key], key
    own = {**PLAIN, "_class_name": "DEISMultistepScheduler", "solver_order": 3}
    assert make_scheduler("DEIS", own).config.solver_order == 3


def test_a_model_scheduler_this_diffusers_lacks_is_refused_by_name():
    """A model saved by a newer diffusers may name a class this one doesn't have."""
    with pytest.raises(BadInput, match="Scheduler FancyNewScheduler is not available in this"):
        make_scheduler(None, {**PLAIN, "_class_name": "FancyNewScheduler"})


def test_a_missing_class_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(diffusers, "TCDScheduler", None)  # a diffusers older than TCD
    with pytest.raises(BadInput, match="TCDScheduler is not available") as e:
        make_scheduler("TCD", SD15)
    assert "diffusers" in str(e.value)


def test_a_class_missing_its_dependency_is_refused_in_one_line(monkeypatch):
    """diffusers' stand-in for DPMSolverSDEScheduler without torchsde raises ImportError on
    use, with a multi-line install hint."""

    class NeedsTorchsde:
        @classmethod
        def from_config(cls, config):
            raise ImportError("\n  DPMSolverSDEScheduler requires the torchsde library\n\nrun pip")

    monkeypatch.setattr(diffusers, "DPMSolverSDEScheduler", NeedsTorchsde)
    with pytest.raises(BadInput) as e:
        make_scheduler("DPM++ SDE", SD15)
    message = str(e.value)
    assert message.startswith("Sampler DPM++ SDE is not available here")
    assert "(DPMSolverSDEScheduler requires the torchsde library)" in message
    assert "\n" not in message and "pip" not in message

    class Silent:
        @classmethod
        def from_config(cls, config):
            raise ImportError()

    monkeypatch.setattr(diffusers, "DPMSolverSDEScheduler", Silent)
    with pytest.raises(BadInput, match=r"not available here \(ImportError\)"):
        make_scheduler("DPM++ SDE", SD15)


def test_a_long_import_error_is_cut(monkeypatch):
    class Verbose:
        @classmethod
        def from_config(cls, config):
            raise ImportError("x" * 500)

    monkeypatch.setattr(diffusers, "TCDScheduler", Verbose)
    with pytest.raises(BadInput) as e:
        make_scheduler("TCD", SD15)
    assert "(" + "x" * 200 + ")" in str(e.value) and "x" * 201 not in str(e.value)


# -- seeding --------------------------------------------------------------------------------------
def test_seed_noise_seeds_the_brownian_tree():
    sched = make_scheduler("DPM++ SDE", SD15)
    sched.noise_sampler = object()  # a tree drawn for an earlier job
    seed_noise(sched, [7])
    assert sched.noise_sampler_seed == 7 and sched.noise_sampler is None
    seed_noise(sched, [1, 2, 3])
    assert sched.noise_sampler_seed == [1, 2, 3]


def test_seed_noise_leaves_other_samplers_alone():
    sched = make_scheduler("Euler a", SD15)
    seed_noise(sched, [7])
    assert not hasattr(sched, "noise_sampler_seed")


# -- the label metadata records ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "options", "want"),
    [
        ("DPMSolverMultistepScheduler", {"solver_order": 3}, "DPM++ 3M"),
        ("DPMSolverMultistepScheduler", {"solver_order": 3, "algorithm_type": "sde-dpmsolver++"},
         "DPM++ 3M SDE"),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min"},
         "DPM++ 2M SDE"),
        ("DPMSolverSinglestepScheduler", {}, "DPM++ 2S"),
        ("DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++"}, "DPM++ 2S a"),
        ("EulerDiscreteScheduler", {"use_exponential_sigmas": True}, "Euler Exponential"),
        ("EulerDiscreteScheduler", {"use_beta_sigmas": True}, "Euler Beta"),
        ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, "Heun Karras"),
        ("LMSDiscreteScheduler", {}, "LMS"),
        ("DEISMultistepScheduler", {"use_karras_sigmas": True}, "DEIS Karras"),
        ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, "Euler"),
    ],
)  # fmt: skip
def test_label_reads_the_solver_and_schedule_from_the_config(cls, options, want):
    assert scheduler_label(_diffusers(cls, **options)) == want


def test_label_of_a_class_studio_has_no_name_for_is_the_class():
    sched = _diffusers("KarrasVeScheduler") if hasattr(diffusers, "KarrasVeScheduler") else None
    sched = sched or diffusers.FlowMatchEulerDiscreteScheduler()
    assert scheduler_label(sched) == type(sched).__name__


def test_a_scheduler_without_a_config_is_named_by_its_class():
    """A custom pipeline's scheduler object need not be a diffusers ConfigMixin."""

    class StepperOfMyOwn:
        pass

    assert scheduler_label(StepperOfMyOwn()) == "StepperOfMyOwn"
    assert ran_label("Euler SGM Uniform", StepperOfMyOwn()) == "StepperOfMyOwn"


def test_label_of_a_dpm_solver_config_without_an_order_is_2m():
    class Bare:
        config = {"solver_order": None}

    Bare.__name__ = "DPMSolverMultistepScheduler"
    assert scheduler_label(Bare()) == "DPM++ 2M"
    Bare.config = {}  # diffusers' default order is 2
    assert scheduler_label(Bare()) == "DPM++ 2M"


@pytest.mark.parametrize(
    ("requested", "cls", "options", "want"),
    [
        # the spacing schedule types are named only when the build has their spacing
        ("Euler SGM Uniform", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"},
         "Euler SGM Uniform"),
        ("Euler Simple", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"},
         "Euler Simple"),
        ("Euler SGM Uniform", "EulerDiscreteScheduler", {"timestep_spacing": "linspace"}, "Euler"),
        ("Euler DDIM", "EulerDiscreteScheduler", {"timestep_spacing": "leading", "steps_offset": 1},
         "Euler DDIM"),
        ("Euler DDIM", "EulerDiscreteScheduler", {"timestep_spacing": "leading", "steps_offset": 0},
         "Euler"),
        # a requested name spelled otherwise is recorded in Studio's spelling
        ("dpmpp_2m_karras", "DPMSolverMultistepScheduler",
         {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++"}, "DPM++ 2M Karras"),
        ("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, "PLMS"),
        ("Euler Karras", "EulerDiscreteScheduler", {}, "Euler"),
        (None, "PNDMScheduler", {"skip_prk_steps": True}, "PNDM"),
        ("", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, "Euler"),
    ],
)  # fmt: skip
def test_ran_label_names_what_was_built(requested, cls, options, want):
    assert ran_label(requested, _diffusers(cls, **options)) == want


# -- prompt schedules, DDIM's grid --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "second"),
    [
        ("Heun", True), ("DPM2", True), ("DPM2 a Karras", True), ("DPM++ 2S a", True),
        ("DPM++ SDE Karras", True), ("Euler", False), ("Euler a", False), ("DPM++ 2M Karras", False),
        ("DPM++ 2M SDE", False), ("LMS", False), ("DDIM", False), ("UniPC", False), ("LCM", False),
    ],
)  # fmt: skip
def test_prompt_schedules_count_every_model_call_of_a1111s_second_order_samplers(name, second):
    sched = make_scheduler(name, SD15)
    assert prompt_schedule_steps(sched, 20) == (40 if second else 20)
    assert prompt_schedule_steps(sched, 1) == (2 if second else 1)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 20, 25, 30, 40, 50, 64, 999, 1000, 2000])
def test_ddim_schedule_refused_exactly_where_a1111s_grid_has_another_length(steps):
    points = a1111_ddim_points(steps)
    if points == steps:
        check_schedule_steps("Euler DDIM", steps)
        check_schedule_steps("euler", steps)
        return
    with pytest.raises(BadInput) as e:
        check_schedule_steps("Euler DDIM", steps)
    message = str(e.value)
    assert f"A1111 samples {points} timesteps" in message
    assert f"Schedule type DDIM at {steps} steps" in message
    assert f"gives {steps};" in message and "divides 1000" in message


def test_ddim_step_check_needs_a_name_and_a_step_count():
    check_schedule_steps(None, 30)
    check_schedule_steps("", 30)
    check_schedule_steps("Euler DDIM", 0)  # refused elsewhere as a step count
    check_schedule_steps("DDIM", 30)  # the DDIM sampler's own grid is leading spacing's
    with pytest.raises(BadInput, match="A1111 samples 31"):
        check_schedule_steps("Heun DDIM", 30)


# -- names and refusals ---------------------------------------------------------------------------
def test_schedule_types_offered():
    assert schedule_types()[0] == "Automatic"
    assert {"Uniform", "Karras", "Exponential", "Beta", "SGM Uniform", "Simple", "DDIM"} <= set(
        schedule_types()
    )
    assert "Polyexponential" not in schedule_types()  # no diffusers option


def test_an_old_a1111_alias_with_the_19_field():
    """A1111 API name + "Schedule type: Karras": DPM2's Karras variants are names of their
    own (diffusers' documented mapping), not DPM2 + an option."""
    assert canonical_name("k_dpm_2_a", "Karras") == "DPM2 a Karras"
    assert canonical_name("k_dpm_2", "karras") == "DPM2 Karras"
    assert canonical_name("k_lms", "Karras") == "LMS Karras"
    assert canonical_name("dpmpp_2m Karras") == "DPM++ 2M Karras"


def test_a_karras_name_with_another_schedule_is_refused():
    with pytest.raises(BadInput, match="DPM\\+\\+ 2M Karras has the Karras schedule already") as e:
        canonical_name("DPM++ 2M Karras Exponential")
    assert "'Exponential'" in str(e.value)


def test_uniform_is_the_plain_name_of_samplers_that_start_at_sigma_max():
    """UniPC (A1111: time_uniform from t = T-1) and ComfyUI names with an A1111 field."""
    assert canonical_name("UniPC", "Uniform") == "UniPC"
    assert canonical_name("UniPC", "Normal") == "UniPC"
    assert canonical_name("euler_ancestral", "Uniform") == "Euler a"
    assert canonical_name("dpmpp_2m", "Normal") == "DPM++ 2M"
    assert canonical_name("DEIS", "Uniform") == "DEIS Uniform"  # linspace, not its default


def test_unknown_schedule_types_list_the_choices():
    for sampler, schedule in (("Euler", "Wobbly"), ("Euler Automatic", None)):
        with pytest.raises(BadInput) as e:
            canonical_name(sampler, schedule)
        assert "choose one of: Automatic, Uniform, Normal, Karras, " in str(e.value)


def test_the_samplers_own_ddim_grid_is_its_plain_name():
    assert canonical_name("DDIM", "DDIM") == "DDIM"
    assert canonical_name("PLMS", "ddim") == "PLMS"
    assert canonical_name("DDIM Uniform") == "DDIM Uniform"  # linspace: a grid of its own


@pytest.mark.parametrize(
    ("sampler", "schedule", "says"),
    [
        ("Euler", "Wobbly", ["Unknown schedule type 'Wobbly'", "Automatic", "Karras", "Beta"]),
        ("Euler Wobbly", None, ["Unknown scheduler 'Euler Wobbly'", "Euler a", "DPM++ 2M"]),
        ("euler", "linear_quadratic", ["Linear Quadratic", "linear-quadratic", "choose another"]),
        ("Euler", "KL Optimal", ["KL Optimal", "KL-optimal"]),
        ("LCM", "Karras", ["LCM with the Karras schedule", "LCMScheduler has no use_karras"]),
        ("DPM++ 2M", "DDIM", ["DPMSolverMultistepScheduler spaces n + 1 points"]),
        ("DPM2", "Beta", ["DPM2 with the Beta schedule", "next-to-last sigma", "Karras"]),
        ("DPM++ 2S a Karras", None, None),
    ],
)
def test_refusals_say_what_and_why(sampler, schedule, says):
    if says is None:
        assert canonical_name(sampler, schedule) == sampler
        return
    with pytest.raises(BadInput) as e:
        canonical_name(sampler, schedule)
    for words in says:
        assert words in str(e.value), (words, str(e.value))


def test_dpm2_refusal_names_the_reason_and_what_to_use_instead():
    with pytest.raises(BadInput) as e:
        canonical_name("DPM2 a", "Exponential")
    message = str(e.value)
    assert message.startswith(
        "DPM2 a with the Exponential schedule can't be built: A1111 drops the next-to-last sigma"
    )
    assert message.endswith("(use it plain or with Karras)")


def test_unknown_sampler_lists_the_names_to_choose_from():
    with pytest.raises(BadInput) as e:
        canonical_name("Eulr")
    message = str(e.value)
    assert message.startswith("Unknown scheduler 'Eulr'; choose one of: Euler, Euler a, ")
    assert ", DPM++ 2M Karras, " in message and message.endswith(", TCD")


def test_a_comfyui_scheduler_without_a_diffusers_option_is_no_unknown_type():
    """ComfyUI's own scheduler names reach the "no diffusers option" reason, not "unknown"."""
    for comfy in ("linear_quadratic", "beta"):
        with pytest.raises(BadInput) as e:
            canonical_name("euler", comfy)
        assert "Unknown" not in str(e.value), comfy


def test_split_name_and_the_names_offered():
    assert split_name("DPM++ 2M Karras") == ("DPM++ 2M Karras", None)
    assert split_name("dpm++ 2m sde exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_name("  euler-a ") == ("Euler a", None)
    with pytest.raises(BadInput, match="Unknown scheduler 'Restart'"):
        split_name("Restart")
    names = scheduler_names()
    assert "DPM++ 2M Karras" in names and "DPM fast" not in names
