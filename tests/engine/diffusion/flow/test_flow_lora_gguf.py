"""LoRA on a flow family (FLUX.1, SD3) through the job handler, and a GGUF round-trip of a
tiny FLUX.1 transformer: written with the gguf package (Q8_0), loaded back with diffusers'
GGUF loader from a single file with the model's local config (never the network)."""

from __future__ import annotations

import numpy as np
import pytest
from flow_requests import flow_request

from studio.engine.diffusion.flow.generate import run_flow_generate
from studio.engine.diffusion.flow.load import load_flow
from studio.engine.jobs.requests import LoraSpec


def _req(model, **kw):
    return flow_request(model, **{"seed": 1, **kw})


@pytest.mark.parametrize("name", ["flux1", "sd3"])
def test_lora_changes_the_image_and_unloads(flow_models, job, tmp_path, name):
    from studio.engine.fixtures.tiny_flow_models import build_tiny_flow_lora

    model = getattr(flow_models, name)
    lora = build_tiny_flow_lora(model, tmp_path / f"{name}-lora.safetensors")
    plain = run_flow_generate(job().ctx, _req(model)).images[0]
    styled = run_flow_generate(job().ctx, _req(model, loras=(LoraSpec(str(lora), 1.0),))).images[0]
    again = run_flow_generate(job().ctx, _req(model)).images[0]
    assert np.abs(plain.astype(int) - styled.astype(int)).mean() > 1.0
    assert np.array_equal(plain, again)  # the next job without it is the plain model


def test_gguf_round_trip(flow_models, job, tmp_path):
    pytest.importorskip("gguf")
    import torch
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig

    from studio.engine.fixtures.tiny_flow_models import write_gguf_transformer

    path = write_gguf_transformer(flow_models.flux1, tmp_path / "tiny-flux-Q8_0.gguf")
    tr = FluxTransformer2DModel.from_single_file(
        str(path),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(flow_models.flux1),
        subfolder="transformer",
        torch_dtype=torch.float32,
        local_files_only=True,
    )
    from diffusers.quantizers.gguf.utils import GGUFParameter

    assert any(isinstance(p, GGUFParameter) for p in tr.parameters())  # stayed quantized
    ctx = job().ctx
    ref = run_flow_generate(ctx, _req(flow_models.flux1)).images[0]
    entry = load_flow(ctx, str(flow_models.flux1), "cpu", "float32")
    original = entry.base.transformer
    entry.base.transformer = tr
    entry.pipes.clear()
    try:
        quant = run_flow_generate(ctx, _req(flow_models.flux1)).images[0]
    finally:
        entry.base.transformer = original
        entry.pipes.clear()
    # Q8_0 keeps ~8 bits per weight: the image is close to the float one, not identical.
    diff = np.abs(ref.astype(int) - quant.astype(int))
    assert diff.mean() < 8 and quant.std() > 0
