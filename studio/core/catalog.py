"""The model catalog: which models Studio knows, where they come from, how big they are.

Parsed from ``models/catalog.toml`` (shipped in the package) merged with the user's
``$STUDIO_HOME/catalog.toml`` into frozen :class:`Entry` objects. A malformed catalog raises
:class:`BadInput` naming the file, the entry and the field. Pure data: no torch, no network.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from studio.core.errors import BadInput
from studio.core.paths import shipped_models_dir, studio_home

KINDS: tuple[str, ...] = (
    "txt2img",
    "inpaint",
    "controlnet-canny",
    "controlnet-pose",
    "controlnet-scribble",
    "controlnet-inpaint",
    "preview-decoder",
    "upscaler",
    "lama",
    "pose-detector",
    "lora",
    "embedding",  # textual inversion (A1111's embeddings/ folder)
    "vae",
    "edit",  # edit by instruction from an input image (Flux Kontext, Qwen-Image-Edit)
    "controlnet-depth",
    "segment",  # select by clicks, boxes or words (SAM 2, Grounding DINO, SAM 3)
    "depth-estimator",  # depth maps for depth ControlNets (Depth Anything V2)
    "face-restorer",  # GFPGAN
    "face-detector",  # YuNet
)
RECOMMENDED_KEYS = {
    "steps": int,
    "guidance": float,
    "scheduler": str,
    "timestep_spacing": str,
    "width": int,
    "height": int,
    "scale": int,
    "strength": float,
    "true_cfg": float,  # Qwen-Image's true classifier-free guidance (its guidance_scale is unused)
    "max_sequence_length": int,  # T5/LLM prompt tokens (Flux schnell: at most 256)
}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_KNOWN_FIELDS = {
    "id",
    "name",
    "kind",
    "base",
    "repo",
    "revision",
    "variant",
    "files",
    "allow_patterns",
    "url",
    "filename",
    "size",
    "sha256",
    "license",
    "starter",
    "optional",
    "gated",
    "recommended",
    "homepage",
    "description",
}

BUILTIN_CATALOG = shipped_models_dir() / "catalog.toml"


def _declared_bases(data: Mapping[str, Any], source: str) -> tuple[str, ...]:
    bases = data.get("bases", [])
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise BadInput(f"Malformed model catalog {source}: 'bases' must be a list of names")
    return tuple(bases)


@cache
def known_bases() -> tuple[str, ...]:
    """The model families an entry's ``base`` may name: the shipped catalog's top-level
    ``bases`` list (the engine's family registry is checked against it by a test, so core
    needs no engine import to validate a catalog)."""
    try:
        data = tomllib.loads(BUILTIN_CATALOG.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return ()
    return _declared_bases(data, str(BUILTIN_CATALOG))


def __getattr__(name: str) -> Any:
    if name == "BASES":
        return known_bases()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def user_catalog_path() -> Path:
    return studio_home() / "catalog.toml"


@dataclass(frozen=True)
class Entry:
    """One catalog model. Exactly one of ``repo`` (Hugging Face) or ``url`` is set."""

    id: str
    name: str
    kind: str
    license: str
    size: int
    bases: tuple[str, ...] = ()
    repo: str | None = None
    revision: str | None = None
    variant: str | None = None
    files: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] = ()
    url: str | None = None
    filename: str | None = None
    sha256: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    starter: bool = False
    optional: bool = False
    gated: bool = False  # the repo needs a logged-in user who accepted its licence
    recommended: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    homepage: str = ""
    description: str = ""
    origin: str = "builtin"  # "builtin" or "user"

    @property
    def base(self) -> str | None:
        """The main family (first of ``bases``), or None for family-independent models."""
        return self.bases[0] if self.bases else None

    @property
    def is_repo(self) -> bool:
        return self.repo is not None

    @property
    def is_single_file(self) -> bool:
        """A URL download, or a repo entry naming exactly one file."""
        return self.url is not None or len(self.files) == 1

    @property
    def target_filename(self) -> str | None:
        """For URL entries: the file name it is stored under in Studio's models folder."""
        if self.url is None:
            return None
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def source(self) -> str:
        """A human-readable description of where it comes from."""
        if self.repo:
            extra = f" ({', '.join(self.files)})" if self.files else ""
            return f"huggingface.co/{self.repo}{extra}"
        return self.url or ""


