"""Dark and light stylesheets and the app icon, from studio/resources."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
THEMES = ("dark", "light")


def stylesheet(theme: str) -> str:
    path = RESOURCES / f"{theme if theme in THEMES else 'dark'}.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def apply_theme(app: QApplication, theme: str) -> None:
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet(theme))


def app_icon() -> QIcon:
    return QIcon(str(RESOURCES / "icon.svg"))
