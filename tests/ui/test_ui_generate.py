"""The Generate panel: queue and per-job cancel, progress, results as layers + history,
img2img/inpaint requests from the canvas, A1111 parameters from a dropped PNG, catalog
recommendations. The engine handler is replaced by a slow fake here (the real tiny-model run
is in test_ui_worker.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QToolButton

from studio.core.imageio import load_image, save_image
from studio.engine.jobs import runner as runner_mod
from studio.engine.jobs.requests import GenerateRequest

SB = QMessageBox.StandardButton
SEEN: list[GenerateRequest] = []


def slow_generate(ctx, request: GenerateRequest):
    SEEN.append(request)
    for i in range(request.steps):
        ctx.check()
        time.sleep(0.03)
        ctx.progress(i + 1, request.steps)
        ctx.preview(
            np.full((request.height // 8, request.width // 8, 3), 90, np.uint8),
            i + 1,
            request.steps,
        )
    images = [
        np.full((request.height, request.width, 3), 40 + 50 * k, np.uint8)
        for k in range(request.count)
    ]
    meta = [
        {
            "prompt": request.prompt,
            "seed": request.seed + k,
            "steps": request.steps,
            "cfg_scale": request.guidance,
            "model": request.model,
        }
        for k in range(request.count)
    ]
    return ctx.finished(images, meta)


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setitem(runner_mod.HANDLERS, GenerateRequest, f"{__name__}:slow_generate")
    SEEN.clear()


@pytest.fixture
def panel(qtbot, window, fake_engine):
    window.worker.start(warm_up=False)
    qtbot.waitUntil(lambda: not window.worker.jobs(), timeout=10000)  # e.g. a models scan
    p = window.panels["Generate"]
    p.model_combo.setCurrentText("fake-model")
    p.prompt.setPlainText("a lighthouse")
    return p


def accept_all(panel):
    """Accept every staged result (each becomes a layer)."""
    while panel.staging.items:
        panel.staging.accept_button.click()


def queue_buttons(panel):
    out = []
    for i in range(panel.queue_list.count()):
        row = panel.queue_list.itemWidget(panel.queue_list.item(i))
        out.append(row.findChild(QToolButton))
    return out


def test_generate_queues_and_each_job_is_cancellable(qtbot, window, panel, photos):
    window.open_paths([photos.chelsea])
    panel.steps.setValue(60)  # ~2 s per job
    for _ in range(3):
        panel.generate_button.click()
    assert panel.queue_list.count() == 3 and panel.queue_list.isVisible()
    assert panel.generate_button.text() == "Queue (3)"
    assert panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.progress.format().startswith("Step"), timeout=10000)
    qtbot.waitUntil(lambda: "left" in panel.progress.format(), timeout=10000)  # an ETA
    buttons = queue_buttons(panel)
    assert len(buttons) == 3
    buttons[2].click()  # cancel the last queued job
    assert panel.queue_list.count() == 2
    panel.cancel_button.click()  # cancel the running one; the second job starts
    qtbot.waitUntil(
        lambda: window.worker.running_job is not None and panel.queue_list.count() == 1,
        timeout=10000,
    )
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=20000)
    assert len(SEEN) == 2  # the cancelled queued job never ran
    accept_all(panel)
    gen = [la for la in window.model.doc.layers if la.kind == "image" and la.metadata]
    assert len(gen) == 1
    assert gen[0].offset == (0, 0) and gen[0].size == (451, 300)  # the whole image
    assert len(window.model.doc.history) == 1 and panel.history.count() == 1
    assert panel.generate_button.text() == "Generate" and not panel.queue_list.isVisible()


def test_results_land_in_region_as_one_undo_step_each(qtbot, window, panel, photos):
    window.open_paths([photos.astronaut])
    window.model.set_selection((128, 64, 96, 80))
    panel.count.setValue(2)
    panel.steps.setValue(2)
    assert (panel.width_spin.value(), panel.height_spin.value()) == (96, 80)
    n = window.model.undo.count()
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    # staged in place first; only accepted images become layers
    assert not [la for la in window.model.doc.layers if la.metadata]
    assert window.model.undo.count() == n
    staged = window.canvas.staged_item
    assert staged.isVisible() and staged.rect.getRect() == (128, 64, 96, 80)
    assert panel.staging.label.text() == "Result 2 of 2" or "of 2" in panel.staging.label.text()
    accept_all(panel)
    assert not staged.isVisible() and panel.staging.isHidden()
    layers = [la for la in window.model.doc.layers if la.metadata]
    assert [la.offset for la in layers] == [(128, 64), (128, 64)]
    assert window.model.undo.count() == n + 2
    assert tuple(window.composite()[100, 150, :3]) == (90, 90, 90)  # the top result
    assert panel.previews_received >= 1
    window.act_undo.trigger()
    assert tuple(window.composite()[100, 150, :3]) == (40, 40, 40)


def test_txt2img_on_empty_document_creates_it(qtbot, window, panel):
    panel.width_spin.setValue(96)
    panel.height_spin.setValue(64)
    panel.steps.setValue(2)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    accept_all(panel)
    assert window.image_size() == (96, 64)
    assert SEEN[-1].init_image is None and SEEN[-1].mask is None


def test_img2img_and_inpaint_requests_use_region_and_mask(qtbot, window, panel, photos):
    window.open_paths([photos.astronaut])
    window.model.set_selection((64, 32, 128, 96))
    panel.source.setCurrentIndex(panel.source.findData("img2img"))
    panel.strength.setValue(0.4)
    request, region = panel.build_request()
    assert region == (64, 32, 128, 96)
    assert request.init_image.shape == (96, 128, 3) and request.strength == 0.4
    assert np.array_equal(request.init_image, window.composite()[32:128, 64:192, :3])

    panel.source.setCurrentIndex(panel.source.findData("inpaint"))
    assert panel.generate() is None  # no mask yet: a clear message instead of a job
    assert "mask" in window._errors[-1].text().lower()
    mask = np.zeros((512, 512), np.uint8)
    mask[40:60, 70:90] = 255
    window.set_mask(mask)
    request, _ = panel.build_request()
    assert request.mask.shape == (96, 128)
    assert request.mask[10, 10] == 255 and request.mask[50, 100] == 0


def test_dropped_a1111_png_offers_its_parameters(qtbot, window, panel, tmp_path):
    path = tmp_path / "a1111.png"
    text = (
        "a castle on a hill, golden hour\nNegative prompt: fog\n"
        "Steps: 12, Sampler: Euler a, CFG scale: 5.5, Seed: 77, Size: 64x64, Model: foo"
    )
    save_image(path, np.zeros((64, 64, 3), np.uint8), parameters=text)
    window.answers.queue = [SB.Yes]
    window.on_files_dropped([str(path)])
    assert window.answers.asked[-1][0] == "Generation parameters"
    assert panel.prompt.toPlainText() == "a castle on a hill, golden hour"
    assert panel.negative.toPlainText() == "fog"
    assert panel.steps.value() == 12 and panel.guidance.value() == 5.5
    assert panel.seed.value() == 77 and not panel.random_seed.isChecked()
    assert panel.scheduler.currentText() == "Euler a"
    assert panel.model_combo.currentText() == "foo"


def test_32_bit_seeds_from_a1111_load_exactly(window, panel, photos):
    """A1111 and `studio generate` draw seeds below 2**32: more than a QSpinBox holds."""
    window.open_paths([photos.chelsea])
    panel.apply_parameters({"prompt": "x", "seed": 3_000_000_123})
    assert not panel.random_seed.isChecked()
    request, _ = panel.build_request()
    assert request.seed == 3_000_000_123


def test_history_reapplies_parameters(qtbot, window, panel, photos):
    window.open_paths([photos.chelsea])
    panel.steps.setValue(3)
    panel.random_seed.setChecked(False)
    panel.seed.setValue(4242)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    panel.seed.setValue(1)
    panel.prompt.setPlainText("something else")
    item = panel.history.item(0)
    panel.history.itemDoubleClicked.emit(item)
    assert panel.seed.value() == 4242 and panel.prompt.toPlainText() == "a lighthouse"
    panel.reuse_seed.click()
    assert panel.seed.value() == 4242


def test_catalog_recommendations_are_applied(window, panel):
    assert "sd-turbo" in panel.recommended, "the shipped catalog lists sd-turbo"
    panel.steps.setValue(30)
    panel.guidance.setValue(7.0)
    panel.model_combo.activated.emit(panel.model_combo.findData("sd-turbo"))  # the user's pick
    assert panel.state.model == "sd-turbo"
    assert panel.steps.value() == 1 and panel.guidance.value() == 0.0
    assert panel.scheduler.currentText() == "Euler"


def test_escape_cancels_running_job(qtbot, window, panel, photos):
    window.open_paths([photos.chelsea])
    panel.steps.setValue(500)
    panel.generate()
    qtbot.waitUntil(lambda: panel.progress.format().startswith("Step"), timeout=10000)
    with qtbot.waitSignal(window.worker.cancelled, timeout=5000):
        window.canvas.setFocus()
        qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert panel.progress.format() == "Cancelled"
    assert not [la for la in window.model.doc.layers if la.metadata]


def test_ctrl_enter_in_the_prompt_generates(qtbot, window, panel, photos):
    window.open_paths([photos.chelsea])
    panel.steps.setValue(2)
    panel.prompt.setFocus()
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        qtbot.keyClick(panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert SEEN and SEEN[-1].prompt == "a lighthouse"
    assert "\n" not in panel.prompt.toPlainText()


def test_control_layers_go_into_the_request(qtbot, window, panel, photos):
    window.open_paths([photos.astronaut])
    control = window.panels.get("Control")
    assert control is not None, window.panel_errors
    control.source_combo.setCurrentIndex(control.source_combo.findData("composite"))
    control.add_canny_layer()
    window.model.set_selection((64, 64, 128, 96))
    panel.steps.setValue(2)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    (ci,) = SEEN[-1].controls
    assert ci.kind == "canny" and ci.image.shape == (96, 128, 3)


# -- no un-generated strips --------------------------------------------------------
def test_result_covers_a_region_that_is_no_multiple_of_8(qtbot, window, panel, photos):
    window.open_paths([photos.chelsea])  # 451 x 300
    assert window.selection_rect() == (0, 0, 451, 300)
    assert (panel.width_spin.value(), panel.height_spin.value()) == (448, 304)  # nearest 8s
    panel.steps.setValue(1)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    assert (SEEN[-1].width, SEEN[-1].height) == (448, 304)  # the model gets multiples of 8
    accept_all(panel)
    rgb = window.composite()[..., :3]
    assert rgb.shape == (300, 451, 3) and (rgb == 40).all()  # no strip of the photo left


def test_a_selection_dragged_to_the_edge_reaches_it(qtbot, window, panel, photos):
    from test_ui_canvas import stroke

    window.open_paths([photos.chelsea])
    window.canvas.actual_size()
    window.canvas.set_tool("select")
    stroke(window.canvas, [(300, 200), (400, 280), (451, 300)])
    x, y, w, h = window.selection_rect()
    assert (x + w, y + h) == (451, 300) and (x, y) == (296, 200)
    panel.steps.setValue(1)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    accept_all(panel)
    layer = window.model.doc.layers[-2]
    assert layer.offset == (x, y) and layer.size == (w, h)
    assert (window.composite()[y:, x:, :3] == 40).all()


# -- progress tells the truth -----------------------------------------------------
def test_idle_progress_and_eta_from_denoising_steps_only(qtbot, window, panel, photos):
    assert panel.progress.format() == "Ready"
    for name in ("Inpaint", "Upscale"):
        bar = window.panels[name].progress
        assert bar.format() == "Ready" and "0" not in bar.text(), name
    window.open_paths([photos.chelsea])
    panel.steps.setValue(10)
    job_id = panel.generate()
    job = window.worker.job(job_id)
    qtbot.waitUntil(lambda: job.step >= 3, timeout=10000)
    job.started -= 100.0  # as if loading the model had taken 100 s before the first step
    eta = job.eta()
    assert eta is not None and eta < 5.0  # from the step rate, not the loading time
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=10000)
    assert panel.progress.format() == "Done"


# -- the mask is visible and out of the way ----------------------------------------
def test_mask_outline_tint_settings_and_hidden_over_a_new_result(qtbot, window, panel, photos):
    from PySide6.QtGui import QColor
    from PySide6.QtTest import QTest
    from test_ui_canvas import stroke, view_point

    window.open_paths([photos.astronaut])
    canvas = window.canvas
    canvas.actual_size()
    canvas.centerOn(256, 256)
    canvas.set_brush(size=40, hardness=1.0)
    stroke(canvas, [(200, 256), (260, 256), (300, 256)])
    outline = canvas.mask_outline
    qtbot.waitUntil(lambda: not outline.path.isEmpty(), timeout=3000)
    assert outline.isVisible() and outline.ants.isActive()  # marching ants
    box = outline.path.boundingRect()
    assert 175 <= box.left() <= 185 and 315 <= box.right() <= 325  # around the stroke
    offset = outline.offset
    qtbot.waitUntil(lambda: outline.offset != offset, timeout=2000)  # the dashes move
    canvas.cursor_item.setVisible(False)

    def pixel(x, y):
        QApplication.processEvents()
        return canvas.viewport().grab().toImage().pixelColor(view_point(canvas, x, y))

    plain = QColor(*load_image(photos.astronaut)[256, 250, :3])
    default = pixel(250, 256)
    assert default.red() > plain.red() + 20  # the default tint is red
    window.set_mask_style(color="#00ff00", opacity=0.75)  # quick-mask style settings
    green = pixel(250, 256)
    assert green.green() > plain.green() + 60 and green.red() < default.red()
    assert window.settings.mask_color == "#00ff00" and window.settings.mask_opacity == 0.75

    panel.steps.setValue(1)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    assert not canvas.mask_shown and not window.act_show_mask.isChecked()
    assert window.mask() is not None  # hidden, not cleared
    shown = pixel(250, 256)
    assert (shown.red(), shown.green(), shown.blue()) == (40, 40, 40)  # the result, untinted
    QTest.keyClick(window, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert canvas.mask_shown and pixel(250, 256).green() > 100  # one key shows it again


def test_results_are_staged_accept_discard_previous_next(qtbot, window, panel, photos):
    from PySide6.QtTest import QTest

    window.open_paths([photos.astronaut])
    window.model.set_selection((128, 64, 96, 80))
    panel.count.setValue(3)
    panel.steps.setValue(1)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        panel.generate()
    staging = panel.staging
    assert staging.isVisible() and staging.label.text() == "Result 1 of 3"
    window.canvas.cursor_item.setVisible(False)

    def shown():  # the staged image's grey level, as painted on the canvas
        QApplication.processEvents()
        from test_ui_canvas import view_point

        img = window.canvas.viewport().grab().toImage()
        return img.pixelColor(view_point(window.canvas, 170, 100)).red()

    assert shown() == 40  # the first result (40, 90, 140 grey) is in place
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Right)
    assert staging.label.text() == "Result 2 of 3" and shown() == 90
    QTest.keyClick(window.canvas, Qt.Key.Key_X)  # discard the 90 one
    assert staging.label.text() == "Result 2 of 2" and shown() == 140
    staging.prev_button.click()
    assert shown() == 40
    n = window.model.undo.count()
    QTest.keyClick(window.canvas, Qt.Key.Key_Return)  # accept: one layer, one undo step
    assert window.model.undo.count() == n + 1
    assert tuple(window.composite()[100, 170, :3]) == (40, 40, 40)
    assert staging.label.text() == "Result 1 of 1" and shown() == 140  # still staged, on top
    staging.discard_button.click()
    assert staging.isHidden() and not window.canvas.staged_item.isVisible()
    assert tuple(window.composite()[100, 170, :3]) == (40, 40, 40)
    window.act_undo.trigger()
    assert not [la for la in window.model.doc.layers if la.metadata]
