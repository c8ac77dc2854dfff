"""The memory planner's choices at their boundaries (studio.engine.diffusion.shared.memory): for a
row with round figures, the peak of each placement and format is worked out by hand below
and the card sizes just above and just below each one are planned; then the plan's text
(the UI's plan line, ``studio info``'s calls), the overrides and their messages."""

from __future__ import annotations

import re

import pytest

from studio.core.errors import BadInput
from studio.engine.diffusion.shared import memory
from studio.engine.diffusion.shared.memory import ModelNeeds, Plan, plan_memory

# Decimal GB for a round number of GiB: the row's sizes are in GB as Hugging Face lists them.
G = 2**30 / 1e9
# 10 GiB transformer (10 blocks; fp8 keeps 20 % in bf16), 4 GiB text encoders (4 layers, a
# 0.5 GiB embedding; NF4 keeps 10 %), 0.5 GiB VAE with 512 px tiles, 2 GiB per step and
# 3 GiB for the untiled decode at 1024 px.
ROW = ModelNeeds(
    "test", "Test model", "flux1", 10 * G, 4 * G, 0.5 * G, 10, 4, 2 * G, 3 * G,
    te_layer_gb=0.5 * G, fp8_keep=0.2, te_keep=0.1, vae_tile_px=512, gguf_repo="me/test-gguf",
)  # fmt: skip
# Peaks at 1024 px (GiB), by hand. Weights: bf16 10 + 4 + 0.5; fp8 transformer
# 10 x (0.2 + 0.8 / 2) = 6. A tiled decode: a quarter of the pixels in one 512 px tile,
# 3 / 4 = 0.75, plus 1024**2 x 24 bytes of output (0.0234): 0.7734.
#   all on the GPU: weights + max(step 2, decode 3 | tiled 0.77)
#       bf16 17.5 | tiled 16.5;  fp8 13.5 | tiled 12.5
#   model offload: max(text 4 + 0.3, transformer + step, VAE + decode)
#       bf16 12;  fp8 8
#   group offload: max(the 0.5 GiB embedding + 2 of 4 layers + 0.3 = 2.8,
#       transformer x (3 % + 2 of 10 blocks) + step, VAE + decode)
#       bf16 2.3 + 2 = 4.3;  fp8 1.38 + 2 = 3.38 -> 3.5 (the decode) | tiled 3.38
#   sequential: max(0.5 + 0.3, 0.1 + 2, VAE + decode) = 3.5 | tiled 2.1
# Costs: offload (none 0, model 1, group 1 + RAM / 8, sequential 3 + RAM / 2) + fp8 1.5 +
# tiles 0.2, with the offloaded weights in RAM: bf16 14.5 GiB, fp8 10.5 GiB.


def _choice(free, formats=("bf16",), **kw):
    p = plan_memory(ROW, free, formats=formats, **kw)
    return (p.offload, p.weights, p.vae_tiling, p.fits)


@pytest.mark.parametrize(
    "free, offload, tiled",
    [
        (18.3, "none", False),  # 17.5 GiB budget: everything fits untiled
        (18.29, "none", True),
        (17.3, "none", True),  # 16.5
        (17.29, "model", False),
        (12.8, "model", False),  # 12
        (12.79, "group", False),
        (5.1, "group", False),  # 4.3
        (5.09, "sequential", False),
        (4.3, "sequential", False),  # 3.5
        (4.29, "sequential", True),
        (2.9, "sequential", True),  # 2.1
    ],
)
def test_bf16_placement_per_card_size(free, offload, tiled):
    assert _choice(free) == (offload, "bf16", tiled, True)


def test_below_the_smallest_peak_the_smallest_plan_is_returned_not_fitting():
    p = plan_memory(ROW, 2.89, formats=("bf16",))
    assert (p.offload, p.vae_tiling, p.peak_gib, p.budget_gib) == ("sequential", True, 2.1, 2.09)
    assert not p.fits and p.notes == ("over the VRAM budget",)
    assert p.describe().endswith("; over the VRAM budget")


