"""Defaults per family: native size, steps, guidance and sampler from the
family descriptor without loading the model; the dtype choice per device (CUDA's answers are
given as arguments here: no GPU was used)."""

from __future__ import annotations

import sys

import pytest
import torch

from studio.engine.diffusion.families import Family, family
from studio.engine.diffusion.shared.defaults import family_dtype, model_family, recommended_settings

UNET = "model.diffusion_model.input_blocks.0.0.weight"
V_NORM = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


def _file(path, extra, v_pred=False):
    from safetensors.torch import save_file

    state = {UNET: torch.zeros(320, 4, 3, 3), **{k: torch.zeros(s) for k, s in extra.items()}}
    if v_pred:
        state[V_NORM] = torch.randn(1280, generator=torch.Generator().manual_seed(0)) * 0.3
    save_file(state, str(path))
    return str(path)


def test_family_defaults_for_single_files(tmp_path):
    xl = _file(tmp_path / "xl.safetensors", {"conditioner.embedders.1.model.ln_final.weight": (8,)})
    rec = recommended_settings(xl)
    assert (rec["width"], rec["height"], rec["family"]) == (1024, 1024, "sdxl")
    assert rec["scheduler"] == family("sdxl").default_sampler
    assert rec["steps"] == family("sdxl").default_steps
    sd2 = {"cond_stage_model.model.ln_final.weight": (8,)}
    assert recommended_settings(_file(tmp_path / "v.safetensors", sd2, v_pred=True))["width"] == 768
    assert recommended_settings(_file(tmp_path / "b.safetensors", sd2))["width"] == 512
    assert recommended_settings(_file(tmp_path / "one.safetensors", {}))["width"] == 512


def test_turbo_keeps_its_settings_and_catalog_values_win(tmp_path):
    turbo = _file(tmp_path / "my-sdxl-turbo.safetensors",
                  {"conditioner.embedders.1.model.ln_final.weight": (8,)})  # fmt: skip
    rec = recommended_settings(turbo)
    assert rec["steps"] == 1 and rec["guidance"] == 0.0 and "scheduler" not in rec
    assert rec["width"] == 1024


def test_folder_defaults_and_unknown_models(tiny_models):
    rec = recommended_settings(str(tiny_models.sdxl))
    assert rec["family"] == "sdxl" and rec["width"] == 64  # the tiny UNet's native size
    assert model_family(str(tiny_models.sd)) is family("sd1")
    assert recommended_settings("no-such-model-anywhere") == {}
    assert model_family("no-such-model-anywhere") is None


def test_defaults_need_no_torch_for_safetensors(tmp_path):
    """The UI asks for defaults and never imports torch: a .safetensors header is enough."""
    import subprocess

    path = _file(
        tmp_path / "xl.safetensors", {"conditioner.embedders.1.model.ln_final.weight": (8,)}
    )
    code = (
        "import sys; from studio.engine.diffusion import recommended_settings as r; "
        f"w = r({path!r})['width']; print(w, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1024", "False"]


@pytest.mark.parametrize(
    "device, fp16, bf16, expected",
    [
        ("cpu", True, True, "float32"),
        ("cuda", True, True, "float16"),
        ("cuda", False, True, "bfloat16"),  # fp16 unsupported (compute capability < 5.3)
        ("cuda", False, False, "float32"),
        ("mps", True, False, "float16"),
    ],
)
def test_family_dtype(device, fp16, bf16, expected):
    assert family_dtype(device, family("sdxl"), fp16, bf16) == expected


def test_a_bf16_family_prefers_bf16():
    flowish = Family(
        name="f", label="F", pipelines={"txt2img": "X"}, matches=lambda i: False,
        dtypes=("bfloat16", "float16", "float32"),
    )  # fmt: skip
    assert family_dtype("cuda", flowish, True, True) == "bfloat16"
    assert family_dtype("cuda", flowish, True, False) == "float16"
