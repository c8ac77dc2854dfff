"""The memory planner's plans applied to a real (tiny) pipeline: fp8 weights by diffusers'
layerwise casting for the transformer, then the device placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.errors import BadInput
from studio.engine.diffusion.shared.memory import apply_plan, load_kwargs, plan_memory


def _run(pipe):
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="a cat",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    return (np.clip(out, 0, 1) * 255).round().astype(int)


def test_fp8_plan_on_a_tiny_flux(flow_models):
    from diffusers import DiffusionPipeline

    plan = plan_memory("flux1-schnell", 16, ram_gib=32, formats=("bf16", "fp8"))
    assert plan.weights == "fp8" and plan.fits
    assert load_kwargs(plan) == {}  # fp8 is applied after loading, not at load time
    ref = _run(DiffusionPipeline.from_pretrained(flow_models.flux1, local_files_only=True))
    pipe = DiffusionPipeline.from_pretrained(flow_models.flux1, local_files_only=True)
    forced = plan_memory(
        "flux1-schnell", 16, weights="fp8", offload="none", formats=("bf16", "fp8")
    )
    apply_plan(pipe, forced, device="cpu")
    linear = pipe.transformer.transformer_blocks[0].attn.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn  # stored in 8 bits
    img = _run(pipe)
    diff = np.abs(img - ref)
    assert 0 < diff.mean() < 10  # quantized: close to the float32 result, not identical


def test_text_encoders_have_no_fp8_plan():
    """fp8 layerwise casting breaks transformers text encoders (the pipelines read
    ``text_encoder.dtype``; T5 casts activations to its ``wo`` dtype): never planned."""
    with pytest.raises(BadInput, match="Unknown text_weights 'fp8'"):
        plan_memory("flux1-schnell", 8, text_weights="fp8")
