"""What every CLI command that runs a job shares: Ctrl+C handling and turning the job's
terminal event into the exit-code-carrying error main() prints."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from studio.core.errors import BadInput, JobCancelled, ModelError, StudioError


@contextmanager
def ctrl_c_cancels(cancel: Callable[[], object]) -> Iterator[None]:
    """First Ctrl+C calls ``cancel()``: the job stops at its next step, tile or chunk and the
    command exits 130. If ``cancel()`` returns False (nothing running yet) the press interrupts
    at once, as does a second press (exit 130 without waiting for anything)."""
    presses = 0

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            if sys.stderr is not None:
                print("studio: error: interrupted", file=sys.stderr, flush=True)
            os._exit(130)
        if cancel() is False:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread (embedded use, tests): no handler to install
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def error_for(failed: object) -> StudioError:
    """The exception for a ``Failed`` event, keeping its exit code (2 bad input, 3 model)."""
    code = getattr(failed, "exit_code", 1)
    cls = {2: BadInput, 3: ModelError, 130: JobCancelled}.get(code, StudioError)
    err = cls(getattr(failed, "message", "the job failed"), getattr(failed, "detail", ""))
    err.exit_code = code
    return err


def finished_or_raise(final: object):
    """Return a ``Finished`` event; raise JobCancelled for ``Cancelled`` and the matching
    StudioError for ``Failed``."""
    from studio.engine.jobs import Cancelled, Finished

    if isinstance(final, Finished):
        return final
    if isinstance(final, Cancelled):
        raise JobCancelled("cancelled")
    raise error_for(final)
