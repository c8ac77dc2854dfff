"""The OpenPose body detector: the real network and weight-file format with random weights,
and the part-affinity-field parsing checked on synthetic maps of a known skeleton."""

import numpy as np
import pytest
import torch

from studio.core.errors import ModelError
from studio.core.pose import N_BODY, Person, default_pose
from studio.engine.fixtures import write_random_openpose
from studio.engine.vision import pose_detect
from studio.engine.vision.pose_detect import (
    BODY_FILE,
    PoseDetector,
    assemble,
    find_body_weights,
    find_peaks,
    load_body_model,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_openpose(tmp_path_factory.mktemp("openpose"))


def test_weight_file_has_the_real_layer_names(weights):
    sd = torch.load(weights, weights_only=True)
    # names as in lllyasviel/Annotators body_pose_model.pth
    assert sd["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert sd["Mconv7_stage6_L1.weight"].shape == (38, 128, 1, 1)
    assert sd["Mconv7_stage6_L2.weight"].shape == (19, 128, 1, 1)
    assert sd["Mconv1_stage2_L1.weight"].shape == (128, 185, 7, 7)
    assert len(sd) == 184
    assert not any(k.startswith("model") for k in sd)


def test_random_weights_run_end_to_end(weights, photos):
    from studio.core.imageio import load_image

    det = PoseDetector(load_body_model(weights))
    # loading really used the file's weights
    assert torch.equal(
        det.body.model6_2.Mconv7_stage6_L2.weight,
        torch.load(weights, weights_only=True)["Mconv7_stage6_L2.weight"],
    )
    img = load_image(photos.chelsea, "RGB")[:64, :96]
    calls = []
    pose = det.detect(img, check=lambda: calls.append(1))
    assert calls, "the detector must offer cancellation points"
    assert (pose.width, pose.height) == (96, 64)
    assert isinstance(pose.people, list)
    for person in pose.people:
        assert len(person.body) == N_BODY
        for x, y, c in person.body:
            assert c == 0 or (0 <= x < 96 and 0 <= y < 64 and 0 < c <= 1)


def test_bad_weight_files(tmp_path):
    bad = tmp_path / BODY_FILE
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_body_model(bad)
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(ModelError, match="not OpenPose body weights"):
        load_body_model(bad)


def test_finding_weights(tmp_path, monkeypatch, weights):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match="studio models download openpose"):
        find_body_weights(None)
    with pytest.raises(ModelError, match="no body_pose_model.pth"):
        find_body_weights(str(tmp_path))
    assert find_body_weights(str(weights.parent)) == weights
    assert find_body_weights(str(weights)) == weights
    default = pose_detect.default_model_folder()
    default.mkdir(parents=True)
    (default / BODY_FILE).symlink_to(weights)
    assert find_body_weights(None) == default / BODY_FILE
    assert find_body_weights("openpose") == default / BODY_FILE


# -- parsing, on maps drawn from a known skeleton ---------------------------------------------------
def synthetic_maps(body, h, w, cell=1.0):
    """Confidence maps (Gaussians at the parts) and PAFs (unit vectors along each limb) for
    one person, as the trained network would produce them, on an h x w grid where a point
    (x, y) of ``body`` lands at (x / cell, y / cell)."""
    heat = np.zeros((19, h, w), np.float32)
    paf = np.zeros((38, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i, (x, y, c) in enumerate(body):
        if c > 0:
            heat[i] = np.maximum(
                heat[i], np.exp(-((xx - x / cell) ** 2 + (yy - y / cell) ** 2) / (2 * 1.0**2))
            )
    for (a, b), (mx, my) in zip(pose_detect._LIMB_SEQ, pose_detect._MAP_IDX, strict=True):
        (xa, ya, ca), (xb, yb, cb) = body[a - 1], body[b - 1]
        if ca <= 0 or cb <= 0:
            continue
        xa, ya, xb, yb = xa / cell, ya / cell, xb / cell, yb / cell
        d = np.array([xb - xa, yb - ya])
        n = np.linalg.norm(d)
        u = d / n
        t = (xx - xa) * u[0] + (yy - ya) * u[1]
        dist = np.abs((xx - xa) * u[1] - (yy - ya) * u[0])
        on = (t >= -1) & (t <= n + 1) & (dist <= 1.5)
        paf[mx - 19][on] = u[0]
        paf[my - 19][on] = u[1]
    heat[18] = 1.0 - heat[:18].max(axis=0)
    return heat, paf


def test_parsing_recovers_two_people():
    pose = default_pose(320, 200, people=2)
    h, w = 200, 320
    heat = np.zeros((h, w, 19), np.float32)
    paf = np.zeros((h, w, 38), np.float32)
    for person in pose.people:
        hm, pf = synthetic_maps(person.body, h, w, cell=1.0)
        heat = np.maximum(heat, hm.transpose(1, 2, 0) * 2.0)  # sharp peaks survive sigma=3
        paf += pf.transpose(1, 2, 0)
    peaks = find_peaks(heat)
    assert all(len(p) == 2 for p in peaks[:18])
    candidate, subset = assemble(peaks, paf, h)
    assert len(subset) == 2
    found = pose_detect.to_pose(candidate, subset, w, h)
    for got in found.people:
        want = min(pose.people, key=lambda p: abs(p.body[1][0] - got.body[1][0]))
        for (gx, gy, gc), (wx, wy, _) in zip(got.body, want.body, strict=True):
            assert gc > 0
            assert abs(gx - wx) <= 1.5 and abs(gy - wy) <= 1.5


class _FakeNet(torch.nn.Module):
    """Stands in for a trained network: returns the maps of a known skeleton at stride 8."""

    def __init__(self, fractions):
        super().__init__()
        self.fractions = fractions

    def forward(self, x):
        h8, w8 = x.shape[2] // 8, x.shape[3] // 8
        body = [(fx * w8 * 8, fy * h8 * 8, 1.0) for fx, fy in self.fractions]
        heat, paf = synthetic_maps(body, h8, w8, cell=8.0)
        return torch.from_numpy(paf[None]), torch.from_numpy(heat[None])


@pytest.mark.parametrize("size", [(368, 368), (736, 552)])
def test_detect_maps_network_output_back_to_image_pixels(size):
    w, h = size
    # a close-up figure: at the network's stride-8 resolution the parts must be a few cells
    # apart to be told apart (as with the real network).
    fractions = [
        (0.50, 0.25), (0.50, 0.42), (0.32, 0.42), (0.22, 0.62), (0.15, 0.85), (0.68, 0.42),
        (0.78, 0.62), (0.85, 0.85), (0.38, 0.80), (0.36, 0.92), (0.35, 0.97), (0.62, 0.80),
        (0.64, 0.92), (0.65, 0.97), (0.42, 0.15), (0.58, 0.15), (0.33, 0.20), (0.67, 0.20),
    ]  # fmt: skip
    truth = Person(body=[(fx * w, fy * h, 1.0) for fx, fy in fractions])
    det = PoseDetector(_FakeNet(fractions))
    rgba = np.zeros((h, w, 4), np.uint8)
    pose = det.detect(rgba)
    assert (pose.width, pose.height) == (w, h) and len(pose.people) == 1
    tol = 0.03 * max(w, h)
    for (gx, gy, gc), (wx, wy, _) in zip(pose.people[0].body, truth.body, strict=True):
        assert gc > 0 and abs(gx - wx) < tol and abs(gy - wy) < tol


# -- hands and face --------------------------------------------------------------------------------
def test_hand_and_face_boxes_follow_openpose_geometry():
    body = [(0.0, 0.0, 0.0)] * 18
    body[2], body[3], body[4] = (100.0, 100.0, 1.0), (100.0, 160.0, 1.0), (100.0, 200.0, 1.0)
    ((x, y, side, is_left),) = pose_detect.hand_boxes(body, 400, 400)
    # centre = wrist + 0.33 (wrist - elbow) = (100, 213.2); side = 1.5 max(40, 0.9 * 60) = 81
    assert not is_left and side == 81
    assert (x + side / 2, y + side / 2) == pytest.approx((100, 213.2), abs=1)
    assert pose_detect.hand_boxes(body, 400, 230)[0][2] < 81  # clipped at the image edge
    body[0], body[14], body[16] = (200.0, 50.0, 1.0), (190.0, 45.0, 1.0), (170.0, 50.0, 1.0)
    x, y, side = pose_detect.face_box(body, 400, 400)
    assert side == 90 and (x, y) == (155, 5)  # half = max(3 * 10, 1.5 * 30) = 45
    body[0] = (0.0, 0.0, 0.0)
    assert pose_detect.face_box(body, 400, 400) is None


@pytest.fixture(scope="module")
def all_weights(tmp_path_factory):
    return write_random_openpose(tmp_path_factory.mktemp("openpose-all"), hands=True, face=True)


@pytest.fixture(scope="module")
def full_detector(all_weights):
    return PoseDetector.load(str(all_weights.parent))


def test_hand_and_face_weight_files_load(all_weights, full_detector):
    hand = torch.load(all_weights.parent / pose_detect.HAND_FILE, weights_only=True)
    assert hand["conv6_2_CPM.weight"].shape == (22, 512, 1, 1)
    assert hand["Mconv1_stage2.weight"].shape == (128, 150, 7, 7)
    face = torch.load(all_weights.parent / pose_detect.FACE_FILE, weights_only=True)
    assert face["Mconv7_stage6.weight"].shape == (71, 128, 1, 1)
    assert face["Mconv1_stage6.weight"].shape == (128, 199, 7, 7)
    det = full_detector
    assert det.hand is not None and det.face is not None
    assert torch.equal(det.face.conv1_1.weight, face["conv1_1.weight"])
    body_only = PoseDetector.load(str(all_weights.parent), hands=False, face=False)
    assert body_only.hand is None and body_only.face is None


def test_detect_with_hands_and_face(full_detector):
    """A known body (stand-in network) with the real hand and face networks (random weights)
    running on the crops placed from it."""
    w, h = 368, 368
    fractions = [
        (0.50, 0.25), (0.50, 0.42), (0.32, 0.42), (0.22, 0.62), (0.15, 0.85), (0.68, 0.42),
        (0.78, 0.62), (0.85, 0.85), (0.38, 0.80), (0.36, 0.92), (0.35, 0.97), (0.62, 0.80),
        (0.64, 0.92), (0.65, 0.97), (0.42, 0.15), (0.58, 0.15), (0.33, 0.20), (0.67, 0.20),
    ]  # fmt: skip
    det = PoseDetector(
        _FakeNet(fractions), hand=full_detector.hand, face=full_detector.face, hand_scales=(0.5,)
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    (person,) = det.detect(image).people
    assert len(person.hand_left) == 21 and len(person.hand_right) == 21
    assert len(person.face) == 70
    for pts in (person.hand_left, person.hand_right, person.face):
        for x, y, c in pts:
            assert c == 0 or (0 <= x < w and 0 <= y < h and 0 < c <= 1)
    # the left hand lies around the left wrist's crop
    lx, ly, _ = person.body[7]
    found = [(x, y) for x, y, c in person.hand_left if c > 0]
    for x, y in found:
        assert abs(x - lx) < 0.3 * w and abs(y - ly) < 0.3 * h
    no_extras = det.detect(image, hands=False, face=False).people[0]
    assert no_extras.hand_left is None and no_extras.face is None


def test_hand_peak_is_the_strongest_blob():
    raw = np.zeros((64, 64), np.float32)
    raw[10, 10] = 5.0  # a big blob
    raw[40:44, 40:44] = 3.0  # more mass in total
    x, y, v = pose_detect._peak_in_largest_blob(raw, 0.05)
    assert 40 <= x < 44 and 40 <= y < 44 and v == 3.0
    assert pose_detect._peak_in_largest_blob(np.zeros((8, 8), np.float32), 0.05) is None
