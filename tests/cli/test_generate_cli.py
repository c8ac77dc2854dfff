"""``studio generate`` end to end: in-process through studio.cli.main and as a real console
script (subprocess), exit codes, one-line errors, previews on disk, Ctrl+C, and layering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from studio.cli import main
from studio.core.imageio import load_image, read_text_chunks, save_image
from studio.core.metadata import read_metadata


def gen(tiny_models, out: Path, *extra: str, model=None) -> list[str]:
    return [
        "generate",
        "--model",
        str(model or tiny_models.sd),
        "--prompt",
        "a cat",
        "--steps",
        "2",
        "--size",
        "64x64",
        "--seed",
        "5",
        "--out",
        str(out),
        *extra,
    ]


def test_txt2img_writes_png_with_both_metadata_chunks(tiny_models, tmp_path, capsys):
    out = tmp_path / "a.png"
    assert main(gen(tiny_models, out, "--negative", "blurry", "--guidance", "5")) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert load_image(out).shape == (64, 64, 3)
    chunks = read_text_chunks(out)
    assert chunks["parameters"].startswith("a cat\nNegative prompt: blurry\nSteps: 2")
    assert "Seed: 5" in chunks["parameters"] and "CFG scale: 5" in chunks["parameters"]
    info = read_metadata(out)
    assert info["source"] == "studio" and info["request"]["guidance"] == 5.0


def test_count_naming_and_seeds(tiny_models, tmp_path, capsys):
    out = tmp_path / "b.png"
    assert main(gen(tiny_models, out, "--count", "3")) == 0
    paths = [tmp_path / "b.png", tmp_path / "b-1.png", tmp_path / "b-2.png"]
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    assert [read_metadata(p)["seed"] for p in paths] == [5, 6, 7]
    # image k reproduces alone with seed 5+k
    single = tmp_path / "c.png"
    args = gen(tiny_models, single)
    args[args.index("--seed") + 1] = "6"
    assert main(args) == 0
    assert np.array_equal(load_image(single), load_image(paths[1]))


@pytest.mark.parametrize("mode, shape", [("latent", (8, 8, 3)), ("full", (64, 64, 3))])
def test_preview_dir_writes_every_step(tiny_models, tmp_path, mode, shape):
    prev = tmp_path / "prev"
    out = tmp_path / "p.png"
    args = gen(
        tiny_models, out, "--preview-dir", str(prev), "--preview", mode, "--scheduler", "Euler a"
    )
    assert main(args) == 0
    files = sorted(p.name for p in prev.iterdir())
    assert files == ["step_001.png", "step_002.png"]
    assert load_image(prev / "step_002.png").shape == shape


def test_img2img_controlnet_and_lora(tiny_models, tmp_path, photos):
    from studio.engine.fixtures.tiny_models import build_tiny_lora

    lora = build_tiny_lora(tiny_models.sd, tmp_path / "detail.safetensors")
    edges = tmp_path / "edges.png"
    save_image(edges, (np.random.default_rng(0).random((64, 64, 3)) > 0.8).astype(np.uint8) * 255)
    out = tmp_path / "i.png"
    args = gen(
        tiny_models, out,
        "--init", str(photos.chelsea), "--strength", "0.6", "--steps", "4",
        "--control", f"canny:{edges}:0.8", "--controlnet", str(tiny_models.controlnet),
        "--lora", f"{lora}:0.7",
    )  # fmt: skip
    assert main(args) == 0
    info = read_metadata(out)
    assert info["denoising_strength"] == 0.6
    assert info["loras"] == [{"name": "detail", "weight": 0.7}]
    assert info["controlnets"][0]["weight"] == 0.8
    assert "<lora:detail:0.7>" in info["parameters"]


def test_init_and_mask_inpaint_through_the_cli(tiny_models, tmp_path, photos):
    mask = np.zeros((300, 451), np.uint8)
    mask[100:200, 150:300] = 255
    save_image(tmp_path / "mask.png", mask)
    out = tmp_path / "inpainted.png"
    args = gen(tiny_models, out, "--init", str(photos.chelsea), "--mask",
               str(tmp_path / "mask.png"), model=tiny_models.sd_inpaint)  # fmt: skip
    assert main(args) == 0
    result = load_image(out)
    original = load_image(photos.chelsea, mode="RGB")
    assert result.shape[:2] == original.shape[:2]
    assert np.array_equal(result[:50], original[:50])  # far from the mask: untouched
    assert not np.array_equal(result[120:180, 180:270], original[120:180, 180:270])


def test_init_sets_default_size(tiny_models, tmp_path, photos):
    out = tmp_path / "s.png"
    args = [a for a in gen(tiny_models, out, "--init", str(photos.chelsea)) if a != "64x64"]
    args.remove("--size")
    assert main(args) == 0
    assert load_image(out).shape == (296, 448, 3)  # 451x300 floored to multiples of 8


@pytest.mark.parametrize(
    "extra, code, words",
    [
        (["--size", "65x64"], 2, "multiple of 8"),
        (["--size", "big"], 2, "WIDTHxHEIGHT"),
        (["--scheduler", "Fancy"], 2, "Unknown scheduler"),
        (["--init", "/no/such.png"], 2, "no such file"),
        (["--init", "CORRUPT"], 2, "corrupt.png: "),
        (["--mask", "CORRUPT"], 2, "--mask needs --init"),
        (["--lora", "/no/lora.safetensors"], 3, "no such LoRA file"),
        (["--control", "canny"], 2, "0 --controlnet"),
        (["--control", "canny:/no.png", "--controlnet", "x"], 2, "no such file"),
        (["--count", "0"], 2, "count"),
        (["--steps", "x"], 2, "invalid int"),
        (["--preview", "fancy"], 2, "invalid choice"),
        (["--model", "someone/missing-model"], 3, "studio models download someone/missing-model"),
        (["--model", "./missing-folder"], 3, "no such model file"),
        (["--model", "/gone/model.safetensors"], 3, "no such model file"),
        (["--model", "BADFILE"], 3, "not a readable"),
    ],
)
def test_bad_arguments_exit_with_one_line(tiny_models, tmp_path, capsys, extra, code, words):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    badfile = tmp_path / "bad.safetensors"
    badfile.write_bytes(b"nope")
    extra = [
        str(corrupt) if e == "CORRUPT" else str(badfile) if e == "BADFILE" else e for e in extra
    ]
    args = gen(tiny_models, tmp_path / "o.png")
    if "--model" in extra:
        i = args.index("--model")
        del args[i : i + 2]
    try:
        rc = main(args + extra)
    except SystemExit as e:  # argparse errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == code
    assert words in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_missing_output_folder(tiny_models, tmp_path, capsys):
    assert main(gen(tiny_models, tmp_path / "nope" / "o.png")) == 2
    assert "does not exist" in capsys.readouterr().err


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def test_console_script_subprocess(tiny_models, tmp_path):
    exe = Path(sys.executable).with_name("studio")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "studio"]
    out = tmp_path / "sub.png"
    proc = subprocess.run(
        cmd + gen(tiny_models, out), capture_output=True, text=True, env=_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert proc.stderr.strip() == ""  # no library chatter, no progress bar when not a TTY
    assert read_metadata(out)["seed"] == 5


def test_ctrl_c_cancels_and_exits_130(tiny_models, tmp_path):
    prev = tmp_path / "prev"
    out = tmp_path / "cancel.png"
    args = gen(tiny_models, out, "--preview-dir", str(prev), "--scheduler", "Euler a")
    args[args.index("--steps") + 1] = "500"
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.time() + 240
        while not (prev / "step_002.png").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert stderr.strip() == "studio: error: cancelled"
    assert not out.exists()
    assert len(list(prev.iterdir())) < 500


def test_layering_imports():
    code = (
        "import sys, studio.engine.jobs.runner, studio.core.imageio, studio.core.metadata;"
        "assert 'PySide6' not in sys.modules, 'PySide6 imported';"
        "import studio.engine.jobs.requests, studio.engine.jobs.events;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    code2 = (
        "import sys, studio.cli.generate_cmd, studio.cli.info_cmd;"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code2], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_windowed_app_without_stderr(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    out = tmp_path / "w.png"
    assert main(gen(tiny_models, out, "--preview", "taesd")) == 0  # taesd fallback message too
    assert out.exists()


def test_turbo_defaults_from_catalog_and_name(tmp_path):
    from studio.engine.diffusion.shared.loader import recommended_settings

    rec = recommended_settings("sd-turbo")
    assert rec["steps"] == 1 and rec["guidance"] == 0.0
    assert recommended_settings(str(tmp_path / "my-sdxl-turbo.safetensors")) == {
        "steps": 1,
        "guidance": 0.0,
    }
    assert recommended_settings(str(tmp_path / "plain")) == {}


def test_hires_flag_runs_a1111s_second_pass_and_writes_its_fields(tiny_models, tmp_path):
    out = tmp_path / "hr.png"
    args = gen(tiny_models, out, "--scheduler", "Euler", "--hires", "2:2:0.5:Latent (bicubic)")
    assert main(args) == 0
    assert load_image(out).shape[:2] == (128, 128)
    meta = read_metadata(out)
    assert (meta["hires_upscale"], meta["hires_steps"], meta["denoising_strength"]) == (2.0, 2, 0.5)
    assert meta["hires_upscaler"] == "Latent (bicubic)"


@pytest.mark.parametrize("value", ["two", "2:x", "9"])
def test_a_bad_hires_flag_is_exit_2(tiny_models, tmp_path, capsys, value):
    assert main(gen(tiny_models, tmp_path / "x.png", "--hires", value)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("studio: error:") and "hires" in err.lower() and "\n" not in err
    assert not (tmp_path / "x.png").exists()
