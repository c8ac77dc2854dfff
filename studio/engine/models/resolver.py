"""The one model resolver, and the list of models of a kind.

:func:`resolve` turns a model reference of a given kind into a local path, or raises one
clear error. A reference is, tried in this order:

1. an existing file or folder (returned as is);
2. a catalog id (``sd-turbo``, ``realesrgan-x4plus``): where the model manager installed it
   (:func:`studio.engine.models.store.find_installed`); one not installed is
   :class:`ModelError` (exit 3) saying "not installed: run `studio models download ID`", as
   is an id of another kind (a model this job cannot load);
3. the name of an imported file or of one dropped into a models folder (file name, stem or
   folder name; :mod:`studio.engine.models.scan`);
4. a Hugging Face repo id (``owner/name``) already in the HF cache (never downloaded here).

A path-like reference that does not exist, an uncached repo id and an unknown name are
:class:`ModelError` (the model is missing); an empty reference is :class:`BadInput`.

:func:`list_models` is the torch-free list the UI's pickers show for a kind: installed
catalog models, imported files and dropped files (optionally the catalog models not yet
installed), read from disk on every call so an import shows up without a restart.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.catalog import Catalog, Entry, load_catalog
from studio.core.errors import BadInput, ModelError
from studio.engine.models.folders import WEIGHT_SUFFIXES, hf_cache_dir, kinds_of, offline_mode
from studio.engine.models.scan import find_local, local_models
from studio.engine.models.store import find_installed

REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def looks_like_path(ref: str) -> bool:
    """A reference written as a path (not an id or a bare name)."""
    return (
        ref.startswith((".", "/", "~", "\\"))
        or bool(re.match(r"^[A-Za-z]:[\\/]", ref))
        or "\\" in ref
        or ref.count("/") > 1
    )


def _a(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words


def not_installed(entry: Entry) -> ModelError:
    return ModelError(
        f"{entry.id}: not installed: run `studio models download {entry.id}` ({entry.name})"
    )


def hf_cached(repo: str, filename: str | None = None, revision: str | None = None) -> Path | None:
    """A repo's snapshot folder (or one of its files) from the Hugging Face cache, or None.
    Never touches the network (``local_files_only``)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    cache = str(hf_cache_dir())
    try:
        if filename:
            found = hf_hub_download(
                repo, filename, revision=revision, cache_dir=cache, local_files_only=True
            )
        else:
            found = snapshot_download(
                repo, revision=revision, cache_dir=cache, local_files_only=True
            )
    except Exception:  # noqa: BLE001 - not cached, or not a valid repo id: "not here"
        return None
    path = Path(found)
    return path if path.exists() else None


def _single_file(path: Path, ref: str) -> Path:
    if path.is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(files) != 1:
        raise ModelError(f"{ref}: {path} holds {len(files)} model files; pass the file itself")
    return files[0]


