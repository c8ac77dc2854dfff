"""Soak through the app's worker (studio/ui/worker.py): 50 tiny Stable Diffusion jobs with
random cancels (queued and mid-run) and an invalid request now and then. Every job ends in
exactly one of the finished / cancelled / failed signals, resident memory grows < 50 MB after
a warm-up, and the OS thread count stays flat."""

from __future__ import annotations

import gc
import random
from collections import defaultdict
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Slot

from studio.engine.jobs.requests import GenerateRequest


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def os_threads() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


class Recorder(QObject):
    """Counts every terminal signal per job and cancels a job once it reaches its step."""

    def __init__(self, worker) -> None:
        super().__init__()
        self.worker = worker
        self.terminal: dict[int, list[str]] = defaultdict(list)
        self.started: set[int] = set()
        self.cancel_at: dict[int, int] = {}
        self.messages: list[str] = []
        worker.started.connect(self.on_started)
        worker.progress.connect(self.on_progress)
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)
        worker.cancelled.connect(self.on_cancelled)

    @Slot(int)
    def on_started(self, job_id):
        self.started.add(job_id)

    @Slot(int, int, int)
    def on_progress(self, job_id, step, total):
        at = self.cancel_at.get(job_id)
        if at is not None and step >= at:
            self.worker.cancel(job_id)

    @Slot(int, object)
    def on_finished(self, job_id, event):
        assert event.images[0].shape == (64, 64, 3)
        self.terminal[job_id].append("finished")

    @Slot(int, str, str)
    def on_failed(self, job_id, message, detail):
        self.messages.append(message)
        self.terminal[job_id].append("failed")

    @Slot(int)
    def on_cancelled(self, job_id):
        self.terminal[job_id].append("cancelled")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_worker_soak_50_jobs_with_random_cancels(qtbot, tiny_models):
    from studio.ui.worker import Worker

    rng = random.Random(99)
    worker = Worker(threads=1)
    worker.start(warm_up=True)
    qtbot.waitUntil(lambda: worker.state in ("ready", "error"), timeout=120000)
    assert worker.state == "ready", worker.state_message
    rec = Recorder(worker)
    submitted: list[int] = []

    def batch(n: int, start: int) -> None:
        """Submit ``n`` jobs at once (a queue forms), cancel some while queued, wait."""
        ids = []
        for i in range(start, start + n):
            width = 63 if i % 11 == 4 else 64  # invalid now and then: fails, next job runs
            req = GenerateRequest(
                model=str(tiny_models.sd),
                prompt=f"a cat {i}",
                steps=rng.choice([2, 3]),
                width=width,
                height=64,
                seed=i,
                preview=rng.choice(["latent", "off"]),
            )
            job = worker.submit(req, region=(0, 0, 64, 64), label=f"job {i}")
            ids.append(job)
            roll = rng.random()
            if roll < 0.3:
                rec.cancel_at[job] = rng.choice([1, 2])  # cancel while running
        for job in ids:
            if job not in rec.cancel_at and rng.random() < 0.15 and job != worker.running_job:
                assert worker.cancel(job)  # cancel while still queued
        submitted.extend(ids)
        qtbot.waitUntil(lambda: not worker.busy, timeout=300000)

    try:
        batch(10, 0)  # warm-up: model load, allocator pools, lazy imports
        gc.collect()
        rss0, threads0 = rss_mb(), os_threads()
        for start in range(10, 60, 5):
            batch(5, start)
        gc.collect()
        grew = rss_mb() - rss0
        threads1 = os_threads()
    finally:
        assert worker.shutdown(30000)

    assert len(submitted) == 60
    for job in submitted:
        assert len(rec.terminal[job]) == 1, f"job {job}: {rec.terminal[job]}"
    outcomes = [rec.terminal[j][0] for j in submitted]
    assert outcomes.count("finished") >= 20
    assert outcomes.count("cancelled") >= 5
    assert outcomes.count("failed") >= 4
    assert all("\n" not in m and m for m in rec.messages)
    assert not worker.busy and worker.jobs() == []
    assert grew < 50, f"resident memory grew {grew:.1f} MB over 50 jobs"
    assert threads1 <= threads0 + 1, (threads0, threads1)
