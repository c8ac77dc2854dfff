"""The Control panel's pose helpers: is a detector installed, where detected people land in
the document, and a body keypoint dragged on the main canvas (``CanvasView.pose_handler``)."""

from __future__ import annotations

from studio.core.pose import Pose

NO_POSE_DETECTOR = (
    "No pose detector is installed: download “DWPose (ONNX)” or “OpenPose body/hand/face "
    "detector” in the Models panel, or press “…” to choose a detector folder. You can place a "
    "default skeleton instead."
)


def pose_detector_installed() -> bool:
    """Whether any pose detector is installed (catalog, imported or in a model folder); True
    when that can't be told (the job then says)."""
    try:
        from studio.engine.models import list_models  # torch-free

        return bool(list_models("pose-detector"))
    except Exception:  # noqa: BLE001 - a broken models folder: let the job decide
        return True


def in_document(found: Pose, offset: tuple[int, int], size: tuple[int, int]) -> Pose:
    """The people ``found`` in a crop at ``offset`` of the document, in a pose of the
    document's ``size`` (the crop's size when that is 0): keypoints moved by the offset,
    the missing ones (confidence 0) kept at (0, 0, 0)."""
    x, y = offset
    w, h = size
    pose = Pose(w or found.width, h or found.height)
    for person in found.people:  # crop coordinates -> document coordinates
        for name in ("body", "hand_left", "hand_right", "face"):
            pts = getattr(person, name)
            if pts is not None:
                moved = [(px + x, py + y, c) if c > 0 else (0.0, 0.0, 0.0) for px, py, c in pts]
                setattr(person, name, moved)
        pose.people.append(person)
    return pose


def found_text(n: int) -> str:
    """What the panel says after a detection that found ``n`` people."""
    if n:
        return f"Found {n} {'person' if n == 1 else 'people'}."
    return "Nobody found; place a default skeleton instead."


class KeypointDrag:
    """A body keypoint of ``editor``'s pose dragged on the main canvas: followed live, one
    undo step on release, as the side editor makes."""

    def __init__(self, editor) -> None:
        self.editor = editor  # the panel's PoseEditor
        self._drag: tuple | None = None  # (person, keypoint, pose before)

    def begin(self, x: float, y: float, radius: float) -> bool:
        """Start dragging the visible body keypoint nearest (x, y) (layer pixels), if one is
        within ``radius``."""
        pose = self.editor.pose
        best = None
        for pi, person in enumerate(pose.people):
            for ki, (kx, ky, c) in enumerate(person.body):
                d = (kx - x) ** 2 + (ky - y) ** 2
                if c > 0 and d <= radius**2 and (best is None or d < best[0]):
                    best = (d, pi, ki)
        if best is None:
            return False
        self._drag = (best[1], best[2], pose.copy())
        return True

    def move(self, x: float, y: float) -> None:
        """Follow the mouse live (the pose layer is redrawn; no undo step yet)."""
        if self._drag is not None:
            person, index, before = self._drag
            moved = before.copy()
            moved.move_keypoint(person, index, x, y)
            self.editor.set_pose(moved)

    def end(self, x: float, y: float) -> None:
        """One undo step for the whole drag."""
        if self._drag is None:
            return
        person, index, before = self._drag
        self._drag = None
        self.editor.set_pose(before)
        self.editor.move_keypoint(person, index, x, y)
