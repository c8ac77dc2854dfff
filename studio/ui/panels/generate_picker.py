"""The Generate panel's model picker: the rows it lists (installed models first, then the
catalog's to download, each named with its family), the list itself (``PickerCombo``: a
list, never a text field, so single-key tools reach the canvas) and the Find dialog
(``ModelSearch``: type to narrow the rows, or enter a reference the list lacks); and the
installed LoRAs, VAEs and samplers the panel offers.

Torch-free: the catalog, the model store and the family descriptors are read without
loading any model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.catalog import format_size

_FALLBACK_SCHEDULERS = ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"]


def scheduler_names() -> list[str]:
    try:  # torch-free module (checked by the layering test)
        from studio.engine.diffusion import scheduler_names as names

        return list(names())
    except Exception:  # noqa: BLE001
        return list(_FALLBACK_SCHEDULERS)


def catalog_models() -> dict[str, dict]:
    """Catalog ids of generation models -> their recommended settings (steps, guidance,
    scheduler, ...); empty when the catalog is unavailable."""
    try:
        from studio.core.catalog import load_catalog

        return {
            e.id: dict(e.recommended) for e in load_catalog() if e.kind in ("txt2img", "inpaint")
        }
    except Exception:  # noqa: BLE001 - the picker stays editable without a catalog
        return {}


def local_models() -> list[str]:
    """Diffusers folders and imported checkpoints on disk (Studio's and the user's folders)."""
    try:
        from studio.engine.models import local_pipelines  # torch-free

        return [str(p) for p in local_pipelines()]
    except Exception:  # noqa: BLE001 - a broken models folder must not break the picker
        return []


def installed_choices(kind: str) -> list[tuple[str, str]]:
    """(label, path) of the installed models of ``kind`` ("lora", "vae"), read from disk on
    each call, so imported or dropped files appear without a restart."""
    try:
        from studio.engine.models import list_models  # torch-free

        return [(c.label, str(c.path)) for c in list_models(kind) if c.path is not None]
    except Exception:  # noqa: BLE001 - a broken models folder must not break the panel
        return []


def family_defaults(ref: str) -> dict:
    """A model's defaults: the catalog's recommended values, the rest from its family
    descriptor (size, steps, guidance, sampler), torch-free; {} when unknown."""
    try:
        from studio.engine.diffusion import recommended_settings  # torch-free (layering test)

        return dict(recommended_settings(ref)) if ref else {}
    except Exception:  # noqa: BLE001 - an unreadable file: keep the current settings
        return {}


@dataclass(frozen=True)
class PickerItem:
    """One row of the model picker: ``ref`` goes into the request; ``name`` is the model's
    (its catalog name, or its folder / model name for a file), ``family`` its family's label
    ("" when it can't be told without loading it); ``size`` (bytes) is what a not-installed
    catalog model downloads."""

    ref: str
    label: str
    installed: bool
    size: int = 0
    name: str = ""
    family: str = ""
    tip: str = ""


# File stems that name a diffusers component, not a model ("diffusion_pytorch_model-00001-of-
# 00003" too), the folders such a file sits in inside a model (the model's name is further
# up), and the model folders of Studio, A1111 and ComfyUI or a user's own folders (nothing
# above them names it: the file keeps its own name).
_GENERIC_STEMS = ("diffusion_pytorch_model", "model", "pytorch_model", "weights", "checkpoint")
_COMPONENT_DIRS = {"transformer", "unet", "vae", "text_encoder", "text_encoder_2", "snapshots"}
_STORE_DIRS = {
    *("checkpoints", "diffusion_models", "unet_models", "txt2img", "inpaint", "models"),
    *("downloads", "desktop", "documents", "home", "users", "tmp"),
}
_WEIGHTS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


def _generic(stem: str) -> bool:
    s = stem.lower()
    return any(s == g or s.startswith((g + "-0", g + ".")) for g in _GENERIC_STEMS)


def display_name(ref: str) -> str:
    """What the picker calls a model reference: a catalog id, a Hugging Face repo id or a
    name as it is; a diffusers folder by its name; a file by its stem, or, when the stem is a
    component's generic name (``diffusion_pytorch_model.safetensors``, ``model.safetensors``),
    by the model folder it sits in (``z-image-turbo/transformer/diffusion_pytorch_model.
    safetensors`` is "z-image-turbo"; a file in the Hugging Face cache is its repo id)."""
    ref = (ref or "").strip()
    is_file = ref.lower().endswith(_WEIGHTS)
    windows = "\\" in ref or bool(re.match(r"^[A-Za-z]:[\\/]", ref))
    pathlike = windows or ref.startswith((".", "/", "~")) or ref.count("/") > 1
    if not (is_file or pathlike):
        return ref
    path = PureWindowsPath(ref) if windows else PurePosixPath(ref)
    if is_file and not _generic(path.stem):
        return path.stem
    for part in reversed(path.parts[:-1] if is_file else path.parts):
        if part.startswith("models--"):  # the HF cache: models--owner--name/snapshots/<hash>
            return part.removeprefix("models--").replace("--", "/")
        low = part.lower()
        if low in _COMPONENT_DIRS or (len(part) == 40 and part.isalnum()):
            continue
        if low in _STORE_DIRS or part in (path.anchor, "~", ".", ".."):
            break
        return part
    return path.name or ref


def family_label(base: str | None, ref: str = "") -> str:
    """The label of family ``base`` ("SD 1.x", "FLUX.1", "Z-Image", ...), or of the model
    ``ref`` when no base is recorded (read torch-free from its folder or file header); ""
    when unknown."""
    try:
        from studio.engine.diffusion.families import family

        if base:
            return family(base).label
        if ref:
            from studio.engine.diffusion.shared.defaults import model_family  # torch-free

            fam = model_family(ref)
            return fam.label if fam is not None else ""
    except Exception:  # noqa: BLE001 - an unknown base or an unreadable file: no label
        return ""
    return ""


def picker_label(name: str, family: str, download: int | None = None) -> str:
    """A picker row: the model's name first (what the combo shows when it is narrow), then
    its family, then for a model not installed what it downloads."""
    label = f"{name} · {family}" if family else name
    return label if download is None else f"{label} — download {format_size(download)}"


def _imported_sources() -> dict[str, str]:
    """Imported file path -> where it was imported from (its name says more than the copy's
    in the kind folder, which keeps the file name: diffusion_pytorch_model.safetensors)."""
    try:
        from studio.engine.models.registry import list_imported  # torch-free

        return {str(Path(r.path)): r.source for r in list_imported() if r.source}
    except Exception:  # noqa: BLE001 - a damaged registry: the paths themselves name them
        return {}


def model_choices(recent: list[str]) -> list[PickerItem]:
    """Installed generation models first (catalog, imported, the model folders), then other
    recently used references (Hugging Face ids, paths), then the catalog models not
    installed, marked "download" with their size. Each row names its model (never a bare
    "diffusion_pytorch_model") and its family; two rows never read the same."""
    try:
        from studio.engine.models import list_models  # torch-free, reads the disk each call

        choices = list_models(("txt2img", "inpaint"), include_missing=True)
    except Exception:  # noqa: BLE001 - a broken models folder must not break the picker
        choices = []
    sources = _imported_sources()
    rows: list[PickerItem] = []
    for c in choices:
        if c.source == "catalog":
            name = c.label
        else:
            name = display_name(sources.get(str(c.path), "") or str(c.path))
        fam = family_label(c.base, "" if c.base else c.ref)
        size = None if c.installed else c.size
        tip = f"{c.label} ({c.ref})" if c.source == "catalog" else f"{c.label}\n{c.ref}"
        if not c.installed:
            tip = f"Not installed: pick {c.label} and press Download ({format_size(c.size)})"
        rows.append(
            PickerItem(c.ref, picker_label(name, fam, size), c.installed, c.size, name, fam, tip)
        )
    installed = [r for r in rows if r.installed]
    missing = [r for r in rows if not r.installed]
    known = {c.ref for c in choices}
    others = []
    for m in recent:
        if m and m not in known:
            name, fam = display_name(m), family_label(None, m)
            others.append(PickerItem(m, picker_label(name, fam), True, 0, name, fam, m))
    seen: set[str] = set()
    out = [i for i in installed + others + missing if not (i.ref in seen or seen.add(i.ref))]
    return _distinct(out)


def _distinct(items: list[PickerItem]) -> list[PickerItem]:
    """Rows whose labels would read the same (two imports of "model.safetensors") get their
    reference added, so the user can tell them apart."""
    counts: dict[str, int] = {}
    for i in items:
        counts[i.label] = counts.get(i.label, 0) + 1
    out = []
    for i in items:
        if counts[i.label] > 1:
            label = i.label.replace(i.name, f"{i.name} ({i.ref})", 1) if i.name else i.ref
            i = PickerItem(i.ref, label, i.installed, i.size, i.name, i.family, i.tip)
        out.append(i)
    return out


class PickerCombo(QComboBox):
    """The model picker: a list, not a text field, so single-key tool shortcuts (B, E, M)
    pressed while it has focus reach the canvas instead of typing into it. A reference the
    list doesn't hold (a Hugging Face repo id, a path) comes from the Find dialog, Browse or
    pasted parameters. ``setCurrentText``/``setEditText`` take a reference or a row's label
    and announce it with ``chosen`` (the panel then lists and shows it), as the editable
    combo's text did."""

    chosen = Signal(str)

    def setCurrentText(self, text: str) -> None:  # noqa: N802 - QComboBox's name
        i = self.findData(text)
        if i < 0:
            i = self.findText(text)
        ref = self.itemData(i) if i >= 0 else text
        self.chosen.emit(str(ref or "").strip())

    def setEditText(self, text: str) -> None:  # noqa: N802 - QComboBox's name
        self.setCurrentText(text)


class ModelSearch(QDialog):
    """Find a model by typing part of its name or family (the rows narrow as you type), or
    enter a reference the list lacks: a Hugging Face repo id, a catalog id, a folder or a
    file. Enter (or OK) picks the highlighted row, else the typed text; ``picked`` says
    which."""

    picked = Signal(str)

    def __init__(self, items: list[PickerItem], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Find a model")
        self.setObjectName("model-search")
        self.items = list(items)
        self.query = QLineEdit()
        self.query.setPlaceholderText("Name, family, Hugging Face repo id or path")
        self.query.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setObjectName("model-search-list")
        for item in self.items:
            row = QListWidgetItem(item.label)
            row.setData(Qt.ItemDataRole.UserRole, item.ref)
            row.setToolTip(item.tip or item.ref)
            self.list.addItem(row)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        v = QVBoxLayout(self)
        v.addWidget(self.query)
        v.addWidget(self.list, 1)
        v.addWidget(buttons)
        self.query.textChanged.connect(self._filter)
        self.query.returnPressed.connect(self.accept)
        self.list.itemActivated.connect(lambda _item: self.accept())
        self.resize(420, 360)
        self._filter("")

    def visible_refs(self) -> list[str]:
        return [
            self.list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.list.count())
            if not self.list.item(i).isHidden()
        ]

    @Slot(str)
    def _filter(self, text: str) -> None:
        words = text.lower().split()
        first = None
        for i, item in enumerate(self.items):
            hay = f"{item.label} {item.ref}".lower()
            shown = all(w in hay for w in words)
            self.list.item(i).setHidden(not shown)
            if shown and first is None:
                first = i
        self.list.setCurrentRow(first if first is not None else -1)

    def choice(self) -> str:
        """The highlighted row's reference, else the typed text ("" for none)."""
        row = self.list.currentItem()
        if row is not None and not row.isHidden():
            return str(row.data(Qt.ItemDataRole.UserRole))
        return self.query.text().strip()

    def accept(self) -> None:
        ref = self.choice()
        super().accept()
        if ref:
            self.picked.emit(ref)
