"""LoRA and ControlNet inside generation, with the tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.engine.fixtures.tiny_models import build_tiny_lora
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import ControlInput, GenerateRequest, LoraSpec
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def loras(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    return (
        build_tiny_lora(tiny_models.sd, folder / "detail.safetensors", seed=1),
        build_tiny_lora(tiny_models.sd, folder / "style.safetensors", seed=2),
    )


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


def _img(runner, model, **kw) -> np.ndarray:
    base = dict(model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=3)
    base.update(kw)
    final = runner.run(GenerateRequest(**base, preview="off"))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    return final


def test_lora_changes_output_weight_zero_does_not_and_unloads(runner, tiny_models, loras):
    detail, style = loras
    plain = _img(runner, tiny_models.sd).images[0]
    with_lora = _img(runner, tiny_models.sd, loras=(LoraSpec(str(detail), 1.0),))
    assert not np.array_equal(plain, with_lora.images[0])
    assert with_lora.metadata[0]["loras"] == [{"name": "detail", "weight": 1.0}]
    zero = _img(runner, tiny_models.sd, loras=(LoraSpec(str(detail), 0.0),)).images[0]
    np.testing.assert_allclose(zero.astype(int), plain.astype(int), atol=1)
    half = _img(runner, tiny_models.sd, loras=(LoraSpec(str(detail), 0.5),)).images[0]
    assert not np.array_equal(half, with_lora.images[0])
    both = _img(
        runner, tiny_models.sd, loras=(LoraSpec(str(detail), 1.0), LoraSpec(str(style), 1.0))
    ).images[0]
    assert not np.array_equal(both, with_lora.images[0])
    # The next job without LoRAs must not see the previous ones.
    assert np.array_equal(_img(runner, tiny_models.sd).images[0], plain)
    # And the same LoRA again gives the same pixels as the first time (up to the rounding of
    # fusing into weights that were fused and unfused before: W + d - d is W to ~1 ulp).
    again = _img(runner, tiny_models.sd, loras=(LoraSpec(str(detail), 1.0),)).images[0]
    diff = np.abs(again.astype(int) - with_lora.images[0].astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.1, (diff.max(), diff.mean())


def test_lora_is_fused_for_the_job_and_matches_unfused(runner, tiny_models, loras, monkeypatch):
    from studio.engine.diffusion.sd import pipeline

    spec = (LoraSpec(str(loras[0]), 0.8),)
    fused = _img(runner, tiny_models.sd, loras=spec).images[0]
    entry = next(runner._cache[k] for k in runner.cached_keys if k.startswith("pipe:"))
    assert entry.fused  # merged into the weights: no extra LoRA matmuls per step
    real = pipeline.apply_loras
    monkeypatch.setattr(
        pipeline, "apply_loras", lambda p, e, lo, fuse=True: real(p, e, lo, fuse=False)
    )
    unfused = _img(runner, tiny_models.sd, loras=spec).images[0]
    assert not entry.fused
    diff = np.abs(fused.astype(int) - unfused.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.1, (diff.max(), diff.mean())


def test_lora_metadata_in_a1111_text(runner, tiny_models, loras):
    from studio.core.metadata import format_parameters, parse_parameters

    meta = _img(runner, tiny_models.sd, loras=(LoraSpec(str(loras[0]), 0.6),)).metadata[0]
    text = format_parameters(meta)
    assert text.startswith("a cat, <lora:detail:0.6>\n")
    assert parse_parameters(text)["loras"] == [{"name": "detail", "weight": 0.6}]


def test_bad_lora_file_is_a_clear_error(runner, tiny_models, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sd),
            prompt="x",
            steps=1,
            width=64,
            height=64,
            loras=(LoraSpec(str(junk)),),
        )
    )
    assert isinstance(final, Failed) and final.exit_code == 3 and "junk" in final.message
    assert isinstance(
        runner.run(
            GenerateRequest(model=str(tiny_models.sd), prompt="x", steps=1, width=64, height=64)
        ),
        Finished,
    )


def _edges(w=64, h=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[rng.random((h, w)) > 0.8] = 255
    return img


def test_controlnet_changes_pixels_and_weight_matters(runner, tiny_models):
    plain = _img(runner, tiny_models.sd).images[0]
    control = ControlInput("canny", _edges(), str(tiny_models.controlnet), weight=1.0)
    guided = _img(runner, tiny_models.sd, controls=(control,))
    assert guided.images[0].shape == (64, 64, 3)
    assert not np.array_equal(guided.images[0], plain)
    other = ControlInput("canny", _edges(seed=1), str(tiny_models.controlnet), weight=1.0)
    assert not np.array_equal(
        _img(runner, tiny_models.sd, controls=(other,)).images[0], guided.images[0]
    )
    off = ControlInput("canny", _edges(), str(tiny_models.controlnet), weight=0.0)
    np.testing.assert_allclose(
        _img(runner, tiny_models.sd, controls=(off,)).images[0].astype(int),
        plain.astype(int),
        atol=1,
    )
    assert guided.metadata[0]["controlnets"][0]["kind"] == "canny"


def test_two_controlnets_img2img_and_resizing(runner, tiny_models):
    a = ControlInput("canny", _edges(128, 96), str(tiny_models.controlnet), 0.7, 0.0, 0.5)
    b = ControlInput("scribble", _edges(32, 32, seed=2), str(tiny_models.controlnet), 1.2)
    two = _img(runner, tiny_models.sd, controls=(a, b), width=64, height=96)
    assert two.images[0].shape == (96, 64, 3)
    init = np.full((96, 64, 3), 100, np.uint8)
    i2i = _img(
        runner,
        tiny_models.sd,
        controls=(a,),
        init_image=init,
        strength=0.6,
        steps=4,
        width=64,
        height=96,
    )
    assert i2i.images[0].shape == (96, 64, 3)


def test_controlnet_bad_range_and_missing_model(runner, tiny_models):
    bad = ControlInput("canny", _edges(), str(tiny_models.controlnet), start=0.8, end=0.2)
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sd), prompt="x", steps=1, width=64, height=64, controls=(bad,)
        )
    )
    assert isinstance(final, Failed) and final.exit_code == 2
    missing = ControlInput("canny", _edges(), "nobody/no-controlnet")
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sd), prompt="x", steps=1, width=64, height=64, controls=(missing,)
        )
    )
    assert isinstance(final, Failed) and final.exit_code == 3


@pytest.fixture(scope="module")
def sdxl_controlnet(tiny_models, tmp_path_factory):
    """A tiny SDXL ControlNet (ControlNetModel.from_unet on the tiny SDXL UNet, zero convs
    perturbed like studio.engine.fixtures.tiny_models.build_tiny_controlnet does for SD1)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(tiny_models.sdxl / "unet")
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    with torch.no_grad():
        for p in cn.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("sdxl-cn") / "tiny-sdxl-controlnet"
    cn.save_pretrained(folder, safe_serialization=True)
    return folder


