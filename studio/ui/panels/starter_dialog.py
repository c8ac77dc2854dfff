"""The first-run offer of models: one tickable row per model with its full name, size,
licence (non-commercial licences marked) and what it is for, the total of what is ticked,
and only combinations that work together: a ControlNet or preview decoder is offered only
while a ticked generation model shares its base (SD-Turbo is SD 2.x: it needs the SD 2.1
ControlNets, not the SD 1.5 ones), so the SD 2.1 ControlNets are offered for SD-Turbo.

Ticked at first is the smallest set that makes every panel work (:data:`NEEDS`): a
generation model (Generate, and Inpaint's Fill from prompt, which takes any SD model), LaMa
or an inpainting model (Inpaint's Erase object), an upscaler (Upscale) and the generation
model's preview decoder (live previews); among the models that fit a need the smallest with
a licence that allows commercial use. ControlNets and the pose detector (whose licence is
non-commercial) are offered unticked: the Control panel's Canny, scribble and default
skeleton work without them, and Generate uses a guide only once its ControlNet is there.

Non-modal; ``accepted`` -> download ``entries`` (the ticked ones); ``rejected`` -> not now.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.catalog import Entry, format_size

GENERATION_KINDS = ("txt2img", "inpaint")
# What each panel needs to work, in order: the kinds that meet the need (one model of them).
NEEDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("generate", ("txt2img",)),
    ("erase", ("lama", "inpaint")),
    ("upscale", ("upscaler",)),
    ("preview", ("preview-decoder",)),
)
# What a row is for (the "For" column).
PURPOSE = {
    "txt2img": "Generate (and Fill from prompt)",
    "inpaint": "Inpaint: Fill from prompt",
    "lama": "Inpaint: Erase object",
    "upscaler": "Upscale",
    "preview-decoder": "Live previews",
    "controlnet-canny": "Control: edge guides",
    "controlnet-pose": "Control: pose guides",
    "controlnet-scribble": "Control: scribble guides",
    "controlnet-inpaint": "Control: inpaint guides",
    "pose-detector": "Control: Detect pose",
}


def is_non_commercial(license_text: str) -> bool:
    text = license_text.lower().replace("-", " ")
    return "non commercial" in text or "noncommercial" in text


def needs_base(entry: Entry) -> bool:
    """Helpers tied to one family: ControlNets and tiny preview decoders."""
    return entry.kind.startswith("controlnet") or entry.kind == "preview-decoder"


def fits(entry: Entry, generation_bases: set[str]) -> bool:
    """Whether ``entry`` works with one of the ticked generation models' bases."""
    return not needs_base(entry) or not entry.bases or bool(set(entry.bases) & generation_bases)


def default_ticks(entries: Iterable[Entry]) -> set[str]:
    """The ids ticked at first: for each of :data:`NEEDS` in turn, the smallest entry that
    meets it (a licence allowing commercial use first) and fits the generation models ticked
    so far (a preview decoder of their base)."""
    entries = list(entries)
    ticked: set[str] = set()
    bases: set[str] = set()
    for _need, kinds in NEEDS:
        fitting = [e for e in entries if e.kind in kinds and e.id not in ticked]
        if "preview-decoder" in kinds:
            fitting = [e for e in fitting if set(e.bases) & bases]
        if not fitting:
            continue
        best = min(fitting, key=lambda e: (is_non_commercial(e.license), e.size))
        ticked.add(best.id)
        if best.kind in GENERATION_KINDS:
            bases |= set(best.bases)
    return ticked


def offer(starter: list[Entry], catalog: Iterable[Entry], installed: Iterable[str] = ()) -> list:
    """The rows to offer: the starter set, plus the same kinds of helper (e.g. canny and
    pose ControlNets) for every starter generation model's base that the starter set has
    none for. [(entry, ticked)]: ticked are :func:`default_ticks` of the rows."""
    have = set(installed)
    rows = [(e, False) for e in starter]
    bases = {b for e in starter if e.kind in GENERATION_KINDS for b in e.bases}
    helper_kinds = {e.kind for e in starter if needs_base(e)}
    ids = {e.id for e in starter}
    for base in sorted(bases):
        for kind in sorted(helper_kinds):
            if any(e.kind == kind and base in e.bases for e in starter):
                continue
            for e in catalog:
                if e.kind == kind and base in e.bases and e.id not in ids and e.id not in have:
                    rows.append((e, False))
                    ids.add(e.id)
                    break
    ticked = default_ticks(e for e, _ in rows)
    return [(e, e.id in ticked) for e, _ in rows]


