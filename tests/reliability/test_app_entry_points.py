"""The bad-input corpus through the app: every file opened or dropped on the main
window, every broken project opened, every bad model file dropped. Each refusal is one clear
message box, the document stays exactly as it was, and no exception escapes into Qt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .corpus import (
    BAD,
    BAD_MODELS,
    BAD_PROJECTS,
    PROJECT_BUGS,
    PWNED_MARKER,
    UNSAFE_IN_APP,
    VALID_IMAGES,
    all_files,
    assert_one_clear_line,
)

FILES = [p.name for p in all_files()]
REFUSED = [n for n in FILES if n not in VALID_IMAGES]


def known(names: list[str], in_app: bool = True) -> list:
    """Parameters, with the projects the app does not refuse yet as strict xfails (not run
    at all where running would allocate tens of GB)."""
    out = []
    for n in names:
        if n in PROJECT_BUGS:
            mark = pytest.mark.xfail(
                strict=True, run=not (in_app and n in UNSAFE_IN_APP), reason=PROJECT_BUGS[n]
            )
            out.append(pytest.param(n, marks=mark))
        else:
            out.append(n)
    return out


@pytest.fixture(autouse=True)
def _no_pickle_ran():
    PWNED_MARKER.unlink(missing_ok=True)
    yield
    assert not PWNED_MARKER.exists(), "a malicious pickle was executed"


def state(win) -> dict:
    """Everything a refused open must leave alone."""
    doc = win.model.doc
    return {
        "layers": [(la.name, la.kind, la.pixels.copy()) for la in doc.layers],
        "size": win.image_size(),
        "path": win.model.path,
        "undo": win.model.undo.index(),
        "dirty": win.model.dirty,
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["size"] == b["size"] and a["path"] == b["path"]
    assert a["undo"] == b["undo"] and a["dirty"] == b["dirty"]
    assert [(n, k) for n, k, _ in a["layers"]] == [(n, k) for n, k, _ in b["layers"]]
    for (_, _, pa), (_, _, pb) in zip(a["layers"], b["layers"], strict=True):
        assert np.array_equal(pa, pb)


def one_new_error(win, before: int) -> str:
    boxes = win._errors[before:]
    assert len(boxes) == 1, [b.text() for b in boxes]
    text = boxes[0].text()
    assert_one_clear_line(text)
    return text


def is_model(name: str) -> bool:
    from studio.ui.panels.models import is_model_file

    return is_model_file(BAD / name)


def drop(win, qtbot, paths: list[str]) -> None:
    """Drop files on the canvas; model files go to the importer thread: wait for it."""
    errors = len(win._errors)
    win.canvas.files_dropped.emit([str(p) for p in paths])
    models = [p for p in paths if is_model(Path(p).name)]
    if models:
        qtbot.waitUntil(lambda: len(win._errors) >= errors + len(models), timeout=30000)
        panel = win.panels["Models"]
        qtbot.waitUntil(lambda: not panel.jobs, timeout=30000)
    qtbot.wait(1)


@pytest.fixture
def opened(window, photos):
    """A window with a saved-looking document (clean), so a prompt would show up in asked."""
    assert window.open_paths([str(photos.chelsea)])
    window.model.undo.setClean()
    window.answers.asked.clear()
    return window


@pytest.mark.parametrize("name", known(FILES))
def test_drop_on_empty_window(window, qtbot, name):
    before = len(window._errors)
    with qtbot.capture_exceptions() as exceptions:
        drop(window, qtbot, [BAD / name])
    assert exceptions == []
    if name in VALID_IMAGES:
        h, w, _ = VALID_IMAGES[name]
        assert window.image_size() == (w, h)
        assert len(window._errors) == before
    else:
        text = one_new_error(window, before)
        assert name in text
        assert window.model.doc.is_empty


@pytest.mark.parametrize("name", known(FILES))
def test_drop_on_open_document(opened, qtbot, name):
    """Dropping on a document adds layers: a refused file adds nothing and changes nothing."""
    before, errors = state(opened), len(opened._errors)
    with qtbot.capture_exceptions() as exceptions:
        drop(opened, qtbot, [BAD / name])
    assert exceptions == []
    after = state(opened)
    if name in VALID_IMAGES:
        assert len(after["layers"]) == len(before["layers"]) + 1
        for (_, _, pa), (_, _, pb) in zip(before["layers"], after["layers"][:1], strict=False):
            assert np.array_equal(pa, pb)  # the photo layer is untouched
        opened.model.undo.undo()
        assert_same(before, state(opened))
    else:
        assert name in one_new_error(opened, errors)
        assert_same(before, after)


@pytest.mark.parametrize("name", known(REFUSED))
def test_open_refused_file_keeps_document_without_asking(opened, qtbot, name):
    before, errors = state(opened), len(opened._errors)
    opened.model.undo.setClean()
    opened.invert_mask()  # unsaved work: must not be discarded, nor a prompt shown in vain
    before = state(opened)
    with qtbot.capture_exceptions() as exceptions:
        ok = opened.open_paths([str(BAD / name)])
    assert exceptions == []
    assert not ok
    one_new_error(opened, errors)
    assert_same(before, state(opened))
    if not name.endswith(".studio"):
        assert opened.answers.asked == []


def test_drop_all_refused_files_at_once(opened, qtbot):
    before, errors = state(opened), len(opened._errors)
    images = [str(BAD / n) for n in REFUSED if not n.endswith(".studio") and not is_model(n)]
    with qtbot.capture_exceptions() as exceptions:
        drop(opened, qtbot, images)
    assert exceptions == []
    text = one_new_error(opened, errors)
    assert str(len(images)) in text
    detail = opened._errors[-1].detailedText()
    assert all(Path(p).name in detail for p in images)
    assert_same(before, state(opened))


@pytest.mark.parametrize("name", known(BAD_PROJECTS))
@pytest.mark.parametrize("how", ["open_project", "drop"])
def test_broken_project_keeps_current_document(opened, qtbot, name, how):
    opened.invert_mask()
    before, errors = state(opened), len(opened._errors)
    with qtbot.capture_exceptions() as exceptions:
        if how == "drop":
            drop(opened, qtbot, [BAD / name])
        else:
            assert not opened.open_project(str(BAD / name))
    assert exceptions == []
    text = one_new_error(opened, errors)
    assert name in text
    assert_same(before, state(opened))
    assert opened.answers.asked == []  # refused before asking to discard anything


@pytest.mark.parametrize("name", known(BAD_PROJECTS, in_app=False))
def test_broken_project_refused_by_the_loader(name):
    """The core loader itself: BadInput naming the file, one line (no app involved, so the
    oversized canvas runs here safely: numpy's zeros are lazy until painted)."""
    from studio.core.document import load_project
    from studio.core.errors import BadInput

    with pytest.raises(BadInput) as info:
        load_project(BAD / name)
    assert name in info.value.message
    assert_one_clear_line(info.value.message)


def test_newer_project_says_so(opened):
    errors = len(opened._errors)
    assert not opened.open_project(str(BAD / "newer_version.studio"))
    assert "newer" in one_new_error(opened, errors).lower()


# -- model files -----------------------------------------------------------------------------


def _stored_models(home: Path) -> list[Path]:
    root = home / "models"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("name", BAD_MODELS)
def test_bad_model_import_through_the_app(window, qtbot, studio_home, name):
    """studio.ui.panels.models.import_model_file (the model-file drop): one message, nothing
    stored, the pickle payload never runs, the document untouched."""
    from studio.ui.panels.models import import_model_file, is_model_file

    assert is_model_file(BAD / name)
    before, errors = state(window), len(window._errors)
    with qtbot.capture_exceptions() as exceptions:
        import_model_file(window, BAD / name)
        qtbot.waitUntil(lambda: len(window._errors) > errors, timeout=30000)
        panel = window.panels["Models"]
        qtbot.waitUntil(lambda: not panel.jobs, timeout=30000)
    assert exceptions == []
    text = one_new_error(window, errors)
    assert name in text
    if name.startswith("malicious"):
        assert "never runs" in text
    assert _stored_models(studio_home) == []
    assert_same(before, state(window))


def test_model_file_dropped_on_window_is_imported(window, qtbot, tmp_path, studio_home):

    from studio_model_files import kohya_lora_spec, write_sparse_safetensors

    lora = write_sparse_safetensors(tmp_path / "ink.safetensors", kohya_lora_spec(768))
    errors = len(window._errors)
    window.canvas.files_dropped.emit([str(lora)])
    qtbot.waitUntil(lambda: _stored_models(studio_home) != [], timeout=30000)
    qtbot.waitUntil(lambda: not window.panels["Models"].jobs, timeout=30000)
    assert len(window._errors) == errors
    assert window.model.doc.is_empty  # a model is not an image to open


@pytest.mark.parametrize("name", BAD_MODELS)
def test_bad_model_dropped_on_window(opened, qtbot, studio_home, name):
    """A bad model dropped on a document: one message from the importer, nothing stored, the
    document untouched, the pickle never runs."""
    before, errors = state(opened), len(opened._errors)
    with qtbot.capture_exceptions() as exceptions:
        drop(opened, qtbot, [BAD / name])
    assert exceptions == []
    assert name in one_new_error(opened, errors)
    assert _stored_models(studio_home) == []
    assert_same(before, state(opened))
