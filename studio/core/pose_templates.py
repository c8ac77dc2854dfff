"""Pose templates shipped in ``resources/poses/``: OpenPose JSON files (the format other pose
editors write), drawn on a 512 x 768 canvas, fitted into any canvas on load."""

from __future__ import annotations

from pathlib import Path

from studio.core.errors import BadInput
from studio.core.paths import resources_dir
from studio.core.pose import Pose


def templates_dir() -> Path:
    return resources_dir() / "poses"


def template_names() -> list[str]:
    """The shipped templates by name (file stem), sorted."""
    return sorted(p.stem for p in templates_dir().glob("*.json"))


def load_template(name: str, width: int, height: int) -> Pose:
    """Template ``name`` scaled uniformly to fit a ``width`` x ``height`` canvas and centred."""
    path = templates_dir() / f"{name}.json"
    if not path.is_file():
        raise BadInput(f"no pose template {name!r} (have: {', '.join(template_names())})")
    src = Pose.load(path)
    scale = min(width / src.width, height / src.height)
    dx = (width - src.width * scale) / 2.0
    dy = (height - src.height * scale) / 2.0
    out = Pose(width, height)
    for person in src.people:
        for attr in ("body", "hand_left", "hand_right", "face"):
            pts = getattr(person, attr)
            if pts is not None:
                setattr(person, attr, [(x * scale + dx, y * scale + dy, c) for x, y, c in pts])
        out.people.append(person)
    return out
