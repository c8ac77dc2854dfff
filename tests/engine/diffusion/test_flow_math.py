"""flow.py: the flow-matching x0_hat (Lipman et al. 2023; Esser et al. 2024), unpacking of
FLUX's 2x2-packed latents, the latent->RGB tables and the tiny-decoder preview path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.engine.diffusion.families import family as family_named
from studio.engine.diffusion.flow.previews import (
    FlowPreview,
    FlowTap,
    flow_x0,
    latent_rgb,
    spatial_latents,
    unpack_2x2,
)


def test_tap_recovers_x0_exactly_on_the_flow_path():
    """On x_sigma = (1 - sigma) x0 + sigma eps with the true velocity v = eps - x0, the tap's
    x0_hat is x0 at every step, and the scheduler's own step is untouched."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 16, 4, 4, generator=g), torch.randn(1, 16, 4, 4, generator=g)
    ref = FlowMatchEulerDiscreteScheduler(shift=3.0)
    ref.set_timesteps(4)
    tap = FlowTap(sched)
    x = eps.clone()
    for t in sched.timesteps:
        sigma = float(sched.sigmas[sched.step_index or 0])
        x_t = (1 - sigma) * x0 + sigma * eps
        out = sched.step(eps - x0, t, x_t).prev_sample
        expect = ref.step(eps - x0, t, x_t).prev_sample
        assert torch.allclose(out, expect)
        assert tap.sigma == pytest.approx(sigma)
        assert torch.allclose(tap.x0, x0, atol=1e-5)
        x = out
    tap.remove()
    assert "step" not in vars(sched)  # the instance attribute is gone: the class method is back
    assert torch.allclose(x, x0, atol=1e-5)  # Euler on the straight path lands on x0


def test_flow_x0_formula():
    x, v = torch.tensor([2.0]), torch.tensor([4.0])
    assert flow_x0(x, v, 0.25).item() == 1.0


def test_unpack_inverts_diffusers_pack():
    from diffusers import FluxPipeline, QwenImagePipeline

    lat = torch.randn(2, 16, 8, 12)
    for cls in (FluxPipeline, QwenImagePipeline):
        packed = cls._pack_latents(lat, 2, 16, 8, 12)
        assert torch.equal(unpack_2x2(packed, 8 * 8, 12 * 8, 8), lat)
    # FLUX.2: patchify then pack, the same channel layout.
    from diffusers import Flux2KleinPipeline

    lat32 = torch.randn(1, 32, 8, 12)
    packed = Flux2KleinPipeline._pack_latents(Flux2KleinPipeline._patchify_latents(lat32))
    unpacked = unpack_2x2(packed, 8 * 8, 12 * 8, 8)  # (1, 32, 8, 12)... in 2x2 blocks
    assert torch.equal(unpacked, lat32)
    with pytest.raises(ValueError):
        unpack_2x2(torch.zeros(1, 7, 64), 64, 64, 8)


def test_spatial_latents_per_family():
    assert spatial_latents("zimage", torch.zeros(1, 16, 4, 4), 32, 32, 8).shape == (1, 16, 4, 4)
    assert spatial_latents("qwen", torch.zeros(1, 16, 1, 4, 4), 32, 32, 8).shape == (1, 16, 4, 4)
    assert spatial_latents("flux1", torch.zeros(1, 4, 64), 32, 32, 8).shape == (1, 16, 4, 4)


@pytest.mark.parametrize("family", ["flux1", "flux1-fill", "flux2", "zimage", "sd3", "qwen"])
def test_latent_rgb_is_the_linear_map(family):
    fam = family_named(family)
    rows, bias = fam.latent_rgb, fam.latent_rgb_bias
    lat = torch.randn(1, len(rows), 3, 5)
    rgb = latent_rgb(lat, family)
    expect = np.einsum("chw,cr->hwr", lat[0].numpy(), np.array(rows)) + np.array(bias)
    expect = np.round((np.clip(expect, -1, 1) + 1) * 127.5)
    assert rgb.shape == (3, 5, 3) and np.abs(rgb.astype(int) - expect).max() <= 1


def test_taesd_preview_on_packed_flux_latents():
    """A 16-channel AutoencoderTiny (TAEF1's architecture) decodes the unpacked x0 at full
    resolution; without one the preview falls back to the latent map."""
    from diffusers import AutoencoderTiny

    tiny = AutoencoderTiny(
        latent_channels=16,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )

    class Pipe:
        vae_scale_factor = 8

    packed = torch.randn(1, 16, 64)  # 8x8 latent of 16 channels packed 2x2 -> 16 tokens
    full = FlowPreview(Pipe(), "flux1", "taesd", 64, 64, tiny)(packed)
    assert full.shape == (64, 64, 3)
    fallback = FlowPreview(Pipe(), "flux1", "taesd", 64, 64, None)(packed)
    assert fallback.shape == (8, 8, 3)


def test_flux2_previews_use_all_32_channels():
    """FLUX.2 tokens carry 32 channels x 2x2: the latent preview is 2h x 2w and uses all 32
    rows of its table (a channel left out changes the colour)."""

    class Pipe:
        vae_scale_factor = 8

    tokens = torch.zeros(1, 16, 128)  # a 4x4 token grid -> an 8x8 latent of 32 channels
    img0 = FlowPreview(Pipe(), "flux2", "latent", 64, 64)(tokens)
    assert img0.shape == (8, 8, 3)
    tokens[..., 31 * 4 : 32 * 4] = 5.0  # only the last latent channel is on
    img1 = FlowPreview(Pipe(), "flux2", "latent", 64, 64)(tokens)
    assert not np.array_equal(img0, img1)
