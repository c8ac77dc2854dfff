"""The Generate panel: model, prompt, sampling settings, the Generate/queue button with
progress and ETA, the job queue (each job cancellable) and a history strip of results.

txt2img, img2img (the composite inside the generation region as init image) and SD inpainting
(plus the mask) all go through one ``GenerateRequest``. Results land as new layers at the
generation region (one undo step each) and in the document's history.

The "Advanced" group (collapsed until used) holds the LoRAs (add from the installed ones,
weight, remove; pasted A1111 parameters fill it from their ``<lora:name:w>`` tags), the
external VAE, clip skip, the weights' precision and, for the flow families (FLUX.1, FLUX.2,
Z-Image, SD 3.5, Qwen-Image), the memory plan's overrides: Weights (bf16, fp8, GGUF, NF4)
and Offload (none, model, group, sequential), "Auto" letting the planner decide.

The model picker is a list, never a text field (single-key tools typed into the old one):
each row names its model (a catalog name, or the folder a ``diffusion_pytorch_model``
file came from) and its family, then what a model not installed downloads; the Find
button (Find…) narrows the rows as you type and takes a Hugging Face repo id, catalog id or
path the list lacks. After a choice the keys go back to the canvas. With Match region on,
the Size fields show what the job runs at: the selection's sides snapped to the model
family's ``size_multiple`` (8 for SD, 16 for SD 3.5, Z-Image, FLUX, Qwen-Image). Progress
for several images says which one and its own step ("image 1 of 4, step 84/150").

Under the model, one line shows the memory plan for the chosen model at the current size on
the device the engine probed at start-up ("Plan: model offload, fp8, 10.2 GiB of 11.2 GiB,
fits"; "CPU: ..." without a GPU); its tooltip gives the reasons and the diffusers calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QIcon, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.catalog import format_size
from studio.engine.jobs import PREVIEW_MODES, GenerateRequest
from studio.ui.panels.fit import VScrollArea
from studio.ui.panels.generate_model import (
    DTYPES,
    MAX_SEED,
    GenerateModel,
    lora_name,
    resize,
)
from studio.ui.panels.generate_plan import PLAN_NAMES, fill_offload_combo, fill_quant_combo
from studio.ui.panels.staging import Staged, StagingBar
from studio.ui.properties import bind
from studio.ui.qimage import qimage_from_array

SOURCES = (
    ("txt2img", "Text only (txt2img)"),
    ("img2img", "Image → image (img2img)"),
    ("inpaint", "Inpaint the mask"),
)
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
            from studio.engine.diffusion.defaults import model_family  # torch-free

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


class GeneratePanel(QWidget):
    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.settings = host.settings
        self.state = GenerateModel(self.settings, self)  # what the widgets show and edit
        self.state.set_device(getattr(host.worker, "device_info", None))
        self.plan_label = QLabel()
        self.plan_label.setObjectName("memory-plan")
        self.plan_label.setWordWrap(True)
        self.plan_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._plan_timer = QTimer(self)  # settings changing: look the plan up once they pause
        self._plan_timer.setSingleShot(True)
        self._plan_timer.setInterval(150)
        self._plan_timer.timeout.connect(self._show_plan)
        self.last_seed: int | None = None
        self._steps: dict[int, tuple[int, int, int]] = {}  # job -> (step, image base, batch)
        self.previews_received = 0
        self.results_received = 0

        self.model_combo = PickerCombo()  # a list, not a text field: tool keys stay tools
        self.model_combo.setObjectName("model-picker")
        self.model_combo.setToolTip(
            "The model (family after the name). Find… narrows the list by typing, or takes "
            "a Hugging Face repo id, a catalog id, a folder or a file"
        )
        self.model_search: ModelSearch | None = None
        self.recommended = catalog_models()
        self.picker: list[PickerItem] = []
        self.download_button = QToolButton()
        self.download_button.setObjectName("download")
        self.download_button.setToolTip("Download the picked model (Models panel shows progress)")
        self.download_button.clicked.connect(self.download_model)
        self.fill_models()
        self.model_combo.activated.connect(self._model_activated)
        self.model_combo.chosen.connect(self._model_chosen)
        self.state.changed.connect(self._on_state_changed)
        self.find_model_button = QToolButton()
        self.find_model_button.setObjectName("find-model")
        self.find_model_button.setText("Find…")
        self.find_model_button.setToolTip(
            "Find a model by name or family, or enter a Hugging Face repo id, a catalog id or "
            "a path"
        )
        self.find_model_button.clicked.connect(self.open_model_search)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a local model folder")
        browse.clicked.connect(self.browse_model)

        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Prompt: what to make")
        self.prompt.setFixedHeight(64)
        self.paste_params = QToolButton()
        self.paste_params.setObjectName("paste-parameters")
        self.paste_params.setText("Paste parameters")
        self.paste_params.setToolTip(
            "Load AUTOMATIC1111 / Studio generation parameters from the clipboard (prompt, "
            "<lora:name:weight> tags into the LoRA list, steps, sampler, seed, size, clip skip)"
        )
        self.paste_params.clicked.connect(self.paste_clipboard_parameters)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("Negative prompt: what to avoid")
        self.negative.setFixedHeight(40)

        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        # QSpinBox stops at 2**31 - 1, but A1111/CLI seeds go to 2**32 - 1 and beyond.
        self.seed = QDoubleSpinBox()
        self.seed.setDecimals(0)
        self.seed.setRange(0, MAX_SEED)
        self.random_seed = QCheckBox("Random")
        self.random_seed.setChecked(True)
        self.reuse_seed = QToolButton()
        self.reuse_seed.setText("♻")
        self.reuse_seed.setToolTip("Reuse the last seed")
        self.reuse_seed.clicked.connect(self.reuse_last_seed)
        self.width_spin = QSpinBox()
        self.height_spin = QSpinBox()
        for s in (self.width_spin, self.height_spin):
            s.setRange(64, 2048)
            s.setSingleStep(8)
        self.match_region = QCheckBox("Match region")
        self.match_region.setChecked(True)
        self.match_region.setToolTip(
            "Generate at the size of the selection (or the image); results are placed there"
        )
        self.match_region.toggled.connect(self._sync_size_enabled)
        self.count = QSpinBox()
        self.count.setRange(1, 8)
        self.scheduler = QComboBox()
        self.scheduler.addItem("Default", "")
        for name in scheduler_names():
            self.scheduler.addItem(name, name)
        self.source = QComboBox()
        for key, text in SOURCES:
            self.source.addItem(text, key)
        self.source.currentIndexChanged.connect(self._sync_strength_enabled)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.01, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.preview_mode = QComboBox()
        for m in PREVIEW_MODES:
            self.preview_mode.addItem(m, m)
        self._build_advanced()
        for name, widget in (
            ("prompt", self.prompt),
            ("negative_prompt", self.negative),
            ("steps", self.steps),
            ("guidance", self.guidance),
            ("seed", self.seed),
            ("random_seed", self.random_seed),
            ("width", self.width_spin),
            ("height", self.height_spin),
            ("match_region", self.match_region),
            ("count", self.count),
            ("strength", self.strength),
            ("clip_skip", self.clip_skip),
        ):
            bind(self.state, name, widget)
        for name, combo in (
            ("scheduler", self.scheduler),
            ("source", self.source),
            ("preview", self.preview_mode),
            ("vae", self.vae_combo),
            ("dtype", self.dtype_combo),
            ("quant", self.quant_combo),
            ("offload", self.offload_combo),
        ):
            bind(self.state, name, combo, data=True)
        self.seed.setEnabled(not self.state.random_seed)
        self.random_seed.toggled.connect(self._sync_seed_enabled)
        self._show_model()
        if not (self.settings and self.settings.model):
            self.apply_recommended(self.state.model)  # first run

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("primary")
        self.generate_button.setToolTip("Generate (Ctrl+Enter); while a job runs, queue another")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("danger")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.clicked.connect(self.cancel_current)
        self.cancel_button.setEnabled(False)
        self.staging = StagingBar(host, self)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Ready")
        self.progress.setTextVisible(True)

        self.queue_list = QListWidget()
        self.queue_list.setObjectName("queue")
        self.queue_list.setFixedHeight(64)
        self.queue_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

        self.history = QListWidget()
        self.history.setObjectName("history")
        self.history.setViewMode(QListWidget.ViewMode.IconMode)
        self.history.setFlow(QListWidget.Flow.LeftToRight)
        self.history.setWrapping(False)
        self.history.setIconSize(QSize(64, 64))
        self.history.setFixedHeight(86)
        self.history.setMovement(QListWidget.Movement.Static)
        self.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.history.setToolTip("Double-click: use these parameters. Right-click: more")
        self.history.itemDoubleClicked.connect(self._history_apply)
        self.history.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.history.customContextMenuRequested.connect(self._history_menu)

        # -- layout --
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.find_model_button)
        model_row.addWidget(browse)
        form.addRow("Model", model_row)
        form.addRow("", self.download_button)
        form.addRow("Memory", self.plan_label)
        form.addRow("", self.paste_params)
        form.addRow("Source", self.source)
        form.addRow("Strength", self.strength)
        settings_box = QGroupBox("Sampling")
        sf = QFormLayout(settings_box)
        sf.addRow("Steps", self.steps)
        sf.addRow("Guidance", self.guidance)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        seed_row.addWidget(self.reuse_seed)
        sf.addRow("Seed", seed_row)
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_spin)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_spin)
        sf.addRow("Size", size_row)
        sf.addRow("", self.match_region)
        sf.addRow("Sampler", self.scheduler)
        sf.addRow("Images", self.count)
        sf.addRow("Preview", self.preview_mode)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)

        inner = QWidget()
        v = QVBoxLayout(inner)
        v.setContentsMargins(6, 6, 6, 6)
        v.addLayout(form)
        v.addWidget(self.prompt)
        v.addWidget(self.negative)
        v.addWidget(settings_box)
        v.addWidget(self.advanced_toggle)
        v.addWidget(self.advanced)
        v.addStretch(1)
        scroll = VScrollArea(inner)
        # Long model names and 16-digit seeds must not widen the dock: combos elide, the
        # seed box scrolls its digits.
        for combo in (
            self.model_combo,
            self.source,
            self.scheduler,
            self.preview_mode,
            self.vae_combo,
            self.lora_combo,
            self.dtype_combo,
            self.quant_combo,
            self.offload_combo,
        ):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(10)
        self.seed.setMinimumWidth(96)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 4)
        outer.addWidget(scroll, 1)
        bottom = QVBoxLayout()
        bottom.setContentsMargins(6, 0, 6, 0)
        bottom.addLayout(buttons)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.staging)
        self.queue_label = QLabel("Queue")
        self.queue_label.setObjectName("hint")
        bottom.addWidget(self.queue_label)
        bottom.addWidget(self.queue_list)
        hl = QLabel("History")
        hl.setObjectName("hint")
        bottom.addWidget(hl)
        bottom.addWidget(self.history)
        outer.addLayout(bottom)

        shortcut = QShortcut(QKeySequence("Ctrl+Return"), self)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(self.generate)
        shortcut2 = QShortcut(QKeySequence("Ctrl+Enter"), self)
        shortcut2.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut2.activated.connect(self.generate)

        w = host.worker
        w.started.connect(self._on_started)
        w.progress.connect(self._on_progress)
        w.preview.connect(self._on_preview)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        w.queue_changed.connect(self._refresh_queue)
        if hasattr(w, "device_changed"):
            w.device_changed.connect(self._on_device)
        model = host.model
        model.history_changed.connect(self._refresh_history)
        model.selection_changed.connect(self._sync_size)
        model.document_replaced.connect(self._sync_size)
        model.document_replaced.connect(self.staging.on_document_replaced)
        host.models_updated.connect(self.fill_models)  # downloaded or imported: at once
        host.models_updated.connect(self.state.forget_models)
        self._sync_strength_enabled()
        self._sync_size_enabled()
        self._refresh_queue()
        self._show_plan()

    # -- helpers ---------------------------------------------------------------------------
    @Slot(bool)
    def _sync_seed_enabled(self, random_seed: bool) -> None:
        self.seed.setEnabled(not random_seed)

    def _sync_strength_enabled(self) -> None:
        self.strength.setEnabled(self.source.currentData() != "txt2img")

    def _doc_empty(self) -> bool:
        return self.host.image_size() == (0, 0)

    def _sync_size_enabled(self) -> None:
        match = self.match_region.isChecked() and not self._doc_empty()
        self.width_spin.setEnabled(not match)
        self.height_spin.setEnabled(not match)
        self._sync_size()

    @Slot()
    def _sync_size(self) -> None:
        """With Match region on, the Size fields show what the next job uses for the current
        selection (or the image) and model: its sides snapped to the model family's size
        multiple. Called when the selection, the document or the model changes."""
        if not self._doc_empty():
            self.state.match(self.host.selection_rect())
        self.width_spin.setEnabled(not (self.match_region.isChecked() and not self._doc_empty()))
        self.height_spin.setEnabled(self.width_spin.isEnabled())

    # -- the model picker ------------------------------------------------------------------
    @Slot()
    def fill_models(self) -> None:
        """(Re)list the models: installed first, the rest marked "download". The first run,
        or a remembered model that is no longer there, picks the first installed one."""
        recent = list(self.settings.recent_models) if self.settings else []
        self.picker = model_choices(recent)
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        for item in self.picker:
            self._add_row(item)
        combo.blockSignals(False)
        installed = [i for i in self.picker if i.installed]
        current = self._item(self.state.model)
        if installed and (not self.state.model or (current is not None and not current.installed)):
            self.state.model = installed[0].ref
        elif not self.state.model and self.picker:
            self.state.model = self.picker[0].ref  # nothing installed: the Download offer
        self._show_model()

    def _add_row(self, item: PickerItem) -> None:
        combo = self.model_combo
        combo.addItem(item.label, item.ref)
        combo.setItemData(combo.count() - 1, item.tip or item.ref, Qt.ItemDataRole.ToolTipRole)

    def _item(self, ref: str) -> PickerItem | None:
        return next((i for i in self.picker if i.ref == ref), None)

    def _show_model(self) -> None:
        """The combo and the Download button show ``state.model``; a reference the list
        lacks (pasted parameters, Browse, Find) gets a row of its own at the end."""
        combo, ref = self.model_combo, self.state.model
        combo.blockSignals(True)
        listed = {i.ref for i in self.picker}
        for i in reversed(range(combo.count())):  # the previous such row
            if combo.itemData(i) not in listed and combo.itemData(i) != ref:
                combo.removeItem(i)
        i = combo.findData(ref)
        if i < 0 and ref:
            name, fam = display_name(ref), family_label(None, ref)
            self._add_row(PickerItem(ref, picker_label(name, fam), True, 0, name, fam, ref))
            i = combo.count() - 1
        combo.setCurrentIndex(i)
        combo.blockSignals(False)
        item = self._item(ref)
        missing = item is not None and not item.installed
        self.download_button.setVisible(missing)
        if missing:
            self.download_button.setText(
                f"⤓ Download {item.name or item.ref} ({format_size(item.size)})"
            )

    def _return_focus(self) -> None:
        """After a model is chosen the keys go back to the canvas (the window's, when the
        host has one), so B/E/M pick tools again instead of searching the list."""
        canvas = getattr(self.host, "canvas", None)
        if not isinstance(canvas, QWidget):
            window = self.window()
            central = getattr(window, "centralWidget", None)
            canvas = central() if callable(central) else None
        if isinstance(canvas, QWidget) and canvas.isVisible():
            canvas.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.model_combo.clearFocus()

    @Slot(str, object)
    def _on_state_changed(self, name: str, value: object) -> None:
        if name == "model":
            self._show_model()
            self._sync_size()  # the family's size multiple
        elif name == "loras":
            self._show_loras()
        if name in PLAN_NAMES:
            self._plan_timer.start()

    @Slot(object)
    def _on_device(self, info: object) -> None:
        self.state.set_device(info if isinstance(info, dict) else None)

    @Slot()
    def _show_plan(self) -> None:
        """The plan line, and the Weights/Offload rows only where they apply (flow models)."""
        self._plan_timer.stop()
        text, tip = self.state.plan_text()
        self.plan_label.setText(text)
        self.plan_label.setToolTip(tip)
        self.plan_label.setProperty("fits", "does NOT fit" not in text)
        flow = self.state.is_flow()
        self.advanced_form.setRowVisible(self.quant_combo, flow)
        self.advanced_form.setRowVisible(self.offload_combo, flow)
        # The flow families sample with their own flow-matching Euler scheduler.
        self.scheduler.setEnabled(not flow)
        self.scheduler.setToolTip(
            "This model samples with its own flow-matching Euler scheduler"
            if flow
            else "The sampler (A1111 and ComfyUI names are accepted in pasted parameters)"
        )
        self._label_advanced()

    @Slot(int)
    def _model_activated(self, index: int) -> None:
        """The user picked a row (mouse or keyboard): its model, its recommended settings,
        and the keys back to the canvas."""
        ref = self.model_combo.itemData(index)
        if ref:
            self.state.model = ref
            self.apply_recommended(ref)
        self._return_focus()

    @Slot(str)
    def _model_chosen(self, ref: str) -> None:
        """A reference set through the picker's ``setCurrentText`` (code, tests): the model
        only, as typing it used to (no recommended settings)."""
        if ref != self.state.model:
            self.state.model = ref
        else:
            self._show_model()

    @Slot()
    def open_model_search(self) -> ModelSearch:
        """The Find dialog (window-modal, not blocking): type to narrow the rows, Enter picks
        the highlighted one or takes the typed text as a reference."""
        if self.model_search is not None:
            self.model_search.close()
        items = list(self.picker)
        current = self._item(self.state.model)
        if current is None and self.state.model:
            i = self.model_combo.findData(self.state.model)
            label = self.model_combo.itemText(i) if i >= 0 else self.state.model
            items.append(PickerItem(self.state.model, label, True, tip=self.state.model))
        dialog = self.model_search = ModelSearch(items, self)
        dialog.picked.connect(self._model_searched)
        dialog.finished.connect(lambda _result: self._return_focus())
        dialog.open()
        dialog.query.setFocus()
        return dialog

    @Slot(str)
    def _model_searched(self, ref: str) -> None:
        self.state.model = ref
        self.apply_recommended(ref)

    @Slot()
    def download_model(self) -> None:
        """One click: the Models panel downloads the picked catalog model."""
        item = self._item(self.state.model)
        models = self.host.panels.get("Models")
        if item is None or item.installed or models is None:
            return
        entry = next((e for e in models.catalog if e.id == item.ref), None)
        if entry is not None:
            models.download([entry])
            self.host.show_status(f"Downloading {entry.name} ({format_size(entry.size)})…")

    def _schedulers(self) -> list[str]:
        return [self.scheduler.itemData(i) for i in range(self.scheduler.count())]

    @Slot(str)
    def apply_recommended(self, model: str) -> None:
        """Use the catalog's recommended steps, guidance and sampler for ``model`` (e.g. 1
        step and guidance 0 for the Turbo models)."""
        rec = family_defaults(model) or self.recommended.get(model) or {}
        self.state.apply_recommended(rec, self._schedulers())
        self._sync_size()  # Match region: the region's size, not the model's native one

    @Slot()
    def browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder")
        if folder:
            self.state.model = folder
            self.apply_recommended(folder)
        self._return_focus()

    @Slot()
    def reuse_last_seed(self) -> None:
        if self.last_seed is not None:
            self.state.random_seed = False
            self.state.seed = min(int(self.last_seed), MAX_SEED)

    def apply_parameters(self, meta: dict) -> list[str]:
        """Fill the form from a metadata dict (``GenerateModel.apply_parameters``); a sampler
        the list lacks but Studio can build ("DPM++ 2M SDE Exponential", a ComfyUI pair) is
        added to the list first, so the combo shows it. Returns the notes on what was not
        taken."""
        name, _note = self.state.pasted_sampler(meta)
        if name is not None and self.scheduler.findData(name) < 0:
            self.scheduler.addItem(name, name)
        return self.state.apply_parameters(meta, self._schedulers())

    # -- advanced: LoRAs, VAE, clip skip, precision -----------------------------------------
    def _build_advanced(self) -> None:
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setObjectName("advanced-toggle")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setToolTip(
            "LoRAs, external VAE, clip skip, precision; for FLUX, Z-Image, SD 3.5 and Qwen "
            "models the memory plan's weights and offload"
        )
        self.advanced_toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.advanced_toggle.toggled.connect(self._show_advanced)
        self.advanced = QGroupBox()
        self.advanced.setObjectName("advanced")
        af = self.advanced_form = QFormLayout(self.advanced)
        af.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.lora_combo = QComboBox()
        self.lora_combo.setToolTip("Installed LoRAs (the models' loras folder and imports)")
        self.lora_add = QToolButton()
        self.lora_add.setText("Add")
        self.lora_add.setObjectName("lora-add")
        self.lora_add.setToolTip("Add the chosen LoRA at weight 1")
        self.lora_add.clicked.connect(self.add_lora)
        add_row = QHBoxLayout()
        add_row.addWidget(self.lora_combo, 1)
        add_row.addWidget(self.lora_add)
        af.addRow("LoRA", add_row)
        self.lora_rows = QVBoxLayout()
        self.lora_rows.setContentsMargins(0, 0, 0, 0)
        self.lora_rows.setSpacing(2)
        self.lora_widgets: list[tuple[QLabel, QDoubleSpinBox, QToolButton, QWidget]] = []
        rows = QWidget()
        rows.setLayout(self.lora_rows)
        af.addRow(rows)
        self.vae_combo = QComboBox()
        self.vae_combo.setToolTip("External VAE for this job; Model's own: the one it ships")
        self.clip_skip = QSpinBox()
        self.clip_skip.setRange(1, 12)
        self.clip_skip.setToolTip("A1111's Clip skip: 2 uses the text encoder's next-to-last layer")
        self.dtype_combo = QComboBox()
        for d in DTYPES:
            self.dtype_combo.addItem(d or "Auto", d)
        self.dtype_combo.setToolTip(
            "Weights' precision; Auto: float16 on GPUs that have it, bfloat16 where float16 "
            "is unsupported, float32 on the CPU"
        )
        self.quant_combo = QComboBox()
        self.quant_combo.setObjectName("quant")
        fill_quant_combo(self.quant_combo)
        self.offload_combo = QComboBox()
        self.offload_combo.setObjectName("offload")
        fill_offload_combo(self.offload_combo)
        af.addRow("VAE", self.vae_combo)
        af.addRow("Clip skip", self.clip_skip)
        af.addRow("Precision", self.dtype_combo)
        af.addRow("Weights", self.quant_combo)
        af.addRow("Offload", self.offload_combo)
        self.fill_extras()
        self.host.models_updated.connect(self.fill_extras)
        self._show_loras()
        self._show_advanced(
            bool(self.state.loras) or bool(self.state.vae) or any(self.state.overrides())
        )

    @Slot(bool)
    def _show_advanced(self, shown: bool) -> None:
        self.advanced_toggle.blockSignals(True)
        self.advanced_toggle.setChecked(shown)
        self.advanced_toggle.blockSignals(False)
        self.advanced_toggle.setArrowType(
            Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        )
        self._label_advanced()
        self.advanced.setVisible(shown)

    def _label_advanced(self) -> None:
        n = len(self.state.loras)
        extra = f" · {n} LoRA" + ("s" if n != 1 else "") if n else ""
        quant, offload = self.state.overrides()
        forced = [x for x in (quant, offload and f"{offload} offload") if x]
        extra += f" · {', '.join(forced)}" if forced else ""
        memory = ", memory" if self.state.is_flow() else ""
        self.advanced_toggle.setText(f"Advanced: LoRA, VAE, clip skip{memory}{extra}")

    @Slot()
    def fill_extras(self) -> None:
        """(Re)list the installed LoRAs and VAEs (read from disk each time)."""
        combo = self.lora_combo
        combo.clear()
        for label, path in installed_choices("lora"):
            combo.addItem(label, path)
        if not combo.count():
            combo.addItem("No LoRAs installed (import in Models)", "")
        self.lora_add.setEnabled(bool(combo.currentData()))
        vae = self.vae_combo
        vae.blockSignals(True)
        vae.clear()
        vae.addItem("Model's own", "")
        for label, path in installed_choices("vae"):
            vae.addItem(label, path)
        if self.state.vae and vae.findData(self.state.vae) < 0:
            vae.addItem(lora_name(self.state.vae) + " (not found)", self.state.vae)
        vae.setCurrentIndex(max(0, vae.findData(self.state.vae)))
        vae.blockSignals(False)

    def showEvent(self, event) -> None:  # noqa: N802 - re-read the folders when shown
        self.fill_extras()
        super().showEvent(event)

    @Slot()
    def add_lora(self) -> None:
        path = self.lora_combo.currentData()
        if path:
            self.state.add_lora(path, 1.0)

    def _show_loras(self) -> None:
        """One row per LoRA: its name, a weight spin box, a remove button. Rows are rebuilt
        only when the list's files change, so editing a weight keeps its spin box."""
        rows = self.state.loras
        if [w[0].property("ref") for w in self.lora_widgets] != [r for r, _ in rows]:
            for *_, row in self.lora_widgets:
                row.setParent(None)
                row.deleteLater()
            self.lora_widgets = []
            for i, (ref, _weight) in enumerate(rows):
                row = QWidget()
                h = QHBoxLayout(row)
                h.setContentsMargins(0, 0, 0, 0)
                label = QLabel(lora_name(ref))
                label.setProperty("ref", ref)
                label.setToolTip(ref)
                label.setMinimumWidth(40)
                label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
                spin = QDoubleSpinBox()
                spin.setObjectName("lora-weight")
                spin.setRange(-4.0, 4.0)
                spin.setSingleStep(0.05)
                spin.setDecimals(2)
                spin.setToolTip("LoRA weight (A1111's <lora:name:weight>)")
                spin.setProperty("index", i)
                spin.valueChanged.connect(self._lora_weight_changed)
                remove = QToolButton()
                remove.setText("✕")
                remove.setObjectName("lora-remove")
                remove.setToolTip("Remove this LoRA")
                remove.setProperty("index", i)
                remove.clicked.connect(self._lora_remove_clicked)
                h.addWidget(label, 1)
                h.addWidget(spin)
                h.addWidget(remove)
                self.lora_rows.addWidget(row)
                self.lora_widgets.append((label, spin, remove, row))
        for (_label, spin, _remove, _row), (_ref, weight) in zip(
            self.lora_widgets, rows, strict=True
        ):
            if spin.value() != weight:
                spin.blockSignals(True)
                spin.setValue(weight)
                spin.blockSignals(False)
        if rows and not self.advanced_toggle.isChecked():
            self._show_advanced(True)
        self._label_advanced()

    @Slot(float)
    def _lora_weight_changed(self, value: float) -> None:
        self.state.set_lora_weight(int(self.sender().property("index")), value)

    @Slot()
    def _lora_remove_clicked(self) -> None:
        self.state.remove_lora(int(self.sender().property("index")))

    @Slot()
    def paste_clipboard_parameters(self) -> None:
        self.paste_parameters()

    def paste_parameters(self, text: str | None = None) -> bool:
        """Fill the form from A1111 parameters text (the clipboard's when ``text`` is None):
        what A1111 shows under an image, or a PNG's ``parameters`` chunk."""
        from studio.core.metadata import parse_parameters

        if text is None:
            from PySide6.QtGui import QGuiApplication

            text = QGuiApplication.clipboard().text()
        meta = parse_parameters(text or "")
        if not (meta.get("prompt") or meta.get("loras") or "steps" in meta):
            self.host.show_status("The clipboard holds no generation parameters")
            return False
        notes = self.apply_parameters(meta)
        n = len(meta.get("loras") or ())
        status = "Parameters loaded" + (f" with {n} LoRA(s)" if n else "")
        self.host.show_status("; ".join([status, *notes]))
        return True

    # -- generate --------------------------------------------------------------------------
    def build_request(self) -> tuple[GenerateRequest, tuple[int, int, int, int]]:
        """The request for the panel's state and the document, and the region its output
        fills (``GenerateModel.request``). Raises ValueError with a user-facing message."""
        if self._doc_empty():
            return self.state.request(None)
        region = self.host.selection_rect()
        self.state.match(region)
        size = (self.state.width, self.state.height)
        return self.state.request(
            region,
            self.host.composite() if self.state.source != "txt2img" else None,
            self.host.mask() if self.state.source == "inpaint" else None,
            self._controls(region, size),
        )

    def _controls(self, region, size) -> tuple:
        """The enabled ControlNet guides of the Control panel, cropped to the region."""
        try:
            from studio.ui.panels.control import control_inputs
        except ModuleNotFoundError as e:
            if e.name != "studio.ui.panels.control":
                raise
            return ()
        return tuple(control_inputs(self.host, region, size))

    @Slot()
    def generate(self) -> int | None:
        """Submit a job (queued behind a running one). Returns its id, or None."""
        item = self._item(self.state.model)
        if item is not None and not item.installed:
            self.host.show_error(
                f"{item.name or item.ref} is not installed yet: press "
                f"“Download” under the model ({format_size(item.size)}), or pick an "
                "installed model."
            )
            return None
        try:
            request, region = self.build_request()
        except ValueError as e:
            self.host.show_error(str(e))
            return None
        self.last_seed = request.seed
        self.state.remember_model()
        label = f"“{request.prompt[:28] or '(no prompt)'}” {request.width}×{request.height}"
        if request.controls:
            label += f" + {len(request.controls)} control"
        job_id = self.host.worker.submit(request, region=region, label=label, owner=self)
        self._refresh_queue()
        return job_id

    @Slot()
    def cancel_current(self) -> None:
        self.host.worker.cancel(None)

    # -- worker events ---------------------------------------------------------------------
    def _job(self, job_id: int):
        """The worker's job if this panel submitted it (the worker's Job is the ledger)."""
        job = self.host.worker.job(job_id)
        return job if job is not None and job.owner is self else None

    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        if self._job(job_id):
            self.progress.setRange(0, 0)  # busy until the first step (model loading)
            self.progress.setFormat("Loading model…")
        self._refresh_queue()

    @Slot(int, "qint64", "qint64")
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        job = self._job(job_id)
        if job is None or total <= 0:
            return
        self.progress.setRange(0, total)
        self.progress.setValue(step)
        eta = job.eta()
        text = self._step_text(job_id, step, total, int(getattr(job.request, "count", 1) or 1))
        if eta is not None:
            text += f" · {eta:.0f}s left" if eta >= 1 else " · <1s left"
        self.progress.setFormat(text)

    def _step_text(self, job_id: int, step: int, total: int, count: int) -> str:
        """ "Step 84/150" for one image; for several, which image and its own step: "image 1 of
        4, step 84/150" (the engine counts steps over all images: 84/600). Images the SD
        path denoises as one batch advance together (each callback adds the batch size), so
        they read "images 1–4 of 4, step 21/150"."""
        if count <= 1 or total % count:
            return f"Step {step}/{total}"
        per = total // count
        prev, base, batch = self._steps.get(job_id, (0, 0, 0))  # batch 0: not known yet
        if step < prev:  # an out-of-memory retry went back to the last finished image
            base, batch = step - step % per, 0
        elif step > prev and (not batch or prev >= base + per * batch):  # a new image/batch
            base = prev if batch else base
            batch = max(1, min(step - base, count - base // per))
        self._steps = {job_id: (step, base, batch)}  # one running job per panel
        batch = batch or 1
        first = base // per + 1
        within = min(per, max(0, (step - base) // batch))
        if step >= total:
            first, within, batch = count - batch + 1, per, batch
        images = f"image {first}" if batch == 1 else f"images {first}–{first + batch - 1}"
        return f"{images} of {count}, step {within}/{per}"

    @Slot(int, QImage, object)
    def _on_preview(self, job_id: int, image: QImage, region: object) -> None:
        if self._job(job_id):
            self.previews_received += 1

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        job = self._job(job_id)
        if job is None:
            return  # another panel's job: this panel's progress is not about it
        self._reset_progress("Done")
        x, y, w, h = job.region
        request = job.request
        images = list(getattr(event, "images", ()))
        metas = list(getattr(event, "metadata", ()))
        model = self.host.model
        staged: list[Staged] = []
        for i, image in enumerate(images):
            meta = dict(metas[i]) if i < len(metas) else {}
            seed = meta.get("seed", request.seed + i)
            meta.setdefault("seed", seed)
            meta.setdefault("prompt", request.prompt)
            meta.setdefault("model", request.model)
            placed = image if self._doc_empty() else resize(image, (w, h))
            name = f"#{seed} {request.prompt[:24] or 'generated'}".strip()
            staged.append(Staged(placed, name, (x, y), meta))
            model.add_history(image, meta)
            self.last_seed = int(seed) if isinstance(seed, int) else self.last_seed
            self.results_received += 1
        self.staging.add(staged)  # shown in place: Accept makes a layer

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, message: str, detail: str) -> None:
        if self._job(job_id):
            self._reset_progress("Failed")

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        if self._job(job_id):
            self._reset_progress("Cancelled")

    def _reset_progress(self, text: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat(text)

    # -- queue -----------------------------------------------------------------------------
    @Slot()
    def _refresh_queue(self) -> None:
        worker = self.host.worker
        jobs = worker.jobs("compute")  # not the model-file jobs (downloads, scans)
        busy = worker.running_in("compute") is not None
        self.generate_button.setText(f"Queue ({len(jobs)})" if busy else "Generate")
        self.cancel_button.setEnabled(busy)
        self.queue_list.clear()
        for job in jobs:
            item = QListWidgetItem()
            row = QWidget()
            h = QHBoxLayout(row)
            h.setContentsMargins(4, 0, 2, 0)
            state = "▶" if job.state == "running" else "…"
            label = QLabel(f"{state} #{job.job_id} {job.label}")
            label.setToolTip(job.label)
            x = QToolButton()
            x.setText("✕")
            x.setToolTip("Cancel this job")
            x.setProperty("job_id", job.job_id)
            x.clicked.connect(self._cancel_clicked)
            h.addWidget(label, 1)
            h.addWidget(x)
            item.setSizeHint(row.sizeHint())
            self.queue_list.addItem(item)
            self.queue_list.setItemWidget(item, row)
        self.queue_label.setText(f"Queue ({len(jobs)})" if jobs else "Queue: empty")
        self.queue_list.setVisible(bool(jobs))  # room for the form while nothing waits

    @Slot()
    def _cancel_clicked(self) -> None:
        self.host.worker.cancel(self.sender().property("job_id"))

    # -- history ---------------------------------------------------------------------------
    @Slot()
    def _refresh_history(self) -> None:
        model = self.host.model
        self.history.clear()
        for entry in reversed(model.doc.history):
            thumb = qimage_from_array(entry.image).scaled(
                64,
                64,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            item = QListWidgetItem(QIcon(QPixmap.fromImage(thumb)), "")
            p = entry.parameters
            item.setToolTip(
                f"{p.get('prompt', '')}\nseed {p.get('seed', '?')}, {p.get('steps', '?')} steps, "
                f"guidance {p.get('cfg_scale', '?')}, {p.get('model', '')}"
            )
            item.setData(Qt.ItemDataRole.UserRole, entry.uid)
            self.history.addItem(item)

    def _entry(self, item: QListWidgetItem):
        uid = item.data(Qt.ItemDataRole.UserRole)
        for e in self.host.model.doc.history:
            if e.uid == uid:
                return e
        return None

    @Slot(QListWidgetItem)
    def _history_apply(self, item: QListWidgetItem) -> None:
        entry = self._entry(item)
        if entry is not None:
            self.apply_parameters(entry.parameters)

    @Slot()
    def _history_menu(self, pos) -> None:
        item = self.history.itemAt(pos)
        if item is None:
            return
        entry = self._entry(item)
        if entry is None:
            return
        menu = QMenu(self)
        use = menu.addAction("Use these parameters")
        add = menu.addAction("Add as layer")
        chosen = menu.exec(self.history.viewport().mapToGlobal(pos))
        if chosen is use:
            self.apply_parameters(entry.parameters)
        elif chosen is add:
            self.host.add_layer(entry.image, f"#{entry.parameters.get('seed', '')} (history)")
