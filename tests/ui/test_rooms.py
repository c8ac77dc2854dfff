"""The window in rooms: documents, actions, edits, jobs and docks are
objects of their own, each holding its own state, composed by a shell of a few hundred lines.
A room works with what it is given: the documents room opens, saves and autosaves a document
on a bare window, with no actions, menus, canvas or worker."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox

from studio.core import recovery
from studio.core.document import load_project

SB = QMessageBox.StandardButton
SHELL = Path(__file__).resolve().parents[2] / "studio" / "ui" / "main_window.py"


def _bare_documents(qtbot):
    """A Documents room on a plain QMainWindow, with a host made of a DocumentModel, the
    settings and recorders: nothing of the real window."""
    from studio.ui.document_model import DocumentModel
    from studio.ui.documents import Documents
    from studio.ui.settings import Settings

    window = QMainWindow()
    qtbot.addWidget(window)
    model = DocumentModel(window)
    host = SimpleNamespace(
        model=model,
        settings=Settings(),
        panels={},
        errors=[],
        statuses=[],
        composite=lambda: None if model.doc.is_empty else model.doc.composite(),
    )
    host.show_error = lambda message, detail="": host.errors.append(message)
    host.show_status = lambda text, ms=6000: host.statuses.append(text)
    asked: list[str] = []
    answers: list = []

    def ask(title, text, buttons, default):
        asked.append(title)
        return answers.pop(0)

    docs = Documents(window, host, ask=ask, autosave=False)
    return SimpleNamespace(
        window=window, model=model, host=host, docs=docs, asked=asked, answers=answers
    )


def test_documents_room_opens_saves_and_autosaves_on_its_own(qtbot, studio_home, photos, tmp_path):
    r = _bare_documents(qtbot)
    docs, model, window = r.docs, r.model, r.window
    titles: list[str] = []
    docs.title_changed.connect(lambda: titles.append(window.windowTitle()))

    assert docs.open_paths([str(photos.chelsea)])
    assert (model.doc.width, model.doc.height) == (451, 300)
    assert titles[-1] == "chelsea.png[*] — Studio"  # an image opens unsaved, named after its file
    assert not model.dirty and r.asked == []  # nothing unsaved: nothing asked

    model.set_mask(np.full((300, 451), 255, np.uint8))
    assert model.dirty and window.isWindowModified()
    assert docs.autosave(background=False)  # the recovery file holds the edit
    assert load_project(recovery.recovery_path()).mask_layer.pixels.min() == 255
    assert not docs.autosave(background=False)  # nothing new since

    path = tmp_path / "work.studio"
    assert docs.save_to(str(path))
    assert not model.dirty and model.path == str(path)
    assert not recovery.recovery_path().exists()  # saved: the recovery file is gone
    assert window.windowTitle() == "work.studio[*] — Studio"
    assert load_project(path).mask_layer.pixels.min() == 255
    assert str(path.resolve()) in r.host.settings.recent_files

    model.set_mask(np.zeros((300, 451), np.uint8))
    r.answers.append(SB.Cancel)
    assert not docs.open_paths([str(photos.coffee)])  # unsaved work: asked, and kept
    assert r.asked == ["Unsaved changes"] and model.doc.width == 451
    assert not docs.open_project(str(tmp_path / "missing.studio"))
    assert r.host.errors and model.doc.width == 451  # one message through the host

    # The room needed nothing of the actions room: no action, tool bar or menu was made.
    assert window.findChildren(QAction) == []
    assert window.menuWidget() is None
    docs.close()


def test_the_shell_composes_rooms_that_keep_their_own_state(window, photos):
    from studio.ui.actions import Actions
    from studio.ui.docks import Docks
    from studio.ui.documents import Documents
    from studio.ui.edits import Edits
    from studio.ui.jobs import Jobs

    rooms = {
        "documents": Documents,
        "menus": Actions,
        "edits": Edits,
        "jobs": Jobs,
        "docks": Docks,
    }
    for name, cls in rooms.items():
        assert type(getattr(window, name)) is cls, name
    assert len({id(getattr(window, n)) for n in rooms}) == len(rooms)
    # Each room's state is its own, not an attribute shared on the window.
    for attr in ("_revision", "_autosave_thread", "autosave_timer", "_last_layer_target"):
        assert not hasattr(window, attr), attr
    for attr in ("tool_actions", "size_spin", "view_menu", "recent_menu", "engine_label"):
        assert attr not in vars(window), attr
    assert window.documents.autosaver.timer.isActive()  # the first window autosaves
    assert window.worker is window.jobs.worker  # the Host's worker is the jobs room's
    assert window.jobs.engine_label in window.statusBar().findChildren(QLabel)
    assert window.panels is window.docks.panels and "Generate" in window.panels

    # Rooms talk through explicit references and signals: an action runs an edit...
    window.documents.open_paths([str(photos.chelsea)])
    assert window.size_label.text() == "451×300"  # documents.title_changed -> the shell
    window.menus.act_invert_mask.trigger()
    assert window.mask().min() == 255
    # ...and Q (the edits room's own state) returns to the layer painted on before.
    photo = window.model.doc.layers[0].uid
    window.model.set_active(photo)
    window.menus.act_mask_toggle.trigger()
    assert window.model.doc.active_layer.is_mask
    window.menus.act_mask_toggle.trigger()
    assert window.model.doc.active_uid == photo
    assert window.menus.target_label.text() == "Image: chelsea"
    # Callers written before the rooms read through to them.
    assert window.open_paths == window.documents.open_paths
    assert window.act_undo is window.menus.act_undo


def test_the_shell_stays_small():
    lines = SHELL.read_text(encoding="utf-8").count("\n")
    assert lines < 350, f"main_window.py has {lines} lines: move the code to a room"
