"""A folder the user adds (Add folder…, models.json "folders") is a folder of models wherever
they sit: diffusers pipelines directly in it or in sub-folders of their own (not only under
``checkpoints/``), ControlNet/TAESD component folders, single files told by their headers,
and the AUTOMATIC1111/ComfyUI kind folders as before. Each is listed once, by its folder or
file name, of the kind it is (a 9-channel UNet: inpainting), and ControlNets with the
family they were made for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from studio_model_files import (
    controlnet_original_spec,
    kohya_lora_spec,
    write_sparse_safetensors,
)

from studio.engine.models import store
from studio.engine.models.resolver import list_models, resolve
from studio.engine.models.scan import folder_models, loose_models


@pytest.fixture
def lib(tmp_path, monkeypatch, tiny_models):
    """STUDIO_HOME of the test's own and a user folder holding a tiny SD pipeline at its top,
    a tiny inpainting one in a sub-folder, a tiny ControlNet, an SD 2.x ControlNet config
    folder, a LoRA file, an unknown .pth, a venv with a weights file and a checkpoints/
    folder."""
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)
    root = tmp_path / "my models"
    shutil.copytree(tiny_models.sd, root / "tiny-sd")
    shutil.copytree(tiny_models.sd_inpaint, root / "inpainting" / "tiny-fill")
    shutil.copytree(tiny_models.controlnet, root / "tiny-controlnet")
    (root / "sd21-openpose-cn").mkdir()
    (root / "sd21-openpose-cn" / "config.json").write_text(
        json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 1024})
    )
    write_sparse_safetensors(root / "sd21-openpose-cn" / "diffusion_pytorch_model.safetensors", {})
    write_sparse_safetensors(root / "ink-style.safetensors", kohya_lora_spec(768))
    (root / "extra").mkdir()
    write_sparse_safetensors(
        root / "extra" / "canny_sdxl.safetensors", controlnet_original_spec(2048)
    )
    (root / "notes.pth").write_bytes(b"not a model")
    (root / "venv" / "lib").mkdir(parents=True)
    write_sparse_safetensors(root / "venv" / "lib" / "junk.safetensors", kohya_lora_spec(768))
    shutil.copytree(tiny_models.sd, root / "checkpoints" / "in-checkpoints")
    # a folder named like a kind folder, deeper than those are looked for: searched too
    shutil.copytree(tiny_models.sd, root / "SD 1.5" / "checkpoints" / "deep-sd")
    store.update_settings(folders=[str(root)])
    return root


def test_a_folder_of_diffusers_models_is_listed_by_name_and_kind(lib):
    found = {m.path.relative_to(lib).as_posix(): m for m in folder_models()}
    assert found["tiny-sd"].kind == "txt2img" and found["tiny-sd"].name == "tiny-sd"
    assert found["inpainting/tiny-fill"].kind == "inpaint"  # its UNet takes 9 channels
    assert found["checkpoints/in-checkpoints"].kind == "txt2img"  # the kind folder as before
    assert found["SD 1.5/checkpoints/deep-sd"].kind == "txt2img"
    assert found["tiny-controlnet"].kind.startswith("controlnet-")
    assert found["sd21-openpose-cn"].base == "sd2"  # the family from its config
    assert found["extra/canny_sdxl.safetensors"].kind == "controlnet-canny"
    assert found["extra/canny_sdxl.safetensors"].base == "sdxl"  # from the file's tensors
    assert found["ink-style.safetensors"].kind == "lora"
    assert "notes.pth" not in found  # not a model: left out, nothing raised
    assert not any(k.startswith("venv/") for k in found)  # environments are not searched
    assert len(found) == len({m.path for m in folder_models()})  # each path once


def test_every_panel_list_and_the_resolver_see_them(lib):
    gen = {c.ref: c for c in list_models(("txt2img", "inpaint"))}
    assert str(lib / "tiny-sd") in gen and str(lib / "inpainting" / "tiny-fill") in gen
    assert gen[str(lib / "tiny-sd")].source == "folder"
    assert {c.kind for c in list_models("inpaint") if "tiny-fill" in c.ref} == {"inpaint"}
    loras = [c.ref for c in list_models("lora")]
    assert str(lib / "ink-style.safetensors") in loras
    cns = {c.ref: c for c in list_models("controlnet")}
    assert cns[str(lib / "sd21-openpose-cn")].base == "sd2"
    # the name resolves, as a name typed or pasted (A1111 parameters) would
    assert resolve("tiny-sd", "checkpoint") == lib / "tiny-sd"
    assert resolve("tiny-fill", "inpaint") == lib / "inpainting" / "tiny-fill"


def test_only_the_users_folders_are_searched_loose(lib, tmp_path, monkeypatch):
    assert {m.name for m in loose_models("txt2img")} == {"tiny-sd", "deep-sd"}
    store.update_settings(folders=[])
    assert loose_models() == []


def test_listing_a_folder_never_imports_torch(lib):
    """The pickers list in the GUI thread, which never imports torch: a file only an
    architecture test could tell (an upscaler, LaMa) is not identified there."""
    code = (
        "import sys\n"
        "from studio.engine.models import list_models\n"
        "list_models(('txt2img', 'inpaint', 'controlnet', 'lora', 'upscaler', 'lama'))\n"
        "bad = [m for m in ('torch', 'spandrel', 'diffusers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- one layout for Studio's own models folder and the portable one -------------------------


def test_studio_folder_files_by_the_common_layout(monkeypatch, tmp_path):
    """Downloads and imports land where ComfyUI (and the portable folder) keep each kind."""
    from studio.core import paths
    from studio.engine.models import folders

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    # ComfyUI's models/ subfolders, as its folder_paths.py names them.
    expected = {
        "txt2img": "checkpoints",
        "lora": "loras",
        "vae": "vae",
        "upscaler": "upscale_models",
        "controlnet-canny": "controlnet",
        "embedding": "embeddings",
    }
    for kind, name in expected.items():
        assert folders.kind_dir(kind) == tmp_path / "home" / "models" / name
        assert name in paths.MODEL_FOLDERS  # the portable folder has the same subfolder


def test_a_lora_dropped_into_studios_loras_folder_is_found(monkeypatch, tmp_path):
    from studio.engine.models import importer

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    new = tmp_path / "home" / "models" / "loras" / "ink.safetensors"
    old = tmp_path / "home" / "models" / "lora" / "ash.safetensors"  # an earlier layout
    for f in (new, old):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    assert importer.find_lora("ink") == new
    assert importer.find_lora("ash") == old
