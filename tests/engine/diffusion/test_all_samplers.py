"""Every sampler name the CLI accepts runs one step on the tiny SD model (the DPM++ SDE
samplers need torchsde: an undeclared dependency shows here)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.diffusion.sd.schedulers import canonical_name, scheduler_names
from studio.engine.jobs.events import Finished, Progress
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


def test_the_cli_accepts_exactly_these_names():
    names = scheduler_names()
    assert len(names) >= 20 and "DPM++ SDE Karras" in names and "Euler a" in names
    for name in names:  # each canonical name is its own canonical spelling
        assert canonical_name(name) == name
        assert canonical_name(name.upper().replace(" ", "-")) == name


@pytest.mark.parametrize("name", scheduler_names())
def test_sampler_runs_one_step(runner, tiny_models, name):
    request = GenerateRequest(
        model=str(tiny_models.sd), prompt="a cat", steps=1, width=64, height=64,
        seed=3, scheduler=name, preview="off",
    )  # fmt: skip
    events = []
    final = runner.run(request, emit=events.append)
    assert isinstance(final, Finished), f"{name}: {getattr(final, 'message', final)}"
    (image,) = final.images
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    assert final.metadata[0]["sampler"] == name
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].step == progress[-1].total >= 1


def test_sde_sampler_through_the_cli(tiny_models, tmp_path, capsys):
    """The command line end to end with a sampler that needs torchsde (BrownianTree noise)."""
    from studio.cli import main

    out = tmp_path / "sde.png"
    rc = main([
        "generate", "--model", str(tiny_models.sd), "--prompt", "a cat", "--steps", "1",
        "--size", "64x64", "--seed", "5", "--scheduler", "dpmpp_sde_karras", "--preview", "off",
        "--out", str(out),
    ])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert out.is_file()
