"""Preview decoding and the x0_hat tap on the scheduler (Ho et al. 2020 eq. 15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from studio.engine.diffusion.families import family
from studio.engine.diffusion.sd.schedulers import make_scheduler
from studio.engine.diffusion.shared.previews import (
    StepTap,
    latent_for_xt,
    latent_to_rgb,
    to_uint8,
)
from studio.engine.fixtures.tiny_models import SCHEDULER_CONFIG


def test_latent_to_rgb_is_the_linear_map():
    lat = torch.randn(1, 4, 3, 5)
    rgb = latent_to_rgb(lat, "sdxl")
    w = np.array(family("sdxl").latent_rgb)
    b = np.array(family("sdxl").latent_rgb_bias)
    expect = np.einsum("chw,cr->hwr", lat[0].numpy(), w) + b
    expect = np.round((np.clip(expect, -1, 1) + 1) * 127.5).astype(np.uint8)
    assert rgb.shape == (3, 5, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - expect.astype(int)).max() <= 1


def test_to_uint8_range():
    img = to_uint8(torch.tensor([[-2.0, -1.0, 0.0], [1.0, 2.0, 0.5]]).reshape(2, 1, 3))
    assert img.ravel().tolist() == [0, 0, 128, 255, 255, 191]


def _step_once(name: str, prediction="epsilon", steps=10):
    cfg = dict(SCHEDULER_CONFIG, prediction_type=prediction)
    sched = make_scheduler(name, cfg)
    sched.set_timesteps(steps)
    tap = StepTap(sched)
    torch.manual_seed(0)
    t = sched.timesteps[0]
    x0 = torch.randn(1, 4, 4, 4)
    eps = torch.randn(1, 4, 4, 4)
    return sched, tap, t, x0, eps


@pytest.mark.parametrize("name", ["Euler", "Euler a", "Heun", "LMS"])
def test_x0_for_sigma_schedulers(name):
    sched, tap, t, x0, eps = _step_once(name)
    sigma = float(sched.sigmas[0])
    sample = x0 + sigma * eps  # k-diffusion form x = x0 + sigma eps
    sched.step(eps, t, sample, return_dict=False)
    torch.testing.assert_close(tap.x0, x0, atol=1e-4, rtol=1e-4)


# PNDM and LCM run epsilon models only (v-prediction is not used with them in practice).
@pytest.mark.parametrize(
    "name, prediction",
    [
        (name, prediction)
        for name in ["DPM++ 2M", "DPM++ 2M Karras", "UniPC", "DEIS", "DDIM", "DDPM", "PNDM", "LCM"]
        for prediction in ["epsilon", "v_prediction"]
        if not (name in ("PNDM", "LCM") and prediction == "v_prediction")
    ],
)
def test_x0_for_vp_schedulers(name, prediction):
    sched, tap, t, x0, eps = _step_once(name, prediction)
    if getattr(sched, "sigmas", None) is not None and hasattr(sched, "_sigma_to_alpha_sigma_t"):
        sched._init_step_index(t)
        a, s = sched._sigma_to_alpha_sigma_t(sched.sigmas[sched.step_index])
        a, s = float(a), float(s)
        sched._step_index = None
    else:
        abar = float(sched.alphas_cumprod[int(t)])
        a, s = math.sqrt(abar), math.sqrt(1 - abar)
    sample = a * x0 + s * eps  # x_t = sqrt(abar) x0 + sqrt(1 - abar) eps
    out = eps if prediction == "epsilon" else a * eps - s * x0  # v = alpha eps - sigma x0
    result = sched.step(out, t, sample, return_dict=True)
    assert result.prev_sample.shape == sample.shape  # the wrapped step still returns its output
    tol = 5e-3 if name == "LCM" else 1e-4  # LCM's boundary condition blends in a little x_t
    torch.testing.assert_close(tap.x0, x0, atol=tol * 20 if name == "LCM" else tol, rtol=tol)


def test_tap_remove_restores_step():
    sched, tap, *_ = _step_once("Euler")
    assert sched.step == tap._wrapped
    tap.remove()
    assert sched.step == tap._step


def test_xt_is_rescaled_for_sigma_schedulers():
    sched = make_scheduler("Euler", SCHEDULER_CONFIG)
    sched.set_timesteps(5)
    sched._init_step_index(sched.timesteps[0])
    lat = torch.ones(1, 4, 2, 2)
    sigma = float(sched.sigmas[0])
    torch.testing.assert_close(latent_for_xt(lat, sched), lat / math.sqrt(1 + sigma**2))
    ddim = make_scheduler("DDIM", SCHEDULER_CONFIG)
    ddim.set_timesteps(5)
    assert latent_for_xt(lat, ddim) is lat
