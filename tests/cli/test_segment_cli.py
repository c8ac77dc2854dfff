"""``studio segment``: exit codes 0/2/3 and the mask file, on tiny random models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import studio.cli
from studio.cli import main
from studio.core.imageio import load_image, save_image
from studio.engine.fixtures.tiny_sam import build_tiny_grounding_dino, build_tiny_sam2
from studio.engine.jobs import runner as runner_mod
from studio.engine.jobs.requests import SegmentRequest
from studio.engine.vision import segment


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    sam = build_tiny_sam2(tmp_path_factory.mktemp("cli-sam2"))
    dino = build_tiny_grounding_dino(tmp_path_factory.mktemp("cli-gdino"))
    return sam, dino


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setattr(studio.cli, "COMMANDS", (*studio.cli.COMMANDS, "studio.cli.segment_cmd"))
    monkeypatch.setitem(
        runner_mod.HANDLERS, SegmentRequest, "studio.engine.vision.segment:run_segment"
    )
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = (20, 200, 20)
    path = tmp_path / "in.png"
    save_image(path, image)
    return path


def _install(home, folders):
    sam, dino = folders
    shutil.copytree(sam, home / "models" / segment.FOLDER / segment.SAM2_ID)
    shutil.copytree(dino, home / "models" / segment.FOLDER / segment.DINO_ID)


def _mask(path):
    mask = load_image(path, "RGB")
    assert set(np.unique(mask)) <= {0, 255}
    return mask


def test_point_and_box_write_an_image_sized_mask(cli, tmp_path, folders, capsys):
    out = tmp_path / "mask.png"
    rc = main(["segment", "--image", str(cli), "--point", "10,20", "--point", "50,20:0", "--model", str(folders[0]), "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert _mask(out).shape == (48, 64, 3)
    captured = capsys.readouterr()
    assert "selected" in captured.out
    assert captured.err == ""  # no library chatter: stderr is for the one line of an error
    out2 = tmp_path / "box.png"
    rc = main(["segment", "--image", str(cli), "--box", "0,0,32,48", "--model", str(folders[0]), "--out", str(out2)])  # fmt: skip
    assert rc == 0
    assert _mask(out2).shape == (48, 64, 3)


def test_text_unites_the_instances(cli, tmp_path, folders, monkeypatch, capsys):
    _install(tmp_path / "home", folders)
    monkeypatch.setattr(segment, "BOX_THRESHOLD", 0.0)
    monkeypatch.setattr(segment, "TEXT_THRESHOLD", 0.0)
    out = tmp_path / "text.png"
    assert main(["segment", "--image", str(cli), "--text", "a green box", "--out", str(out)]) == 0
    got = _mask(out)[..., 0]
    assert got.shape == (48, 64)
    from studio.core.imageio import load_image as load

    final = runner_mod.Runner(device="cpu").run(
        SegmentRequest(load(cli, "RGB"), text="a green box")
    )
    union = np.zeros((48, 64), np.uint8)
    for m in final.images:
        union = np.maximum(union, m)
    assert np.array_equal(got, union)
    assert "instance" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--point", "64.5,10"], "point (64.5, 10) is outside the 64x48 image"),
        (["--point", "10,-1:1"], "point (10, -1) is outside the 64x48 image"),
        (["--point", "a,b"], "--point 'a,b': expected"),
        (["--point", "1,2:7"], "must be 1 (inside) or 0 (outside)"),
        (["--box", "1,2,3"], "--box '1,2,3': expected"),
        (["--box", "0,0,65,10"], "box (0, 0, 65, 10) is outside the 64x48 image"),
        (["--box", "20,0,10,10"], "is empty"),
        ([], "give --point, --box or --text"),
        (["--text", "cat", "--point", "1,1"], "not both"),
    ],
)
def test_bad_values_exit_2_with_one_line(cli, tmp_path, folders, capsys, extra, message):
    out = tmp_path / "m.png"
    rc = main(["segment", "--image", str(cli), *extra, "--model", str(folders[0]), "--out", str(out)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_model_exits_3(cli, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["segment", "--image", str(cli), "--point", "5,5", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "SAM 2 is not installed: studio models download sam2-hiera-small" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_missing_detector_exits_3(cli, tmp_path, folders, capsys):
    home = tmp_path / "home"
    shutil.copytree(folders[0], home / "models" / segment.FOLDER / segment.SAM2_ID)
    out = tmp_path / "m.png"
    assert main(["segment", "--image", str(cli), "--text", "cat", "--out", str(out)]) == 3
    assert "Grounding DINO is not installed" in capsys.readouterr().err


def test_text_with_a_sam3_model(cli, tmp_path, monkeypatch, capsys):
    from studio.engine.fixtures.tiny_sam import build_tiny_sam3

    sam3 = build_tiny_sam3(tmp_path / "sam3")
    monkeypatch.setattr(segment, "SAM3_THRESHOLD", 0.0)
    out = tmp_path / "sam3.png"
    rc = main(["segment", "--image", str(cli), "--text", "cat", "--model", str(sam3), "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert _mask(out).shape == (48, 64, 3)
    assert "5 instances of 'cat'" in capsys.readouterr().out
    rc = main(["segment", "--image", str(cli), "--point", "3,3", "--model", str(sam3), "--out", str(out)])  # fmt: skip
    assert rc == 2
