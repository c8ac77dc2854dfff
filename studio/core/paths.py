"""Where Studio keeps the user's data: one answer for every layer.

``$STUDIO_HOME`` when set (tests, portable installs), else the platform's user data folder
(``~/.local/share/studio``, ``%LOCALAPPDATA%\\studio``, ``~/Library/Application Support/studio``).
Settings, recovery files, Studio's own models folder and the user catalog live under it.
"""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    """Root of the user's Studio data."""
    env = os.environ.get("STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("studio", appauthor=False))


def config_dir() -> Path:
    """Where settings.ini lives: ``$STUDIO_HOME`` when set, else the platform config dir."""
    env = os.environ.get("STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("studio", appauthor=False))
