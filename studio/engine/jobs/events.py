"""Typed events a job emits, in order: Started, (Progress | Preview)*, then exactly one of
Finished, Failed or Cancelled. Every event carries its job id. numpy only (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Event:
    job_id: int


@dataclass(frozen=True)
class Started(Event):
    kind: str = ""
    total: int = 0


@dataclass(frozen=True)
class Progress(Event):
    step: int = 0
    total: int = 0
    message: str = ""


@dataclass(frozen=True)
class Preview(Event):
    """An RGB uint8 preview of the image forming. ``region`` (x, y, w, h) is where it belongs
    on the full image (the inpaint crop); None means the whole output."""

    image: np.ndarray = field(default=None, compare=False, repr=False)
    step: int = 0
    total: int = 0
    region: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Finished(Event):
    """``images`` are RGB(A) uint8 arrays; ``metadata`` has one dict per image (the
    generation parameters, as written to the PNG); ``extra`` holds job-kind-specific results
    (e.g. pose keypoints)."""

    images: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)
    metadata: tuple[dict, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)
    seconds: float = 0.0


@dataclass(frozen=True)
class Failed(Event):
    """``kind``: the error's ``StudioError.kind`` ("network", "model", "bad-input", ...;
    "" for an unexpected exception), what the GUI tests instead of the message's text."""

    message: str = ""
    detail: str = ""
    exit_code: int = 1
    kind: str = ""


@dataclass(frozen=True)
class Cancelled(Event):
    step: int = 0


TERMINAL = (Finished, Failed, Cancelled)
