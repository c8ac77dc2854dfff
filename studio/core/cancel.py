"""A thread-safe cancellation token shared by a job and whoever may cancel it."""

from __future__ import annotations

import threading

from studio.core.errors import JobCancelled


class CancelToken:
    """Set from any thread; checked by the job between steps, tiles and chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if cancel() was called."""
        if self._event.is_set():
            raise JobCancelled()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancel. Returns ``cancelled``."""
        return self._event.wait(timeout)
