"""The one resolver and the scan of the model folders: Studio's own, the portable folder
beside the program (with its A1111/ComfyUI kind names) and the user's A1111/ComfyUI roots.
Everything on tiny files in temp folders; no network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from studio.core.errors import BadInput, ModelError
from studio.engine.models import (
    KIND_FOLDERS,
    find_lora,
    folder_models,
    list_loras,
    list_models,
    local_pipelines,
    resolve,
    store,
)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A STUDIO_HOME, a portable models folder and an A1111-style user root, all empty."""
    home = tmp_path / "home"
    portable = tmp_path / "portable-models"
    for sub in ("checkpoints", "loras", "upscale_models", "inpaint", "pose", "vae", "controlnet"):
        (portable / sub).mkdir(parents=True)
    a1111 = tmp_path / "webui"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("STUDIO_MODEL_PATHS", str(a1111))
    a1111.mkdir()
    monkeypatch.setattr("studio.core.paths.portable_models_dir", lambda: portable)
    return type("Roots", (), {"home": home, "portable": portable, "a1111": a1111})


def touch(path: Path, data: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def diffusers_folder(path: Path, in_channels: int = 4, cls: str | None = None) -> Path:
    path.mkdir(parents=True)
    if cls is None:
        (path / "model_index.json").write_text("{}")
        (path / "unet").mkdir()
        (path / "unet" / "config.json").write_text(json.dumps({"in_channels": in_channels}))
    else:
        (path / "config.json").write_text(json.dumps({"_class_name": cls}))
        touch(path / "diffusion_pytorch_model.safetensors")
    return path


def test_every_catalog_kind_has_folders_and_the_portable_names_are_the_shipped_ones():
    from studio.core.catalog import KINDS
    from studio.core.paths import MODEL_FOLDERS

    for kind in KINDS:
        if kind == "edit":  # edit-by-instruction models are diffusers folders in checkpoints/
            continue
        assert kind in KIND_FOLDERS, kind
        assert KIND_FOLDERS[kind][0] in MODEL_FOLDERS, kind


def test_a_file_dropped_in_the_portable_folder_resolves_lists_and_is_installed(roots):
    up = touch(roots.portable / "upscale_models" / "4x-UltraSharp.pth")
    assert resolve("4x-UltraSharp", "upscaler") == up  # by stem
    assert resolve("4x-UltraSharp.pth", "upscaler") == up  # by file name
    choices = list_models("upscaler")
    assert [c.path for c in choices] == [up] and choices[0].source == "folder"
    assert choices[0].ref == str(up)
    # a catalog upscaler's file dropped there counts as that catalog model installed
    real = touch(roots.portable / "upscale_models" / "RealESRGAN_x4plus.pth")
    from studio.core.catalog import load_catalog

    assert store.find_installed(load_catalog().get("realesrgan-x4plus")) == real
    refs = [c.ref for c in list_models("upscaler")]
    assert refs == ["realesrgan-x4plus", str(up)]  # catalog first, the file once
    assert resolve("realesrgan-x4plus", "upscaler") == real


def test_a1111_and_comfyui_folder_names_in_user_roots(roots, tmp_path, monkeypatch):
    ckpt = touch(roots.a1111 / "models" / "Stable-diffusion" / "dream.safetensors")
    inp = touch(roots.a1111 / "models" / "Stable-diffusion" / "dream-inpainting.safetensors")
    lora = touch(roots.a1111 / "models" / "Lora" / "style" / "ink.safetensors")  # sub-folder
    esr = touch(roots.a1111 / "models" / "ESRGAN" / "4x_foolhardy.pth")
    cn = diffusers_folder(roots.a1111 / "models" / "ControlNet" / "cn-canny", cls="ControlNetModel")
    comfy = tmp_path / "ComfyUI" / "models"
    vae = touch(comfy / "vae" / "sdxl_vae.safetensors")
    tae = touch(comfy / "vae_approx" / "taesd_decoder.safetensors")
    monkeypatch.setenv("STUDIO_MODEL_PATHS", f"{roots.a1111}{__import__('os').pathsep}{comfy}")

    assert [m.path for m in folder_models("txt2img")] == [ckpt]
    assert [m.path for m in folder_models("inpaint")] == [inp]
    assert list_loras() == [lora] and find_lora("ink") == lora
    assert resolve("4x_foolhardy", "upscaler") == esr
    assert [m.path for m in folder_models("controlnet-canny")] == [cn]
    assert folder_models("controlnet-pose") == []  # its name says canny
    assert resolve("cn-canny", "controlnet") == cn
    assert [m.path for m in folder_models("vae")] == [vae]
    assert [m.path for m in folder_models("preview-decoder")] == [tae]
    assert set(local_pipelines()) == {ckpt, inp}


def test_inpaint_folder_holds_lama_and_inpainting_checkpoints(roots):
    lama = touch(roots.portable / "inpaint" / "big-lama.pt")
    sd_inp = touch(roots.portable / "inpaint" / "sd15-fill.safetensors")
    folder = diffusers_folder(roots.portable / "checkpoints" / "my-inpainter", in_channels=9)
    assert [m.path for m in folder_models("lama")] == [lama]
    # checkpoints/ first: where Studio files an inpainting model, then the portable inpaint/.
    assert [m.path for m in folder_models("inpaint")] == [folder, sd_inp]
    assert folder_models("txt2img") == []  # a 9-channel UNet is not txt2img

    from studio.engine.restore.lama import find_lama

    assert find_lama() == lama


def test_pose_folder(roots):
    pair = roots.portable / "pose" / "dwpose"
    touch(pair / "yolox_l.onnx")
    touch(pair / "dw-ll_ucoco_384.onnx")
    body = touch(roots.portable / "pose" / "body_pose_model.pth")
    touch(roots.portable / "pose" / "hand_pose_model.pth")  # an accessory, not a detector
    assert [m.path for m in folder_models("pose-detector")] == [body, pair]
    from studio.engine.vision.pose_detect import find_pose_model

    assert find_pose_model("openpose") == ("openpose", body)
    assert find_pose_model("dwpose") == ("dwpose", pair)


def test_imported_upscaler_and_lora_appear_in_lists_at_once(roots):
    records = []
    for name, kind in (("my-up.pth", "upscaler"), ("brush.safetensors", "lora")):
        p = touch(store.kind_dir(kind) / name)
        records.append(
            {
                "name": name,
                "path": str(p),
                "kind": kind,
                "base": "sd1" if kind == "lora" else None,
                "description": "RRDBNet 4x" if kind == "upscaler" else "LoRA for SD 1.x",
                "format": "pickle",
                "size": 7,
                "source": "",
                "imported_at": 0.0,
                "details": {},
            }
        )
    (store.models_dir() / "imported.json").write_text(json.dumps(records))
    ups = list_models("upscaler")
    assert [c.source for c in ups] == ["imported"] and ups[0].label == "my-up (RRDBNet 4x)"
    loras = list_models("lora")
    assert [c.path.name for c in loras] == ["brush.safetensors"] and loras[0].base == "sd1"
    # a file added now shows up on the next call (nothing cached)
    later = touch(roots.portable / "loras" / "later.safetensors")
    assert later in [c.path for c in list_models("lora")]


def test_list_models_marks_missing_catalog_models(roots):
    choices = list_models("upscaler", include_missing=True)
    assert choices and all(c.source == "catalog" and not c.installed for c in choices)
    assert list_models("upscaler") == []


def test_resolve_errors(roots, tmp_path):
    with pytest.raises(BadInput, match="no upscaler model given"):
        resolve("", "upscaler")
    with pytest.raises(ModelError, match="is a txt2img model, not an upscaler model"):
        resolve("sd-turbo", "upscaler")
    with pytest.raises(ModelError, match=r"not installed: run `studio models download sd-turbo`"):
        resolve("sd-turbo", "txt2img")
    with pytest.raises(ModelError, match="no such model file"):
        resolve(str(tmp_path / "gone.safetensors"), "upscaler")
    with pytest.raises(ModelError, match="no such model file"):
        resolve("gone.pth", "upscaler")
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        resolve("someone/some-model", "txt2img")
    with pytest.raises(ModelError, match="did you mean realesrgan-x4plus"):
        resolve("realesrgan-x4plu", "upscaler")
    f = touch(tmp_path / "x.safetensors")
    assert resolve(str(f), "lora") == f.resolve()


def test_resolve_repo_id_from_the_hf_cache(roots, tmp_path):
    from tests.engine.models.test_store import put

    snap = put(tmp_path / "hub", "tester/tiny", {"model_index.json": b"{}"})
    assert resolve("tester/tiny", "txt2img") == snap


def test_no_import_cycles_in_the_engine():
    """No module of studio.engine imports (at the top or inside a function) a module that
    imports it back, directly or through others."""
    import ast

    root = Path(__file__).resolve().parents[3] / "studio"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        mod = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        mod = mod.removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = {d for d in deps if d.startswith("studio.engine")}
    graph = {m: {d for d in ds if d in graph and d != m} for m, ds in graph.items()}
    # packages' faces import lazily by name; their edges to submodules are not circles
    graph = {m: ds for m, ds in graph.items() if not (root.parent / m.replace(".", "/")).is_dir()}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    return [*trail, start]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*trail, dep]))
        return None

    cycles = {m: c for m in graph if m.startswith("studio.engine") and (c := cycle_from(m))}
    mine = (
        "studio.engine.models",
        "studio.engine.restore",
        "studio.engine.vision",
        "studio.engine.jobs",
    )
    ours = {m: c for m, c in cycles.items() if m.startswith(mine)}
    assert ours == {}, ours
    print({m: " -> ".join(c) for m, c in cycles.items()}, file=sys.stderr)


def test_studio_models_list_shows_dropped_files(roots, capsys):
    from studio.cli import main

    lora = touch(roots.portable / "loras" / "watercolor.safetensors")
    touch(roots.portable / "upscale_models" / "RealESRGAN_x4plus.pth")  # a catalog model
    capsys.readouterr()
    assert main(["models", "list", "--json", "--kind", "lora"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["found"] == [{"name": "watercolor", "path": str(lora), "kind": "lora"}]
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "In the model folders:" in out and "watercolor  [lora]" in out
    # the catalog model's file is listed as the catalog model, installed, not as a loose file
    assert "RealESRGAN_x4plus.pth  [" not in out
    line = next(x for x in out.splitlines() if x.startswith("realesrgan-x4plus "))
    assert "installed" in line
