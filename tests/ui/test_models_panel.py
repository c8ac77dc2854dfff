"""The model manager panel: listing, downloads queued in the worker with progress and cancel
(from a server on 127.0.0.1), remove, import (incl. a dropped file), the first-run starter
offer, offline mode, and no torch at import time. Every job goes through the host's Worker
(the engine's model-manager requests), not threads of the panel's own."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QWidget
from studio_model_files import kohya_lora_spec, write_sparse_safetensors  # noqa: E402

PAYLOAD = os.urandom(1024 * 1024 + 4321)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits += 1  # type: ignore[attr-defined]
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(0, len(body), 32 * 1024):
                self.wfile.write(body[i : i + 32 * 1024])
                if self.server.delay:  # type: ignore[attr-defined]
                    time.sleep(self.server.delay)  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):
            pass


_WORKERS: list = []


class FakeHost(QWidget):
    """The parts of the window the panel uses: a real Worker (engine thread, no warm-up) whose
    failures are shown as the window shows them (studio.ui.jobs.Jobs: every failed job's
    message, except those of an owner that reports its own, ``REPORTS_FAILURES``)."""

    def __init__(self) -> None:
        super().__init__()
        from studio.ui.worker import Worker

        self.errors: list[tuple[str, str]] = []
        self.statuses: list[str] = []
        self.panels: dict = {}
        self.settings = None
        self.worker = Worker()
        self.worker.start(warm_up=False)
        self.worker.failed.connect(self._on_failed)
        self.submitted: list = []
        self.worker.queue_changed.connect(self._on_queue)
        _WORKERS.append(self.worker)

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, message: str, detail: str) -> None:
        job = self.worker.job(job_id)
        if job is not None and getattr(job.owner, "REPORTS_FAILURES", False):
            return  # as the window's jobs room: the panel says it itself
        self.show_error(message, detail)

    @Slot()
    def _on_queue(self) -> None:
        for job in self.worker.jobs():
            if job.job_id not in {j for j, _ in self.submitted}:
                self.submitted.append((job.job_id, job.request))

    def models_changed(self) -> None:
        self.statuses.append("models changed")

    def show_error(self, message: str, detail: str = "") -> None:
        self.errors.append((message, detail))

    def show_status(self, text: str) -> None:
        self.statuses.append(text)


@pytest.fixture
def env(tmp_path, monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.delay = 0.0
    srv.hits = 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    home = tmp_path / "home"
    home.mkdir()
    url = f"http://127.0.0.1:{srv.server_address[1]}/tiny.pth"
    (home / "catalog.toml").write_text(
        f"""
[[model]]
id = "tiny-up"
name = "Tiny upscaler"
kind = "upscaler"
url = "{url}"
size = {len(PAYLOAD)}
sha256 = "{SHA}"
license = "MIT"
"""
    )
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no first-run offer unless a test asks for it
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    yield type("Env", (), {"home": home, "server": srv})
    while _WORKERS:
        _WORKERS.pop().shutdown()
    srv.shutdown()
    srv.server_close()


def _panel(qtbot, host=None):
    from studio.ui.panels.models import ModelsPanel

    host = host or FakeHost()
    qtbot.addWidget(host)
    panel = ModelsPanel(host)
    qtbot.addWidget(panel)
    host.panels["Models"] = panel
    qtbot.waitUntil(lambda: panel._first_scan_done, timeout=10000)
    return panel, host


def _item(panel, model_id):
    from studio.ui.panels.models import ROLE_ID

    for i in range(panel.tree.topLevelItemCount()):
        group = panel.tree.topLevelItem(i)
        for j in range(group.childCount()):
            if group.child(j).data(0, ROLE_ID) == model_id:
                return group.text(0), group.child(j)
    return None, None


def _wait_threads(qtbot, panel, timeout=20000):
    """Until the panel's jobs in the worker have all ended."""
    qtbot.waitUntil(lambda: not panel.jobs and panel._scan is None, timeout=timeout)


def test_lists_catalog_with_sizes_licences_and_installed(qtbot, env):
    target = env.home / "models" / "upscale_models" / "RealESRGAN_x4plus.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    panel, _ = _panel(qtbot)
    group, item = _item(panel, "realesrgan-x4plus")
    assert group == "Installed" and item.text(5) == "installed"
    group, item = _item(panel, "sd-turbo")
    assert group == "Available"
    assert item.text(3) == "2.6 GB" and "Stability" in item.text(4) and item.text(5) == "starter"
    panel.filter_combo.setCurrentText("Installed")
    assert _item(panel, "sd-turbo") == (None, None)
    assert _item(panel, "realesrgan-x4plus")[1] is not None
    assert "1 installed" in panel.info_label.text()