class Catalog:
    """Entries in file order (builtin first, then user additions) with lookup by id."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = {e.id: e for e in entries}

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def get(self, model_id: str) -> Entry | None:
        return self._entries.get(model_id)

    def require(self, model_id: str) -> Entry:
        """The entry, or BadInput listing close ids."""
        entry = self.get(model_id)
        if entry is None:
            import difflib

            close = difflib.get_close_matches(model_id, list(self._entries), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise BadInput(f"Unknown model id {model_id!r}{hint}; see `studio models list`")
        return entry

    def by_kind(self, *kinds: str) -> list[Entry]:
        return [e for e in self if e.kind in kinds]

    def starter_set(self) -> list[Entry]:
        return [e for e in self if e.starter]

    @property
    def ids(self) -> list[str]:
        return list(self._entries)


def parse_catalog(text: str, origin: str = "builtin", source: str = "catalog.toml") -> list[Entry]:
    """Parse and validate catalog TOML text into entries (raises BadInput)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"Malformed model catalog {source}: {e}") from e
    models = data.get("model", [])
    if not isinstance(models, list):
        raise BadInput(f"Malformed model catalog {source}: 'model' must be an array of tables")
    unknown_top = set(data) - {"model", "bases"}
    if unknown_top:
        raise BadInput(f"Malformed model catalog {source}: unknown key(s) {sorted(unknown_top)}")
    bases = _declared_bases(data, source) or known_bases()
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, raw in enumerate(models):
        entry = _parse_entry(raw, origin, f"{source}, model #{i + 1}", bases)
        if entry.id in seen:
            raise BadInput(f"Malformed model catalog {source}: duplicate id {entry.id!r}")
        seen.add(entry.id)
        entries.append(entry)
    return entries


