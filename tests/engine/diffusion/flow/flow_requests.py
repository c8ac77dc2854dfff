"""The GenerateRequest the flow tests send (what the CLI and the canvas build): a tiny size,
two steps, no previews, the CPU in float32; each test overrides what it is about."""

from __future__ import annotations

from studio.engine.jobs.requests import GenerateRequest

DEFAULTS = dict(
    prompt="a cat",
    width=64,
    height=64,
    steps=2,
    guidance=0.0,
    seed=0,
    preview="off",
    device="cpu",
    dtype="float32",
)


def flow_request(model, **kw) -> GenerateRequest:
    return GenerateRequest(**{**DEFAULTS, "model": str(model), **kw})
