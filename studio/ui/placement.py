"""Where a top-level window goes on screen: inside the screen's available area (the desktop
less its panels and docks), title bar included.

The first window used to be sized 1280x800 with no position and then given the start-up
frame's *client* geometry before the window manager had placed that frame: at (0, 0), so
the new frame, title bar and all, sat about 20 px above the screen. Here positions are
frame positions (``QWidget.move`` places the frame, decorations included, also before the
window is shown) inside ``QScreen.availableGeometry``.

Used by the start-up frame (``studio.app``), which must not pull in the ``Qt`` namespace or
the window module, so this imports only the few classes it needs.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QRect
from PySide6.QtGui import QGuiApplication

DEFAULT_SIZE = (1280, 800)
# Decorations to leave room for while the window manager has not drawn them yet (a title bar
# and borders): the size of a new window is chosen before it is shown.
FRAME_GUESS = (8, 40)


def available_area(window) -> QRect:
    """The available geometry of the screen the window is on (its frame's centre), else the
    primary screen's."""
    screen = QGuiApplication.screenAt(window.frameGeometry().center()) or window.screen()
    if screen is None:
        screen = QGuiApplication.primaryScreen()
    return QRect() if screen is None else screen.availableGeometry()


def _decorations(window, guess: tuple[int, int]) -> tuple[int, int]:
    """Frame width and height beyond the client area (``guess`` until the window is shown)."""
    frame, client = window.frameGeometry(), window.geometry()
    dw, dh = frame.width() - client.width(), frame.height() - client.height()
    if window.isVisible() and (dw or dh):
        return dw, dh
    return guess


def place_window(window, saved: QByteArray | None = None) -> None:
    """Give ``window`` its saved geometry (``QWidget.saveGeometry``), or, with none, the
    default size (at most 1280x800 and what the available area holds) centred in the
    available area; either way its frame ends up inside the available area."""
    if isinstance(saved, QByteArray) and not saved.isEmpty() and window.restoreGeometry(saved):
        keep_on_screen(window)
        return
    area = available_area(window)
    if area.isEmpty():
        window.resize(*DEFAULT_SIZE)
        return
    dw, dh = _decorations(window, FRAME_GUESS)
    w = max(200, min(DEFAULT_SIZE[0], area.width() - dw))
    h = max(150, min(DEFAULT_SIZE[1], area.height() - dh))
    window.resize(w, h)
    window.move(area.x() + (area.width() - w - dw) // 2, area.y() + (area.height() - h - dh) // 2)


def keep_on_screen(window) -> None:
    """Shrink ``window`` to the available area if it is larger and move its frame inside it,
    top edge first (so the title bar can be grabbed). A saved size that fits is kept (before
    the window is shown its decorations are not known and not guessed). A maximized or
    full-screen window is left alone."""
    if window.isMaximized() or window.isFullScreen():
        return
    area = available_area(window)
    if area.isEmpty():
        return
    dw, dh = _decorations(window, (0, 0))
    w = min(window.width(), max(200, area.width() - dw))
    h = min(window.height(), max(150, area.height() - dh))
    if (w, h) != (window.width(), window.height()):
        window.resize(w, h)
    frame = window.frameGeometry()
    x = min(max(frame.x(), area.left()), area.left() + area.width() - (w + dw))
    y = min(max(frame.y(), area.top()), area.top() + area.height() - (h + dh))
    x, y = max(x, area.left()), max(y, area.top())  # the title bar wins over the bottom edge
    if (x, y) != (frame.x(), frame.y()):
        window.move(x, y)
