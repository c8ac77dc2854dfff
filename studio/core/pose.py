"""Human pose data for ControlNet openpose guides: people with the OpenPose BODY_18 keypoints
(COCO-18 order), optional hands (21 points each) and face (70 points), the OpenPose JSON
format that controlnet_aux and the ControlNet pose editors read and write, and rendering to
the control image the openpose ControlNets were trained on (Cao et al. 2017, "Realtime
Multi-Person 2D Pose Estimation using Part Affinity Fields"; colours and limb order as in
controlnet_aux's ``util.draw_bodypose``/``draw_handpose``/``draw_facepose``).

Coordinates are pixels of a ``width`` x ``height`` canvas; a keypoint with confidence 0 is
missing (JSON writes it as ``0, 0, 0``).
"""

from __future__ import annotations

import colorsys
import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from studio.core.atomic import atomic_write_bytes
from studio.core.errors import BadInput

BODY_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
N_BODY = 18
N_HAND = 21
N_FACE = 70

# Limbs as 0-based keypoint pairs, in the order (and so with the colours) of draw_bodypose.
LIMBS: tuple[tuple[int, int], ...] = tuple(
    (a - 1, b - 1)
    for a, b in (
        (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
        (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
    )
)  # fmt: skip
# RGB; limb i is drawn in COLORS[i] * 0.6, keypoint i in COLORS[i].
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
HAND_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19),
    (19, 20),
)  # fmt: skip
# Left/right swaps for mirroring (0-based body indices).
BODY_FLIP: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)

STICK_WIDTH = 4
POINT_RADIUS = 4

Point = tuple[float, float, float]  # x, y, confidence (0 = missing)

# A standing figure facing the viewer (so its right side is on the image's left), in units
# of a 1 x 1 box; the default skeleton is this scaled into the canvas.
_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.500, 0.110),  # nose
    (0.500, 0.220),  # neck
    (0.380, 0.220),  # r_shoulder
    (0.330, 0.380),  # r_elbow
    (0.300, 0.530),  # r_wrist
    (0.620, 0.220),  # l_shoulder
    (0.670, 0.380),  # l_elbow
    (0.700, 0.530),  # l_wrist
    (0.430, 0.530),  # r_hip
    (0.420, 0.730),  # r_knee
    (0.410, 0.930),  # r_ankle
    (0.570, 0.530),  # l_hip
    (0.580, 0.730),  # l_knee
    (0.590, 0.930),  # l_ankle
    (0.470, 0.085),  # r_eye
    (0.530, 0.085),  # l_eye
    (0.440, 0.100),  # r_ear
    (0.560, 0.100),  # l_ear
)


def _missing(n: int) -> list[Point]:
    return [(0.0, 0.0, 0.0)] * n


