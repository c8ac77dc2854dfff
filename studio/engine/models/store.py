"""What is installed, and removing it.

- Hugging Face repo entries live in the shared Hugging Face cache (``HF_HUB_CACHE`` /
  ``HF_HOME/hub``; other apps see the same files) and are found without any network access
  (``try_to_load_from_cache`` / ``snapshot_download(local_files_only=True)``).
- URL entries and imported files live in Studio's models folder, ``$STUDIO_HOME/models/<kind>/``.
- The portable models folder and the user's extra folders (``models.json`` "folders", the
  ``STUDIO_MODEL_PATHS`` env var) are searched too, in the folders named for the entry's kind
  (:mod:`studio.engine.models.folders`): a file named like a URL entry's file, or a diffusers
  folder named like a catalog id, is found there.

The folder and settings functions of :mod:`~studio.engine.models.folders` are re-exported
here for the callers that know them as ``store.models_dir`` etc. Torch-free (only
huggingface_hub, imported lazily), so the UI may use it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
from pathlib import Path

from studio.core.catalog import Catalog, Entry
from studio.core.errors import BadInput, ModelError
from studio.engine.models.folders import (
    WEIGHT_SUFFIXES,
    folder_names,
    hf_cache_dir,
    kind_dir,
    load_settings,
    models_dir,
    offline_mode,
    save_settings,
    search_roots,
    settings_path,
    update_settings,
    user_folders,
)

# Pipeline components Studio does not load (passed as None), so not needed to be "installed".
OPTIONAL_COMPONENTS = frozenset({"safety_checker", "feature_extractor", "image_encoder"})

__all__ = [
    "OPTIONAL_COMPONENTS",
    "WEIGHT_SUFFIXES",
    "disk_usage_of",
    "find_installed",
    "hf_cache_dir",
    "installed",
    "kind_dir",
    "load_settings",
    "models_dir",
    "offline_mode",
    "remove",
    "save_settings",
    "settings_path",
    "update_settings",
    "user_folders",
]


# ------------------------------------------------------------------------------------------
# What is installed


def find_installed(entry: Entry) -> Path | None:
    """Where ``entry`` is installed locally, or None. Never touches the network.

    URL entries: the file. Repo entries with exactly one ``files`` item: that file in the HF
    cache. Other repo entries: the snapshot folder (usable by ``from_pretrained``), returned
    only when it holds the weights the entry needs, so a half-finished download is not
    "installed".
    """
    if entry.url is not None:
        name = entry.target_filename or ""
        for candidate in _candidates(entry, name):
            if candidate.is_file() and not candidate.name.endswith(".part"):
                return candidate
        return None
    for candidate in _candidates(entry, entry.id):
        if candidate.is_dir() and _folder_complete(candidate, entry):
            return candidate
    return _find_in_hf_cache(entry)


def _candidates(entry: Entry, name: str) -> list[Path]:
    """Where a catalog model named ``name`` may sit: in each root's folders for its kind
    (Studio's, the portable folder's, A1111/ComfyUI names) or loose in the root."""
    out: list[Path] = []
    for root in search_roots():
        for base in (root, root / "models"):
            out += [base / sub / name for sub in folder_names(entry.kind)]
        out.append(root / name)
    return out


def _find_in_hf_cache(entry: Entry) -> Path | None:
    assert entry.repo is not None
    from huggingface_hub import try_to_load_from_cache

    cache = str(hf_cache_dir())
    if entry.files:
        found: list[Path] = []
        for name in entry.files:
            try:
                hit = try_to_load_from_cache(
                    entry.repo, name, cache_dir=cache, revision=entry.revision
                )
            except Exception:  # noqa: BLE001 - a bad cache layout means "not installed"
                return None
            if not isinstance(hit, str) or not Path(hit).is_file():
                return None
            found.append(Path(hit))
        if len(found) == 1:
            return found[0]
        depth = len(Path(entry.files[0]).parts)
        return found[0].parents[depth - 1]
    folder = _snapshot_folder(entry.repo, entry.revision)
    if folder is not None and _folder_complete(folder, entry):
        return folder
    return None


def _snapshot_folder(repo: str, revision: str | None) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(
            repo, revision=revision, cache_dir=str(hf_cache_dir()), local_files_only=True
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - e.g. an invalid repo id in a user catalog
        return None
    if not isinstance(path, str | os.PathLike):
        return None
    p = Path(path)
    return p if p.is_dir() else None


def _weights_in(folder: Path, variant: str | None) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    if variant:
        files = [p for p in files if f".{variant}." in p.name]
    return files


def _folder_complete(folder: Path, entry: Entry) -> bool:
    """Does ``folder`` hold what loading ``entry`` needs? A diffusers pipeline needs every
    model component's weights (in the entry's variant if it names one); a single component
    needs its config and weights; a ``files`` entry needs those files; otherwise the folder
    must match the entry's patterns with at least one weights file."""
    if entry.files:
        return all((folder / f).is_file() for f in entry.files)
    index = folder / "model_index.json"
    if index.is_file():
        try:
            spec = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        for name, value in spec.items():
            if name.startswith("_") or not isinstance(value, list) or value[0] is None:
                continue
            if name in OPTIONAL_COMPONENTS:
                continue
            sub = folder / name
            if not sub.is_dir():
                return False
            if (sub / "config.json").is_file() and not _weights_in(sub, entry.variant):
                return False
        return True
    if (folder / "config.json").is_file():
        return bool(_weights_in(folder, entry.variant))
    weights = [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in WEIGHT_SUFFIXES
        and (
            not entry.allow_patterns
            or any(fnmatch.fnmatch(str(p.relative_to(folder)), pat) for pat in entry.allow_patterns)
        )
    ]
    return bool(weights)


