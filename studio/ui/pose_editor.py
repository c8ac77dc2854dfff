"""An editable OpenPose skeleton: keypoints are draggable handles over the rendered control
image (bones in the standard OpenPose colours, see ``studio.core.pose``), with people added,
removed and mirrored, and OpenPose JSON saved and loaded.

Every change is one ``PoseEditCommand`` (a before/after snapshot of the pose) pushed through
the ``push`` callable the editor was given (the host's ``push_command``, so pose edits share
the document's undo history), or onto the editor's own undo stack when it has none. The
editor emits ``pose_changed`` after every change, undo and redo included; ``control_image()``
is ``studio.core.pose.render`` of the current pose.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPen,
    QResizeEvent,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QMenu,
    QStyleOptionGraphicsItem,
    QWidget,
)

from studio.core.pose import BODY_KEYPOINTS, COLORS, Pose, default_pose, render
from studio.ui.commands import PoseEditCommand
from studio.ui.qimage import qimage_from_array

HANDLE_RADIUS = 6.0  # screen pixels: handles keep their size at any zoom


def control_rgba(control: np.ndarray) -> np.ndarray:
    """An RGB control image (drawing on black) as RGBA with black transparent, so it can lie
    over a picture; ``rgba_to_control`` undoes it."""
    alpha = (control.max(axis=2) > 0).astype(np.uint8) * 255
    return np.dstack([control, alpha])


def rgba_to_control(rgba: np.ndarray) -> np.ndarray:
    """RGBA -> RGB over black (transparent = black)."""
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        a = rgba[..., 3:4].astype(np.uint16)
        return ((rgba[..., :3].astype(np.uint16) * a + 127) // 255).astype(np.uint8)
    return rgba[..., :3] if rgba.ndim == 3 else np.dstack([rgba] * 3)


class _ImageItem(QGraphicsItem):
    """Draws a QImage at the scene origin (the reference picture or the control image)."""

    def __init__(self) -> None:
        super().__init__()
        self.image = QImage()

    def set_image(self, image: QImage) -> None:
        self.prepareGeometryChange()
        self.image = image
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return QRectF(0, 0, self.image.width(), self.image.height())

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if not self.image.isNull():
            painter.drawImage(QPointF(0, 0), self.image)


class KeypointHandle(QGraphicsEllipseItem):
    """A draggable body keypoint of one person."""

    def __init__(self, editor: PoseEditor, person: int, index: int) -> None:
        r = HANDLE_RADIUS
        super().__init__(-r, -r, 2 * r, 2 * r)
        self.editor = editor
        self.person = person
        self.index = index
        self._pressed_at: QPointF | None = None
        color = QColor(*COLORS[index])
        self.setBrush(QBrush(color))
        self.setPen(QPen(QColor(255, 255, 255), 1.5))
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsMovable, True)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges, True)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self.setToolTip(f"Person {person + 1}: {BODY_KEYPOINTS[index].replace('_', ' ')}")
        self.setZValue(10 + (1 if editor.current_person == person else 0))

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self._pressed_at = QPointF(self.pos())
            self.editor.select_person(self.person)
        super().mousePressEvent(event)

    def itemChange(self, change, value):  # noqa: N802 - Qt API
        if (
            change == QGraphicsItem.GraphicsItemChange.ItemPositionHasChanged
            and self._pressed_at is not None
        ):
            self.editor._dragging(self.person, self.index, self.pos())
        return super().itemChange(change, value)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().mouseReleaseEvent(event)
        start, self._pressed_at = self._pressed_at, None
        if start is not None and start != self.pos():
            self.editor.move_keypoint(self.person, self.index, self.pos().x(), self.pos().y())

    def contextMenuEvent(self, event) -> None:  # noqa: N802 - Qt API
        menu = QMenu()
        hide = menu.addAction(f"Remove {BODY_KEYPOINTS[self.index].replace('_', ' ')}")
        remove_person = menu.addAction("Remove this person")
        mirror = menu.addAction("Mirror this person")
        chosen = menu.exec(event.screenPos())
        if chosen is hide:
            self.editor.hide_keypoint(self.person, self.index)
        elif chosen is remove_person:
            self.editor.remove_person(self.person)
        elif chosen is mirror:
            self.editor.mirror(self.person)


class PoseEditor(QGraphicsView):
    """A view that edits a :class:`Pose` with draggable keypoint handles."""

    pose_changed = Signal(object)  # the new Pose (a copy)
    person_selected = Signal(int)

    def __init__(
        self,
        push: Callable[[QUndoCommand], None] | None = None,
        parent: QWidget | None = None,
        size: tuple[int, int] = (512, 512),
    ) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self._push = push or self.undo_stack.push
        self._pose = Pose(*size)
        self.current_person = 0
        self.handles: list[KeypointHandle] = []
        self._syncing = False
        self.scene_ = QGraphicsScene(self)
        self.setScene(self.scene_)
        self.setBackgroundBrush(QBrush(QColor(24, 24, 24)))
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setMinimumSize(160, 160)
        self.reference_item = _ImageItem()
        self.reference_item.setOpacity(0.45)
        self.control_item = _ImageItem()
        self.control_item.setZValue(1)
        self.scene_.addItem(self.reference_item)
        self.scene_.addItem(self.control_item)
        self._rebuild()

    # -- state ----------------------------------------------------------------------------------
    @property
    def pose(self) -> Pose:
        """A copy of the current pose."""
        return self._pose.copy()

    def control_image(self) -> np.ndarray:
        """The OpenPose control image of the current pose, (H, W, 3) uint8 RGB on black."""
        return render(self._pose)

    def set_pose(self, pose: Pose) -> None:
        """Show ``pose`` (no undo step: commands and loaders call this)."""
        self._pose = pose.copy()
        if self.current_person >= len(self._pose.people):
            self.current_person = max(0, len(self._pose.people) - 1)
        self._rebuild()
        self.pose_changed.emit(self._pose.copy())

    def set_reference(self, image: np.ndarray | None) -> None:
        """A picture shown dimmed under the skeleton to pose against (None = black)."""
        self.reference_item.set_image(qimage_from_array(image) if image is not None else QImage())

    def select_person(self, index: int) -> None:
        if index != self.current_person and 0 <= index < len(self._pose.people):
            self.current_person = index
            for h in self.handles:
                h.setZValue(10 + (1 if h.person == index else 0))
            self.person_selected.emit(index)

    # -- edits (each one undoable) --------------------------------------------------------------
    def edit(self, after: Pose, text: str) -> None:
        """Push the change from the current pose to ``after`` as one undo step."""
        self._push(PoseEditCommand(self.set_pose, self._pose, after, text))

    def load_pose(self, pose: Pose, text: str = "Set pose") -> None:
        self.edit(pose, text)

    def move_keypoint(self, person: int, index: int, x: float, y: float) -> None:
        after = self._pose.copy()
        x = min(max(0.0, x), after.width - 1.0)
        y = min(max(0.0, y), after.height - 1.0)
        after.move_keypoint(person, index, x, y)
        self.edit(after, f"Move {BODY_KEYPOINTS[index].replace('_', ' ')}")

    def hide_keypoint(self, person: int, index: int) -> None:
        after = self._pose.copy()
        after.set_visible(person, index, False)
        self.edit(after, f"Remove {BODY_KEYPOINTS[index].replace('_', ' ')}")

    def add_person(self) -> None:
        after = self._pose.copy()
        self.current_person = after.add_person()
        self.edit(after, "Add person")

    def remove_person(self, index: int | None = None) -> None:
        index = self.current_person if index is None else index
        if not 0 <= index < len(self._pose.people):
            return
        after = self._pose.copy()
        after.remove_person(index)
        self.edit(after, "Remove person")

    def mirror(self, index: int | None = None) -> None:
        """Mirror one person (default: the selected one) or, with index=-1, everyone."""
        if not self._pose.people:
            return
        index = self.current_person if index is None else index
        after = self._pose.copy()
        after.mirror(None if index < 0 else index)
        self.edit(after, "Mirror pose" if index < 0 else "Mirror person")

    def reset(self, width: int | None = None, height: int | None = None) -> None:
        """Replace everything with one default skeleton (the no-detector starting point)."""
        w = width or self._pose.width
        h = height or self._pose.height
        self.current_person = 0
        self.edit(default_pose(w, h), "Default skeleton")

    # -- files ----------------------------------------------------------------------------------
    def save_json(self, path: str) -> None:
        """Write the pose as OpenPose JSON (raises BadInput/StudioError on failure)."""
        self._pose.save(path)

    def load_json(self, path: str) -> None:
        """Read OpenPose JSON (one undo step); a file without a canvas size takes the
        editor's."""
        self.load_pose(Pose.load(path, self._pose.width, self._pose.height), "Load pose")

    # -- view -----------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        pose = self._pose
        self._syncing = True
        try:
            wanted = [
                (p, i, x, y)
                for p, person in enumerate(pose.people)
                for i, (x, y, c) in enumerate(person.body)
                if c > 0
            ]
            if [(h.person, h.index) for h in self.handles] == [(p, i) for p, i, _, _ in wanted]:
                # Same keypoints: move the handles (never delete the one being released).
                for h, (_, _, x, y) in zip(self.handles, wanted, strict=True):
                    if h.pos() != QPointF(x, y):
                        h.setPos(x, y)
                return
            for h in self.handles:
                self.scene_.removeItem(h)
            self.handles = []
            for p, person in enumerate(pose.people):
                for i, (x, y, c) in enumerate(person.body):
                    if c <= 0:
                        continue
                    handle = KeypointHandle(self, p, i)
                    handle.setPos(x, y)
                    self.scene_.addItem(handle)
                    self.handles.append(handle)
        finally:
            self._syncing = False
            self._show_control(pose)
            if self.scene_.sceneRect() != QRectF(0, 0, pose.width, pose.height):
                self.scene_.setSceneRect(QRectF(0, 0, pose.width, pose.height))
                self.fit()

    def _show_control(self, pose: Pose) -> None:
        self.control_item.set_image(qimage_from_array(control_rgba(render(pose))))

    def _dragging(self, person: int, index: int, pos: QPointF) -> None:
        """Live bones while a handle is dragged (the undo step is pushed on release)."""
        if self._syncing:
            return
        live = self._pose.copy()
        live.move_keypoint(person, index, pos.x(), pos.y())
        self._show_control(live)

    def handle(self, person: int, index: int) -> KeypointHandle | None:
        for h in self.handles:
            if h.person == person and h.index == index:
                return h
        return None

    def fit(self) -> None:
        if self._pose.width and self._pose.height:
            self.fitInView(
                QRectF(0, 0, self._pose.width, self._pose.height),
                Qt.AspectRatioMode.KeepAspectRatio,
            )

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self.fit()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.fit()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        """Double-click on empty canvas: bring back the selected person's missing keypoint
        nearest to where its template position would be, at the click."""
        item = self.itemAt(event.position().toPoint())
        if isinstance(item, KeypointHandle) or not self._pose.people:
            return super().mouseDoubleClickEvent(event)
        person = self._pose.people[self.current_person]
        missing = [i for i in range(len(person.body)) if person.body[i][2] <= 0]
        if not missing:
            return super().mouseDoubleClickEvent(event)
        pos = self.mapToScene(event.position().toPoint())
        template = default_pose(self._pose.width, self._pose.height).people[0].body
        bbox = person.bbox()
        if bbox is not None:  # compare in the person's own frame, not the template's
            tb = default_pose(self._pose.width, self._pose.height).people[0].bbox()
            sx = (bbox[2] - bbox[0]) / max(1.0, tb[2] - tb[0])
            sy = (bbox[3] - bbox[1]) / max(1.0, tb[3] - tb[1])
            template = [
                (bbox[0] + (x - tb[0]) * sx, bbox[1] + (y - tb[1]) * sy, c) for x, y, c in template
            ]
        nearest = min(
            missing, key=lambda i: (template[i][0] - pos.x()) ** 2 + (template[i][1] - pos.y()) ** 2
        )
        self.move_keypoint(self.current_person, nearest, pos.x(), pos.y())
