"""The Control panel's ControlNet choice: a list (never a text field) of the ControlNets that
fit the Generate panel's model's family: the catalog's by their base, imported and folder
ones by the family identified from their weights/config; installed first, then the
catalog's to download, offered at once ("⤓ Download …" through the Models panel). A new
guide defaults to an installed one that fits: with SD-Turbo (SD 2.x) never ``sd15-canny``.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal
from studio_model_files import controlnet_original_spec, write_sparse_safetensors

import studio.ui


class _Worker(QObject):
    started = Signal(int)
    progress = Signal(int, "qint64", "qint64")
    preview = Signal(int, object, object)
    finished = Signal(int, object)
    failed = Signal(int, str, str)
    cancelled = Signal(int)

    def submit(self, request, region=None, label="", owner=None, target=None):
        return 1

    def job(self, job_id):
        return None


class _Models:
    """The Models panel's download path, recorded."""

    def __init__(self) -> None:
        from studio.core.catalog import load_catalog

        self.catalog = load_catalog()
        self.downloads: list[list[str]] = []

    def download(self, entries) -> None:
        self.downloads.append([e.id for e in entries])


class _Generate:
    def __init__(self, model: str) -> None:
        from studio.ui.panels.generate_model import GenerateModel

        self.state = GenerateModel()
        self.state.model = model


class _Host(QObject):
    models_updated = Signal()

    def __init__(self, model: str) -> None:
        super().__init__()
        from studio.ui.document_model import DocumentModel

        self.settings = None
        self.worker = _Worker()
        self.model = DocumentModel()
        self.image = np.zeros((64, 64, 4), np.uint8)
        self.image[20:40, 20:40] = 255
        self.panels = {"Generate": _Generate(model), "Models": _Models()}
        self.statuses: list[str] = []
        self.errors: list[str] = []

    def image_size(self):
        return (64, 64)

    def composite(self):
        return self.image

    def active_layer_image(self):
        return self.image

    def mask(self):
        return None

    def selection_rect(self):
        return (0, 0, 64, 64)

    def add_layer(self, image, name, kind="image", offset=(0, 0), metadata=None):
        self.model.add_layer(image, name, kind, offset, metadata)

    def push_command(self, command):
        self.model.push(command)

    def show_error(self, message, detail=""):
        self.errors.append(message)

    def show_status(self, text, ms=6000):
        self.statuses.append(text)

    def show_preview(self, image, region):
        pass

    def clear_preview(self):
        pass


@pytest.fixture
def library(studio_home, tmp_path, tiny_models):
    """A fake catalog entry for an installed SD 2.x canny ControlNet, two imported ControlNets
    (SD 2.x and SD 1.x, identified from their tensors) and the tiny ControlNet (its family
    can't be told) in a folder the user added."""
    from studio.engine.models import store
    from studio.engine.models.importer import import_file

    (studio_home / "catalog.toml").write_text(
        """
[[model]]
id = "my-sd21-canny"
name = "My SD 2.1 canny"
kind = "controlnet-canny"
base = "sd2"
url = "https://example.invalid/my_sd21_canny.safetensors"
size = 1000
license = "OpenRAIL"
"""
    )
    installed = studio_home / "models" / "controlnet-canny" / "my_sd21_canny.safetensors"
    installed.parent.mkdir(parents=True)
    write_sparse_safetensors(installed, controlnet_original_spec(1024))
    drop = tmp_path / "drop"
    drop.mkdir()
    for name, ctx in (("control_sd21_canny_mine", 1024), ("control_sd15_canny_mine", 768)):
        spec = controlnet_original_spec(ctx)
        import_file(write_sparse_safetensors(drop / f"{name}.safetensors", spec))
    lib = tmp_path / "lib"
    shutil.copytree(tiny_models.controlnet, lib / "tiny-controlnet")
    store.update_settings(folders=[str(lib)])
    return lib


def _panel(qtbot, model: str):
    from studio.ui.panels.control import ControlPanel

    host = _Host(model)
    panel = ControlPanel(host)
    qtbot.addWidget(panel)
    return panel, host


def _refs(picker) -> list[str]:
    return [Path(r.ref).name if "/" in r.ref else r.ref for r in picker.rows()]


