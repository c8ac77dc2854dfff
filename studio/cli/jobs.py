"""The CLI's one job driver: every command that runs a job runs it through ``run_job`` (a
Runner, Ctrl+C cancelling the job, one progress line on stderr, previews written to a folder)
and turns the terminal event into the exit-code-carrying error main() prints."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


class ProgressLine:
    """The one progress line of a CLI command, on stderr.

    On a terminal it is redrawn in place (at most ten times a second, and always at the
    end), and notes (a model loaded, a fallback taken) are lines of their own. On a pipe or a
    log, with ``plain`` on, it writes a plain line at the start, at every tenth of the work
    and at the end, and the notes; with ``plain`` off nothing at all, so that a script reading
    stderr sees only the one line of an error (``generate``, ``inpaint``). A windowed app has
    no stderr: then it writes nothing, as with ``quiet`` (a command's ``--quiet``).
    """

    BAR = 24

    def __init__(self, label: str, *, plain: bool = True, quiet: bool = False) -> None:
        self.label = label
        self.plain = plain
        self.quiet = quiet
        self.drawn = 0  # width of the line now on a terminal, 0 if none
        self.last = float("-inf")
        self.bucket = -1

    def _stream(self):
        # Looked up each time: tests and windowed apps replace sys.stderr.
        return None if self.quiet else sys.stderr

    def _tty(self) -> bool:
        stream = self._stream()
        try:
            return stream is not None and stream.isatty()
        except (AttributeError, ValueError):
            return False

    def status(self, text: str, fraction: float | None = None, *, done: bool = False) -> None:
        """Show ``text`` as the current state; ``fraction`` (0..1) draws a bar before it."""
        stream = self._stream()
        if stream is None:
            return
        now = time.monotonic()
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(self.BAR * fraction)
            text = f"{self.label} [{'#' * filled}{'-' * (self.BAR - filled)}] {text}"
        elif self.label:
            text = f"{self.label}: {text}"
        if self._tty():
            if not done and now - self.last < 0.1:
                return
            stream.write("\r" + text + "\x1b[K" + ("\n" if done else ""))
            self.drawn = 0 if done else max(len(text), 1)
        else:
            bucket = int(fraction * 10) if fraction is not None else int(now // 5)
            if not self.plain or (not done and bucket == self.bucket):
                return
            self.bucket = bucket
            stream.write(text + "\n")
        self.last = now
        stream.flush()

    def step(self, step: int, total: int, text: str = "") -> None:
        if total > 0:
            self.status(text or f"{step}/{total}", step / total, done=step >= total)

    def note(self, text: str) -> None:
        stream = self._stream()
        if stream is None or not (self.plain or self._tty()):
            return
        self.end()
        print(f"studio: {text}", file=stream, flush=True)

    def end(self) -> None:
        stream = self._stream()
        if stream is not None and self.drawn:
            stream.write("\n")
            stream.flush()
        self.drawn = 0


def preview_folder(arg: str | None) -> Path | None:
    """``--preview-dir``, made if missing; a folder that cannot be made is one BadInput."""
    if not arg:
        return None
    folder = Path(arg).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"--preview-dir {arg}: {e.strerror or e}") from e
    return folder


def run_job(
    request: object,
    *,
    runner: object | None = None,
    line: ProgressLine | None = None,
    preview_dir: Path | None = None,
) -> object:
    """Run ``request`` to its end and return the terminal event (Finished, Failed or
    Cancelled). A Progress message that comes with the step moving on is the line's text (a
    training step, a tile); one at step 0 or without a move is a note (a model loaded, a
    fallback taken). Previews are written as
    ``step_NNN.png``, numbered by their step and never overwriting one another (a job of
    several passes goes on counting)."""
    from studio.core.imageio import save_image
    from studio.engine.jobs import Preview, Progress, Runner

    runner = runner if runner is not None else Runner()
    line = line if line is not None else ProgressLine("")
    state = {"step": None, "preview": 0}

    def emit(event: object) -> None:
        if isinstance(event, Progress):
            moved = event.step != state["step"]
            state["step"] = event.step
            if event.message and not (moved and event.step > 0):
                line.note(event.message)
                return
            line.step(event.step, event.total, event.message)
        elif isinstance(event, Preview) and preview_dir is not None and event.image is not None:
            state["preview"] = max(event.step, state["preview"] + 1)
            save_image(preview_dir / f"step_{state['preview']:03d}.png", event.image)

    try:
        with ctrl_c_cancels(runner.cancel):
            return runner.run(request, emit=emit)
    finally:
        line.end()


def execute(request: object, **kwargs: object):
    """``run_job`` for commands that want the Finished event or the error to exit with."""
    return finished_or_raise(run_job(request, **kwargs))


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


def quiet_libraries() -> None:
    """diffusers/transformers chatter (deprecations, fp32-module notes) isn't for CLI users."""
    import logging
    import warnings

    if not os.environ.get("STUDIO_DEBUG"):
        # The runner logs unexpected job errors with their traceback; the CLI shows one line
        # (the traceback is printed with STUDIO_DEBUG=1).
        logging.getLogger("studio").addHandler(logging.NullHandler())
        logging.getLogger("studio").propagate = False
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="diffusers")
    for name in ("diffusers", "transformers", "huggingface_hub", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass
