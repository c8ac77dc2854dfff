"""The A1111 / ComfyUI sampler vocabulary, torch-free, against the peers' own rules:

- A1111 1.9+ ``modules/sd_samplers.py`` ``get_sampler_and_scheduler``: a schedule label (or
  alias) after the sampler name wins over the "Schedule type" field; "Automatic" becomes the
  sampler's ``options['scheduler']`` (``samplers_k_diffusion``: "DPM++ 2M" karras, "DPM++ 2M
  SDE" exponential, "Euler" none);
- A1111 ``modules/sd_schedulers.py`` (labels "SGM Uniform" with alias "SGMUniform", ...) and
  ``modules/sd_samplers_timesteps.py`` (DDIM, PLMS, UniPC: no sigma schedule);
- A1111 ``samplers_k_diffusion`` ``second_order`` (Heun, DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE,
  Restart);
- ComfyUI ``comfy/samplers.py`` ``KSAMPLER_NAMES`` / ``SCHEDULER_NAMES`` and
  ``sampler_object`` ("ddim" is k-diffusion's Euler on the scheduler's sigmas).
"""

from __future__ import annotations

import pytest

from studio.core.sampler_names import (
    a1111_label,
    compose,
    infotext_fields,
    is_k_diffusion,
    schedule_label,
    second_order,
    split_schedule,
)

# samplers_k_diffusion rows with second_order=True (A1111 1.9)
A1111_SECOND_ORDER = {"Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "Restart"}
A1111_FIRST_ORDER = {"Euler", "Euler a", "LMS", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE"}


# -- schedule labels -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("karras", "Karras"),
        ("Karras", "Karras"),
        ("  EXPONENTIAL ", "Exponential"),
        ("sgm_uniform", "SGM Uniform"),
        ("SGMUniform", "SGM Uniform"),
        ("SGM Uniform", "SGM Uniform"),
        ("align_your_steps", "Align Your Steps"),
        ("kl_optimal", "KL Optimal"),
        ("ddim_uniform", "DDIM"),  # ComfyUI's name for A1111's ddim scheduler
        ("automatic", "Automatic"),
    ],
)
def test_schedule_label_reads_names_labels_and_aliases(text, want):
    assert schedule_label(text) == want


def test_schedule_label_of_nothing_and_of_an_unknown_spelling():
    assert schedule_label(None) is None
    assert schedule_label("") is None
    assert schedule_label("   ") is None
    # kept (stripped) so that the engine can refuse it by the name the user typed
    assert schedule_label("  Wobbly ") == "Wobbly"


# -- sampler labels ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("k_dpmpp_2m", "DPM++ 2M"),
        ("DPM++ 2M", "DPM++ 2M"),
        ("dpm++ 2m", "DPM++ 2M"),
        ("  Euler   a ", "Euler a"),
        ("k_euler_ancestral", "Euler a"),
        ("k_dpm_ad", "DPM adaptive"),
        ("DPM-fast", "DPM fast"),
        ("ddim", "DDIM"),
        ("UniPC", "UniPC"),
        ("LCM", None),  # not an A1111 sampler
        ("Euler Karras", None),  # a name plus a schedule, not a sampler
    ],
)
def test_a1111_label_of_names_and_aliases(text, want):
    assert a1111_label(text) == want


def test_only_the_k_diffusion_samplers_run_on_a_sigma_schedule():
    for name in ("Euler", "euler a", "k_lms", "DPM++ 2M SDE", "DPM2 a", "Restart"):
        assert is_k_diffusion(name), name
    for name in ("DDIM", "PLMS", "UniPC", "DDIM CFG++", "LCM", "Nope", ""):
        assert not is_k_diffusion(name), name


def test_second_order_follows_a1111s_option():
    for name in A1111_SECOND_ORDER:
        assert second_order(name), name
        assert second_order(f"{name} Karras"), name  # the schedule doesn't change the solver
    for name in A1111_FIRST_ORDER | {"DDIM", "PLMS", "UniPC", "LCM", "TCD", "Nope"}:
        assert not second_order(name), name
    assert second_order("k_heun") and second_order("k_dpmpp_sde")
    assert second_order("DPM++ SDE Exponential") and not second_order("Euler SGM Uniform")


# -- a name and its schedule ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
        ("Euler SGM Uniform", ("Euler", "SGM Uniform")),  # longest label first, not "Uniform"
        ("Euler Uniform", ("Euler", "Uniform")),
        ("Heun  align your steps", ("Heun", "Align Your Steps")),
        ("euler karras", ("euler", "Karras")),
        ("LMS Linear Quadratic", ("LMS", "Linear Quadratic")),
        ("DDIM", ("DDIM", None)),
        ("UniPC", ("UniPC", None)),
        ("Karras", ("Karras", None)),  # a label alone names no sampler
        (" Euler  Karras ", ("Euler", "Karras")),
        ("EulerKarras", ("EulerKarras", None)),  # the label must follow a space
        ("", ("", None)),
        (None, ("", None)),
    ],
)
def test_split_schedule(name, want):
    assert split_schedule(name) == want


