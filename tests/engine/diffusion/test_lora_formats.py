"""LoRA file formats and the LoRA ledger (``studio.engine.diffusion.shared.lora``) on the tiny
models: FLUX.1 LoRAs in BFL/ComfyUI names load (the delta checked against B A computed here
from the file), LyCORIS files are refused in one line naming the format, and removing a
fused LoRA gives back the plain model bit for bit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core.errors import BadInput
from studio.engine.diffusion.families import family
from studio.engine.diffusion.shared import lora
from studio.engine.fixtures.tiny_models import build_tiny_lora
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import GenerateRequest, LoraSpec
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu")


def _req(model, **kw):
    base = dict(model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=5)
    base.update(preview="off", **kw)
    return GenerateRequest(**base)


def _plain(runner, model):
    final = runner.run(_req(model))
    assert isinstance(final, Finished), getattr(final, "message", final)
    return final.images[0]


def _entry(runner):
    return next(runner._cache[k] for k in runner.cached_keys if k.startswith("pipe:"))


def test_removing_a_fused_lora_restores_the_weights_and_pixels_exactly(
    runner, tiny_models, tmp_path
):
    detail = build_tiny_lora(tiny_models.sd, tmp_path / "detail.safetensors", seed=4)
    before = _plain(runner, tiny_models.sd)
    entry = _entry(runner)
    weights = {k: v.clone() for k, v in entry.base.unet.state_dict().items()}
    styled = runner.run(_req(tiny_models.sd, loras=(LoraSpec(str(detail), 0.9),)))
    assert isinstance(styled, Finished) and entry.fused
    assert not np.array_equal(styled.images[0], before)
    # A weight change re-fuses from the restored weights, then the LoRA is removed.
    assert isinstance(
        runner.run(_req(tiny_models.sd, loras=(LoraSpec(str(detail), 0.3),))), Finished
    )
    after = _plain(runner, tiny_models.sd)
    assert np.array_equal(after, before)
    now = entry.base.unet.state_dict()
    assert set(now) == set(weights)
    assert all(torch.equal(now[k], weights[k]) for k in weights)
    assert entry.loras == () and entry.lora_names == () and not entry.fused


def _lycoris(
    path, kind: str, m="lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
):
    """A LyCORIS file in kohya names on the tiny SD UNet's first to_q (16x16)."""
    g = torch.Generator().manual_seed(0)
    if kind == "loha":
        state = {f"{m}.hada_w1_a": torch.randn(16, 2, generator=g),
                 f"{m}.hada_w1_b": torch.randn(2, 16, generator=g),
                 f"{m}.hada_w2_a": torch.randn(16, 2, generator=g),
                 f"{m}.hada_w2_b": torch.randn(2, 16, generator=g)}  # fmt: skip
    else:
        state = {f"{m}.lokr_w1": torch.randn(4, 4, generator=g),
                 f"{m}.lokr_w2_a": torch.randn(4, 2, generator=g),
                 f"{m}.lokr_w2_b": torch.randn(2, 4, generator=g)}  # fmt: skip
    state[f"{m}.alpha"] = torch.tensor(1.0)  # scale alpha / rank = 1/2
    save_file(state, str(path))
    return path


def _comfy_delta(state, m, kind):
    """ComfyUI's weight_adapter formulas, written out here: LoHa (w1a w1b) * (w2a w2b) and
    LoKr kron(w1, w2a w2b), each times alpha / rank."""
    if kind == "loha":
        d = (state[f"{m}.hada_w1_a"] @ state[f"{m}.hada_w1_b"]) * (
            state[f"{m}.hada_w2_a"] @ state[f"{m}.hada_w2_b"]
        )
        return d * (1.0 / 2)
    w2 = state[f"{m}.lokr_w2_a"] @ state[f"{m}.lokr_w2_b"]
    return torch.kron(state[f"{m}.lokr_w1"], w2) * (1.0 / 2)


