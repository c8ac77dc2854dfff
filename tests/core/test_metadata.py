"""A1111 ``parameters`` text and Studio JSON chunk: parse, format, round trip, read from files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from studio.core.imageio import save_image
from studio.core.metadata import (
    format_parameters,
    parse_parameters,
    read_metadata,
    request_metadata,
    split_loras,
)
from studio.engine.jobs.requests import ControlInput, GenerateRequest, LoraSpec

A1111 = (
    "a photo of a cat, <lora:detail:0.6>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.55, "
    "Clip skip: 2, Version: v1.7.0"
)


def test_parse_a1111_string():
    info = parse_parameters(A1111)
    assert info["prompt"] == "a photo of a cat"
    assert info["loras"] == [{"name": "detail", "weight": 0.6}]
    assert info["negative_prompt"] == "blurry, lowres"
    assert info["steps"] == 28
    assert info["sampler"] == "DPM++ 2M Karras"
    assert info["cfg_scale"] == 6.5
    assert info["seed"] == 1234567
    assert (info["width"], info["height"]) == (512, 768)
    assert info["model_hash"] == "6ce0161689"  # stays a string although it is all digits
    assert info["model"] == "v1-5-pruned-emaonly"
    assert info["denoising_strength"] == 0.55
    assert info["clip_skip"] == 2
    assert info["version"] == "v1.7.0"


def test_a1111_string_round_trips():
    info = parse_parameters(A1111)
    again = parse_parameters(format_parameters(info))
    assert again == info
    text = format_parameters(info)
    assert "<lora:detail:0.6>" in text.splitlines()[0]
    assert "Size: 512x768" in text


def test_multiline_prompts_and_quoted_values():
    text = (
        "line one\nline two, <lora:a:1> <lora:b>\nNegative prompt: bad\nworse\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, "
        'Lora hashes: "a: 0123, b: 4567", Model: m'
    )
    info = parse_parameters(text)
    assert info["prompt"] == "line one\nline two"
    assert info["negative_prompt"] == "bad\nworse"
    assert info["loras"] == [{"name": "a", "weight": 1.0}, {"name": "b", "weight": 1.0}]
    assert info["lora_hashes"] == "a: 0123, b: 4567"
    assert parse_parameters(format_parameters(info)) == info


def test_prompt_only_text_has_no_parameters():
    info = parse_parameters("just a prompt")
    assert info == {"prompt": "just a prompt", "negative_prompt": ""}


def test_split_loras_keeps_the_rest_of_the_prompt():
    clean, loras = split_loras("<lora:x:0.25>, a dog, <lyco:y:2>, on grass")
    assert clean == "a dog, on grass"
    assert loras == [{"name": "x", "weight": 0.25}, {"name": "y", "weight": 2.0}]


def _request(**kw):
    base = dict(
        model="sd15",
        prompt="a cat",
        negative_prompt="ugly",
        steps=12,
        guidance=5.5,
        seed=7,
        width=64,
        height=96,
        scheduler="Euler a",
    )
    base.update(kw)
    return GenerateRequest(**base)


def test_request_metadata_round_trip_with_loras_and_controls():
    control = ControlInput("canny", np.zeros((8, 8, 3), np.uint8), "cn-canny", 0.8, 0.1, 0.9)
    req = _request(
        init_image=np.zeros((96, 64, 3), np.uint8),
        strength=0.4,
        loras=(LoraSpec("/x/detail.safetensors", 0.6),),
        controls=(control,),
    )
    meta = request_metadata(req, seed=8, model_name="sd15")
    assert meta["seed"] == 8 and meta["request"]["seed"] == 8
    assert meta["request"]["init_image"] == {"shape": [96, 64, 3]}
    json.dumps(meta)  # JSON-able as is
    parsed = parse_parameters(format_parameters(meta))
    for key in (
        "prompt",
        "negative_prompt",
        "steps",
        "sampler",
        "cfg_scale",
        "seed",
        "width",
        "height",
        "model",
        "denoising_strength",
        "loras",
        "controlnets",
        "version",
    ):
        assert parsed[key] == meta[key], key
    assert parsed["loras"] == [{"name": "detail", "weight": 0.6}]


def test_read_metadata_from_studio_png(tmp_path):
    meta = request_metadata(_request(), seed=7, model_name="sd15")
    path = save_image(
        tmp_path / "x.png",
        np.zeros((4, 4, 3), np.uint8),
        parameters=format_parameters(meta),
        studio=meta,
    )
    info = read_metadata(path)
    assert info["source"] == "studio"
    assert info["request"]["scheduler"] == "Euler a"
    assert info["seed"] == 7 and info["sampler"] == "Euler a"
    assert info["parameters"].startswith("a cat\nNegative prompt: ugly\nSteps: 12")


def test_read_metadata_from_a1111_png_and_jpeg(tmp_path):
    png = tmp_path / "a1111.png"
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("parameters", A1111)
    Image.new("RGB", (8, 8)).save(png, pnginfo=pnginfo)
    info = read_metadata(png)
    assert info["source"] == "a1111"
    assert info["seed"] == 1234567 and info["loras"][0]["name"] == "detail"

    jpg = save_image(tmp_path / "a.jpg", np.zeros((8, 8, 3), np.uint8), parameters=A1111)
    assert read_metadata(jpg)["cfg_scale"] == 6.5


def test_read_metadata_without_any(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_metadata(path) == {"source": None}


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<>\n\r"),
    max_size=40,
).map(lambda s: " ".join(s.split()).strip(", "))


@settings(max_examples=60, deadline=None)
@given(
    prompt=_text,
    negative=_text,
    steps=st.integers(1, 150),
    cfg=st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 2)),
    seed=st.integers(0, 2**32 - 1),
    w=st.integers(8, 512).map(lambda x: x * 8),
    weight=st.floats(-2, 2, allow_nan=False).map(lambda x: round(x, 3)),
)
def test_format_parse_round_trip_property(prompt, negative, steps, cfg, seed, w, weight):
    info = {
        "prompt": prompt,
        "negative_prompt": negative,
        "steps": steps,
        "sampler": "DPM++ 2M",
        "cfg_scale": float(cfg),
        "seed": seed,
        "width": w,
        "height": 512,
        "model": "some, model: v2",
        "loras": [{"name": "style_x", "weight": float(weight)}],
    }
    parsed = parse_parameters(format_parameters(info))
    if not negative.startswith("Negative prompt:"):
        assert parsed == info


@pytest.mark.parametrize("bad", ["", "\n\n", "Steps: x, Sampler: , Seed: y"])
def test_parse_never_raises(bad):
    assert isinstance(parse_parameters(bad), dict)


def test_schedule_type_karras_and_clip_skip_from_a1111_text():
    from studio.core.metadata import parse_parameters

    info = parse_parameters(
        "a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, "
        "Size: 512x512, Clip skip: 2"
    )
    assert info["sampler"] == "DPM++ 2M Karras" and info["clip_skip"] == 2
    auto = parse_parameters("a\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, Seed: 1")
    assert auto["sampler"] == "Euler a"
    again = parse_parameters(
        "a\nSteps: 20, Sampler: DPM++ 2M Karras, Schedule type: Karras, Seed: 1"
    )
    assert again["sampler"] == "DPM++ 2M Karras"


def _params_line(info):
    return format_parameters(info).splitlines()[-1]


def test_parameters_line_is_in_a1111_order_with_a1111_numbers():
    info = {
        "prompt": "a cat",
        "negative_prompt": "",
        "version": "Studio 1.0",
        "mask_padding": 32,
        "model": "m",
        "model_hash": "abc",
        "denoising_strength": None,  # unknown: not written
        "ti_hashes": "",  # empty: not written
        "regions": [{"prompt": "x"}],  # structure has no place on a "Key: value" line
        "seed": 1,
        "cfg_scale": 7.0,
        "steps": 20,
        "sampler": "DPM++ 2M Karras",
        "schedule_type": "Karras",
        "width": 512,
        "height": 768,
    }
    assert format_parameters(info) == (
        "a cat\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, "
        "Size: 512x768, Model hash: abc, Model: m, Mask padding: 32, Version: Studio 1.0"
    )


def test_size_needs_both_width_and_height():
    assert "Size" not in format_parameters({"prompt": "a", "steps": 20, "width": 512})


def test_values_are_quoted_as_a1111_quotes_them():
    # A1111 infotext_utils.quote: json.dumps(..., ensure_ascii=False) when the value holds a
    # separator; Studio also quotes a '"' so that a quoted-looking value reads back as is
    assert _params_line({"model": "my, model"}) == 'Model: "my, model"'
    assert _params_line({"model": "café: v2"}) == 'Model: "café: v2"'
    for model in ("my, model", "café: v2", '"quoted"'):
        text = format_parameters({"prompt": "a", "steps": 1, "seed": 1, "model": model})
        assert parse_parameters(text)["model"] == model


def test_a_lora_without_a_weight_is_written_with_weight_one():
    assert format_parameters({"prompt": "a", "loras": [{"name": "x"}]}) == "a, <lora:x:1>\n"
    assert format_parameters({"loras": [{"name": "x", "weight": 0.5}]}) == "<lora:x:0.5>\n"


def test_unknown_keys_are_written_with_a1111_style_labels():
    assert _params_line({"inpaint_method": "lama", "mask_blur": 4}) == (
        "Inpaint method: lama, Mask blur: 4"
    )


def test_schedule_type_is_written_apart_from_the_sampler():
    # A1111 >= 1.9 writes "Sampler: DPM++ 2M, Schedule type: Karras"
    line = lambda sampler, schedule: _params_line(  # noqa: E731
        {"sampler": sampler, "schedule_type": schedule}
    )
    assert line("DPM++ 2M Karras", "Karras") == "Sampler: DPM++ 2M, Schedule type: Karras"
    # "Automatic" reads back as the same sampler (Euler a's default is none, DPM++ 2M's
    # Karras): it is kept as written
    assert line("Euler a", "Automatic") == "Sampler: Euler a, Schedule type: Automatic"
    assert line("DPM++ 2M Karras", "Automatic") == "Sampler: DPM++ 2M, Schedule type: Automatic"
    # a field that disagrees with the name: the name is what ran
    assert line("DPM++ 2M Karras", "Exponential") == "Sampler: DPM++ 2M, Schedule type: Karras"
    # no sampler (a LaMa inpaint): no schedule either
    assert _params_line({"sampler": None, "schedule_type": "Karras", "steps": 1}) == "Steps: 1"


def test_a1111_text_with_a_schedule_type_reads_as_a1111_reads_it():
    read = lambda fields: parse_parameters(f"a\nSteps: 20, {fields}, Seed: 1")  # noqa: E731
    # get_sampler_and_scheduler: a schedule after the sampler's name wins over the field
    info = read("Sampler: DPM++ 2M Karras, Schedule type: Exponential")
    assert info["sampler"] == "DPM++ 2M Karras" and info["schedule_type"] == "Exponential"
    # DDIM keeps its own timesteps whatever the field says, and the text writes back as read
    info = read("Sampler: DDIM, Schedule type: Karras")
    assert info["sampler"] == "DDIM" and info["schedule_type"] == "Karras"
    assert "Sampler: DDIM, Schedule type: Karras" in format_parameters(info)
    # without the field the sampler is kept as written
    assert read("Sampler: euler_ancestral")["sampler"] == "euler_ancestral"


def test_controlnet_units_are_written_as_the_a1111_extension_writes_them():
    unit = {"kind": "canny", "model": "cn-canny", "weight": 1.0, "start": 0.0, "end": 0.5}
    assert _params_line({"controlnets": [unit]}) == (
        'ControlNet 0: "Module: canny, Model: cn-canny, Weight: 1, Guidance Start: 0, '
        'Guidance End: 0.5"'
    )


def test_controlnet_units_from_an_a1111_text_keep_every_field():
    info = parse_parameters(
        "a\nSteps: 20, Sampler: Euler, Seed: 1, "
        'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, '
        "Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1, "
        'Pixel Perfect: False, Control Mode: Balanced", '
        'ControlNet 1: "Module: none, Model: tile, Weight: 0.5, Guidance Start: 0.1, '
        'Guidance End: 0.9", Version: v1.7.0'
    )
    assert info["controlnets"] == [
        {
            "kind": "canny",
            "model": "control_v11p_sd15_canny [d14c016b]",
            "weight": 1.0,
            "resize_mode": "Crop and Resize",
            "start": 0.0,
            "end": 1.0,
            "pixel_perfect": "False",
            "control_mode": "Balanced",
        },
        {"kind": "none", "model": "tile", "weight": 0.5, "start": 0.1, "end": 0.9},
    ]
    assert info["version"] == "v1.7.0"


def test_three_pairs_make_a_parameters_line():
    # A1111 parse_generation_parameters: a last line with fewer than 3 "Key: value" pairs is
    # part of the prompt
    info = parse_parameters("a cat\nSteps: 20, Sampler: Euler, Seed: 5")
    assert (info["prompt"], info["steps"], info["seed"]) == ("a cat", 20, 5)
    assert parse_parameters("a cat\nratio: 1, size: 2") == {
        "prompt": "a cat\nratio: 1, size: 2",
        "negative_prompt": "",
    }


def test_no_text_is_an_empty_prompt():
    assert parse_parameters("") == {"prompt": "", "negative_prompt": ""}
    assert parse_parameters(None) == {"prompt": "", "negative_prompt": ""}


def test_quoted_values_that_are_no_json_lose_only_their_quotes():
    info = parse_parameters(
        'a\nSteps: 20, Seed: 1, Model: "C:\\models\\x", Hires upscaler: "", Sampler: Euler'
    )
    assert info["model"] == "C:\\models\\x"
    assert info["hires_upscaler"] == ""
    assert info["sampler"] == "Euler"


def test_punctuation_in_an_unknown_label_becomes_one_underscore():
    info = parse_parameters("a\nSteps: 20, Seed: 1, Hires - upscaler -: Latent")
    assert info["hires_upscaler"] == "Latent"


def test_lora_tags_with_bad_weights_and_tags_at_the_end():
    assert split_loras("a  <lora:x:bad>  b") == ("a b", [{"name": "x", "weight": 1.0}])
    assert split_loras("a photo of Malcolm X, <lora:x:1>") == (
        "a photo of Malcolm X",
        [{"name": "x", "weight": 1.0}],
    )


def test_request_metadata_of_txt2img_records_what_a1111_records():
    req = _request(scheduler="DPM++ 2M Karras", clip_skip=2)
    meta = request_metadata(req, seed=3, model_name="sd15", model_hash="abc123")
    assert meta["cfg_scale"] == 5.5 and meta["sampler"] == "DPM++ 2M Karras"
    assert meta["schedule_type"] == "Karras" and meta["model_hash"] == "abc123"
    assert meta["clip_skip"] == 2
    # A1111 writes "Clip skip" only above 1 and "Denoising strength" only for img2img
    assert "denoising_strength" not in meta and "mask_padding" not in meta
    assert "clip_skip" not in request_metadata(_request(), seed=3, model_name="sd15")
    assert meta["request"]["scheduler"] == "DPM++ 2M Karras"


def test_request_metadata_of_an_inpaint_has_its_padding_and_strength():
    req = _request(
        init_image=np.zeros((96, 64, 3), np.uint8),
        mask=np.zeros((96, 64), np.uint8),
        mask_padding=24,
        strength=0.6,
        loras=(LoraSpec("/x/a.safetensors", 0.6),),
    )
    meta = request_metadata(req, seed=3, model_name="sd15")
    assert meta["mask_padding"] == 24 and meta["denoising_strength"] == 0.6
    assert meta["request"]["loras"] == [{"path": "/x/a.safetensors", "weight": 0.6}]
    assert meta["request"]["mask"] == {"shape": [96, 64]}


def test_request_metadata_of_a_request_without_prompt_fields():
    from studio.engine.jobs.requests import InpaintRequest, UpscaleRequest

    meta = request_metadata(UpscaleRequest(np.zeros((4, 4, 3), np.uint8)), 0, "4x")
    assert (meta["prompt"], meta["negative_prompt"], meta["cfg_scale"]) == ("", "", 0.0)
    assert meta["sampler"] == "Default" and "clip_skip" not in meta
    lama = request_metadata(
        InpaintRequest(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)), 0, "lama"
    )
    assert lama["width"] is None and "mask_padding" not in lama
