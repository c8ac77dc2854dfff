"""Flow-matching pieces: the x0 preview of velocity models, unpacking packed latents, the
per-family latent-to-RGB factors, and a preview decoder for the flow families.

Flow matching / rectified flow (Lipman et al. 2023, "Flow Matching for Generative Modeling";
Liu et al. 2023; Esser et al. 2024, "Scaling Rectified Flow Transformers", SD3) interpolates
x_sigma = (1 - sigma) x0 + sigma eps and trains the network to predict the velocity
v = dx/dsigma = eps - x0. Given the model's velocity at x_t the clean sample is therefore

    x0_hat = x_t - sigma_t * v_theta(x_t, sigma_t)

which is what the previews show. Every diffusers flow pipeline (Flux, Flux.2, Z-Image, SD3,
Qwen-Image) steps ``FlowMatchEulerDiscreteScheduler`` with x_{next} = x_t + (sigma_next -
sigma_t) v, so :class:`FlowTap` reads v and sigma_t where the scheduler does, whatever sign
convention the transformer itself uses (Z-Image's pipeline negates its output first).

Packed latents: Flux.1, Flux.2 and Qwen-Image run the transformer on 2x2 patches of the latent
image flattened to tokens, (B, h/2 * w/2, 4C) with channel index c*4 + dy*2 + dx (diffusers'
``_pack_latents`` / Flux.2's ``_patchify_latents``); :func:`unpack_2x2` undoes it for previews.
Z-Image and SD3 keep (B, C, h, w) latents.

Latent-to-RGB factors: ComfyUI's ``comfy/latent_formats.py`` (Flux, SD3, Flux2, Wan21 — the
Qwen-Image VAE is Wan 2.1's), applied to latents as the transformer sees them (after the VAE
scaling/shift, or Qwen's mean/std normalisation). Not checked against real decodes here (no
real weights).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from studio.engine.diffusion.families.base import Family
from studio.engine.diffusion.shared.previews import decode_on, execution_device, tiny_on, to_uint8


def _family(family: Family | str) -> Family:
    from studio.engine.diffusion.families.registry import family as by_name

    return family if isinstance(family, Family) else by_name(family)


def flow_x0(sample: torch.Tensor, velocity: torch.Tensor, sigma: float) -> torch.Tensor:
    """x0_hat = x_t - sigma_t v (Lipman et al. 2023; Esser et al. 2024 eq. 2 with
    a_t = 1 - t, b_t = t)."""
    return sample - sigma * velocity


class FlowTap:
    """Wraps ``scheduler.step`` of a flow-matching scheduler for one job and keeps the latest
    x0_hat (:func:`flow_x0`, in the pipeline's own latent layout: packed for Flux).

    ``sigma_t`` is the scheduler's ``sigmas[step_index]`` before the step (what
    FlowMatchEulerDiscreteScheduler uses). Install only when previews are on; ``remove()``
    restores the scheduler."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.x0: torch.Tensor | None = None
        self.sigma: float | None = None
        self._own = "step" in vars(scheduler)  # already wrapped on the instance?
        self._step = scheduler.step
        scheduler.step = self._wrapped

    def remove(self) -> None:
        if self._own:
            self.scheduler.step = self._step
        else:
            del self.scheduler.step  # the class's method again

    def _wrapped(self, model_output, timestep, sample, *args, **kwargs):
        out = self._step(model_output, timestep, sample, *args, **kwargs)
        try:
            s = self.scheduler
            idx = int(s.step_index) - 1  # step() has advanced the index
            sigma = float(s.sigmas[idx])
            self.sigma = sigma
            self.x0 = flow_x0(sample, model_output.to(sample.dtype), sigma)
        except Exception:  # noqa: BLE001 - a preview must never break the job
            self.x0 = None
        return out


def unpack_2x2(
    tokens: torch.Tensor, height: int, width: int, vae_scale_factor: int
) -> torch.Tensor:
    """(B, (h/2)(w/2), 4C) packed tokens -> (B, C, h, w) latents, h = 2 * (height //
    (2 * vae_scale_factor)): the inverse of diffusers' Flux ``_pack_latents`` (and Flux.2's
    patchify + pack, which lays the channels out the same way)."""
    if tokens.ndim != 3:
        return tokens
    b, n, c4 = tokens.shape
    hp, wp = height // (2 * vae_scale_factor), width // (2 * vae_scale_factor)
    if hp * wp != n:  # unknown size: assume a square
        hp = wp = int(math.isqrt(n))
        if hp * wp != n:
            raise ValueError(f"cannot unpack {n} tokens into a {height}x{width} image")
    x = tokens.reshape(b, hp, wp, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, hp * 2, wp * 2)


