"""DWPose through onnxruntime: ONNX stand-ins with the real inputs/outputs and random weights
loaded through the real path, and each decoding step checked on known values."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from studio.core.errors import ModelError  # noqa: E402
from studio.core.pose import N_BODY, N_FACE, N_HAND, Pose  # noqa: E402
from studio.engine.fixtures import write_random_dwpose  # noqa: E402
from studio.engine.jobs.events import Finished  # noqa: E402
from studio.engine.jobs.requests import PreprocessRequest  # noqa: E402
from studio.engine.jobs.runner import Runner  # noqa: E402
from studio.engine.vision import (
    dwpose,
    pose_detect,  # noqa: E402
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_random_dwpose(tmp_path_factory.mktemp("dwpose"))


def test_random_models_run_end_to_end(models, photos):
    from studio.core.imageio import load_image

    det = dwpose.DWPoseDetector.load(models, "cpu")
    assert det.pose_size == (288, 384)
    img = load_image(photos.chelsea, "RGB")
    calls = []
    pose = det.detect(img, check=lambda: calls.append(1))
    assert calls and (pose.width, pose.height) == (451, 300)
    assert pose.people  # no box from random weights -> the whole picture, as the annotator
    for person in pose.people:
        assert len(person.body) == N_BODY and len(person.face) == N_FACE
        assert len(person.hand_left) == N_HAND and len(person.hand_right) == N_HAND
        for pts in (person.body, person.face, person.hand_left, person.hand_right):
            for x, y, c in pts:
                assert c == 0 or (0 <= x < 451 and 0 <= y < 300 and 0.3 < c <= 1)
    bare = det.detect(img, hands=False, face=False).people[0]
    assert bare.hand_left is None and bare.face is None


def test_yolox_decoding_and_nms():
    pred = np.zeros((8400, 85), np.float32)
    # anchor 0 of the stride-16 level (after 80*80 stride-8 cells) at grid cell (3, 2)
    i = 80 * 80 + 2 * 40 + 3
    pred[i, :4] = (0.5, 0.5, np.log(4.0), np.log(8.0))  # centre (56, 40), size 64 x 128
    pred[i, 4], pred[i, 5] = 0.9, 0.9
    j = i + 1  # an overlapping, weaker duplicate one cell to the right
    pred[j, :4] = (0.0, 0.5, np.log(4.0), np.log(8.0))
    pred[j, 4], pred[j, 5] = 0.8, 0.8
    k = 10  # a confident non-person
    pred[k, :4] = (0.5, 0.5, 1.0, 1.0)
    pred[k, 4], pred[k, 6] = 0.9, 0.9
    decoded = dwpose.decode_yolox(pred)
    assert decoded[i, :4] == pytest.approx([56, 40, 64, 128])
    boxes = dwpose.person_boxes(decoded, ratio=0.5)  # the image was letterboxed at x0.5
    assert boxes.shape == (1, 4)
    assert boxes[0] == pytest.approx([(56 - 32) * 2, (40 - 64) * 2, (56 + 32) * 2, (40 + 64) * 2])
    with pytest.raises(ModelError):
        dwpose.decode_yolox(np.zeros((100, 85), np.float32))


def test_letterbox():
    img = np.full((300, 450, 3), 200, np.uint8)
    batch, r = dwpose.letterbox(img)
    assert batch.shape == (1, 3, 640, 640) and batch.dtype == np.float32
    assert r == pytest.approx(640 / 450)
    assert batch[0, 0, 0, 0] == 200 and batch[0, 0, 639, 0] == 114


class _Input:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _FakePose:
    """A pose session whose SimCC peaks sit at known model-input pixels."""

    def __init__(self, points):
        self.points = points

    def get_inputs(self):
        return [_Input("input", [1, 3, 384, 288])]

    def run(self, names, feeds):
        x = feeds["input"]
        assert x.shape == (1, 3, 384, 288)
        sx = np.zeros((1, 133, 576), np.float32)
        sy = np.zeros((1, 133, 768), np.float32)
        for k, (px, py) in enumerate(self.points):
            sx[0, k, int(px * 2)] = 0.9
            sy[0, k, int(py * 2)] = 0.8
        return [sx, sy]


def test_keypoints_map_back_through_the_crop():
    points = [(144.0, 192.0), (0.0, 0.0), (288.0 - 0.5, 384.0 - 0.5)] + [(10.0, 10.0)] * 130
    det = dwpose.DWPoseDetector(None, _FakePose(points))
    box = np.array([100, 50, 200, 250], np.float32)  # 100 x 200, padded x1.25 -> 125 x 250
    pts, scores = det.keypoints(np.zeros((400, 400, 3), np.uint8), box)
    # the crop is 187.5 x 250 (widened to 288:384) around (150, 150)
    assert pts[0] == pytest.approx([150, 150])
    assert pts[1] == pytest.approx([150 - 93.75, 150 - 125])
    assert pts[2] == pytest.approx([150 + 93.75, 150 + 125], abs=0.7)
    assert scores[0] == pytest.approx(0.8)


def test_wholebody_to_openpose_layout():
    kp = np.stack([np.arange(133, dtype=np.float32), np.zeros(133, np.float32)], axis=1)
    scores = np.full(133, 0.9, np.float32)
    scores[0] = 0.1  # an unsure nose is missing
    person = dwpose.to_openpose(kp, scores)
    xs = [x for x, _, _ in person.body]
    # BODY_18 from COCO: neck = mean(l_shoulder 5, r_shoulder 6); r_shoulder = 6, ...
    assert person.body[0] == (0.0, 0.0, 0.0)
    assert xs[1] == 5.5 and xs[2] == 6 and xs[3] == 8 and xs[4] == 10
    assert xs[5] == 5 and xs[8] == 12 and xs[11] == 11 and xs[14] == 2 and xs[17] == 3
    assert [x for x, _, _ in person.face[:68]] == list(range(23, 91))
    assert person.face[68:] == [(0.0, 0.0, 0.0)] * 2
    assert person.hand_left[0][0] == 91 and person.hand_right[0][0] == 112


def test_decode_simcc():
    sx = np.zeros((2, 576), np.float32)
    sy = np.zeros((2, 768), np.float32)
    sx[0, 100], sy[0, 300] = 0.7, 0.9
    pts, scores = dwpose.decode_simcc(sx, sy)
    assert pts[0] == pytest.approx([50, 150]) and scores[0] == pytest.approx(0.7)
    assert (pts[1] == -1).all() and scores[1] == 0


def test_model_resolution_prefers_installed_dwpose(models, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="dwpose"):
        pose_detect.find_pose_model(None)
    with pytest.raises(ModelError, match="studio models download dwpose"):
        pose_detect.find_pose_model("dwpose")
    assert pose_detect.find_pose_model(str(models)) == ("dwpose", models)
    assert pose_detect.find_pose_model(str(models / dwpose.POSE_FILE)) == ("dwpose", models)
    installed = tmp_path / "models" / "pose-detector" / "dwpose"
    installed.mkdir(parents=True)
    for f in (dwpose.DET_FILE, dwpose.POSE_FILE):
        (installed / f).symlink_to(models / f)
    assert pose_detect.find_pose_model(None) == ("dwpose", installed)
    assert pose_detect.find_pose_model("dwpose") == ("dwpose", installed)


def test_pose_job_with_dwpose(models, photos):
    from studio.core.imageio import load_image

    img = load_image(photos.astronaut, "RGB")[:128, :96]
    final = Runner().run(PreprocessRequest("pose", img, (("model", str(models)),)))
    assert isinstance(final, Finished), final
    assert final.metadata[0]["detector"] == "dwpose" and final.metadata[0]["hands"]
    pose = Pose.from_dict(final.extra["pose"])
    assert (pose.width, pose.height) == (96, 128)
    assert np.array_equal(final.images[0], pose.render())


def test_bad_onnx_file(tmp_path):
    for f in (dwpose.DET_FILE, dwpose.POSE_FILE):
        (tmp_path / f).write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        dwpose.DWPoseDetector.load(tmp_path, "cpu")
