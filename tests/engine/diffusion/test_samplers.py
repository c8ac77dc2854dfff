"""Samplers on the tiny models' scheduler config: trailing timesteps for turbo/LCM models with
every sampler, Karras reset by a non-Karras name, "DPM++ 2S a" stochastic (end to end on the
tiny models: test_scheduler_pipeline.py)."""

from __future__ import annotations

import pytest

from studio.engine.diffusion.sd.schedulers import (
    SCHEDULERS,
    make_scheduler,
    scheduler_label,
)
from studio.engine.fixtures.tiny_models import SCHEDULER_CONFIG


def test_dpmpp_2s_a_is_ancestral():
    sched = make_scheduler("DPM++ 2S a", SCHEDULER_CONFIG)
    assert type(sched).__name__ == "DPMSolverSinglestepScheduler"
    assert sched.config.algorithm_type == "sde-dpmsolver++"  # fresh noise every step
    assert scheduler_label(sched) == "DPM++ 2S a"


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_turbo_timesteps_are_trailing_for_every_sampler(name):
    """One step of a distilled model must start at t = 999 (before: PNDM/DDIM started at 1,
    UniPC at 501, only Euler was trailing)."""
    sched = make_scheduler(name, SCHEDULER_CONFIG, turbo=True)
    if "timestep_spacing" in sched.config:  # DPMSolverSinglestep has none: always linspace
        assert sched.config.timestep_spacing == "trailing"
    sched.set_timesteps(1)
    assert int(sched.timesteps[0]) >= 998, (name, sched.timesteps)


def test_a_name_without_karras_resets_the_models_karras_sigmas():
    base = dict(
        SCHEDULER_CONFIG,
        _class_name="DPMSolverMultistepScheduler",
        use_karras_sigmas=True,
        algorithm_type="dpmsolver++",
    )
    base.pop("skip_prk_steps")
    plain = make_scheduler("DPM++ 2M", base)
    assert not plain.config.use_karras_sigmas
    assert scheduler_label(plain) == "DPM++ 2M"
    assert make_scheduler("DPM++ 2M Karras", base).config.use_karras_sigmas
    assert make_scheduler(None, base).config.use_karras_sigmas  # the model's own default
