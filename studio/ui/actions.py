"""Actions, the tool bar and the menus of the window, with the tool and brush controls they
drive, the "Paints on" label, the theme, the keyboard-shortcut list and the About box.

The keys follow Krita and Photoshop where they agree: B brush, E eraser, M selection, [ and ]
brush size, Ctrl+Z undo, Ctrl+Shift+Z (and Ctrl+Y) redo, Space-drag pan, Ctrl+wheel zoom,
Ctrl+S save. Every shortcut is a window-wide ``QAction``: Qt does not fire a single-key one
while a text field has the focus (the field gets the key), and the canvas takes the focus
when the pointer is over it (``canvas``), so B, E and M reach the tools and are never typed
into a field by accident. The shortcut list (F1) is made from the actions, so it cannot drift.

``Actions`` is one room of the window shell (``main_window.MainWindow``). It owns every
``QAction``, the tool bar and the menu bar; an action calls a slot of the room that does the
work, given to it explicitly: ``documents.Documents`` (files), ``edits.Edits`` (selection,
mask, layers), ``jobs.Jobs`` (cancel), the ``canvas`` (tools, brush, zoom). The docks room
lists its docks in ``view_menu``. The shell keeps this room as ``window.menus`` (the name
``actions`` would hide ``QWidget.actions()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QColorDialog,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.theme import apply_theme

if TYPE_CHECKING:
    from studio.ui.canvas import CanvasView
    from studio.ui.documents import Documents
    from studio.ui.edits import Edits
    from studio.ui.jobs import Jobs
    from studio.ui.settings import Settings

# Keys and pointer gestures that are not menu actions, for the shortcut list (Help > Keyboard
# shortcuts, F1), which lists every action's shortcut from the actions themselves. Each row:
# (keys as shown, what they do, the QShortcut keys of the window that do it; tests check them).
GESTURES = [
    ("Space + drag, middle-button drag", "Pan the canvas", ()),
    ("Wheel, Ctrl+wheel", "Zoom around the pointer", ()),
    ("Shift+wheel", "Scroll", ()),
    ("Ctrl+Enter", "Generate (queues when busy; Generate panel)", ("Ctrl+Return", "Ctrl+Enter")),
    ("Enter / X", "Accept / discard the staged result", ("Return", "Enter", "X")),
    ("Left / Right", "Previous / next staged result", ("Left", "Right")),
    ("W, then click / Alt+click / drag", "Smart select: include, exclude, box (SAM 2)", ()),
    ("Esc", "Drop the smart selection's points", ()),
]


class Actions(QObject):
    """Actions, tool bar, menus, tools and brush of the window."""

    def __init__(
        self,
        window: QMainWindow,
        settings: Settings,
        canvas: CanvasView,
        documents: Documents,
        edits: Edits,
        jobs: Jobs,
    ) -> None:
        """Build the actions, the tool bar and the menus on ``window``."""
        super().__init__(window)
        self._window = window
        self.settings = settings
        self.canvas = canvas
        self.model = canvas.model
        self._documents = documents
        self._edits = edits
        self._jobs = jobs
        self.shortcuts_dialog: QDialog | None = None  # Help > Keyboard shortcuts, made once
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        canvas.tool_changed.connect(self._on_tool_changed)
        canvas.brush_changed.connect(self._on_brush_changed)
        self.model.active_changed.connect(self.update_target)
        self.model.structure_changed.connect(self.update_target)
        self._on_tool_changed(canvas.tool)

    @Slot(str)
    def _undo_text(self, text: str) -> None:
        self.act_undo.setStatusTip(f"Undo {text}" if text else "")
        self.act_undo.setToolTip(f"Undo {text} (Ctrl+Z)" if text else "Undo (Ctrl+Z)")

    @Slot()
    def _speed_toggled(self) -> None:
        """Save the speed choices and hand them to the engine for the next job (a model
        already compiled stays compiled until it is loaded again)."""
        from studio.ui.settings import export_speed

        self.settings.compile_models = self.act_compile.isChecked()
        self.settings.channels_last = self.act_channels_last.isChecked()
        export_speed(self.settings, chosen=True)

    @Slot(str)
    def _redo_text(self, text: str) -> None:
        self.act_redo.setStatusTip(f"Redo {text}" if text else "")
        self.act_redo.setToolTip(f"Redo {text} (Ctrl+Shift+Z)" if text else "Redo (Ctrl+Shift+Z)")

    def _action(
        self, text: str, slot, shortcut=None, tip: str = "", checkable: bool = False
    ) -> QAction:
        a = QAction(text, self._window)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(k) for k in keys])
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(f"{tip} ({a.shortcut().toString()})" if a.shortcut() else tip)
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self._window.addAction(a)  # shortcuts work even when the menu bar is hidden
        return a

    def _build_actions(self) -> None:
        S = QKeySequence.StandardKey
        self.act_open = self._action(
            "&Open…", self._documents.open_dialog, S.Open, "Open an image or project"
        )
        self.act_import = self._action(
            "&Import as layers…",
            self._documents.import_dialog,
            "Ctrl+Shift+O",
            "Add images as new layers",
        )
        self.act_save = self._action("&Save", self._documents.save, S.Save, "Save the project")
        self.act_save_as = self._action("Save &as…", self._documents.save_as, "Ctrl+Shift+S")
        self.act_export = self._action(
            "&Export image…", self._documents.export_dialog, "Ctrl+Shift+E", "Export PNG/JPEG/WebP"
        )
        self.act_new = self._action(
            "&New", self._documents.new_document, S.New, "Close the document"
        )
        self.act_quit = self._action("&Quit", self._window.close, S.Quit)
        undo = self.model.undo
        self.act_undo = self._action("&Undo", undo.undo, "Ctrl+Z")
        self.act_redo = self._action("&Redo", undo.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        self.act_undo.setEnabled(False)
        self.act_redo.setEnabled(False)
        undo.canUndoChanged.connect(self.act_undo.setEnabled)
        undo.canRedoChanged.connect(self.act_redo.setEnabled)
        undo.undoTextChanged.connect(self._undo_text)
        undo.redoTextChanged.connect(self._redo_text)
        self.act_copy = self._action("&Copy image", self._documents.copy_image, S.Copy)
        self.act_paste = self._action("&Paste as layer", self._documents.paste, S.Paste)
        self.act_select_all = self._action("Select &all", self._edits.select_all, "Ctrl+A")
        self.act_deselect = self._action("&Deselect", self._edits.deselect, "Ctrl+D")
        self.act_clear_mask = self._action(
            "C&lear mask", self._edits.clear_mask, [QKeySequence.StandardKey.Delete, "Backspace"]
        )
        self.act_invert_mask = self._action("&Invert mask", self._edits.invert_mask, "Ctrl+I")
        self.act_zoom_in = self._action(
            "Zoom &in", self.canvas.zoom_in, ["Ctrl+=", "Ctrl++"], "Zoom in"
        )
        self.act_zoom_in.setIconText("+")
        self.act_zoom_out = self._action("Zoom &out", self.canvas.zoom_out, "Ctrl+-", "Zoom out")
        self.act_zoom_out.setIconText("−")
        self.act_fit = self._action("&Fit", self.canvas.fit, "Ctrl+0", "Fit to window")
        self.act_100 = self._action("&Actual size", self.canvas.actual_size, "Ctrl+1", "100%")
        self.act_100.setIconText("1:1")
        self.act_smaller = self._action("Smaller brush", self.brush_smaller, "[")
        self.act_larger = self._action("Larger brush", self.brush_larger, "]")
        self.act_softer = self._action("Softer brush", self.brush_softer, ["Shift+[", "{"])
        self.act_harder = self._action("Harder brush", self.brush_harder, ["Shift+]", "}"])
        self.act_cancel = self._action("Cancel job", self._jobs.cancel_job, "Esc")
        self.act_compile = self._action(
            "Compile the model (&GPU)",
            self._speed_toggled,
            tip="torch.compile the model's repeated blocks: the first image takes longer, the "
            "next ones run faster (GPU only; cached between runs)",
            checkable=True,
        )
        self.act_compile.setChecked(self.settings.compile_models)
        self.act_channels_last = self._action(
            "Channels-last &layout (SD on the GPU)",
            self._speed_toggled,
            tip="Lay out the SD UNet and VAE channels-last, faster on tensor-core GPUs",
            checkable=True,
        )
        self.act_channels_last.setChecked(self.settings.channels_last)
        self.act_shortcuts = self._action("&Keyboard shortcuts", self.show_shortcuts, "F1")
        self.act_about = self._action("&About Studio", self.show_about)
        self.act_show_mask = self._action(
            "Show &mask",
            self._show_mask_toggled,
            "Shift+M",
            "Show or hide the mask's tint and outline (hidden over a new result)",
            checkable=True,
        )
        self.act_show_mask.setChecked(True)
        self.canvas.mask_shown_changed.connect(self.act_show_mask.setChecked)
        self.act_mask_color = self._action("Mask &colour…", self.pick_mask_color)
        self.mask_opacity_actions: dict[int, QAction] = {}
        self.mask_opacity_group = QActionGroup(self._window)
        for pct in (25, 50, 75, 100):
            a = self._action(
                f"Mask opacity {pct} %",
                lambda *_, p=pct: self.set_mask_style(opacity=p / 100),
                checkable=True,
            )
            a.setChecked(round(self.settings.mask_opacity * 100) == pct)
            self.mask_opacity_group.addAction(a)
            self.mask_opacity_actions[pct] = a
        self.act_mask_toggle = self._action(
            "Paint on &mask / layer",
            self._edits.toggle_mask_target,
            "Q",
            "Switch the brush between the mask and the last image/control layer",
        )
        self.act_new_control = self._action("New &control layer", self._edits.new_control_layer)
        self.act_duplicate = self._action("&Duplicate layer", self._edits.duplicate_layer, "Ctrl+J")
        self.act_delete_layer = self._action("De&lete layer", self._edits.delete_layer)
        self.act_layer_up = self._action("Move layer &up", self._edits.layer_up, "Ctrl+]")
        self.act_layer_down = self._action("Move layer do&wn", self._edits.layer_down, "Ctrl+[")

        self.tool_group = QActionGroup(self._window)
        self.tool_actions: dict[str, QAction] = {}
        for tool, text, key in (
            ("brush", "Brush", "B"),
            ("eraser", "Eraser", "E"),
            ("select", "Select", "M"),
            ("smart", "Smart select", "W"),
            ("pan", "Pan", "H"),
        ):
            a = self._action(
                text,
                lambda *_, t=tool: self.canvas.set_tool(t),
                key,
                f"{text} tool",
                checkable=True,
            )
            a.setData(tool)
            self.tool_group.addAction(a)
            self.tool_actions[tool] = a
        self.tool_actions["brush"].setChecked(True)

        self.theme_group = QActionGroup(self._window)
        self.theme_actions = {}
        for theme in ("dark", "light"):
            a = self._action(
                theme.capitalize() + " theme", lambda *_, t=theme: self.set_theme(t), checkable=True
            )
            a.setData(theme)
            a.setChecked(self.settings.theme == theme)
            self.theme_group.addAction(a)
            self.theme_actions[theme] = a

    def _build_toolbar(self) -> None:
        tb = self._window.addToolBar("Tools")
        tb.setObjectName("tools")
        tb.setMovable(False)
        for a in self.tool_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel(" Size "))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 1000)
        self.size_spin.setSuffix(" px")
        self.size_spin.setValue(self.canvas.brush_size)
        self.size_spin.setToolTip("Brush size ( [ and ] )")
        self.size_spin.valueChanged.connect(self._on_size_spin)
        tb.addWidget(self.size_spin)
        tb.addWidget(QLabel(" Hardness "))
        self.hardness_spin = QSpinBox()
        self.hardness_spin.setRange(0, 100)
        self.hardness_spin.setSuffix(" %")
        self.hardness_spin.setValue(round(self.canvas.brush_hardness * 100))
        self.hardness_spin.setToolTip("Brush hardness ( Shift+[ and Shift+] )")
        self.hardness_spin.valueChanged.connect(self._on_hardness_spin)
        tb.addWidget(self.hardness_spin)
        self.color_button = QToolButton()
        self.color_button.setToolTip("Brush colour for image and control layers")
        self.color_button.clicked.connect(self.pick_color)
        tb.addWidget(self.color_button)
        self._update_color_button()
        tb.addSeparator()
        tb.addWidget(QLabel(" Paints on: "))
        self.target_label = QLabel()
        self.target_label.setObjectName("target")
        self.target_label.setToolTip(
            "The brush paints on the active layer: the mask layer (for inpainting) by "
            "default; select an image or control layer in Layers to paint on it."
        )
        tb.addWidget(self.target_label)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        tb.addSeparator()
        tb.addAction(self.act_zoom_out)
        tb.addAction(self.act_zoom_in)
        tb.addAction(self.act_fit)
        tb.addAction(self.act_100)

    def _build_menus(self) -> None:
        mb = self._window.menuBar()
        f = mb.addMenu("&File")
        for a in (self.act_new, self.act_open, self.act_import):
            f.addAction(a)
        self.recent_menu = f.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        f.addSeparator()
        for a in (self.act_save, self.act_save_as, self.act_export):
            f.addAction(a)
        f.addSeparator()
        f.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        for a in (self.act_undo, self.act_redo):
            e.addAction(a)
        e.addSeparator()
        for a in (self.act_copy, self.act_paste):
            e.addAction(a)
        e.addSeparator()
        for a in (
            self.act_select_all,
            self.act_deselect,
            self.act_clear_mask,
            self.act_invert_mask,
        ):
            e.addAction(a)
        self.edit_menu = e  # rooms with edits of their own add them here
        la = mb.addMenu("&Layer")
        for a in (
            self.act_new_control,
            self.act_duplicate,
            self.act_delete_layer,
            self.act_layer_up,
            self.act_layer_down,
        ):
            la.addAction(a)
        la.addSeparator()
        la.addAction(self.act_mask_toggle)
        self.layer_menu = la  # rooms that make layers add their actions here
        t = mb.addMenu("&Tools")
        for a in self.tool_actions.values():
            t.addAction(a)
        t.addSeparator()
        for a in (self.act_smaller, self.act_larger, self.act_softer, self.act_harder):
            t.addAction(a)
        t.addSeparator()
        t.addAction(self.act_cancel)
        t.addSeparator()
        t.addAction(self.act_compile)
        t.addAction(self.act_channels_last)
        self.view_menu = mb.addMenu("&View")
        for a in (self.act_zoom_in, self.act_zoom_out, self.act_fit, self.act_100):
            self.view_menu.addAction(a)
        self.view_menu.addSeparator()
        for a in self.theme_actions.values():
            self.view_menu.addAction(a)
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.act_show_mask)
        self.view_menu.addAction(self.act_mask_color)
        opacity = self.view_menu.addMenu("Mask &opacity")
        for a in self.mask_opacity_actions.values():
            opacity.addAction(a)
        self.view_menu.addSeparator()
        h = mb.addMenu("&Help")
        h.addAction(self.act_shortcuts)
        h.addAction(self.act_about)

    @Slot()
    def _fill_recent(self) -> None:
        self._documents.fill_recent(self.recent_menu)

    @Slot()
    def update_target(self) -> None:
        """The "Paints on" label: the brush's layer (and whether it erases)."""
        layer = self.model.doc.active_layer
        if layer.is_mask:
            text = "Mask (inpaint)"
        else:
            text = f"{layer.kind.capitalize()}: {layer.name}"
        if self.canvas.tool == "eraser":
            text = "Erasing " + text
        self.target_label.setText(text)
        self.target_label.setProperty("layerKind", layer.kind)
        self.target_label.style().unpolish(self.target_label)
        self.target_label.style().polish(self.target_label)
        self.color_button.setEnabled(not layer.is_mask)

    def set_theme(self, theme: str) -> None:
        """Switch the app to the "dark" or "light" theme (saved in the settings)."""
        self.settings.theme = theme
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, theme)
        self.canvas.setBackgroundBrush(QColor("#bcbcc2" if theme == "light" else "#28282c"))
        if theme in self.theme_actions:
            self.theme_actions[theme].setChecked(True)

    @Slot(str)
    def _on_tool_changed(self, tool: str) -> None:
        self.tool_actions[tool].setChecked(True)
        self.update_target()

    @Slot()
    def _on_brush_changed(self) -> None:
        self.size_spin.blockSignals(True)
        self.hardness_spin.blockSignals(True)
        self.size_spin.setValue(self.canvas.brush_size)
        self.hardness_spin.setValue(round(self.canvas.brush_hardness * 100))
        self.size_spin.blockSignals(False)
        self.hardness_spin.blockSignals(False)
        self.settings.brush_size = self.canvas.brush_size
        self.settings.brush_hardness = self.canvas.brush_hardness

    @Slot(int)
    def _on_size_spin(self, v: int) -> None:
        self.canvas.set_brush(size=v)

    @Slot(int)
    def _on_hardness_spin(self, v: int) -> None:
        self.canvas.set_brush(hardness=v / 100)

    @Slot()
    def brush_smaller(self) -> None:
        s = self.canvas.brush_size
        self.canvas.set_brush(size=max(1, s - max(1, round(s * 0.15))))

    @Slot()
    def brush_larger(self) -> None:
        s = self.canvas.brush_size
        self.canvas.set_brush(size=s + max(1, round(s * 0.15)))

    @Slot()
    def brush_softer(self) -> None:
        self.canvas.set_brush(hardness=self.canvas.brush_hardness - 0.1)

    @Slot()
    def brush_harder(self) -> None:
        self.canvas.set_brush(hardness=self.canvas.brush_hardness + 0.1)

    @Slot(bool)
    def _show_mask_toggled(self, shown: bool) -> None:
        self.canvas.set_mask_shown(shown)
        if shown:
            self._window.statusBar().clearMessage()  # "Mask hidden over the new result" is over

    @Slot()
    def pick_mask_color(self) -> None:
        c = QColorDialog.getColor(self.canvas.mask_color, self._window, "Mask colour")
        if c.isValid():
            self.set_mask_style(color=c.name())

    def set_mask_style(self, color: str | None = None, opacity: float | None = None) -> None:
        """The mask's tint colour and opacity (0..1), saved in the settings."""
        if color is not None:
            self.settings.mask_color = color
        if opacity is not None:
            self.settings.mask_opacity = float(opacity)
        self.canvas.set_mask_style(self.settings.mask_color, self.settings.mask_opacity)

    @Slot()
    def pick_color(self) -> None:
        c = QColorDialog.getColor(self.canvas.brush_color, self._window, "Brush colour")
        if c.isValid():
            self.canvas.brush_color = c
            self.settings.brush_color = c.name()
            self._update_color_button()

    def _update_color_button(self) -> None:
        c = self.canvas.brush_color
        self.color_button.setStyleSheet(
            f"QToolButton {{ background: {c.name()}; min-width: 18px; min-height: 18px;"
            " border: 1px solid #888; border-radius: 3px; }"
        )

    def shortcut_rows(self) -> list[tuple[str, str, str]]:
        """(keys, action, menu) of every action with a shortcut, in menu order, then the
        gestures and panel keys (``GESTURES``)."""
        rows: list[tuple[str, str, str]] = []
        seen: set[int] = set()

        def walk(menu: QMenu, where: str) -> None:
            for a in menu.actions():
                if a.menu() is not None:
                    walk(a.menu(), f"{where} > {_plain(a.text())}")
                elif a.shortcuts() and id(a) not in seen:
                    seen.add(id(a))
                    rows.append((_keys(a), _plain(a.text()), where))

        for top in self._window.menuBar().actions():
            if top.menu() is not None:
                walk(top.menu(), _plain(top.text()))
        # any action with a key but in no menu: the window's, and the canvas's own keys
        for a in [*self._window.actions(), *self.canvas.actions()]:
            if a.shortcuts() and id(a) not in seen:
                seen.add(id(a))
                rows.append((_keys(a), _plain(a.text()), ""))
        rows += [(keys, what, "Canvas and panels") for keys, what, _bound in GESTURES]
        return rows

    @Slot()
    def show_shortcuts(self) -> None:
        """Help > Keyboard shortcuts: a non-modal list of every shortcut (made from the
        actions, so it says what the keys do now)."""
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = self._make_shortcuts_dialog()
        dialog = self.shortcuts_dialog
        self._fill_shortcuts(dialog.findChild(QTableWidget))
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _make_shortcuts_dialog(self) -> QDialog:
        dialog = QDialog(self._window)
        dialog.setObjectName("shortcuts")
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setWindowModality(Qt.WindowModality.NonModal)
        table = QTableWidget(0, 3, dialog)
        table.setHorizontalHeaderLabels(["Keys", "Action", "Menu"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
        buttons.rejected.connect(dialog.close)
        layout = QVBoxLayout(dialog)
        layout.addWidget(table)
        layout.addWidget(buttons)
        dialog.resize(560, 600)
        return dialog

    def _fill_shortcuts(self, table: QTableWidget) -> None:
        rows = self.shortcut_rows()
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(text))

    @Slot()
    def show_about(self) -> None:
        from studio import __version__

        QMessageBox.about(
            self._window,
            "About Studio",
            f"<b>Studio {__version__}</b><br>Generative image editing on your own machine.",
        )


def _plain(text: str) -> str:
    """A menu text without its mnemonic ampersands and trailing ellipsis."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()


def _keys(action: QAction) -> str:
    """An action's shortcuts as the user reads them ("Ctrl+Shift+Z / Ctrl+Y")."""
    native = QKeySequence.SequenceFormat.NativeText
    return " / ".join(seq.toString(native) for seq in action.shortcuts())
