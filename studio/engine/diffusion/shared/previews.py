"""Step previews: turn the latents of a running denoising loop into a small RGB image.

What is shown (``preview_of``):

- ``xt``: the current latent x_t itself (mostly noise early on).
- ``x0``: the predicted clean latent, Ho et al. 2020 eq. (15) rearranged:
  x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t).  For k-diffusion ("sigma") schedulers
  (Euler, Heun, LMS, DPM2, DPM++ SDE; Karras et al. 2022) the sample is x = x0 + sigma eps, so
  x0_hat = x - sigma eps; for v-prediction models x0_hat = sqrt(abar) x_t - sqrt(1-abar) v.

The pipelines don't pass the noise prediction to ``callback_on_step_end`` (its tensor inputs are
``latents`` and the prompt embeddings), so :class:`StepTap` wraps ``scheduler.step`` for the
job: it takes the scheduler's own ``pred_original_sample``/``denoised`` where the scheduler
returns one (Euler, Euler a, DDIM, DDPM, LCM, Heun, LMS, ...), and otherwise computes x0_hat
from the model output and the sigma or abar the scheduler just used (DPM++, UniPC, DEIS, PNDM).

How it is decoded (``mode``):

- ``latent``: a linear C->3 map per model family (``Family.latent_rgb``), at latent resolution
  (H/8 x W/8): a few thousand multiply-adds, near free.
- ``taesd``: AutoencoderTiny (madebyollin/taesd, taesdxl), full resolution, cheap.
- ``full``: the pipeline's own VAE, exact but as costly as the final decode.
- ``off``: nothing is tapped or decoded.

Where previews decode: on the pipeline's execution device (:func:`execution_device`), which
under an offload plan is not where the VAE's weights rest (``vae.device`` is the CPU then).
Under model offload the VAE's accelerate hook would, on ``vae.decode``, push the denoiser off
the GPU and move only the VAE (the latents stayed behind on the CPU): :func:`decode_on` moves
the VAE to the execution device for the preview without that hook and back after it, so the
denoiser stays where it is. A tiny decoder (a few MB) simply moves to the execution device.
A preview that runs out of memory turns the job's previews into latent previews.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from studio.engine.diffusion.families import Family
from studio.engine.diffusion.families import family as get_family
from studio.engine.jobs.device import free_cache


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (H, W, 3) in [-1, 1] -> (H, W, 3) uint8."""
    if image.shape[0] == 3 and image.ndim == 3 and image.shape[-1] != 3:
        image = image.permute(1, 2, 0)
    # nan_to_num: an fp16 SDXL VAE can overflow; a preview must never turn into garbage.
    image = ((torch.nan_to_num(image.float()).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(image.cpu().numpy())


def latent_to_rgb(latents: torch.Tensor, family: Family | str) -> np.ndarray:
    """Linear latent->RGB approximation of the first latent in the batch, at latent size, with
    the family's ``latent_rgb`` factors and ``latent_rgb_bias`` (a Family or its name)."""
    fam = get_family(family)
    weights, bias = fam.latent_rgb, fam.latent_rgb_bias
    if not weights:
        raise ValueError(f"{fam.label} has no latent preview factors")
    lat = latents[0].float()
    w = torch.tensor(weights, dtype=lat.dtype, device=lat.device)
    b = torch.tensor(bias, dtype=lat.dtype, device=lat.device)
    rgb = torch.einsum("chw,cr->hwr", lat[: w.shape[0]], w) + b
    return to_uint8(rgb)


class StepTap:
    """Wraps ``scheduler.step`` for one job to keep the latest predicted clean latent x0_hat.

    Install only when a preview of x0 is wanted (mode != off): with previews off the
    scheduler runs untouched."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.x0: torch.Tensor | None = None
        self._step = scheduler.step
        scheduler.step = self._wrapped

    def remove(self) -> None:
        self.scheduler.step = self._step

    def _wrapped(self, model_output, timestep, sample, *args, **kwargs):
        return_dict = kwargs.pop("return_dict", True)
        out = self._step(model_output, timestep, sample, *args, return_dict=True, **kwargs)
        try:
            self.x0 = self._x0(out, model_output, timestep, sample)
        except Exception:  # noqa: BLE001 - a preview must never break the job
            self.x0 = None
        return out if return_dict else out.to_tuple()

    def _used_sigma(self) -> float | None:
        s = self.scheduler
        sigmas = getattr(s, "sigmas", None)
        idx = getattr(s, "step_index", None)
        if sigmas is None or idx is None or idx < 1:
            return None
        return float(sigmas[min(idx - 1, len(sigmas) - 1)])

    def _x0(self, out, eps, timestep, sample) -> torch.Tensor | None:
        s = self.scheduler
        sigma = self._used_sigma()
        for name in ("pred_original_sample", "denoised"):
            x0 = getattr(out, name, None)
            if isinstance(x0, torch.Tensor):
                return x0
        pred = s.config.get("prediction_type", "epsilon")
        if pred == "sample":
            return eps
        if sigma is not None and hasattr(s, "_sigma_to_alpha_sigma_t"):
            # VP-form solvers (DPM-Solver++, UniPC, DEIS): x_t = alpha_t x0 + sigma_t eps.
            alpha_t, sigma_t = s._sigma_to_alpha_sigma_t(torch.tensor(sigma))
            alpha_t, sigma_t = float(alpha_t), float(sigma_t)
        elif sigma is not None:
            # k-diffusion form: x = x0 + sigma eps (the sample is not scaled by c_in here).
            if pred == "v_prediction":
                return eps * (-sigma / math.sqrt(sigma**2 + 1)) + sample / (sigma**2 + 1)
            return sample - sigma * eps
        else:
            abar = s.alphas_cumprod[int(timestep)]
            alpha_t, sigma_t = float(abar.sqrt()), float((1 - abar).sqrt())
        if pred == "v_prediction":
            return alpha_t * sample - sigma_t * eps
        return (sample - sigma_t * eps) / alpha_t


def latent_for_xt(latents: torch.Tensor, scheduler) -> torch.Tensor:
    """x_t in the data scale: k-diffusion latents (x = x0 + sigma eps, sigma up to ~15) carry an
    extra factor sqrt(1 + sigma^2) compared with the VP form the decoders expect."""
    sigmas = getattr(scheduler, "sigmas", None)
    idx = getattr(scheduler, "step_index", None)
    if sigmas is None or idx is None or hasattr(scheduler, "_sigma_to_alpha_sigma_t"):
        return latents
    sigma = float(sigmas[min(idx, len(sigmas) - 1)])
    return latents / math.sqrt(1.0 + sigma**2)


def find_taesd(family: Family | str) -> Path | None:
    """A local AutoencoderTiny for ``family``: the family's ``preview_env`` variable (e.g.
    ``STUDIO_TAESD``, ``STUDIO_TAESDXL``), else its ``preview_decoder`` catalog id if installed,
    else the HF cache copy of its ``preview_repo``. Never downloads."""
    fam = get_family(family)
    env = os.environ.get(fam.preview_env) if fam.preview_env else None
    if env and Path(env).is_dir():
        return Path(env)
    from studio.core.errors import ModelError
    from studio.engine.diffusion.shared.loader import resolve_model

    for ref in (fam.preview_decoder, fam.preview_repo):
        if not ref:
            continue
        try:
            resolved = resolve_model(ref)
        except ModelError:
            continue
        if resolved.path is not None and resolved.path.is_dir():
            return resolved.path
    return None


def execution_device(pipe) -> torch.device:
    """The device a pipeline computes on: diffusers' ``_execution_device`` (the onload device
    under model, group or sequential offload, where ``pipe.device`` and ``vae.device`` say
    the CPU), else ``pipe.device``."""
    try:
        dev = pipe._execution_device
    except Exception:  # noqa: BLE001 - not a diffusers pipeline (tests' stand-ins)
        dev = None
    if dev is None:
        dev = getattr(pipe, "device", None) or "cpu"
    return torch.device(dev)


def _model_offload_hook(module):
    """The module's own accelerate ``CpuOffload`` hook (``enable_model_cpu_offload``), else
    None (no hook, or the per-layer hooks of sequential offload, which must stay)."""
    hook = vars(module).get("_hf_hook")
    return hook if hook is not None and type(hook).__name__ == "CpuOffload" else None


@contextlib.contextmanager
def decode_on(module, device: torch.device):
    """``module`` (a VAE) ready to decode on ``device`` for a preview. Under model offload its
    weights rest on the CPU and its ``CpuOffload`` hook, fired by ``vae.decode``, would first
    offload the previous model of the chain (the transformer or UNet, every step) and then
    move the VAE: here the hook is set aside, the VAE alone moves to ``device`` and back to
    where it was. Under group / sequential offload the hooks move the weights themselves:
    nothing to do but pass the latents on ``device``."""
    hook = _model_offload_hook(module)
    if hook is None:
        yield module
        return
    params = next(iter(module.parameters()), None)
    rest = params.device if params is not None else device
    del vars(module)["_hf_hook"]
    try:
        if rest != device:
            module.to(device)
        yield module
    finally:
        if rest != device:
            module.to(rest)
        vars(module)["_hf_hook"] = hook


def tiny_on(decoder, device: torch.device):
    """A tiny preview decoder (AutoencoderTiny, a few MB) on ``device``: it is loaded where
    the VAE's weights are, the CPU under offload, while the latents are on ``device``."""
    if decoder is not None and getattr(decoder, "device", device) != device:
        decoder.to(device)
    return decoder


