import json

import numpy as np
import pytest

from studio.cli import main
from studio.core.canny import canny
from studio.core.imageio import load_image, read_text_chunks
from studio.core.pose import Pose, default_pose
from studio.engine.fixtures import write_random_openpose


@pytest.fixture(scope="module")
def pose_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openpose-cli")
    write_random_openpose(folder)
    return folder


def test_canny(photos, tmp_path, capsys):
    out = tmp_path / "edges.png"
    rc = main(["control", "canny", "--image", str(photos.chelsea), "--low", "50", "--high", "150", "--out", str(out)])  # fmt: skip
    assert rc == 0
    got = load_image(out, "RGB")
    assert np.array_equal(got, canny(load_image(photos.chelsea, "RGB"), 50, 150))
    assert json.loads(read_text_chunks(out)["studio"])["control"] == "canny"
    assert "edges" in capsys.readouterr().out


def test_canny_bad_input(tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    assert main(["control", "canny", "--image", str(bad), "--out", str(tmp_path / "o.png")]) == 2
    assert "not an image" in capsys.readouterr().err
    assert main(["control", "canny", "--image", str(bad), "--out", str(tmp_path / "o.gif")]) == 2


def test_pose_without_detector_exits_3(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "empty-home"))
    rc = main(["control", "pose", "--image", str(photos.astronaut), "--out", str(tmp_path / "p.png")])  # fmt: skip
    assert rc == 3
    err = capsys.readouterr().err
    assert "No pose detector" in err and "studio models download openpose" in err
    assert "--template" in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


def test_pose_detect_with_random_weights(photos, tmp_path, pose_folder):
    out, js = tmp_path / "pose.png", tmp_path / "pose.json"
    small = tmp_path / "small.png"
    from studio.core.imageio import save_image

    save_image(small, load_image(photos.astronaut, "RGB")[:80, :64])
    rc = main(["control", "pose", "--image", str(small), "--model", str(pose_folder), "--out", str(out), "--json", str(js)])  # fmt: skip
    assert rc == 0
    pose = Pose.load(js)
    assert (pose.width, pose.height) == (64, 80)
    assert np.array_equal(load_image(out, "RGB"), pose.render())


def test_template_and_from_json(photos, tmp_path, capsys):
    out, js = tmp_path / "t.png", tmp_path / "t.json"
    rc = main(["control", "pose", "--template", "--people", "2", "--size", "320x240", "--out", str(out), "--json", str(js)])  # fmt: skip
    assert rc == 0
    pose = Pose.load(js)
    assert len(pose.people) == 2 and (pose.width, pose.height) == (320, 240)
    expected = default_pose(320, 240, people=2).render()
    assert np.array_equal(load_image(out, "RGB"), expected)
    assert "2 people" in capsys.readouterr().out

    # edit the JSON as an external pose editor would, then render it
    data = json.loads(js.read_text())
    data["people"] = data["people"][:1]
    data["people"][0]["pose_keypoints_2d"][12:15] = [0, 0, 0]  # drop the right wrist
    js.write_text(json.dumps(data))
    out2 = tmp_path / "r.png"
    assert main(["control", "pose", "--from-json", str(js), "--out", str(out2)]) == 0
    edited = Pose.load(js)
    assert np.array_equal(load_image(out2, "RGB"), edited.render())
    assert not edited.people[0].visible(4)

    # template sized from an image
    out3 = tmp_path / "i.png"
    assert main(["control", "pose", "--template", "--image", str(photos.coffee), "--out", str(out3)]) == 0  # fmt: skip
    assert load_image(out3).shape == (400, 600, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["control", "pose", "--template", "--out", "OUT"],
        ["control", "pose", "--template", "--size", "12xq", "--out", "OUT"],
        ["control", "pose", "--out", "OUT"],
        ["control", "pose", "--from-json", "missing.json", "--out", "OUT"],
        [
            "control",
            "pose",
            "--template",
            "--from-json",
            "x.json",
            "--size",
            "64x64",
            "--out",
            "OUT",
        ],  # fmt: skip
    ],
)
def test_pose_usage_errors_exit_2(argv, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "o.png")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("studio: error:") and "Traceback" not in err


def test_missing_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["control"])
    assert e.value.code == 2


def test_pose_with_dwpose_models(photos, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from studio.engine.fixtures import write_random_dwpose

    folder = write_random_dwpose(tmp_path / "dwpose")
    out, js = tmp_path / "dw.png", tmp_path / "dw.json"
    rc = main(["control", "pose", "--image", str(photos.chelsea), "--model", str(folder), "--out", str(out), "--json", str(js)])  # fmt: skip
    assert rc == 0
    pose = Pose.load(js)
    assert (pose.width, pose.height) == (451, 300)
    assert all(p.hand_left is not None and p.face is not None for p in pose.people)
    assert np.array_equal(load_image(out, "RGB"), pose.render())
    assert json.loads(read_text_chunks(out)["studio"])["source"] == "detected"
