"""UI test fixtures: a MainWindow with its own STUDIO_HOME (settings, recovery files) whose
prompts are answered by the test instead of blocking on a modal dialog."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox


@pytest.fixture
def studio_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


class Answers:
    """Scripted answers to MainWindow.ask; records every question."""

    def __init__(self) -> None:
        self.default = QMessageBox.StandardButton.Discard
        self.queue: list = []
        self.asked: list[tuple[str, str]] = []

    def __call__(self, title, text, buttons, default):
        self.asked.append((title, text))
        return self.queue.pop(0) if self.queue else self.default


@pytest.fixture
def window(qtbot, studio_home):
    from studio.ui.main_window import MainWindow

    win = MainWindow()
    win.answers = Answers()
    win.ask = win.answers
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.model.undo.setClean()  # nothing to prompt about
    win.close()


def doc_pixels(win) -> np.ndarray:
    return win.model.doc.composite()
