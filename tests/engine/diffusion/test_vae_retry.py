"""fp16/bf16 VAE overflow (NaN or black output) is detected and the decode retried in fp32."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL

from studio.engine.jobs.events import Finished, Progress
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


def _request(tiny_models, dtype: str) -> GenerateRequest:
    return GenerateRequest(
        model=str(tiny_models.sd),
        prompt="a cat",
        steps=2,
        width=64,
        height=64,
        seed=3,
        preview="off",
        dtype=dtype,
    )


def _overflowing_decode(monkeypatch, result: str):
    """Make AutoencoderKL.decode overflow like fp16 does, but only in reduced precision."""
    real = AutoencoderKL.decode
    calls: list[torch.dtype] = []

    def decode(self, z, *args, **kwargs):
        calls.append(self.dtype)
        out = real(self, z, *args, **kwargs)
        if self.dtype == torch.float32:
            return out
        sample = out[0] if isinstance(out, tuple) else out.sample
        bad = torch.full_like(sample, float("nan") if result == "nan" else -1.0)
        return (bad,) if isinstance(out, tuple) else type(out)(sample=bad)

    monkeypatch.setattr(AutoencoderKL, "decode", decode)
    return calls


def test_nan_decode_in_bf16_is_retried_in_fp32(tiny_models, monkeypatch):
    runner = Runner(device="cpu")
    reference = runner.run(_request(tiny_models, "float32"))
    assert isinstance(reference, Finished)
    calls = _overflowing_decode(monkeypatch, "nan")
    events = []
    final = runner.run(_request(tiny_models, "bfloat16"), events.append)
    assert isinstance(final, Finished), getattr(final, "message", final)
    assert calls == [torch.bfloat16, torch.float32]  # one failed decode, one fp32 retry
    img = final.images[0]
    assert img.std() > 1  # a real picture, not black
    # The same latents decoded in fp32 give (up to bf16 sampling noise) the fp32 result.
    assert np.abs(img.astype(int) - reference.images[0].astype(int)).mean() < 40
    assert any(isinstance(e, Progress) and "float32" in e.message for e in events)
    # The VAE is back in its own dtype for the next job (which retries again).
    calls.clear()
    assert isinstance(runner.run(_request(tiny_models, "bfloat16")), Finished)
    assert calls == [torch.bfloat16, torch.float32]


def test_black_decode_is_retried_but_fp32_black_is_left_alone(tiny_models, monkeypatch):
    calls = _overflowing_decode(monkeypatch, "black")
    runner = Runner(device="cpu")
    final = runner.run(_request(tiny_models, "bfloat16"))
    assert isinstance(final, Finished)
    assert calls == [torch.bfloat16, torch.float32]
    assert final.images[0].max() > 0
    calls.clear()
    final = runner.run(_request(tiny_models, "float32"))
    assert isinstance(final, Finished) and calls == [torch.float32]
