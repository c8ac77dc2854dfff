"""The Tools menu's speed choices: checked by a click, saved in the settings, handed to the
engine through the environment it reads at each job, and read back at the next start."""

from __future__ import annotations

import os

from PySide6.QtWidgets import QMenu


def _tools_menu(window) -> QMenu:
    for action in window.menuBar().actions():
        if action.text().replace("&", "") == "Tools":
            return action.menu()
    raise AssertionError("no Tools menu")


def _item(menu: QMenu, text: str):
    for action in menu.actions():
        if action.text().replace("&", "") == text:
            return action
    raise AssertionError(f"no {text!r} in the Tools menu")


def test_compile_and_channels_last_from_the_tools_menu(window, monkeypatch):
    monkeypatch.setenv("STUDIO_COMPILE", "0")  # restored after the test
    monkeypatch.setenv("STUDIO_CHANNELS_LAST", "0")
    menu = _tools_menu(window)
    compile_item = _item(menu, "Compile the model (GPU)")
    layout_item = _item(menu, "Channels-last layout (SD on the GPU)")
    assert compile_item.isCheckable() and not compile_item.isChecked()
    compile_item.trigger()  # what a click does
    assert compile_item.isChecked()
    assert os.environ["STUDIO_COMPILE"] == "1" and os.environ["STUDIO_CHANNELS_LAST"] == "0"
    assert window.settings.compile_models is True
    layout_item.trigger()
    assert os.environ["STUDIO_CHANNELS_LAST"] == "1"
    compile_item.trigger()
    assert os.environ["STUDIO_COMPILE"] == "0" and window.settings.compile_models is False


def test_saved_choice_reaches_the_engine_at_start(qtbot, studio_home, monkeypatch):
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings

    monkeypatch.delenv("STUDIO_COMPILE", raising=False)
    saved = Settings()
    saved.compile_models = True
    saved.sync()
    win = MainWindow()
    qtbot.addWidget(win)
    try:
        assert os.environ["STUDIO_COMPILE"] == "1"
        assert win.menus.act_compile.isChecked()
    finally:
        monkeypatch.delenv("STUDIO_COMPILE", raising=False)
        win.model.undo.setClean()
        win.close()


def test_environment_set_by_the_user_wins_at_start(qtbot, studio_home, monkeypatch):
    from studio.ui.main_window import MainWindow

    monkeypatch.setenv("STUDIO_COMPILE", "1")  # the settings say off (a fresh home)
    win = MainWindow()
    qtbot.addWidget(win)
    try:
        assert os.environ["STUDIO_COMPILE"] == "1"
    finally:
        win.model.undo.setClean()
        win.close()
