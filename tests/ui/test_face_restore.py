"""Layer > Restore faces in the window: the restored picture arrives as a new layer above the
original (which stays), outside the faces the pixels are the visible image's, and one undo
removes it. The detector is a double with a known face; the restorer a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.restore import faces as F
from tests.ui.test_ui_canvas import drop

# Five landmarks of a face about 60 px wide around (150, 110) in chelsea.png (451x300)
LANDMARKS = np.array([[135, 100], [165, 100], [150, 115], [138, 130], [162, 130]], np.float32)
FACE = F.Face((120.0, 80.0, 60.0, 70.0), LANDMARKS, 0.95)


@pytest.fixture
def restorer(studio_home):
    from studio.engine.fixtures.tiny_faces import write_tiny_restoreformer

    # installed under the catalog model's file name: what `studio models download` writes
    return write_tiny_restoreformer(
        studio_home / "models" / "facerestore_models" / "GFPGANv1.4.pth"
    )


def _detector(faces):
    return lambda: lambda image: list(faces)


def test_restore_faces_adds_a_layer_and_keeps_the_rest(
    window, photos, restorer, monkeypatch, qtbot
):
    monkeypatch.setitem(F._DETECTORS, "yunet", _detector([FACE]))
    drop(window.canvas, [photos.chelsea])
    original = window.composite()[..., :3].copy()
    before = len(window.model.doc.layers)
    window.face_restore.action.trigger()
    qtbot.waitUntil(lambda: len(window.model.doc.layers) == before + 1, timeout=30_000)
    layer = next(la for la in reversed(window.model.doc.layers) if not la.is_mask)
    assert layer.name == "Faces restored" and layer.kind == "image"
    out = layer.pixels[..., :3]
    changed = np.any(out != original, axis=2)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # every changed pixel lies around the face (the aligned 512 crop maps to about 2x the
    # landmarks' spread), none far from it
    assert xs.min() > 60 and xs.max() < 240 and ys.min() > 20 and ys.max() < 200
    assert np.array_equal(out[:, :50], original[:, :50])
    window.model.undo.undo()
    assert len(window.model.doc.layers) == before


def test_no_face_adds_nothing_and_says_so(window, photos, restorer, monkeypatch, qtbot):
    monkeypatch.setitem(F._DETECTORS, "yunet", _detector([]))
    said = []
    monkeypatch.setattr(window, "show_status", lambda text, ms=6000: said.append(text))
    drop(window.canvas, [photos.chelsea])
    before = len(window.model.doc.layers)
    window.face_restore.action.trigger()
    qtbot.waitUntil(lambda: window.face_restore.action.isEnabled(), timeout=30_000)
    qtbot.waitUntil(lambda: any("No face" in t for t in said), timeout=5_000)
    assert len(window.model.doc.layers) == before
