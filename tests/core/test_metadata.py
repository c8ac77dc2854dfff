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
