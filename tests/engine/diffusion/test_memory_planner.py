"""The memory planner (studio.engine.diffusion.shared.memory): the plan per card and family, that it
fits, that more memory never buys a worse plan, overrides, RAM limits, and the table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from studio.core.errors import BadInput
from studio.engine.diffusion.families import families
from studio.engine.diffusion.shared import memory, memory_models
from studio.engine.diffusion.shared.memory import (
    MODEL_NEEDS,
    WEIGHT_FORMATS,
    available_formats,
    plan_memory,
    render_table,
)

CARDS = (8, 12, 16, 24)
# Every planner row of every registered base family (a variant has its base's weights).
FAMILIES = tuple(n.key for f in families() if f.base is None for n in f.memory)
ALL = tuple(WEIGHT_FORMATS)
BUILTIN = ("bf16", "fp8")  # no optional package installed


@pytest.mark.parametrize("formats", [ALL, BUILTIN], ids=["all-formats", "diffusers-only"])
@pytest.mark.parametrize("card", CARDS)
@pytest.mark.parametrize("model", FAMILIES)
def test_table_every_plan_fits(model, card, formats):
    plan = plan_memory(model, card, ram_gib=32, formats=formats)
    if model == "qwen-image" and formats == BUILTIN:
        # 57 GB of weights: without GGUF/NF4 the text encoder stays bf16 (16.6 GB) and even
        # an fp8 transformer (20 GB) leaves too little of 32 GB RAM. With 64 GB it runs.
        assert not plan.fits and "RAM" in plan.describe()
        plan = plan_memory(model, card, ram_gib=64, formats=formats)
    assert plan.fits, plan.describe()
    assert plan.peak_gib <= plan.budget_gib == pytest.approx(card - memory.RESERVE_GIB)
    assert plan.ram_budget_gib is not None and plan.ram_gib <= plan.ram_budget_gib
    assert plan.weights in formats and plan.text_weights in formats
    # The chosen plan is the cheapest that fits: every cheaper candidate overflows.
    for o, w, t in memory._candidates(plan.needs, formats):
        for tiling in (False, True):
            peak, ram = memory._estimate(plan.needs, o, w, t, 1.0, tiling)
            if memory._cost(o, w, t, tiling, ram) < plan.cost:
                assert peak > plan.budget_gib or ram > plan.ram_budget_gib, (o, w, t, tiling)


@pytest.mark.parametrize("model", FAMILIES)
def test_more_memory_never_gives_a_costlier_plan(model):
    costs = [plan_memory(model, c, ram_gib=64, formats=ALL).cost for c in (6, *CARDS, 48, 80)]
    assert costs == sorted(costs, reverse=True), costs
    assert plan_memory(model, 200, ram_gib=512, formats=ALL).short().startswith("GPU, ")


def test_known_plans():
    # SD1.5 in fp16 needs no tricks on any card.
    assert plan_memory("sd15", 8, formats=ALL).short().startswith("GPU, fp16")
    # Flux.1 in bf16 is 23.8 GB of transformer weights: never all-in-VRAM on a 24 GB card.
    flux = plan_memory("flux1-schnell", 24, ram_gib=32, formats=ALL)
    assert not (flux.offload == "none" and flux.weights == "bf16")
    forced = plan_memory("flux1-schnell", 24, offload="none", weights="bf16", text_weights="bf16")
    assert not forced.fits and forced.forced and "over the VRAM budget" in forced.describe()
    # Klein 4B (7.75 GB + an 8 GB Qwen3) fits a 24 GB card whole.
    assert plan_memory("flux2-klein-4b", 24, formats=ALL).offload == "none"
    # On 8 GB the big ones must offload or quantize.
    for model in ("flux1-dev", "qwen-image", "sd35-large", "flux2-klein-9b"):
        p = plan_memory(model, 8, ram_gib=32, formats=ALL)
        assert p.offload != "none" or p.weights != "bf16"


def test_ram_limit_forces_smaller_weights():
    roomy = plan_memory("qwen-image", 12, ram_gib=128, formats=ALL)
    tight = plan_memory("qwen-image", 12, ram_gib=24, formats=ALL)
    assert roomy.fits and tight.ram_gib <= 20
    assert memory._FACTOR[tight.weights] < 1.0  # 57 GB of bf16 weights can't sit in 20 GiB
    hopeless = plan_memory("qwen-image", 12, ram_gib=8, formats=BUILTIN)
    assert not hopeless.fits and "RAM" in hopeless.describe()


def test_pixels_scale_the_working_memory():
    small = plan_memory("sdxl", 24, pixels=512 * 512)
    big = plan_memory("sdxl", 24, pixels=2048 * 2048, offload="none", weights="bf16")
    native = plan_memory("sdxl", 24, offload="none", weights="bf16", text_weights="bf16")
    assert small.peak_gib < native.peak_gib < big.peak_gib or big.vae_tiling


def test_overrides_and_bad_values():
    p = plan_memory("z-image-turbo", 24, weights="q4_k", formats=BUILTIN)
    assert p.weights == "q4_k" and p.forced
    assert any("GGUF file" in n and "unsloth/Z-Image-Turbo-GGUF" in n for n in p.notes)
    assert "GGUFQuantizationConfig" in " ".join(p.pipeline_calls())
    with pytest.raises(BadInput, match="Unknown weights 'int3'"):
        plan_memory("z-image-turbo", 24, weights="int3")
    with pytest.raises(BadInput, match="no plan"):
        plan_memory("sd15", 8, weights="fp8")  # UNet families are not quantized
    with pytest.raises(KeyError):
        plan_memory("no-such-model", 8)


def test_pipeline_calls_follow_the_plan():
    p = plan_memory("flux1-schnell", 12, ram_gib=32, formats=BUILTIN)
    calls = " ".join(p.pipeline_calls())
    assert {"model": "enable_model_cpu_offload", "group": "enable_group_offload"}.get(
        p.offload, "enable_sequential_cpu_offload"
    ) in calls
    if p.weights == "fp8":
        assert "enable_layerwise_casting" in calls


def test_available_formats_follow_installed_packages(monkeypatch):
    real = memory.importlib.util.find_spec
    monkeypatch.setattr(
        memory.importlib.util,
        "find_spec",
        lambda name: (
            object() if name == "bitsandbytes" else (None if name == "gguf" else real(name))
        ),
    )
    assert available_formats() == {"bf16", "fp8", "nf4"}
    monkeypatch.setattr(memory.importlib.util, "find_spec", lambda name: None)
    assert available_formats() == {"bf16", "fp8"}


def test_aliases_share_their_base_sizes():
    assert MODEL_NEEDS["flux1-kontext"].transformer_gb == MODEL_NEEDS["flux1-dev"].transformer_gb
    assert MODEL_NEEDS["qwen-image-edit"].family == "qwen"


def test_render_table():
    table = render_table()
    lines = table.splitlines()
    assert lines[0] == "| model | 8 GiB | 12 GiB | 16 GiB | 24 GiB |"
    rows = [n for f in families() if f.base is None for n in f.memory]
    assert len(lines) == 2 + len(rows) and {"sd15", "flux1-dev", "chroma1-hd"} <= {
        n.key for n in rows
    }
    for row in rows:
        assert any(line.startswith(f"| {row.label} |") for line in lines)
    assert not any(line.startswith("| FLUX.1 Fill |") for line in lines)  # a variant's weights
    assert "does not fit" not in table
    assert "does not fit" in render_table(["qwen-image"], [2], ram_gib=8, formats=BUILTIN)


def test_no_torch_at_import():
    code = (
        "import sys, studio.engine.diffusion.shared.memory as m; m.render_table(); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- per family and per model (memory_models) -------------------------------------------------
FAMILY_NAMES = {
    # family name (families/*.py) -> the row used without a hint
    "sd1": "sd15",
    "sd2": "sd21",
    "sdxl": "sdxl",
    "flux1": "flux1-dev",
    "flux1-fill": "flux1-fill",
    "flux1-kontext": "flux1-kontext",
    "flux2": "flux2-klein-9b",
    "zimage": "z-image-turbo",
    "sd3": "sd35-large",
    "qwen": "qwen-image",
    "qwen-edit": "qwen-image-edit",
}


@pytest.mark.parametrize("family, key", FAMILY_NAMES.items())
def test_every_family_name_has_a_row_and_a_plan_per_card(family, key):
    from studio.engine.diffusion.families import families

    assert family in {f.name for f in families()}  # the names the engine uses
    row = memory_models.row_for(family)
    assert row.key == key
    for card in CARDS:
        plan = memory_models.plan_for_family(family, card, ram_gib=64)
        assert plan is not None and plan.fits, plan.describe()
        assert plan.weights not in ("q8_0", "q4_k")  # Auto never needs a GGUF file
    assert memory_models.is_flow_family(family) == MODEL_NEEDS[key].quantizable


@pytest.mark.parametrize(
    "family, hint, key",
    [
        ("flux1", "flux1-schnell", "flux1-schnell"),
        ("flux1", "black-forest-labs/FLUX.1-schnell", "flux1-schnell"),
        ("flux1", "/models/FLUX.1-dev", "flux1-dev"),
        ("flux2", "black-forest-labs/FLUX.2-klein-4B", "flux2-klein-4b"),
        ("flux2", "flux2-klein-9b", "flux2-klein-9b"),
        ("sd3", "stabilityai/stable-diffusion-3.5-medium", "sd35-medium"),
        ("sd3", "sd3.5_large_turbo", "sd35-large-turbo"),
        ("qwen", "Qwen/Qwen-Image-Edit", "qwen-image-edit"),
        ("flux1-fill", "anything", "flux1-fill"),
    ],
)
def test_hints_pick_the_variant(family, hint, key):
    assert memory_models.row_for(family, hint).key == key


def test_unknown_family_and_cpu_have_no_plan():
    assert memory_models.plan_for_family("nope", 12) is None
    assert memory_models.plan_for_family("flux1", None) is None
    assert memory_models.plan_line(None, "cpu") == "CPU: no memory plan, runs in float32 on the CPU"


def test_overrides_per_family():
    p = memory_models.plan_for_family("zimage", 24, quant="fp8", offload="none")
    assert (p.weights, p.offload, p.forced) == ("fp8", "none", True)
    assert memory_models.plan_line(p) == f"Plan: {p.summary()}"
    assert p.summary().endswith(", fits") and "of 23.2 GiB" in p.summary()
    tight = memory_models.plan_for_family("zimage", 12, quant="fp8", offload="none")
    assert tight.summary().endswith(", does NOT fit") and not tight.fits
    p = memory_models.plan_for_family("flux1", 8, quant="q4_k")
    assert p.weights == "q4_k" and any("GGUF" in n for n in p.notes)
    with pytest.raises(BadInput, match="SD 1.x runs in fp16"):
        memory_models.plan_for_family("sd1", 8, quant="fp8")
    with pytest.raises(BadInput, match="Unknown quant 'int8'"):
        memory_models.plan_for_family("flux1", 8, quant="int8")
    with pytest.raises(BadInput, match="Unknown offload 'disk'"):
        memory_models.plan_for_family("flux1", 8, offload="disk")
    # an SD family takes an offload override (the planner supports it) and bf16 (= fp16)
    assert (
        memory_models.plan_for_family("sdxl", 24, offload="model", quant="bf16").offload == "model"
    )
    # more pixels, more working memory
    small = memory_models.plan_for_family("sdxl", 24, pixels=512 * 512)
    assert small.peak_gib < memory_models.plan_for_family("sdxl", 24, pixels=2048 * 2048).peak_gib


def test_model_references():
    n = memory_models.model_needs("qwen-image-edit")  # a catalog id not installed
    assert (n.family, n.needs.key) == ("qwen-edit", "qwen-image-edit")
    assert memory_models.model_needs("dreamshaper-8").needs.family == "sd1"  # catalog, by its base
    assert memory_models.model_needs("sd15-canny") is None  # a ControlNet is not planned alone
    g = memory_models.model_needs("/x/flux1-dev-Q8_0.gguf")
    assert (g.needs.key, g.quant) == ("flux1-dev", "q8_0")
    assert memory_models.model_needs("/x/z_image_turbo-Q4_K_M.gguf").quant == "q4_k"
    assert memory_models.plan_for_model("/x/flux1-dev-Q8_0.gguf", 12).weights == "q8_0"
    with pytest.raises(BadInput, match="Q8_0 GGUF file"):
        memory_models.plan_for_model("/x/flux1-dev-Q8_0.gguf", 12, quant="fp8")
    assert memory_models.model_needs("") is None


def test_model_side_without_torch():
    code = (
        "import sys, studio.engine.diffusion.shared.memory_models as m; "
        "p = m.plan_for_model('flux1-schnell', 12); m.plan_for_family('sd3', 8, 512*512); "
        "sys.exit(1 if 'torch' in sys.modules or p is None else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_studio_offload_env_applies_where_no_override(monkeypatch):
    monkeypatch.setenv("STUDIO_OFFLOAD", "Sequential")
    assert memory_models.plan_for_family("flux1", 24).offload == "sequential"
    assert memory_models.plan_for_family("flux1", 24, offload="model").offload == "model"
    monkeypatch.setenv("STUDIO_OFFLOAD", "disk")
    with pytest.raises(BadInput, match="Unknown offload 'disk'"):
        memory_models.plan_for_family("flux1", 24)
