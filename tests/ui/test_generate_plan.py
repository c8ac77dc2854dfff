"""The Generate panel's memory plan: the plan line follows the model, the size, the device the
engine probed and the Weights/Offload overrides; the overrides are shown for flow models only,
bound to the panel's state, sent in the request; every control stays whole at 1280x800; the
engine thread's start-up probe reaches the panel (CPU here)."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QDockWidget

GPU8 = {"device": "cuda", "name": "Test GPU", "free_gib": 8.0, "total_gib": 8.0}
GPU24 = {"device": "cuda", "name": "Test GPU", "free_gib": 24.0, "total_gib": 24.0}


def _panel(qtbot, window, model: str, device: dict | None = GPU8):
    window.worker._on_device(device)  # what the engine thread's probe delivers
    p = window.panels["Generate"]
    p.state.model = model
    p.state.match_region = False
    p.state.width = p.state.height = 1024
    qtbot.waitUntil(lambda: not p._plan_timer.isActive(), timeout=3000)
    return p


def _line(p) -> str:
    return p.plan_label.text()


def test_plan_line_follows_model_device_and_overrides(qtbot, window):
    p = _panel(qtbot, window, "flux1-schnell")
    assert _line(p).startswith("Plan: group offload, bf16") and "of 7.2 GiB, fits" in _line(p)
    assert "Test GPU, 8.0 GiB free" in p.plan_label.toolTip()
    # a bigger card: another plan, at once
    window.worker._on_device(GPU24)
    qtbot.waitUntil(lambda: "of 23.2 GiB" in _line(p), timeout=3000)
    assert _line(p).startswith("Plan: model offload, fp8")
    # the overrides, through the real combos (bound to the state)
    p._show_advanced(True)
    assert p.quant_combo.isVisibleTo(p) and p.offload_combo.isVisibleTo(p)
    p.quant_combo.setCurrentIndex(p.quant_combo.findData("bf16"))
    p.offload_combo.setCurrentIndex(p.offload_combo.findData("sequential"))
    assert (p.state.quant, p.state.offload) == ("bf16", "sequential")
    qtbot.waitUntil(lambda: _line(p).startswith("Plan: sequential offload, bf16"), timeout=3000)
    assert "bf16, sequential offload" in p.advanced_toggle.text()
    request, _ = p.build_request()
    assert (request.quant, request.offload) == ("bf16", "sequential")
    p.offload_combo.setCurrentIndex(p.offload_combo.findData("none"))
    qtbot.waitUntil(lambda: _line(p).endswith("does NOT fit"), timeout=3000)
    # back to Auto: the planner's choice again
    p.quant_combo.setCurrentIndex(0)
    p.offload_combo.setCurrentIndex(0)
    qtbot.waitUntil(lambda: _line(p).startswith("Plan: model offload, fp8"), timeout=3000)
    assert p.build_request()[0].quant is None


def test_sd_models_show_the_plan_without_the_overrides(qtbot, window):
    p = _panel(qtbot, window, "sdxl")
    p._show_advanced(True)
    assert _line(p).startswith("Plan: model offload, fp16") and _line(p).endswith("fits")
    assert not p.quant_combo.isVisibleTo(p) and not p.offload_combo.isVisibleTo(p)
    assert ", memory" not in p.advanced_toggle.text()
    p.state.model = "z-image-turbo"
    qtbot.waitUntil(lambda: p.quant_combo.isVisibleTo(p), timeout=3000)
    assert ", memory" in p.advanced_toggle.text() and p.offload_combo.isVisibleTo(p)
    # the CPU: said plainly
    window.worker._on_device({"device": "cpu", "name": "CPU", "free_gib": None})
    qtbot.waitUntil(lambda: _line(p).startswith("CPU:"), timeout=3000)
    assert _line(p) == "CPU: no memory plan, runs in float32 on the CPU"


def test_missing_packages_disable_their_formats(qtbot, window):
    from studio.ui.panels.generate_plan import fill_quant_combo

    combo = QComboBox()
    fill_quant_combo(combo, frozenset({"bf16", "fp8"}))
    enabled = {combo.itemData(i): combo.model().item(i).isEnabled() for i in range(combo.count())}
    assert enabled == {"": True, "bf16": True, "fp8": True, "q8_0": False, "nf4": False, "q4_k": False}  # fmt: skip
    assert "bitsandbytes" in combo.model().item(combo.findData("nf4")).toolTip()


def _clipped(window, panel) -> list[str]:
    """Controls of the Generate panel cut off at the edge of what its dock shows (the check
    of tests/ui/test_first_minute.py)."""
    dock = window.findChild(QDockWidget, "panel-Generate")
    viewport = dock.widget().viewport()
    out = []
    kinds = (QAbstractSpinBox, QComboBox, QAbstractButton)
    for w in [w for k in kinds for w in panel.findChildren(k)]:
        if not w.isVisibleTo(panel) or w.width() <= 0:
            continue
        box = w.parentWidget()
        while box is not None and box.objectName() != "qt_scrollarea_viewport":
            box = box.parentWidget()
        right = box.width() if box is not None else viewport.width()
        left = w.mapTo(box or viewport, QPoint(0, 0)).x()
        if left < 0 or left + w.width() > right:
            out.append(f"{type(w).__name__} {w.objectName()}")
    return out


def test_every_control_is_whole_at_1280x800_with_the_memory_rows(qtbot, window):
    p = _panel(qtbot, window, "qwen-image-edit")  # the longest plan line
    p._show_advanced(True)
    p.state.quant, p.state.offload = "q4_k", "sequential"
    window.resize(1280, 800)
    window.show_panel("Generate")
    qtbot.waitUntil(lambda: not p._plan_timer.isActive(), timeout=3000)
    qtbot.wait(50)
    assert p.quant_combo.isVisibleTo(p) and p.plan_label.isVisibleTo(p)
    assert _clipped(window, p) == []
    label = p.plan_label
    box = label.parentWidget()
    assert label.mapTo(box, QPoint(0, 0)).x() + label.width() <= box.width()  # wraps, not cut
    assert label.heightForWidth(label.width()) <= label.height() + 1  # every line shown


def test_the_engine_probe_reaches_the_panel(qtbot, window):
    p = window.panels["Generate"]
    p.state.model = "flux1-schnell"
    window.start_engine()
    qtbot.waitUntil(lambda: window.worker.device_info is not None, timeout=120000)
    info = window.worker.device_info
    assert info["device"] in ("cpu", "cuda", "mps")
    qtbot.waitUntil(lambda: p.state.device_info == info, timeout=3000)
    qtbot.waitUntil(lambda: not p._plan_timer.isActive(), timeout=3000)
    if info["device"] == "cpu":  # this machine: no GPU
        assert _line(p) == "CPU: no memory plan, runs in float32 on the CPU"
    else:
        assert _line(p).startswith("Plan: ")


def test_the_sampler_is_the_models_own_for_flow_families(qtbot, window):
    """FLUX.1 & co. sample with their flow-matching Euler: the Sampler combo is disabled and
    says so; an SD model enables it again."""
    p = _panel(qtbot, window, "flux1-schnell")
    assert not p.scheduler.isEnabled() and "flow-matching" in p.scheduler.toolTip()
    p.state.model = "sdxl"
    qtbot.waitUntil(lambda: p.scheduler.isEnabled(), timeout=3000)
