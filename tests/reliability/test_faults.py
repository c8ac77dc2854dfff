"""Faults: kill -9 during a save, a full disk, an exception inside a job, a simulated OOM."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from studio.core.atomic import atomic_write_bytes, atomic_writer
from studio.core.errors import StudioError
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.runner import HANDLERS, Runner


def test_kill_9_during_save_leaves_previous_file_intact(tmp_path):
    target = tmp_path / "work.bin"
    atomic_write_bytes(target, b"previous version")
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from studio.core.atomic import atomic_writer
        with atomic_writer({str(target)!r}) as f:
            f.write(b"x" * 1_000_000)
            f.flush()
            Path({str(ready)!r}).write_text("1")
            time.sleep(60)  # killed here, mid-save
            f.write(b"y")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not ready.exists():
            assert proc.poll() is None, "writer died early"
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b"previous version"
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the killed save's temp file should exist (it is cleaned up next time)"
    # The next save succeeds and removes the stale temp once it is old enough.
    old = time.time() - 3600
    for p in leftovers:
        os.utime(p, (old, old))
    atomic_write_bytes(target, b"new version")
    assert target.read_bytes() == b"new version"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_gives_error_and_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "work.bin"
    atomic_write_bytes(target, b"old")

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StudioError, match="No space left"):
        with atomic_writer(target) as f:
            f.write(b"new data that does not fit")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work.bin"]


class _Boom:
    pass


def _boom_handler(ctx, request):
    ctx.progress(1, 3)
    raise ValueError("something broke inside the job")


def _oom_handler(ctx, request):
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _ok_handler(ctx, request):
    return ctx.finished([np.zeros((2, 2, 3), np.uint8)], [{}])


@pytest.fixture
def fake_handlers(monkeypatch):
    mod = sys.modules[__name__]
    monkeypatch.setitem(HANDLERS, _Boom, f"{mod.__name__}:_boom_handler")
    return mod


def test_exception_inside_a_job_becomes_failed_and_next_job_works(fake_handlers, monkeypatch):
    class Oom:
        pass

    class Ok:
        pass

    monkeypatch.setitem(HANDLERS, Oom, f"{__name__}:_oom_handler")
    monkeypatch.setitem(HANDLERS, Ok, f"{__name__}:_ok_handler")
    runner = Runner()
    events = []
    final = runner.run(_Boom(), events.append)
    assert isinstance(final, Failed)
    assert "something broke" in final.message and "Traceback" in final.detail
    assert "\n" not in final.message
    final = runner.run(Oom(), events.append)
    assert isinstance(final, Failed) and "ran out of memory" in final.message
    assert isinstance(runner.run(Ok()), Finished)
    assert runner.current_job is None
