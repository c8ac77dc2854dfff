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
the Runner turns into Failed with the exit code. Torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.core.catalog import load_catalog
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

    path = download(entry, token=ctx.token, progress=progress)
    ctx.check()
    return ctx.finished([], [], {"model_id": entry.id, "path": str(path)})


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
