"""The Generate panel's lists, filled from disk and from its state: the model picker's rows
(installed models first, a reference the list lacks in a row of its own) with the Download
button, the installed LoRAs and VAEs, and one row per LoRA of the state (name, weight,
remove). The panel's slots call these."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from studio.core.catalog import format_size
from studio.ui.panels.generate_model import lora_name
from studio.ui.panels.generate_picker import (
    PickerItem,
    display_name,
    family_label,
    installed_choices,
    model_choices,
    picker_label,
)

# The panel the lists are on: a ``generate.GeneratePanel``.
GeneratePanel = QWidget


def fill_models(panel: GeneratePanel) -> None:
    """(Re)list the models: installed first, the rest marked "download". The first run, or a
    remembered model that is no longer there, picks the first installed one."""
    recent = list(panel.settings.recent_models) if panel.settings else []
    panel.picker = model_choices(recent)
    combo = panel.model_combo
    combo.blockSignals(True)
    combo.clear()
    for item in panel.picker:
        add_row(combo, item)
    combo.blockSignals(False)
    state = panel.state
    installed = [i for i in panel.picker if i.installed]
    current = panel._item(state.model)
    if installed and (not state.model or (current is not None and not current.installed)):
        state.model = installed[0].ref
    elif not state.model and panel.picker:
        state.model = panel.picker[0].ref  # nothing installed: the Download offer
    show_model(panel)


def add_row(combo, item: PickerItem) -> None:
    combo.addItem(item.label, item.ref)
    combo.setItemData(combo.count() - 1, item.tip or item.ref, Qt.ItemDataRole.ToolTipRole)


def show_model(panel: GeneratePanel) -> None:
    """The combo and the Download button show ``state.model``; a reference the list lacks
    (pasted parameters, Browse, Find) gets a row of its own at the end."""
    combo, ref = panel.model_combo, panel.state.model
    combo.blockSignals(True)
    listed = {i.ref for i in panel.picker}
    for i in reversed(range(combo.count())):  # the previous such row
        if combo.itemData(i) not in listed and combo.itemData(i) != ref:
            combo.removeItem(i)
    i = combo.findData(ref)
    if i < 0 and ref:
        name, fam = display_name(ref), family_label(None, ref)
        add_row(combo, PickerItem(ref, picker_label(name, fam), True, 0, name, fam, ref))
        i = combo.count() - 1
    combo.setCurrentIndex(i)
    combo.blockSignals(False)
    item = panel._item(ref)
    missing = item is not None and not item.installed
    panel.download_button.setVisible(missing)
    if missing:
        panel.download_button.setText(
            f"⤓ Download {item.name or item.ref} ({format_size(item.size)})"
        )


def fill_extras(panel: GeneratePanel) -> None:
    """(Re)list the installed LoRAs and VAEs (read from disk each time)."""
    combo = panel.lora_combo
    combo.clear()
    for label, path in installed_choices("lora"):
        combo.addItem(label, path)
    if not combo.count():
        combo.addItem("No LoRAs installed (import in Models)", "")
    panel.lora_add.setEnabled(bool(combo.currentData()))
    vae, chosen = panel.vae_combo, panel.state.vae
    vae.blockSignals(True)
    vae.clear()
    vae.addItem("Model's own", "")
    for label, path in installed_choices("vae"):
        vae.addItem(label, path)
    if chosen and vae.findData(chosen) < 0:
        vae.addItem(lora_name(chosen) + " (not found)", chosen)
    vae.setCurrentIndex(max(0, vae.findData(chosen)))
    vae.blockSignals(False)


def show_loras(panel: GeneratePanel) -> None:
    """One row per LoRA: its name, a weight spin box, a remove button. Rows are rebuilt only
    when the list's files change, so editing a weight keeps its spin box."""
    rows = panel.state.loras
    if [w[0].property("ref") for w in panel.lora_widgets] != [r for r, _ in rows]:
        for *_, row in panel.lora_widgets:
            row.setParent(None)
            row.deleteLater()
        panel.lora_widgets = []
        for i, (ref, _weight) in enumerate(rows):
            panel.lora_widgets.append(lora_row(panel, i, ref))
    for (_label, spin, _remove, _row), (_ref, weight) in zip(panel.lora_widgets, rows, strict=True):
        if spin.value() != weight:
            spin.blockSignals(True)
            spin.setValue(weight)
            spin.blockSignals(False)


def lora_row(
    panel: GeneratePanel, index: int, ref: str
) -> tuple[QLabel, QDoubleSpinBox, QToolButton, QWidget]:
    """One LoRA's row (its name, a weight spin box, a remove button), added under the LoRA
    picker; returns its widgets."""
    i = index
    row = QWidget()
    h = QHBoxLayout(row)
    h.setContentsMargins(0, 0, 0, 0)
    label = QLabel(lora_name(ref))
    label.setProperty("ref", ref)
    label.setToolTip(ref)
    label.setMinimumWidth(40)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    spin = QDoubleSpinBox()
    spin.setObjectName("lora-weight")
    spin.setRange(-4.0, 4.0)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setToolTip("LoRA weight (A1111's <lora:name:weight>)")
    spin.setProperty("index", i)
    spin.valueChanged.connect(panel._lora_weight_changed)
    remove = QToolButton()
    remove.setText("✕")
    remove.setObjectName("lora-remove")
    remove.setToolTip("Remove this LoRA")
    remove.setProperty("index", i)
    remove.clicked.connect(panel._lora_remove_clicked)
    h.addWidget(label, 1)
    h.addWidget(spin)
    h.addWidget(remove)
    panel.lora_rows.addWidget(row)
    return (label, spin, remove, row)
