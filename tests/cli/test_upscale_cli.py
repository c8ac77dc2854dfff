"""`studio upscale` end to end with a tiny random ESRGAN file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet

from studio.cli import main
from studio.cli.upscale_cmd import upscale_parameters, upscale_studio_json
from studio.core.imageio import load_image, read_text_chunks, save_image
from studio.core.metadata import parse_parameters


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-upscaler")
    torch.manual_seed(0)
    net = RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    path = folder / "tiny-x4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


PARAMS = (
    "a cat in a hat\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 48x32, Model: tiny"
)


@pytest.fixture
def small(tmp_path) -> Path:
    img = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    path = tmp_path / "small.png"
    save_image(path, img, parameters=PARAMS, studio={"prompt": "a cat in a hat", "seed": 42})
    return path


def test_model_upscale_keeps_metadata(model, small, tmp_path, capsys):
    out = tmp_path / "big.png"
    rc = main(["upscale", "--image", str(small), "--model", str(model), "--tile", "32", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    img = load_image(out)
    assert img.shape == (128, 192, 3)  # the model's own scale by default
    chunks = read_text_chunks(out)
    params = parse_parameters(chunks["parameters"])
    assert params["prompt"] == "a cat in a hat" and params["seed"] == 42
    assert chunks["parameters"].startswith(PARAMS + ", Postprocess upscale by: 4")
    assert "Postprocess upscaler: tiny-x4" in chunks["parameters"]
    studio = json.loads(chunks["studio"])
    assert studio["seed"] == 42
    assert studio["upscales"][0]["architecture"] == "ESRGAN"
    assert studio["upscales"][0]["size"] == [192, 128]
    assert "wrote" in capsys.readouterr().err


def test_scale_and_jpeg_output(model, small, tmp_path):
    out = tmp_path / "big.jpg"
    assert main(["upscale", "--image", str(small), "--model", str(model), "--scale", "2", "--out", str(out), "-q"]) == 0  # fmt: skip
    assert load_image(out).shape == (64, 96, 3)
    assert "Postprocess upscale by: 2" in read_text_chunks(out)["parameters"]


def test_lanczos(small, tmp_path):
    out = tmp_path / "l.png"
    assert main(["upscale", "--image", str(small), "--method", "lanczos", "--scale", "3", "--sharpen", "0.5", "--out", str(out)]) == 0  # fmt: skip
    assert load_image(out).shape == (96, 144, 3)
    assert "Postprocess upscaler: Lanczos" in read_text_chunks(out)["parameters"]


def test_no_model_installed_falls_back_to_lanczos(small, tmp_path, capsys):
    out = tmp_path / "l.png"
    assert main(["upscale", "--image", str(small), "--scale", "2", "--out", str(out)]) == 0
    assert "using Lanczos" in capsys.readouterr().err
    assert load_image(out).shape == (64, 96, 3)


def test_rgba_keeps_alpha(model, tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = 200
    src = tmp_path / "a.png"
    save_image(src, rgba)
    out = tmp_path / "b.png"
    assert main(["upscale", "--image", str(src), "--model", str(model), "--out", str(out)]) == 0
    got = load_image(out)
    assert got.shape == (64, 64, 4) and got[0, 0, 3] == 0 and got[32, 32, 3] == 200


def test_info(model, capsys):
    assert main(["upscale", "--model", str(model), "--info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "ESRGAN" and info["scale"] == 4


def test_exit_codes(model, small, tmp_path, capsys):
    out = str(tmp_path / "o.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["upscale", "--image", str(bad), "--model", str(model), "--out", out]) == 2
    assert main(["upscale", "--image", str(small), "--model", str(model), "--out", str(tmp_path / "o.gif")]) == 2  # fmt: skip
    assert main(["upscale", "--image", str(small), "--model", str(model), "--tile", "8", "--out", out]) == 2  # fmt: skip
    assert main(["upscale", "--image", str(small), "--model", str(model), "--scale", "0", "--out", out]) == 2  # fmt: skip
    assert main(["upscale", "--image", str(small), "--out", out, "--model", str(model), "--method", "lanczos"]) == 2  # fmt: skip
    assert main(["upscale", "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert main(["upscale", "--image", str(small), "--model", str(tmp_path / "none.pth"), "--out", out]) == 3  # fmt: skip
    notsr = tmp_path / "notsr.safetensors"
    save_file({"w": torch.zeros(3)}, str(notsr))
    assert main(["upscale", "--image", str(small), "--model", str(notsr), "--out", out]) == 3
    err = capsys.readouterr().err
    assert "not an upscaler" in err and "Traceback" not in err
    assert not Path(out).exists()


def test_parameters_text():
    assert upscale_parameters(None, 2, "X", (10, 20)) == (
        "Postprocess upscale by: 2, Postprocess upscaler: X, Size: 10x20"
    )
    parsed = parse_parameters(upscale_parameters(None, 2, "X", (10, 20)))
    assert parsed.get("prompt", "") == ""
    assert upscale_parameters("just a prompt", 4, "Y") == (
        "just a prompt\nPostprocess upscale by: 4, Postprocess upscaler: Y"
    )
    assert upscale_studio_json("not json", {"a": 1}) == {"upscales": [{"a": 1}]}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_with_130(model, tmp_path):
    """SIGINT during a many-tile upscale stops it between tiles: exit 130, no output."""
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    src = tmp_path / "big.png"
    save_image(src, img)
    out = tmp_path / "out.png"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "upscale", "--image", str(src), "--model", str(model),
         "--tile", "32", "--overlap", "4", "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until tiles are running
        if "] tile " in line:  # the progress line: "upscale [###---] tile 3/64"
            break
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert rc == 130, err
    assert "cancelled" in err and "Traceback" not in err
    assert not out.exists()


def test_catalog_id_and_installed_default(model, small, tmp_path, monkeypatch, capsys):
    """A catalog id resolves to the installed file (tiny random weights stand in for the
    real Real-ESRGAN file here); without --model the installed upscaler is used."""
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    out = tmp_path / "o.png"
    rc = main(["upscale", "--image", str(small), "--model", "realesrgan-x4plus", "--out", str(out)])  # fmt: skip
    assert rc == 3
    assert "not installed" in capsys.readouterr().err
    installed = home / "models" / "upscaler" / "RealESRGAN_x4plus.pth"
    installed.parent.mkdir(parents=True)
    from safetensors.torch import load_file

    state = load_file(str(model))
    torch.save(state, installed)
    rc = main(["upscale", "--image", str(small), "--model", "realesrgan-x4plus", "--scale", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0 and load_image(out).shape == (64, 96, 3)
    assert "Postprocess upscaler: RealESRGAN_x4plus" in read_text_chunks(out)["parameters"]
    rc = main(["upscale", "--image", str(small), "--scale", "2", "--out", str(out)])
    assert rc == 0
    assert "using installed upscaler realesrgan-x4plus" in capsys.readouterr().err
    rc = main(["upscale", "--image", str(small), "--model", "big-lama", "--out", str(out)])
    assert rc == 3
    assert "not an upscaler" in capsys.readouterr().err