def _parse_entry(raw: Any, origin: str, where: str, known: tuple[str, ...]) -> Entry:
    def bad(msg: str) -> BadInput:
        ident = raw.get("id") if isinstance(raw, dict) else None
        return BadInput(
            f"Malformed model catalog ({where}{f', id {ident!r}' if ident else ''}): {msg}"
        )

    if not isinstance(raw, dict):
        raise bad("an entry must be a table")
    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        raise bad(f"unknown field(s) {sorted(unknown)}")
    for req in ("id", "name", "kind", "size", "license"):
        if req not in raw:
            raise bad(f"missing field {req!r}")

    def string(key: str, default: str | None = None) -> str | None:
        v = raw.get(key, default)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise bad(f"{key!r} must be a non-empty string")
        return v

    def strings(key: str) -> tuple[str, ...]:
        v = raw.get(key, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
            raise bad(f"{key!r} must be a list of non-empty strings")
        return tuple(v)

    def flag(key: str) -> bool:
        v = raw.get(key, False)
        if not isinstance(v, bool):
            raise bad(f"{key!r} must be true or false")
        return v

    model_id = string("id")
    if not _ID_RE.match(model_id or ""):
        raise bad(f"id {model_id!r} must be lowercase letters, digits, '.', '_' or '-'")
    kind = string("kind")
    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    size = raw["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise bad(f"size must be a positive integer number of bytes, not {size!r}")
    bases = strings("base")
    for b in bases:
        if b not in known:
            raise bad(f"unknown base {b!r} (known: {', '.join(known)})")

    repo, url = string("repo"), string("url")
    if (repo is None) == (url is None):
        raise bad("exactly one of 'repo' or 'url' must be given")
    files, patterns = strings("files"), strings("allow_patterns")
    if repo is not None:
        if not _REPO_RE.match(repo):
            raise bad(f"repo {repo!r} is not a Hugging Face 'owner/name' id")
        if files and patterns:
            raise bad("give either 'files' or 'allow_patterns', not both")
        if raw.get("filename") is not None:
            raise bad("'filename' is only for url entries")
    else:
        if not url.startswith(("https://", "http://")):
            raise bad(f"url {url!r} must start with https:// or http://")
        for key in ("revision", "variant", "files", "allow_patterns"):
            if key in raw:
                raise bad(f"{key!r} is only for repo entries")
    filename = string("filename")
    if filename is not None and ("/" in filename or "\\" in filename or filename in (".", "..")):
        raise bad(f"filename {filename!r} must be a plain file name")

    sha_raw = raw.get("sha256")
    shas: dict[str, str] = {}
    if sha_raw is not None:
        if isinstance(sha_raw, str):
            if url is not None:
                target = filename or url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
            elif len(files) == 1:
                target = files[0]
            else:
                raise bad("a single sha256 string needs a url or exactly one file; use a table")
            shas = {target: sha_raw}
        elif isinstance(sha_raw, dict):
            shas = dict(sha_raw)
            if repo is not None and files:
                missing = set(shas) - set(files)
                if missing:
                    raise bad(f"sha256 given for file(s) not in 'files': {sorted(missing)}")
        else:
            raise bad("sha256 must be a string or a table {filename = sha256}")
        for name, digest in shas.items():
            if not isinstance(digest, str) or not _SHA_RE.match(digest):
                raise bad(f"sha256 of {name!r} must be 64 lowercase hex digits")

    rec = raw.get("recommended", {})
    if not isinstance(rec, dict):
        raise bad("'recommended' must be a table")
    for key, value in rec.items():
        typ = RECOMMENDED_KEYS.get(key)
        if typ is None:
            raise bad(f"unknown recommended setting {key!r}")
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            rec = {**rec, key: value}
        if not isinstance(value, typ) or isinstance(value, bool):
            raise bad(f"recommended {key} must be {typ.__name__}")

    return Entry(
        id=model_id,
        name=string("name"),
        kind=kind,
        license=string("license"),
        size=size,
        bases=bases,
        repo=repo,
        revision=string("revision"),
        variant=string("variant"),
        files=files,
        allow_patterns=patterns,
        url=url,
        filename=filename,
        sha256=MappingProxyType(shas),
        starter=flag("starter"),
        optional=flag("optional"),
        gated=flag("gated"),
        recommended=MappingProxyType(dict(rec)),
        homepage=raw.get("homepage", "") or "",
        description=raw.get("description", "") or "",
        origin=origin,
    )


def load_catalog(
    builtin: str | os.PathLike | None = None, user: str | os.PathLike | None = None
) -> Catalog:
    """The shipped catalog merged with the user's (``$STUDIO_HOME/catalog.toml`` by default).

    A user entry with an existing id replaces the builtin one. Raises BadInput if either file
    is malformed.
    """
    builtin_path = Path(builtin) if builtin is not None else BUILTIN_CATALOG
    user_path = Path(user) if user is not None else user_catalog_path()
    try:
        text = builtin_path.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInput(f"Cannot read model catalog {builtin_path}: {e.strerror or e}") from e
    entries = {e.id: e for e in parse_catalog(text, "builtin", str(builtin_path))}
    if user_path.is_file():
        try:
            user_text = user_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"Cannot read model catalog {user_path}: {e}") from e
        for e in parse_catalog(user_text, "user", str(user_path)):
            entries[e.id] = e
    return Catalog(list(entries.values()))


def format_size(n: int | float) -> str:
    """Bytes as a short human string: 1.2 GB, 67.0 MB, 512 B (decimal units, like HF)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
