"""The whole bad-input corpus through every CLI option that takes a file.

Each run goes through ``studio.cli.main`` in-process (fast); a few also run as a real
``python -m studio`` subprocess. A refused file must give the documented exit code (2 bad
input, 3 model file), exactly one line on stderr, no traceback, and no output file. Odd but
valid images (corpus.VALID_IMAGES) must work where the option reads an image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main

from .corpus import BAD, PWNED_MARKER, VALID_IMAGES, all_files, assert_one_clear_line

FILES = [p.name for p in all_files()]
REFUSED = [n for n in FILES if n not in VALID_IMAGES]
VALID = sorted(VALID_IMAGES)


@pytest.fixture(autouse=True)
def _no_pickle_ran():
    PWNED_MARKER.unlink(missing_ok=True)
    yield
    assert not PWNED_MARKER.exists(), "a malicious pickle was executed"


@pytest.fixture(scope="module")
def good_png(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("good") / "good.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(p)
    return p


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_refused(rc: int, err: str, out_file: Path | None, code: int, name: str) -> None:
    assert rc == code, f"{name}: exit {rc}, want {code}; stderr: {err!r}"
    assert_one_clear_line(err)
    assert err.startswith("studio: error:"), err
    if out_file is not None:
        assert not out_file.exists(), f"{name}: output written although the input was refused"


def _same_size(ref: Path, dst: Path, white: bool) -> Path:
    """An image (or a white mask) of the normalised size of ``ref``."""
    from studio.core.imageio import load_image

    h, w = load_image(ref).shape[:2]
    arr = np.full((h, w, 3), 255 if white else 90, np.uint8)
    if white and h > 2 and w > 2:
        arr[:] = 0
        arr[h // 4 : h // 2 + 1, w // 4 : w // 2 + 1] = 255
    Image.fromarray(arr).save(dst)
    return dst


# -- options reading an image ----------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_upscale_image(name, tmp_path, capsys):
    out = tmp_path / "o.png"
    rc, _, err = run_cli(
        capsys,
        ["upscale", "--image", BAD / name, "--method", "lanczos", "--scale", "2", "--out", out],
    )
    if name in VALID_IMAGES:
        h, w, _ = VALID_IMAGES[name]
        assert rc == 0, err
        assert Image.open(out).size == (2 * w, 2 * h)
    else:
        assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_control_canny_image(name, tmp_path, capsys):
    out = tmp_path / "o.png"
    rc, _, err = run_cli(capsys, ["control", "canny", "--image", BAD / name, "--out", out])
    if name in VALID_IMAGES:
        h, w, _ = VALID_IMAGES[name]
        assert rc == 0, err
        assert Image.open(out).size == (w, h)
    else:
        assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_control_pose_template_image(name, tmp_path, capsys):
    out = tmp_path / "o.png"
    argv = ["control", "pose", "--template", "--image", BAD / name, "--out", out]
    rc, _, err = run_cli(capsys, argv)
    if name in VALID_IMAGES:
        h, w, _ = VALID_IMAGES[name]
        assert rc == 0, err
        assert Image.open(out).size == (w, h)
    else:
        assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", REFUSED)
def test_control_pose_detect_image(name, tmp_path, capsys):
    """The image is read (and refused) before any detector model is looked for."""
    out = tmp_path / "o.png"
    rc, _, err = run_cli(capsys, ["control", "pose", "--image", BAD / name, "--out", out])
    assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_control_pose_from_json(name, tmp_path, capsys):
    """No corpus file is OpenPose JSON: every one is refused in one line."""
    out = tmp_path / "o.png"
    rc, _, err = run_cli(capsys, ["control", "pose", "--from-json", BAD / name, "--out", out])
    assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_info(name, capsys):
    rc, out, err = run_cli(capsys, ["info", BAD / name])
    if name in VALID_IMAGES:
        assert rc == 0, err
        assert isinstance(json.loads(out), dict)  # metadata (none here) as JSON
    else:
        assert_refused(rc, err, None, 2, name)
        assert out == ""


@pytest.mark.parametrize("name", FILES)
def test_inpaint_image(name, tmp_path, capsys):
    out = tmp_path / "o.png"
    mask = _same_size(BAD / name, tmp_path / "m.png", True) if name in VALID_IMAGES else None
    argv = ["inpaint", "--image", BAD / name, "--method", "telea", "--out", out]
    rc, _, err = run_cli(capsys, argv + ["--mask", mask or BAD / "one_pixel.png"])
    if name in VALID_IMAGES:
        h, w, _ = VALID_IMAGES[name]
        assert rc == 0, err
        assert Image.open(out).size == (w, h)
    else:
        assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_inpaint_mask(name, tmp_path, capsys):
    out = tmp_path / "o.png"
    image = (
        _same_size(BAD / name, tmp_path / "i.png", False)
        if name in VALID_IMAGES
        else BAD / "one_pixel.png"
    )
    argv = ["inpaint", "--image", image, "--mask", BAD / name, "--method", "telea", "--out", out]
    rc, _, err = run_cli(capsys, argv)
    if name in VALID_IMAGES:
        assert rc == 0, err
        assert out.exists()
    else:
        assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_generate_init(name, tmp_path, capsys, tiny_models):
    out = tmp_path / "o.png"
    argv = ["generate", "--model", tiny_models.sd, "--prompt", "x", "--steps", "2"]
    argv += ["--size", "64x64", "--strength", "0.5", "--init", BAD / name, "--out", out]
    rc, _, err = run_cli(capsys, argv)
    if name in VALID_IMAGES:
        assert rc == 0, err
        assert Image.open(out).size == (64, 64)
    else:
        assert_refused(rc, err, out, 2, name)


@pytest.mark.parametrize("name", FILES)
def test_generate_mask(name, tmp_path, capsys, tiny_models, good_png):
    """Broken masks are refused; the valid oddities are 48x64 or 1x1, not the 64x64 of the
    init image, so they are refused too, in one line naming the size."""
    out = tmp_path / "o.png"
    argv = ["generate", "--model", tiny_models.sd, "--prompt", "x", "--steps", "2"]
    argv += ["--init", good_png, "--mask", BAD / name, "--out", out]
    rc, _, err = run_cli(capsys, argv)
    assert_refused(rc, err, out, 2, name)
    if name in VALID_IMAGES:
        assert "64x64" in err or "size" in err, err


@pytest.mark.parametrize("name", FILES)
def test_generate_control(name, tmp_path, capsys, tiny_models):
    out = tmp_path / "o.png"
    argv = ["generate", "--model", tiny_models.sd, "--prompt", "x", "--steps", "2"]
    argv += ["--size", "64x64", "--controlnet", tiny_models.controlnet]
    argv += ["--control", f"canny:{BAD / name}", "--out", out]
    rc, _, err = run_cli(capsys, argv)
    if name in VALID_IMAGES:
        assert rc == 0, err
        assert Image.open(out).size == (64, 64)
    else:
        assert_refused(rc, err, out, 2, name)


# -- options reading a model file ------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_upscale_model(name, tmp_path, capsys, good_png):
    out = tmp_path / "o.png"
    rc, _, err = run_cli(
        capsys, ["upscale", "--image", good_png, "--model", BAD / name, "--out", out]
    )
    assert_refused(rc, err, out, 3, name)


@pytest.mark.parametrize("name", FILES)
def test_upscale_model_info(name, capsys):
    rc, out, err = run_cli(capsys, ["upscale", "--info", "--model", BAD / name])
    assert_refused(rc, err, None, 3, name)


@pytest.mark.parametrize("name", FILES)
def test_inpaint_lama_model(name, tmp_path, capsys, good_png):
    out = tmp_path / "o.png"
    argv = ["inpaint", "--image", good_png, "--mask", good_png, "--lama", BAD / name]
    rc, _, err = run_cli(capsys, argv + ["--out", out])
    assert_refused(rc, err, out, 3, name)


@pytest.mark.parametrize("name", FILES)
def test_generate_model_file(name, tmp_path, capsys):
    out = tmp_path / "o.png"
    argv = ["generate", "--model", BAD / name, "--prompt", "x", "--steps", "2"]
    rc, _, err = run_cli(capsys, argv + ["--size", "64x64", "--out", out])
    assert_refused(rc, err, out, 3, name)


@pytest.mark.parametrize("name", FILES)
def test_generate_lora_file(name, tmp_path, capsys, tiny_models):
    out = tmp_path / "o.png"
    argv = ["generate", "--model", tiny_models.sd, "--prompt", "x", "--steps", "2"]
    rc, _, err = run_cli(capsys, argv + ["--size", "64x64", "--lora", BAD / name, "--out", out])
    assert_refused(rc, err, out, 3, name)


@pytest.mark.parametrize("name", FILES)
def test_models_import(name, capsys):
    """Import refuses every corpus file (exit 2, its contract in tests/cli/test_models_cli.py)
    and stores nothing; the malicious pickles are refused by inspection, never run."""
    home = Path(os.environ["STUDIO_HOME"])
    before = sorted(p for p in home.rglob("*") if p.is_file()) if home.exists() else []
    rc, out, err = run_cli(capsys, ["models", "import", BAD / name])
    assert_refused(rc, err, None, 2, name)
    after = sorted(p for p in home.rglob("*") if p.is_file()) if home.exists() else []
    assert [p for p in after if p not in before and p.name == name] == []


def test_models_import_names_the_pickle_danger(capsys):
    for name in ("malicious.pth", "malicious.ckpt"):
        rc, _, err = run_cli(capsys, ["models", "import", BAD / name])
        assert rc == 2 and "code" in err and ".safetensors" in err, err


def test_checkpoint_refusal_message_is_one_line_without_unsafe_advice():
    from studio.core.errors import ModelError
    from studio.engine.diffusion.shared.loader import detect_checkpoint

    with pytest.raises(ModelError) as info:
        detect_checkpoint(BAD / "malicious.pth")
    assert "\n" not in info.value.message
    assert "weights_only` set to `False`" not in info.value.message


@pytest.mark.parametrize(
    "argv",
    [
        ["upscale", "--image", BAD / "bomb_30000x30000.png"],
        ["inpaint", "--image", "{good}", "--mask", "{empty}", "--method", "{sd}"],
    ],
    ids=["upscale-note", "inpaint-note"],
)
def test_notes_do_not_precede_an_error(argv, tmp_path, capsys, tiny_models, good_png):
    out = tmp_path / "o.png"
    empty = tmp_path / "empty-mask.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(empty)  # "paint the area first"
    argv = [str(a).format(good=good_png, sd=tiny_models.sd, empty=empty) for a in argv]
    rc, _, err = run_cli(capsys, [*argv, "--out", out])
    assert rc == 2, err
    assert_one_clear_line(err)


# -- a few real processes --------------------------------------------------------------------


def _subprocess(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("STUDIO_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "studio", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "argv,code",
    [
        (["upscale", "--image", BAD / "bomb_30000x30000.png", "--method", "lanczos"], 2),
        (["control", "canny", "--image", BAD / "truncated.jpg"], 2),
        (["upscale", "--image", BAD / "one_pixel.png", "--model", BAD / "malicious.pth"], 3),
        (["inpaint", "--image", BAD / "html_as.webp", "--mask", BAD / "one_pixel.png"], 2),
    ],
    ids=["upscale-bomb", "canny-truncated", "upscale-malicious-model", "inpaint-html"],
)
def test_real_process(argv, code, tmp_path):
    PWNED_MARKER.unlink(missing_ok=True)
    out = tmp_path / "out.png"
    proc = _subprocess([*argv, "--out", out], tmp_path)
    assert proc.returncode == code, proc.stderr
    assert_one_clear_line(proc.stderr)
    assert not out.exists()
    assert not PWNED_MARKER.exists()


def test_real_process_models_import_malicious(tmp_path):
    proc = _subprocess(
        ["models", "import", BAD / "malicious.ckpt", BAD / "malicious.pth"], tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_clear_line(proc.stderr)
    assert not PWNED_MARKER.exists()
