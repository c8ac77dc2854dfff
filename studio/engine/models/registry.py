"""The record of imported model files, ``$STUDIO_HOME/models/imported.json``.

Written by :func:`studio.engine.models.importer.import_file`, read by the scanner and the
lists. A record says what the identifier found (kind, base, description), so a list does not
have to read the file again. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_bytes
from studio.engine.models.folders import models_dir

REGISTRY = "imported.json"


@dataclass(frozen=True)
class ImportedModel:
    """A record of an imported file. ``kind`` is the identifier's kind (txt2img, inpaint,
    controlnet, lora, vae, preview-decoder, upscaler or lama)."""

    name: str  # file name in Studio's models folder (unique within its kind)
    path: str
    kind: str
    base: str | None
    description: str
    format: str
    size: int
    source: str  # where it was imported from
    imported_at: float
    details: dict[str, Any]

    @property
    def stem(self) -> str:
        return Path(self.name).stem


def registry_path() -> Path:
    return models_dir() / REGISTRY


def list_imported(kind: str | None = None) -> list[ImportedModel]:
    """Imported models still present on disk (optionally of one kind), oldest first."""
    try:
        raw = json.loads(registry_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            rec = ImportedModel(**item)
        except TypeError:
            continue
        if Path(rec.path).exists() and (kind is None or rec.kind == kind):
            out.append(rec)
    return out


def save_registry(records: list[ImportedModel]) -> None:
    registry_path().parent.mkdir(parents=True, exist_ok=True)
    data = [asdict(r) for r in records]
    atomic_write_bytes(registry_path(), json.dumps(data, indent=2, default=str).encode())
