"""The engine's speed settings on a flow job: the transformer's blocks are what compile
would take, and on the CPU the job says in one line that compile is off."""

from __future__ import annotations

from flow_requests import flow_request

from studio.engine.diffusion.flow.generate import run_flow_generate
from studio.engine.diffusion.shared.speed import block_names


def test_flow_job_reports_compile_declined_on_the_cpu(flow_models, job, monkeypatch):
    monkeypatch.setenv("STUDIO_COMPILE", "1")
    j = job()
    fin = run_flow_generate(j.ctx, flow_request(flow_models.flux1, seed=5))
    assert fin.images[0].std() > 0
    messages = [e.message for e in j.events if isinstance(e, j.Progress) and e.message]
    assert "torch.compile is off on the CPU (it only pays on a GPU)" in messages


def test_flux_blocks_are_the_diffusers_transformer_blocks():
    from diffusers import FluxTransformer2DModel
    from diffusers.models.transformers.transformer_flux import (
        FluxSingleTransformerBlock,
        FluxTransformerBlock,
    )

    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    assert set(block_names(model)) == {
        FluxTransformerBlock.__name__,
        FluxSingleTransformerBlock.__name__,
    }
