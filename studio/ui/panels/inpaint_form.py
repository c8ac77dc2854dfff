"""The Inpaint panel's widgets and their layout, apart from what the panel does with them.

``lay_out`` builds the panel (``InpaintPanel``): the mask tools, padding and blend, Erase
object, Fill from prompt and Outpaint scroll; the staging bar, progress, Cancel and the
status stay in view below them. Every widget is a panel attribute (tests and the
screenshots find them by name) and the buttons call the panel's slots; ``bind_fields``
binds the setting widgets to the panel's ``InpaintModel`` (``studio.ui.properties.bind``).
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.ui.panels.fit import VScrollArea
from studio.ui.panels.inpaint_model import ASPECTS, ERASE_METHODS, OUTPAINT_WITH, RANGES, SIDES
from studio.ui.panels.inpaint_support import inpaint_models
from studio.ui.panels.model_picker import ModelPicker
from studio.ui.panels.staging import StagingBar
from studio.ui.properties import bind

# The panel the parts are built on: an ``inpaint.InpaintPanel`` (named by its base class
# here, so this module does not import the panel's).
InpaintPanel = QWidget


def _spin(name: str, suffix: str = "") -> QSpinBox | QDoubleSpinBox:
    """A spin box with the range of ``RANGES[name]`` (float ranges: a double spin box)."""
    _label, lo, hi = RANGES[name]
    spin = QDoubleSpinBox() if isinstance(lo, float) else QSpinBox()
    spin.setRange(lo, hi)
    if suffix:
        spin.setSuffix(suffix)
    return spin


def lay_out(panel: InpaintPanel) -> None:
    """Every widget of the panel, in its place."""
    tools, common = mask_box(panel), shared_settings(panel)
    erase, fill, out = erase_box(panel), fill_box(panel), outpaint_box(panel)
    bar = job_bar(panel)

    # The tools scroll; progress, Cancel and the status stay in view below them (at
    # 800 px the tools are taller than the dock).
    inner = QWidget()
    layout = QVBoxLayout(inner)
    layout.setContentsMargins(6, 6, 6, 6)
    layout.addWidget(tools)
    layout.addLayout(common)
    layout.addWidget(erase)
    layout.addWidget(fill)
    layout.addWidget(out)
    layout.addStretch(1)
    scroll = VScrollArea(inner)
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 4)
    outer.addWidget(scroll, 1)
    bottom = QVBoxLayout()
    bottom.setContentsMargins(6, 0, 6, 0)
    bottom.addWidget(panel.staging)
    bottom.addLayout(bar)
    bottom.addWidget(panel.status)
    outer.addLayout(bottom)


def mask_box(panel: InpaintPanel) -> QGroupBox:
    """Fill holes, Select all, Invert, Grow/Shrink, Feather and Clear, in three columns."""
    tools = QGroupBox("Mask")
    grid = QGridLayout(tools)
    panel.fill_holes_button = QPushButton("Fill holes")
    panel.fill_holes_button.setToolTip("Select the enclosed gaps inside the mask")
    panel.fill_button = QPushButton("Select all")
    panel.invert_button = QPushButton("Invert")
    panel.clear_button = QPushButton("Clear")
    panel.grow_spin = _spin("grow", " px")
    panel.grow_button = QPushButton("Grow")
    panel.shrink_button = QPushButton("Shrink")
    panel.feather_spin = _spin("feather", " px")
    panel.feather_button = QPushButton("Feather")
    # Three columns, so the panel fits the dock's default width.
    grid.addWidget(panel.fill_holes_button, 0, 0)
    grid.addWidget(panel.fill_button, 0, 1)
    grid.addWidget(panel.invert_button, 0, 2)
    grid.addWidget(panel.grow_spin, 1, 0)
    grid.addWidget(panel.grow_button, 1, 1)
    grid.addWidget(panel.shrink_button, 1, 2)
    grid.addWidget(panel.feather_spin, 2, 0)
    grid.addWidget(panel.feather_button, 2, 1)
    grid.addWidget(panel.clear_button, 2, 2)
    panel.fill_holes_button.clicked.connect(panel.fill_holes)
    panel.fill_button.clicked.connect(panel.fill_all)
    panel.invert_button.clicked.connect(panel.invert)
    panel.clear_button.clicked.connect(panel.clear)
    panel.grow_button.clicked.connect(panel.grow)
    panel.shrink_button.clicked.connect(panel.shrink)
    panel.feather_button.clicked.connect(panel.feather)
    return tools


def shared_settings(panel: InpaintPanel) -> QFormLayout:
    """Padding and blend edge, for erasing and filling alike."""
    common = QFormLayout()
    panel.padding_spin = _spin("padding", " px")
    panel.padding_spin.setToolTip("Context around the mask the model sees")
    panel.blend_spin = _spin("blend", " px")
    panel.blend_spin.setToolTip("Soft edge where the result meets the original")
    common.addRow("Padding", panel.padding_spin)
    common.addRow("Blend edge", panel.blend_spin)
    return common


def erase_box(panel: InpaintPanel) -> QGroupBox:
    """The method, Erase object and the line saying what Auto uses."""
    erase = QGroupBox("Erase object")
    ef = QFormLayout(erase)
    panel.erase_method = QComboBox()
    for key, label in ERASE_METHODS:
        panel.erase_method.addItem(label, key)
    panel.erase_button = QPushButton("Erase object")
    panel.erase_button.setToolTip("Remove what the mask covers and fill it from around it")
    panel.erase_info = QLabel("")
    panel.erase_info.setWordWrap(True)
    ef.addRow("Method", panel.erase_method)
    ef.addRow(panel.erase_button)
    ef.addRow(panel.erase_info)
    panel.erase_button.clicked.connect(panel.erase)
    return erase


def fill_box(panel: InpaintPanel) -> QGroupBox:
    """The model, prompts, sampling fields and Fill from prompt."""
    fill = QGroupBox("Fill from prompt")
    ff = QFormLayout(fill)
    # A list, not a text field (B, E, M are never typed into it): downloaded, imported
    # and added models appear in it (Models panel).
    panel.model_combo = ModelPicker(inpaint_models())
    panel.host.models_updated.connect(panel._refill_models)
    panel.model_combo.setToolTip(
        "An SD inpainting model (best) or any SD/SDXL model; add models in the Models panel"
    )
    panel.prompt_edit = QPlainTextEdit()
    panel.prompt_edit.setPlaceholderText("What to paint in the mask")
    panel.prompt_edit.setFixedHeight(60)
    panel.negative_edit = QLineEdit()
    panel.negative_edit.setPlaceholderText("Negative prompt")
    panel.steps_spin = _spin("steps")
    panel.guidance_spin = _spin("guidance")
    panel.guidance_spin.setSingleStep(0.5)
    panel.strength_spin = _spin("strength")
    panel.strength_spin.setSingleStep(0.05)
    panel.seed_spin = _spin("seed")
    panel.fill_button_run = QPushButton("Fill from prompt")
    ff.addRow("Model", panel.model_combo)
    ff.addRow("Prompt", panel.prompt_edit)
    ff.addRow("Negative", panel.negative_edit)
    ff.addRow("Steps", panel.steps_spin)
    ff.addRow("Guidance", panel.guidance_spin)
    ff.addRow("Strength", panel.strength_spin)
    ff.addRow("Seed", panel.seed_spin)
    ff.addRow(panel.fill_button_run)
    panel.fill_button_run.clicked.connect(panel.fill_from_prompt)
    return fill


def outpaint_box(panel: InpaintPanel) -> QGroupBox:
    """The sides to add (or an aspect ratio), the overlap, the method and Outpaint."""
    out = QGroupBox("Outpaint")
    of = QFormLayout(out)
    sides = QGridLayout()
    panel.side_spins = {}
    for i, side in enumerate(SIDES):
        spin = _spin(side)
        spin.setSingleStep(64)
        spin.setPrefix(f"{side[0].upper()} ")
        spin.setToolTip(f"Pixels to add on the {side}")
        panel.side_spins[side] = spin
        sides.addWidget(spin, i // 2, i % 2)
    panel.aspect_combo = QComboBox()
    panel.aspect_combo.addItem("Sides as set", "")
    for a in ASPECTS:
        panel.aspect_combo.addItem(f"Extend to {a}", a)
    panel.overlap_spin = _spin("overlap", " px")
    panel.overlap_spin.setToolTip("How much of the old image is redrawn so no seam shows")
    panel.outpaint_with = QComboBox()
    for key, label in OUTPAINT_WITH:
        panel.outpaint_with.addItem(label, key)
    panel.outpaint_button = QPushButton("Outpaint")
    of.addRow("Add", sides)
    of.addRow("Or", panel.aspect_combo)
    of.addRow("Overlap", panel.overlap_spin)
    of.addRow("Using", panel.outpaint_with)
    of.addRow(panel.outpaint_button)
    panel.outpaint_button.clicked.connect(panel.outpaint)
    return out


def job_bar(panel: InpaintPanel) -> QHBoxLayout:
    """The progress bar and Cancel, the status line and the staging bar."""
    panel.progress = QProgressBar()
    panel.progress.setRange(0, 1)
    panel.progress.setValue(0)
    panel.progress.setFormat("Ready")  # idle: no stale "0 %"
    panel.cancel_button = QPushButton("Cancel")
    panel.cancel_button.setEnabled(False)
    panel.cancel_button.clicked.connect(panel.cancel)
    panel.status = QLabel("")
    panel.status.setWordWrap(True)
    panel.staging = StagingBar(panel.host, panel)  # an erase or fill is kept only when accepted
    panel.host.model.document_replaced.connect(panel.staging.on_document_replaced)
    bar = QHBoxLayout()
    bar.addWidget(panel.progress, 1)
    bar.addWidget(panel.cancel_button)
    return bar


def bind_fields(panel: InpaintPanel) -> None:
    """Every setting widget shows ``panel.state`` and edits it."""
    s = panel.state
    if not s.model and panel.model_combo.count():
        s.model = panel.model_combo.ref_at(0)  # no saved choice: the first listed model
    for name, widget in (
        ("grow", panel.grow_spin),
        ("feather", panel.feather_spin),
        ("padding", panel.padding_spin),
        ("blend", panel.blend_spin),
        ("model", panel.model_combo),
        ("prompt", panel.prompt_edit),
        ("negative_prompt", panel.negative_edit),
        ("steps", panel.steps_spin),
        ("guidance", panel.guidance_spin),
        ("strength", panel.strength_spin),
        ("seed", panel.seed_spin),
        ("overlap", panel.overlap_spin),
        *((side, spin) for side, spin in panel.side_spins.items()),
    ):
        bind(s, name, widget)
    bind(s, "erase_method", panel.erase_method, data=True)
    bind(s, "aspect", panel.aspect_combo, data=True)
    bind(s, "outpaint_with", panel.outpaint_with, data=True)