@pytest.mark.parametrize(
    "free, offload, weights, tiled",
    [
        (18.3, "none", "bf16", False),
        (17.3, "none", "bf16", True),
        (17.29, "model", "bf16", False),  # cost 1 beats fp8 on the GPU (1.5, 13.5 GiB)
        (14.3, "model", "bf16", False),
        (12.8, "model", "bf16", False),
        (12.79, "model", "fp8", False),  # 8 GiB, cost 2.5
        (8.8, "model", "fp8", False),
        (8.79, "group", "bf16", False),  # 4.3 GiB, cost 1 + 14.5 / 8 = 2.81
        (5.1, "group", "bf16", False),
        (5.09, "group", "fp8", False),  # 3.5 GiB, cost 1 + 10.5 / 8 + 1.5 = 3.81
        (4.3, "group", "fp8", False),
        (4.29, "group", "fp8", True),  # 3.38 GiB
        (4.18, "group", "fp8", True),
        (4.17, "sequential", "fp8", True),  # 2.1 GiB, cost 3 + 10.5 / 2 + 1.5 + 0.2 = 9.95
        (2.9, "sequential", "fp8", True),
    ],
)
def test_fp8_takes_its_place_between_model_and_group_offload(free, offload, weights, tiled):
    assert _choice(free, ("bf16", "fp8")) == (offload, weights, tiled, True)


def test_equal_costs_prefer_the_smaller_peak():
    # NF4 text encoders on the GPU (10 + 4 x (0.1 + 0.9 x 4.5 / 16) + 0.5 + 3 = 14.9 GiB)
    # cost 1, as model offload does with 12 GiB: model offload leaves more room
    p = plan_memory(ROW, 16.0, formats=("bf16", "nf4"))
    assert (p.offload, p.weights, p.text_weights) == ("model", "bf16", "bf16")
    p = plan_memory(ROW, 16.0, formats=("bf16", "nf4"), offload="none")
    assert (p.text_weights, p.vae_tiling) == ("nf4", False)
    assert p.peak_gib == pytest.approx(14.91, abs=0.01)


def test_the_ram_budget_keeps_four_gib_for_the_system():
    # model offload holds the 14.5 GiB of bf16 weights in RAM
    assert _choice(17.29, ("bf16", "fp8"), ram_gib=18.5) == ("model", "bf16", False, True)
    # 0.01 GiB less: fp8 all on the GPU (13.5 GiB, nothing in RAM)
    assert _choice(17.29, ("bf16", "fp8"), ram_gib=18.49) == ("none", "fp8", False, True)
    p = plan_memory(ROW, 17.29, formats=("bf16",), ram_gib=18.49)
    assert not p.fits and p.notes == ("offloaded weights exceed the RAM",)
    assert (p.ram_gib, p.ram_budget_gib) == (14.5, 14.49)


def test_budgets_never_go_negative():
    p = plan_memory(ROW, 18.3, formats=("bf16",), ram_gib=3)
    assert p.ram_budget_gib == 0.0 and p.fits and p.offload == "none"
    p = plan_memory(ROW, 0.5, formats=("bf16",))
    assert p.budget_gib == 0.0 and not p.fits


def test_no_ram_figure_means_no_ram_limit():
    p = plan_memory(ROW, 12.8, formats=("bf16",))
    assert p.ram_budget_gib is None and p.fits and p.ram_gib == 14.5


# -- the job's size -------------------------------------------------------------------------


def test_a_job_twice_the_native_pixels_doubles_the_working_memory():
    # 2048 x 1024: step 4 GiB, decode 6 GiB untiled; tiled 0.75 + 2048 x 1024 x 24 B = 0.8
    forced = dict(offload="none", weights="bf16", text_weights="bf16")
    assert plan_memory(ROW, 100, size=(2048, 1024), **forced).peak_gib == 20.5
    assert plan_memory(ROW, 100, size=(1024, 2048), **forced).peak_gib == 20.5
    assert plan_memory(ROW, 100, pixels=2048 * 1024, **forced).peak_gib == 20.5
    tiled = plan_memory(ROW, 20, size=(2048, 1024), **forced)
    assert (tiled.vae_tiling, tiled.peak_gib, tiled.fits) == (True, 18.5, True)
    # at the native size the same card takes the untiled plan
    assert plan_memory(ROW, 20, **forced).vae_tiling is False


