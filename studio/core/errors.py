"""The error types every layer raises and the CLI/GUI turn into one clear message.

Each carries a user-facing ``message`` (one line, no traceback) and an optional ``detail``
for a "details" pane or log file, and a ``kind``: a short code the GUI tests to decide what
to do (e.g. "network": stop the other downloads and say so once), never the message's text.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: something the user should be told about in one line."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class BadInput(StudioError):
    """Bad usage or a bad input file (CLI exit 2). Nothing was changed."""

    exit_code = 2
    kind = "bad-input"


class ModelError(StudioError):
    """A model is missing, not downloaded, or cannot be loaded (CLI exit 3)."""

    exit_code = 3
    kind = "model"


class NetworkError(ModelError):
    """A download could not reach its server at all: no network (DNS fails, no route, the
    connection refused or timed out before any byte, huggingface_hub's offline or
    "cannot find the files on the Hub" errors). Every other download would fail the same
    way, so the GUI stops the download queue and says so once (``kind == "network"``).
    Detected from the exception chain (``studio.engine.models.jobs.network_failure``)."""

    kind = "network"


class JobCancelled(StudioError):
    """Raised inside a job when its cancellation token is set (CLI exit 130)."""

    exit_code = 130
    kind = "cancelled"

    def __init__(self, message: str = "Cancelled", detail: str = "") -> None:
        super().__init__(message, detail)


class OutOfMemory(StudioError):
    """The accelerator ran out of memory and the job could not adapt."""

    exit_code = 1
    kind = "out-of-memory"


def short_error(e: BaseException, limit: int = 300) -> str:
    """The first line of an error for a one-line message: whole sentences up to ``limit``
    characters, else cut at a word with an ellipsis (never in the middle of a word)."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else type(e).__name__
    if len(text) <= limit:
        return text
    head = text[:limit]
    stop = head.rfind(". ")
    if stop >= limit // 3:
        return head[: stop + 1]
    return head[: head.rfind(" ") if " " in head else limit].rstrip(" ,;:") + "…"
