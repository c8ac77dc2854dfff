"""A failure never poisons the cache: after an out-of-memory error in the
VAE decode of an SDXL job the VAE is back in its dtype, and the decode falls back to tiles,
then to the CPU. The OOM is simulated (torch.OutOfMemoryError raised by a patched decode):
CUDA was not run here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.cancel import CancelToken
from studio.engine.diffusion.sd.pipeline import load_pipeline
from studio.engine.diffusion.sd.sampling import denoise
from studio.engine.jobs.events import Progress
from studio.engine.jobs.runner import JobContext, Runner


@pytest.fixture
def sdxl(tiny_models):
    runner = Runner()
    events: list = []
    ctx = JobContext(1, events.append, CancelToken(), runner)
    pipe = load_pipeline(ctx, str(tiny_models.sdxl))
    pipe.vae.to(torch.float16)  # as on a GPU: SDXL's VAE upcasts itself to fp32 to decode
    assert pipe.vae.config.force_upcast
    yield ctx, pipe, events
    pipe.vae.to(torch.float32)


def _run(ctx, pipe, seed=1):
    return denoise(
        ctx,
        pipe,
        preview="off",
        preview_of="x0",
        total_steps=2,
        prompt="a cat",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(seed),
    )


def _oom_decode(pipe, monkeypatch, fail_first: int):
    real = pipe.vae.decode
    calls: list[tuple[str, torch.dtype, bool]] = []

    def decode(z, *args, **kwargs):
        v = pipe.vae
        calls.append((v.device.type, v.dtype, bool(v.use_tiling)))
        if len(calls) <= fail_first:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return real(z, *args, **kwargs)

    monkeypatch.setattr(pipe.vae, "decode", decode)
    return calls


def test_oom_in_decode_falls_back_to_tiles_and_the_vae_keeps_its_dtype(sdxl, monkeypatch):
    ctx, pipe, events = sdxl
    reference = _run(ctx, pipe)[0]
    calls = _oom_decode(pipe, monkeypatch, fail_first=1)
    (image,) = _run(ctx, pipe)
    assert pipe.vae.dtype == torch.float16  # diffusers left it in fp32 before
    assert calls[0][1] == torch.float32 and not calls[0][2]  # the pipeline's upcast decode
    assert calls[1][2]  # then tiled
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1
    assert any(isinstance(e, Progress) and "tiles" in (e.message or "") for e in events)
    assert not pipe.vae.use_tiling  # tiling was switched back off


def test_oom_in_tiles_too_decodes_on_the_cpu(sdxl, monkeypatch):
    ctx, pipe, events = sdxl
    calls = _oom_decode(pipe, monkeypatch, fail_first=2)
    (image,) = _run(ctx, pipe)
    assert calls[-1][:2] == ("cpu", torch.float32)
    assert image.std() > 0 and pipe.vae.dtype == torch.float16
    assert any(isinstance(e, Progress) and "CPU" in (e.message or "") for e in events)


def test_oom_everywhere_fails_and_the_next_job_still_works(sdxl, monkeypatch):
    ctx, pipe, _ = sdxl
    _oom_decode(pipe, monkeypatch, fail_first=3)
    with pytest.raises(torch.OutOfMemoryError):
        _run(ctx, pipe)
    assert pipe.vae.dtype == torch.float16
    monkeypatch.undo()
    assert _run(ctx, pipe)[0].std() > 0
