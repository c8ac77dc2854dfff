"""AUTOMATIC1111's Hires. fix on the tiny SD model: sizes by A1111's rule
(``int(width * scale)``, ``Hires resize`` with a 0 side following the aspect), its latent
upscale modes (modules/shared.py ``latent_upscale_modes``), the second pass's steps in the
job's progress, and the infotext A1111 writes for it."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.metadata import format_parameters, parse_parameters
from studio.engine.diffusion.sd.hires import LATENT_MODES, hires_size, target_size
from studio.engine.jobs.events import Failed, Finished, Progress
from studio.engine.jobs.requests import GenerateRequest, HiresFix
from studio.engine.jobs.runner import Runner


def test_latent_modes_are_a1111s():
    # A1111 modules/shared.py, copied: name -> (torch mode, antialias).
    a1111 = {
        "Latent": ("bilinear", False),
        "Latent (antialiased)": ("bilinear", True),
        "Latent (bicubic)": ("bicubic", False),
        "Latent (bicubic antialiased)": ("bicubic", True),
        "Latent (nearest)": ("nearest", False),
        "Latent (nearest-exact)": ("nearest-exact", False),
    }
    assert LATENT_MODES == a1111


@pytest.mark.parametrize(
    "size, spec, expected",
    [
        ((512, 768), HiresFix(scale=1.5), (768, 1152)),  # int(512 * 1.5), int(768 * 1.5)
        ((512, 512), HiresFix(scale=1.3), (665, 665)),  # int(665.6): A1111 truncates
        ((512, 768), HiresFix(resize=(1024, 0)), (1024, 1536)),  # 1024 * 768 // 512
        ((512, 768), HiresFix(resize=(0, 1000)), (666, 1000)),  # 1000 * 512 // 768
    ],
)
def test_the_second_pass_size_is_a1111s(size, spec, expected):
    assert hires_size(*size, spec) == expected
    w, h = expected
    assert target_size(*size, spec) == (w // 8 * 8, h // 8 * 8)


def test_a_resize_of_both_sides_covers_then_crops_to_the_box():
    spec = HiresFix(resize=(1024, 512))
    assert hires_size(512, 512, spec) == (1024, 1024)  # cover 1024x512 keeping 1:1
    assert target_size(512, 512, spec) == (1024, 512)


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu")


def _run(runner, model, **kw):
    base = dict(
        model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=3, scheduler="Euler"
    )
    events: list = []
    final = runner.run(GenerateRequest(**{**base, "preview": "off", **kw}), emit=events.append)
    return final, events


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos"])
def test_hires_makes_the_upscaled_picture_in_a_second_pass(runner, tiny_models, upscaler):
    spec = HiresFix(scale=2.0, steps=4, denoise=0.5, upscaler=upscaler)
    final, events = _run(runner, tiny_models.sd, hires=spec)
    assert isinstance(final, Finished), getattr(final, "message", final)
    assert final.images[0].shape == (128, 128, 3)
    steps = [e for e in events if isinstance(e, Progress)]
    # 2 first-pass steps, then img2img's int(4 * 0.5) = 2 (SDEdit keeps the last steps).
    assert steps[-1].step == steps[-1].total == 4
    text = format_parameters(final.metadata[0])
    assert "Size: 64x64" in text  # A1111 writes the first pass's size
    read = parse_parameters(text)
    assert read["hires_upscale"] == 2.0 and read["hires_steps"] == 4
    assert read["hires_upscaler"] == upscaler and read["denoising_strength"] == 0.5
    plain, _ = _run(runner, tiny_models.sd)
    assert plain.images[0].shape == (64, 64, 3)


def test_a_batch_gives_each_image_its_own_second_pass(runner, tiny_models):
    spec = HiresFix(scale=1.5, steps=2, denoise=0.5)
    final, _ = _run(runner, tiny_models.sd, hires=spec, count=2)
    assert isinstance(final, Finished), getattr(final, "message", final)
    assert [im.shape for im in final.images] == [(96, 96, 3)] * 2
    assert not np.array_equal(final.images[0], final.images[1])
    alone, _ = _run(runner, tiny_models.sd, hires=spec, seed=4)
    assert np.abs(alone.images[0].astype(int) - final.images[1].astype(int)).max() <= 2


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(hires=HiresFix(upscaler="4x-NoSuchUpscaler")), "not installed"),
        (dict(hires=HiresFix(scale=8.0)), "use 1 to 4"),
        (dict(hires=HiresFix(denoise=0.0)), "denoising strength"),
    ],
)
def test_a_hires_request_that_cannot_run_is_one_line(runner, tiny_models, kw, words):
    final, _ = _run(runner, tiny_models.sd, **kw)
    assert isinstance(final, Failed) and words in final.message and "\n" not in final.message
