"""First-hour bugs of the Generate panel, driven through the real widgets:

1. a region of any size on SD 3.5 / Z-Image (they refused 104x104: "divisible by 16") runs,
   and its result lands exactly on the region;
2. with Match region on, the Size fields show the size the job will use for the selection
   and model at once (they showed the model's 1024x1024 until a job had run);
3. the model picker is a list, not a text field (a tool key typed "m" into it), whose Find
   dialog keeps the search and typed references; the keys go back to the canvas after a
   choice; rows name their model (not "diffusion_pytorch_model") and family, and two models
   of one download size don't read the same;
4. the progress of several images says which image and its own step.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QComboBox

from studio.engine.jobs import runner as runner_mod
from studio.engine.jobs.requests import GenerateRequest


@pytest.fixture(scope="session")
def geo_models(session_tmp):
    """Tiny SD3 / Z-Image pipelines with the real models' size rule (multiples of 16)."""
    from studio.engine.fixtures.tiny_flow_geometry import build_real_geometry

    return build_real_geometry(session_tmp / "tiny-flow-geometry", ("sd3", "zimage"))


@pytest.fixture
def active(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.show_panel("Generate")
    return window.panels["Generate"]


def pick(qtbot, combo: QComboBox, ref: str) -> None:
    """Open the picker with the mouse, move to the row of ``ref`` and press Enter (a click
    on the row is unreliable on the offscreen platform: the popup may still be moving)."""
    QTest.mouseClick(combo, Qt.MouseButton.LeftButton)
    view = combo.view()
    qtbot.waitUntil(view.isVisible)
    view.setCurrentIndex(view.model().index(combo.findData(ref), 0))
    QTest.keyClick(view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not view.isVisible())


def window_ends(window) -> dict[int, str]:
    """job id -> "done" or the failure message, as the worker reports them."""
    ends: dict[int, str] = {}
    window.worker.finished.connect(lambda job, _event: ends.__setitem__(job, "done"))
    window.worker.failed.connect(lambda job, message, _d: ends.__setitem__(job, message))
    return ends


# -- 1. regions of any size on the 16-pixel families ------------------------------------------
@pytest.mark.parametrize("name", ("sd3", "zimage"))
def test_region_jobs_on_sd3_and_zimage_land_exactly_on_the_region(
    qtbot, window, photos, geo_models, name
):
    window.open_paths([photos.chelsea])
    panel = window.panels["Generate"]
    panel.model_combo.setCurrentText(str(geo_models[name]))
    assert panel.state.model == str(geo_models[name])
    panel.prompt.setPlainText("a region")
    panel.steps.setValue(1)
    panel.guidance.setValue(0.0)
    panel.preview_mode.setCurrentIndex(panel.preview_mode.findData("off"))
    window.start_engine()
    for region in ((10, 20, 104, 104), (30, 40, 100, 72)):
        window.model.set_selection(region)
        x, y, w, h = region
        shown = (panel.width_spin.value(), panel.height_spin.value())
        assert shown[0] % 16 == 0 and shown[1] % 16 == 0, shown  # what the model runs at
        before = window.composite().copy()
        ended = window_ends(window)
        job_id = panel.generate()
        assert job_id is not None
        request = window.worker.job(job_id).request
        assert (request.width, request.height) == shown
        qtbot.waitUntil(lambda: job_id in ended, timeout=300_000)  # noqa: B023
        assert ended[job_id] == "done", ended[job_id]
        assert window.canvas.staged_item.rect.getRect() == region
        panel.staging.accept_button.click()
        layer = window.model.doc.layers[-2]
        assert layer.offset == (x, y) and layer.size == (w, h)
        changed = np.any(window.composite() != before, axis=-1)
        assert changed[y : y + h, x : x + w].mean() > 0.5
        outside = np.ones_like(changed)
        outside[y : y + h, x : x + w] = False
        assert not changed[outside].any()  # nothing lands outside the region


# -- 2. the Size fields show the job's size at once -------------------------------------------
def test_size_fields_follow_selection_and_model_before_any_job(qtbot, window, active, photos):
    panel = active
    window.open_paths([photos.chelsea])
    assert panel.match_region.isChecked()
    window.model.set_selection((10, 10, 104, 104))
    assert (panel.width_spin.value(), panel.height_spin.value()) == (104, 104)  # SD: 8s
    pick(qtbot, panel.model_combo, "z-image-turbo")
    assert panel.state.model == "z-image-turbo"
    # not the family's native 1024x1024, and a multiple of Z-Image's 16
    assert (panel.width_spin.value(), panel.height_spin.value()) == (112, 112)
    window.model.set_selection((0, 0, 100, 72))
    assert (panel.width_spin.value(), panel.height_spin.value()) == (96, 80)
    pick(qtbot, panel.model_combo, "sd15")
    assert (panel.width_spin.value(), panel.height_spin.value()) == (104, 72)
    request, region = panel.build_request()
    assert (request.width, request.height) == (104, 72) and region == (0, 0, 100, 72)


# -- 3. the model picker ----------------------------------------------------------------------
def test_model_picker_is_a_list_and_tool_keys_reach_the_canvas(qtbot, window, active, photos):
    panel = active
    window.open_paths([photos.chelsea])
    combo = panel.model_combo
    assert not combo.isEditable() and combo.lineEdit() is None
    model = panel.state.model
    pick(qtbot, combo, "sd35-medium")
    assert panel.state.model == "sd35-medium"
    assert window.focusWidget() is window.canvas  # the keys are the canvas' again
    for key, tool in ((Qt.Key.Key_M, "select"), (Qt.Key.Key_E, "eraser")):
        QTest.keyClick(window.focusWidget(), key)
        assert window.canvas.tool == tool
    # focus parked in the picker (tabbed into it): a tool key is still the tool's
    combo.setFocus(Qt.FocusReason.TabFocusReason)
    QTest.keyClick(combo, Qt.Key.Key_B)
    assert window.canvas.tool == "brush"
    QTest.keyClick(combo, Qt.Key.Key_M)
    assert window.canvas.tool == "select"
    assert panel.state.model == "sd35-medium" and "m" not in combo.currentText()[-2:]
    assert model != "sd35-medium"


def test_find_dialog_filters_and_takes_a_typed_reference(qtbot, window, active, photos):
    panel = active
    window.open_paths([photos.chelsea])
    QTest.mouseClick(panel.find_model_button, Qt.MouseButton.LeftButton)
    dialog = panel.model_search
    qtbot.waitExposed(dialog)
    QTest.keyClicks(dialog.query, "3.5 large")
    refs = dialog.visible_refs()
    assert refs == ["sd35-large", "sd35-large-turbo"]
    QTest.keyClick(dialog.query, Qt.Key.Key_Return)
    assert not dialog.isVisible()
    assert panel.state.model == "sd35-large"
    assert panel.model_combo.currentData() == "sd35-large"
    assert window.focusWidget() is window.canvas
    # a reference the list lacks: typed, taken as it is, listed and shown
    panel.open_model_search()
    QTest.keyClicks(panel.model_search.query, "someone/my-model")
    assert panel.model_search.visible_refs() == []
    QTest.keyClick(panel.model_search.query, Qt.Key.Key_Return)
    assert panel.state.model == "someone/my-model"
    assert panel.model_combo.currentText() == "someone/my-model"
    assert window.focusWidget() is window.canvas


def test_rows_name_their_model_and_family(qtbot, window, active, geo_models, tmp_path):
    from studio.engine.models.importer import import_file

    panel = active
    combo = panel.model_combo
    rows = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    assert rows["sd15"].startswith("Stable Diffusion 1.5 · SD 1.x — download")
    assert rows["z-image-turbo"].startswith("Z-Image Turbo · Z-Image — download")
    assert rows["sd35-medium"].startswith("Stable Diffusion 3.5 Medium · SD 3.5 — download")
    assert len(set(rows.values())) == len(rows)

    # a transformer file imported from its model's folder: named by that folder
    src = tmp_path / "downloads" / "z-image-turbo" / "transformer"
    src.mkdir(parents=True)
    shutil.copy(geo_models["zimage"] / "transformer" / "diffusion_pytorch_model.safetensors", src)
    record = import_file(src / "diffusion_pytorch_model.safetensors")
    with qtbot.waitSignal(window.models_updated, timeout=5000):
        window.models_changed()
    i = combo.findData(record.path)
    assert i >= 0
    assert combo.itemText(i) == "z-image-turbo · Z-Image"
    assert "diffusion_pytorch_model" not in combo.itemText(i)
    # a diffusers folder set from code (a test, a remembered path): its name and family
    panel.model_combo.setCurrentText(str(geo_models["sd3"]))
    assert combo.currentText() == f"{geo_models['sd3'].name} · SD 3.5"


def test_two_models_of_one_download_size_read_differently(qtbot, window, active):
    """The editable picker showed the end of the row ("— download 2.1 GB") for SD 1.5 and
    DreamShaper 8 alike; the list shows the model's name first."""
    panel = active
    combo = panel.model_combo
    combo.setFixedWidth(130)
    shots = []
    for ref in ("sd15", "dreamshaper-8"):
        pick(qtbot, combo, ref)
        assert panel.state.model == ref
        qtbot.wait(10)
        shots.append(combo.grab().toImage())
    assert shots[0] != shots[1]
    texts = [combo.itemText(combo.findData(r)) for r in ("sd15", "dreamshaper-8")]
    assert texts[0].startswith("Stable Diffusion 1.5") and texts[1].startswith("DreamShaper 8")
    assert "DreamShaper 8" in panel.download_button.text()


def test_display_names():
    from studio.ui.panels.generate_picker import display_name

    cases = {
        "sd-turbo": "sd-turbo",
        "stabilityai/stable-diffusion-3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
        "black-forest-labs/FLUX.1-dev": "black-forest-labs/FLUX.1-dev",
        "/m/tiny-sd": "tiny-sd",
        "/m/dreamshaper_8.safetensors": "dreamshaper_8",
        "/dl/flux-krea/transformer/diffusion_pytorch_model.safetensors": "flux-krea",
        "/dl/qwen/transformer/diffusion_pytorch_model-00001-of-00009.safetensors": "qwen",
        "C:\\models\\z-image\\diffusion_pytorch_model.safetensors": "z-image",
        "/hf/models--Tongyi-MAI--Z-Image-Turbo/snapshots/"
        + "0" * 40
        + "/transformer/diffusion_pytorch_model.safetensors": "Tongyi-MAI/Z-Image-Turbo",
        "/home/u/models/checkpoints/model.safetensors": "model.safetensors",
        "/home/u/Downloads/diffusion_pytorch_model.safetensors": (
            "diffusion_pytorch_model.safetensors"
        ),
    }
    for ref, name in cases.items():
        assert display_name(ref) == name, ref


# -- 4. progress per image ---------------------------------------------------------------------
def sequential(ctx, request: GenerateRequest):
    """Progress as the flow families report it: image after image, steps counted over all."""
    total = request.steps * request.count
    ctx.progress(0, total)
    for k in range(request.count):
        for i in range(request.steps):
            ctx.progress(k * request.steps + i + 1, total)
        ctx.progress((k + 1) * request.steps, total)
    images = [np.zeros((request.height, request.width, 3), np.uint8)] * request.count
    return ctx.finished(images, [{"seed": request.seed + k} for k in range(request.count)])


def batched(ctx, request: GenerateRequest):
    """Progress as the SD path reports a batch: every callback adds the batch size."""
    total, n = request.steps * request.count, request.count
    ctx.progress(0, total)
    for i in range(request.steps):
        ctx.progress((i + 1) * n, total)
    ctx.progress(total, total)
    images = [np.zeros((request.height, request.width, 3), np.uint8)] * request.count
    return ctx.finished(images, [{"seed": request.seed + k} for k in range(request.count)])


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (
            "sequential",
            ["image 1 of 4, step 84/150", "image 2 of 4, step 1/150", "image 4 of 4, step 150/150"],
        ),
        ("batched", ["images 1–4 of 4, step 21/150", "images 1–4 of 4, step 150/150"]),
    ],
)
def test_progress_says_which_image_and_its_step(
    qtbot, window, photos, monkeypatch, handler, expected
):
    monkeypatch.setitem(runner_mod.HANDLERS, GenerateRequest, f"{__name__}:{handler}")
    window.worker.start(warm_up=False)
    qtbot.waitUntil(lambda: not window.worker.jobs(), timeout=10000)
    panel = window.panels["Generate"]
    panel.model_combo.setCurrentText("fake-model")
    window.open_paths([photos.chelsea])
    panel.count.setValue(4)
    panel.steps.setValue(150)
    seen: list[str] = []
    window.worker.progress.connect(lambda *_: seen.append(panel.progress.format()))
    with qtbot.waitSignal(window.worker.finished, timeout=20000):
        panel.generate()
    texts = [t.split(" · ")[0] for t in seen]
    for text in expected:
        assert text in texts, (text, texts[::50])
    assert not [t for t in texts if t.startswith("Step") and "/600" in t]