def test_sdxl_controlnet_txt2img_and_img2img(runner, tiny_models, sdxl_controlnet):
    plain = _img(runner, tiny_models.sdxl).images[0]
    control = ControlInput("canny", _edges(), str(sdxl_controlnet), weight=1.0)
    guided = _img(runner, tiny_models.sdxl, controls=(control,)).images[0]
    assert guided.shape == (64, 64, 3)
    assert not np.array_equal(guided, plain)
    init = np.full((64, 64, 3), 90, np.uint8)
    i2i = _img(runner, tiny_models.sdxl, controls=(control,), init_image=init, strength=0.5,
               steps=4)  # fmt: skip
    assert i2i.images[0].shape == (64, 64, 3)


def test_lora_failing_halfway_leaves_nothing_behind(runner, tiny_models, loras, tmp_path):
    """A LoRA whose UNet part loads but whose text-encoder part doesn't fit: the job fails
    with one line, and the next job without LoRAs is exactly the plain model again."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(loras[0]))
    state["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = torch.ones(
        4, 999
    )
    state["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = torch.ones(
        999, 4
    )
    broken = tmp_path / "half.safetensors"
    save_file(state, str(broken))
    plain = _img(runner, tiny_models.sd).images[0]
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sd),
            prompt="a cat",
            steps=2,
            width=64,
            height=64,
            seed=7,
            preview="off",
            loras=(LoraSpec(str(broken), 1.0),),
        )
    )
    assert isinstance(final, Failed) and final.exit_code == 3 and "\n" not in final.message
    assert np.array_equal(_img(runner, tiny_models.sd).images[0], plain)
    assert isinstance(
        runner.run(
            GenerateRequest(
                model=str(tiny_models.sd),
                prompt="a cat",
                steps=2,
                width=64,
                height=64,
                seed=7,
                preview="off",
                loras=(LoraSpec(str(loras[0]), 1.0),),
            )
        ),
        Finished,
    )