def test_infotext_fields_are_what_a1111_19_writes():
    assert infotext_fields("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert infotext_fields("Euler SGM Uniform") == ("Euler", "SGM Uniform")
    # k-diffusion's plain name is Uniform: A1111 >= 1.9 would read "DPM++ 2M" alone as Karras
    assert infotext_fields("DPM++ 2M") == ("DPM++ 2M", "Uniform")
    assert infotext_fields("Euler a") == ("Euler a", "Uniform")
    for name in ("DDIM", "PLMS", "UniPC", "LCM", "TCD"):  # no sigma schedule
        assert infotext_fields(name) == (name, None)


# -- A1111 get_sampler_and_scheduler / ComfyUI pairs ---------------------------------------------
@pytest.mark.parametrize(
    ("sampler", "field", "infotext", "want"),
    [
        # A1111 <= 1.8 texts (no field) keep their name
        ("DPM++ 2M", None, True, "DPM++ 2M"),
        ("DPM++ 2M Karras", None, True, "DPM++ 2M Karras"),
        ("DPM++ 2M Karras", "", True, "DPM++ 2M Karras"),
        # "Automatic": the sampler's own default (A1111 1.9 options['scheduler'])
        ("DPM++ 2M", "Automatic", True, "DPM++ 2M Karras"),
        ("DPM++ 2M SDE", "automatic", True, "DPM++ 2M SDE Exponential"),
        ("k_dpmpp_2m", "Automatic", True, "k_dpmpp_2m Karras"),
        ("Euler", "Automatic", True, "Euler"),
        ("Heun", "Automatic", False, "Heun"),
        ("LCM", "Automatic", False, "LCM"),  # no A1111 default: the name as given
        # a schedule in the name wins over the field in an infotext
        ("DPM++ 2M Karras", "Exponential", True, "DPM++ 2M Karras"),
        ("Euler SGM Uniform", "Karras", True, "Euler SGM Uniform"),
        # ... an explicit choice (CLI, panel) decides itself
        ("DPM++ 2M Karras", "Exponential", False, "DPM++ 2M Exponential"),
        ("Euler Karras", None, False, "Euler Karras"),
        # the field by label, name or alias
        ("DPM++ 2M SDE", "exponential", True, "DPM++ 2M SDE Exponential"),
        ("Euler", "SGMUniform", False, "Euler SGM Uniform"),
        ("Euler", "Wobbly", False, "Euler Wobbly"),  # refused later, by the engine
        # Uniform / Normal are the k-diffusion samplers' plain names
        ("DPM++ 2M", "Uniform", True, "DPM++ 2M"),
        ("Euler a", "Normal", False, "Euler a"),
        ("Euler Uniform", None, True, "Euler"),
        ("DDIM", "Uniform", False, "DDIM Uniform"),  # DDIM has no k-diffusion default grid
        # A1111 ignores the field for its timestep samplers
        ("DDIM", "Karras", True, "DDIM"),
        ("PLMS", "Exponential", True, "PLMS"),
        ("UniPC", "Karras", True, "UniPC"),
        ("UniPC", "Karras", False, "UniPC Karras"),
        ("DDIM", "Automatic", True, "DDIM"),
        # ... and they have no options['scheduler']: "Automatic" leaves them plain
        ("DDIM", "Automatic", False, "DDIM"),
        ("PLMS", "Automatic", False, "PLMS"),
        ("UniPC", "automatic", False, "UniPC"),
        # spacing in the sampler name is normalised
        ("  DPM++   2M ", None, False, "DPM++ 2M"),
    ],
)
def test_compose_follows_a1111(sampler, field, infotext, want):
    assert compose(sampler, field, infotext=infotext) == want


def test_compose_reads_an_explicit_choice_unless_told_it_is_an_infotext():
    """The CLI and the panel call compose without ``infotext``: the chosen field decides."""
    assert compose("DPM++ 2M Karras", "Exponential") == "DPM++ 2M Exponential"
    assert compose("UniPC", "Karras") == "UniPC Karras"


@pytest.mark.parametrize("sampler", [None, "", "   "])
def test_compose_of_no_sampler_is_no_name(sampler):
    assert compose(sampler) == ""
    assert compose(sampler, "") == ""


@pytest.mark.parametrize(
    ("sampler", "scheduler", "want"),
    [
        ("dpmpp_2m", "karras", "DPM++ 2M Karras"),
        ("dpmpp_2m", "normal", "DPM++ 2M"),
        ("dpmpp_2m", None, "DPM++ 2M"),
        ("dpmpp_2m", "", "DPM++ 2M"),
        ("dpmpp_2m_sde_gpu", "exponential", "DPM++ 2M SDE Exponential"),
        ("euler", "sgm_uniform", "Euler SGM Uniform"),
        ("euler", "simple", "Euler Simple"),
        ("heun", "beta", "Heun ComfyUI beta"),  # not A1111's Beta: another formula
        ("lms", "linear_quadratic", "LMS Linear Quadratic"),
        ("euler", "ddim_uniform", "Euler DDIM"),
        ("uni_pc", "kl_optimal", "UniPC KL Optimal"),
        # ComfyUI's "ddim" is Euler on the scheduler's sigmas, its own grid with ddim_uniform
        ("ddim", "karras", "Euler Karras"),
        ("ddim", "normal", "Euler"),
        ("ddim", "ddim_uniform", "DDIM"),
        ("ddim", None, "DDIM"),
        # a ComfyUI sampler with an A1111 label is read the A1111 way
        ("dpmpp_2m", "Karras", "dpmpp_2m Karras"),
    ],
)
def test_compose_reads_comfyui_pairs(sampler, scheduler, want):
    assert compose(sampler, scheduler) == want
