"""The Generate panel: model, prompt, sampling settings, the Generate/queue button with
progress and ETA, the job queue (each job cancellable) and a history strip of results.

txt2img, img2img (the composite inside the generation region as init image) and SD inpainting
(plus the mask) all go through one ``GenerateRequest``. Results land as new layers at the
generation region (one undo step each) and in the document's history.

The "Advanced" group (collapsed until used) holds the LoRAs (add from the installed ones,
weight, remove; pasted A1111 parameters fill it from their ``<lora:name:w>`` tags), the
external VAE, clip skip, the weights' precision and, for the flow families (FLUX.1, FLUX.2,
Z-Image, SD 3.5, Qwen-Image), the memory plan's overrides: Weights (bf16, fp8, GGUF, NF4)
and Offload (none, model, group, sequential), "Auto" letting the planner decide; and A1111's
Hires. fix (``generate_hires``; SD 1.x, SD 2.x, SDXL txt2img). The Sampler sits beside
A1111's Schedule type, the two composed into the name the engine takes.

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

Widgets: ``generate_form`` (Hires. fix: ``generate_hires``); picker rows: ``generate_picker``;
lists: ``generate_lists``; progress, queue, history: ``generate_jobs``; this module: what
the panel does. A ``job_follower.JobFollower`` follows its jobs; the ControlNet guides are
the document's control layers (``control_model.document_controls``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog, QListWidgetItem, QWidget

from studio.core.catalog import format_size
from studio.engine.jobs import GenerateRequest
from studio.ui.job_follower import JobBar, JobFollower
from studio.ui.panels.control_model import document_controls
from studio.ui.panels.generate_form import (
    advanced_widgets,
    bind_fields,
    bottom_widgets,
    field_widgets,
    lay_out,
    model_widgets,
    show_sampler,
)
from studio.ui.panels.generate_hires import HIRES_NAMES, fill_upscalers, hires_summary, sync_hires
from studio.ui.panels.generate_jobs import (
    StepCounter,
    connect_panel,
    fill_history,
    fill_queue,
    history_entry,
    history_menu,
    plan_timer,
    staged_results,
)
from studio.ui.panels.generate_lists import fill_extras, fill_models, show_loras, show_model
from studio.ui.panels.generate_model import (
    MAX_SEED,
    GenerateModel,
    sampler_parts,
)
from studio.ui.panels.generate_picker import (
    ModelSearch,
    PickerItem,
    catalog_models,
    family_defaults,
    scheduler_names,
)
from studio.ui.panels.generate_plan import PLAN_NAMES, show_plan


class GeneratePanel(QWidget):
    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.settings = host.settings
        self.state = GenerateModel(self.settings, self)  # what the widgets show and edit
        self.state.set_device(getattr(host.worker, "device_info", None))
        self._plan_timer = plan_timer(self)
        self.last_seed: int | None = None
        self.step_counter = StepCounter()
        self.previews_received = 0
        self.results_received = 0

        self.model_search: ModelSearch | None = None
        self.recommended = catalog_models()
        self.picker: list[PickerItem] = []
        model_widgets(self)
        self.fill_models()
        self.model_combo.activated.connect(self._model_activated)
        self.model_combo.chosen.connect(self._model_chosen)
        self.state.changed.connect(self._on_state_changed)
        field_widgets(self)
        advanced_widgets(self)
        self.fill_extras()
        self.host.models_updated.connect(self.fill_extras)
        self._show_loras()
        self._show_advanced(
            bool(self.state.loras) or bool(self.state.vae) or any(self.state.overrides())
        )

        bind_fields(self)
        self.seed.setEnabled(not self.state.random_seed)
        self.random_seed.toggled.connect(self._sync_seed_enabled)
        self._show_model()
        if not (self.settings and self.settings.model):
            self.apply_recommended(self.state.model)  # first run
        bottom_widgets(self)
        lay_out(self)

        self.follow = JobFollower(host.worker, self, JobBar(self.progress, done_value=0))
        connect_panel(self, host)
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
        fill_models(self)

    def _item(self, ref: str) -> PickerItem | None:
        return next((i for i in self.picker if i.ref == ref), None)

    def _show_model(self) -> None:
        show_model(self)

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
        elif name in ("sampler", "schedule_type", "sampler_note"):
            show_sampler(self)
        if name in HIRES_NAMES | {"hires_upscaler"} and hasattr(self, "hires_box"):
            sync_hires(self)
            if name == "hires" and value:
                self._show_advanced(True)
            self._label_advanced()
        if name in PLAN_NAMES:
            self._plan_timer.start()

    @Slot(object)
    def _on_device(self, info: object) -> None:
        self.state.set_device(info if isinstance(info, dict) else None)

    @Slot()
    def _show_plan(self) -> None:
        """The plan line, and the Weights/Offload rows only where they apply (flow models)."""
        self._plan_timer.stop()
        show_plan(self)
        show_sampler(self)
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
        """Every sampler name the state may take: the engine's (with their schedules) and
        the combo's rows."""
        rows = [self.scheduler.itemData(i) for i in range(self.scheduler.count())]
        return [*rows, *scheduler_names()]

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
        added to the list first (its sampler without the schedule: the Schedule type combo
        shows that), so the combo shows it. Returns the notes on what was not
        taken."""
        name, _note = self.state.pasted_sampler(meta)
        base = sampler_parts(name)[0] if name else ""
        if base and self.scheduler.findData(base) < 0:
            self.scheduler.addItem(base, base)
        return self.state.apply_parameters(meta, self._schedulers())

    # -- advanced: LoRAs, VAE, clip skip, precision -----------------------------------------
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
        memory = ", memory" if self.state.is_flow() else ", hires fix"
        extra += hires_summary(self.state)
        self.advanced_toggle.setText(f"Advanced: LoRA, VAE, clip skip{memory}{extra}")

    @Slot()
    def fill_extras(self) -> None:
        """(Re)list the installed LoRAs, VAEs and upscalers (read from disk each time)."""
        fill_extras(self)
        fill_upscalers(self)

    def showEvent(self, event) -> None:  # noqa: N802 - re-read the folders when shown
        self.fill_extras()
        super().showEvent(event)

    @Slot()
    def add_lora(self) -> None:
        path = self.lora_combo.currentData()
        if path:
            self.state.add_lora(path, 1.0)

    def _show_loras(self) -> None:
        show_loras(self)
        if self.state.loras and not self.advanced_toggle.isChecked():
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
        """The enabled ControlNet guides of the document (its control and pose layers),
        cropped to the region."""
        return document_controls(self.host.model.doc, region, size)

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
        job_id = self.follow.submit(request, region=region, label=label)
        self._refresh_queue()
        return job_id

    @Slot()
    def cancel_current(self) -> None:
        self.host.worker.cancel(None)

    # -- the follower's signals (this panel's jobs; it shows their end on the bar) ----------
    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        self.follow.bar.busy("Loading model…")  # until the first step (model loading)
        self._refresh_queue()

    @Slot(int, "qint64", "qint64")
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        job = self.follow.job(job_id)
        if job is None or total <= 0:
            return
        eta = job.eta()
        text = self.step_counter.text(
            job_id, step, total, int(getattr(job.request, "count", 1) or 1)
        )
        if eta is not None:
            text += f" · {eta:.0f}s left" if eta >= 1 else " · <1s left"
        self.progress.setFormat(text)

    @Slot(int, QImage, object)
    def _on_preview(self, job_id: int, image: QImage, region: object) -> None:
        self.previews_received += 1

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        job = self.follow.job(job_id)
        if job is None:
            return
        self.staging.add(staged_results(self, job, event))  # shown in place: Accept: a layer

    # -- queue and history (their rows: generate_jobs) --------------------------------------
    @Slot()
    def _refresh_queue(self) -> None:
        fill_queue(self)

    @Slot()
    def _cancel_clicked(self) -> None:
        self.host.worker.cancel(self.sender().property("job_id"))

    @Slot()
    def _refresh_history(self) -> None:
        fill_history(self)

    @Slot(QListWidgetItem)
    def _history_apply(self, item: QListWidgetItem) -> None:
        entry = history_entry(self, item)
        if entry is not None:
            self.apply_parameters(entry.parameters)

    @Slot()
    def _history_menu(self, pos) -> None:
        history_menu(self, pos)
