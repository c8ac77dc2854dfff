"""Test session setup: offline, headless, and tiny random models of the real architectures
built once per session in a temp folder (studio.engine.fixtures.tiny_models), loaded through the same code
paths users hit."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

# Before anything imports Qt or huggingface_hub.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="studio-tests-"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_TMP / "hf-home")  # an empty cache: nothing real leaks in
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["STUDIO_HOME"] = str(_SESSION_TMP / "studio-home")  # settings, models, autosave
os.environ["STUDIO_DEVICE"] = "cpu"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PHOTOS = Path(__file__).parent / "data" / "photos"


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(scope="session")
def tiny_models(session_tmp: Path) -> SimpleNamespace:
    """Paths to tiny models: sd (SD1.x txt2img), sd_inpaint (9-channel), sdxl, controlnet
    (from the sd UNet), taesd (AutoencoderTiny)."""
    from studio.engine.fixtures import tiny_models as tiny

    root = session_tmp / "tiny-models"
    ns = SimpleNamespace(
        root=root,
        sd=root / "tiny-sd",
        sd_inpaint=root / "tiny-sd-inpaint",
        sdxl=root / "tiny-sdxl",
        controlnet=root / "tiny-controlnet",
        taesd=root / "tiny-taesd",
    )
    if not ns.sd.exists():
        tiny.build_tiny_sd(ns.sd)
        tiny.build_tiny_sd(ns.sd_inpaint, inpainting=True)
        tiny.build_tiny_sdxl(ns.sdxl)
        tiny.build_tiny_controlnet(ns.controlnet, ns.sd)
        tiny.build_tiny_taesd(ns.taesd)
    return ns


@pytest.fixture
def photos(tmp_path: Path) -> SimpleNamespace:
    """Copies of the real test photos (astronaut 512x512, chelsea 451x300, coffee 600x400)
    in a temp folder, safe to write next to."""
    dst = tmp_path / "photos"
    dst.mkdir()
    for p in PHOTOS.glob("*.png"):
        shutil.copy(p, dst / p.name)
    return SimpleNamespace(
        dir=dst,
        astronaut=dst / "astronaut.png",
        chelsea=dst / "chelsea.png",
        coffee=dst / "coffee.png",
    )


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


# A skip says "something this test needs is missing". On a developer's machine that is a note;
# on CI (which installs everything from the lock) it is a missing piece, and it fails, so a
# missing catalog, panel, package or disk can never pass as a skip. Skips that are about the
# platform (``skipif`` on os.name / sys.platform) do not fire on CI's Linux.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where nothing may be missing: {reason}"


# -- the app, for tests/ui and tests/reliability ------------------------------------------------
class Answers:
    """Scripted answers to MainWindow.ask (instead of a blocking modal dialog); records every
    question asked."""

    def __init__(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        self.default = QMessageBox.StandardButton.Discard
        self.queue: list = []
        self.asked: list[tuple[str, str]] = []

    def __call__(self, title, text, buttons, default):
        self.asked.append((title, text))
        return self.queue.pop(0) if self.queue else self.default


@pytest.fixture
def studio_home(tmp_path, monkeypatch) -> Path:
    """A STUDIO_HOME of the test's own (settings, recovery files, models)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


@pytest.fixture
def window(qtbot, studio_home):
    """A MainWindow at 1280x800, offscreen, whose prompts are answered by ``window.answers``."""
    from studio.ui.main_window import MainWindow

    win = MainWindow()
    win.answers = Answers()
    win.ask = win.answers
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    models = win.panels.get("Models")
    if models is not None:  # its first scan is a worker job: let it end before a test's jobs
        qtbot.waitUntil(lambda: models._first_scan_done and not models.jobs, timeout=30000)
    yield win
    win.model.undo.setClean()  # nothing to prompt about
    win.close()
