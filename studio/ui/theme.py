"""Dark and light themes (Fusion style + a palette, plus a small stylesheet from
resources/ for accents) and the app icon."""

from __future__ import annotations

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from studio.core.paths import resources_dir

RESOURCES = resources_dir()
THEMES = ("dark", "light")

_COLORS = {
    # role: (dark, light)
    "Window": ("#2a2a2f", "#efeff2"),
    "WindowText": ("#e6e6ea", "#1d1d22"),
    "Base": ("#1c1c20", "#ffffff"),
    "AlternateBase": ("#26262b", "#f4f4f7"),
    "ToolTipBase": ("#1c1c20", "#ffffe8"),
    "ToolTipText": ("#e6e6ea", "#1d1d22"),
    "PlaceholderText": ("#8a8a94", "#8a8a94"),
    "Text": ("#e6e6ea", "#1d1d22"),
    "Button": ("#34343a", "#e4e4ea"),
    "ButtonText": ("#e6e6ea", "#1d1d22"),
    "BrightText": ("#ff6b6b", "#c00000"),
    "Link": ("#8c7dff", "#4b3bc4"),
    "Highlight": ("#5b4bd6", "#5b4bd6"),
    "HighlightedText": ("#ffffff", "#ffffff"),
    "Mid": ("#45454c", "#c4c4cc"),
    "Dark": ("#18181b", "#a8a8b0"),
    "Light": ("#4a4a52", "#ffffff"),
}


def palette(theme: str) -> QPalette:
    i = 1 if theme == "light" else 0
    pal = QPalette()
    for role, colors in _COLORS.items():
        pal.setColor(getattr(QPalette.ColorRole, role), QColor(colors[i]))
    disabled = QColor("#77777f" if i == 0 else "#9a9aa4")
    for role in ("WindowText", "Text", "ButtonText"):
        pal.setColor(QPalette.ColorGroup.Disabled, getattr(QPalette.ColorRole, role), disabled)
    return pal


def stylesheet(theme: str) -> str:
    path = RESOURCES / f"{theme if theme in THEMES else 'dark'}.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def apply_theme(app: QApplication, theme: str) -> None:
    theme = theme if theme in THEMES else "dark"
    app.setStyle("Fusion")
    app.setPalette(palette(theme))
    app.setStyleSheet(stylesheet(theme))


def app_icon() -> QIcon:
    """The app icon: the SVG where Qt's SVG plugin is there, else the 256 px PNG."""
    icon = QIcon()
    icon.addFile(str(RESOURCES / "icon.png"))
    icon.addFile(str(RESOURCES / "icon.svg"))
    return icon