class PreviewDecoder:
    """Decodes latents for previews in one of the modes; built once per job. ``taesd`` and
    ``full`` decode on the pipeline's execution device (see the module doc); a preview that
    runs out of memory switches the rest of the job to ``latent`` (``note`` says so)."""

    def __init__(self, pipe, mode: str, family: Family | str, taesd=None) -> None:
        self.pipe = pipe
        self.mode = mode
        self.family = family
        self.taesd = taesd
        self.note = ""

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        lat = latents[:1]
        if self.mode == "latent":
            return latent_to_rgb(lat, self.family)
        try:
            return to_uint8(self._decode(lat))
        except Exception as e:
            from studio.engine.jobs.device import is_oom

            if not is_oom(e):
                raise
            free_cache(lat.device)
            self.mode, self.note = "latent", "Out of memory in a preview decode: latent previews"
            return latent_to_rgb(lat, self.family)

    def _decode(self, lat: torch.Tensor) -> torch.Tensor:
        dev = execution_device(self.pipe)
        if self.mode == "taesd":
            dec = tiny_on(self.taesd, dev)
            # AutoencoderTiny works on the UNet's (scaled) latents directly.
            return dec.decode(lat.to(dev, dec.dtype)).sample[0]
        vae = self.pipe.vae
        cfg = vae.config
        lat = lat / cfg.scaling_factor
        shift = getattr(cfg, "shift_factor", None)
        if shift:
            lat = lat + shift
        with decode_on(vae, dev):
            return vae.decode(lat.to(dev, vae.dtype)).sample[0]
