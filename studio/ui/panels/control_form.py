"""The Control panel's widgets and their layout, apart from what the panel does with them.

``lay_out`` builds the panel (``ControlPanel``) in a scroll area: the source, the Canny
edges, the scribble and pose boxes and the list of control layers. Every widget is a panel
attribute (tests and the screenshots find them by name), the fields are bound to the panel's
``ControlModel`` (``studio.ui.properties.bind``) and the buttons call the panel's slots.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from studio.ui.panels.control_depth import DepthGuide
from studio.ui.panels.control_model import RANGES, SOURCES
from studio.ui.pose_editor import PoseEditor
from studio.ui.properties import bind

# The panel the parts are built on: a ``control.ControlPanel`` (named by its base class here,
# so this module does not import the panel's).
ControlPanel = QWidget

# What the pose detector field's tooltip tells a GUI user.
POSE_MODEL_TIP = (
    "Empty: the installed pose detector. Download “DWPose (ONNX)” (needs onnxruntime) or "
    "“OpenPose body/hand/face detector” in the Models panel. Or press “…” and choose a "
    "folder holding yolox_l.onnx + dw-ll_ucoco_384.onnx (DWPose) or body_pose_model.pth "
    "(OpenPose)."
)


def lay_out(panel: ControlPanel) -> None:
    """The whole panel, top to bottom, in a scroll area without a horizontal bar."""
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    outer.addWidget(scroll)
    body = QWidget()
    scroll.setWidget(body)
    layout = QVBoxLayout(body)
    layout.addLayout(source_widgets(panel))
    layout.addWidget(canny_box(panel))
    layout.addWidget(scribble_box(panel))
    panel.depth = DepthGuide(panel)
    layout.addWidget(panel.depth.box)
    layout.addWidget(pose_box(panel))
    layout.addWidget(layers_box(panel))
    layout.addStretch(1)
    bind(panel.state, "source", panel.source_combo, data=True)


def source_widgets(panel: ControlPanel) -> QFormLayout:
    """What the guides are made from, and the region they cover."""
    src = QFormLayout()
    panel.source_combo = QComboBox()
    for key, label in SOURCES:
        panel.source_combo.addItem(label, key)
    src.addRow("Source", panel.source_combo)
    panel.region_label = QLabel("")
    src.addRow("Region", panel.region_label)
    return src


def threshold_row(panel: ControlPanel, grid: QGridLayout, row: int, text: str, name: str):
    """A slider and a spin box, both bound to ``panel.state.<name>``."""
    grid.addWidget(QLabel(text), row, 0)
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(*RANGES[name][1:])
    spin = QSpinBox()
    spin.setRange(*RANGES[name][1:])
    bind(panel.state, name, slider)
    bind(panel.state, name, spin)
    slider.sliderPressed.connect(panel.source_image)  # fetch the source before it moves
    grid.addWidget(slider, row, 1)
    grid.addWidget(spin, row, 2)
    return slider, spin


def canny_box(panel: ControlPanel) -> QGroupBox:
    """The Canny thresholds, blur, live preview and "Add as control layer"."""
    edges = QGroupBox("Edges (Canny)")
    grid = QGridLayout(edges)
    panel.low_slider, panel.low_spin = threshold_row(panel, grid, 0, "Low", "low")
    panel.high_slider, panel.high_spin = threshold_row(panel, grid, 1, "High", "high")
    grid.addWidget(QLabel("Blur"), 2, 0)
    panel.blur_spin = QSpinBox()
    panel.blur_spin.setRange(*RANGES["blur"][1:])
    panel.blur_spin.setSingleStep(2)
    panel.blur_spin.setToolTip("Gaussian blur (kernel px) before edge detection: fewer, "
                               "cleaner edges")  # fmt: skip
    bind(panel.state, "blur", panel.blur_spin)
    grid.addWidget(panel.blur_spin, 2, 1, 1, 2)
    panel.live_check = QCheckBox("Live preview on canvas")
    bind(panel.state, "live", panel.live_check)
    grid.addWidget(panel.live_check, 3, 0, 1, 3)
    panel.add_canny_button = QPushButton("Add as control layer")
    panel.add_canny_button.clicked.connect(panel.add_canny_layer)
    grid.addWidget(panel.add_canny_button, 4, 0, 1, 3)
    return edges


def scribble_box(panel: ControlPanel) -> QGroupBox:
    """The hint and "New scribble layer"."""
    scribble = QGroupBox("Scribble")
    sl = QVBoxLayout(scribble)
    hint = QLabel("Paint light strokes on a scribble layer: they guide as drawn.")
    hint.setWordWrap(True)
    sl.addWidget(hint)
    panel.add_scribble_button = QPushButton("New scribble layer")
    panel.add_scribble_button.clicked.connect(panel.add_scribble_layer)
    sl.addWidget(panel.add_scribble_button)
    return scribble


def pose_box(panel: ControlPanel) -> QGroupBox:
    """The detector field, Detect / Default skeleton, the pose editor and its buttons."""
    box = QGroupBox("Pose (OpenPose skeleton)")
    pl = QVBoxLayout(box)
    row = QHBoxLayout()
    panel.pose_model = QLineEdit()
    panel.pose_model.setPlaceholderText("installed detector, or a folder")
    panel.pose_model.setToolTip(POSE_MODEL_TIP)
    bind(panel.state, "pose_model", panel.pose_model)
    row.addWidget(panel.pose_model, 1)
    browse = QPushButton("…")
    browse.setToolTip("Choose a pose detector folder")
    browse.setFixedWidth(28)
    browse.clicked.connect(panel._browse_pose_model)
    row.addWidget(browse)
    pl.addLayout(row)
    row = QHBoxLayout()
    panel.detect_button = QPushButton("Detect pose")
    panel.detect_button.clicked.connect(panel.detect_pose)
    panel.template_button = QPushButton("Default skeleton")
    panel.template_button.clicked.connect(panel.default_skeleton)
    row.addWidget(panel.detect_button)
    row.addWidget(panel.template_button)
    pl.addLayout(row)
    panel.hands_check = QCheckBox("Hands and face (when their models are installed)")
    bind(panel.state, "hands", panel.hands_check)
    pl.addWidget(panel.hands_check)
    panel.pose_status = QLabel("")
    panel.pose_status.setWordWrap(True)
    pl.addWidget(panel.pose_status)
    w, h = panel._doc_size()
    panel.editor = PoseEditor(push=panel.host.push_command, size=(w or 512, h or 512))
    panel.editor.setMinimumHeight(240)
    panel.editor.pose_changed.connect(panel._on_pose_changed)
    pl.addWidget(panel.editor)
    row = QHBoxLayout()
    for text, slot in (
        ("Add person", panel.editor.add_person),
        ("Remove person", panel._remove_person),
        ("Mirror", panel._mirror),
    ):
        b = QPushButton(text)
        b.clicked.connect(slot)
        row.addWidget(b)
    pl.addLayout(row)
    row = QHBoxLayout()
    load = QPushButton("Load JSON…")
    load.clicked.connect(panel._load_json_dialog)
    save = QPushButton("Save JSON…")
    save.clicked.connect(panel._save_json_dialog)
    row.addWidget(load)
    row.addWidget(save)
    pl.addLayout(row)
    return box


def layers_box(panel: ControlPanel) -> QGroupBox:
    """The table of control layers, the ControlNet download button and the note."""
    box = QGroupBox("Control layers (used by Generate)")
    bl = QVBoxLayout(box)
    panel.table = QTableWidget(0, 6)
    panel.table.setHorizontalHeaderLabels(["On", "Layer", "Weight", "Start", "End", "ControlNet"])
    panel.table.verticalHeader().setVisible(False)
    header = panel.table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    for col, width in enumerate((30, 110, 62, 62, 62)):
        header.resizeSection(col, width)
    header.setStretchLastSection(True)
    panel.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    panel.table.setMinimumHeight(120)
    bl.addWidget(panel.table)
    # A ControlNet picked that is not installed yet: downloaded here, in one click.
    panel.download_button = QPushButton()
    panel.download_button.setObjectName("download-controlnet")
    panel.download_button.setToolTip(
        "Download the picked ControlNets (the Models panel shows progress)"
    )
    panel.download_button.clicked.connect(panel.download_controlnets)
    panel.download_button.setVisible(False)
    bl.addWidget(panel.download_button)
    panel.controlnet_note = QLabel("")
    panel.controlnet_note.setWordWrap(True)
    panel.controlnet_note.setVisible(False)
    bl.addWidget(panel.controlnet_note)
    return box