def test_no_tiles_are_planned_for_an_image_within_one_tile():
    # 512 x 512 fits the VAE's 512 px tile: tiling would not lower the decode
    p = plan_memory(ROW, 1.0, size=(512, 512), formats=("bf16",))
    assert not p.fits and not p.vae_tiling
    p = plan_memory(ROW, 1.0, pixels=512 * 512, formats=("bf16",))
    assert not p.vae_tiling


def test_tiny_jobs_count_at_least_a_twentieth_of_the_native_pixels():
    # 300 x 100 (2.9 % of 1024**2) counts as 5 %: step 0.1, decode 0.15 GiB
    forced = dict(offload="none", weights="bf16", text_weights="bf16", formats=("bf16",))
    assert plan_memory(ROW, 100, size=(300, 100), **forced).peak_gib == 14.65
    assert plan_memory(ROW, 100, pixels=300 * 100, **forced).peak_gib == 14.65


# -- overrides and what the plan says -----------------------------------------------------


def test_forced_choices_and_their_notes(monkeypatch):
    monkeypatch.setattr(memory.importlib.util, "find_spec", lambda name: None)
    assert not plan_memory(ROW, 100, formats=("bf16",)).forced
    p = plan_memory(ROW, 100, weights="q8_0", formats=("bf16",))
    assert (p.weights, p.forced) == ("q8_0", True)  # considered though not in formats
    assert p.notes == ("needs the gguf package", "needs a Q8_0 GGUF file (me/test-gguf)")
    p = plan_memory(ROW, 100, text_weights="nf4", formats=("bf16",))
    assert (p.text_weights, p.forced) == ("nf4", True) and p.notes == (
        "needs the bitsandbytes package",
    )
    p = plan_memory(ROW, 100, offload="sequential", formats=("bf16",))
    assert (p.offload, p.forced, p.notes) == ("sequential", True, ())
    bare = ModelNeeds(**{**ROW.__dict__, "gguf_repo": None})
    assert plan_memory(bare, 100, weights="q4_k").notes[-1] == "needs a Q4_K GGUF file"


def test_no_package_note_where_the_package_is_installed(monkeypatch):
    monkeypatch.setattr(memory.importlib.util, "find_spec", lambda name: object())
    p = plan_memory(ROW, 100, weights="nf4", text_weights="nf4")
    assert p.notes == ()


def test_a_forced_plan_that_does_not_fit_says_why():
    p = plan_memory(ROW, 12.79, offload="none", weights="bf16", formats=("bf16",))
    assert not p.fits and p.forced and p.vae_tiling  # the smallest peak of the forced ones
    assert p.notes[-1] == "over the VRAM budget"


def test_bad_overrides_are_refused_with_the_choices():
    with pytest.raises(BadInput, match=r"^Unknown offload 'disk' \(use none, model, group, "):
        plan_memory(ROW, 8, offload="disk")
    with pytest.raises(BadInput, match=r"^Unknown text_weights 'fp8' \(use bf16, nf4\)$"):
        plan_memory(ROW, 8, text_weights="fp8")
    with pytest.raises(BadInput, match=r"^Test model: NF4 \(bitsandbytes\) weights can't be "):
        plan_memory(ROW, 8, offload="group", weights="nf4")
    with pytest.raises(BadInput, match="can't be group-offloaded"):
        plan_memory(ROW, 8, offload="group", text_weights="nf4")
    unet = ModelNeeds(**{**ROW.__dict__, "quantizable": False})
    with pytest.raises(BadInput, match=r"^Test model: no plan with offload=None, weights=fp8, "):
        plan_memory(unet, 8, weights="fp8")


def test_nf4_is_never_a_group_offload_candidate():
    combos = memory._candidates(ROW, memory.WEIGHT_FORMATS)
    assert ("group", "fp8", "bf16") in combos and ("model", "nf4", "nf4") in combos
    assert not [c for c in combos if c[0] == "group" and "nf4" in c[1:]]
    assert memory.combination_ok("sequential", "nf4", "nf4")
    assert not memory.combination_ok("group", "bf16", "nf4")
    assert not memory.combination_ok("group", "nf4", "bf16")
    # GGUF formats are never text formats; a UNet row has one candidate per offload
    assert {t for _, _, t in combos} == {"bf16", "nf4"}
    unet = ModelNeeds(**{**ROW.__dict__, "quantizable": False})
    assert memory._candidates(unet, memory.WEIGHT_FORMATS) == [
        ("none", "bf16", "bf16"), ("model", "bf16", "bf16"),
        ("group", "bf16", "bf16"), ("sequential", "bf16", "bf16"),
    ]  # fmt: skip
    assert [c[1] for c in memory._candidates(ROW, ("fp8", "bf16")) if c[0] == "none"] == [
        "bf16", "fp8",
    ]  # fmt: skip


