"""The OpenPose body detector: the real network and weight-file format with random weights,
and the part-affinity-field parsing checked on synthetic maps of a known skeleton."""

import numpy as np
import pytest
import torch

from studio.core.errors import ModelError
from studio.core.pose import N_BODY, Person, default_pose
from studio.engine import pose_detect
from studio.engine.pose_detect import (
    BODY_FILE,
    BodyPoseModel,
    PoseDetector,
    assemble,
    find_body_weights,
    find_peaks,
    load_body_model,
    write_random_weights,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("openpose"))


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
    torch.manual_seed(0)
    ref = BodyPoseModel().eval()
    # loading really used the file's weights
    assert torch.equal(
        det.body.model6_2.Mconv7_stage6_L2.weight,
        torch.load(weights, weights_only=True)["Mconv7_stage6_L2.weight"],
    )
    assert torch.equal(det.body.model0.conv1_1.weight, ref.model0.conv1_1.weight)
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
    heat, paf = pose_detect.body_maps(det.body, img[:, :, ::-1].copy())
    assert heat.shape == (64, 96, 19) and paf.shape == (64, 96, 38)


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
