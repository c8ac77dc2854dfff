"""Samplers on a zero-terminal-SNR model (an SDXL v-prediction ``ztsnr`` file, NoobAI-XL V-Pred:
``rescale_betas_zero_snr`` in the scheduler config the loader builds every sampler from).

The oracles: Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
Algorithm 1 (rescale sqrt(alpha_bar) so that its last value is 0), computed here in float64;
and each diffusers class built directly from that config, which shows whether the class
applies the option or drops it without a word. A sampler either samples the rescaled
schedule from pure noise or is refused in one line that names it and what to pick instead.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest

from studio.core.errors import BadInput
from studio.engine.diffusion.sd.schedulers import (
    SCHEDULERS,
    check_zero_snr,
    make_scheduler,
    scheduler_names,
    split_name,
    zero_snr_samplers,
)

# SDXL's scheduler_config.json (stabilityai/stable-diffusion-xl-base-1.0)
SDXL = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}  # fmt: skip
# ... with what a v_pred + ztsnr file declares (ComfyUI's SDXL.model_type)
ZTSNR = {**SDXL, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
PLAIN = {k: v for k, v in ZTSNR.items() if not k.startswith("_")}
# diffusers' stand-in for alpha_bar = 0 in the sigma-based classes: sigma_max = sqrt(2**24 - 1)
TINY = 2.0**-24


def lin_alphas_cumprod() -> np.ndarray:
    """Lin et al. 2024, Algorithm 1, on SDXL's scaled-linear betas."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    return root**2


def _direct(name: str):
    """The sampler's diffusers class built straight from the zero-SNR config."""
    cls = SCHEDULERS[split_name(name)[0]].cls
    return getattr(diffusers, cls).from_config(PLAIN)


def _applies_zero_snr(scheduler) -> bool:
    return float(scheduler.alphas_cumprod[-1]) <= TINY


def test_the_oracle_has_zero_terminal_snr():
    alpha_bar = lin_alphas_cumprod()
    assert alpha_bar[-1] == pytest.approx(0.0, abs=1e-15)
    assert alpha_bar[0] == pytest.approx(1 - 0.00085, rel=1e-12)  # the first step is untouched


@pytest.mark.parametrize("name", scheduler_names())
def test_every_sampler_runs_the_rescaled_schedule_or_is_refused(name):
    """Whether a sampler may run is what its diffusers class does with the option."""
    if _applies_zero_snr(_direct(name)):
        sched = make_scheduler(name, ZTSNR)
        got = np.asarray(sched.alphas_cumprod, dtype=np.float64)
        np.testing.assert_allclose(got[:-1], lin_alphas_cumprod()[:-1], rtol=2e-4, atol=1e-9)
        assert got[-1] <= TINY
        assert sched.config.prediction_type == "v_prediction"
    else:
        with pytest.raises(BadInput) as err:
            make_scheduler(name, ZTSNR)
        text = str(err.value)
        assert "\n" not in text
        assert f"Sampler {name} " in text and "zero-terminal-SNR" in text
        assert "pick Euler, Euler a" in text


@pytest.mark.parametrize(
    "name",
    ["Heun", "LMS", "LMS Karras", "DPM2", "DPM2 a Karras", "DPM++ SDE", "DPM++ SDE Karras",
     "DPM++ 2S a", "PNDM", "PLMS", "DEIS", "Heun Exponential", "k_heun"],
)  # fmt: skip
def test_the_samplers_diffusers_runs_on_the_plain_betas_are_refused(name):
    """These classes have no rescale_betas_zero_snr: built anyway, they would start at SDXL's
    sigma_max 14.6 instead of pure noise, where the model was trained."""
    assert not _applies_zero_snr(_direct(name))
    with pytest.raises(BadInput, match="can't run this zero-terminal-SNR model"):
        make_scheduler(name, ZTSNR)


@pytest.mark.parametrize("name", ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M SDE", "UniPC"])
def test_the_k_diffusion_samplers_start_from_pure_noise(name):
    """SDXL's leading spacing is replaced for them (A1111 starts at t = T-1): the first sigma
    is the rescaled schedule's last, sqrt((1 - 2**-24) / 2**-24) ~ 4096."""
    sched = make_scheduler(name, ZTSNR)
    sched.set_timesteps(20)
    assert int(sched.timesteps[0]) == 999
    assert float(sched.sigmas[0]) == pytest.approx(((1 - TINY) / TINY) ** 0.5, rel=1e-3)


def test_the_refusal_offers_the_a1111_samplers_that_work():
    assert zero_snr_samplers() == ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DDIM", "UniPC"]
    for name in zero_snr_samplers():
        assert _applies_zero_snr(_direct(name)), name


def test_the_models_own_class_is_checked_too():
    with pytest.raises(BadInput, match="^Sampler Heun can't run"):
        make_scheduler(None, {**ZTSNR, "_class_name": "HeunDiscreteScheduler"})
    with pytest.raises(
        BadInput, match="^Sampler MadeUpScheduler can.t run .* MadeUpScheduler has no"
    ):
        check_zero_snr(None, {**ZTSNR, "_class_name": "MadeUpScheduler"})
    own = make_scheduler(None, ZTSNR)
    assert type(own).__name__ == "EulerDiscreteScheduler" and _applies_zero_snr(own)


def test_a_config_without_the_class_is_diffusers_default_pndm():
    """StableDiffusionPipeline's default scheduler is PNDM, which has no such option."""
    with pytest.raises(BadInput, match="^Sampler PNDM can't run"):
        check_zero_snr(None, PLAIN)


@pytest.mark.parametrize("config", [SDXL, {**ZTSNR, "rescale_betas_zero_snr": False}])
def test_models_without_zero_snr_keep_every_sampler(config):
    for name in ("Heun", "DPM++ SDE", "PLMS", "DEIS"):
        check_zero_snr(name, config)
        check_zero_snr(None, {**config, "_class_name": "HeunDiscreteScheduler"})
    assert type(make_scheduler("Heun", config)).__name__ == "HeunDiscreteScheduler"


def test_the_refusal_names_the_schedule_type_asked_for():
    with pytest.raises(BadInput, match=r"^Sampler DPM\+\+ SDE Exponential can't run"):
        check_zero_snr("DPM++ SDE Exponential", ZTSNR)
    with pytest.raises(BadInput, match=r"^Sampler DPM\+\+ SDE can't run"):
        check_zero_snr("dpmpp_sde", ZTSNR)  # ComfyUI's spelling, named as Studio names it


def test_the_static_class_list_is_what_the_installed_diffusers_accepts():
    import inspect

    from studio.engine.diffusion.sd.schedulers import ZERO_SNR_CLASSES

    classes = {spec.cls for spec in SCHEDULERS.values()}
    accepting = {
        c
        for c in classes
        if "rescale_betas_zero_snr" in inspect.signature(getattr(diffusers, c).__init__).parameters
    }
    assert accepting == ZERO_SNR_CLASSES & classes