def _p(offload="model", weights="fp8", text="bf16", tiling=False, peak=10.24, budget=11.2,
       ram=15.4, ram_budget=None, needs=ROW, notes=()):  # fmt: skip
    return Plan(needs, offload, weights, text, tiling, peak, budget, ram, ram_budget, 0.0,
                notes=notes)  # fmt: skip


def test_the_plan_line_names_placement_formats_and_peak():
    # text encoders are never fp8: an fp8 plan names their format too
    assert _p().short() == "model offload, fp8 / text bf16, 10.2 GiB"
    assert _p("none", "bf16").short() == "GPU, bf16, 10.2 GiB"
    assert _p("group", text="nf4").short() == "group offload, fp8 / text nf4, 10.2 GiB"
    assert _p("sequential", "nf4", "nf4", tiling=True).short() == (
        "sequential offload, nf4, tiled VAE, 10.2 GiB"
    )
    unet = ModelNeeds(**{**ROW.__dict__, "quantizable": False})
    assert _p("none", "bf16", needs=unet).short() == "GPU, fp16, 10.2 GiB"
    assert _p().summary() == "model offload, fp8 / text bf16, 10.2 GiB of 11.2 GiB, fits"
    assert _p(peak=11.3).summary().endswith("11.3 GiB of 11.2 GiB, does NOT fit")


def test_describe_adds_the_ram_and_the_notes():
    assert _p(text="fp8").describe() == (
        "Test model: model offload, fp8, 10.2 GiB of 11.2 GiB (fits, RAM 15 GiB)"
    )
    assert _p("none", "bf16", peak=12).describe() == (
        "Test model: GPU, bf16, 12.0 GiB of 11.2 GiB (does NOT fit)"
    )
    assert _p(notes=("a", "b")).describe().endswith("(fits, RAM 15 GiB); a; b")


def test_fits_needs_both_the_vram_and_the_ram():
    assert _p(peak=11.2).fits and not _p(peak=11.21).fits
    assert _p(ram=15.4, ram_budget=15.4).fits and not _p(ram=15.41, ram_budget=15.4).fits


@pytest.mark.parametrize(
    "weights, text, backend",
    [
        ("bf16", "bf16", None), ("fp8", "bf16", None), ("q8_0", "bf16", "gguf"),
        ("q4_k", "nf4", "gguf"), ("nf4", "bf16", "bitsandbytes"), ("fp8", "nf4", "bitsandbytes"),
    ],
)  # fmt: skip
def test_the_backend_is_the_package_a_format_needs(weights, text, backend):
    assert _p(weights=weights, text=text).backend == backend


def test_pipeline_calls_of_fp8_with_model_offload():
    calls = _p().pipeline_calls()
    assert len(calls) == 3
    assert calls[0].startswith("transformer.enable_layerwise_casting(storage_dtype=float8_e4m3fn")
    assert calls[0].endswith("compute_dtype=bfloat16)")
    assert calls[1].startswith("<each cast layer>.compute_dtype = bfloat16")
    assert "LoRA" in calls[1]
    assert calls[2] == "pipe.enable_model_cpu_offload()"


@pytest.mark.parametrize("fmt", ["q8_0", "q4_k"])
def test_pipeline_calls_of_a_gguf_transformer(fmt):
    calls = _p("none", fmt).pipeline_calls()
    assert calls[0].startswith(f"Transformer.from_single_file(<{fmt.upper()} .gguf>, config=")
    assert calls[0].endswith("quantization_config=GGUFQuantizationConfig(compute_dtype=bfloat16))")
    assert calls[1:] == ["pipe.to('cuda')"]


