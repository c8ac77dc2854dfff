"""Import a model file the user has (drop on the window or ``studio models import FILE``).

The file is identified first (:mod:`studio.engine.models.identify`; nothing in it runs), then copied
(or hard/sym-linked) into ``$STUDIO_HOME/models/<kind>/`` atomically and recorded in
``$STUDIO_HOME/models/imported.json`` with what it is, so lists, the generation panel and the
CLI can offer it. LoRA files are found by name with :func:`find_lora`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.cancel import CancelToken
from studio.core.errors import BadInput, ModelError
from studio.engine.models.folders import check_disk_space, kind_dir
from studio.engine.models.identify import SUFFIXES, Identified, identify
from studio.engine.models.registry import (
    REGISTRY,
    ImportedModel,
    list_imported,
    registry_path,
    save_registry,
)
from studio.engine.models.scan import find_local, local_models

COPY_CHUNK = 4 << 20  # cancel and progress stay prompt while copying a multi-GB checkpoint

__all__ = [
    "REGISTRY",
    "ImportedModel",
    "find_lora",
    "import_file",
    "list_imported",
    "list_loras",
    "registry_path",
    "remove_imported",
]


def import_file(
    src: str | os.PathLike,
    *,
    link: bool = False,
    name: str | None = None,
    overwrite: bool = False,
    token: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportedModel:
    """Identify ``src`` and put it into Studio's models folder under its kind.

    ``link=True`` hard-links (same disk) or else symlinks instead of copying. ``name`` renames
    it (the suffix is kept). Importing the same file twice returns the existing record; a
    different file with the same name needs ``overwrite=True``. A copy reports
    ``progress(bytes_done, bytes_total)`` and stops at ``token``'s cancel (JobCancelled; the
    partial copy is removed).
    """
    src_path = Path(src).expanduser()
    if src_path.is_dir():
        raise BadInput(
            f"{src_path} is a folder; import takes one model file. Use a diffusers folder as it "
            "is (--model FOLDER) or put it in a models folder (checkpoints/, controlnet/, ...)"
        )
    if not src_path.is_file():
        raise BadInput(f"No such file: {src_path}")
    found: Identified = identify(src_path)
    suffix = src_path.suffix.lower()
    if suffix not in SUFFIXES:  # pragma: no cover - identify refuses these first
        raise BadInput(f"Unsupported file type {suffix}")
    stem = Path(name).stem if name else src_path.stem
    if not stem or stem.startswith(".") or "/" in stem or "\\" in stem:
        raise BadInput(f"Invalid model name {stem!r}")
    folder = kind_dir(found.kind)
    dest = folder / f"{stem}{suffix}"
    size = src_path.stat().st_size

    records = [r for r in list_imported() if Path(r.path) != dest]
    if dest.exists():
        if _same_file(src_path, dest):
            existing = [r for r in list_imported() if Path(r.path) == dest]
            if existing:
                return existing[0]
        elif not overwrite:
            raise BadInput(
                f"A different {found.kind} model named {dest.name} is already imported; "
                "choose another name or overwrite it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or not _same_file(src_path, dest):
        _place(src_path, dest, size, link, token, progress)

    record = ImportedModel(
        name=dest.name,
        path=str(dest),
        kind=found.kind,
        base=found.base,
        description=found.description,
        format=found.format,
        size=size,
        source=str(src_path.resolve()),
        imported_at=time.time(),
        details={k: v for k, v in found.details.items() if _jsonable(v)},
    )
    records.append(record)
    save_registry(records)
    return record


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if os.path.samefile(a, b):
            return True
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            for offset in (0, max(0, a.stat().st_size - (1 << 20))):
                fa.seek(offset)
                fb.seek(offset)
                if fa.read(1 << 20) != fb.read(1 << 20):
                    return False
        return True
    except OSError:
        return False


def _copy(
    src: Path,
    dst: Path,
    size: int,
    token: CancelToken | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    done = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(COPY_CHUNK):
            if token is not None:
                token.raise_if_cancelled()
            fout.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, size)
        fout.flush()
        os.fsync(fout.fileno())


def _place(
    src: Path,
    dest: Path,
    size: int,
    link: bool,
    token: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    tmp = dest.with_name(f".{dest.name}.importing")
    with contextlib.suppress(OSError):
        tmp.unlink()
    try:
        if link:
            try:
                os.link(src, tmp)
            except OSError:
                os.symlink(src.resolve(), tmp)
        else:
            check_disk_space(dest.parent, size)
            _copy(src, tmp, size, token, progress)
        os.replace(tmp, dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ModelError(
            f"Could not import {src.name} into {dest.parent}: {e.strerror or e}"
        ) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_imported(name_or_path: str) -> int:
    """Delete an imported model (by file name, stem or path); returns bytes freed."""
    records = list_imported()
    keep, drop = [], []
    for r in records:
        if name_or_path in (r.name, r.stem, r.path):
            drop.append(r)
        else:
            keep.append(r)
    if not drop:
        raise BadInput(f"No imported model named {name_or_path!r}")
    freed = 0
    for r in drop:
        p = Path(r.path)
        with contextlib.suppress(OSError):
            freed += p.lstat().st_size if p.is_symlink() else p.stat().st_size
            p.unlink()
    save_registry(keep)
    return freed


def list_loras() -> list[Path]:
    """LoRA files Studio knows, one per name: imported ones, then files in every root's LoRA
    folders (``loras/`` in Studio's and the portable models folder, A1111's ``Lora``, ComfyUI's
    ``loras``, LyCORIS). Read from disk on every call (a new file shows up at once)."""
    found: dict[str, Path] = {}
    for m in local_models("lora"):
        found.setdefault(m.name, m.path)
    return list(found.values())


def find_lora(name: str) -> Path | None:
    """A LoRA by name (file stem, as in A1111's ``<lora:name:weight>``) or path."""
    p = Path(name).expanduser()
    if p.suffix and p.is_file():
        return p
    return find_local(name, "lora")
