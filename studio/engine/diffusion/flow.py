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

from studio.engine.diffusion.previews import to_uint8

# rows = latent channels, columns = R, G, B (+ bias); from ComfyUI's latent_formats.py.
FLUX1_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX1_BIAS = (-0.0329, -0.0718, -0.0851)
SD3_RGB = (
    (-0.0922, -0.0175, 0.0749),
    (0.0311, 0.0633, 0.0954),
    (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496),
    (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427),
    (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268),
    (0.0922, 0.0988, 0.0951),
    (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895),
    (-0.0069, -0.0030, -0.0810),
    (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189),
)
SD3_BIAS = (0.2394, 0.2135, 0.1925)
# Flux.2: 32 latent channels (the transformer sees 128 = 32 x 2x2 patches).
FLUX2_RGB = (
    (0.0058, 0.0113, 0.0073),
    (0.0495, 0.0443, 0.0836),
    (-0.0099, 0.0096, 0.0644),
    (0.2144, 0.3009, 0.3652),
    (0.0166, -0.0039, -0.0054),
    (0.0157, 0.0103, -0.0160),
    (-0.0398, 0.0902, -0.0235),
    (-0.0052, 0.0095, 0.0109),
    (-0.3527, -0.2712, -0.1666),
    (-0.0301, -0.0356, -0.0180),
    (-0.0107, 0.0078, 0.0013),
    (0.0746, 0.0090, -0.0941),
    (0.0156, 0.0169, 0.0070),
    (-0.0034, -0.0040, -0.0114),
    (0.0032, 0.0181, 0.0080),
    (-0.0939, -0.0008, 0.0186),
    (0.0018, 0.0043, 0.0104),
    (0.0284, 0.0056, -0.0127),
    (-0.0024, -0.0022, -0.0030),
    (0.1207, -0.0026, 0.0065),
    (0.0128, 0.0101, 0.0142),
    (0.0137, -0.0072, -0.0007),
    (0.0095, 0.0092, -0.0059),
    (0.0000, -0.0077, -0.0049),
    (-0.0465, -0.0204, -0.0312),
    (0.0095, 0.0012, -0.0066),
    (0.0290, -0.0034, 0.0025),
    (0.0220, 0.0169, -0.0048),
    (-0.0332, -0.0457, -0.0468),
    (-0.0085, 0.0389, 0.0609),
    (-0.0076, 0.0003, -0.0043),
    (-0.0111, -0.0460, -0.0614),
)
FLUX2_BIAS = (-0.0329, -0.0718, -0.0851)
# Qwen-Image's VAE is Wan 2.1's (16 channels, normalised by per-channel mean/std).
QWEN_RGB = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
QWEN_BIAS = (-0.1835, -0.0868, -0.3360)

# family -> (factors, bias, packed 2x2?)
FLOW_LATENTS: dict[str, tuple[tuple, tuple, bool]] = {
    "flux1": (FLUX1_RGB, FLUX1_BIAS, True),
    "flux2": (FLUX2_RGB, FLUX2_BIAS, True),
    "zimage": (FLUX1_RGB, FLUX1_BIAS, False),  # Z-Image uses the FLUX.1 VAE
    "sd3": (SD3_RGB, SD3_BIAS, False),
    "qwen": (QWEN_RGB, QWEN_BIAS, True),
}


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
    family: str, latents: torch.Tensor, height: int, width: int, vae_scale_factor: int
):
    """The preview latent as (B, C, h, w) for ``family``: unpacked for the packed families,
    Qwen's 5-D (B, C, 1, h, w) squeezed, else as is."""
    packed = FLOW_LATENTS.get(family, (None, None, False))[2]
    if packed and latents.ndim == 3:
        return unpack_2x2(latents, height, width, vae_scale_factor)
    if latents.ndim == 5:
        return latents[:, :, 0]
    return latents


def latent_rgb(latents: torch.Tensor, family: str) -> np.ndarray:
    """The linear latent->RGB map of the first image, at latent resolution, (h, w, 3) uint8.
    With fewer channels than the table has rows (the tiny test models), the first rows are
    used; extra channels are ignored."""
    rows, bias, _ = FLOW_LATENTS[family]
    lat = latents[0].float()
    n = min(lat.shape[0], len(rows))
    w = torch.tensor(rows[:n], dtype=lat.dtype, device=lat.device)
    b = torch.tensor(bias, dtype=lat.dtype, device=lat.device)
    rgb = torch.einsum("chw,cr->hwr", lat[:n], w) + b
    return to_uint8(rgb)


class FlowPreview:
    """Decodes a flow pipeline's latents (x0_hat or x_t, in the pipeline's layout) for a preview:
    ``latent`` (the linear map), ``taesd`` (an AutoencoderTiny such as TAEF1/TAESD3, on the
    transformer-space latents) or ``full`` (the pipeline's VAE with its scaling undone)."""

    def __init__(self, pipe, family: str, mode: str, height: int, width: int, tiny=None) -> None:
        self.pipe, self.family, self.mode = pipe, family, mode
        self.height, self.width = height, width
        self.tiny = tiny
        self.vsf = int(getattr(pipe, "vae_scale_factor", 8) or 8)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        # (B, C, h, w); for FLUX.2 the unpacking also undoes its 2x2 patchify: 32 channels.
        lat = spatial_latents(self.family, latents[:1], self.height, self.width, self.vsf)
        if self.mode == "latent" or (self.mode == "taesd" and self.tiny is None):
            return latent_rgb(lat, self.family)
        if self.mode == "taesd":
            dec = self.tiny
            return to_uint8(dec.decode(lat.to(dec.device, dec.dtype)).sample[0])
        return to_uint8(self._full(lat))

    def _full(self, lat: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        cfg = vae.config
        if self.family == "qwen":
            mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1).to(lat)
            std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1).to(lat)
            x = (lat * std + mean).unsqueeze(2)
            return vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0][0, :, 0]
        if self.family == "flux2":
            bn = vae.bn
            packed = _patchify(lat)
            mean = bn.running_mean.view(1, -1, 1, 1).to(packed)
            std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + cfg.batch_norm_eps).to(packed)
            x = _unpatchify(packed * std + mean)
            return vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0][0]
        x = lat / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
        return vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0][0]


def _unpatchify(lat: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = lat.shape
    x = lat.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, h * 2, w * 2)


def _patchify(lat: torch.Tensor) -> torch.Tensor:
    b, c, h, w = lat.shape
    x = lat.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)
