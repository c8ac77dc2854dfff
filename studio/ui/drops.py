"""Files dropped anywhere on a window go one way: a drop on the prompt box, a panel or a dock
does what a drop on the canvas does (open or add the images, offer an A1111 PNG's
parameters, import a model file), instead of each widget's own idea of a drop (a text field
would type the file's ``file:///`` address into the prompt).

``DropRouter`` watches the application's drag and drop events (Qt delivers them to the
widget under the pointer, or the nearest ancestor that accepts drops: the window accepts
them, so every part of it is covered) and hands the local files of a drop on its window to
``on_files``. Drops of anything else (plain text into a field, image data on the canvas, a
layer dragged in the layers list) go on to the widget as before.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QDialog, QWidget

_DRAGS = (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop)


def local_files(event: QDropEvent) -> list[str]:
    """The local paths a drag carries (none for text, image data or web addresses)."""
    md = event.mimeData()
    if md is None or not md.hasUrls():
        return []
    return [u.toLocalFile() for u in md.urls() if u.isLocalFile() and u.toLocalFile()]


def window_of(widget: QWidget) -> QWidget:
    """The top-level window ``widget`` belongs to; a floating dock counts as part of the
    window it docks into. A dialog is a window of its own (a drop there is the dialog's)."""
    top = widget.window()
    while not isinstance(top, QDialog) and top.parentWidget() is not None:
        top = top.parentWidget().window()
    return top


class DropRouter(QObject):
    """Sends the files dropped on ``window`` (any widget in it) to ``on_files``."""

    def __init__(self, window: QWidget, on_files: Callable[[list[str]], None]) -> None:
        super().__init__(window)
        self._window = window
        self._on_files = on_files
        window.setAcceptDrops(True)  # so a drop on a widget that takes none reaches us
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)  # removed with this object

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() not in _DRAGS or not isinstance(watched, QWidget):
            return False
        if window_of(watched) is not self._window:
            return False
        paths = local_files(event)  # type: ignore[arg-type]
        if not paths:
            return False
        event.acceptProposedAction()  # type: ignore[attr-defined]
        if event.type() == QEvent.Type.Drop:
            self._on_files(paths)
        return True
