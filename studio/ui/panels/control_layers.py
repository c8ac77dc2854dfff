"""The Control panel's list of control layers and the ControlNet each one uses.

The table shows every control and pose layer of the document (``control_model.entries``)
with its on/off box, weight, start and end, and a picker of the ControlNets of its kind that
fit the Generate panel's model's family (catalog entries by their base; imported and folder
ones by the family identified from their weights or config), installed first, then the
catalog's ones to download, marked so. A guide whose ControlNet was never picked follows the
generation model's family; one picked to download is offered under the table ("⤓ Download
…") and downloaded through the Models panel. The settings live in each layer's metadata,
which the table edits in place.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QWidget,
)

from studio.core.catalog import format_size
from studio.ui.panels.control_model import (
    CONTROLNET_KIND,
    LAYER_RANGES,
    ControlEntry,
    ControlNetOption,
    controlnet_options,
    default_controlnet,
    entries,
)
from studio.ui.panels.model_picker import ModelPicker, PickerRow


def family_label(base: str | None) -> str:
    """ "SD 2.x", "SDXL", ... for a family name ("" for None; the name when unknown)."""
    if not base:
        return ""
    try:
        from studio.engine.diffusion.families import family  # torch-free

        return family(base).label
    except Exception:  # noqa: BLE001 - a family the registry doesn't know
        return base


def family_accepts(name: str | None):
    """Whether family ``name`` takes a ControlNet made for a base (its descriptor's
    ``accepts_controlnet``); None when the family is not known."""
    if not name:
        return None
    try:
        from studio.engine.diffusion.families import family  # torch-free

        return family(name).accepts_controlnet
    except Exception:  # noqa: BLE001
        return None


def controlnet_options_for(kind: str, family: str | None) -> list[ControlNetOption]:
    """The ControlNets a guide of ``kind`` ("canny", "pose", "scribble") may use with a model
    of ``family`` (None: not known), best first (``control_model.controlnet_options``): the
    catalog's of that kind (installed or to download) and the imported and folder ones whose
    name does not say another condition, each with its identified family."""
    cn_kind = CONTROLNET_KIND.get(kind)
    try:
        from studio.engine.models import list_models  # torch-free, reads the disk each call
        from studio.engine.models.scan import controlnet_fits

        choices = list_models(cn_kind or "controlnet", include_missing=True)
    except Exception:  # noqa: BLE001 - a broken models folder must not break the panel
        return []
    if cn_kind:
        choices = [
            c
            for c in choices
            if c.source == "catalog" or controlnet_fits(Path(c.ref).name, cn_kind)
        ]
    return controlnet_options(choices, family, family_accepts(family))


def controlnet_rows(
    options: list[ControlNetOption], current: str, family: str | None
) -> list[PickerRow]:
    """The picker's rows: the options that may fit (the current choice too, marked when it
    was made for another family), each named, with its family and, when it is not installed,
    what it downloads."""
    gen = family_label(family)
    rows = []
    for o in options:
        if o.fits is False and o.ref != current:
            continue
        label = o.name
        if not o.catalog and o.base:
            label += f" · {family_label(o.base)}"
        if not o.installed:
            label += f" — download {format_size(o.size)}"
        if o.fits is False:
            label += f" (for {family_label(o.base)}, not {gen})"
        if not o.installed:
            tip = f"{o.name}: not installed. Pick it and press “Download” under the list."
        elif o.fits is None and family:
            tip = f"{o.name}\n{o.ref}\nIts family is not known: it may not fit {gen} models."
        else:
            tip = o.name if o.catalog else f"{o.name}\n{o.ref}"
        rows.append(PickerRow(o.ref, label, tip, o.installed, o.size))
    return rows


def _centered(widget: QWidget) -> QWidget:
    holder = QWidget()
    lay = QHBoxLayout(holder)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setAlignment(Qt.AlignmentFlag.AlignCenter)
    lay.addWidget(widget)
    return holder


class ControlLayerList(QObject):
    """The table of guides of ``host``'s document (see the module doc), with the panel's
    download button and the note said when no ControlNet fits."""

    def __init__(
        self,
        host,
        table: QTableWidget,
        download_button: QPushButton,
        note: QLabel,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.table = table
        self.download_button = download_button
        self.note = note
        self.options: dict[str, list[ControlNetOption]] = {}  # per kind, at the last refresh

    def entries(self) -> list[ControlEntry]:
        return entries(self.host.model.doc.layers)

    def generation_family(self) -> str | None:
        """The family of the Generate panel's model ("sd2" for SD-Turbo; None: no Generate
        panel, no model, or one whose family can't be told without loading it)."""
        panels = self.host.panels
        generate = panels.get("Generate") if isinstance(panels, dict) else None
        state = getattr(generate, "state", None)
        if state is None or not callable(getattr(state, "family", None)):
            return None
        try:
            return state.family() or None
        except Exception:  # noqa: BLE001 - an unreadable model: the family is not known
            return None

    def default_controlnet(self, kind: str) -> str:
        """The ControlNet a new guide of ``kind`` gets (``control_model.default_controlnet``
        for the generation model's family)."""
        family = self.generation_family()
        return default_controlnet(kind, controlnet_options_for(kind, family), family)

    def chosen(self, settings: dict, ref: str) -> None:
        """The user picked a layer's ControlNet: it is theirs now (no longer the default
        that follows the generation model); one to download is offered under the list."""
        settings["model"] = ref.strip()
        settings["model_auto"] = False
        self.update_download_offer()

    def option(self, ref: str) -> ControlNetOption | None:
        for options in self.options.values():
            for o in options:
                if o.ref == ref:
                    return o
        return None

    def missing(self) -> list[ControlNetOption]:
        """The catalog ControlNets the enabled guides use that are not installed yet."""
        out: list[ControlNetOption] = []
        for e in self.entries():
            o = self.option(e.model)
            if e.get("enabled", True) and o is not None and o.catalog and not o.installed:
                if o not in out:
                    out.append(o)
        return out

    def update_download_offer(self) -> None:
        missing = self.missing()
        self.download_button.setVisible(bool(missing))
        if missing:
            total = format_size(sum(o.size for o in missing))
            what = missing[0].name if len(missing) == 1 else f"{len(missing)} ControlNets"
            self.download_button.setText(f"⤓ Download {what} ({total})")

    def download(self) -> None:
        """Download the picked ControlNets that are not installed, through the Models panel
        (its queue, progress and errors)."""
        missing = self.missing()
        panels = self.host.panels
        models = panels.get("Models") if isinstance(panels, dict) else None
        catalog = getattr(models, "catalog", None)
        found = [catalog.get(o.ref) for o in missing] if catalog is not None else []
        entries = [e for e in found if e is not None]
        names = ", ".join(o.name for o in missing)
        if not entries or not callable(getattr(models, "download", None)):
            self.host.show_status(f"Download {names} in the Models panel")
            return
        models.download(entries)
        total = format_size(sum(e.size for e in entries))
        self.host.show_status(f"Downloading {names} ({total}): the Models panel shows progress")

    def refresh(self) -> None:
        """Fill the table again from the document's guides; a guide's ControlNet that was
        never picked follows the generation model's family."""
        rows = self.entries()
        self.table.setRowCount(len(rows))
        family = self.generation_family()
        self.options = {k: controlnet_options_for(k, family) for k in {e.kind for e in rows}}
        none_fit: list[str] = []
        for e in rows:  # the panel's default follows the generation model's family
            if e.get("model_auto", False) or "model" not in e.settings:
                options = self.options[e.kind]
                e.settings["model"] = default_controlnet(e.kind, options, family)
                e.settings["model_auto"] = True
            if not e.model and e.kind not in none_fit:
                none_fit.append(e.kind)
        for row, e in enumerate(rows):
            self._fill_row(row, e, family)
        self.update_download_offer()
        if none_fit and family:
            kinds = ", ".join(none_fit)
            self.note.setText(
                f"No {kinds} ControlNet fits {family_label(family)} models: import one "
                "(Models panel: Import… or Add folder…), or turn the layer off."
            )
        self.note.setVisible(bool(none_fit and family))

    def _fill_row(self, row: int, e: ControlEntry, family: str | None) -> None:
        on = QCheckBox()
        on.setChecked(bool(e.get("enabled", True)))
        on.toggled.connect(lambda v, s=e.settings: s.__setitem__("enabled", bool(v)))
        self.table.setCellWidget(row, 0, _centered(on))
        self.table.setCellWidget(row, 1, QLabel(f"{e.name} ({e.kind})"))
        for col, key in ((2, "weight"), (3, "start"), (4, "end")):
            _label, default, lo, hi = LAYER_RANGES[key]
            spin = QDoubleSpinBox()
            spin.setRange(lo, hi)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
            spin.setValue(float(e.get(key, default)))
            spin.valueChanged.connect(lambda v, s=e.settings, k=key: s.__setitem__(k, float(v)))
            self.table.setCellWidget(row, col, spin)
        # A list, not a text field: B, E or M are never typed into a model's name.
        picker = ModelPicker(controlnet_rows(self.options[e.kind], e.model, family))
        picker.setMinimumContentsLength(8)
        picker.setToolTip("The ControlNet of this guide (add models in the Models panel)")
        picker.setPlaceholderText("no ControlNet fits")
        picker.setCurrentText(e.model)
        picker.ref_changed.connect(lambda ref, s=e.settings: self.chosen(s, ref))
        self.table.setCellWidget(row, 5, picker)