def spatial_latents(
    family: Family | str, latents: torch.Tensor, height: int, width: int, vae_scale_factor: int
):
    """The preview latent as (B, C, h, w) for ``family``: unpacked for the packed families
    (``latent_packing`` "2x2"), one token per latent pixel (B, h*w, C) laid out on the grid
    (``"tokens"``), Qwen's 5-D (B, C, 1, h, w) squeezed, else as is."""
    packing = _family(family).latent_packing
    if packing == "2x2" and latents.ndim == 3:
        return unpack_2x2(latents, height, width, vae_scale_factor)
    if packing == "tokens" and latents.ndim == 3:
        b, _, c = latents.shape
        h, w = height // vae_scale_factor, width // vae_scale_factor
        return latents.transpose(1, 2).reshape(b, c, h, w)
    if latents.ndim == 5:
        return latents[:, :, 0]
    return latents


def latent_rgb(latents: torch.Tensor, family: Family | str) -> np.ndarray:
    """The family's linear latent->RGB map (``latent_rgb`` / ``latent_rgb_bias``) of the first
    image, at latent resolution, (h, w, 3) uint8. With fewer channels than the table has rows
    (the tiny test models), the first rows are used; extra channels are ignored."""
    fam = _family(family)
    rows, bias = fam.latent_rgb, fam.latent_rgb_bias
    lat = latents[0].float()
    n = min(lat.shape[0], len(rows))
    w = torch.tensor(rows[:n], dtype=lat.dtype, device=lat.device)
    b = torch.tensor(bias, dtype=lat.dtype, device=lat.device)
    rgb = torch.einsum("chw,cr->hwr", lat[:n], w) + b
    return to_uint8(rgb)


class _OnDevice:
    """A VAE as the family's ``decode_latents`` sees it: ``.device`` is the execution device
    (under group / sequential offload the weights' own device is the CPU or ``meta``), all
    else is the VAE's."""

    def __init__(self, vae, device: torch.device) -> None:
        self._vae, self.device = vae, device

    def __getattr__(self, name):
        return getattr(self._vae, name)


class FlowPreview:
    """Decodes a flow pipeline's latents (x0_hat or x_t, in the pipeline's layout) for a preview:
    ``latent`` (the linear map), ``taesd`` (an AutoencoderTiny such as TAEF1/TAESD3, on the
    transformer-space latents) or ``full`` (the pipeline's VAE with its scaling undone).

    ``taesd`` and ``full`` decode on the pipeline's execution device: under model offload
    the VAE moves there for the preview without its offload hook, so the transformer is not
    pushed off the GPU every step (``previews.decode_on``). A preview that runs out of memory
    turns the rest of the job's previews into ``latent`` ones (``note`` says so)."""

    def __init__(
        self, pipe, family: Family | str, mode: str, height: int, width: int, tiny=None
    ) -> None:
        self.pipe, self.family, self.mode = pipe, _family(family), mode
        self.height, self.width = height, width
        self.tiny = tiny
        self.note = ""
        self.vsf = int(getattr(pipe, "vae_scale_factor", 8) or 8)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        # (B, C, h, w); for FLUX.2 the unpacking also undoes its 2x2 patchify: 32 channels.
        lat = spatial_latents(self.family, latents[:1], self.height, self.width, self.vsf)
        if self.mode == "latent" or (self.mode == "taesd" and self.tiny is None):
            return latent_rgb(lat, self.family)
        try:
            dev = execution_device(self.pipe)
            if self.mode == "taesd":
                dec = tiny_on(self.tiny, dev)
                return to_uint8(dec.decode(lat.to(dev, dec.dtype)).sample[0])
            return to_uint8(self._full(lat, dev))
        except Exception as e:
            from studio.engine.jobs.device import is_oom

            if not is_oom(e):
                raise
            if lat.device.type == "cuda":
                torch.cuda.empty_cache()
            self.mode, self.note = "latent", "Out of memory in a preview decode: latent previews"
            return latent_rgb(lat, self.family)

    def _full(self, lat: torch.Tensor, dev: torch.device) -> torch.Tensor:
        vae = self.pipe.vae
        with decode_on(vae, dev):
            if self.family.decode_latents is not None:  # Qwen's mean/std, FLUX.2's batch norm
                return self.family.decode_latents(_OnDevice(vae, dev), lat.to(dev))
            cfg = vae.config
            x = lat / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
            return vae.decode(x.to(dev, vae.dtype), return_dict=False)[0][0]
