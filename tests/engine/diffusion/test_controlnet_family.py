"""ControlNets and families: a ControlNet made for another family is refused
in one line before it loads; the inpainting ControlNet gets its conditioning image built from
the init image and the mask (masked pixels = -1)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.diffusion.families import family
from studio.engine.diffusion.sd.sampling import control_kwargs, inpaint_condition
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import ControlInput, GenerateRequest
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu")


def test_sd1_controlnet_on_sdxl_is_refused_in_one_line(runner, tiny_models):
    control = ControlInput("canny", np.zeros((64, 64, 3), np.uint8), str(tiny_models.controlnet))
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sdxl), prompt="a cat", steps=2, width=64, height=64,
            preview="off", controls=(control,),
        )
    )  # fmt: skip
    assert isinstance(final, Failed) and final.exit_code == 2, final
    assert final.message == (
        "ControlNet tiny-controlnet is for SD 1.x but tiny-sdxl is SDXL: use an SDXL "
        "ControlNet (e.g. sdxl-canny)"
    )
    # The runner is fine afterwards.
    ok = runner.run(
        GenerateRequest(model=str(tiny_models.sdxl), prompt="a", steps=1, width=64, height=64)
    )
    assert isinstance(ok, Finished)


def test_family_controlnet_defaults():
    assert family("sdxl").controlnet_scale == 0.5 and family("sd1").controlnet_scale == 1.0
    assert family("sdxl").controlnet_defaults["canny"] == "sdxl-canny"
    assert family("sd1").controlnet_defaults["canny"] == "sd15-canny"


def test_inpaint_condition_marks_masked_pixels_minus_one():
    image = np.full((8, 8, 3), 255, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 255
    cond = inpaint_condition(image, mask)
    assert cond.shape == (1, 3, 8, 8)
    assert (cond[0, :, 2:4, 2:4] == -1).all() and (cond[0, :, :2] == 1).all()
    c = ControlInput("inpaint", np.zeros((4, 4, 3), np.uint8), "m")
    kw = control_kwargs("inpaint", (c,), 8, 8, inpaint_source=(image, mask))
    assert (kw["control_image"] == cond).all()


def test_inpaint_controlnet_ignores_the_given_image_and_uses_the_masked_init(runner, tiny_models):
    """Before, the control image the user gave (often the unmasked photo) went in as is."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 20:44] = 255

    def run(control_image):
        control = ControlInput("inpaint", control_image, str(tiny_models.controlnet))
        final = runner.run(
            GenerateRequest(
                model=str(tiny_models.sd), prompt="x", init_image=img, mask=mask,
                mask_padding=8, strength=1.0, steps=2, seed=5, preview="off",
                controls=(control,),
            )
        )  # fmt: skip
        assert isinstance(final, Finished), getattr(final, "message", final)
        return final.images[0]

    a = run(img)
    b = run(np.zeros_like(img))
    assert np.array_equal(a, b)
