"""Tiny random FLUX.1 (and Fill), FLUX.2 klein, Z-Image, SD3 and Qwen-Image pipelines, built
once per session as real diffusers folders (studio.engine.fixtures.tiny_flow_models)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def flow_models(session_tmp: Path) -> SimpleNamespace:
    from studio.engine.fixtures import tiny_flow_models as tiny

    root = session_tmp / "tiny-flow-models"
    paths = tiny.build_all(root)
    fill = root / "tiny-flux1-fill"
    if not (fill / "model_index.json").exists():
        tiny.build_tiny_flux(fill, fill=True)
    return SimpleNamespace(root=root, fill=fill, **paths)


class Ctx:
    """A real JobContext (studio.engine.jobs.runner) recording its events, with an optional
    cancel at progress step ``cancel_at``."""

    def __init__(self, cancel_at: int | None = None) -> None:
        from studio.core.cancel import CancelToken
        from studio.engine.jobs.events import Preview, Progress
        from studio.engine.jobs.runner import JobContext, Runner

        self.events: list = []
        self.token = CancelToken()
        self.cancel_at = cancel_at

        def emit(ev):
            self.events.append(ev)
            if isinstance(ev, Progress) and cancel_at is not None and ev.step >= cancel_at:
                self.token.cancel()

        self.ctx = JobContext(
            1, emit, self.token, _RUNNER.setdefault("r", Runner(device="cpu", dtype="float32"))
        )
        self.Preview, self.Progress = Preview, Progress

    @property
    def previews(self):
        return [e for e in self.events if isinstance(e, self.Preview)]

    @property
    def steps(self):
        return [e.step for e in self.events if isinstance(e, self.Progress)]


_RUNNER: dict = {}


@pytest.fixture
def job():
    return Ctx
