"""Crash recovery: each running app autosaves its dirty document to
``<data dir>/recovery/autosave-<pid>.studio`` and deletes it on a clean exit. A file left
behind by a process that is no longer running means that session crashed; the next launch
offers to restore it.

The data dir is ``$STUDIO_HOME`` when set (tests), else platformdirs' user data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from studio.core.document import Document, save_project
from studio.core.paths import studio_home


def data_dir() -> Path:
    return studio_home()


def recovery_dir() -> Path:
    d = data_dir() / "recovery"
    d.mkdir(parents=True, exist_ok=True)
    return d


def recovery_path(pid: int | None = None) -> Path:
    return recovery_dir() / f"autosave-{pid or os.getpid()}.studio"


def _info_path(path: Path) -> Path:
    return path.with_suffix(".json")


def write_recovery(doc: Document, source: str | None = None, pid: int | None = None) -> Path:
    """Autosave ``doc`` (atomically) with a small sidecar naming the file it came from."""
    path = recovery_path(pid)
    save_project(doc, path)
    _info_path(path).write_text(json.dumps({"source": source, "pid": pid or os.getpid()}))
    return path


def clear_recovery(pid: int | None = None) -> None:
    path = recovery_path(pid)
    for p in (path, _info_path(path)):
        with contextlib.suppress(OSError):
            p.unlink()


def _alive(pid: int, own_pid_is_orphan: bool = False) -> bool:
    if pid == os.getpid():
        return not own_pid_is_orphan
    if os.name != "posix":
        return False  # best effort: on Windows a leftover file is treated as a crash
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned_recoveries(own_pid_is_orphan: bool = False) -> list[tuple[Path, str | None]]:
    """Autosaves left by sessions that are no longer running: (file, original path).
    ``own_pid_is_orphan``: at start-up, before this session autosaved, a file named with our
    own PID was left by an earlier session whose PID the OS gave us again."""
    found = []
    for path in sorted(recovery_dir().glob("autosave-*.studio")):
        try:
            pid = int(path.stem.split("-", 1)[1])
        except ValueError:
            continue
        if _alive(pid, own_pid_is_orphan):
            continue
        source = None
        with contextlib.suppress(OSError, ValueError):
            source = json.loads(_info_path(path).read_text()).get("source")
        found.append((path, source))
    return found


def set_aside(path: Path) -> Path:
    """Rename an unreadable recovery file so it is kept but not offered again."""
    target = path.with_name(path.name + ".unreadable")
    with contextlib.suppress(OSError):
        os.replace(path, target)
    with contextlib.suppress(OSError):
        _info_path(path).unlink()
    return target


def discard(path: Path) -> None:
    for p in (path, _info_path(path)):
        with contextlib.suppress(OSError):
            p.unlink()
