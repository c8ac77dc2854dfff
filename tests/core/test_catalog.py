"""The model catalog: the shipped file's schema, the starter set, validation errors, and
user additions from $STUDIO_HOME."""

from __future__ import annotations

import re

import pytest

from studio.core.catalog import (
    BASES,
    BUILTIN_CATALOG,
    KINDS,
    load_catalog,
    parse_catalog,
    studio_home,
)
from studio.core.errors import BadInput


@pytest.fixture
def catalog(tmp_path):
    return load_catalog(user=tmp_path / "none.toml")


def test_shipped_catalog_schema(catalog):
    ids = [e.id for e in catalog]
    assert len(ids) == len(set(ids)) >= 20
    raw_ids = re.findall(r'^id = "([^"]+)"', BUILTIN_CATALOG.read_text(), re.M)
    assert sorted(raw_ids) == sorted(ids)  # nothing silently dropped or merged
    for e in catalog:
        assert e.kind in KINDS
        assert isinstance(e.size, int) and e.size > 0
        assert all(b in BASES for b in e.bases)
        assert (e.repo is None) != (e.url is None)
        assert e.license and e.name
        for name, digest in e.sha256.items():
            assert re.fullmatch(r"[0-9a-f]{64}", digest), (e.id, name)
        if e.url:
            assert e.url.startswith("https://") and e.sha256, e.id  # single files are verified
            assert e.target_filename in e.sha256


def test_starter_set(catalog):
    starter = {e.id: e for e in catalog.starter_set()}
    kinds = {e.kind for e in starter.values()}
    assert {"sd-turbo", "taesd", "realesrgan-x4plus", "big-lama", "sd15-inpaint"} <= set(starter)
    assert {"controlnet-canny", "controlnet-pose", "pose-detector"} <= kinds
    assert starter["sd15-canny"].base == starter["sd15-openpose"].base == "sd1"
    # SDXL equivalents exist but are optional.
    assert all(e.base != "sdxl" for e in starter.values())
    assert {"sdxl-turbo", "taesdxl", "sdxl-canny"} <= set(catalog.ids)
    assert all(catalog.get(i).optional for i in ("sdxl-turbo", "taesdxl"))


def test_known_facts(catalog):
    """Spot checks against MODELS.md so a typo in the TOML is caught."""
    x4 = catalog.get("realesrgan-x4plus")
    assert x4.size == 67_040_989 and x4.target_filename == "RealESRGAN_x4plus.pth"
    assert x4.sha256["RealESRGAN_x4plus.pth"].startswith("4fa0d389")
    lama = catalog.get("big-lama")
    assert lama.kind == "lama" and lama.size == 205_669_692
    turbo = catalog.get("sd-turbo")
    assert turbo.repo == "stabilityai/sd-turbo" and turbo.variant == "fp16"
    assert turbo.recommended["steps"] == 1 and turbo.recommended["guidance"] == 0.0
    assert catalog.get("sd15-inpaint").variant == "fp16"  # no fp32 safetensors in its unet/
    pose = catalog.get("openpose")
    assert "body_pose_model.pth" in pose.files and len(pose.sha256) == 1


def test_lookup(catalog):
    assert catalog.get("taesd").kind == "preview-decoder"
    assert catalog.get("nope") is None
    with pytest.raises(BadInput, match="did you mean sd-turbo"):
        catalog.require("sd-turbbo")
    assert {e.kind for e in catalog.by_kind("upscaler")} == {"upscaler"}


GOOD = """
[[model]]
id = "x"
name = "X"
kind = "upscaler"
url = "https://example.org/x.pth"
size = 10
sha256 = "%s"
license = "MIT"
""" % ("a" * 64)


@pytest.mark.parametrize(
    "change,message",
    [
        (('kind = "upscaler"', 'kind = "magic"'), "unknown kind"),
        (("size = 10", "size = -1"), "size must be a positive integer"),
        (("size = 10", "size = 1.5"), "size must be a positive integer"),
        (("size = 10", 'size = "10"'), "size must be a positive integer"),
        (("a" * 64, "A" * 64), "64 lowercase hex"),
        (("a" * 64, "abc"), "64 lowercase hex"),
        (('id = "x"', 'id = "Bad Id"'), "lowercase"),
        (('license = "MIT"', ""), "missing field 'license'"),
        (('url = "https://example.org/x.pth"', 'url = "ftp://x"'), "https://"),
        (('url = "https://example.org/x.pth"', 'repo = "o/r"\nurl = "https://e/x"'), "exactly one"),
        (('license = "MIT"', 'license = "MIT"\ncolour = "red"'), "unknown field"),
        (('license = "MIT"', 'license = "MIT"\nbase = "sd9"'), "unknown base"),
        (('license = "MIT"', 'license = "MIT"\nrecommended = { steps = "many" }'), "steps must"),
        (('license = "MIT"', 'license = "MIT"\nstarter = "yes"'), "true or false"),
    ],
)
def test_malformed_entries(change, message):
    text = GOOD.replace(*change)
    with pytest.raises(BadInput, match=message):
        parse_catalog(text, source="test.toml")


def test_duplicate_ids_and_bad_toml():
    with pytest.raises(BadInput, match="duplicate id 'x'"):
        parse_catalog(GOOD + GOOD)
    with pytest.raises(BadInput, match="Malformed model catalog"):
        parse_catalog("[[model]\nid=")
    assert parse_catalog(GOOD)[0].target_filename == "x.pth"


def test_user_catalog_merges_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    assert studio_home() == tmp_path
    (tmp_path / "catalog.toml").write_text(
        GOOD
        + """
[[model]]
id = "taesd"
name = "My TAESD mirror"
kind = "preview-decoder"
base = ["sd1", "sd2"]
repo = "me/taesd"
size = 9800000
license = "MIT"
"""
    )
    cat = load_catalog()
    assert cat.get("x").origin == "user"
    assert cat.get("taesd").repo == "me/taesd" and cat.get("taesd").origin == "user"
    assert cat.get("sd-turbo").origin == "builtin"
    (tmp_path / "catalog.toml").write_text(GOOD.replace("size = 10", "size = 0"))
    with pytest.raises(BadInput, match=r"catalog\.toml.*size"):
        load_catalog()


def test_catalog_ships_in_the_top_level_models_folder():
    from studio.core.paths import shipped_models_dir

    assert BUILTIN_CATALOG.is_file()
    assert BUILTIN_CATALOG == shipped_models_dir() / "catalog.toml"
    assert (BUILTIN_CATALOG.parent / "configs").is_dir()
