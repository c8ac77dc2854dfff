"""`studio inpaint` (and `studio generate --init --mask`) end to end, in process, plus a real
Ctrl+C on a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from studio.cli import main
from studio.core import masks
from studio.core.imageio import load_image, read_text_chunks, save_image


@pytest.fixture
def small(photos, tmp_path):
    """A 150x100 photo and a mask file for it."""
    img = masks.resize(load_image(photos.chelsea), (150, 100))
    mask = np.zeros((100, 150), np.uint8)
    mask[30:60, 60:90] = 255
    ip, mp = tmp_path / "photo.png", tmp_path / "mask.png"
    save_image(ip, img)
    save_image(mp, mask)
    return img, mask, ip, mp


def _outside_box_equal(out, img, mask, padding):
    x, y, w, h = masks.crop_box(masks.bbox(mask), (img.shape[1], img.shape[0]), padding)
    inside = np.zeros(mask.shape, bool)
    inside[y : y + h, x : x + w] = True
    return np.array_equal(out[~inside], img[~inside])


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_classical(small, tmp_path, capsys, method):
    img, mask, ip, mp = small
    out = tmp_path / "out.png"
    rc = main(["inpaint", "--image", str(ip), "--mask", str(mp), "--method", method, "--padding", "16", "--out", str(out)])  # fmt: skip
    assert rc == 0
    got = load_image(out)
    assert _outside_box_equal(got, img, mask, 16)
    assert (got[mask > 0] != img[mask > 0]).any()
    chunks = read_text_chunks(out)
    assert f"Inpaint method: {method}" in chunks["parameters"]
    assert json.loads(chunks["studio"])["mask_padding"] == 16
    assert str(out) in capsys.readouterr().out


def test_mask_size_mismatch_exits_2(small, tmp_path, capsys):
    _, _, ip, _ = small
    wrong = tmp_path / "wrong.png"
    save_image(wrong, np.zeros((10, 12), np.uint8))
    out = tmp_path / "out.png"
    rc = main(["inpaint", "--image", str(ip), "--mask", str(wrong), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the mask is 12x10 but the image is 150x100" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--mask is required"),
        (["--mask", "M", "--outpaint", "left=8"], "not both"),
        (["--outpaint", "left=x"], "whole pixels"),
        (["--mask", "M", "--padding", "-1"], "padding"),
    ],
)
def test_usage_errors_exit_2(small, tmp_path, capsys, extra, message):
    _, _, ip, mp = small
    extra = [str(mp) if a == "M" else a for a in extra]
    rc = main(["inpaint", "--image", str(ip), *extra, "--method", "telea", "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_lama_not_installed_exits_3(small, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("STUDIO_LAMA", raising=False)
    _, _, ip, mp = small
    rc = main(["inpaint", "--image", str(ip), "--mask", str(mp), "--method", "lama", "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert rc == 3
    err = capsys.readouterr().err
    assert "LaMa is not installed" in err and "studio models download big-lama" in err
    assert "--method telea" in err
    # auto falls back to Telea
    rc = main(["inpaint", "--image", str(ip), "--mask", str(mp), "--out", str(tmp_path / "o.png")])
    assert rc == 0 and "telea" in capsys.readouterr().out


def test_diffusion_model_with_previews(small, tmp_path, tiny_models):
    img, mask, ip, mp = small
    out, prev = tmp_path / "out.png", tmp_path / "previews"
    rc = main(["inpaint", "--image", str(ip), "--mask", str(mp), "--method", str(tiny_models.sd_inpaint), "--prompt", "a cat", "--steps", "2", "--padding", "8", "--seed", "7", "--preview-dir", str(prev), "--out", str(out)])  # fmt: skip
    assert rc == 0
    got = load_image(out)
    assert _outside_box_equal(got, img, mask, 8)
    assert sorted(p.name for p in prev.iterdir())[:2] == ["step_001.png", "step_002.png"]
    params = read_text_chunks(out)["parameters"]
    assert (
        params.startswith("a cat\n")
        and "Seed: 7" in params
        and "Inpaint method: diffusion" in params
    )


def test_missing_model_exits_3(small, tmp_path, capsys):
    _, _, ip, mp = small
    rc = main(["inpaint", "--image", str(ip), "--mask", str(mp), "--method", "nobody/no-model", "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert rc == 3
    assert "nobody/no-model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec, size", [("left=32,right=16", (198, 100)), ("1:1", (150, 150)), ("all=8", (166, 116))]
)
def test_outpaint(small, tmp_path, spec, size):
    img, _, ip, _ = small
    out = tmp_path / "out.png"
    rc = main(["inpaint", "--image", str(ip), "--outpaint", spec, "--overlap", "8", "--method", "telea", "--out", str(out)])  # fmt: skip
    assert rc == 0
    got = load_image(out)
    assert (got.shape[1], got.shape[0]) == size


def test_generate_init_mask_uses_inpainting(small, tmp_path, tiny_models):
    pytest.importorskip("studio.cli.generate_cmd")
    img, mask, ip, mp = small
    out = tmp_path / "gen.png"
    rc = main(["generate", "--model", str(tiny_models.sd_inpaint), "--prompt", "x", "--init", str(ip), "--mask", str(mp), "--strength", "1", "--steps", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0
    got = load_image(out)
    assert got.shape == img.shape
    assert _outside_box_equal(got, img, mask, 32)


def test_ctrl_c_cancels_with_exit_130(small, tmp_path, tiny_models):
    """A real SIGINT while the job runs: exit 130, one line, no output file."""
    _, _, ip, mp = small
    out, prev = tmp_path / "out.png", tmp_path / "prev"
    cmd = [sys.executable, "-m", "studio", "inpaint", "--image", str(ip), "--mask", str(mp), "--method", str(tiny_models.sd), "--steps", "500", "--padding", "8", "--preview-dir", str(prev), "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    deadline = time.monotonic() + 120
    while not (prev / "step_001.png").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no preview within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelled" in err.lower() and "Traceback" not in err
    assert not out.exists()
    assert len(list(prev.iterdir())) < 500
