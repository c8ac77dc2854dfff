"""Where models live: HF cache layouts (complete vs partial snapshots, variants, single
files), Studio's models folder, user folders, removing, resolving ids. No network."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import MappingProxyType

import pytest

from studio.core.catalog import Entry, load_catalog
from studio.core.errors import BadInput
from studio.engine.models import store


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)
    return tmp_path / "hub"


def put(hub: Path, repo: str, files: dict[str, bytes], commit: str = "abc123") -> Path:
    """Write files into the HF cache layout (blobs + snapshot symlinks + refs/main)."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    (root / "blobs").mkdir(exist_ok=True)
    snap = root / "snapshots" / commit
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snap


PIPE_INDEX = json.dumps(
    {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        # Listed in the real SD1.5 repos; Studio doesn't fetch or load them.
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
    }
).encode()


def pipeline_files(variant: str | None, skip: str = "") -> dict[str, bytes]:
    ext = f".{variant}.safetensors" if variant else ".safetensors"
    files = {
        "model_index.json": PIPE_INDEX,
        "scheduler/scheduler_config.json": b"{}",
        "tokenizer/vocab.json": b"{}",
        "text_encoder/config.json": b"{}",
        f"text_encoder/model{ext}": b"te",
        "unet/config.json": b"{}",
        f"unet/diffusion_pytorch_model{ext}": b"unet",
        "vae/config.json": b"{}",
        f"vae/diffusion_pytorch_model{ext}": b"vae",
    }
    return {k: v for k, v in files.items() if not (skip and k.startswith(skip))}


def test_pipeline_snapshot_complete_partial_and_variant(hub):
    entry = load_catalog().get("sd-turbo")
    assert store.find_installed(entry) is None
    put(hub, "stabilityai/sd-turbo", pipeline_files("fp16", skip="unet/diffusion"))
    assert store.find_installed(entry) is None  # half a download is not installed
    put(hub, "stabilityai/sd-turbo", {"unet/diffusion_pytorch_model.safetensors": b"fp32"})
    assert store.find_installed(entry) is None  # fp32 weights, but the entry wants fp16
    snap = put(hub, "stabilityai/sd-turbo", {"unet/diffusion_pytorch_model.fp16.safetensors": b"u"})
    assert store.find_installed(entry) == snap
    assert store.installed(load_catalog()) == {"sd-turbo": snap}


def test_single_component_and_files_entries(hub):
    cat = load_catalog()
    snap = put(hub, "madebyollin/taesd", {"config.json": b"{}"})
    assert store.find_installed(cat.get("taesd")) is None
    put(hub, "madebyollin/taesd", {"diffusion_pytorch_model.safetensors": b"w"})
    assert store.find_installed(cat.get("taesd")) == snap
    # Several named files -> the snapshot folder once all are there.
    pose = cat.get("openpose")
    put(hub, "lllyasviel/Annotators", {"body_pose_model.pth": b"b", "hand_pose_model.pth": b"h"})
    assert store.find_installed(pose) is None
    annot = put(hub, "lllyasviel/Annotators", {"facenet.pth": b"f"})
    assert store.find_installed(pose) == annot
    # One named file -> that file.
    single = cat.get("sd15-canny-single")
    put(hub, single.repo, {single.files[0]: b"cn"})
    assert store.find_installed(single).name == single.files[0]


def test_url_entries_in_models_folder_and_user_folders(hub, tmp_path, monkeypatch):
    entry = load_catalog().get("realesrgan-x4plus")
    mine = tmp_path / "my-models"
    (mine / "upscalers").mkdir(parents=True)
    monkeypatch.setenv("STUDIO_MODEL_PATHS", str(mine))
    assert store.find_installed(entry) is None
    (mine / "RealESRGAN_x4plus.pth").write_bytes(b"x")
    assert store.find_installed(entry) == mine / "RealESRGAN_x4plus.pth"
    with pytest.raises(BadInput, match="Studio does not delete"):
        store.remove(entry)
    assert (mine / "RealESRGAN_x4plus.pth").exists()
    monkeypatch.delenv("STUDIO_MODEL_PATHS")
    assert store.find_installed(entry) is None
    store.update_settings(folders=[str(mine)])  # the same folder from settings
    assert store.find_installed(entry) == mine / "RealESRGAN_x4plus.pth"
    # A diffusers folder named like a catalog id in a user folder counts too.
    turbo = mine / "sd-turbo"
    for name, data in pipeline_files("fp16").items():
        (turbo / name).parent.mkdir(parents=True, exist_ok=True)
        (turbo / name).write_bytes(data)
    assert store.find_installed(load_catalog().get("sd-turbo")) == turbo


def test_remove_repo_and_single_files(hub):
    cat = load_catalog()
    put(
        hub,
        "madebyollin/taesd",
        {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"w" * 100},
    )
    freed = store.remove(cat.get("taesd"))
    assert freed >= 100 and store.find_installed(cat.get("taesd")) is None
    assert not (hub / "models--madebyollin--taesd").exists()
    # A files entry removes only its files; other files of the shared repo stay.
    snap = put(
        hub,
        "lllyasviel/Annotators",
        {
            "body_pose_model.pth": b"b",
            "hand_pose_model.pth": b"h",
            "facenet.pth": b"f",
            "other.pth": b"o",
        },
    )
    store.remove(cat.get("openpose"))
    assert store.find_installed(cat.get("openpose")) is None
    assert (snap / "other.pth").read_bytes() == b"o"
    assert store.remove(cat.get("openpose")) == 0  # not installed: nothing to do


def test_broken_settings_give_defaults(hub, tmp_path):
    store.settings_path().parent.mkdir(parents=True, exist_ok=True)
    store.settings_path().write_text("{broken")
    assert store.load_settings()["starter_offered"] is False  # broken file -> defaults


def test_offline_switches(monkeypatch):
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not store.offline_mode()
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    assert store.offline_mode()
    monkeypatch.setenv("STUDIO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert store.offline_mode()


def test_entry_shape_helpers():
    e = Entry(
        id="x",
        name="X",
        kind="upscaler",
        license="MIT",
        size=1,
        url="https://h/a/b/file.pth?download=1",
        sha256=MappingProxyType({}),
    )
    assert e.target_filename == "file.pth" and e.is_single_file and not e.is_repo


def test_local_pipelines_lists_folders_in_every_root_and_imported_checkpoints(
    hub, tmp_path, monkeypatch
):
    own = store.models_dir() / "txt2img" / "my-model"
    own.mkdir(parents=True)
    (own / "model_index.json").write_text("{}")
    extra = tmp_path / "elsewhere" / "other-model"
    extra.mkdir(parents=True)
    (extra / "model_index.json").write_text("{}")
    monkeypatch.setenv("STUDIO_MODEL_PATHS", str(tmp_path / "elsewhere"))
    ckpt = store.models_dir() / "txt2img" / "dream.safetensors"
    ckpt.write_bytes(b"x")
    lora = store.models_dir() / "lora" / "ink.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"x")
    records = [
        {
            "name": p.name,
            "path": str(p),
            "kind": kind,
            "base": "sd1",
            "description": "",
            "format": "safetensors",
            "size": 1,
            "source": "",
            "imported_at": 0.0,
            "details": {},
        }
        for p, kind in ((ckpt, "txt2img"), (lora, "lora"))
    ]
    (store.models_dir() / "imported.json").write_text(json.dumps(records))
    from studio.engine.models import local_pipelines

    found = local_pipelines()
    assert own in found and extra in found and ckpt in found
    assert lora not in found  # a LoRA is not a model to generate with
