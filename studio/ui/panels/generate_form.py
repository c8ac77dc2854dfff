"""The Generate panel's widgets and their layout, apart from what the panel does with them.

Each function builds one part on the panel (``GeneratePanel``), naming every widget as a
panel attribute (their objectNames, tooltips and shortcuts are what GUI tests and the
screenshots find), and connects its clicks to the panel's slots; ``bind_fields`` binds the
fields to the panel's ``GenerateModel`` (``studio.ui.properties.bind``). The panel calls them
in order from its constructor, between the steps that fill them.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.sampler_names import SCHEDULE_LABELS
from studio.engine import diffusion
from studio.engine.jobs import PREVIEW_MODES
from studio.ui.panels.fit import VScrollArea
from studio.ui.panels.generate_hires import bind_hires, hires_widgets
from studio.ui.panels.generate_model import DTYPES, MAX_SEED, sampler_parts
from studio.ui.panels.generate_picker import PickerCombo, scheduler_names
from studio.ui.panels.generate_plan import fill_offload_combo, fill_quant_combo
from studio.ui.panels.staging import StagingBar
from studio.ui.properties import bind

# The panel the parts are built on: a ``generate.GeneratePanel`` (named by its base class
# here, so this module does not import the panel's).
GeneratePanel = QWidget

SOURCES = (
    ("txt2img", "Text only (txt2img)"),
    ("img2img", "Image → image (img2img)"),
    ("inpaint", "Inpaint the mask"),
)


def model_widgets(panel: GeneratePanel) -> None:
    """The model picker, its Download button and the memory plan line."""
    panel.plan_label = QLabel()
    panel.plan_label.setObjectName("memory-plan")
    panel.plan_label.setWordWrap(True)
    panel.plan_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    panel.model_combo = PickerCombo()  # a list, not a text field: tool keys stay tools
    panel.model_combo.setObjectName("model-picker")
    panel.model_combo.setToolTip(
        "The model (family after the name). Find… narrows the list by typing, or takes "
        "a Hugging Face repo id, a catalog id, a folder or a file"
    )
    panel.download_button = QToolButton()
    panel.download_button.setObjectName("download")
    panel.download_button.setToolTip("Download the picked model (Models panel shows progress)")
    panel.download_button.clicked.connect(panel.download_model)


def field_widgets(panel: GeneratePanel) -> None:
    """Find…, Browse, the prompts and the sampling fields."""
    panel.find_model_button = QToolButton()
    panel.find_model_button.setObjectName("find-model")
    panel.find_model_button.setText("Find…")
    panel.find_model_button.setToolTip(
        "Find a model by name or family, or enter a Hugging Face repo id, a catalog id or a path"
    )
    panel.find_model_button.clicked.connect(panel.open_model_search)
    panel.browse_button = QToolButton()
    panel.browse_button.setText("…")
    panel.browse_button.setToolTip("Choose a local model folder")
    panel.browse_button.clicked.connect(panel.browse_model)

    panel.prompt = QPlainTextEdit()
    panel.prompt.setPlaceholderText("Prompt: what to make")
    panel.prompt.setFixedHeight(64)
    panel.paste_params = QToolButton()
    panel.paste_params.setObjectName("paste-parameters")
    panel.paste_params.setText("Paste parameters")
    panel.paste_params.setToolTip(
        "Load AUTOMATIC1111 / Studio generation parameters from the clipboard (prompt, "
        "<lora:name:weight> tags into the LoRA list, steps, sampler, seed, size, clip skip)"
    )
    panel.paste_params.clicked.connect(panel.paste_clipboard_parameters)
    panel.negative = QPlainTextEdit()
    panel.negative.setPlaceholderText("Negative prompt: what to avoid")
    panel.negative.setFixedHeight(40)

    panel.steps = QSpinBox()
    panel.steps.setRange(1, 150)
    panel.guidance = QDoubleSpinBox()
    panel.guidance.setRange(0.0, 30.0)
    panel.guidance.setSingleStep(0.5)
    panel.guidance.setDecimals(1)
    # QSpinBox stops at 2**31 - 1, but A1111/CLI seeds go to 2**32 - 1 and beyond.
    panel.seed = QDoubleSpinBox()
    panel.seed.setDecimals(0)
    panel.seed.setRange(0, MAX_SEED)
    panel.random_seed = QCheckBox("Random")
    panel.random_seed.setChecked(True)
    panel.reuse_seed = QToolButton()
    panel.reuse_seed.setText("♻")
    panel.reuse_seed.setToolTip("Reuse the last seed")
    panel.reuse_seed.clicked.connect(panel.reuse_last_seed)
    panel.width_spin = QSpinBox()
    panel.height_spin = QSpinBox()
    for s in (panel.width_spin, panel.height_spin):
        s.setRange(64, 2048)
        s.setSingleStep(8)
    panel.match_region = QCheckBox("Match region")
    panel.match_region.setChecked(True)
    panel.match_region.setToolTip(
        "Generate at the size of the selection (or the image); results are placed there"
    )
    panel.match_region.toggled.connect(panel._sync_size_enabled)
    panel.count = QSpinBox()
    panel.count.setRange(1, 8)
    panel.scheduler = QComboBox()
    panel.scheduler.addItem("Default", "")
    for name in sampler_list():
        panel.scheduler.addItem(name, name)
    panel.schedule_type = QComboBox()
    panel.schedule_type.setObjectName("schedule-type")
    for label in SCHEDULE_LABELS:
        panel.schedule_type.addItem(label, label)
    panel.schedule_type.setToolTip(
        "A1111's Schedule type: how the noise levels are spaced over the steps; Automatic: "
        "the sampler's own (Karras for DPM++ 2M)"
    )
    panel.sampler_note = QLabel()
    panel.sampler_note.setObjectName("sampler-note")
    panel.sampler_note.setWordWrap(True)
    panel.sampler_note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    panel.sampler_note.setVisible(False)
    panel.source = QComboBox()
    for key, text in SOURCES:
        panel.source.addItem(text, key)
    panel.source.currentIndexChanged.connect(panel._sync_strength_enabled)
    panel.strength = QDoubleSpinBox()
    panel.strength.setRange(0.01, 1.0)
    panel.strength.setSingleStep(0.05)
    panel.strength.setDecimals(2)
    panel.preview_mode = QComboBox()
    for m in PREVIEW_MODES:
        panel.preview_mode.addItem(m, m)


def sampler_list() -> list[str]:
    """The Sampler combo's rows: the engine's samplers without a schedule in their name
    ("DPM++ 2M Karras" is "DPM++ 2M" with the Karras schedule type)."""
    out: list[str] = []
    for name in scheduler_names():
        base = sampler_parts(name)[0]
        if base not in out:
            out.append(base)
    return out


def show_sampler(panel: GeneratePanel) -> None:
    """The Schedule type applies to a chosen sampler (not to the model's default, nor to the
    flow families' own scheduler); the note line says why a pair can't be built."""
    panel.schedule_type.setEnabled(panel.scheduler.isEnabled() and bool(panel.state.sampler))
    note = panel.state.sampler_note if panel.scheduler.isEnabled() else ""
    panel.sampler_note.setText(note)
    panel.sampler_note.setVisible(bool(note))


def advanced_widgets(panel: GeneratePanel) -> None:
    """The Advanced group: LoRAs, VAE, clip skip, precision, weights, offload, Hires. fix."""
    panel.advanced_toggle = QToolButton()
    panel.advanced_toggle.setObjectName("advanced-toggle")
    panel.advanced_toggle.setCheckable(True)
    panel.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    panel.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
    panel.advanced_toggle.setToolTip(
        "LoRAs, external VAE, clip skip, precision, Hires. fix; for the "
        f"{diffusion.quant_family_labels()} models the memory plan's weights and offload"
    )
    panel.advanced_toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    panel.advanced_toggle.toggled.connect(panel._show_advanced)
    panel.advanced = QGroupBox()
    panel.advanced.setObjectName("advanced")
    af = panel.advanced_form = QFormLayout(panel.advanced)
    af.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    panel.lora_combo = QComboBox()
    panel.lora_combo.setToolTip("Installed LoRAs (the models' loras folder and imports)")
    panel.lora_add = QToolButton()
    panel.lora_add.setText("Add")
    panel.lora_add.setObjectName("lora-add")
    panel.lora_add.setToolTip("Add the chosen LoRA at weight 1")
    panel.lora_add.clicked.connect(panel.add_lora)
    add_row = QHBoxLayout()
    add_row.addWidget(panel.lora_combo, 1)
    add_row.addWidget(panel.lora_add)
    af.addRow("LoRA", add_row)
    panel.lora_rows = QVBoxLayout()
    panel.lora_rows.setContentsMargins(0, 0, 0, 0)
    panel.lora_rows.setSpacing(2)
    panel.lora_widgets: list[tuple[QLabel, QDoubleSpinBox, QToolButton, QWidget]] = []
    rows = QWidget()
    rows.setLayout(panel.lora_rows)
    af.addRow(rows)
    panel.vae_combo = QComboBox()
    panel.vae_combo.setToolTip("External VAE for this job; Model's own: the one it ships")
    panel.clip_skip = QSpinBox()
    panel.clip_skip.setRange(1, 12)
    panel.clip_skip.setToolTip("A1111's Clip skip: 2 uses the text encoder's next-to-last layer")
    panel.dtype_combo = QComboBox()
    for d in DTYPES:
        panel.dtype_combo.addItem(d or "Auto", d)
    panel.dtype_combo.setToolTip(
        "Weights' precision; Auto: float16 on GPUs that have it, bfloat16 where float16 "
        "is unsupported, float32 on the CPU"
    )
    panel.quant_combo = QComboBox()
    panel.quant_combo.setObjectName("quant")
    fill_quant_combo(panel.quant_combo)
    panel.offload_combo = QComboBox()
    panel.offload_combo.setObjectName("offload")
    fill_offload_combo(panel.offload_combo)
    af.addRow("VAE", panel.vae_combo)
    af.addRow("Clip skip", panel.clip_skip)
    af.addRow("Precision", panel.dtype_combo)
    af.addRow("Weights", panel.quant_combo)
    af.addRow("Offload", panel.offload_combo)
    af.addRow(hires_widgets(panel))


def bind_fields(panel: GeneratePanel) -> None:
    """Every field shows ``panel.state`` and edits it."""
    for name, widget in (
        ("prompt", panel.prompt),
        ("negative_prompt", panel.negative),
        ("steps", panel.steps),
        ("guidance", panel.guidance),
        ("seed", panel.seed),
        ("random_seed", panel.random_seed),
        ("width", panel.width_spin),
        ("height", panel.height_spin),
        ("match_region", panel.match_region),
        ("count", panel.count),
        ("strength", panel.strength),
        ("clip_skip", panel.clip_skip),
    ):
        bind(panel.state, name, widget)
    for name, combo in (
        ("sampler", panel.scheduler),
        ("schedule_type", panel.schedule_type),
        ("source", panel.source),
        ("preview", panel.preview_mode),
        ("vae", panel.vae_combo),
        ("dtype", panel.dtype_combo),
        ("quant", panel.quant_combo),
        ("offload", panel.offload_combo),
    ):
        bind(panel.state, name, combo, data=True)
    bind_hires(panel)


def bottom_widgets(panel: GeneratePanel) -> None:
    """Generate and Cancel, the progress bar, staging, the queue and history lists."""
    panel.generate_button = QPushButton("Generate")
    panel.generate_button.setObjectName("primary")
    panel.generate_button.setToolTip("Generate (Ctrl+Enter); while a job runs, queue another")
    panel.generate_button.clicked.connect(panel.generate)
    panel.cancel_button = QPushButton("Cancel")
    panel.cancel_button.setObjectName("danger")
    panel.cancel_button.setToolTip("Cancel the running job (Esc)")
    panel.cancel_button.clicked.connect(panel.cancel_current)
    panel.cancel_button.setEnabled(False)
    panel.staging = StagingBar(panel.host, panel)
    panel.progress = QProgressBar()
    panel.progress.setRange(0, 1)
    panel.progress.setValue(0)
    panel.progress.setFormat("Ready")
    panel.progress.setTextVisible(True)

    panel.queue_list = QListWidget()
    panel.queue_list.setObjectName("queue")
    panel.queue_list.setFixedHeight(64)
    panel.queue_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)

    panel.history = QListWidget()
    panel.history.setObjectName("history")
    panel.history.setViewMode(QListWidget.ViewMode.IconMode)
    panel.history.setFlow(QListWidget.Flow.LeftToRight)
    panel.history.setWrapping(False)
    panel.history.setIconSize(QSize(64, 64))
    panel.history.setFixedHeight(86)
    panel.history.setMovement(QListWidget.Movement.Static)
    panel.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    panel.history.setToolTip("Double-click: use these parameters. Right-click: more")
    panel.history.itemDoubleClicked.connect(panel._history_apply)
    panel.history.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    panel.history.customContextMenuRequested.connect(panel._history_menu)


def lay_out(panel: GeneratePanel) -> None:
    """The form, the scrolled body, the bottom bar and the Ctrl+Enter shortcuts."""
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    model_row = QHBoxLayout()
    model_row.addWidget(panel.model_combo, 1)
    model_row.addWidget(panel.find_model_button)
    model_row.addWidget(panel.browse_button)
    form.addRow("Model", model_row)
    form.addRow("", panel.download_button)
    form.addRow("Memory", panel.plan_label)
    form.addRow("", panel.paste_params)
    form.addRow("Source", panel.source)
    form.addRow("Strength", panel.strength)
    settings_box = QGroupBox("Sampling")
    sf = QFormLayout(settings_box)
    sf.addRow("Steps", panel.steps)
    sf.addRow("Guidance", panel.guidance)
    seed_row = QHBoxLayout()
    seed_row.addWidget(panel.seed, 1)
    seed_row.addWidget(panel.random_seed)
    seed_row.addWidget(panel.reuse_seed)
    sf.addRow("Seed", seed_row)
    size_row = QHBoxLayout()
    size_row.addWidget(panel.width_spin)
    size_row.addWidget(QLabel("×"))
    size_row.addWidget(panel.height_spin)
    sf.addRow("Size", size_row)
    sf.addRow("", panel.match_region)
    sampler_row = QHBoxLayout()
    sampler_row.addWidget(panel.scheduler, 3)
    sampler_row.addWidget(panel.schedule_type, 2)
    sf.addRow("Sampler", sampler_row)
    sf.addRow("", panel.sampler_note)
    sf.addRow("Images", panel.count)
    sf.addRow("Preview", panel.preview_mode)

    buttons = QHBoxLayout()
    buttons.addWidget(panel.generate_button, 2)
    buttons.addWidget(panel.cancel_button, 1)

    inner = QWidget()
    v = QVBoxLayout(inner)
    v.setContentsMargins(6, 6, 6, 6)
    v.addLayout(form)
    v.addWidget(panel.prompt)
    v.addWidget(panel.negative)
    v.addWidget(settings_box)
    v.addWidget(panel.advanced_toggle)
    v.addWidget(panel.advanced)
    v.addStretch(1)
    scroll = VScrollArea(inner)
    # Long model names and 16-digit seeds must not widen the dock: combos elide, the
    # seed box scrolls its digits.
    for combo in (
        panel.model_combo,
        panel.source,
        panel.scheduler,
        panel.schedule_type,
        panel.preview_mode,
        panel.vae_combo,
        panel.lora_combo,
        panel.dtype_combo,
        panel.quant_combo,
        panel.offload_combo,
    ):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(10)
    panel.seed.setMinimumWidth(96)

    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 4)
    outer.addWidget(scroll, 1)
    bottom = QVBoxLayout()
    bottom.setContentsMargins(6, 0, 6, 0)
    bottom.addLayout(buttons)
    bottom.addWidget(panel.progress)
    bottom.addWidget(panel.staging)
    panel.queue_label = QLabel("Queue")
    panel.queue_label.setObjectName("hint")
    bottom.addWidget(panel.queue_label)
    bottom.addWidget(panel.queue_list)
    hl = QLabel("History")
    hl.setObjectName("hint")
    bottom.addWidget(hl)
    bottom.addWidget(panel.history)
    outer.addLayout(bottom)

    shortcut = QShortcut(QKeySequence("Ctrl+Return"), panel)
    shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
    shortcut.activated.connect(panel.generate)
    shortcut2 = QShortcut(QKeySequence("Ctrl+Enter"), panel)
    shortcut2.setContext(Qt.ShortcutContext.WindowShortcut)
    shortcut2.activated.connect(panel.generate)
