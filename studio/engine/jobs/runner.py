"""The Runner executes one job at a time and turns its outcome into events.

Usage (CLI, tests, or ``ui/worker.py`` from its QThread)::

    runner = Runner()
    final = runner.run(request, emit=print)          # blocks; returns the terminal event
    runner.cancel()                                  # from any thread: stops the current job

A job handler is ``handler(ctx: JobContext, request) -> Finished``; it reports through
``ctx.progress``/``ctx.preview`` and calls ``ctx.check()`` between steps, tiles and chunks,
which raises ``JobCancelled`` once cancel() was called. Handlers live in their own modules and
are imported the first time a job of their kind runs.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from studio.core.cancel import CancelToken
from studio.core.errors import JobCancelled, StudioError
from studio.engine.jobs.events import Cancelled, Event, Failed, Finished, Preview, Progress, Started
from studio.engine.jobs.requests import (
    DetailFacesRequest,
    DownloadRequest,
    GenerateRequest,
    ImportModelRequest,
    InpaintRequest,
    PreprocessRequest,
    RemoveModelRequest,
    RestoreFacesRequest,
    ScanModelsRequest,
    SegmentRequest,
    TrainLoraRequest,
    UpscaleRequest,
)

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]

# request type -> "module:function"; imported lazily so `import studio.engine.jobs.runner` is cheap.
HANDLERS: dict[type, str] = {
    GenerateRequest: "studio.engine.diffusion.route:run_generate",
    InpaintRequest: "studio.engine.diffusion.route:run_inpaint",
    UpscaleRequest: "studio.engine.restore.upscale:run_upscale",
    PreprocessRequest: "studio.engine.vision.control:run_preprocess",
    SegmentRequest: "studio.engine.vision.segment:run_segment",
    RestoreFacesRequest: "studio.engine.restore.faces:run_restore",
    DetailFacesRequest: "studio.engine.restore.face_detail:run_detail",
    DownloadRequest: "studio.engine.models.jobs:run_download",
    ImportModelRequest: "studio.engine.models.jobs:run_import",
    ScanModelsRequest: "studio.engine.models.jobs:run_scan",
    RemoveModelRequest: "studio.engine.models.jobs:run_remove",
    TrainLoraRequest: "studio.engine.training.trainer:run_train_lora",
}

# Runner.cache key prefixes of models that take most of an accelerator's memory.
HEAVY_PREFIXES = frozenset(
    {"pipe", "flow", "upscaler", "lama", "pose", "sam", "sam3", "grounding-dino", "depth",
     "face-restorer"}
)  # fmt: skip
# Memory is short when less than this share of the accelerator (or of RAM on the CPU) is free.
SHORT_FRACTION = 0.25

_job_ids = itertools.count(1)


def new_job_id() -> int:
    return next(_job_ids)


@dataclass
class JobContext:
    """What a handler gets besides its request."""

    job_id: int
    emit: Emit
    token: CancelToken
    runner: Runner
    step: int = 0
    total: int = 0
    started: float = field(default_factory=time.perf_counter)

    def check(self) -> None:
        """Raise JobCancelled if the job was cancelled. Call between steps/tiles/chunks."""
        self.token.raise_if_cancelled()

    def progress(self, step: int, total: int, message: str = "") -> None:
        self.step, self.total = step, total
        self.emit(Progress(self.job_id, step, total, message))

    def preview(
        self,
        image: np.ndarray,
        step: int,
        total: int,
        region: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.emit(Preview(self.job_id, image, step, total, region))

    def finished(
        self,
        images: list[np.ndarray] | tuple[np.ndarray, ...],
        metadata: list[dict] | tuple[dict, ...] = (),
        extra: dict | None = None,
    ) -> Finished:
        return Finished(
            self.job_id,
            tuple(images),
            tuple(metadata),
            extra or {},
            time.perf_counter() - self.started,
        )


class Runner:
    """Runs jobs one at a time. Thread-safe ``cancel``; ``run`` never raises for job errors."""

    def __init__(self, device: str | None = None, dtype: str | None = None) -> None:
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()  # one job at a time
        self._current: tuple[int, CancelToken] | None = None
        # handler-owned caches (e.g. loaded pipelines), least recently used first
        self._cache: OrderedDict[str, object] = OrderedDict()

    # -- caches shared by handlers ------------------------------------------------------------
    def cache(self, key: str, factory: Callable[[], object], keep: int = 1) -> object:
        """Return the cached object for ``key`` or build it, keeping at most ``keep`` objects
        whose key shares the prefix before the first ':' (e.g. one pipeline at a time).

        Heavy models (prefixes in :data:`HEAVY_PREFIXES`: pipelines, upscalers, LaMa, pose
        detectors) share one more rule: when memory is short (:func:`memory_short`), building
        one first frees every other heavy model, so only one is resident at a time across
        job kinds (an LRU over the heavy entries; light ones such as TAESD stay)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        prefix = key.split(":", 1)[0]
        same_kind = [k for k in self._cache if k.split(":", 1)[0] == prefix]
        drop = same_kind[: max(0, len(same_kind) - keep + 1)]
        if prefix in HEAVY_PREFIXES:
            others = [k for k in self._cache if k.split(":", 1)[0] in HEAVY_PREFIXES]
            if others and memory_short():
                drop += [k for k in others if k not in drop]
        for k in drop:
            del self._cache[k]
        if drop:
            free_memory()
        value = factory()
        self._cache[key] = value
        return value

    @property
    def cached_keys(self) -> list[str]:
        """The cache's keys, least recently used first."""
        return list(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()
        free_memory()

    # -- running --------------------------------------------------------------------------------
    def cancel(self, job_id: int | None = None) -> bool:
        """Cancel the running job (or only if it is ``job_id``). Returns whether one was hit."""
        current = self._current
        if current is None or (job_id is not None and current[0] != job_id):
            return False
        current[1].cancel()
        return True

    @property
    def current_job(self) -> int | None:
        cur = self._current
        return cur[0] if cur else None

    def run(
        self,
        request: object,
        emit: Emit | None = None,
        job_id: int | None = None,
        token: CancelToken | None = None,
    ) -> Event:
        """Run ``request`` to completion on this thread; emit events and return the last one."""
        emit = emit or (lambda event: None)
        job_id = job_id if job_id is not None else new_job_id()
        token = token or CancelToken()
        with self._lock:
            self._current = (job_id, token)
            ctx = JobContext(job_id, emit, token, self)
            final: Event
            try:
                emit(Started(job_id, kind=type(request).__name__))
                token.raise_if_cancelled()
                handler = _handler_for(request)
                final = handler(ctx, request)
                if not isinstance(final, Finished):
                    raise TypeError(f"handler returned {type(final).__name__}, not Finished")
            except JobCancelled:
                final = Cancelled(job_id, ctx.step)
            except StudioError as e:
                final = Failed(job_id, e.message, e.detail, e.exit_code, e.kind)
            except MemoryError as e:
                final = Failed(job_id, "Out of memory.", repr(e))
            except Exception as e:  # noqa: BLE001 - a job must never take the app down
                log.exception("job %s failed", job_id)
                final = Failed(job_id, _one_line(e), traceback.format_exc())
            finally:
                self._current = None
            if not isinstance(final, Finished):
                free_memory()
            emit(final)
            return final


def _handler_for(request: object) -> Callable[[JobContext, object], Finished]:
    spec = HANDLERS.get(type(request))
    if spec is None:
        raise StudioError(f"Unknown job type {type(request).__name__}")
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    name = type(e).__name__
    if "out of memory" in msg.lower():
        return "The accelerator ran out of memory. Try a smaller size, fewer images, or CPU."
    return f"{name}: {msg}" if msg else name


def memory_short(fraction: float = SHORT_FRACTION) -> bool:
    """Whether less than ``fraction`` of the job device's memory is free: the CUDA card's
    (counting what PyTorch's allocator caches but does not use), else the machine's RAM
    (Linux ``sysconf``; False where it cannot be read). Torch is not imported for this:
    without it loaded no model is resident."""
    import os
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        if torch.cuda.is_available():
            from studio.engine.jobs.device import free_bytes

            free, total = free_bytes(torch.device("cuda")) or (0, 0)
        else:
            page = os.sysconf("SC_PAGE_SIZE")
            free = os.sysconf("SC_AVPHYS_PAGES") * page
            total = os.sysconf("SC_PHYS_PAGES") * page
    except (AttributeError, ValueError, OSError, RuntimeError):
        return False
    return total > 0 and free < fraction * total


def free_memory() -> None:
    """Collect garbage and return cached accelerator memory to the driver."""
    gc.collect()
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if hasattr(torch, "mps") and torch.backends.mps.is_available():
            torch.mps.empty_cache()
    except Exception:  # noqa: BLE001
        pass
