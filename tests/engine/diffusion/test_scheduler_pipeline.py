"""Samplers end to end on the tiny models (a generated image and its metadata): DPM++ SDE
reproducible per seed, the metadata naming the scheduler that ran, the schedule type recorded
in the infotext, and the catalog's timestep_spacing reaching the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.cancel import CancelToken
from studio.core.metadata import format_parameters
from studio.engine.diffusion.sd.schedulers import canonical_name
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


def test_metadata_names_what_ran(runner, tiny_models):
    # A name is recorded in A1111's spelling; the model's default by what it is.
    assert _image(runner, tiny_models.sd, scheduler="PLMS").metadata[0]["sampler"] == "PLMS"
    assert _image(runner, tiny_models.sd).metadata[0]["sampler"] == "PNDM"
    final = _image(runner, tiny_models.sd, scheduler="dpmpp_2m_karras")
    assert final.metadata[0]["sampler"] == "DPM++ 2M Karras"


def test_catalog_timestep_spacing_is_used(tiny_models, monkeypatch):
    from studio.engine.diffusion.sd import pipeline

    runner = Runner()
    ctx = JobContext(1, lambda e: None, CancelToken(), runner)
    monkeypatch.setattr(pipeline, "recommended_settings", lambda ref: {})
    assert load(ctx, tiny_models.sd, "DDIM").config.timestep_spacing != "trailing"
    monkeypatch.setattr(
        pipeline, "recommended_settings", lambda ref: {"timestep_spacing": "trailing"}
    )
    assert load(ctx, tiny_models.sd, "DDIM").config.timestep_spacing == "trailing"


def load(ctx, model, name):
    from studio.engine.diffusion.sd.pipeline import load_pipeline

    return load_pipeline(ctx, str(model), scheduler=name).scheduler


def test_generate_metadata_names_the_scheduler_that_ran(tiny_models, monkeypatch):
    """End to end: a build that loses the Karras sigmas is recorded as plain "DPM++ 2M"."""
    from studio.engine.diffusion.sd import pipeline
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    real = pipeline.make_scheduler

    def lossy(name, base_config, *args, **kw):
        sched = real(name, base_config, *args, **kw)
        if name is not None:
            sched = type(sched).from_config({**sched.config, "use_karras_sigmas": False})
        return sched

    monkeypatch.setattr(pipeline, "make_scheduler", lossy)
    request = GenerateRequest(
        model=str(tiny_models.sd), prompt="a cat", steps=2, width=64, height=64, seed=1,
        scheduler="DPM++ 2M Karras", preview="off",
    )  # fmt: skip
    final = Runner().run(request)
    assert isinstance(final, Finished), getattr(final, "message", final)
    assert final.metadata[0]["sampler"] == "DPM++ 2M"


def test_generated_image_records_the_schedule_type(tiny_models):
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    request = GenerateRequest(
        model=str(tiny_models.sd), prompt="a cat", steps=3, width=64, height=64, seed=1,
        scheduler=canonical_name("DPM++ 2M SDE", "Exponential"), preview="off",
    )  # fmt: skip
    final = Runner().run(request)
    assert isinstance(final, Finished), getattr(final, "message", final)
    meta = final.metadata[0]
    assert meta["sampler"] == "DPM++ 2M SDE Exponential"
    assert "Sampler: DPM++ 2M SDE, Schedule type: Exponential" in format_parameters(meta)
