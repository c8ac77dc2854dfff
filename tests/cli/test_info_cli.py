"""``studio info IMAGE``: JSON from Studio's chunk or an AUTOMATIC1111 ``parameters`` text."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, PngImagePlugin

from studio.cli import main
from studio.core.imageio import save_image
from studio.core.metadata import format_parameters

A1111 = (
    "a photo of a cat, <lora:detail:0.6>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.55, "
    "Clip skip: 2, Version: v1.7.0"
)


def test_info_on_an_a1111_png(tmp_path, capsys):
    path = tmp_path / "a1111.png"
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("parameters", A1111)
    Image.new("RGB", (16, 16)).save(path, pnginfo=pnginfo)
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "a1111"
    assert info["prompt"] == "a photo of a cat"
    assert info["loras"] == [{"name": "detail", "weight": 0.6}]
    assert info["sampler"] == "DPM++ 2M Karras" and info["seed"] == 1234567
    assert (info["width"], info["height"]) == (512, 768)
    assert info["clip_skip"] == 2


def test_info_on_a1111_jpeg_exif(tmp_path, capsys):
    path = save_image(tmp_path / "a.jpg", np.zeros((8, 8, 3), np.uint8), parameters=A1111)
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["model_hash"] == "6ce0161689"


def test_info_on_a_studio_png_and_raw(tmp_path, capsys):
    meta = {
        "prompt": "a dog",
        "negative_prompt": "",
        "steps": 4,
        "sampler": "Euler",
        "cfg_scale": 7.0,
        "seed": 3,
        "width": 64,
        "height": 64,
        "model": "tiny",
        "request": {"model": "tiny", "seed": 3, "preview": "latent"},
    }
    path = save_image(
        tmp_path / "s.png", np.zeros((8, 8, 3), np.uint8),
        parameters=format_parameters(meta), studio=meta,
    )  # fmt: skip
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "studio" and info["request"]["preview"] == "latent"
    assert main(["info", "--raw", str(path)]) == 0
    assert capsys.readouterr().out.startswith("a dog\nSteps: 4, Sampler: Euler")


def test_info_without_metadata(tmp_path, capsys):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"source": None}


def test_info_bad_inputs(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"hello")
    assert main(["info", str(junk)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("studio: error: junk.png") and len(err.splitlines()) == 1
