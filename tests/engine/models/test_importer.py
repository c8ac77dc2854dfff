"""Importing model files into Studio's models folder: copy/link, duplicates, registry, LoRA
lookup (imported files and the user's own lora folders)."""

from __future__ import annotations

import pytest
import torch
from studio_model_files import (
    kohya_lora_spec,
    peft_lora_spec,
    sd_checkpoint_spec,
    write_sparse_safetensors,
)

from studio.core.errors import BadInput
from studio.engine.models import importer, store


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)
    return tmp_path / "home"


def test_import_checkpoint_copy_and_record(home, tmp_path):
    src = write_sparse_safetensors(tmp_path / "myModel.safetensors", sd_checkpoint_spec("sd1", 9))
    rec = importer.import_file(src)
    assert rec.kind == "inpaint" and rec.base == "sd1"
    dest = home / "models" / "checkpoints" / "myModel.safetensors"
    assert rec.path == str(dest) and dest.stat().st_size == src.stat().st_size
    assert not dest.is_symlink()
    assert [r.name for r in importer.list_imported()] == ["myModel.safetensors"]
    assert importer.list_imported("lora") == []
    # Same file again: the existing record; no temp files left.
    assert importer.import_file(src).path == rec.path
    assert len(importer.list_imported()) == 1
    assert not list(dest.parent.glob(".*importing"))


def test_import_link_rename_overwrite_remove(home, tmp_path):
    a = write_sparse_safetensors(tmp_path / "a.safetensors", kohya_lora_spec(768))
    rec = importer.import_file(a, link=True, name="ink")
    dest = home / "models" / "loras" / "ink.safetensors"
    assert rec.path == str(dest) and dest.exists()
    assert dest.samefile(a)  # hard link (same disk) or symlink
    b = write_sparse_safetensors(tmp_path / "b.safetensors", peft_lora_spec(1024))
    with pytest.raises(BadInput, match="already imported"):
        importer.import_file(b, name="ink")
    rec2 = importer.import_file(b, name="ink", overwrite=True)
    assert rec2.base == "sd2" and len(importer.list_imported("lora")) == 1
    assert importer.remove_imported("ink") > 0
    assert not dest.exists() and importer.list_imported() == []
    assert a.exists()  # the user's original is untouched
    with pytest.raises(BadInput, match="No imported model"):
        importer.remove_imported("ink")


def test_registry_ignores_deleted_files_and_bad_json(home, tmp_path):
    src = write_sparse_safetensors(tmp_path / "x.safetensors", kohya_lora_spec(768))
    rec = importer.import_file(src)
    from pathlib import Path

    Path(rec.path).unlink()
    assert importer.list_imported() == []
    importer.registry_path().write_text("not json")
    assert importer.list_imported() == []
    assert importer.import_file(src).kind == "lora"  # recovers


def test_find_lora_in_imports_and_user_folders(home, tmp_path, monkeypatch):
    mine = tmp_path / "my-models"
    (mine / "Lora").mkdir(parents=True)
    write_sparse_safetensors(mine / "Lora" / "watercolor.safetensors", kohya_lora_spec(768))
    monkeypatch.setenv("STUDIO_MODEL_PATHS", str(mine))
    src = write_sparse_safetensors(tmp_path / "ink.safetensors", kohya_lora_spec(768))
    importer.import_file(src)
    names = sorted(p.stem for p in importer.list_loras())
    assert names == ["ink", "watercolor"]
    assert importer.find_lora("watercolor") == mine / "Lora" / "watercolor.safetensors"
    assert importer.find_lora("ink") == store.kind_dir("lora") / "ink.safetensors"
    assert importer.find_lora(str(src)) == src
    assert importer.find_lora("nope") is None


def test_diffusers_pickle_bin_controlnet(home, tiny_models, tmp_path):
    """A diffusers ControlNet saved as .bin (pickle), like thibaud's SD2.1 ControlNets."""
    from safetensors.torch import load_file

    state = load_file(str(tiny_models.controlnet / "diffusion_pytorch_model.safetensors"))
    torch.save(state, tmp_path / "diffusion_pytorch_model.bin")
    rec = importer.import_file(tmp_path / "diffusion_pytorch_model.bin", name="tiny-canny")
    assert rec.kind == "controlnet" and rec.format == "pickle"
    assert rec.details["condition"] is None  # the name given doesn't count; the source's does


def test_refused_files_are_not_copied(home, tmp_path):
    (tmp_path / "x.pth").write_bytes(b"garbage")
    with pytest.raises(BadInput):
        importer.import_file(tmp_path / "x.pth")
    assert not (home / "models").exists() or not any((home / "models").rglob("x.pth"))


def test_openpose_files_import_as_pose_detectors_and_a_folder_is_refused_clearly(home, tmp_path):
    from studio.engine.fixtures import write_random_openpose
    from studio.engine.models.identify import identify

    body = write_random_openpose(tmp_path / "op", hands=True, face=True)
    parts = {
        f: identify(body.parent / f) for f in (body.name, "hand_pose_model.pth", "facenet.pth")
    }
    assert {f: (i.kind, i.details["part"]) for f, i in parts.items()} == {
        "body_pose_model.pth": ("pose-detector", "body"),
        "hand_pose_model.pth": ("pose-detector", "hand"),
        "facenet.pth": ("pose-detector", "face"),
    }
    rec = importer.import_file(body)
    assert rec.kind == "pose-detector"
    assert rec.path == str(home / "models" / "pose" / "body_pose_model.pth")
    with pytest.raises(BadInput, match="is a folder; import takes one model file"):
        importer.import_file(tmp_path / "op")
