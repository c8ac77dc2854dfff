"""Regional torch.compile and channels-last on real (tiny) pipelines: which blocks are compiled
(counted independently, by the diffusers block classes), that the pictures do not change, that
the settings apply once, and where compile is declined."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.engine.diffusion.shared import speed
from studio.engine.diffusion.shared.speed import SpeedSettings, apply_speed


@pytest.fixture
def sd_pipe(tiny_models):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_models.sd), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe) -> np.ndarray:
    out = pipe(
        "a cat",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(3),
        output_type="np",
    )
    return out.images[0]


def test_compile_covers_every_transformer_block_and_keeps_the_picture(
    sd_pipe, tmp_path, monkeypatch
):
    from diffusers.models.attention import BasicTransformerBlock

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    before = _image(sd_pipe)
    blocks = [m for m in sd_pipe.unet.modules() if isinstance(m, BasicTransformerBlock)]
    assert blocks  # the tiny UNet has cross-attention blocks
    notes = apply_speed(sd_pipe, SpeedSettings(compile=True), backend="eager")
    assert notes == [f"torch.compile: {len(blocks)} blocks (the first image compiles them)"]
    assert all(b._compiled_call_impl is not None for b in blocks)
    resnets = [m for m in sd_pipe.unet.modules() if type(m).__name__ == "ResnetBlock2D"]
    assert resnets and all(r._compiled_call_impl is None for r in resnets)
    # The eager backend runs the traced graphs op for op: the same pixels.
    np.testing.assert_array_equal(_image(sd_pipe), before)
    assert (tmp_path / "inductor").is_dir()


def test_settings_apply_once_per_model_also_through_from_pipe(sd_pipe, monkeypatch, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(speed, "compile_blocks", lambda model, **kw: calls.append(model) or 5)
    settings = SpeedSettings(compile=True, channels_last=True)
    assert len(apply_speed(sd_pipe, settings)) == 2
    assert apply_speed(sd_pipe, settings) == []
    # A task pipeline built from the base shares its UNet and VAE: nothing is done twice.
    derived = StableDiffusionImg2ImgPipeline.from_pipe(sd_pipe)
    assert derived.unet is sd_pipe.unet
    assert apply_speed(derived, settings) == []
    assert calls == [sd_pipe.unet]


def test_channels_last_lays_out_the_convolutions(sd_pipe):
    before = _image(sd_pipe)
    notes = apply_speed(sd_pipe, SpeedSettings(channels_last=True))
    assert notes == ["channels-last layout for the UNet and VAE"]
    convs = [
        m
        for part in (sd_pipe.unet, sd_pipe.vae)
        for m in part.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert convs
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    # Another memory layout sums in another order: equal up to float rounding.
    np.testing.assert_allclose(_image(sd_pipe), before, atol=2e-3)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"device_type": "cpu"}, "torch.compile is off on the CPU (it only pays on a GPU)"),
        (
            {"offload": "sequential"},
            "torch.compile is off under sequential offload (its hooks break graphs)",
        ),
        ({"offload": "group"}, "torch.compile is off under group offload (its hooks break graphs)"),
        ({"weights": "fp8"}, "torch.compile is off for fp8 weights"),
        ({"weights": "q4_k"}, "torch.compile is off for q4_k weights"),
    ],
)
def test_compile_declined_with_a_reason(sd_pipe, kwargs, expected):
    assert apply_speed(sd_pipe, SpeedSettings(compile=True), backend="eager", **kwargs) == [
        expected
    ]
    assert all(m._compiled_call_impl is None for m in sd_pipe.unet.modules())


def test_model_offload_still_compiles(sd_pipe, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    notes = apply_speed(sd_pipe, SpeedSettings(compile=True), offload="model", backend="eager")
    assert notes and notes[0].startswith("torch.compile: ")


def test_sd3_blocks_found_without_a_declared_list():
    from diffusers import SD3Transformer2DModel
    from diffusers.models.attention import JointTransformerBlock

    # diffusers' SD3 transformer test sizes (tests/models/transformers/test_models_transformer_sd3.py).
    model = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=4,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    )
    assert not getattr(model, "_repeated_blocks", None)
    expected = sum(isinstance(m, JointTransformerBlock) for m in model.modules())
    assert expected == 4
    assert speed.compile_blocks(model, backend="eager") == expected


def test_no_settings_do_nothing(sd_pipe):
    assert apply_speed(sd_pipe, SpeedSettings()) == []
    assert all(m._compiled_call_impl is None for m in sd_pipe.unet.modules())
    convs = [m for m in sd_pipe.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not any(
        c.weight.is_contiguous(memory_format=torch.channels_last)
        for c in convs
        if c.kernel_size != (1, 1)
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, SpeedSettings()),
        ({"STUDIO_COMPILE": "1"}, SpeedSettings(compile=True)),
        ({"STUDIO_COMPILE": "yes", "STUDIO_CHANNELS_LAST": "On"}, SpeedSettings(True, True)),
        ({"STUDIO_COMPILE": "0", "STUDIO_CHANNELS_LAST": "off"}, SpeedSettings()),
    ],
)
def test_settings_from_env(env, expected):
    assert speed.settings_from_env(env) == expected


def _messages(events) -> list[str]:
    from studio.engine.jobs.events import Progress

    return [e.message for e in events if isinstance(e, Progress) and e.message]


def test_generate_job_applies_the_engine_settings(tiny_models, monkeypatch):
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    runner = Runner(device="cpu", dtype="float32")  # its own cache: the layout stays here
    request = GenerateRequest(
        model=str(tiny_models.sd), prompt="a cat", steps=2, width=64, height=64, preview="off"
    )
    plain = runner.run(request, emit=lambda e: None)
    monkeypatch.setenv("STUDIO_COMPILE", "1")
    monkeypatch.setenv("STUDIO_CHANNELS_LAST", "1")
    events: list = []
    final = runner.run(request, emit=events.append)
    assert isinstance(final, Finished) and isinstance(plain, Finished)
    messages = _messages(events)
    assert "channels-last layout for the UNet and VAE" in messages
    assert "torch.compile is off on the CPU (it only pays on a GPU)" in messages
    np.testing.assert_allclose(final.images[0].astype(int), plain.images[0].astype(int), atol=2)
    # The next job finds the settings applied and says nothing more.
    again: list = []
    runner.run(request, emit=again.append)
    assert not any("channels-last" in m or "torch.compile" in m for m in _messages(again))