@pytest.mark.parametrize("kind", ["loha", "lokr"])
def test_lycoris_files_are_merged_with_their_formula_and_removed_exactly(
    runner, tiny_models, tmp_path, kind
):
    from safetensors.torch import load_file

    before = _plain(runner, tiny_models.sd)
    entry = _entry(runner)
    q = entry.base.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    w0 = q.weight.detach().clone()
    path = _lycoris(tmp_path / f"style-{kind}.safetensors", kind)
    m = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    want = w0 + 0.7 * _comfy_delta(load_file(str(path)), m, kind)
    final = runner.run(_req(tiny_models.sd, loras=(LoraSpec(str(path), 0.7),)))
    assert isinstance(final, Finished), getattr(final, "message", final)
    torch.testing.assert_close(q.weight.detach(), want)
    assert not np.array_equal(final.images[0], before)
    assert np.array_equal(_plain(runner, tiny_models.sd), before)
    assert torch.equal(q.weight.detach(), w0)


def test_sdxl_lokr_in_original_unet_block_names_is_merged(runner, tiny_models, tmp_path):
    """kohya's SDXL names follow the original UNet (input_blocks_1_1 is the first
    transformer of down block 0 with one layer per block)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    unet = UNet2DConditionModel.from_pretrained(tiny_models.sdxl / "unet")
    q0 = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight.detach()
    side = q0.shape[0]
    assert side == 16, side
    m = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q"
    path = _lycoris(tmp_path / "xl-lokr.safetensors", "lokr", m)
    want = q0 + 1.0 * _comfy_delta(load_file(str(path)), m, "lokr")
    final = runner.run(_req(tiny_models.sdxl, loras=(LoraSpec(str(path), 1.0),)))
    assert isinstance(final, Finished), getattr(final, "message", final)
    entry = next(runner._cache[k] for k in runner.cached_keys if "sdxl" in k)
    got = entry.base.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    torch.testing.assert_close(got.detach(), want)
    assert isinstance(runner.run(_req(tiny_models.sdxl)), Finished)
    torch.testing.assert_close(got.detach(), q0, rtol=0, atol=0)


def test_lycoris_together_with_a_lora_and_a_tucker_file_refused(runner, tiny_models, tmp_path):
    from safetensors.torch import load_file

    before = _plain(runner, tiny_models.sd)
    entry = _entry(runner)
    weights = {k: v.clone() for k, v in entry.base.unet.state_dict().items()}
    loha = _lycoris(tmp_path / "a-loha.safetensors", "loha")
    plain_lora = build_tiny_lora(tiny_models.sd, tmp_path / "b-lora.safetensors", seed=3)
    both = (LoraSpec(str(loha), 1.0), LoraSpec(str(plain_lora), 1.0))
    assert isinstance(runner.run(_req(tiny_models.sd, loras=both)), Finished)
    state = load_file(str(loha))
    state["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.hada_t1"] = (
        torch.ones(2, 2, 1, 1)
    )
    tucker = tmp_path / "tucker.safetensors"
    save_file(state, str(tucker))
    final = runner.run(_req(tiny_models.sd, loras=(LoraSpec(str(tucker), 1.0),)))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert final.message.startswith("tucker.safetensors: cannot apply (Tucker")
    assert "\n" not in final.message
    assert np.array_equal(_plain(runner, tiny_models.sd), before)
    now = entry.base.unet.state_dict()
    assert all(torch.equal(now[k], weights[k]) for k in weights)


def test_lycoris_on_a_flow_model_is_refused_naming_the_format(flux, tmp_path):
    path = _lycoris(tmp_path / "flow-loha.safetensors", "loha")
    entry = SimpleNamespace(loras=(), lora_names=())
    with pytest.raises(BadInput, match=r"^flow-loha.safetensors: LyCORIS LoHa files"):
        lora.apply(
            flux, entry, (SimpleNamespace(path=str(path), weight=1.0),), family=family("flux1")
        )
    assert entry.loras == ()


def test_a_lora_that_matches_no_layer_is_one_line_naming_the_key_style(
    runner, tiny_models, tmp_path
):
    before = _plain(runner, tiny_models.sd)
    path = tmp_path / "elsewhere.safetensors"
    save_file({"transformer.nothing_here.lora_A.weight": torch.ones(2, 32),
               "transformer.nothing_here.lora_B.weight": torch.ones(32, 2)}, str(path))  # fmt: skip
    final = runner.run(_req(tiny_models.sd, loras=(LoraSpec(str(path), 1.0),)))
    assert isinstance(final, Failed) and final.exit_code == 3
    assert final.message.startswith("elsewhere.safetensors: ") and "\n" not in final.message
    assert "Adapter name" not in final.message
    assert np.array_equal(_plain(runner, tiny_models.sd), before)


def test_a_flux_lora_on_an_sd_model_is_refused_before_loading(runner, tiny_models, tmp_path):
    path = tmp_path / "flux-only.safetensors"
    save_file(_bfl_state("diffusion_model.", "lora_A", "lora_B"), str(path))
    final = runner.run(_req(tiny_models.sd, loras=(LoraSpec(str(path), 1.0),)))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert final.message.startswith("flux-only.safetensors: a FLUX.1 LoRA (BFL/ComfyUI")
    assert "\n" not in final.message


def test_key_styles():
    assert lora.key_style(
        ["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"]
    ).startswith("BFL")
    assert lora.key_style(["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"]).startswith(
        "kohya"
    )
    assert lora.key_style(["unet.a.lora_A.weight"]).startswith("diffusers")
    assert lora.key_style(["x.hada_w1_a", "x.alpha"]) == "LyCORIS LoHa"
    assert lora.key_style(["x.lokr_w1", "x.lokr_w2"]) == "LyCORIS LoKr"


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from diffusers import FluxPipeline

    from studio.engine.fixtures.tiny_flow_models import build_tiny_flux

    folder = build_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux1")
    return FluxPipeline.from_pretrained(folder, local_files_only=True)


def _bfl_state(prefix: str, down: str, up: str, seed: int = 0) -> dict:
    """A rank-2 FLUX.1 LoRA on double block 0's image qkv (32 -> 96) and projection."""
    g = torch.Generator().manual_seed(seed)
    return {
        f"{prefix}double_blocks_0_img_attn_qkv.{down}.weight" if prefix == "lora_unet_" else f"{prefix}double_blocks.0.img_attn.qkv.{down}.weight": torch.randn(2, 32, generator=g),
        f"{prefix}double_blocks_0_img_attn_qkv.{up}.weight" if prefix == "lora_unet_" else f"{prefix}double_blocks.0.img_attn.qkv.{up}.weight": torch.randn(96, 2, generator=g),
    }  # fmt: skip


