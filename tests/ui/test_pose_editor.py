"""The pose editor driven like a user: drag keypoint handles with the mouse, undo/redo, and
people added, removed and mirrored; and the same inside the app on a pose layer."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDockWidget

from studio.core.pose import COLORS, Pose, default_pose, render
from studio.ui.pose_editor import PoseEditor, control_rgba, rgba_to_control


def drag(view, start: QPointF, delta: QPoint) -> None:
    """Press on scene point ``start``, move in two steps by ``delta`` screen px, release."""
    vp = view.viewport()
    a = view.mapFromScene(start)
    b = a + delta
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(vp, a + QPoint(delta.x() // 2, delta.y() // 2))
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


@pytest.fixture
def editor(qtbot):
    ed = PoseEditor(size=(256, 256))
    qtbot.addWidget(ed)
    ed.resize(420, 420)
    ed.show()
    qtbot.waitExposed(ed)
    ed.set_pose(default_pose(256, 256))
    return ed


def test_drag_keypoint_changes_control_image_and_undo_restores(editor):
    before_pose = editor.pose
    before = editor.control_image()
    assert np.array_equal(before, render(before_pose))
    handle = editor.handle(0, 4)  # right wrist
    x0, y0, _ = before_pose.people[0].body[4]
    assert (handle.pos().x(), handle.pos().y()) == pytest.approx((x0, y0))
    drag(editor, handle.pos(), QPoint(-40, 25))

    moved = editor.pose.people[0].body[4]
    scale = editor.transform().m11()
    assert moved[0] == pytest.approx(x0 - 40 / scale, abs=1.5)
    assert moved[1] == pytest.approx(y0 + 25 / scale, abs=1.5)
    after = editor.control_image()
    assert not np.array_equal(after, before)
    assert after[int(moved[1]), int(moved[0])].tolist() == list(COLORS[4])  # the wrist dot
    assert before[int(moved[1]), int(moved[0])].tolist() == [0, 0, 0]
    assert editor.undo_stack.count() == 1 and "wrist" in editor.undo_stack.text(0)

    editor.undo_stack.undo()
    assert editor.pose == before_pose
    assert np.array_equal(editor.control_image(), before)
    assert editor.handle(0, 4).pos() == QPointF(x0, y0)
    editor.undo_stack.redo()
    assert np.array_equal(editor.control_image(), after)


def test_click_without_moving_is_not_an_edit(editor):
    handle = editor.handle(0, 0)
    drag(editor, handle.pos(), QPoint(0, 0))
    assert editor.undo_stack.count() == 0


def test_add_remove_mirror_people_each_undoable(editor, qtbot):
    changes = []
    editor.pose_changed.connect(changes.append)
    editor.add_person()
    assert len(editor.pose.people) == 2 and len(editor.handles) == 36
    assert editor.current_person == 1
    first = editor.pose.people[0]
    editor.mirror(0)
    mirrored = editor.pose.people[0]
    assert mirrored.body[7][0] == pytest.approx(256 - first.body[4][0])  # r_wrist -> l_wrist
    editor.remove_person(1)
    assert len(editor.pose.people) == 1
    assert len(changes) == 3 and isinstance(changes[-1], Pose)
    for _ in range(3):
        editor.undo_stack.undo()
    assert editor.pose == default_pose(256, 256)
    assert len(editor.handles) == 18


def test_hide_keypoint_and_double_click_brings_it_back(editor):
    editor.hide_keypoint(0, 4)
    assert not editor.pose.people[0].visible(4) and editor.handle(0, 4) is None
    target = QPointF(60, 150)
    QTest.mouseDClick(
        editor.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        editor.mapFromScene(target),
    )
    x, y, c = editor.pose.people[0].body[4]
    assert c > 0 and abs(x - 60) < 2 and abs(y - 150) < 2


def test_json_save_load(editor, tmp_path):
    editor.move_keypoint(0, 0, 100, 30)
    path = tmp_path / "pose.json"
    editor.save_json(str(path))
    editor.reset()
    assert editor.pose.people[0].body[0][:2] != (100.0, 30.0)
    editor.load_json(str(path))
    assert editor.pose.people[0].body[0][:2] == (100.0, 30.0)
    editor.undo_stack.undo()
    assert editor.pose.people[0].body[0][:2] != (100.0, 30.0)


def test_control_rgba_round_trip():
    control = default_pose(64, 64).render()
    rgba = control_rgba(control)
    assert rgba.shape == (64, 64, 4) and (rgba[..., 3][control.max(axis=2) == 0] == 0).all()
    assert np.array_equal(rgba_to_control(rgba), control)


# -- in the app ----------------------------------------------------------------------------------
def show_control_panel(window, qtbot):
    panel = window.panels["Control"]
    dock = panel.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    dock.show()
    dock.raise_()
    qtbot.waitExposed(panel.editor)
    return panel


def test_in_app_drag_updates_pose_layer_and_undo_restores(window, qtbot, photos):
    window.import_images([str(photos.astronaut)])
    panel = show_control_panel(window, qtbot)
    panel.default_skeleton()
    layer = window.model.doc.layer(panel.pose_layer_uid)
    assert layer.kind == "pose"
    original = layer.pixels.copy()
    assert np.array_equal(rgba_to_control(original), render(default_pose(512, 512)))
    steps = window.model.undo.count()

    panel.editor.resize(400, 400)
    panel.editor.fit()
    handle = panel.editor.handle(0, 7)  # left wrist
    drag(panel.editor, handle.pos(), QPoint(30, -20))

    assert window.model.undo.count() == steps + 1
    layer = window.model.doc.layer(panel.pose_layer_uid)
    assert not np.array_equal(layer.pixels, original)
    edited = Pose.from_dict(layer.metadata["pose"])
    assert np.array_equal(rgba_to_control(layer.pixels), render(edited))
    (control,) = [c for c in panel.control_inputs() if c.kind == "pose"]
    assert np.array_equal(control.image, render(edited))

    window.model.undo.undo()
    layer = window.model.doc.layer(panel.pose_layer_uid)
    assert np.array_equal(layer.pixels, original)
    restored = Pose.from_dict(layer.metadata["pose"]).people[0].body
    assert np.allclose(restored, default_pose(512, 512).people[0].body, atol=1e-3)
    assert panel.editor.pose == default_pose(512, 512)
