"""VRAM-aware loading: the placement decision from the free memory and the
pipeline's real component sizes, reported in an event and in the metadata. The memory numbers
are given (meta-device tensors stand in for real SDXL weights, STUDIO_FREE_VRAM_GIB for the
card): CUDA was not run, so the offload calls themselves are untested here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from studio.engine.diffusion.families import family
from studio.engine.diffusion.shared.placement import placement_label, plan_placement
from studio.engine.jobs.events import Finished, Progress
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


def _module(gb: float) -> torch.nn.Module:
    m = torch.nn.Module()
    n = int(gb * 1e9 / 2)  # fp16 elements
    m.weight = torch.nn.Parameter(torch.empty(n, dtype=torch.float16, device="meta"))
    return m


def _sdxl_sized():
    """A stand-in with SDXL's weight sizes (UNet 5.14 GB, text encoders 0.25 + 1.39 GB,
    VAE 0.17 GB in fp16) and no memory behind them."""
    return SimpleNamespace(
        unet=_module(5.14), text_encoder=_module(0.25), text_encoder_2=_module(1.39),
        vae=_module(0.17),
    )  # fmt: skip


@pytest.mark.parametrize(
    "free, expected",
    # 4 GiB: the untiled 1024 px decode (~2.8 GiB, SDXL's VAE tiles only above 1024 px) is the
    # peak, and group offload (faster than sequential) holds it.
    [(24.0, "GPU"), (12.0, "GPU"), (8.0, "model offload"), (4.0, "group offload")],
)
def test_sdxl_placement_follows_free_memory(free, expected):
    plan = plan_placement(_sdxl_sized(), family("sdxl"), torch.device("cuda"), "sdxl", free)
    assert placement_label(plan) == expected, plan.describe()
    assert plan.fits


def test_cpu_plans_nothing_and_the_override_forces(monkeypatch):
    assert plan_placement(_sdxl_sized(), family("sdxl"), torch.device("cpu"), "x") is None
    monkeypatch.setenv("STUDIO_OFFLOAD", "sequential")
    plan = plan_placement(_sdxl_sized(), family("sdxl"), torch.device("cuda"), "x", 24.0)
    assert placement_label(plan) == "sequential offload"


@pytest.mark.parametrize("forced, expected", [("", "GPU"), ("model", "model offload")])
def test_the_choice_is_reported_in_an_event_and_the_metadata(
    tiny_models, monkeypatch, forced, expected
):
    """The tiny model's weights are a few MB, so only a forced offload changes its plan; on the
    CPU the chosen plan is reported but the pipeline simply runs on the CPU."""
    monkeypatch.setenv("STUDIO_FREE_VRAM_GIB", "100")
    monkeypatch.setenv("STUDIO_OFFLOAD", forced)
    events = []
    final = Runner(device="cpu").run(
        GenerateRequest(model=str(tiny_models.sd), prompt="a", steps=1, width=64, height=64),
        events.append,
    )
    assert isinstance(final, Finished)
    assert final.metadata[0]["offload"] == expected
    msgs = [e.message for e in events if isinstance(e, Progress) and e.message]
    assert any(expected in m for m in msgs), msgs
