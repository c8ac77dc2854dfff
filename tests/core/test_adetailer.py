"""ADetailer infotext fields, against the names in Bing-su/adetailer (adetailer/args.py
``_all_args``; ordinal suffixes from adetailer/ui.py ``suffix``)."""

from __future__ import annotations

from studio.core.adetailer import (
    ADetailerUnit,
    format_adetailer,
    ordinal,
    parse_adetailer,
    parse_pairs,
    suffix,
    with_adetailer,
)
from studio.core.metadata import parse_parameters

# An infotext as the web UI writes it with two ADetailer tabs (keys spelled as in
# adetailer/args.py; A1111 JSON-quotes values with commas).
INFOTEXT = (
    "portrait of a woman\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
    "Model: dreamshaper_8, "
    'ADetailer model: face_yolov8n.pt, ADetailer prompt: "detailed eyes, smile", '
    "ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, "
    "ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True, "
    "ADetailer inpaint padding: 32, "
    "ADetailer model 2nd: hand_yolov8n.pt, ADetailer confidence 2nd: 0.5, "
    "ADetailer dilate erode 2nd: 8, ADetailer mask blur 2nd: 6, "
    "ADetailer denoising strength 2nd: 0.35, ADetailer inpaint only masked 2nd: False, "
    "ADetailer use separate steps 2nd: True, ADetailer steps 2nd: 30, "
    "ADetailer version: 24.9.0"
)


def test_ordinal_suffixes_match_adetailer():
    assert [suffix(i) for i in range(4)] == ["", " 2nd", " 3rd", " 4th"]
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th",
    ]  # fmt: skip


def test_parse_two_passes():
    units, version = parse_adetailer(INFOTEXT)
    assert version == "24.9.0"
    assert len(units) == 2
    face, hand = units
    assert face.model == "face_yolov8n.pt"
    assert face.prompt == "detailed eyes, smile"
    assert face.negative_prompt == ""
    assert face.confidence == 0.3 and face.denoising_strength == 0.4
    assert face.dilate_erode == 4 and face.mask_blur == 4
    assert face.inpaint_only_masked is True and face.inpaint_padding == 32
    assert hand.model == "hand_yolov8n.pt"
    assert hand.confidence == 0.5 and hand.denoising_strength == 0.35
    assert hand.dilate_erode == 8 and hand.mask_blur == 6
    assert hand.inpaint_only_masked is False
    assert hand.prompt == ""  # ADetailer leaves an empty prompt out
    assert dict(hand.other) == {"use separate steps": "True", "steps": "30"}


def test_format_writes_adetailers_keys():
    unit = ADetailerUnit(
        model="face_yolov8n.pt", prompt="a face, smiling", confidence=0.5, denoising_strength=0.35
    )
    text = format_adetailer([unit], version="24.9.0")
    assert text == (
        'ADetailer model: face_yolov8n.pt, ADetailer prompt: "a face, smiling", '
        "ADetailer confidence: 0.5, ADetailer dilate erode: 4, ADetailer mask blur: 4, "
        "ADetailer denoising strength: 0.35, ADetailer inpaint only masked: True, "
        "ADetailer inpaint padding: 32, ADetailer version: 24.9.0"
    )
    second = ADetailerUnit(model="hand_yolov8n.pt", inpaint_only_masked=False)
    pairs = parse_pairs("Steps: 1, " + format_adetailer([unit, second]))
    assert pairs["ADetailer model 2nd"] == "hand_yolov8n.pt"
    assert "ADetailer inpaint padding 2nd" not in pairs  # only with inpaint only masked
    assert "ADetailer prompt 2nd" not in pairs


def test_round_trip():
    units, version = parse_adetailer(INFOTEXT)
    again, v2 = parse_adetailer("Steps: 20, Seed: 1, " + format_adetailer(units, version))
    assert again == units and v2 == version


def test_with_adetailer_keeps_the_generation_parameters():
    unit = ADetailerUnit(model="yunet", prompt="sharp eyes", denoising_strength=0.3)
    out = with_adetailer(INFOTEXT, [unit])
    params = parse_parameters(out)
    assert params["prompt"] == "portrait of a woman" and params["seed"] == 1234
    assert params["negative_prompt"] == "blurry"
    units, version = parse_adetailer(out)
    assert [u.model for u in units] == ["yunet"]  # the old passes were replaced
    assert units[0].prompt == "sharp eyes" and units[0].denoising_strength == 0.3
    assert version is None
    assert with_adetailer("", [unit]).startswith("ADetailer model: yunet, ")
    assert with_adetailer("just a prompt", [unit]).split("\n")[0] == "just a prompt"


def test_text_without_adetailer():
    assert parse_adetailer("a cat\nSteps: 20, Sampler: Euler, Seed: 1") == ([], None)
    assert parse_adetailer("") == ([], None)