@dataclass
class Person:
    """One person: 18 body keypoints, and optionally 21 per hand and 70 face points."""

    body: list[Point] = field(default_factory=lambda: _missing(N_BODY))
    hand_left: list[Point] | None = None
    hand_right: list[Point] | None = None
    face: list[Point] | None = None

    def __post_init__(self) -> None:
        self.body = _check_points(self.body, N_BODY, "pose_keypoints_2d")
        if self.hand_left is not None:
            self.hand_left = _check_points(self.hand_left, N_HAND, "hand_left_keypoints_2d")
        if self.hand_right is not None:
            self.hand_right = _check_points(self.hand_right, N_HAND, "hand_right_keypoints_2d")
        if self.face is not None:
            self.face = _check_points(self.face, N_FACE, "face_keypoints_2d")

    def visible(self, index: int) -> bool:
        return self.body[index][2] > 0

    def bbox(self) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) of the visible body keypoints, or None."""
        pts = [(x, y) for x, y, c in self.body if c > 0]
        if not pts:
            return None
        xs, ys = zip(*pts, strict=True)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class Pose:
    """Everyone in one picture, on a ``width`` x ``height`` canvas."""

    width: int
    height: int
    people: list[Person] = field(default_factory=list)

    def copy(self) -> Pose:
        return copy.deepcopy(self)

    # -- editing ----------------------------------------------------------------------------
    def move_keypoint(
        self, person: int, index: int, x: float, y: float, carry: bool = True
    ) -> None:
        """Move body keypoint ``index`` of ``person`` to (x, y); a missing one becomes
        visible with confidence 1. With ``carry``, moving a wrist moves its hand along and
        moving the nose moves the face."""
        p = self._person(person)
        if not 0 <= index < N_BODY:
            raise IndexError(f"keypoint index {index} out of range")
        ox, oy, c = p.body[index]
        p.body[index] = (float(x), float(y), float(c or 1.0))
        if not carry or c <= 0:
            return
        dx, dy = float(x) - ox, float(y) - oy
        attr = {4: "hand_right", 7: "hand_left", 0: "face"}.get(index)
        points = getattr(p, attr) if attr else None
        if points is not None:
            setattr(
                p,
                attr,
                [(px + dx, py + dy, pc) if pc > 0 else (px, py, pc) for px, py, pc in points],
            )

    def set_visible(self, person: int, index: int, visible: bool) -> None:
        p = self._person(person)
        x, y, _ = p.body[index]
        p.body[index] = (x, y, 1.0 if visible else 0.0)

    def add_person(self, person: Person | None = None) -> int:
        """Append ``person`` (default: the template skeleton, placed beside the others).
        Returns its index."""
        if person is None:
            person = default_person(self.width, self.height, slot=len(self.people))
        self.people.append(person)
        return len(self.people) - 1

    def remove_person(self, index: int) -> Person:
        self._person(index)
        return self.people.pop(index)

    def mirror(self, person: int | None = None) -> None:
        """Flip horizontally about the canvas centre (one person, or everyone), swapping left
        and right so the result is still anatomically labelled."""
        targets = range(len(self.people)) if person is None else [person]
        for i in targets:
            self.people[i] = mirror_person(self._person(i), self.width)

    def _person(self, index: int) -> Person:
        if not 0 <= index < len(self.people):
            raise IndexError(f"person {index} out of range (pose has {len(self.people)})")
        return self.people[index]

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        people = []
        for p in self.people:
            d: dict = {"pose_keypoints_2d": _flatten(p.body)}
            d["hand_left_keypoints_2d"] = _flatten(p.hand_left) if p.hand_left else None
            d["hand_right_keypoints_2d"] = _flatten(p.hand_right) if p.hand_right else None
            d["face_keypoints_2d"] = _flatten(p.face) if p.face else None
            people.append(d)
        return {"people": people, "canvas_width": self.width, "canvas_height": self.height}

    @classmethod
    def from_dict(cls, data: dict, width: int | None = None, height: int | None = None) -> Pose:
        """Read the OpenPose JSON dict. ``width``/``height`` are used when the file has no
        canvas size. Normalized coordinates (all in 0..1, as some tools write) are scaled to
        the canvas."""
        if isinstance(data, list):  # a list of frames: take the first
            if not data:
                raise BadInput("pose JSON: empty list")
            data = data[0]
        if not isinstance(data, dict) or not isinstance(data.get("people"), list):
            raise BadInput('pose JSON: expected an object with a "people" list')
        w = data.get("canvas_width", width)
        h = data.get("canvas_height", height)
        if w is None or h is None:
            raise BadInput("pose JSON: no canvas_width/canvas_height; give the image size")
        try:
            w, h = int(w), int(h)
        except (TypeError, ValueError) as e:
            raise BadInput("pose JSON: canvas_width/canvas_height must be numbers") from e
        if w < 1 or h < 1:
            raise BadInput(f"pose JSON: bad canvas size {w}x{h}")
        people = []
        for i, d in enumerate(data["people"]):
            if not isinstance(d, dict):
                raise BadInput(f"pose JSON: person {i} is not an object")
            body = _unflatten(d.get("pose_keypoints_2d"), N_BODY, "pose_keypoints_2d")
            people.append(
                Person(
                    body=body if body is not None else _missing(N_BODY),
                    hand_left=_unflatten(d.get("hand_left_keypoints_2d"), N_HAND, "hand_left"),
                    hand_right=_unflatten(d.get("hand_right_keypoints_2d"), N_HAND, "hand_right"),
                    face=_unflatten(d.get("face_keypoints_2d"), N_FACE, "face"),
                )
            )
        pose = cls(w, h, people)
        if _is_normalized(pose):
            for p in pose.people:
                for name in ("body", "hand_left", "hand_right", "face"):
                    pts = getattr(p, name)
                    if pts is not None:
                        setattr(p, name, [(x * w, y * h, c) for x, y, c in pts])
        return pose

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str, width: int | None = None, height: int | None = None) -> Pose:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadInput(f"pose JSON: not valid JSON ({e.msg} at line {e.lineno})") from e
        return cls.from_dict(data, width, height)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if not path.parent.exists():
            raise BadInput(f"{path.parent}: output folder does not exist")
        atomic_write_bytes(path, self.to_json().encode("utf-8"))
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, width: int | None = None, height: int | None = None
    ) -> Pose:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise BadInput(f"{path.name}: no such file") from e
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{path.name}: cannot read ({e})") from e
        return cls.from_json(text, width, height)

    # -- rendering ---------------------------------------------------------------------------
    def render(self, hands: bool = True, face: bool = True) -> np.ndarray:
        return render(self, hands=hands, face=face)


def _check_points(points, n: int, name: str) -> list[Point]:
    pts = [tuple(float(v) for v in p) for p in points]
    if len(pts) != n or any(len(p) != 3 for p in pts):
        raise BadInput(f"pose: {name} needs {n} (x, y, confidence) points, got {len(pts)}")
    if any(not all(math.isfinite(v) for v in p) for p in pts):
        raise BadInput(f"pose: {name} has a non-finite coordinate")
    return pts  # type: ignore[return-value]


def _flatten(points: list[Point] | None) -> list[float]:
    out: list[float] = []
    for x, y, c in points or ():
        out += [0.0, 0.0, 0.0] if c <= 0 else [round(float(x), 3), round(float(y), 3), float(c)]
    return out


def _unflatten(values, n: int, name: str) -> list[Point] | None:
    if values is None or (isinstance(values, list) and not values):
        return None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise BadInput(f"pose JSON: {name} must be a list of numbers")
    if len(values) != 3 * n:
        raise BadInput(f"pose JSON: {name} has {len(values)} numbers, expected {3 * n}")
    return [
        (float(values[i]), float(values[i + 1]), float(values[i + 2])) for i in range(0, 3 * n, 3)
    ]


def _is_normalized(pose: Pose) -> bool:
    coords = [
        v
        for p in pose.people
        for pts in (p.body, p.hand_left, p.hand_right, p.face)
        if pts
        for x, y, c in pts
        if c > 0
        for v in (x, y)
    ]
    return bool(coords) and max(coords) <= 1.0 and max(pose.width, pose.height) > 2


# -- building poses -----------------------------------------------------------------------------
def default_person(width: int, height: int, slot: int = 0) -> Person:
    """The template skeleton, 80% of the canvas height (less if the canvas is narrow),
    centred. ``slot`` k > 0 places it beside the others (alternating right/left of centre,
    wrapping inside the canvas) so added people do not sit on top of each other."""
    size = min(0.8 * height, 0.8 * width / 0.45)
    step = 0.45 * size
    offset = ((slot + 1) // 2) * step * (1 if slot % 2 else -1)
    span = max(1.0, width - 0.45 * size)
    cx = width / 2.0 + offset
    if slot:
        cx = 0.225 * size + ((cx - 0.225 * size) % span)
    y0 = (height - size) / 2.0
    body = [(cx + (u - 0.5) * size, y0 + v * size, 1.0) for u, v in _TEMPLATE]
    return Person(body=body)


def default_pose(width: int, height: int, people: int = 1) -> Pose:
    """A canvas with ``people`` template skeletons (the no-detector starting point)."""
    pose = Pose(width, height)
    for _ in range(people):
        pose.add_person()
    return pose


def mirror_person(person: Person, width: float) -> Person:
    def flip(points: list[Point] | None, order: tuple[int, ...] | None) -> list[Point] | None:
        if points is None:
            return None
        src = points if order is None else [points[i] for i in order]
        return [((width - x) if c > 0 else 0.0, y, c) for x, y, c in src]

    return Person(
        body=flip(person.body, BODY_FLIP),  # type: ignore[arg-type]
        hand_left=flip(person.hand_right, None),
        hand_right=flip(person.hand_left, None),
        face=flip(person.face, None),
    )


# -- rendering ----------------------------------------------------------------------------------
def render(pose: Pose, hands: bool = True, face: bool = True) -> np.ndarray:
    """The OpenPose control image: (height, width, 3) uint8 RGB, limbs as filled ellipses in
    ``COLORS[i] * 0.6``, keypoints as dots in ``COLORS[i]``, hands (HSV-coloured edges) and
    face (white dots), on black."""
    canvas = np.zeros((pose.height, pose.width, 3), dtype=np.uint8)
    for person in pose.people:
        draw_body(canvas, person.body)
        if hands:
            for h in (person.hand_left, person.hand_right):
                if h is not None:
                    draw_hand(canvas, h)
        if face and person.face is not None:
            draw_face(canvas, person.face)
    return canvas


def draw_body(canvas: np.ndarray, body: list[Point]) -> None:
    for (a, b), color in zip(LIMBS, COLORS, strict=False):
        xa, ya, ca = body[a]
        xb, yb, cb = body[b]
        if ca <= 0 or cb <= 0:
            continue
        mx, my = (xa + xb) / 2.0, (ya + yb) / 2.0
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        polygon = cv2.ellipse2Poly(
            (int(mx), int(my)), (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1
        )
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in color])
    for (x, y, c), color in zip(body, COLORS, strict=True):
        if c <= 0:
            continue
        cv2.circle(canvas, (int(x), int(y)), POINT_RADIUS, color, thickness=-1)


def draw_hand(canvas: np.ndarray, hand: list[Point]) -> None:
    for i, (a, b) in enumerate(HAND_EDGES):
        xa, ya, ca = hand[a]
        xb, yb, cb = hand[b]
        if ca <= 0 or cb <= 0:
            continue
        r, g, bl = colorsys.hsv_to_rgb(i / float(len(HAND_EDGES)), 1.0, 1.0)
        color = (int(r * 255), int(g * 255), int(bl * 255))
        cv2.line(canvas, (int(xa), int(ya)), (int(xb), int(yb)), color, thickness=2)
    for x, y, c in hand:
        if c > 0:
            cv2.circle(canvas, (int(x), int(y)), 4, (0, 0, 255), thickness=-1)


def draw_face(canvas: np.ndarray, face: list[Point]) -> None:
    for x, y, c in face:
        if c > 0:
            cv2.circle(canvas, (int(x), int(y)), 3, (255, 255, 255), thickness=-1)
