"""The worker thread: engine events become GUI-thread signals, previews never queue up,
cancel works for queued and running jobs, failures leave the app usable, and a real tiny
Stable Diffusion model generates onto the canvas through the Generate panel."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from studio.core.errors import ModelError
from studio.engine.jobs import runner as runner_mod


@dataclass(frozen=True)
class FakeRequest:
    steps: int = 5
    delay: float = 0.01
    fail: bool = False
    width: int = 32
    height: int = 32


SEEN_THREADS: list[str] = []


def fake_handler(ctx, request: FakeRequest):
    SEEN_THREADS.append(threading.current_thread() is threading.main_thread())
    for i in range(request.steps):
        ctx.check()
        time.sleep(request.delay)
        if request.fail and i == 1:
            raise ModelError("The model is broken.", "detail: layer 3 has NaN weights")
        ctx.progress(i + 1, request.steps)
        frame = np.full((request.height, request.width, 3), (10 * i) % 256, np.uint8)
        ctx.preview(frame, i + 1, request.steps)
    out = np.full((request.height, request.width, 3), 200, np.uint8)
    return ctx.finished([out], [{"prompt": "fake", "seed": 1}])


@pytest.fixture
def fake_jobs(monkeypatch):
    monkeypatch.setitem(runner_mod.HANDLERS, FakeRequest, f"{__name__}:fake_handler")
    SEEN_THREADS.clear()


@pytest.fixture
def worker(qtbot, fake_jobs):
    from studio.ui.worker import Worker

    w = Worker()
    w.start(warm_up=False)
    yield w
    assert w.shutdown(10000)


class Recorder:
    """GUI-thread receiver (methods, not lambdas) that records signals and their thread."""

    def __init__(self, worker) -> None:
        self.events: list[tuple] = []
        self.threads: set = set()
        worker.started.connect(self.on_started)
        worker.progress.connect(self.on_progress)
        worker.preview.connect(self.on_preview)
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)
        worker.cancelled.connect(self.on_cancelled)

    def _rec(self, *item) -> None:
        self.threads.add(QThread.currentThread())
        self.events.append(item)

    def on_started(self, job_id):
        self._rec("started", job_id)

    def on_progress(self, job_id, step, total):
        self._rec("progress", job_id, step)

    def on_preview(self, job_id, image, region):
        self._rec("preview", job_id, image)

    def on_finished(self, job_id, event):
        self._rec("finished", job_id, event)

    def on_failed(self, job_id, message, detail):
        self._rec("failed", job_id, message, detail)

    def on_cancelled(self, job_id):
        self._rec("cancelled", job_id)

    def kinds(self, job_id=None):
        return [e[0] for e in self.events if job_id is None or e[1] == job_id]


def test_events_arrive_as_gui_thread_signals(qtbot, worker):
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        job = worker.submit(FakeRequest(steps=4))
    kinds = rec.kinds(job)
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("progress") == 4
    assert "preview" in kinds
    assert rec.threads == {QApplication.instance().thread()}
    assert SEEN_THREADS == [False]  # the job ran on the worker thread, not the GUI's
    image = next(e[2] for e in rec.events if e[0] == "preview")
    assert image.width() == 32 and not image.isNull()
    finished = rec.events[-1][2]
    assert finished.images[0].shape == (32, 32, 3)
    assert not worker.busy


def test_previews_do_not_queue_up_when_gui_is_busy(qtbot, worker):
    """While the GUI thread is blocked, many frames are produced; only the latest is shown."""
    rec = Recorder(worker)
    job = worker.submit(FakeRequest(steps=30, delay=0.005))
    time.sleep(0.6)  # the GUI thread "hangs": the job runs to the end meanwhile
    with qtbot.waitSignal(worker.finished, timeout=10000):
        pass
    previews = [e for e in rec.events if e[0] == "preview" and e[1] == job]
    assert len(previews) <= 2, f"{len(previews)} previews were queued up"


def test_queue_runs_jobs_in_order_and_queued_jobs_cancel(qtbot, worker):
    rec = Recorder(worker)
    a = worker.submit(FakeRequest(steps=10, delay=0.02))
    b = worker.submit(FakeRequest(steps=2))
    c = worker.submit(FakeRequest(steps=2))
    assert [j.job_id for j in worker.jobs()] == [a, b, c]
    assert worker.jobs()[0].state == "running" and worker.jobs()[1].state == "queued"
    assert worker.cancel(b)
    assert [j.job_id for j in worker.jobs()] == [a, c]
    qtbot.waitUntil(lambda: not worker.busy, timeout=10000)
    finished = [e[1] for e in rec.events if e[0] == "finished"]
    assert finished == [a, c]
    assert rec.kinds(b) == ["cancelled"]


def test_cancel_running_job_mid_run_then_next_job_works(qtbot, worker):
    rec = Recorder(worker)
    job = worker.submit(FakeRequest(steps=2000, delay=0.01))  # 20 s if not cancelled
    qtbot.waitUntil(lambda: "progress" in rec.kinds(job), timeout=10000)
    t0 = time.monotonic()
    with qtbot.waitSignal(worker.cancelled, timeout=5000):
        worker.cancel(job)
    assert time.monotonic() - t0 < 3.0  # generous: the test machine is shared
    steps = [e[2] for e in rec.events if e[0] == "progress"]
    assert max(steps) < 2000
    assert "finished" not in rec.kinds(job)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        worker.submit(FakeRequest(steps=2))


def test_failure_reports_message_and_detail(qtbot, worker):
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.failed, timeout=10000) as blocker:
        worker.submit(FakeRequest(fail=True))
    job_id, message, detail = blocker.args
    assert message == "The model is broken." and "NaN" in detail
    with qtbot.waitSignal(worker.finished, timeout=10000):
        worker.submit(FakeRequest(steps=1))
    assert rec.kinds().count("failed") == 1


def test_window_shows_failure_non_modally_and_stays_usable(qtbot, window, fake_jobs):
    window.worker.start(warm_up=False)
    with qtbot.waitSignal(window.worker.failed, timeout=10000):
        window.worker.submit(FakeRequest(fail=True))
    assert window._errors and not window._errors[-1].isModal()
    assert "broken" in window._errors[-1].text()
    assert "NaN" in window._errors[-1].detailedText()
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        window.worker.submit(FakeRequest(steps=1))


def test_preview_is_painted_inside_the_job_region(qtbot, window, photos, fake_jobs):
    window.open_paths([photos.astronaut])
    window.worker.start(warm_up=False)
    seen = []
    window.canvas.job_preview_item.set = _spy(window.canvas.job_preview_item.set, seen)
    with qtbot.waitSignal(window.worker.finished, timeout=10000):
        window.worker.submit(FakeRequest(steps=3, delay=0.05), region=(64, 128, 64, 64))
    rects = [r for img, r in seen if not img.isNull()]
    assert rects, "no preview was painted"
    got = {(r.x(), r.y(), r.width(), r.height()) for r in rects}
    assert got == {(64, 128, 64, 64)}, got
    assert not window.canvas.job_preview_item.isVisible()  # cleared when the job ended


def _spy(fn, seen):
    def wrapper(image, rect):
        seen.append((image, rect))
        return fn(image, rect)

    return wrapper


def test_close_window_during_job_cancels_and_exits(qtbot, studio_home, fake_jobs):
    from studio.ui.main_window import MainWindow

    win = MainWindow()
    win.show()
    win.worker.start(warm_up=False)
    rec = Recorder(win.worker)
    win.worker.submit(FakeRequest(steps=10_000, delay=0.01))
    qtbot.waitUntil(lambda: "progress" in rec.kinds(), timeout=10000)
    t0 = time.monotonic()
    assert win.close()
    assert time.monotonic() - t0 < 3.0
    assert not win.worker.thread_running()


# -- a real (tiny) Stable Diffusion model through the Generate panel ------------------------
def test_generate_with_tiny_model_lands_on_canvas(qtbot, window, photos, tiny_models):
    pytest.importorskip("studio.engine.diffusion.sd.generate")
    window.open_paths([photos.chelsea])
    window.model.set_selection((64, 32, 64, 64))
    panel = window.panels["Generate"]
    panel.model_combo.setCurrentText(str(tiny_models.sd))
    panel.prompt.setPlainText("a tiny test")
    panel.steps.setValue(3)
    panel.preview_mode.setCurrentIndex(panel.preview_mode.findData("latent"))
    assert (panel.width_spin.value(), panel.height_spin.value()) == (64, 64)
    before = window.composite().copy()
    view = window.canvas
    shot_before = view.viewport().grab().toImage()
    p0, q0 = view.mapFromScene(96, 64), view.mapFromScene(300, 200)
    window.start_engine()
    with qtbot.waitSignal(window.worker.finished, timeout=300_000):
        job = panel.generate()
        assert job is not None
    assert panel.previews_received >= 1
    assert window.canvas.staged_item.isVisible()  # staged in place, then accepted
    panel.staging.accept_button.click()
    layer = window.model.doc.layers[-2]
    assert layer.offset == (64, 32) and layer.size == (64, 64)
    assert layer.metadata.get("prompt") == "a tiny test"
    after = window.composite()
    changed = np.any(after != before, axis=-1)
    assert changed[32:96, 64:128].mean() > 0.5
    assert not changed[:32].any() and not changed[:, :64].any()  # only the region
    qtbot.wait(50)
    shot_after = view.viewport().grab().toImage()
    p1, q1 = view.mapFromScene(96, 64), view.mapFromScene(300, 200)
    assert shot_after.pixelColor(q1) == shot_before.pixelColor(q0)
    assert shot_after.pixelColor(p1) != shot_before.pixelColor(p0)  # the canvas shows it
    assert len(window.model.doc.history) == 1
    assert panel.history.count() == 1
    # the result is one undo step
    window.act_undo.trigger()
    assert np.array_equal(window.composite(), before)
    window.act_redo.trigger()
    assert np.array_equal(window.composite(), after)


class _CancelOnFirstPreview:
    def __init__(self, worker) -> None:
        self.worker = worker
        self.previews = 0
        worker.preview.connect(self.on_preview)

    def on_preview(self, job_id, image, region) -> None:
        self.previews += 1
        self.worker.cancel(job_id)


def test_cancel_real_tiny_model_mid_run(qtbot, window, photos, tiny_models):
    pytest.importorskip("studio.engine.diffusion.sd.generate")
    from studio.engine.jobs.requests import GenerateRequest

    window.open_paths([photos.chelsea])
    window.start_engine()
    canceller = _CancelOnFirstPreview(window.worker)
    rec = Recorder(window.worker)
    req = GenerateRequest(
        model=str(tiny_models.sd), prompt="x", steps=400, width=64, height=64, preview="latent"
    )
    with qtbot.waitSignal(window.worker.cancelled, timeout=300_000):
        job = window.worker.submit(req, region=(0, 0, 64, 64))
    steps = [e[2] for e in rec.events if e[0] == "progress" and e[1] == job]
    assert canceller.previews >= 1 and max(steps) < 400
    assert "finished" not in rec.kinds(job)
    assert not [la for la in window.model.doc.layers if la.metadata]
    window.worker.preview.disconnect(canceller.on_preview)
    with qtbot.waitSignal(window.worker.finished, timeout=300_000):  # the app stays usable
        window.worker.submit(
            GenerateRequest(model=str(tiny_models.sd), prompt="y", steps=2, width=64, height=64)
        )
