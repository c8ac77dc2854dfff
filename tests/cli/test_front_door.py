"""What a new user sees on a fresh install when something is missing: a bad or
missing model is exit 3, a missing optional extra is exit 2 naming the extra, and each is
one line on stderr, never a traceback. An empty STUDIO_HOME and HF cache, nothing
downloaded; the issue's own command also runs in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    env = dict(STUDIO_HOME=str(h), HF_HUB_OFFLINE="1", STUDIO_OFFLINE="1", HF_HOME=str(h / "hf"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STUDIO_DEBUG", raising=False)
    monkeypatch.chdir(h)
    return h


@pytest.fixture
def image(tmp_path) -> Path:
    from studio.core.imageio import save_image

    path = tmp_path / "photo.png"
    save_image(path, np.full((64, 48, 3), 120, np.uint8))
    return path


@dataclass
class Result:
    returncode: int
    stderr: str


@pytest.fixture
def studio(home, capsys, monkeypatch):
    """Run the CLI in-process (main() is what the console script calls); ``without`` makes
    packages unimportable, as if their extra were not installed."""
    from studio.cli import main

    def run(*argv: str, without: tuple[str, ...] = ()) -> Result:
        for name in without:
            monkeypatch.setitem(sys.modules, name, None)
        capsys.readouterr()
        rc = main(list(argv))
        return Result(rc, capsys.readouterr().err)

    return run


def _one_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("studio: error: ")
    return lines[0]


def test_the_issue_command_as_a_user_runs_it(home, image, tmp_path):
    """`studio control pose --model MISSING` in its own process: exit 3, one line."""
    out = tmp_path / "p.png"
    r = subprocess.run(
        [sys.executable, "-m", "studio", "control", "pose", "--image", str(image), "--model", "MISSING", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    line = _one_line(r)
    assert "'MISSING' not found" in line and "studio models download openpose" in line
    assert not out.exists()


def test_pose_bad_model_file_is_exit_3_one_line(studio, image, tmp_path):
    bad = tmp_path / "body_pose_model.pth"
    bad.write_bytes(os.urandom(4096))
    r = studio("control", "pose", "--image", str(image), "--model", str(bad), "--out", "p.png")
    assert r.returncode == 3, r.stderr
    assert "body_pose_model.pth" in _one_line(r)


def _fake_dwpose(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"):
        (folder / name).write_bytes(b"\x08\x07")  # never read: onnxruntime is missing first
    return folder


def test_dwpose_without_the_pose_extra_names_the_extra(studio, image, tmp_path):
    folder = _fake_dwpose(tmp_path / "dwpose")
    r = studio(
        "control", "pose", "--image", str(image), "--model", str(folder), "--out", "p.png",
        without=("onnxruntime",),
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    line = _one_line(r)
    assert 'pip install "studio[pose]"' in line and "onnxruntime" in line


def test_installed_dwpose_without_the_extra_and_no_openpose(studio, home, image):
    """The default detector: DWPose is in the models folder but onnxruntime is not there."""
    _fake_dwpose(home / "models" / "pose-detector" / "dwpose")
    r = studio("control", "pose", "--image", str(image), "--out", "p.png", without=("onnxruntime",))
    assert r.returncode == 2, r.stderr
    assert 'pip install "studio[pose]"' in _one_line(r)


def test_template_needs_no_model_and_no_extra(studio, home):
    r = studio(
        "control", "pose", "--template", "--size", "64x96", "--out", "t.png",
        without=("onnxruntime",),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (home / "t.png").is_file() and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--model", "MISSING", "--prompt", "a cat", "--out", "o.png"],
        ["generate", "--model", "sd15", "--prompt", "a cat", "--out", "o.png"],
        ["upscale", "--image", "{image}", "--model", "MISSING.pth", "--out", "o.png"],
        ["upscale", "--image", "{image}", "--model", "realesrgan-x4plus", "--out", "o.png"],
        [
            "inpaint",
            "--image",
            "{image}",
            "--mask",
            "{image}",
            "--method",
            "lama",
            "--lama",
            "MISSING.pt",
            "--out",
            "o.png",
        ],  # fmt: skip
        [
            "inpaint",
            "--image",
            "{image}",
            "--mask",
            "{image}",
            "--method",
            "MISSING",
            "--prompt",
            "x",
            "--out",
            "o.png",
        ],  # fmt: skip
    ],
    ids=[
        "generate-missing",
        "generate-not-downloaded",
        "upscale-missing",
        "upscale-not-downloaded",
        "lama-missing",
        "inpaint-model-missing",
    ],  # fmt: skip
)
def test_missing_models_are_exit_3_one_line(studio, home, image, argv):
    r = studio(*[a.format(image=image) for a in argv])
    assert r.returncode == 3, r.stderr
    _one_line(r)
    assert not (home / "o.png").exists()


@pytest.mark.parametrize("command", ["generate", "upscale"])
def test_bad_model_file_is_one_line(studio, image, tmp_path, command):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    extra = ["--prompt", "a"] if command == "generate" else ["--image", str(image)]
    r = studio(command, "--model", str(bad), *extra, "--out", "o.png")
    assert r.returncode in (2, 3), r.stderr  # 2: not a model file at all; 3: not loadable
    _one_line(r)
