"""Recognition of the flow families: from a diffusers folder (model_index.json), a hub repo in
the HF cache, a loaded pipeline, and single files' tensor names (diffusers-format transformer
files written from the tiny models, and BFL/ComfyUI key layouts as probes)."""

from __future__ import annotations

import json
import shutil

import pytest

from studio.engine.diffusion.families.base import TensorProbe
from studio.engine.diffusion.families.registry import folder_info, pipe_info
from studio.engine.diffusion.flow.load import (
    flow_families,
    is_flow_model,
    recognise_flow,
    recognise_flow_file,
)

EXPECTED = {"flux1": "flux1", "flux2": "flux2", "zimage": "zimage", "sd3": "sd3", "qwen": "qwen"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_folder(flow_models, name):
    folder = getattr(flow_models, name)
    fam = recognise_flow(folder_info(folder))
    assert fam is not None and fam.name == EXPECTED[name] and fam.prediction == "flow"
    assert is_flow_model(folder)


def test_fill_and_kontext_and_edit_by_pipeline_class(flow_models, tmp_path):
    assert recognise_flow(folder_info(flow_models.fill)).name == "flux1-fill"
    # A Kontext repo is the dev transformer under FluxKontextPipeline.
    kontext = tmp_path / "kontext"
    shutil.copytree(flow_models.flux1, kontext)
    index = json.loads((kontext / "model_index.json").read_text())
    index["_class_name"] = "FluxKontextPipeline"
    (kontext / "model_index.json").write_text(json.dumps(index))
    assert recognise_flow(folder_info(kontext)).name == "flux1-kontext"
    edit = tmp_path / "edit"
    shutil.copytree(flow_models.qwen, edit)
    index = json.loads((edit / "model_index.json").read_text())
    index["_class_name"] = "QwenImageEditPlusPipeline"
    (edit / "model_index.json").write_text(json.dumps(index))
    assert recognise_flow(folder_info(edit)).name == "qwen-edit"


def test_sd_folders_are_not_flow(tiny_models):
    assert recognise_flow(folder_info(tiny_models.sd)) is None
    assert not is_flow_model(tiny_models.sdxl)


def test_hub_repo_in_the_cache(flow_models, job, session_tmp):
    """A repo id resolves to its HF-cache snapshot (never the network) and loads as Z-Image."""
    import os
    from pathlib import Path

    from studio.engine.diffusion.flow.load import load_flow

    hub = Path(os.environ["HF_HOME"]) / "hub" / "models--tiny-org--Z-Image-Tiny"
    snap = hub / "snapshots" / "0123456789abcdef"
    if not snap.exists():
        shutil.copytree(flow_models.zimage, snap)
        (hub / "refs").mkdir(parents=True, exist_ok=True)
        (hub / "refs" / "main").write_text("0123456789abcdef")
    entry = load_flow(job().ctx, "tiny-org/Z-Image-Tiny", "cpu", "float32")
    assert entry.family.name == "zimage" and type(entry.base).__name__ == "ZImagePipeline"
    assert recognise_flow(pipe_info(entry.base)).name == "zimage"  # a loaded pipeline too


def _transformer_file(folder, tmp_path, name):
    from safetensors.torch import load_file, save_file

    src = next((folder / "transformer").glob("*.safetensors"))
    out = tmp_path / name
    save_file(load_file(src), out)
    return out


@pytest.mark.parametrize(
    "name,config",
    [
        ("flux1", "flux1-schnell"),
        ("flux2", "flux2-klein-4b"),
        ("zimage", "z-image-turbo"),
        ("sd3", "sd35-medium"),
        ("qwen", "qwen-image"),
    ],
)
def test_transformer_only_files(flow_models, tmp_path, name, config):
    from studio.engine.diffusion.families.registry import probe_file

    path = _transformer_file(getattr(flow_models, name), tmp_path, f"{name}.safetensors")
    fam, cfg = recognise_flow_file(probe_file(path))
    assert (fam.name, cfg) == (EXPECTED[name], config)


def _probe(keys: dict, name: str = "model.safetensors") -> TensorProbe:
    return TensorProbe(keys, name=name)


P = "model.diffusion_model."


@pytest.mark.parametrize("prefix", ["", P])
def test_bfl_flux_layouts(prefix):
    base = {prefix + "double_blocks.0.img_attn.norm.key_norm.scale": (128,)}
    img_in = {prefix + "img_in.weight": (3072, 64)}
    schnell = _probe({**base, **img_in})
    dev = _probe({**base, **img_in, prefix + "guidance_in.in_layer.bias": (3072,)})
    fill = _probe(
        {
            **base,
            prefix + "img_in.weight": (3072, 384),
            prefix + "guidance_in.in_layer.bias": (3072,),
        }
    )
    kontext = _probe(dict(dev.shapes), "flux1-kontext-dev.safetensors")
    got = {
        k: recognise_flow_file(p)
        for k, p in dict(schnell=schnell, dev=dev, fill=fill, kontext=kontext).items()
    }
    assert {k: (f.name, c) for k, (f, c) in got.items()} == {
        "schnell": ("flux1", "flux1-schnell"),
        "dev": ("flux1", "flux1-dev"),
        "fill": ("flux1-fill", "flux1-fill"),
        "kontext": ("flux1-kontext", "flux1-kontext"),
    }


def test_klein_sizes_and_flux2_dev_refused():
    k = {"single_stream_modulation.lin.weight": (1, 1)}
    four = _probe({**k, "img_in.weight": (3072, 128)})
    nine = _probe(
        {**k, P + "single_stream_modulation.lin.weight": (1, 1), "img_in.weight": (4096, 128)}
    )
    dev = _probe({**k, "img_in.weight": (6144, 128), "guidance_in.in_layer.weight": (6144, 256)})
    assert recognise_flow_file(four)[1] == "flux2-klein-4b"
    assert recognise_flow_file(nine)[1] == "flux2-klein-9b"
    assert recognise_flow_file(dev) is None  # FLUX.2 dev (Mistral encoder) is not supported


def test_sd35_and_qwen_and_zimage_layouts():
    medium = _probe({"joint_blocks.0.context_block.adaLN_modulation.1.bias": (9216,)})
    large = _probe({**medium.shapes, "joint_blocks.37.x_block.mlp.fc1.weight": (9216, 2304)})
    assert recognise_flow_file(medium)[1] == "sd35-medium"
    assert recognise_flow_file(large)[1] == "sd35-large"
    q = {
        P + k: (1,)
        for k in ("txt_norm.weight", "img_in.weight", "transformer_blocks.0.img_mod.1.weight")
    }
    assert recognise_flow_file(_probe(q, "qwen_image_fp8.safetensors"))[1] == "qwen-image"
    assert (
        recognise_flow_file(_probe(q, "qwen_image_edit_2511.safetensors"))[1] == "qwen-image-edit"
    )
    z = _probe({P + "layers.0.adaLN_modulation.0.weight": (1,), P + "cap_embedder.1.weight": (1,)})
    assert recognise_flow_file(z)[1] == "z-image-turbo"
    zc = _probe({**z.shapes, "control_layers.0.adaLN_modulation.0.weight": (1,)})
    assert recognise_flow_file(zc) is None  # a Z-Image ControlNet is not a base model


def test_sd_checkpoints_are_not_flow():
    sd = _probe({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)})
    assert recognise_flow_file(sd) is None


def test_every_descriptor_has_its_pipelines_and_a_config_per_file_match():
    import diffusers

    for fam in flow_families():
        assert fam.prediction == "flow" and not fam.prompt_weighting
        for cls in fam.pipelines.values():
            assert hasattr(diffusers, cls), (fam.name, cls)
        assert fam.single_file_configs, fam.name
        assert len(fam.latent_rgb) == fam.latent_channels
