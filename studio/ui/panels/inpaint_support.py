"""What the Inpaint panel lists and keeps, without widgets: the models its picker offers
(inpainting ones first, then any SD/SDXL model, then those on disk, by name) and a job's
result as a layer holding just the edit.

Torch-free: only numpy, studio.core and the torch-free engine look-ups.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.ui.panels.model_picker import PickerRow


def installed_lama() -> Path | None:
    """The installed LaMa file (torch-free look-up), or None."""
    try:
        from studio.engine.restore import find_lama

        return find_lama()
    except Exception:  # noqa: BLE001 - a broken store must not break the panel
        return None


def inpaint_models() -> list[PickerRow]:
    """Inpainting models first (catalog "inpaint"), then txt2img ones, then the models on
    disk (imported, and in the model folders and the user's added folders): each listed by
    its name (a folder's or file's name, never its full path: the tip has that)."""
    out: list[PickerRow] = []
    try:
        from studio.core.catalog import load_catalog

        cat = list(load_catalog())
        out += [PickerRow(e.id, tip=f"{e.name} ({e.id})") for e in cat if e.kind == "inpaint"]
        out += [PickerRow(e.id, tip=f"{e.name} ({e.id})") for e in cat if e.kind == "txt2img"]
    except Exception:  # noqa: BLE001 - without a catalog the picker lists the local models
        pass
    out += local_rows(("inpaint", "txt2img"))
    seen: set[str] = set()
    return [r for r in out if not (r.ref in seen or seen.add(r.ref))]


def local_rows(kinds: tuple[str, ...]) -> list[PickerRow]:
    """Rows of the models of ``kinds`` on disk outside the catalog, by name; two of the same
    name get the folder they sit in added."""
    try:
        from studio.engine.models import local_pipelines  # torch-free

        paths = [Path(p) for p in local_pipelines(kinds)]
    except Exception:  # noqa: BLE001 - a broken models folder must not break the picker
        return []
    names = [p.name if p.is_dir() else p.stem for p in paths]
    rows = []
    for path, name in zip(paths, names, strict=True):
        label = f"{name} ({path.parent.name})" if names.count(name) > 1 else name
        rows.append(PickerRow(str(path), label, tip=str(path)))
    return rows


def union_box(boxes) -> tuple[int, int, int, int]:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def changes_only(patch: np.ndarray, source: np.ndarray | None, box) -> np.ndarray:
    """The patch as an RGBA layer that is transparent wherever the job left the pixel as it
    was, so the layer holds just the edit (and a semi-transparent source is not composited
    over itself)."""
    from studio.core.document import to_rgba

    out = to_rgba(patch).copy()
    if source is None:
        return out
    x, y, w, h = box
    src = to_rgba(source[y : y + h, x : x + w])
    same = (out == src).all(axis=2)
    out[same] = 0
    return out