def base_label(name: str) -> str:
    """A catalog ``base`` as users know it: its family's label ("sd1" -> "SD 1.x")."""
    from studio.engine.diffusion.families import family  # torch-free descriptors

    try:
        return family(name).label
    except Exception:  # noqa: BLE001 - a base no family is registered for: its own name
        return name


class StarterDialog(QDialog):
    def __init__(
        self,
        entries: list[Entry],
        parent: QWidget | None = None,
        catalog: Iterable[Entry] = (),
        installed: Iterable[str] = (),
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Download models?")
        self.setModal(False)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Studio runs models on your computer. Ticked are the fewest that make every panel "
            "work: generating, erasing, upscaling and live previews. Tick more for ControlNet "
            "guides (edges, pose) and pose detection; ⚠ marks a licence that does not allow "
            "commercial use. Nothing is downloaded unless you choose Download."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTreeWidget()
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(["Model", "Size", "Licence", "For"])
        self.items: dict[str, tuple[QTreeWidgetItem, Entry]] = {}
        for entry, ticked in offer(entries, catalog, installed):
            licence = entry.license
            if is_non_commercial(licence):
                licence = f"⚠ non-commercial: {licence}"
            purpose = PURPOSE.get(entry.kind, "")
            item = QTreeWidgetItem(
                self.table, [entry.name, format_size(entry.size), licence, purpose]
            )
            item.setToolTip(0, f"{entry.name} ({entry.id}) — {entry.description}".rstrip(" —"))
            item.setToolTip(2, entry.license)
            if is_non_commercial(entry.license):
                item.setForeground(2, QBrush(QColor("#d9822b")))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.items[entry.id] = (item, entry)
        header = self.table.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(2, 220)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        self.table.itemChanged.connect(self._on_item_changed)
        layout.addWidget(self.table)
        self.total_label = QLabel()
        layout.addWidget(self.total_label)
        buttons = QDialogButtonBox()
        self.download_button = buttons.addButton("Download", QDialogButtonBox.ButtonRole.AcceptRole)
        self.later_button = buttons.addButton("Not now", QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._update()
        self.resize(860, 440)

    @property
    def entries(self) -> list[Entry]:
        """The ticked models that fit together (what Download fetches)."""
        return [
            e
            for item, e in self.items.values()
            if item.checkState(0) == Qt.CheckState.Checked and not item.isDisabled()
        ]

    def set_ticked(self, model_id: str, ticked: bool) -> None:
        item, _ = self.items[model_id]
        item.setCheckState(0, Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)

    def is_offered(self, model_id: str) -> bool:
        """Ticked or tickable now (a helper whose family has no ticked model is not)."""
        return not self.items[model_id][0].isDisabled()

    @Slot(QTreeWidgetItem, int)
    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0:
            self._update()

    def _update(self) -> None:
        ticked = [
            e for item, e in self.items.values() if item.checkState(0) == Qt.CheckState.Checked
        ]
        bases = {b for e in ticked if e.kind in GENERATION_KINDS for b in e.bases}
        self.table.blockSignals(True)
        for item, e in self.items.values():
            ok = fits(e, bases)
            item.setDisabled(not ok)
            if not ok:
                need = " or ".join(base_label(b) for b in e.bases)
                item.setToolTip(0, f"Works only with a {need} model: tick one to get this")
        self.table.blockSignals(False)
        entries = self.entries
        self.total_label.setText(
            f"Total download: {format_size(sum(e.size for e in entries))} ({len(entries)} models)"
        )
        self.download_button.setEnabled(bool(entries))