def installed(catalog: Catalog) -> dict[str, Path]:
    """{id: path} for every catalog entry installed locally."""
    out: dict[str, Path] = {}
    for entry in catalog:
        path = find_installed(entry)
        if path is not None:
            out[entry.id] = path
    return out


def disk_usage_of(path: Path) -> int:
    """Bytes used by a file or folder (following HF cache symlinks to their blobs)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


# ------------------------------------------------------------------------------------------
# Removing


def remove(entry: Entry) -> int:
    """Delete an installed catalog model; returns the bytes freed (0 if it was not installed).

    URL entries: the file in Studio's models folder. Repo entries naming ``files``: just those
    files (other files of the repo in the shared cache stay). Other repo entries: every cached
    revision of the repo. Files in the user's own folders are never deleted.
    """
    path = find_installed(entry)
    if path is None:
        return 0
    home = models_dir().resolve()
    cache = hf_cache_dir().resolve()
    resolved = path.resolve() if path.is_dir() else path.parent.resolve()
    if not (_is_within(resolved, home) or _is_within(path.absolute(), cache)):
        raise BadInput(
            f"{entry.id} is in your own folder {path.parent}; Studio does not delete files there"
        )
    if entry.url is not None or _is_within(path.absolute(), home):
        freed = disk_usage_of(path)
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as e:
            raise ModelError(f"Could not remove {path}: {e.strerror or e}") from e
        return freed
    if entry.files:
        folder = path if path.is_dir() else path.parents[len(Path(entry.files[0]).parts) - 1]
        freed = 0
        for name in entry.files:
            freed += _unlink_cached_file(folder / name)
        return freed
    return _delete_repo_from_cache(entry.repo or "")


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _unlink_cached_file(link: Path) -> int:
    """Remove a snapshot file and its blob (HF cache: snapshots/<rev>/f -> ../../blobs/<hash>)."""
    freed = 0
    try:
        target = link.resolve()
        size = target.stat().st_size if target.is_file() else 0
        if link.is_symlink():
            link.unlink()
            if target.is_file():
                target.unlink()
        elif link.is_file():
            link.unlink()
        freed += size
    except OSError as e:
        raise ModelError(f"Could not remove {link}: {e.strerror or e}") from e
    return freed


def _delete_repo_from_cache(repo: str) -> int:
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(hf_cache_dir())
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"Could not read the Hugging Face cache: {e}") from e
    for cached in info.repos:
        if cached.repo_id == repo and cached.repo_type == "model":
            hashes = [r.commit_hash for r in cached.revisions]
            strategy = info.delete_revisions(*hashes)
            freed = strategy.expected_freed_size
            try:
                strategy.execute()
            except OSError as e:
                raise ModelError(f"Could not remove {repo}: {e.strerror or e}") from e
            with contextlib.suppress(OSError):
                shutil.rmtree(cached.repo_path)
            return int(freed)
    return 0