@pytest.mark.parametrize("offload, parked", [("none", False), ("sequential", True)])
def test_pipeline_calls_of_nf4_parts(offload, parked):
    calls = _p(offload, "nf4", "nf4").pipeline_calls()
    assert len(calls) == 3
    for call, part in zip(calls[:2], ("Transformer", "TextEncoder"), strict=True):
        assert call.startswith(f"{part}.from_pretrained(quantization_config=BitsAndBytesConfig(")
        assert "load_in_4bit" in call
        assert call.endswith("device_map={'': 'cuda'})" + (".to('cpu')" if parked else ""))
    assert calls[2] == {"none": "pipe.to('cuda')"}.get(
        offload, "pipe.enable_sequential_cpu_offload()"
    )


def test_pipeline_calls_of_group_offload_and_tiles():
    calls = _p("group", "bf16", tiling=True).pipeline_calls()
    assert len(calls) == 2 and calls[1] == "pipe.vae.enable_tiling()"
    assert calls[0].startswith("transformer/vae.enable_group_offload('cuda', offload_type=")
    assert (
        "num_blocks_per_group=1, use_stream=True); text encoders: apply_group_offloading("
        in calls[0]
    )
    assert calls[0].endswith("block_modules=group_block_modules(<encoder>))")
    assert _p("model", "bf16", "nf4").pipeline_calls()[0].startswith("TextEncoder.from_pretrained(")


def test_render_table_plans_with_the_ram_and_formats_given():
    # Qwen-Image's 57 GB on 12 GiB: offloading it needs more than 4 GiB of RAM to spare
    [cell] = (
        memory.render_table(["qwen-image"], [12], ram_gib=8, formats=("bf16",))
        .split("\n")[2]
        .strip("| ")
        .split(" | ")[1:]
    )
    assert cell.endswith(" (does not fit)") and "offload, bf16, " in cell  # bf16 throughout
    [cell] = (
        memory.render_table(["qwen-image"], [12], ram_gib=None, formats=("bf16",))
        .split("\n")[2]
        .strip("| ")
        .split(" | ")[1:]
    )
    assert cell.startswith("group offload, bf16") and "does not fit" not in cell


def test_render_table_rows_and_cells():
    lines = memory.render_table(["sd15", "qwen-image"], [2, 80], ram_gib=8, formats=("bf16",))
    lines = lines.splitlines()
    assert lines[:2] == ["| model | 2 GiB | 80 GiB |", "|---|---|---|"]
    assert re.fullmatch(
        r"\| SD 1\.5 \| .+ GiB( \(does not fit\))? \| GPU, fp16, \d+\.\d GiB \|", lines[2]
    )
    # 57 GB of weights: not on a 2 GiB card with 4 GiB of RAM to spare, whole on 80 GiB
    assert re.fullmatch(
        r"\| Qwen-Image \| .+ GiB \(does not fit\) \| GPU, bf16, [\d.]+ GiB \|", lines[3]
    )


# A row whose text encoders outweigh the transformer (as FLUX.2 klein's Qwen3 does): 2 GiB
# transformer, 8 GiB of text encoders in 8 layers with a 1 GiB embedding (NF4 keeps 20 %),
# 0.1 GiB VAE, 0.1 GiB a step, 0.2 GiB for the decode; 1024 px tiles, so no tiling at 1024.
TEXT = ModelNeeds(
    "text", "Text heavy", "flux2", 2 * G, 8 * G, 0.1 * G, 10, 8, 0.1 * G, 0.2 * G,
    te_layer_gb=1.0 * G, te_keep=0.2,
)  # fmt: skip


