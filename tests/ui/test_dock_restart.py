"""The docks come back where they were: after a restart (the saved window state restored
into a new window, as the app builds it: built hidden, then shown) every dock has the
geometry it had when the window closed, from the first restart on."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDockWidget

from studio.ui.main_window import MainWindow
from studio.ui.theme import apply_theme


@pytest.fixture
def themed(qapp):
    """The app's theme, as studio.app applies it (its style sheet sets the panels' real
    minimum widths), put back afterwards."""
    style, palette, sheet = qapp.style().name(), qapp.palette(), qapp.styleSheet()
    apply_theme(qapp, "dark")
    yield
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)
    qapp.setStyle(style)


def _docks(window) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for dock in window.findChildren(QDockWidget):
        if dock.isVisible() and not dock.visibleRegion().isEmpty():
            g = dock.geometry()
            out[dock.objectName()] = (g.x(), g.y(), g.width(), g.height())
    return out


def _restart(qtbot, settings) -> MainWindow:
    again = MainWindow(settings, deferred=True)  # as studio.app builds it
    again.finish_startup()
    qtbot.addWidget(again)
    again.resize(1280, 800)
    again.show()
    qtbot.waitExposed(again)
    qtbot.wait(300)
    return again


def test_docks_do_not_move_on_the_first_restart(themed, qtbot, window, studio_home):
    qtbot.wait(300)  # the first run's default dock widths are applied once shown
    first = _docks(window)
    assert "panel-Generate" in first and "layers" in first
    window.close()  # saves the window state
    again = _restart(qtbot, window.settings)
    assert _docks(again) == first
    again.close()
    third = _restart(qtbot, window.settings)
    assert _docks(third) == first
    third.close()