def resolve(
    ref: str,
    kind: str | tuple[str, ...],
    *,
    catalog: Catalog | None = None,
    file: bool = False,
) -> Path:
    """The local path of model ``ref`` of ``kind`` (a catalog kind, a group such as
    "controlnet" or "checkpoint", or a tuple of them). ``file=True``: a folder found through
    the catalog, a name or the HF cache must hold exactly one weights file, which is returned.
    Raises BadInput or ModelError (see the module docstring)."""
    kinds = kinds_of(kind)
    # Name two kinds at most ("upscaler", "txt2img or inpaint"); a longer list reads as noise.
    what = " or ".join(kinds) if len(kinds) <= 2 else ""
    ref = (ref or "").strip()
    if not ref:
        raise BadInput(
            f"no {what + ' ' if what else ''}model given (a catalog id, a file, a folder or a name)"
        )
    path = Path(ref).expanduser()
    if path.exists():
        return path.resolve()
    has_sep = "/" in ref or "\\" in ref
    if not has_sep:
        cat = catalog if catalog is not None else load_catalog()
        entry = cat.get(ref)
        if entry is not None:
            if entry.kind not in kinds:  # a model, but not one this job can load: exit 3
                wanted = f"not {_a(what)} model" if what else "which this command cannot use"
                raise ModelError(f"{ref}: is {_a(entry.kind)} model, {wanted}")
            found = find_installed(entry)
            if found is None:
                raise not_installed(entry)
            return _single_file(found, ref) if file else found
        local = find_local(ref, kinds)
        if local is not None:
            return local
    if looks_like_path(ref) or path.suffix.lower() in WEIGHT_SUFFIXES:
        raise ModelError(f"{ref}: no such model file or folder")
    if REPO_RE.match(ref):
        found = hf_cached(ref)
        if found is not None:
            return _single_file(found, ref) if file else found
        why = " (offline: STUDIO_OFFLINE/HF_HUB_OFFLINE is set)" if offline_mode() else ""
        raise ModelError(
            f"{ref}: not in the Hugging Face cache{why}; get it with "
            f"`studio models download {ref}` or `huggingface-cli download {ref}`"
        )
    cat = catalog if catalog is not None else load_catalog()
    ids = [e.id for e in cat if e.kind in kinds]
    names = [m.name for m in local_models(kinds)]
    close = difflib.get_close_matches(ref, ids + names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ModelError(
        f"{ref}: no such {what + ' ' if what else ''}model: not a file, folder, catalog id, Hugging Face repo id "
        f"or a name in the model folders{hint}; see `studio models list`"
    )


def catalog_entry(ref: str, catalog: Catalog | None = None) -> Entry | None:
    """The catalog entry ``ref`` names, or None (also for paths and repo ids)."""
    if not ref or "/" in ref or "\\" in ref:
        return None
    return (catalog if catalog is not None else load_catalog()).get(ref)


# ------------------------------------------------------------------------------------------
# What the pickers list


@dataclass(frozen=True)
class ModelChoice:
    """One model a picker can offer. ``ref`` is what a request's ``model`` field takes (the
    catalog id, else the path); ``path`` is None for a catalog model not installed yet."""

    ref: str
    label: str
    kind: str
    source: str  # "catalog" | "imported" | "folder"
    path: Path | None
    base: str | None = None
    size: int = 0
    license: str = ""
    recommended: dict = field(default_factory=dict, compare=False)

    @property
    def installed(self) -> bool:
        return self.path is not None


def list_models(
    kind: str | tuple[str, ...],
    *,
    catalog: Catalog | None = None,
    include_missing: bool = False,
) -> list[ModelChoice]:
    """Models of ``kind`` for a picker, installed first: catalog models (in catalog order),
    imported files, files dropped into the model folders; then, with ``include_missing``, the
    catalog models not installed (for a "download" mark). Each path appears once."""
    kinds = kinds_of(kind)
    cat = catalog if catalog is not None else load_catalog()
    installed: list[ModelChoice] = []
    missing: list[ModelChoice] = []
    seen: set[str] = set()
    for entry in cat.by_kind(*kinds):
        path = find_installed(entry)
        choice = ModelChoice(
            entry.id,
            entry.name,
            entry.kind,
            "catalog",
            path,
            entry.base,
            entry.size,
            entry.license,
            dict(entry.recommended),
        )
        if path is None:
            missing.append(choice)
        else:
            seen.add(_key(path))
            installed.append(choice)
    for m in local_models(kinds):
        key = _key(m.path)
        if key in seen:
            continue
        seen.add(key)
        size = m.path.stat().st_size if m.path.is_file() else 0
        label = m.name if not m.description else f"{m.name} ({m.description})"
        installed.append(ModelChoice(str(m.path), label, m.kind, m.source, m.path, m.base, size))
    return installed + (missing if include_missing else [])


def _key(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except OSError:
        return str(path)
