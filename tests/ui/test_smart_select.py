"""The Smart select tool driven like a user: W, a click, Alt+click, a drag; the candidate's
outline; Enter / Shift+Enter / Alt+Enter onto the mask, each one undo step.

The engine job here is a stand-in with a known answer (a square around each included point,
the box itself, minus a square around each excluded point), so the test checks what the
window does with a mask; SAM 2's own path is tested in tests/engine/vision."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.engine.jobs import SegmentRequest
from studio.engine.jobs import runner as runner_module
from tests.ui.test_ui_canvas import drop, view_point

HALF = 20
REQUESTS: list[SegmentRequest] = []


def known_segment(ctx, request: SegmentRequest):
    """A mask anyone can compute: squares of side 2 * HALF at the points, the box."""
    REQUESTS.append(request)
    h, w = request.image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    if request.box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in request.box)
        mask[y0:y1, x0:x1] = 255
    for x, y, label in request.points:
        x, y = int(x), int(y)
        mask[max(0, y - HALF) : y + HALF, max(0, x - HALF) : x + HALF] = 255 if label else 0
    images = [mask] if (request.points or request.box is not None) else []
    if request.text == "two cats":  # two instances: squares at (50, 50) and (300, 200)
        images = []
        for x, y in ((50, 50), (300, 200)):
            one = np.zeros((h, w), np.uint8)
            one[y - HALF : y + HALF, x - HALF : x + HALF] = 255
            images.append(one)
    return ctx.finished(images, [{}] * len(images))


@pytest.fixture
def smart(window, photos, monkeypatch, qtbot):
    REQUESTS.clear()
    handlers = dict(runner_module.HANDLERS)
    handlers[SegmentRequest] = f"{__name__}:known_segment"
    monkeypatch.setattr(runner_module, "HANDLERS", handlers)
    drop(window.canvas, [photos.chelsea])  # 451 x 300
    window.show()
    qtbot.waitExposed(window)
    return window


def _press_key(window, key: str) -> None:
    QTest.keyClick(window.canvas, key)


def _click(window, x, y, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    vp = window.canvas.viewport()
    QTest.mouseClick(vp, Qt.MouseButton.LeftButton, modifiers, view_point(window.canvas, x, y))


def _wait_idle(qtbot, window) -> None:
    qtbot.waitUntil(lambda: window.smart_select._running is None, timeout=10_000)


def test_w_picks_the_tool_and_embeds_at_once(smart, qtbot):
    window = smart
    QTest.keyClick(window.canvas, Qt.Key.Key_W)
    assert window.canvas.tool == "smart"
    qtbot.waitUntil(lambda: len(REQUESTS) == 1, timeout=10_000)
    first = REQUESTS[0]
    assert first.points == () and first.box is None  # the embedding only
    assert first.image.shape == (300, 451, 3)


def test_click_shows_the_candidate_and_enter_makes_it_the_mask(smart, qtbot):
    window = smart
    QTest.keyClick(window.canvas, Qt.Key.Key_W)
    _wait_idle(qtbot, window)
    _click(window, 100, 100)
    qtbot.waitUntil(lambda: window.smart_select.candidate is not None, timeout=10_000)
    sel = window.smart_select
    assert sel.points == [(pytest.approx(100, abs=1), pytest.approx(100, abs=1), 1)]
    assert sel.item.isVisible() and sel.ants.isVisible() and not sel.ants.path.isEmpty()
    box = sel.ants.path.boundingRect()  # the outline surrounds the square
    assert box.width() == pytest.approx(2 * HALF, abs=2) and box.height() == pytest.approx(
        2 * HALF, abs=2
    )
    before = window.model.doc.mask_layer.pixels.copy()
    QTest.keyClick(window.canvas, Qt.Key.Key_Return)
    mask = window.model.doc.mask_layer.pixels
    assert (
        mask[100, 100] == 255
        and mask[100, 140] == 0
        and (mask > 0).sum() == pytest.approx((2 * HALF) ** 2, rel=0.1)
    )
    assert sel.candidate is None and not sel.item.isVisible()
    window.model.undo.undo()
    assert np.array_equal(window.model.doc.mask_layer.pixels, before)


def test_alt_click_excludes_and_shift_enter_adds(smart, qtbot):
    window = smart
    window.model.set_mask(np.pad(np.full((10, 10), 255, np.uint8), ((0, 290), (0, 441))))
    QTest.keyClick(window.canvas, Qt.Key.Key_W)
    _wait_idle(qtbot, window)
    _click(window, 200, 150)
    _wait_idle(qtbot, window)
    _click(window, 215, 150, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: len(window.smart_select.points) == 2, timeout=10_000)
    _wait_idle(qtbot, window)
    assert window.smart_select.points[1][2] == 0
    QTest.keyClick(window.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    mask = window.model.doc.mask_layer.pixels
    assert mask[5, 5] == 255  # the old mask is kept
    assert mask[150, 185] == 255 and mask[150, 215] == 0  # included, then excluded


def test_drag_is_a_box_and_alt_enter_subtracts(smart, qtbot):
    window = smart
    window.model.set_mask(np.full((300, 451), 255, np.uint8))
    QTest.keyClick(window.canvas, Qt.Key.Key_W)
    _wait_idle(qtbot, window)
    vp = window.canvas.viewport()
    a, b = view_point(window.canvas, 50, 60), view_point(window.canvas, 150, 120)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    qtbot.waitUntil(lambda: window.smart_select.candidate is not None, timeout=10_000)
    x0, y0, x1, y1 = window.smart_select.box
    assert (x0, y0) == (pytest.approx(50, abs=2), pytest.approx(60, abs=2))
    assert (x1, y1) == (pytest.approx(150, abs=2), pytest.approx(120, abs=2))
    QTest.keyClick(window.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.AltModifier)
    mask = window.model.doc.mask_layer.pixels
    assert mask[90, 100] == 0 and mask[200, 300] == 255


def test_escape_drops_the_points_and_another_tool_hides_the_candidate(smart, qtbot):
    window = smart
    QTest.keyClick(window.canvas, Qt.Key.Key_W)
    _wait_idle(qtbot, window)
    _click(window, 100, 100)
    qtbot.waitUntil(lambda: window.smart_select.candidate is not None, timeout=10_000)
    QTest.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert window.smart_select.points == [] and not window.smart_select.item.isVisible()
    _click(window, 100, 100)
    qtbot.waitUntil(lambda: window.smart_select.candidate is not None, timeout=10_000)
    QTest.keyClick(window.canvas, Qt.Key.Key_B)
    assert window.canvas.tool == "brush" and window.smart_select.candidate is None


def test_select_by_words_makes_every_instance_the_candidate(smart, qtbot):
    window = smart
    job = window.smart_select.select_words("two cats")
    assert job is not None and window.canvas.tool == "smart"
    qtbot.waitUntil(lambda: window.smart_select.candidate is not None, timeout=10_000)
    assert REQUESTS[-1].text == "two cats" and REQUESTS[-1].points == ()
    QTest.keyClick(window.canvas, Qt.Key.Key_Return)
    mask = window.model.doc.mask_layer.pixels
    assert mask[50, 50] == 255 and mask[200, 300] == 255 and mask[120, 150] == 0
    assert (mask > 0).sum() == 2 * (2 * HALF) ** 2


def test_select_by_words_that_finds_nothing_says_so(smart, qtbot, monkeypatch):
    window = smart
    said = []
    monkeypatch.setattr(window, "show_status", lambda text, ms=6000: said.append(text))
    window.smart_select.select_words("a unicorn")
    qtbot.waitUntil(lambda: any("Nothing found" in t for t in said), timeout=10_000)
    assert window.smart_select.candidate is None


def test_a_changed_picture_is_flattened_again_for_the_next_click(smart, qtbot):
    window = smart
    QTest.keyClick(window.canvas, Qt.Key.Key_W)
    _wait_idle(qtbot, window)
    _click(window, 100, 100)
    _wait_idle(qtbot, window)
    first = REQUESTS[-1].image
    layer = next(la for la in window.model.doc.layers if la.kind == "image")
    pixels = layer.pixels.copy()
    pixels[:, :, :3] = 7
    window.model.set_pixels(layer.uid, pixels, "Paint")
    _click(window, 120, 100)
    _wait_idle(qtbot, window)
    assert first[0, 0, 0] != 7 and REQUESTS[-1].image[0, 0, 0] == 7
