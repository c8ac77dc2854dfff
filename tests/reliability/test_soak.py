"""Soak: many tiny-model jobs with random cancels through the Runner. Memory and threads stay
flat, and every job ends in exactly one of Finished, Cancelled or Failed."""

from __future__ import annotations

import gc
import random
import threading
from pathlib import Path

import pytest

from studio.engine.jobs.events import TERMINAL, Cancelled, Failed, Finished, Progress, Started
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def os_threads() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_soak_200_jobs_with_random_cancels(tiny_models):
    rng = random.Random(1234)
    runner = Runner(device="cpu")
    outcomes = {Finished: 0, Cancelled: 0, Failed: 0}

    def job(i: int) -> None:
        steps = rng.choice([2, 3, 4])
        cancel_at = rng.choice([None, None, 1, 2, 3])  # about 60% run to the end
        req = GenerateRequest(
            model=str(tiny_models.sd),
            prompt=f"a cat {i}",
            steps=steps,
            width=64,
            height=64,
            seed=i,
            preview=rng.choice(["latent", "off", "full"]),
            # An invalid size now and then: the job must fail cleanly and the next one work.
            guidance=rng.choice([0.0, 5.0]),
        )
        if i % 37 == 5:
            req = GenerateRequest(model=str(tiny_models.sd), prompt="x", width=63, height=64)
        events = []

        def emit(e):
            events.append(e)
            if cancel_at is not None and isinstance(e, Progress) and e.step >= cancel_at:
                runner.cancel(e.job_id)

        final = runner.run(req, emit)
        terminals = [e for e in events if isinstance(e, TERMINAL)]
        assert terminals == [final], f"job {i}: terminal events {terminals}"
        assert isinstance(events[0], Started)
        assert all(e.job_id == final.job_id for e in events)
        outcomes[type(final)] += 1

    for i in range(20):  # warm up: first loads, allocator pools, lazy imports
        job(i)
    gc.collect()
    rss0, threads0, py_threads0 = rss_mb(), os_threads(), threading.active_count()
    for i in range(20, 220):
        job(i)
    gc.collect()
    grew = rss_mb() - rss0
    assert grew < 50, f"resident memory grew {grew:.1f} MB over 200 jobs"
    assert os_threads() <= threads0 + 1
    assert threading.active_count() == py_threads0
    assert outcomes[Finished] > 50 and outcomes[Cancelled] > 20 and outcomes[Failed] >= 5
    assert runner.current_job is None
