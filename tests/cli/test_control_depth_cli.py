import json

import numpy as np
import pytest

from studio.cli import main
from studio.core.imageio import load_image, read_text_chunks, save_image
from studio.engine.fixtures.tiny_depth import build_tiny_depth_anything


@pytest.fixture(scope="module")
def depth_folder(tmp_path_factory):
    return build_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth-cli"))


@pytest.fixture
def small(photos, tmp_path):
    path = tmp_path / "small.png"
    save_image(path, load_image(photos.coffee, "RGB")[::5, ::5])  # 120x80
    return path


def test_depth_writes_the_input_size(small, depth_folder, tmp_path, capsys):
    out = tmp_path / "depth.png"
    rc = main(["control", "depth", "--image", str(small), "--model", str(depth_folder), "--out", str(out)])  # fmt: skip
    assert rc == 0
    got = load_image(out, "RGB")
    assert got.shape == (80, 120, 3)
    assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])
    assert got.min() == 0 and got.max() == 255  # normalised per image
    meta = json.loads(read_text_chunks(out)["studio"])
    assert meta == {"control": "depth", "model": str(depth_folder)}
    assert "120x80" in capsys.readouterr().out


def test_depth_region(small, depth_folder, tmp_path):
    out = tmp_path / "crop.png"
    rc = main(["control", "depth", "--image", str(small), "--model", str(depth_folder), "--region", "10,20,64,48", "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert load_image(out, "RGB").shape == (48, 64, 3)


def test_depth_bad_input_exits_2(small, depth_folder, tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    base = ["control", "depth", "--model", str(depth_folder)]
    assert main([*base, "--image", str(bad), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "not an image" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--image", str(small), "--out", str(tmp_path / "o.gif")]) == 2
    assert main([*base, "--image", str(small), "--region", "1,2,3", "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert main([*base, "--image", str(small), "--region", "100,0,64,48", "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_depth_without_model_exits_3(small, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "empty-home"))
    out = tmp_path / "d.png"
    assert main(["control", "depth", "--image", str(small), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "studio models download depth-anything-v2-small" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    missing = str(tmp_path / "no-such-model")
    assert main(["control", "depth", "--image", str(small), "--model", missing, "--out", str(out)]) == 3  # fmt: skip
