import json

import numpy as np
import pytest

from studio.core.errors import BadInput
from studio.core.pose import (
    BODY_KEYPOINTS,
    COLORS,
    LIMBS,
    N_BODY,
    N_FACE,
    N_HAND,
    Person,
    Pose,
    default_pose,
    render,
)


def test_keypoint_order_is_coco18():
    assert len(BODY_KEYPOINTS) == 18
    assert BODY_KEYPOINTS[:3] == ("nose", "neck", "r_shoulder")
    assert BODY_KEYPOINTS[-1] == "l_ear" and BODY_KEYPOINTS[8] == "r_hip"
    assert len(LIMBS) == 17 and LIMBS[0] == (1, 2) and LIMBS[12] == (1, 0)


def _full_person(seed: int) -> Person:
    rng = np.random.default_rng(seed)

    def pts(n):
        return [(float(x), float(y), 1.0) for x, y in rng.uniform(5, 120, (n, 2)).round(2)]

    body = pts(N_BODY)
    body[3] = (0.0, 0.0, 0.0)  # a missing elbow
    return Person(body=body, hand_left=pts(N_HAND), hand_right=pts(N_HAND), face=pts(N_FACE))


def test_json_round_trip(tmp_path):
    pose = Pose(128, 96, [_full_person(0), Person(body=default_pose(128, 96).people[0].body)])
    path = pose.save(tmp_path / "pose.json")
    data = json.loads(path.read_text())
    assert data["canvas_width"] == 128 and data["canvas_height"] == 96
    assert len(data["people"][0]["pose_keypoints_2d"]) == 54
    assert len(data["people"][0]["hand_left_keypoints_2d"]) == 63
    assert len(data["people"][0]["face_keypoints_2d"]) == 210
    assert data["people"][0]["pose_keypoints_2d"][9:12] == [0.0, 0.0, 0.0]
    assert data["people"][1]["hand_left_keypoints_2d"] is None
    back = Pose.load(path)
    assert (back.width, back.height, len(back.people)) == (128, 96, 2)
    for p, q in zip(back.people, pose.people, strict=True):
        for name in ("body", "hand_left", "hand_right", "face"):
            a, b = getattr(p, name), getattr(q, name)
            assert (a is None) == (b is None)
            if a is not None:
                assert np.allclose(a, b, atol=1e-3), name
    assert Pose.from_json(back.to_json()) == back


def test_reads_normalized_and_sizeless_json():
    body = [0.5, 0.25, 1.0] * 18
    text = json.dumps({"people": [{"pose_keypoints_2d": body}]})
    with pytest.raises(BadInput):
        Pose.from_json(text)
    pose = Pose.from_json(text, width=200, height=100)
    assert pose.people[0].body[0] == (100.0, 25.0, 1.0)
    assert pose.people[0].hand_left is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '{"people": [{"pose_keypoints_2d": [1, 2, 3]}], "canvas_width": 8, "canvas_height": 8}',
        '{"people": [{"pose_keypoints_2d": "x"}], "canvas_width": 8, "canvas_height": 8}',
        '{"people": [], "canvas_width": 0, "canvas_height": 8}',
    ],
)
def test_bad_json(text):
    with pytest.raises(BadInput):
        Pose.from_json(text)


def test_render_puts_openpose_colours_on_limbs():
    pose = default_pose(256, 256)
    body = pose.people[0].body
    img = render(pose)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    for i, (a, b) in enumerate(LIMBS):
        (xa, ya, _), (xb, yb, _) = body[a], body[b]
        if np.hypot(xa - xb, ya - yb) < 20:
            continue  # short face limbs: the end dots cover the middle
        mx, my = int((xa + xb) / 2), int((ya + yb) / 2)
        expected = [int(c * 0.6) for c in COLORS[i]]
        assert img[my, mx].tolist() == expected, (i, BODY_KEYPOINTS[a], BODY_KEYPOINTS[b])
    for i, (x, y, _) in enumerate(body):
        assert img[int(y), int(x)].tolist() == list(COLORS[i]), BODY_KEYPOINTS[i]
    assert img[2, 2].tolist() == [0, 0, 0]


def test_render_skips_missing_keypoints():
    pose = default_pose(128, 128)
    full = render(pose)
    pose.set_visible(0, 4, False)  # r_wrist
    img = render(pose)
    x, y, _ = pose.people[0].body[4]
    assert full[int(y), int(x)].any() and not img[int(y), int(x)].any()
    # the r_elbow -> r_wrist limb (index 3) is gone too
    (xa, ya, _), (xb, yb, _) = pose.people[0].body[3], pose.people[0].body[4]
    assert not img[int((ya + yb) / 2), int((xa + xb) / 2)].any()


