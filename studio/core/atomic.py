"""Atomic file writes: write a temp file in the same folder, fsync, rename over the target.

A crash (even kill -9) at any point leaves either the old file or the new one, never a mix;
a full disk raises and leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from studio.core.errors import StudioError


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Context manager yielding a binary file; on clean exit it atomically replaces ``path``."""
    path = Path(path)
    folder = path.parent  # Path("name").parent is Path("."): a bare name saves here
    _remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise StudioError(f"Cannot write to {folder}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise StudioError(f"Could not save {path.name}: {e.strerror or e}", repr(e)) from e
        raise
    _fsync_dir(folder)


def _remove_stale_temps(path: Path, older_than: float = 60.0) -> None:
    """Temp files left by a process killed mid-save (kill -9, power loss) are removed by the
    next save of the same file, once old enough not to belong to a save still running."""
    import time

    now = time.time()
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > older_than:
                stale.unlink()


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
