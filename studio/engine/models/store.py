"""Where models live and what is installed.

- Hugging Face repo entries live in the shared Hugging Face cache (``HF_HUB_CACHE`` /
  ``HF_HOME/hub``; other apps see the same files) and are found without any network access
  (``try_to_load_from_cache`` / ``snapshot_download(local_files_only=True)``).
- URL entries and imported files live in Studio's models folder, ``$STUDIO_HOME/models/<kind>/``.
- Extra folders the user lists (``models.json`` "folders" in ``$STUDIO_HOME``, or the
  ``STUDIO_MODEL_PATHS`` env var, ``os.pathsep``-separated) are searched too: a file named
  like a URL entry's file, or a diffusers folder named like a catalog id, is found there.

Torch-free (only huggingface_hub, imported lazily), so the UI may use it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_bytes
from studio.core.catalog import Catalog, Entry, studio_home
from studio.core.errors import BadInput, ModelError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx")
# Pipeline components Studio does not load (passed as None), so not needed to be "installed".
OPTIONAL_COMPONENTS = frozenset({"safety_checker", "feature_extractor", "image_encoder"})


# ------------------------------------------------------------------------------------------
# Folders and settings


def models_dir() -> Path:
    """Studio's own models folder (``$STUDIO_HOME/models``)."""
    return studio_home() / "models"


def kind_dir(kind: str) -> Path:
    return models_dir() / kind


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, following the same env vars as huggingface_hub, read now
    (so a changed ``HF_HOME`` is honoured even after huggingface_hub was imported)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def settings_path() -> Path:
    return studio_home() / "models.json"


def load_settings() -> dict[str, Any]:
    """Model-manager settings: {"folders": [...], "starter_offered": bool, ...}. A missing or
    unreadable file gives the defaults (the app must start even with a broken settings file)."""
    defaults: dict[str, Any] = {"folders": [], "starter_offered": False}
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return defaults
    if not isinstance(data, dict):
        return defaults
    return {**defaults, **data}


def save_settings(settings: dict[str, Any]) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(settings, indent=2).encode("utf-8"))


def update_settings(**changes: Any) -> dict[str, Any]:
    settings = load_settings()
    settings.update(changes)
    save_settings(settings)
    return settings


def user_folders() -> list[Path]:
    """Extra model folders from settings and ``STUDIO_MODEL_PATHS`` (existing ones only)."""
    raw: list[str] = []
    env = os.environ.get("STUDIO_MODEL_PATHS")
    if env:
        raw += [p for p in env.split(os.pathsep) if p]
    folders = load_settings().get("folders", [])
    if isinstance(folders, list):
        raw += [str(p) for p in folders if isinstance(p, str)]
    out: list[Path] = []
    for p in raw:
        path = Path(p).expanduser()
        if path.is_dir() and path not in out:
            out.append(path)
    return out


def offline_mode() -> bool:
    """The app's offline switch (``STUDIO_OFFLINE=1``) or huggingface_hub's (``HF_HUB_OFFLINE``)."""

    def truthy(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")

    return truthy("STUDIO_OFFLINE") or truthy("HF_HUB_OFFLINE") or truthy("TRANSFORMERS_OFFLINE")


# ------------------------------------------------------------------------------------------
# What is installed


def local_pipelines(kinds: tuple[str, ...] = ("txt2img", "inpaint"), limit: int = 50) -> list[Path]:
    """Generation models on disk that are not catalog entries: diffusers folders (with a
    model_index.json) in Studio's models folder and the user's folders, then imported
    single-file checkpoints of ``kinds``. Torch-free, for the model pickers."""
    out: list[Path] = []
    for root in _search_roots():
        if root.is_dir():
            out += [p.parent for p in sorted(root.rglob("model_index.json"))]
    from studio.engine.models.importer import list_imported

    out += [Path(rec.path) for kind in kinds for rec in list_imported(kind)]
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))][:limit]


def find_installed(entry: Entry) -> Path | None:
    """Where ``entry`` is installed locally, or None. Never touches the network.

    URL entries: the file. Repo entries with exactly one ``files`` item: that file in the HF
    cache. Other repo entries: the snapshot folder (usable by ``from_pretrained``), returned
    only when it holds the weights the entry needs, so a half-finished download is not
    "installed".
    """
    if entry.url is not None:
        name = entry.target_filename or ""
        for folder in _search_roots():
            for candidate in (folder / entry.kind / name, folder / name):
                if candidate.is_file() and not candidate.name.endswith(".part"):
                    return candidate
        return None
    for folder in _search_roots():
        for candidate in (folder / entry.kind / entry.id, folder / entry.id):
            if candidate.is_dir() and _folder_complete(candidate, entry):
                return candidate
    return _find_in_hf_cache(entry)


def _search_roots() -> list[Path]:
    return [models_dir(), *user_folders()]


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


def resolve_model(spec: str, catalog: Catalog | None = None) -> Path:
    """A catalog id or a local path -> an installed local path, or ModelError/BadInput.

    Convenience for engines and the CLI: a local path is returned as is; a catalog id must be
    installed (``studio models download ID``).
    """
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if catalog is None:
        from studio.core.catalog import load_catalog

        catalog = load_catalog()
    entry = catalog.get(spec)
    if entry is None:
        raise BadInput(f"{spec!r} is neither a catalog model id nor an existing file or folder")
    found = find_installed(entry)
    if found is None:
        raise ModelError(
            f"Model {entry.id!r} is not installed: run `studio models download {entry.id}`"
        )
    return found


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
