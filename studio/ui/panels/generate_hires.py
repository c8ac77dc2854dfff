"""The Generate panel's "Hires. fix" group (AUTOMATIC1111's): a check box that turns it on,
Upscale by, Hires steps (0: the same as Steps), Denoising strength and the Upscaler, bound to
the panel model's ``hires*`` fields (``generate_model.GenerateModel``).

The Upscaler combo lists A1111's names: its latent modes (``shared.latent_upscale_modes``),
the plain pixel resizes (Lanczos, Nearest), then the installed upscaler models
(``studio.engine.models.list_models("upscaler")``, read from disk on each fill) by the name
the engine finds them by: the two Real-ESRGAN models A1111 ships by A1111's names, other
catalog models by their id, files by their stem. The group is enabled only where the engine
runs it (SD 1.x, SD 2.x, SDXL txt2img); elsewhere its tooltip says why.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QSpinBox,
    QWidget,
)

from studio.ui.properties import bind

# The panel the group is built on: a ``generate.GeneratePanel``.
GeneratePanel = QWidget

# A1111 modules/shared.py latent_upscale_modes, in A1111's order.
LATENT_UPSCALERS = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
)
PIXEL_UPSCALERS = ("Lanczos", "Nearest")
# A1111's names of the GAN upscalers it ships (modules/realesrgan_model.py), by catalog id.
A1111_NAMES = {
    "realesrgan-x4plus": "R-ESRGAN 4x+",
    "realesrgan-x4plus-anime": "R-ESRGAN 4x+ Anime6B",
}
# State names whose change may enable or disable the group.
HIRES_NAMES = frozenset({"model", "source", "hires", "device"})
TIP = (
    "A1111's Hires. fix: make the image at Size, upscale it, then run img2img on it at the "
    "Denoising strength, so a large picture keeps the composition the model draws well"
)


def hires_upscalers() -> list[tuple[str, str]]:
    """(label, value for ``HiresFix.upscaler``) of every upscaler the combo offers."""
    rows = [(name, name) for name in (*LATENT_UPSCALERS, *PIXEL_UPSCALERS)]
    try:
        from studio.engine.models import list_models  # torch-free

        for choice in list_models("upscaler"):
            if choice.path is None:
                continue
            if choice.source == "catalog":
                value = A1111_NAMES.get(choice.ref, choice.ref)
            else:
                value = Path(choice.path).stem
            rows.append((choice.label, value))
    except Exception:  # noqa: BLE001 - a broken models folder: the built-in modes only
        pass
    return rows


def hires_widgets(panel: GeneratePanel) -> QGroupBox:
    """The group and its fields (panel attributes ``hires_box``, ``hires_check``,
    ``hires_scale``, ``hires_steps``, ``hires_denoise``, ``hires_upscaler``)."""
    box = panel.hires_box = QGroupBox("Hires. fix")
    box.setObjectName("hires")
    form = panel.hires_form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    panel.hires_check = QCheckBox("Upscale and refine (second pass)")
    panel.hires_check.setObjectName("hires-on")
    panel.hires_scale = QDoubleSpinBox()
    panel.hires_scale.setObjectName("hires-scale")
    panel.hires_scale.setRange(1.0, 4.0)
    panel.hires_scale.setSingleStep(0.05)
    panel.hires_scale.setDecimals(2)
    panel.hires_scale.setToolTip("Upscale by: the output is Size times this")
    panel.hires_steps = QSpinBox()
    panel.hires_steps.setObjectName("hires-steps")
    panel.hires_steps.setRange(0, 150)
    panel.hires_steps.setSpecialValueText("Same as Steps")
    panel.hires_steps.setToolTip("Steps of the second pass; 0: the same as Steps")
    panel.hires_denoise = QDoubleSpinBox()
    panel.hires_denoise.setObjectName("hires-denoise")
    panel.hires_denoise.setRange(0.01, 1.0)
    panel.hires_denoise.setSingleStep(0.05)
    panel.hires_denoise.setDecimals(2)
    panel.hires_denoise.setToolTip(
        "Denoising strength of the second pass: low keeps the first image, high redraws it"
    )
    panel.hires_upscaler = QComboBox()
    panel.hires_upscaler.setObjectName("hires-upscaler")
    panel.hires_upscaler.setToolTip(
        "Latent modes resize the latents; Lanczos, Nearest and the upscaler models resize "
        "the decoded image"
    )
    panel.hires_upscaler.setSizeAdjustPolicy(
        QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
    )
    panel.hires_upscaler.setMinimumContentsLength(10)
    form.addRow(panel.hires_check)
    form.addRow("Upscale by", panel.hires_scale)
    form.addRow("Hires steps", panel.hires_steps)
    form.addRow("Denoising", panel.hires_denoise)
    form.addRow("Upscaler", panel.hires_upscaler)
    fill_upscalers(panel)
    return box


def fill_upscalers(panel: GeneratePanel) -> None:
    """(Re)list the upscalers, keeping the chosen one; one the list lacks (pasted from
    another installation) is listed as not installed, so the combo shows it."""
    combo, value = panel.hires_upscaler, panel.state.hires_upscaler
    combo.blockSignals(True)
    combo.clear()
    for label, data in hires_upscalers():
        combo.addItem(label, data)
    if value and combo.findData(value) < 0:
        combo.addItem(f"{value} (not installed)", value)
        combo.setItemData(
            combo.count() - 1,
            "Add it in the Models panel (upscalers), or pick Latent or Lanczos",
            Qt.ItemDataRole.ToolTipRole,
        )
    combo.setCurrentIndex(max(0, combo.findData(value)))
    combo.blockSignals(False)


def bind_hires(panel: GeneratePanel) -> None:
    """The fields show ``panel.state``'s ``hires*`` and edit them."""
    for name, widget in (
        ("hires", panel.hires_check),
        ("hires_scale", panel.hires_scale),
        ("hires_steps", panel.hires_steps),
        ("hires_denoise", panel.hires_denoise),
    ):
        bind(panel.state, name, widget)
    bind(panel.state, "hires_upscaler", panel.hires_upscaler, data=True)
    sync_hires(panel)


def sync_hires(panel: GeneratePanel) -> None:
    """Enabled where the engine runs it (the tooltip says why not elsewhere); the fields
    follow the check box; a pasted upscaler the combo lacks gets its row."""
    state = panel.state
    reason = state.hires_reason()
    panel.hires_box.setEnabled(not reason)
    panel.hires_box.setToolTip(reason or TIP)
    panel.hires_check.setToolTip(reason or TIP)
    for widget in (panel.hires_scale, panel.hires_steps, panel.hires_denoise):
        widget.setEnabled(state.hires)
    panel.hires_upscaler.setEnabled(state.hires)
    if panel.hires_upscaler.findData(state.hires_upscaler) < 0:
        fill_upscalers(panel)


def hires_summary(state) -> str:
    """What the Advanced toggle adds while Hires. fix is on and can run: " · Hires ×2"."""
    return f" · Hires ×{state.hires_scale:g}" if state.hires_spec() is not None else ""
