"""Model-manager jobs for the Runner: downloads, imports, scans and removals run through the
worker like every other job (``runner.HANDLERS``), with Progress events and cancel.

The UI queues them as frozen requests (:mod:`studio.engine.jobs.requests`)::

    runner.run(DownloadRequest("realesrgan-x4plus"), emit)   # Progress: bytes
    runner.run(ImportModelRequest("/path/x.safetensors"), emit)  # Progress: bytes copied
    runner.run(ScanModelsRequest(), emit)                     # Progress: entries checked
    runner.run(RemoveModelRequest("realesrgan-x4plus"), emit)

Every handler reports through ``ctx.progress`` and stops at ``ctx.token``'s cancel
(JobCancelled -> a Cancelled event; a cancelled download keeps its ``.part`` for resume, a
cancelled import removes its partial copy). Errors are the usual ModelError/BadInput, which
the Runner turns into Failed with the exit code and the error's ``kind``. A download that
cannot reach its server at all is a :class:`~studio.core.errors.NetworkError` (kind
"network"), told from the exception chain (:func:`network_failure`), so the GUI stops the
rest of its download queue and says "no network" once instead of failing every download.
Torch-free.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from studio.core.catalog import Entry, load_catalog
from studio.core.errors import JobCancelled, NetworkError
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import (
    DownloadRequest,
    ImportModelRequest,
    RemoveModelRequest,
    ScanModelsRequest,
)

if TYPE_CHECKING:
    from studio.engine.jobs.runner import JobContext


def run_download(ctx: JobContext, request: DownloadRequest) -> Finished:
    """Runner handler for :class:`DownloadRequest`."""
    from studio.engine.models.download import DownloadProgress, download

    entry = load_catalog().require(request.model_id)
    ctx.progress(0, entry.size, f"{entry.id}: starting")
    ctx.check()

    def progress(p: DownloadProgress) -> None:
        ctx.progress(p.done, p.total, p.line())

    try:
        path = download(entry, token=ctx.token, progress=progress)
    except JobCancelled:
        raise
    except Exception as e:
        cause = network_failure(e)
        if cause is None:
            raise
        raise no_network(entry, e, cause) from e
    ctx.check()
    return ctx.finished([], [], {"model_id": entry.id, "path": str(path)})


# Errors that mean "the server could not be reached at all", by errno (no route, no network).
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ECONNREFUSED}


def _network_types() -> tuple[type, ...]:
    """The libraries' "could not connect" exception types that are importable here:
    huggingface_hub's offline/"cannot locate the files on the Hub" errors, httpx's (httpx2's on
    Python 3.11+, what huggingface_hub 2.x uses) and requests' connection errors, urllib's
    URLError (not its HTTPError: the server answered) and socket.gaierror (DNS)."""
    import importlib
    import socket
    import urllib.error

    found: list[type] = [socket.gaierror, urllib.error.URLError]
    try:
        from huggingface_hub import errors as hf_errors

        found += [hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled]
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        pass
    # Optional: whichever HTTP library is there (none is a dependency of Studio's own).
    for module, names in (
        ("httpx2", ("ConnectError", "ConnectTimeout")),
        ("httpx", ("ConnectError", "ConnectTimeout")),
        ("requests.exceptions", ("ConnectionError",)),
    ):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        found += [t for t in (getattr(lib, n, None) for n in names) if isinstance(t, type)]
    return tuple(found)


def network_failure(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain (``__cause__``/``__context__``, URLError's
    ``reason``) that says the network could not be reached, or None. Decided by exception
    type (and errno for plain socket errors), never by the message's text. An HTTP answer
    (404, 401, a 5xx), a checksum mismatch, a full disk or a connection lost mid-transfer is
    not "no network"."""
    import ssl
    import urllib.error

    types = _network_types()
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, urllib.error.HTTPError | ssl.SSLError):
            return None  # the server answered, or TLS failed: not a missing network
        if isinstance(e, urllib.error.URLError) and isinstance(e.reason, ssl.SSLError):
            return None
        if isinstance(e, types):
            return e
        if isinstance(e, OSError) and e.errno in _UNREACHABLE:
            return e
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


def no_network(entry: Entry, exc: BaseException, cause: BaseException) -> NetworkError:
    """The one message for a download that could not reach its server (no CLI command and no
    button names: the GUI and the CLI each say what to do their own way)."""
    import os

    hub = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    where = _host(hub if entry.repo else entry.url or "")
    first = (str(exc).strip().splitlines() or [""])[0]
    detail = f"{type(cause).__name__}: {cause}\n{first}".strip()
    return NetworkError(
        f"No network: {entry.name} could not be downloaded ({where} can't be reached). "
        "Use model files you already have, or download it when you are online.",
        detail,
    )


def _host(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).netloc or "the server"


def run_import(ctx: JobContext, request: ImportModelRequest) -> Finished:
    """Runner handler for :class:`ImportModelRequest`."""
    from pathlib import Path

    from studio.engine.models.importer import import_file

    name = Path(request.path).name
    ctx.progress(0, 0, f"identifying {name}")
    ctx.check()

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, f"copying {name}")

    record = import_file(
        request.path,
        link=request.link,
        name=request.name,
        overwrite=request.overwrite,
        token=ctx.token,
        progress=progress,
    )
    return ctx.finished([], [], {"imported": record, "path": record.path})


def run_scan(ctx: JobContext, request: ScanModelsRequest) -> Finished:
    """Runner handler for :class:`ScanModelsRequest`."""
    from studio.engine.models.folders import kinds_of
    from studio.engine.models.registry import list_imported
    from studio.engine.models.scan import folder_models
    from studio.engine.models.store import find_installed

    kinds = kinds_of(request.kinds) if request.kinds else ()
    entries = [e for e in load_catalog() if not kinds or e.kind in kinds]
    installed: dict[str, str] = {}
    for i, entry in enumerate(entries):
        ctx.check()
        path = find_installed(entry)
        if path is not None:
            installed[entry.id] = str(path)
        ctx.progress(i + 1, len(entries), entry.id)
    ctx.check()
    imported = [r for r in list_imported() if not kinds or r.kind in kinds or _cn(r.kind, kinds)]
    known = set(installed.values()) | {r.path for r in imported}
    found = [m for m in folder_models(kinds) if str(m.path) not in known]
    return ctx.finished([], [], {"installed": installed, "imported": imported, "found": found})


def _cn(kind: str, kinds: tuple[str, ...]) -> bool:
    """An imported "controlnet" (the identifier's kind) fits any asked ControlNet kind."""
    return kind == "controlnet" and any(k.startswith("controlnet-") for k in kinds)


def run_remove(ctx: JobContext, request: RemoveModelRequest) -> Finished:
    """Runner handler for :class:`RemoveModelRequest`: a catalog id removes the download,
    anything else an imported file (BadInput if there is none of that name)."""
    from studio.engine.models.importer import remove_imported
    from studio.engine.models.store import remove

    ctx.progress(0, 1, f"removing {request.name}")
    ctx.check()
    entry = load_catalog().get(request.name)
    freed = remove(entry) if entry is not None else remove_imported(request.name)
    ctx.progress(1, 1, f"removed {request.name}")
    return ctx.finished([], [], {"freed": int(freed), "name": request.name})
