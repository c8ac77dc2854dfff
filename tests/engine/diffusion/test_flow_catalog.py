"""Catalog entries of the flow-matching families: parsed, licences and gates
as the model cards say (shared/MODELS.md), recommended settings of the distilled models, and
consistent with the memory planner's sizes."""

from __future__ import annotations

import pytest

from studio.core.catalog import load_catalog, parse_catalog
from studio.core.errors import BadInput
from studio.engine.diffusion.shared.memory import MODEL_NEEDS

FLOW_IDS = {
    # id: (kind, base, repo, licence contains, gated)
    "flux1-schnell": ("txt2img", "flux1", "black-forest-labs/FLUX.1-schnell", "Apache-2.0", False),
    "flux1-dev": ("txt2img", "flux1", "black-forest-labs/FLUX.1-dev", "Non-Commercial", True),
    "flux1-fill": ("inpaint", "flux1", "black-forest-labs/FLUX.1-Fill-dev", "Non-Commercial", True),
    "flux1-kontext": (
        "edit",
        "flux1",
        "black-forest-labs/FLUX.1-Kontext-dev",
        "Non-Commercial",
        True,
    ),
    "flux2-klein-4b": (
        "txt2img",
        "flux2",
        "black-forest-labs/FLUX.2-klein-4B",
        "Apache-2.0",
        False,
    ),
    "flux2-klein-9b": (
        "txt2img",
        "flux2",
        "black-forest-labs/FLUX.2-klein-9B",
        "Non-Commercial",
        True,
    ),
    "z-image-turbo": ("txt2img", "zimage", "Tongyi-MAI/Z-Image-Turbo", "Apache-2.0", False),
    "z-image": ("txt2img", "zimage", "Tongyi-MAI/Z-Image", "Apache-2.0", False),
    "chroma1-hd": ("txt2img", "chroma", "lodestones/Chroma1-HD", "Apache-2.0", False),
    "sd35-medium": (
        "txt2img",
        "sd3",
        "stabilityai/stable-diffusion-3.5-medium",
        "Stability AI",
        True,
    ),
    "sd35-large": (
        "txt2img",
        "sd3",
        "stabilityai/stable-diffusion-3.5-large",
        "Stability AI",
        True,
    ),
    "sd35-large-turbo": (
        "txt2img",
        "sd3",
        "stabilityai/stable-diffusion-3.5-large-turbo",
        "Stability AI",
        True,
    ),
    "qwen-image": ("txt2img", "qwen", "Qwen/Qwen-Image", "Apache-2.0", False),
    "qwen-image-edit": ("edit", "qwen", "Qwen/Qwen-Image-Edit-2511", "Apache-2.0", False),
    # shared/MODELS.md: "Qwen Research License (non-commercial)"
    "qwen-image-2-1": ("txt2img", "qwen21", "Qwen/Qwen-Image-2.1", "Qwen Research", False),
}


# Parts stored in fp32 in the repo: Z-Image's transformer; Qwen-Image 2.1's VAE (1.35 GB for
# 0.34B parameters, shared/MODELS.md).
FP32_STORED = {"z-image-turbo": "transformer", "qwen-image-2-1": "vae"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return load_catalog(user=tmp_path_factory.mktemp("cat") / "none.toml")


@pytest.mark.parametrize("model_id", sorted(FLOW_IDS))
def test_flow_entries(catalog, model_id):
    kind, base, repo, licence, gated = FLOW_IDS[model_id]
    e = catalog.require(model_id)
    assert (e.kind, e.base, e.repo) == (kind, base, repo)
    assert licence in e.license and e.gated is gated
    assert e.optional and not e.starter  # 16-58 GB downloads are never suggested by default
    # Only what Studio loads: never the repo's root single-file duplicate.
    assert e.allow_patterns and all("/" in p or p == "model_index.json" for p in e.allow_patterns)
    assert "transformer/*" in e.allow_patterns and "vae/*" in e.allow_patterns
    # The memory planner knows it, and its size agrees with the catalog's (a part stored in
    # fp32 downloads twice its bf16 weights).
    needs = MODEL_NEEDS[model_id]
    fp32 = getattr(needs, f"{FP32_STORED[model_id]}_gb") if model_id in FP32_STORED else 0
    assert e.size == pytest.approx((needs.total_gb + fp32) * 1e9, rel=0.02)


def test_distilled_recommendations(catalog):
    rec = {i: dict(catalog.require(i).recommended) for i in FLOW_IDS}
    assert rec["flux1-schnell"] == {
        "steps": 4,
        "guidance": 0.0,
        "width": 1024,
        "height": 1024,
        "max_sequence_length": 256,
    }
    assert rec["z-image-turbo"]["steps"] == 8 and rec["z-image-turbo"]["guidance"] == 0.0
    assert rec["flux2-klein-4b"]["steps"] == rec["flux2-klein-9b"]["steps"] == 4
    assert rec["sd35-large-turbo"]["guidance"] == 0.0
    assert rec["flux1-fill"]["guidance"] == 30.0
    assert rec["qwen-image"]["true_cfg"] == 4.0 and "guidance" not in rec["qwen-image"]


def test_flow_preview_decoders(catalog):
    taef1, taesd3 = catalog.require("taef1"), catalog.require("taesd3")
    assert taef1.repo == "madebyollin/taef1" and set(taef1.bases) == {"flux1", "zimage"}
    assert taesd3.repo == "madebyollin/taesd3" and taesd3.bases == ("sd3",)
    assert taef1.kind == taesd3.kind == "preview-decoder" and taef1.license == "MIT"


def test_new_fields_are_validated():
    base = 'id = "x"\nname = "X"\nkind = "edit"\nrepo = "a/b"\nsize = 1\nlicense = "MIT"\n'
    (e,) = parse_catalog(f"[[model]]\n{base}base = 'qwen'\ngated = true\n")
    assert e.gated and e.base == "qwen" and e.kind == "edit"
    with pytest.raises(BadInput, match="'gated' must be true or false"):
        parse_catalog(f"[[model]]\n{base}gated = 'yes'\n")
    with pytest.raises(BadInput, match="recommended true_cfg must be float"):
        parse_catalog(f"[[model]]\n{base}recommended = {{ true_cfg = 'four' }}\n")
    with pytest.raises(BadInput, match="unknown base 'flux3'"):
        parse_catalog(f"[[model]]\n{base}base = 'flux3'\n")
