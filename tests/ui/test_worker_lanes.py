"""The worker's two lanes: model-file jobs (downloads, imports, scans, removals) run in their
own engine thread next to the compute jobs, so a long download never holds up Generate.

The download here is a ``DownloadRequest`` whose Runner handler is swapped for one that runs
until the test opens a gate (so "the generation finished while the download still ran" is
certain, not a race); it still goes through the worker's files lane and its real Runner. The
generation is the real tiny Stable Diffusion model through the Generate panel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest
from PySide6.QtCore import QObject, QThread, Slot

from studio.engine.jobs import (
    DownloadRequest,
    GenerateRequest,
    ImportModelRequest,
    RemoveModelRequest,
    ScanModelsRequest,
    UpscaleRequest,
)
from studio.engine.jobs import runner as runner_mod

GATE = threading.Event()  # the slow download ends once this is set
THREADS: dict[str, QThread] = {}  # the QThread each fake job kind ran on


def slow_download(ctx, request: DownloadRequest):
    """A download that reports bytes until GATE opens (or the job is cancelled)."""
    THREADS["download"] = QThread.currentThread()
    ctx.progress(0, 100, f"{request.model_id}: starting")
    i = 0
    while not GATE.wait(0.02):
        ctx.check()
        i = min(i + 1, 99)
        ctx.progress(i, 100, f"{request.model_id}: {i}%")
    ctx.check()
    return ctx.finished([], [], {"model_id": request.model_id, "path": "/nowhere"})


@dataclass(frozen=True)
class SlowCompute:
    """A compute-lane job (not a model-file request) that runs ``steps`` × 10 ms."""

    steps: int = 1000


def slow_compute(ctx, request: SlowCompute):
    THREADS["compute"] = QThread.currentThread()
    for i in range(request.steps):
        ctx.check()
        time.sleep(0.01)
        ctx.progress(i + 1, request.steps)
    return ctx.finished([], [])


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setitem(runner_mod.HANDLERS, DownloadRequest, f"{__name__}:slow_download")
    monkeypatch.setitem(runner_mod.HANDLERS, SlowCompute, f"{__name__}:slow_compute")
    GATE.clear()
    THREADS.clear()
    yield
    GATE.set()  # never leave a download waiting


@pytest.fixture
def worker(qtbot, fakes):
    from studio.ui.worker import Worker

    w = Worker()
    w.start(warm_up=False)
    yield w
    assert w.shutdown(10000)


class Ends(QObject):
    """GUI-thread receiver of every job's end: job id -> "finished"/"failed"/"cancelled"."""

    def __init__(self, worker) -> None:
        super().__init__()
        self.of: dict[int, str] = {}
        self.progressed: set[int] = set()
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)
        worker.cancelled.connect(self.on_cancelled)
        worker.progress.connect(self.on_progress)

    @Slot(int, object)
    def on_finished(self, job_id, event) -> None:
        self.of[job_id] = "finished"

    @Slot(int, str, str)
    def on_failed(self, job_id, message, detail) -> None:
        self.of[job_id] = f"failed: {message}"

    @Slot(int)
    def on_cancelled(self, job_id) -> None:
        self.of[job_id] = "cancelled"

    @Slot(int, int, int)
    def on_progress(self, job_id, step, total) -> None:
        self.progressed.add(job_id)


def test_requests_are_routed_by_kind():
    from studio.ui.worker import lane_of

    for request in (
        DownloadRequest("x"),
        ImportModelRequest("/a.safetensors"),
        ScanModelsRequest(),
        RemoveModelRequest("x"),
    ):
        assert lane_of(request) == "files", request
    assert lane_of(GenerateRequest(model="m", prompt="p")) == "compute"
    assert lane_of(UpscaleRequest(image=None)) == "compute"
    assert lane_of(SlowCompute()) == "compute"


def test_both_lanes_run_at_once_on_their_own_threads(qtbot, worker):
    ends = Ends(worker)
    download = worker.submit(DownloadRequest("big"), label="Download big")
    second = worker.submit(DownloadRequest("other"), label="Download other")
    compute = worker.submit(SlowCompute(steps=5))
    assert worker.job(download).lane == "files" and worker.job(compute).lane == "compute"
    # each lane has its own queue: the second download waits, the compute job does not
    assert [j.job_id for j in worker.jobs("files")] == [download, second]
    assert [j.job_id for j in worker.jobs("compute")] == [compute]
    assert worker.job(second).state == "queued" and worker.job(compute).state == "running"
    assert [j.job_id for j in worker.jobs()] == [compute, download, second]
    qtbot.waitUntil(lambda: ends.of.get(compute) == "finished", timeout=10000)
    assert download in ends.progressed and download not in ends.of  # still downloading
    assert worker.running_in("files") == download and worker.running_in("compute") is None
    assert worker.busy and worker.busy_in("files") and not worker.busy_in("compute")
    assert THREADS["download"] is not THREADS["compute"]
    assert QThread.currentThread() not in THREADS.values()
    GATE.set()
    qtbot.waitUntil(lambda: not worker.busy, timeout=10000)
    assert ends.of == {compute: "finished", download: "finished", second: "finished"}