@pytest.mark.parametrize(
    "row, offload, text, peak",
    [
        # model offload: the encoders plus 0.3 GiB of their own working memory
        (TEXT, "model", "bf16", 8.3),
        # NF4 encoders: 8 x (0.2 + 0.8 x 4.5 / 16) = 3.4 GiB
        (TEXT, "model", "nf4", 3.7),
        # group offload: the embedding (over 3 % of 8 GiB) + 2 of 8 layers + 0.3
        (TEXT, "group", "bf16", 3.3),
        # sequential: the embedding moves whole + 0.3
        (TEXT, "sequential", "bf16", 1.3),
        # a 0.05 GiB embedding: 3 % of the encoders stays resident (0.24 GiB) + 2 GiB + 0.3
        (ModelNeeds(**{**TEXT.__dict__, "te_layer_gb": 0.05 * G}), "group", "bf16", 2.54),
        # sequential: no layer counts less than 0.1 GiB
        (ModelNeeds(**{**TEXT.__dict__, "te_layer_gb": 0.05 * G}), "sequential", "bf16", 0.4),
        # all on the GPU: 2 + 8 + 0.1 + the decode
        (TEXT, "none", "bf16", 10.3),
    ],
)
def test_text_encoder_peaks(row, offload, text, peak):
    p = plan_memory(row, 100, offload=offload, weights="bf16", text_weights=text)
    assert p.peak_gib == pytest.approx(peak, abs=0.005) and not p.vae_tiling
    assert p.ram_gib == (
        0.0 if offload == "none" else pytest.approx(10.1 if text == "bf16" else 5.5, abs=0.005)
    )


def test_torchao_is_found_by_its_package(monkeypatch):
    asked = []
    monkeypatch.setattr(memory.importlib.util, "find_spec", lambda name: asked.append(name))
    assert memory.torchao_available() is False and asked == ["torchao"]
    monkeypatch.setattr(memory.importlib.util, "find_spec", lambda name: object())
    assert memory.torchao_available() is True


@pytest.mark.parametrize(
    "scale, tiling, side, want",
    [
        (1.0, False, 1024, 3.0),
        # one 512 px tile (a quarter of 1024**2 px: 0.75 GiB) + 1024**2 px x 24 bytes
        (1.0, True, 1024, 0.75 + 1024**2 * 24 / 2**30),
        (4.0, False, 2048, 12.0),
        (4.0, True, 2048, 0.75 + 4 * 1024**2 * 24 / 2**30),
        (4.0, True, None, 0.75 + 4 * 1024**2 * 24 / 2**30),  # a 2048 px square by default
        (0.25, True, None, 0.75),  # 512 px: one tile, nothing to split
        (0.25, True, 512, 0.75),
        # 1024 x 100 px: wider than a tile but less than one tile's pixels: untiled
        (0.1, True, 1024, 0.3),
    ],
)
def test_decode_working_memory(scale, tiling, side, want):
    assert memory.decode_gib(ROW, scale, tiling, side) == pytest.approx(want)


@pytest.mark.parametrize(
    "weights, text, ram",
    [
        ("bf16", "bf16", 14.5),
        ("fp8", "bf16", 10.5),  # the row's 20 % kept in bf16: 10 x (0.2 + 0.8 / 2) = 6
        ("q8_0", "bf16", 9.95),  # 3 % kept: 10 x (0.03 + 0.97 x 8.5 / 16) = 5.45
        ("nf4", "bf16", 7.53),  # 10 x (0.03 + 0.97 x 4.5 / 16) = 3.03
        ("q4_k", "bf16", 7.71),  # 10 x (0.03 + 0.97 x 4.8 / 16) = 3.21
        ("bf16", "nf4", 11.91),  # 4 x (0.1 + 0.9 x 4.5 / 16) = 1.41
    ],
)
def test_weights_held_in_ram_per_format(weights, text, ram):
    p = plan_memory(ROW, 100, offload="model", weights=weights, text_weights=text)
    assert p.ram_gib == pytest.approx(ram, abs=0.005)


def test_a_decode_within_one_tile_is_never_split_however_few_its_pixels():
    # 150 x 100 px fits one 200 px tile; its 1.4 % of the native pixels count as 5 %
    small_tiles = ModelNeeds(**{**ROW.__dict__, "vae_tile_px": 200})
    assert memory.decode_gib(small_tiles, 0.05, True, 150) == pytest.approx(0.15)


# A row whose decode (5 GiB) outweighs every component: 1 GiB each, 0.5 GiB a step.
DECODE = ModelNeeds("dec", "Decode heavy", "flux1", G, G, G, 10, 4, 0.5 * G, 5 * G,
                    te_layer_gb=0.05 * G)  # fmt: skip


@pytest.mark.parametrize("offload", ["model", "group", "sequential"])
def test_the_vae_decode_can_set_the_peak(offload):
    p = plan_memory(DECODE, 100, offload=offload, weights="bf16", text_weights="bf16")
    assert p.peak_gib == pytest.approx(6.0, abs=0.005)  # the VAE + its decode