def test_controlnets_that_fit_the_generation_model_installed_first(qtbot, library):
    panel, host = _panel(qtbot, "sd-turbo")  # SD 2.x
    panel.add_canny_layer()
    (entry,) = panel.entries()
    assert entry.model == "my-sd21-canny"  # an installed one that fits, not sd15-canny
    picker = panel.table.cellWidget(0, 5)
    assert picker.currentText() == "my-sd21-canny" and not picker.isEditable()
    assert _refs(picker) == [
        "my-sd21-canny",  # installed, SD 2.x (catalog)
        "control_sd21_canny_mine.safetensors",  # installed, SD 2.x (imported, identified)
        "tiny-controlnet",  # installed, family not known: may fit
        "sd21-canny",  # the catalog's SD 2.1 ControlNet, to download
    ]
    rows = {r.ref: r for r in picker.rows()}
    assert (
        rows["sd21-canny"].text.endswith("— download 1.5 GB") and not rows["sd21-canny"].installed
    )
    imported = next(
        r for r in picker.rows() if r.ref.endswith("control_sd21_canny_mine.safetensors")
    )
    assert imported.text == "control_sd21_canny_mine · SD 2.x"  # its name, not its path
    assert panel.download_button.isHidden()  # nothing picked needs downloading
    # what Generate gets is the chosen one
    (ci,) = panel.control_inputs()
    assert ci.model == "my-sd21-canny"


def test_the_default_follows_the_generation_model_until_the_user_picks(qtbot, library):
    from studio.engine.models import store

    store.update_settings(folders=[])  # not the tiny ControlNet (it may fit every guide)
    panel, host = _panel(qtbot, "sd-turbo")
    panel.add_canny_layer()
    panel.default_skeleton()
    panel.add_scribble_layer()
    canny, pose, scribble = panel.entries()
    assert pose.model == "sd21-openpose"  # nothing installed fits: the catalog's that fits
    assert scribble.model == ""  # no SD 2.x scribble ControlNet: none, and it says so
    assert "No scribble ControlNet fits SD 2.x" in panel.controlnet_note.text()
    host.panels["Generate"].state.model = "sd15"  # SD 1.x now
    canny, pose, scribble = panel.entries()
    assert canny.model.endswith("control_sd15_canny_mine.safetensors")  # installed, fits
    assert (pose.model, scribble.model) == ("sd15-openpose", "sd15-scribble")
    picker = panel.table.cellWidget(0, 5)
    assert "my-sd21-canny" not in _refs(picker) and "sd15-canny" in _refs(picker)

    # the user picks one to download: it is theirs, and offered for download at once
    host.panels["Generate"].state.model = "sd-turbo"
    picker = panel.table.cellWidget(0, 5)
    picker.setCurrentIndex(picker.find_ref("sd21-canny"))
    assert panel.entries()[0].model == "sd21-canny"
    assert not panel.download_button.isHidden()
    text = panel.download_button.text()
    assert text == "⤓ Download 2 ControlNets (2.9 GB)"  # with the pose guide's
    panel.download_button.click()
    assert ["sd21-canny", "sd21-openpose"] in host.panels["Models"].downloads
    assert "Models panel" in host.statuses[-1]
    host.panels["Generate"].state.model = "sd15"  # the user's pick stays
    assert panel.entries()[0].model == "sd21-canny"
    label = panel.table.cellWidget(0, 5).currentIndex()
    assert "not SD 1.x" in panel.table.cellWidget(0, 5).itemText(label)


def test_without_a_generation_family_every_controlnet_is_offered(qtbot, library):
    panel, host = _panel(qtbot, "")
    host.panels.pop("Generate")
    panel.add_canny_layer()
    (entry,) = panel.entries()
    refs = _refs(panel.table.cellWidget(0, 5))
    assert entry.model == "my-sd21-canny"  # the first installed
    assert {"sd15-canny", "sdxl-canny", "sd21-canny"} <= set(refs)
    assert not any("pose" in r for r in refs)  # only canny ControlNets for a canny guide


def test_tiny_models_in_the_window_default_to_the_installed_controlnet(
    qtbot, window, tiny_models, photos, tmp_path
):
    lib = tmp_path / "models"
    shutil.copytree(tiny_models.sd, lib / "tiny-sd")
    shutil.copytree(tiny_models.controlnet, lib / "tiny-controlnet")
    models = window.panels["Models"]
    with qtbot.waitSignal(window.models_updated, timeout=30000):
        models.add_folder(str(lib))
    qtbot.waitUntil(lambda: not models.jobs, timeout=30000)
    assert window.panels["Generate"].state.model == str(lib / "tiny-sd")  # SD 1.x
    window.import_images([str(photos.astronaut)])
    control = window.panels["Control"]
    control.add_canny_layer()
    picker = control.table.cellWidget(0, 5)
    assert picker.currentText() == str(lib / "tiny-controlnet")
    assert picker.itemText(picker.currentIndex()) == "tiny-controlnet"
    assert "sd15-canny" in _refs(picker) and "sd21-canny" not in _refs(picker)
    assert control.download_button.isHidden()


# -- no GUI message names a CLI command --------------------------------------------------------
def _strings(tree: ast.AST):
    """String constants of a module that are not docstrings."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def test_no_gui_text_names_a_cli_command():
    root = Path(studio.ui.__file__).parent
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            low = text.lower()
            if "studio models" in low or "run `studio" in low or "huggingface-cli" in low:
                bad.append(f"{path.relative_to(root)}:{line}: {text[:60]!r}")
    assert bad == []
