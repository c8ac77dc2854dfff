"""Samplers on the tiny models: DPM++ SDE reproducible per seed,
trailing timesteps for turbo/LCM models with every sampler, Karras reset by a non-Karras name,
"DPM++ 2S a" stochastic, the metadata naming what ran, and the catalog's timestep_spacing."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.cancel import CancelToken
from studio.engine.diffusion.schedulers import (
    SCHEDULERS,
    make_scheduler,
    scheduler_label,
)
from studio.engine.fixtures.tiny_models import SCHEDULER_CONFIG
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import JobContext, Runner


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


def _image(runner, model, **kw):
    base = dict(model=str(model), prompt="a cat", steps=3, width=64, height=64, preview="off")
    base.update(kw)
    final = runner.run(GenerateRequest(**base))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    return final


@pytest.mark.parametrize("name", ["DPM++ SDE", "DPM++ SDE Karras", "DPM++ 2S a"])
def test_stochastic_samplers_reproduce_per_seed(runner, tiny_models, name):
    """DPM++ SDE draws its noise from a torchsde Brownian tree seeded by the scheduler's
    noise_sampler_seed (None before: fresh entropy every run, so a seed didn't reproduce)."""
    a = _image(runner, tiny_models.sd, scheduler=name, seed=7)
    b = _image(runner, tiny_models.sd, scheduler=name, seed=7)
    c = _image(runner, tiny_models.sd, scheduler=name, seed=8)
    assert np.array_equal(a.images[0], b.images[0])
    assert not np.array_equal(a.images[0], c.images[0])
    assert a.metadata[0]["sampler"] == name


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


def test_metadata_names_what_ran(runner, tiny_models):
    # A name is recorded in A1111's spelling; the model's default by what it is.
    assert _image(runner, tiny_models.sd, scheduler="PLMS").metadata[0]["sampler"] == "PLMS"
    assert _image(runner, tiny_models.sd).metadata[0]["sampler"] == "PNDM"
    final = _image(runner, tiny_models.sd, scheduler="dpmpp_2m_karras")
    assert final.metadata[0]["sampler"] == "DPM++ 2M Karras"


def test_catalog_timestep_spacing_is_used(tiny_models, monkeypatch):
    from studio.engine.diffusion import pipeline

    runner = Runner()
    ctx = JobContext(1, lambda e: None, CancelToken(), runner)
    monkeypatch.setattr(pipeline, "recommended_settings", lambda ref: {})
    assert load(ctx, tiny_models.sd, "DDIM").config.timestep_spacing != "trailing"
    monkeypatch.setattr(
        pipeline, "recommended_settings", lambda ref: {"timestep_spacing": "trailing"}
    )
    assert load(ctx, tiny_models.sd, "DDIM").config.timestep_spacing == "trailing"


def load(ctx, model, name):
    from studio.engine.diffusion.pipeline import load_pipeline

    return load_pipeline(ctx, str(model), scheduler=name).scheduler
