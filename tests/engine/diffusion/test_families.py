"""Model families as descriptors (studio.engine.diffusion.families): recognition from folders,
loaded pipelines, single files and ControlNets, the descriptor contract, and a grep-style check
that no module outside families/ branches on a family's name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import studio
from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families import (
    TASK_KEYS,
    Family,
    TensorProbe,
    controlnet_family,
    families,
    family,
    recognise_file,
    recognise_folder,
)

ROOT = Path(studio.__file__).parent


def _names() -> str:
    """Every name a family goes by, from the registry: family names, their single-file
    config names and their memory-planner row keys (sd15, z-image-turbo, ...), plus the
    short prefixes code uses for them."""
    from studio.engine.diffusion.shared.memory import MODEL_NEEDS

    names = {"xl", "sd35", "flux", "z-image"} | set(MODEL_NEEDS)
    for fam in families():
        names |= {fam.name, *fam.single_file_configs}
    return "(?:" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + ")"


NAMES = _names()
# A quoted family (or family config) name on either side of a comparison.
COMPARE = re.compile(
    rf"""(?:==|!=|\bin\b|startswith\(|endswith\()\s*\(?\s*["']{NAMES}[\w-]*["']"""
    rf"""|["']{NAMES}[\w-]*["']\s*(?:==|!=|\bin\b|\bnot in\b)"""
    r"""|(?<!\.)\bfamily\s*(?:==|!=)"""  # a variable named family; not row.family == other.family
    # a table keyed by family name: a dict literal's key, a subscript or .get() with one
    rf"""|["']{NAMES}["']\s*:(?!\s*$)|\[\s*["']{NAMES}["']\s*\]|\.get\(\s*["']{NAMES}["']"""
)


# Files that still compare family names, each with why (remove the entry once fixed; the test
# fails when an entry no longer matches anything, so the list cannot go stale).
KNOWN = {
    # File identification for imports: reads a LoRA's ss_base_model_version and tells TAESD
    # from TAESDXL by name.
    "engine/models/identify.py": "identification of imported files, not engine dispatch",
    # A textual-inversion file layout called "sdxl" (clip_l/clip_g keys), not a family branch.
    "engine/models/embeddings.py": "embedding file layout name",
}


def test_no_module_outside_families_compares_a_family_name():
    hits = []
    known_hit = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("engine/diffusion/families/"):
            continue
        if rel in KNOWN:
            text = path.read_text(encoding="utf-8")
            if any(COMPARE.search(line.split("#", 1)[0]) for line in text.splitlines()):
                known_hit.add(rel)
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if COMPARE.search(code):
                hits.append(f"{rel}:{n}: {line.strip()}")
    assert not hits, "family branches outside families/:\n" + "\n".join(hits)
    assert known_hit == set(KNOWN), f"stale KNOWN entries: {set(KNOWN) - known_hit}"


def test_the_grep_pattern_catches_the_usual_branches():
    for bad in ('if family == "sdxl":', 'xl = "sdxl" in name', 'if base != "sd2":',
                'fam.startswith("sd15")', 'if family == other:',
                'if fam.name.startswith("qwen"):', 'fam.name != "flux1-fill"',
                'edit = fam.name in ("flux1-kontext", "qwen-edit")',
                'ROWS = {"sd1": 512, "flux1": 1024}', 'size = SIZES["sdxl"]',
                'steps = DEFAULTS.get("zimage", 8)', '    "qwen": FamilyRows("Qwen-Image"),',
                'if fam.name == "chroma":'):  # fmt: skip
        assert COMPARE.search(bad), bad
    assert not COMPARE.search('name = "sdxl"')
    assert not COMPARE.search('label = f"{fam.label}: {n}"')
    assert not COMPARE.search('print("sdxl:")')  # prose ending in a colon


def test_registry_and_descriptor_contract():
    import diffusers

    names = [f.name for f in families()]
    assert names[-2:] == ["sd2", "sd1"]
    assert names.index("sdxl") < names.index("sd2")  # most specific first
    flow = {"flux1", "flux1-fill", "flux1-kontext", "flux2", "zimage", "sd3", "qwen", "qwen-edit"}
    assert flow <= set(names)  # the flow-matching families and their variants
    assert names.index("flux1-kontext") < names.index("flux1")
    assert [f.priority for f in families()] == sorted(
        (f.priority for f in families()), reverse=True
    )
    for fam in families():
        assert isinstance(fam, Family) and family(fam.name) is fam
        assert set(fam.pipelines) <= set(TASK_KEYS)
        for cls in fam.pipelines.values():
            assert hasattr(diffusers, cls), cls
        assert len(fam.latent_rgb) == fam.latent_channels
        if fam.prediction == "flow":
            # variants (Fill, Kontext, Edit) take their base's ControlNets or none
            assert set(fam.controlnet_bases) <= {fam.name, fam.name.split("-")[0]}
            continue  # flow single-file configs: flow_files (tested in flow/)
        assert fam.name in fam.controlnet_bases
        for config in fam.configs:
            assert (ROOT.parent / "models" / "configs" / config / "model_index.json").exists()
    assert family("sdxl").controlnet_scale == 0.5
    assert family("sdxl").vae_upcast and not family("sd1").vae_upcast
    assert family("sdxl").default_size == (1024, 1024)
    with pytest.raises(BadInput, match="Unknown model family"):
        family("flux-ultra")
    with pytest.raises(BadInput, match="Unknown task"):
        family("sd1").pipeline_class("video")


def test_a_family_without_a_task_refuses_in_one_line():
    fam = Family(name="t", label="Toy", pipelines={"txt2img": "X"}, matches=lambda i: False)
    assert fam.tasks == ("txt2img",) and not fam.supports("inpaint")
    with pytest.raises(BadInput, match="Toy models can't do inpaint") as e:
        fam.pipeline_class("inpaint")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError):
        Family(name="t", label="T", pipelines={"paint": "X"}, matches=lambda i: False)


def test_recognise_tiny_folders_and_pipes(tiny_models):
    from diffusers import DiffusionPipeline

    from studio.engine.diffusion.families import recognise_pipe

    assert recognise_folder(tiny_models.sd).name == "sd1"
    assert recognise_folder(tiny_models.sd_inpaint).name == "sd1"
    assert recognise_folder(tiny_models.sdxl).name == "sdxl"
    pipe = DiffusionPipeline.from_pretrained(tiny_models.sdxl, local_files_only=True)
    assert recognise_pipe(pipe).name == "sdxl"
    with pytest.raises(ModelError):
        recognise_folder(tiny_models.controlnet)  # no model_index.json


def _probe(shapes, values=None, sidecar=""):
    values = values or {}
    return TensorProbe(shapes, values.__getitem__, sidecar, "m.safetensors")


UNET = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.mark.parametrize(
    "extra, channels, expected",
    [
        ({}, 4, ("sd1", "sd15")),
        ({}, 9, ("sd1", "sd15-inpaint")),
        ({"cond_stage_model.model.ln_final.weight": (1024,)}, 9, ("sd2", "sd21-inpaint")),
        ({"conditioner.embedders.1.model.ln_final.weight": (1280,)}, 4, ("sdxl", "sdxl")),
        ({"conditioner.embedders.1.model.ln_final.weight": (1280,)}, 9, ("sdxl", "sdxl-inpaint")),
    ],
)
def test_recognise_file_checks_conv_in_channels(extra, channels, expected):
    m = recognise_file(_probe({UNET: (320, channels, 3, 3), **extra}))
    assert (m.family.name, m.config) == expected


def test_controlnet_family_from_config_and_tensors():
    assert controlnet_family({"cross_attention_dim": 768}).name == "sd1"
    assert controlnet_family({"cross_attention_dim": 1024}).name == "sd2"
    assert controlnet_family({"addition_embed_type": "text_time"}).name == "sdxl"
    probe = _probe({"control_model.label_emb.0.0.weight": (4, 4)})
    assert controlnet_family(probe=probe).name == "sdxl"


def test_flow_descriptor_fields_name_real_diffusers_pieces():
    """What the flow job path reads from a descriptor exists in diffusers: the transformer
    class (single files, GGUF), the guidance argument of every pipeline of the family, and
    no ``strength`` where the descriptor says the image is not denoised from (Fill, edit)."""
    import inspect

    import diffusers

    flow = [f for f in families() if f.prediction == "flow"]
    assert flow
    for fam in flow:
        assert hasattr(diffusers, fam.transformer_class), fam.name
        assert family(fam.root).prediction == "flow" and family(fam.root).base is None
        for task, cls in fam.pipelines.items():
            params = inspect.signature(getattr(diffusers, cls).__call__).parameters
            assert fam.guidance_param in params, (fam.name, cls)
            if task in ("img2img", "inpaint") and fam.takes_strength(task):
                assert "strength" in params, (fam.name, cls)
        if fam.edit:
            assert not fam.takes_strength("img2img") and fam.supports("img2img"), fam.name
    assert family("qwen").guidance_param == "true_cfg_scale"
    assert family("flux1-fill").root == "flux1" and not family("flux1-fill").strength_tasks
    # diffusers' QwenImageEditInpaintPipeline noises the masked latents by `strength` (its
    # default 0.6): the user's strength must reach it, while the edit pipeline has none.
    edit = family("qwen-edit")
    inpaint_call = inspect.signature(getattr(diffusers, edit.pipelines["inpaint"]).__call__)
    assert inpaint_call.parameters["strength"].default == 0.6
    assert edit.takes_strength("inpaint") and not edit.takes_strength("img2img")
    assert family("flux1-kontext").call_kwargs(None, 640, 512) == {
        "max_area": 640 * 512,
        "_auto_resize": False,
    }


def test_a_chroma_file_is_chroma_not_flux1_schnell():
    """ComfyUI's model_detection tells Chroma from FLUX.1 by ``distilled_guidance_layer``;
    Chroma Radiance (``nerf_blocks``) is another architecture."""
    flux = {
        "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": (128,),
        "model.diffusion_model.img_in.weight": (3072, 64),
    }
    chroma = {**flux, "model.diffusion_model.distilled_guidance_layer.norms.0.scale": (5120,)}
    assert recognise_file(TensorProbe(flux, name="f.safetensors")).config == "flux1-schnell"
    match = recognise_file(TensorProbe(chroma, name="Chroma1-HD.safetensors"))
    assert (match.family.name, match.config) == ("chroma", "chroma1-hd")
    radiance = {**chroma, "model.diffusion_model.nerf_blocks.0.norm.scale": (64,)}
    with pytest.raises(ModelError):  # neither Chroma nor FLUX.1
        recognise_file(TensorProbe(radiance, name="r.safetensors"))
