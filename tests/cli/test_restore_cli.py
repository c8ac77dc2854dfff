"""`studio restore` with a tiny random RestoreFormer and a detector double: exit codes and the
output. The parser is built from the command's own ``register`` (as ``studio.cli`` does)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.cli import _parser_class, error, restore_cmd
from studio.core.errors import StudioError
from studio.core.imageio import load_image, read_text_chunks, save_image
from studio.engine.restore import faces as F

PARAMS = "a portrait\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 160x120"
# facexlib's FFHQ 512 template (facexlib/utils/face_restoration_helper.py)
TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)


def studio(argv: list[str]) -> int:
    """``studio.cli.main`` for a parser holding only ``restore``."""
    parser_class = _parser_class()
    parser = parser_class(prog="studio")
    sub = parser.add_subparsers(dest="command", parser_class=parser_class)
    restore_cmd.register(sub)
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except SystemExit as e:
        return int(e.code)
    except StudioError as e:
        error(e.message)
        return e.exit_code


def face_in(width: int, height: int) -> F.Face:
    """A face whose crop is 512 / 5.12 = 100 px wide, centred in the image."""
    s = 100 / 512
    pts = TEMPLATE * s + np.array([width / 2 - 50, height / 2 - 50])
    return F.Face((width / 2 - 50, height / 2 - 50, 100.0, 100.0), pts.astype(np.float32), 0.95)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from studio.engine.fixtures.tiny_faces import write_tiny_restoreformer

    return write_tiny_restoreformer(tmp_path_factory.mktemp("cli-faces") / "tiny-rf.pth")


@pytest.fixture
def photo(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "in.png"
    save_image(path, img, parameters=PARAMS, studio={"seed": 42})
    return path


@pytest.fixture
def one_face():
    F.register_detector(
        "cli-one-face", lambda: lambda image: [face_in(image.shape[1], image.shape[0])]
    )
    return "cli-one-face"


def test_restore_writes_an_image_of_the_same_size(model, photo, one_face, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc = studio(["restore", "--image", str(photo), "--model", str(model), "--detector", one_face, "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    img, src = load_image(out), load_image(photo)
    assert img.shape == src.shape == (120, 160, 3)
    assert not np.array_equal(img, src)  # the face was replaced
    assert np.array_equal(img[:, :20], src[:, :20])  # far from the face: untouched
    chunks = read_text_chunks(out)
    assert chunks["parameters"] == PARAMS + ", Face restoration: tiny-rf"
    record = json.loads(chunks["studio"])
    assert record["seed"] == 42
    assert record["face_restorations"][0]["restored"] == 1
    assert "1 of 1 face(s)" in err


def test_strength_zero_writes_the_input_pixels(model, photo, one_face, tmp_path):
    out = tmp_path / "out.png"
    rc = studio(["restore", "--image", str(photo), "--model", str(model), "--detector", one_face, "--strength", "0", "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert np.array_equal(load_image(out), load_image(photo))


def test_missing_model_exits_3(photo, tmp_path, studio_home, capsys):
    rc = studio(["restore", "--image", str(photo), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 3
    assert err.count("\n") == 1 and "GFPGANv1.4.pth" in err
    assert not (tmp_path / "o.png").exists()
    rc = studio(["restore", "--image", str(photo), "--model", str(tmp_path / "no.pth"), "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert rc == 3


@pytest.mark.parametrize("strength", ["1.5", "-1", "nan", "strong"])
def test_bad_strength_exits_2(model, photo, tmp_path, capsys, strength):
    rc = studio(["restore", "--image", str(photo), "--model", str(model), "--strength", strength, "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert rc == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bad_image_and_output_exit_2(model, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert studio(["restore", "--image", str(junk), "--model", str(model), "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert capsys.readouterr().err.count("\n") == 1
    assert studio(["restore", "--image", str(tmp_path / "none.png"), "--model", str(model), "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert studio(["restore", "--image", str(junk), "--out", str(tmp_path / "o.gif")]) == 2
    assert studio(["restore", "--out", str(tmp_path / "o.png")]) == 2


def test_no_face_writes_the_image_unchanged(model, photo, tmp_path, capsys):
    F.register_detector("cli-no-face", lambda: lambda image: [])
    out = tmp_path / "out.png"
    rc = studio(["restore", "--image", str(photo), "--model", str(model), "--detector", "cli-no-face", "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert np.array_equal(load_image(out), load_image(photo))
    assert read_text_chunks(out)["parameters"] == PARAMS  # nothing restored: no key added
    assert "0 of 0 face(s)" in capsys.readouterr().err