def test_download_with_progress_then_remove(qtbot, env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from studio.engine.models import store

    store.update_settings(starter_offered=True)
    panel, host = _panel(qtbot)
    progress_lines = []
    _, item = _item(panel, "tiny-up")
    item.setSelected(True)
    assert panel.download_button.isEnabled()
    panel.confirm = lambda title, text: True
    panel.download_button.click()
    from studio.engine.jobs import DownloadRequest, RemoveModelRequest

    [(job_id, request)] = [(j, r) for j, r in host.submitted if not hasattr(r, "kinds")]
    assert request == DownloadRequest("tiny-up") and panel.jobs[job_id][0] == "download"
    host.worker.progress.connect(
        lambda j, step, total: progress_lines.append(host.worker.job(j).message)
    )
    qtbot.waitUntil(lambda: "tiny-up" in panel.installed, timeout=20000)
    _wait_threads(qtbot, panel)
    assert (env.home / "models" / "upscale_models" / "tiny.pth").read_bytes() == PAYLOAD
    assert _item(panel, "tiny-up")[0] == "Installed"
    assert host.errors == []
    assert any("tiny-up" in line for line in progress_lines), progress_lines
    # Remove: a RemoveModelRequest in the worker.
    _, item = _item(panel, "tiny-up")
    item.setSelected(True)
    panel.remove_button.click()
    assert RemoveModelRequest("tiny-up") in [r for _, r in host.submitted]
    _wait_threads(qtbot, panel)
    assert "freed" in panel.status_label.text()
    assert not (env.home / "models" / "upscale_models" / "tiny.pth").exists()
    assert _item(panel, "tiny-up")[0] == "Available"


def test_cancel_download_keeps_gui_responsive(qtbot, env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    env.server.delay = 0.05  # ~0.6 MB/s
    from studio.engine.models import store

    store.update_settings(starter_offered=True)
    panel, host = _panel(qtbot)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    from studio.core.catalog import load_catalog
    from studio.engine.jobs import DownloadRequest

    panel.download([load_catalog().get("tiny-up")])
    # download() returned at once: the transfer runs as a job in the worker's engine thread
    # while the GUI event loop (the timer) keeps going.
    [job_id] = panel._jobs_of("download")
    assert host.worker.job(job_id).request == DownloadRequest("tiny-up")
    part = env.home / "models" / "upscale_models" / "tiny.pth.part"
    qtbot.waitUntil(lambda: part.exists() and part.stat().st_size > 64 * 1024, timeout=20000)
    assert ticks and host.worker.running_job == job_id
    qtbot.waitUntil(lambda: "tiny-up:" in panel.progress_label.text(), timeout=10000)
    assert panel.progress_bar.value() > 0 and panel.cancel_button.isVisible() is not None
    panel.cancel_button.click()
    _wait_threads(qtbot, panel)
    assert host.worker.job(job_id) is None and not host.worker.busy
    timer.stop()
    assert "cancelled" in panel.status_label.text()
    assert "tiny-up" not in panel.installed and part.exists()
    assert host.errors == []


def test_first_run_offer_decline_is_remembered(qtbot, env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from studio.core.catalog import format_size, load_catalog
    from studio.engine.models import store

    calls = []
    monkeypatch.setattr("studio.engine.models.download.download", lambda *a, **k: calls.append(a))
    panel, _ = _panel(qtbot)
    dialog = panel.starter_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    starter = {e.id for e in load_catalog().starter_set()}
    assert starter <= set(dialog.items)  # all offered, plus what makes them work
    assert {e.id for e in dialog.entries} == {"sd-turbo", "big-lama", "realesrgan-x4plus", "taesd"}
    total = sum(e.size for e in dialog.entries)
    assert format_size(total) in dialog.total_label.text()
    dialog.later_button.click()
    assert store.load_settings()["starter_offered"] is True
    assert panel._jobs_of("download") == [] and calls == []
    panel2, _ = _panel(qtbot)
    assert panel2.starter_dialog is None  # shown once


def test_first_run_offer_accept_downloads_starter_set(qtbot, env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    fetched = []

    def fake_download(entry, token=None, progress=None):
        fetched.append(entry.id)
        return env.home / entry.id

    monkeypatch.setattr("studio.engine.models.download.download", fake_download)
    panel, _ = _panel(qtbot)
    assert panel.starter_dialog is not None and fetched == []  # nothing before agreeing
    panel.starter_dialog.set_ticked("sd-turbo", False)  # the user leaves one out
    starter = [e.id for e in panel.starter_dialog.entries]
    assert "sd-turbo" not in starter and "sd21-canny" not in starter  # its ControlNet goes too
    item, _ = panel.starter_dialog.items["sd21-canny"]
    assert item.isDisabled()
    assert item.toolTip(0) == "Works only with a SD 2.x model: tick one to get this"
    panel.starter_dialog.download_button.click()
    qtbot.waitUntil(lambda: sorted(fetched) == sorted(starter), timeout=20000)
    _wait_threads(qtbot, panel)


def test_offline_mode(qtbot, env, monkeypatch):
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    panel, host = _panel(qtbot)
    assert panel.starter_dialog is None
    assert "offline" in panel.info_label.text()
    _, item = _item(panel, "tiny-up")
    item.setSelected(True)
    assert not panel.download_button.isEnabled()
    from studio.core.catalog import load_catalog

    panel.download([load_catalog().get("tiny-up")])
    assert panel._jobs_of("download") == []
    assert host.errors and "Offline" in host.errors[0][0]
    assert env.server.hits == 0


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_import_dropped_files(qtbot, env, tmp_path):
    from studio.ui.panels.models import import_model_file, is_model_file

    panel, host = _panel(qtbot)
    lora = write_sparse_safetensors(tmp_path / "ink.safetensors", kohya_lora_spec(768))
    assert is_model_file(lora) and not is_model_file(tmp_path / "photo.png")
    import_model_file(host, lora)
    qtbot.waitUntil(lambda: any(r.name == "ink.safetensors" for r in panel.imported), timeout=20000)
    _wait_threads(qtbot, panel)
    assert (env.home / "models" / "loras" / "ink.safetensors").is_file()
    assert "LoRA" in panel.status_label.text()
    # Malicious pickle: refused with one message, payload never runs.
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}))
    panel.import_files([str(evil)])
    qtbot.waitUntil(lambda: bool(host.errors), timeout=20000)
    assert "never runs" in host.errors[0][0] and not marker.exists()
    _wait_threads(qtbot, panel)


def test_import_without_panel_reports_to_host(qtbot, env, tmp_path):
    from studio.ui.panels.models import import_model_file

    host = FakeHost()
    qtbot.addWidget(host)
    (tmp_path / "x.pth").write_bytes(pickle.dumps({"w": 1}))
    from studio.engine.jobs import ImportModelRequest

    job_id = import_model_file(host, tmp_path / "x.pth")
    assert host.worker.job(job_id).request == ImportModelRequest(str(tmp_path / "x.pth"))
    qtbot.waitUntil(lambda: bool(host.errors), timeout=20000)
    qtbot.waitUntil(lambda: not host.worker.busy, timeout=20000)
    assert "Could not identify x.pth" in host.errors[0][0]
    assert len(host.errors) == 1


def test_panel_module_does_not_import_torch():
    code = (
        "import sys\n"
        "import studio.ui.panels.models, studio.engine.models.download, studio.engine.models.importer\n"
        "bad = [m for m in ('torch', 'diffusers', 'spandrel', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_main_window_docks_the_panel(window, qtbot):
    """The shell finds the panel by its module; offline (the test default) nothing is offered.
    Its first scan is a job in the window's worker, so it runs after the engine warm-up
    (torch is imported first in the engine thread)."""
    assert "Models" in window.panels, window.panel_errors
    panel = window.panels["Models"]
    assert panel.host.worker is window.worker
    qtbot.waitUntil(lambda: panel._first_scan_done, timeout=90000)
    assert panel.starter_dialog is None
    _wait_threads(qtbot, panel)


def test_add_user_folder(qtbot, env, tmp_path):
    panel, _ = _panel(qtbot)
    assert _item(panel, "realesrgan-x4plus")[0] == "Available"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "RealESRGAN_x4plus.pth").write_bytes(b"x")
    panel.add_folder(str(mine))
    qtbot.waitUntil(lambda: _item(panel, "realesrgan-x4plus")[0] == "Installed", timeout=10000)
    _wait_threads(qtbot, panel)
    from studio.engine.models import store

    assert store.load_settings()["folders"] == [str(mine)]


def test_first_run_dialog_ticks_names_licences_and_fitting_combinations(qtbot, env, monkeypatch):
    """Per-model ticks, full names and licences (non-commercial marked), and
    only combinations that work: SD-Turbo (SD 2.x) brings the SD 2.1 ControlNets; the
    SD 1.5 ControlNets are offered only while an SD 1.5 model is ticked."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    panel, _ = _panel(qtbot)
    dialog = panel.starter_dialog
    rows = {i: dialog.items[i][0] for i in dialog.items}
    assert rows["sd-turbo"].text(0) == "SD-Turbo"
    assert rows["sd15-canny"].text(0) == "ControlNet 1.1 Canny (SD 1.5)"
    assert {"sd21-canny", "sd21-openpose"} <= set(rows)  # what SD-Turbo needs
    assert rows["openpose"].text(2).startswith("⚠ non-commercial")
    assert not rows["sd-turbo"].text(2).startswith("⚠")
    # SD 1.5 inpainting is not ticked at first: its ControlNets wait for it
    assert not dialog.is_offered("sd15-canny") and dialog.is_offered("sd21-canny")
    dialog.set_ticked("sd15-inpaint", True)
    assert all(dialog.is_offered(i) for i in rows)
    for i in ("sd15-canny", "sd21-canny"):
        dialog.set_ticked(i, True)
    dialog.set_ticked("sd15-inpaint", False)  # no SD 1.5 model left
    assert not dialog.is_offered("sd15-canny") and not dialog.is_offered("sd15-openpose")
    assert dialog.is_offered("sd21-canny") and dialog.is_offered("taesd")
    ids = {e.id for e in dialog.entries}
    assert "sd15-canny" not in ids and {"sd-turbo", "sd21-canny"} <= ids
    dialog.set_ticked("sd15-inpaint", True)
    assert dialog.is_offered("sd15-canny") and "sd15-canny" in {e.id for e in dialog.entries}
    dialog.later_button.click()


def test_import_goes_through_the_worker_and_cancels(qtbot, env, tmp_path, monkeypatch):
    """An import is an ImportModelRequest job in the worker: it waits behind the running job
    (here a slow download: the one queue), and Cancel stops both, the running download (its
    .part kept for resume) and the queued import (never started, nothing stored). An import
    not cancelled then runs and lands."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    env.server.delay = 0.05
    from studio.core.catalog import load_catalog
    from studio.engine.jobs import ImportModelRequest
    from studio.engine.models import store

    store.update_settings(starter_offered=True)
    panel, host = _panel(qtbot)
    lora = write_sparse_safetensors(tmp_path / "ink.safetensors", kohya_lora_spec(768))
    panel.download([load_catalog().get("tiny-up")])
    [download_id] = panel._jobs_of("download")
    part = env.home / "models" / "upscale_models" / "tiny.pth.part"
    qtbot.waitUntil(lambda: part.exists() and part.stat().st_size > 0, timeout=20000)
    assert host.worker.running_job == download_id
    [job_id] = panel.import_files([str(lora)])
    job = host.worker.job(job_id)
    assert job.request == ImportModelRequest(str(lora)) and job.owner is panel
    assert job.state == "queued" and panel.jobs[job_id] == ("import", str(lora))
    assert [j.job_id for j in host.worker.jobs()] == [download_id, job_id]
    panel.cancel_button.click()
    _wait_threads(qtbot, panel)
    assert host.worker.job(job_id) is None and not host.worker.busy
    assert not (env.home / "models" / "loras" / "ink.safetensors").exists()
    assert part.exists()
    assert "tiny-up" not in panel.installed and host.errors == []
    # Not cancelled: it runs and lands.
    env.server.delay = 0.0
    panel.import_files([str(lora)])
    qtbot.waitUntil(lambda: any(r.name == "ink.safetensors" for r in panel.imported), timeout=20000)
    _wait_threads(qtbot, panel)
    assert (env.home / "models" / "loras" / "ink.safetensors").is_file()
    assert host.errors == []


class _BarRecorder(QWidget):
    """GUI-thread receiver of the progress bar's values."""

    def __init__(self, bar) -> None:
        super().__init__()
        self.values: list[int] = []
        bar.valueChanged.connect(self.on_value)

    @Slot(int)
    def on_value(self, value: int) -> None:
        self.values.append(value)


def test_download_over_2_gib_shows_its_progress(qtbot, env, monkeypatch):
    """Byte counts past 2**31 (every SDXL or FLUX download) cross the worker's progress signal
    and reach the bar and the label: a 32-bit signal argument overflows there."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from studio.engine.models import store
    from studio.engine.models.download import DownloadProgress

    store.update_settings(starter_offered=True)
    done, total = 2_600_000_000, 5_200_000_000

    def fake_download(entry, token=None, progress=None):
        progress(DownloadProgress(entry.id, done, total, speed=50e6, eta=52.0))
        time.sleep(0.3)  # the GUI thread handles the signal while the job still runs
        return env.home / entry.id

    monkeypatch.setattr("studio.engine.models.download.download", fake_download)
    panel, host = _panel(qtbot)
    bar = _BarRecorder(panel.progress_bar)
    labels = []
    _, item = _item(panel, "tiny-up")
    item.setSelected(True)
    panel.confirm = lambda title, text: True
    panel.download_button.click()
    qtbot.waitUntil(lambda: 500 in bar.values, timeout=20000)
    labels.append(panel.progress_label.text())
    _wait_threads(qtbot, panel)
    assert "2.6 GB / 5.2 GB (50%)" in labels[0], labels
    assert host.errors == []


# -- first hour: no network, the first-run ticks, a folder of models ----------------------------
def _offline(monkeypatch):
    """Simulate a machine without a network: huggingface_hub and urllib raise what they
    raise there (LocalEntryNotFoundError over httpx's ConnectError over socket.gaierror;
    URLError over socket.gaierror). Returns the attempts made, by model."""
    import socket
    import urllib.error

    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover - Python < 3.11
        import httpx
    attempts: list[str] = []

    def snapshot_download(repo_id, *args, local_files_only=False, **kwargs):
        dns = socket.gaierror(-2, "Name or service not known")
        connect = httpx.ConnectError("[Errno -2] Name or service not known")
        connect.__cause__ = dns
        if not local_files_only:
            attempts.append(repo_id)
        err = LocalEntryNotFoundError(
            "Got: ConnectError: [Errno -2] Name or service not known\nAn error happened while "
            "trying to locate the files on the Hub, and we cannot find the appropriate "
            "snapshot folder for the specified revision on the local disk."
        )
        raise err from connect

    def urlopen(request, *args, **kwargs):
        attempts.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    monkeypatch.setattr("studio.engine.models.download.check_disk_space", lambda *a: None)
    return attempts


def test_offline_first_run_download_is_one_message_and_stops_the_queue(qtbot, env, monkeypatch):
    """Offline, Download in the first-run dialog: ONE message (no network, and what to do:
    Import…, Add folder…, or download later), not one error box per model with the library's
    text; the queued downloads are cancelled, not each tried and failed."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    attempts = _offline(monkeypatch)
    panel, host = _panel(qtbot)
    failed, cancelled = [], []
    host.worker.failed.connect(lambda j, m, d: failed.append(j))
    host.worker.cancelled.connect(cancelled.append)
    dialog = panel.starter_dialog
    for model_id in ("sd15-inpaint", "sd21-canny", "openpose"):  # the whole offer, queued
        dialog.set_ticked(model_id, True)
    queued = [e.id for e in dialog.entries]
    assert len(queued) >= 7
    dialog.download_button.click()
    assert len(panel._jobs_of("download")) == len(queued)
    _wait_threads(qtbot, panel)
    assert len(host.errors) == 1, host.errors
    message, detail = host.errors[0]
    assert message.startswith("No network:")
    for what in ("Import…", "Add folder…", "ComfyUI", "Download when you are online"):
        assert what in message, what
    assert "LocalEntryNotFoundError" not in message and "ConnectError" not in message
    assert "studio " not in message  # no CLI command in the GUI
    assert "ConnectError" in detail  # the library's words are in the details
    assert attempts == ["stabilityai/sd-turbo"]  # one try: the rest never ran
    assert len(failed) == 1 and len(cancelled) == len(queued) - 1
    assert "No network" in panel.status_label.text() and not panel.installed


def test_offline_in_the_window_is_one_error_box(qtbot, window, monkeypatch):
    """The same through the real window: its jobs room leaves the panel's failures to the
    panel, so one QMessageBox opens."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    attempts = _offline(monkeypatch)
    models = window.panels["Models"]
    before = len(window._errors)
    entries = [e for e in models.catalog.starter_set()]
    models.download(entries)
    qtbot.waitUntil(lambda: not models._jobs_of("download"), timeout=30000)
    boxes = window._errors[before:]
    assert len(boxes) == 1, [b.text() for b in boxes]
    assert boxes[0].text().startswith("No network:") and "Add folder…" in boxes[0].text()
    assert len(attempts) == 1


def test_first_run_ticks_the_fewest_models_that_make_every_panel_work(qtbot, env, monkeypatch):
    """Not all ten models (9.9 GB): a generation model, LaMa (Erase), an upscaler and the
    generation model's preview decoder are ticked (2.9 GB); ControlNets and the
    non-commercial OpenPose detector are offered unticked, with their licences; the total
    follows the ticks."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from PySide6.QtCore import Qt

    from studio.core.catalog import format_size

    panel, _ = _panel(qtbot)
    dialog = panel.starter_dialog
    checked = Qt.CheckState.Checked
    ticked = {i for i, (item, _) in dialog.items.items() if item.checkState(0) == checked}
    assert ticked == {"sd-turbo", "big-lama", "realesrgan-x4plus", "taesd"}
    kinds = {e.kind for e in dialog.entries}
    assert kinds == {"txt2img", "lama", "upscaler", "preview-decoder"}  # every panel's need
    helpers = [e for e in dialog.entries if e.kind.startswith(("controlnet", "pose"))]
    assert helpers == []
    total = sum(e.size for e in dialog.entries)
    assert total < 3e9
    assert dialog.total_label.text() == f"Total download: {format_size(total)} (4 models)"
    assert format_size(total) == "2.9 GB"
    # every row keeps its licence beside it; non-commercial ones are marked
    openpose, _ = dialog.items["openpose"]
    assert openpose.text(2).startswith("⚠ non-commercial") and "academic" in openpose.text(2)
    assert all(item.text(2) for item, _ in dialog.items.values())
    assert dialog.items["big-lama"][0].text(3) == "Inpaint: Erase object"
    # ticking more updates the total
    dialog.set_ticked("openpose", True)
    more = total + dialog.items["openpose"][1].size
    assert dialog.total_label.text() == f"Total download: {format_size(more)} (5 models)"
    dialog.set_ticked("openpose", False)
    dialog.later_button.click()


def test_added_folder_of_diffusers_models_is_listed_with_where_it_is(
    qtbot, env, tiny_models, tmp_path
):
    """A folder of diffusers models added with Add folder…: the Models panel lists each by its
    folder name with where it is, and says what it found (or why it found nothing)."""
    import shutil

    from studio.ui.panels.models import ROLE_FOUND

    panel, host = _panel(qtbot)
    lib = tmp_path / "diffusers-models"
    shutil.copytree(tiny_models.sd, lib / "tiny-sd")
    shutil.copytree(tiny_models.sd_inpaint, lib / "tiny-sd-inpaint")
    panel.add_folder(str(lib))
    qtbot.waitUntil(lambda: len(panel.found) == 2, timeout=20000)
    _wait_threads(qtbot, panel)
    group = next(
        panel.tree.topLevelItem(i)
        for i in range(panel.tree.topLevelItemCount())
        if panel.tree.topLevelItem(i).text(0) == "In your folders"
    )
    assert not group.isHidden()
    rows = {group.child(j).text(0): group.child(j) for j in range(group.childCount())}
    assert set(rows) == {"tiny-sd", "tiny-sd-inpaint"}
    assert (
        rows["tiny-sd"].text(1) == "generation" and rows["tiny-sd-inpaint"].text(1) == "inpainting"
    )
    assert rows["tiny-sd"].text(5) == "in diffusers-models"  # where it is
    assert rows["tiny-sd"].data(0, ROLE_FOUND) == str(lib / "tiny-sd")
    assert str(lib / "tiny-sd") in rows["tiny-sd"].toolTip(0)
    assert "Found 2 models" in panel.status_label.text() and "tiny-sd" in panel.status_label.text()
    assert host.errors == []
    # a folder without models says why
    empty = tmp_path / "empty"
    empty.mkdir()
    panel.add_folder(str(empty))
    qtbot.waitUntil(lambda: "No models found" in panel.status_label.text(), timeout=20000)
    assert "model_index.json" in panel.status_label.text()
    _wait_threads(qtbot, panel)
