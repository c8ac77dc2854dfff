"""Reliability fixtures: a MainWindow with its own STUDIO_HOME whose prompts are answered by
the test (same pattern as tests/ui/conftest.py, which pytest does not share with this folder)."""

from __future__ import annotations

import pytest


class Answers:
    """Scripted answers to MainWindow.ask; records every question."""

    def __init__(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        self.default = QMessageBox.StandardButton.Discard
        self.queue: list = []
        self.asked: list[tuple[str, str]] = []

    def __call__(self, title, text, buttons, default):
        self.asked.append((title, text))
        return self.queue.pop(0) if self.queue else self.default


@pytest.fixture
def studio_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


@pytest.fixture
def window(qtbot, studio_home):
    from studio.ui.main_window import MainWindow

    win = MainWindow()
    win.answers = Answers()
    win.ask = win.answers
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.model.undo.setClean()
    win.close()
