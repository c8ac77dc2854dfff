"""Placing a default skeleton makes it the thing the next drag edits: its keypoints move
under the pointer with the brush or the Select tool, and nothing is painted on the photo."""

from __future__ import annotations

import numpy as np
import pytest
from test_ui_canvas import stroke


@pytest.mark.parametrize("tool", ["brush", "select"])
def test_first_drag_after_default_skeleton_moves_a_keypoint(qtbot, window, photos, tool):
    window.documents.open_paths([str(photos.astronaut)])
    window.show_panel("Control")
    control = window.panels["Control"]
    photo = next(la for la in window.model.doc.layers if la.kind == "image")
    photo_before = photo.pixels.copy()
    control.template_button.click()  # no layer picked by hand afterwards
    pose = next(la for la in window.model.doc.layers if la.kind == "pose")
    nose = control.editor.pose.people[0].body[0]
    steps = window.model.undo.count()
    window.canvas.actual_size()
    window.canvas.centerOn(*nose[:2])
    window.canvas.set_tool(tool)
    target = (nose[0] + 30, nose[1] + 20)
    stroke(window.canvas, [nose[:2], (nose[0] + 15, nose[1] + 10), target])
    moved = control.editor.pose.people[0].body[0]
    assert abs(moved[0] - target[0]) <= 1 and abs(moved[1] - target[1]) <= 1
    assert pose.metadata["pose"]["people"][0]["pose_keypoints_2d"][0] == moved[0]
    assert window.model.undo.count() == steps + 1
    assert np.array_equal(photo.pixels, photo_before)  # nothing painted on the photo
    assert window.model.doc.selection is None  # and no selection drawn instead
    assert window.mask() is None


def test_select_tool_away_from_keypoints_still_selects(qtbot, window, photos):
    window.documents.open_paths([str(photos.astronaut)])
    control = window.panels["Control"]
    control.template_button.click()
    window.canvas.actual_size()
    window.canvas.centerOn(256, 256)
    window.canvas.set_tool("select")
    stroke(window.canvas, [(4, 4), (60, 40), (120, 90)])  # far from the skeleton
    assert window.model.doc.selection is not None
