"""The window's docks: Layers and History on the left, the feature panels tabbed on the right
(each in a scroll area, so no panel's minimum height pushes the window past the screen), and
the dock sizes the user chose last time.

``Docks`` is one room of the window shell (``main_window.MainWindow``). It owns the docks, the
``panels`` by title and ``panel_errors`` (a panel that failed to load, and why); it is given
the window to dock into, the View menu that lists the docks, and the host the panels get.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QUndoView, QWidget

from studio.ui.panels.fit import VScrollArea

if TYPE_CHECKING:
    from PySide6.QtGui import QUndoStack

    from studio.ui.host import Host

log = logging.getLogger(__name__)

PANEL_WIDTH = 380  # the panels' default dock width (px), unless a panel needs more


def load_panel_class(spec: str) -> type:
    """Import ``module:Class``."""
    module_name, cls_name = spec.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


class Docks(QObject):
    """The left docks (layers, history) and the panel docks of ``window``."""

    def __init__(
        self, window: QMainWindow, undo: QUndoStack, layers_panel: QWidget, view_menu: QMenu
    ) -> None:
        super().__init__(window)
        self._window = window
        self._view_menu = view_menu
        self.panels: dict[str, QWidget] = {}
        self.panel_errors: dict[str, str] = {}
        self._panel_docks: list[QDockWidget] = []
        self._pending_state: QByteArray | None = None  # restored when the window is shown
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.layers_dock = QDockWidget("Layers", window)
        self.layers_dock.setObjectName("layers")
        self.layers_dock.setWidget(layers_panel)
        window.addDockWidget(left, self.layers_dock)
        self.undo_view = QUndoView(undo)
        self.undo_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.undo_view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.undo_view.setEmptyLabel("Opened")
        self.history_dock = QDockWidget("History", window)
        self.history_dock.setObjectName("undoHistory")
        self.history_dock.setWidget(self.undo_view)
        window.addDockWidget(left, self.history_dock)
        window.splitDockWidget(self.layers_dock, self.history_dock, Qt.Orientation.Vertical)
        docks = [self.layers_dock, self.history_dock]
        window.resizeDocks(docks, [500, 200], Qt.Orientation.Vertical)
        view_menu.addAction(self.layers_dock.toggleViewAction())
        view_menu.addAction(self.history_dock.toggleViewAction())

    def load_panels(self, specs: list[tuple[str, str]], host: Host) -> None:
        """Make and dock each ``(title, "module:Class")`` panel with ``host``; one that fails
        is logged and listed in ``panel_errors``, and the others load."""
        for title, spec in specs:
            try:
                self.add_panel(title, load_panel_class(spec)(host))
            except Exception as e:  # noqa: BLE001 - one broken panel must not stop the app
                log.exception("panel %s failed to load", title)
                self.panel_errors[title] = f"{type(e).__name__}: {e}"
        window = self._window
        if self._panel_docks:
            window.resizeDocks(self._panel_docks[:1], [PANEL_WIDTH], Qt.Orientation.Horizontal)
        window.resizeDocks([self.layers_dock], [220], Qt.Orientation.Horizontal)

    def restore(self, state: object) -> None:
        """The dock sizes the user chose last time (``QMainWindow.saveState``), else the
        default panel width once the panels are polished (their sizes final).

        The saved state is restored when the window is shown (before it is on screen), not
        before: until then the panels' layouts report minimum widths hundreds of pixels
        wider than they are once shown, the restored docks were held to those, and the docks
        moved on the first restart. Both paths now size the docks from the same, final,
        minimums."""
        if isinstance(state, QByteArray) and not state.isEmpty():
            if self._window.isVisible():
                self._window.restoreState(state)
            else:
                self._pending_state = state
                self._window.installEventFilter(self)
        elif self._panel_docks:
            QTimer.singleShot(0, self._default_dock_width)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if watched is self._window and event.type() == QEvent.Type.Show:
            self._window.removeEventFilter(self)
            QTimer.singleShot(0, self._restore_pending)
        return False

    @Slot()
    def _restore_pending(self) -> None:
        state, self._pending_state = self._pending_state, None
        if state is not None:
            self._window.restoreState(state)

    def add_panel(self, title: str, widget: QWidget) -> None:
        """Dock ``widget`` on the right, tabbed behind the first panel."""
        dock = QDockWidget(title, self._window)
        dock.setObjectName(f"panel-{title}")
        # In a scroll area so no panel's minimum height can push the window past the screen;
        # never narrower than the panel needs, so every control is whole.
        scroll = VScrollArea(widget)
        dock.setWidget(scroll)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self._window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        set_shown = getattr(widget, "set_shown", None)  # panels with live canvas previews
        if callable(set_shown):
            set_shown(not self._panel_docks)  # a tab behind the first is not shown
            dock.visibilityChanged.connect(set_shown)
        if self._panel_docks:
            self._window.tabifyDockWidget(self._panel_docks[0], dock)
        self._panel_docks.append(dock)
        self.panels[title] = widget
        self._view_menu.addAction(dock.toggleViewAction())
        if len(self._panel_docks) > 1:
            self._panel_docks[0].raise_()

    def show_panel(self, title: str) -> None:
        """Bring the panel's dock to the front (its tab becomes current)."""
        dock = self._window.findChild(QDockWidget, f"panel-{title}")
        if dock is not None:
            dock.show()
            dock.raise_()

    @Slot()
    def _default_dock_width(self) -> None:
        """380 px, or what the widest panel needs (VScrollArea keeps every control whole)."""
        self._window.resizeDocks(self._panel_docks[:1], [PANEL_WIDTH], Qt.Orientation.Horizontal)