def _effective_delta(layer, name) -> torch.Tensor:
    return layer.scaling[name] * (layer.lora_B[name].weight @ layer.lora_A[name].weight)


@pytest.mark.parametrize(
    ("prefix", "down", "up"),
    [("diffusion_model.", "lora_A", "lora_B"), ("lora_unet_", "lora_down", "lora_up"),
     ("diffusion_model.", "lora_down", "lora_up")],
)  # fmt: skip
def test_flux_lora_in_bfl_comfyui_and_kohya_names_loads_its_delta(flux, tmp_path, prefix, down, up):
    state = _bfl_state(prefix, down, up)
    path = tmp_path / "flux-style.safetensors"
    save_file(state, str(path))
    a = next(v for k, v in state.items() if f".{down}." in k)
    b = next(v for k, v in state.items() if f".{up}." in k)
    qkv = b @ a  # the fused qkv delta; q, k, v are its thirds (BFL layout)
    entry = SimpleNamespace(loras=(), lora_names=())
    lora.apply(flux, entry, (SimpleNamespace(path=str(path), weight=1.0),), family=family("flux1"))
    name = entry.lora_names[0]
    attn = flux.transformer.transformer_blocks[0].attn
    for i, proj in enumerate((attn.to_q, attn.to_k, attn.to_v)):
        torch.testing.assert_close(_effective_delta(proj, name), qkv[32 * i : 32 * (i + 1)])
    lora.apply(flux, entry, (), family=family("flux1"))
    assert entry.loras == () and not hasattr(attn.to_q, "lora_A")