def test_render_hands_and_face():
    person = _full_person(1)
    pose = Pose(128, 128, [Person(hand_left=person.hand_left, face=person.face)])
    img = render(pose)
    x, y, _ = person.face[0]
    assert img[int(y), int(x)].sum() > 0
    assert not render(pose, hands=False, face=False).any()


def test_move_add_remove_mirror():
    pose = default_pose(200, 100)
    pose.move_keypoint(0, 4, 10.0, 20.0)
    assert pose.people[0].body[4] == (10.0, 20.0, 1.0)
    pose.set_visible(0, 5, False)
    pose.move_keypoint(0, 5, 30, 40)
    assert pose.people[0].body[5] == (30.0, 40.0, 1.0)
    i = pose.add_person()
    assert i == 1 and len(pose.people) == 2
    assert pose.people[1].bbox() != pose.people[0].bbox()
    before = pose.people[0]
    pose.mirror(0)
    after = pose.people[0]
    # right wrist becomes left wrist, x reflected about the canvas centre
    assert after.body[7] == (200 - 10.0, 20.0, 1.0)
    assert after.body[0][0] == pytest.approx(200 - before.body[0][0])
    pose.mirror(0)
    assert pose.people[0] == before
    pose.remove_person(1)
    assert len(pose.people) == 1
    with pytest.raises(IndexError):
        pose.remove_person(5)


def test_default_pose_fits_canvas():
    for w, h in [(64, 64), (512, 256), (100, 400)]:
        pose = default_pose(w, h, people=3)
        for p in pose.people:
            x0, y0, x1, y1 = p.bbox()
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (w, h, p.bbox())


def test_moving_a_wrist_carries_its_hand_and_the_nose_the_face():
    person = _full_person(2)
    pose = Pose(128, 128, [person])
    hand = list(person.hand_left)
    face = list(person.face)
    right = list(person.hand_right)
    x, y, _ = pose.people[0].body[7]  # left wrist
    pose.move_keypoint(0, 7, x + 5, y - 3)
    assert pose.people[0].hand_left == [(hx + 5, hy - 3, c) for hx, hy, c in hand]
    assert pose.people[0].hand_right == right
    nx, ny, _ = pose.people[0].body[0]
    pose.move_keypoint(0, 0, nx - 2, ny + 1)
    assert np.allclose(pose.people[0].face, [(fx - 2, fy + 1, c) for fx, fy, c in face])
    pose.move_keypoint(0, 4, 1, 1, carry=False)
    assert pose.people[0].hand_right == right


# -- properties ----------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_coord = st.floats(min_value=0, max_value=2000, allow_nan=False, allow_infinity=False)
_point = st.tuples(_coord, _coord, st.sampled_from([0.0, 0.5, 1.0]))


@st.composite
def poses(draw):
    w = draw(st.integers(8, 2048))
    h = draw(st.integers(8, 2048))
    people = []
    for _ in range(draw(st.integers(0, 3))):
        hand = draw(st.none() | st.lists(_point, min_size=N_HAND, max_size=N_HAND))
        people.append(Person(body=draw(st.lists(_point, min_size=N_BODY, max_size=N_BODY)), hand_left=hand))  # fmt: skip
    return Pose(w, h, people)


@settings(max_examples=60, deadline=None)
@given(poses())
def test_property_json_round_trip_and_mirror_involution(pose):
    back = Pose.from_json(pose.to_json())
    assert (back.width, back.height, len(back.people)) == (
        pose.width,
        pose.height,
        len(pose.people),
    )
    for a, b in zip(back.people, pose.people, strict=True):
        for (ax, ay, ac), (bx, by, bc) in zip(a.body, b.body, strict=True):
            assert ac == bc
            if bc > 0 and not _all_normalized(pose):
                assert abs(ax - bx) <= 1e-3 and abs(ay - by) <= 1e-3
        assert (a.hand_left is None) == (b.hand_left is None)
    twice = pose.copy()
    twice.mirror()
    twice.mirror()
    for a, b in zip(twice.people, pose.people, strict=True):
        for (ax, ay, ac), (bx, by, bc) in zip(a.body, b.body, strict=True):
            assert ac == bc and (bc == 0 or (abs(ax - bx) < 1e-6 and ay == by))
    img = render(pose)
    assert img.shape == (pose.height, pose.width, 3)


def _all_normalized(pose):
    # coordinates all in 0..1 are read back as normalized (scaled to the canvas)
    vals = [v for p in pose.people for x, y, c in p.body if c > 0 for v in (x, y)]
    vals += [v for p in pose.people for x, y, c in (p.hand_left or []) if c > 0 for v in (x, y)]
    return bool(vals) and max(vals) <= 1.0
