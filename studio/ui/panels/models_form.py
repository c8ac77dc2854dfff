"""The Models panel's widgets and their layout, apart from what the panel does with them.

``lay_out`` builds the panel (``ModelsPanel``) top to bottom: the filter and Refresh, the
tree of models, the info line, Download / Remove / Import… / Add folder…, the progress row
with Cancel and the status line. Every widget is a panel attribute (tests and the
screenshots find them by name) and the buttons call the panel's slots.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QVBoxLayout,
    QWidget,
)

# The panel the parts are built on: a ``models.ModelsPanel`` (named by its base class here,
# so this module does not import the panel's).
ModelsPanel = QWidget


def lay_out(panel: ModelsPanel, status: str = "") -> None:
    """The whole panel; ``status`` is the status line's first text (a catalog error)."""
    layout = QVBoxLayout(panel)
    top = QHBoxLayout()
    panel.filter_combo = QComboBox()
    panel.filter_combo.addItems(panel.FILTERS)
    panel.filter_combo.currentIndexChanged.connect(panel.populate)
    top.addWidget(panel.filter_combo, 1)
    panel.refresh_button = QPushButton("Refresh")
    panel.refresh_button.clicked.connect(panel.refresh)
    top.addWidget(panel.refresh_button)
    layout.addLayout(top)

    panel.tree = model_tree()
    panel.tree.itemSelectionChanged.connect(panel.update_buttons)
    layout.addWidget(panel.tree, 1)

    panel.info_label = QLabel()
    panel.info_label.setWordWrap(True)
    panel.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    layout.addWidget(panel.info_label)

    layout.addLayout(buttons(panel))

    progress_row = QHBoxLayout()
    panel.progress_bar = QProgressBar()
    panel.progress_bar.setRange(0, 1000)
    panel.progress_bar.setTextVisible(False)
    progress_row.addWidget(panel.progress_bar, 1)
    panel.cancel_button = QPushButton("Cancel")
    panel.cancel_button.clicked.connect(panel.cancel_downloads)
    progress_row.addWidget(panel.cancel_button)
    layout.addLayout(progress_row)
    panel.progress_label = QLabel()
    layout.addWidget(panel.progress_label)
    panel.status_label = QLabel(status)
    panel.status_label.setWordWrap(True)
    layout.addWidget(panel.status_label)


def model_tree() -> QTreeWidget:
    """The tree of models, its columns sized to fit the dock."""
    tree = QTreeWidget()
    tree.setHeaderLabels(["Model", "Kind", "Base", "Size", "Licence", "Status"])
    tree.setRootIsDecorated(True)
    tree.setAlternatingRowColors(True)
    # Fits the dock without sideways scrolling: the name stretches (elided, the full
    # name, id, kind, base and licence are in the tooltip); Kind and Base are hidden
    # (the View > columns of a wider dock can show them); Licence is elided.
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for col in (3, 5):
        header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(4, QHeaderView.ResizeMode.Interactive)
    header.resizeSection(4, 84)
    header.setMinimumSectionSize(40)
    tree.setColumnHidden(1, True)
    tree.setColumnHidden(2, True)
    tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    tree.setTextElideMode(Qt.TextElideMode.ElideRight)
    return tree


def buttons(panel: ModelsPanel) -> QHBoxLayout:
    """Download, Remove, Import… and Add folder…, in that order."""
    row = QHBoxLayout()
    panel.download_button = QPushButton("Download")
    panel.download_button.clicked.connect(panel.download_selected)
    panel.remove_button = QPushButton("Remove")
    panel.remove_button.clicked.connect(panel.remove_selected)
    panel.import_button = QPushButton("Import…")
    panel.import_button.setToolTip("Add a .safetensors/.gguf/.ckpt/.pth model file you have")
    panel.import_button.clicked.connect(panel.choose_import)
    panel.folder_button = QPushButton("Add folder…")
    panel.folder_button.setToolTip(
        "Also use the models in a folder of yours: diffusers model folders, model files, "
        "and AUTOMATIC1111/ComfyUI folders (checkpoints/, loras/, ControlNet/, …) alike"
    )
    panel.folder_button.clicked.connect(panel.choose_folder)
    for b in (panel.download_button, panel.remove_button, panel.import_button, panel.folder_button):
        row.addWidget(b)
    return row