def test_cancelling_one_lane_leaves_the_other_running(qtbot, worker):
    ends = Ends(worker)
    download = worker.submit(DownloadRequest("big"))
    compute = worker.submit(SlowCompute(steps=2000))  # 20 s unless cancelled
    qtbot.waitUntil(lambda: {download, compute} <= ends.progressed, timeout=10000)
    # cancel(None) (Esc, Generate's Cancel) means the compute lane's running job
    assert worker.cancel(None)
    qtbot.waitUntil(lambda: compute in ends.of, timeout=5000)
    assert ends.of[compute] == "cancelled" and download not in ends.of
    assert worker.running_in("files") == download
    assert worker.cancel(None) is False  # nothing left to cancel in the compute lane
    compute = worker.submit(SlowCompute(steps=2000))
    qtbot.waitUntil(lambda: compute in ends.progressed, timeout=10000)
    assert worker.cancel(download)  # the download's own id: only the download
    qtbot.waitUntil(lambda: download in ends.of, timeout=5000)
    assert ends.of[download] == "cancelled" and compute not in ends.of
    assert worker.running_in("compute") == compute and worker.running_in("files") is None
    worker.cancel_all("files")  # nothing of the compute lane
    assert worker.running_in("compute") == compute
    worker.cancel_all()
    qtbot.waitUntil(lambda: compute in ends.of, timeout=5000)
    assert ends.of[compute] == "cancelled" and not worker.busy


def test_shutdown_with_both_lanes_busy_stops_both_threads(qtbot, fakes):
    from studio.ui.lanes import _LIVE
    from studio.ui.worker import Worker

    worker = Worker()
    worker.start(warm_up=False)
    ends = Ends(worker)
    download = worker.submit(DownloadRequest("big"))  # never released: only cancel ends it
    compute = worker.submit(SlowCompute(steps=100_000))
    worker.submit(DownloadRequest("queued"))
    worker.submit(SlowCompute(steps=1))
    qtbot.waitUntil(lambda: {download, compute} <= ends.progressed, timeout=10000)
    threads = [lane.thread for lane in worker._lanes.values()]
    assert all(t.isRunning() for t in threads) and all(id(t) in _LIVE for t in threads)
    t0 = time.monotonic()
    assert worker.shutdown(10000)
    assert time.monotonic() - t0 < 5.0
    assert not worker.thread_running() and not any(t.isRunning() for t in threads)
    assert not any(id(t) in _LIVE for t in threads)
    with pytest.raises(RuntimeError):
        worker.submit(SlowCompute())


def test_generate_panel_queue_shows_only_generation_jobs(qtbot, window, photos, tiny_models, fakes):
    """A download runs while a real tiny SD generation starts and finishes; the Generate
    panel's queue, its button and Esc only ever see the generation."""
    pytest.importorskip("studio.engine.diffusion.sd.generate")
    worker = window.worker
    ends = Ends(worker)
    window.open_paths([photos.chelsea])
    panel = window.panels["Generate"]
    panel.model_combo.setCurrentText(str(tiny_models.sd))
    panel.prompt.setPlainText("lanes")
    panel.steps.setValue(2)
    window.start_engine()
    download = worker.submit(DownloadRequest("big"), label="Download big model")
    qtbot.waitUntil(lambda: download in ends.progressed, timeout=10000)
    assert panel.queue_label.text() == "Queue: empty" and panel.queue_list.count() == 0
    assert panel.generate_button.text() == "Generate" and not panel.cancel_button.isEnabled()
    window.jobs.cancel_job()  # Esc: there is no generation to cancel; the download goes on
    job = panel.generate()
    assert job is not None and worker.job(job).lane == "compute"
    assert panel.queue_label.text() == "Queue (1)" and panel.queue_list.count() == 1
    shown = panel.queue_list.itemWidget(panel.queue_list.item(0)).findChildren(QObject)
    assert not any("Download" in getattr(w, "text", lambda: "")() for w in shown)
    qtbot.waitUntil(lambda: job in ends.of, timeout=300_000)
    assert ends.of[job] == "finished" and download not in ends.of
    assert worker.running_in("files") == download  # the generation did not wait for it
    assert panel.queue_label.text() == "Queue: empty" and panel.generate_button.text() == (
        "Generate"
    )
    assert panel.results_received == 1  # the result came in while the download ran
    GATE.set()
    qtbot.waitUntil(lambda: download in ends.of, timeout=10000)
    assert ends.of[download] == "finished"


def test_files_lane_does_not_import_torch(tmp_path):
    """A model scan in a fresh process (the window's start-up job) runs in the files lane
    without the engine's warm-up: torch is never imported."""
    code = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QCoreApplication, QTimer
from studio.engine.jobs import ScanModelsRequest
from studio.ui.worker import Worker
app = QCoreApplication([])
w = Worker()
ends = []
w.finished.connect(lambda job_id, event: (ends.append("finished"), app.quit()))
w.failed.connect(lambda job_id, m, d: (ends.append(m), app.quit()))
job = w.submit(ScanModelsRequest())
assert w.job(job).lane == "files"
QTimer.singleShot(30000, app.quit)
app.exec()
assert w.shutdown(10000)
print(ends, "torch" in sys.modules, w.state)
"""
    env = {**os.environ, "STUDIO_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['finished']", "False", "idle"], out.stdout