def test_group_offload_pays_for_the_weights_it_streams():
    # 9 + 3.5 + 0.5 = 13 GiB streamed per step: group offload in bf16 (4.07 GiB) costs
    # 1 + 13 / 8 = 2.63, more than model offload with fp8 weights (7.4 GiB): 1 + 1.5
    row = ModelNeeds(**{**ROW.__dict__, "transformer_gb": 9 * G, "text_encoder_gb": 3.5 * G})
    p = plan_memory(row, 9, formats=("bf16", "fp8"))
    assert (p.offload, p.weights, p.peak_gib) == ("model", "fp8", 7.4)
    p = plan_memory(row, 7.9, formats=("bf16", "fp8"))  # 7.1 GiB: model offload is out
    assert (p.offload, p.weights) == ("group", "bf16")


def test_sequential_offload_of_a_small_model_beats_quality_loss():
    # 1.5 GiB in all: sequential offload in bf16 costs 3 + 1.5 / 2 = 3.75 and needs 0.4 GiB;
    # NF4 with model offload (0.66 GiB) costs 1 + 3.5 = 4.5
    small = ModelNeeds("small", "Small", "flux1", 1.2 * G, 0.2 * G, 0.1 * G, 2, 2, 0.3 * G,
                       0.2 * G, te_layer_gb=0.05 * G)  # fmt: skip
    p = plan_memory(small, 1.5, formats=("bf16", "fp8", "nf4"))
    assert (p.offload, p.weights, p.peak_gib) == ("sequential", "bf16", 0.4)
    p = plan_memory(small, 1.5, formats=("bf16", "fp8", "nf4"), offload="model")
    assert (p.weights, p.peak_gib, p.fits) == ("nf4", 0.66, True)


def test_a_plan_within_the_vram_but_over_the_ram_says_ram():
    # the smallest plan, sequential with tiles (2.1 GiB), just fits 2.1 GiB of VRAM, but its
    # 14.5 GiB of offloaded weights do not fit 10 - 4 GiB of RAM
    p = plan_memory(ROW, 2.9, formats=("bf16",), ram_gib=10)
    assert (p.offload, p.vae_tiling, p.peak_gib, p.budget_gib) == ("sequential", True, 2.1, 2.1)
    assert not p.fits and p.notes == ("offloaded weights exceed the RAM",)


def test_the_longest_side_of_the_job_decides_the_tiles():
    # 1024 x 300: 29 % of the native pixels, step 0.59 GiB, decode 0.88 GiB untiled (15.38
    # on the GPU) or one 512 px tile, 0.75 + 0.007 GiB (15.26)
    for size in ((1024, 300), (300, 1024)):
        p = plan_memory(ROW, 16.1, size=size, formats=("bf16",))
        assert (p.offload, p.vae_tiling, p.peak_gib) == ("none", True, 15.26), size


def test_pixels_beyond_the_native_size_offer_tiles():
    # native 512 px with 512 px tiles: at 1024**2 px (4x) the step needs 8 GiB, the decode
    # 12 GiB untiled (26.5 GiB on the GPU) or 3 + 0.02 GiB in tiles (22.5 GiB)
    row = ModelNeeds(**{**ROW.__dict__, "native_px": 512})
    p = plan_memory(row, 24, pixels=1024 * 1024, formats=("bf16",))
    assert (p.offload, p.vae_tiling, p.peak_gib) == ("none", True, 22.5)


def test_plan_figures_are_in_hundredths_of_a_gib():
    p = plan_memory(
        ROW, 10.123, ram_gib=20.123, offload="model", weights="nf4", text_weights="bf16"
    )
    # 3.028 + 4 + 0.5 = 7.528 GiB offloaded; 9.323 GiB budget; 16.123 GiB of RAM to spare
    assert (p.ram_gib, p.budget_gib, p.ram_budget_gib) == (7.53, 9.32, 16.12)
    p = plan_memory(ROW, 100, offload="none", weights="bf16", text_weights="nf4")
    assert p.peak_gib == 14.91  # 10 + 1.4125 + 0.5 + 3
