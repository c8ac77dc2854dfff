"""The window's tools that run an engine job on the picture: the Smart select tool (W) with
Edit > Select by words, and Layer > Restore faces. Made after the window is on screen (they
import numpy and the job requests)."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow

from studio.ui.face_restore import FaceRestore
from studio.ui.smart_select import SmartSelect


def add_image_tools(window: QMainWindow) -> tuple[SmartSelect, FaceRestore]:
    """Both rooms, wired to the main window (a ``Host``) ``window``'s canvas and its menus
    room's Edit and Layer menus."""
    smart = SmartSelect(window, window.canvas, window.menus.edit_menu, window)
    faces = FaceRestore(window, window.menus.layer_menu, window)
    return smart, faces
