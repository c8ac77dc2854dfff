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

The widgets are built and bound by ``generate_form`` and the picker's rows come from
``generate_picker``; this module holds what the panel does. Its jobs are followed by a
``job_follower.JobFollower``; the ControlNet guides are the document's control layers
(``control_model.document_controls``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidgetItem,
    QMenu,
    QToolButton,
    QWidget,
)

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
    lora_row,
    model_widgets,
)
from studio.ui.panels.generate_model import (
    MAX_SEED,
    GenerateModel,
    lora_name,
    resize,
)
from studio.ui.panels.generate_picker import (
    ModelSearch,
    PickerItem,
    catalog_models,
    display_name,
    family_defaults,
    family_label,
    installed_choices,
    model_choices,
    picker_label,
)
from studio.ui.panels.generate_plan import PLAN_NAMES
from studio.ui.panels.staging import Staged
from studio.ui.qimage import qimage_from_array


class GeneratePanel(QWidget):
    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.settings = host.settings
        self.state = GenerateModel(self.settings, self)  # what the widgets show and edit
        self.state.set_device(getattr(host.worker, "device_info", None))
        self._plan_timer = QTimer(self)  # settings changing: look the plan up once they pause
        self._plan_timer.setSingleShot(True)
        self._plan_timer.setInterval(150)
        self._plan_timer.timeout.connect(self._show_plan)
        self.last_seed: int | None = None
        self._steps: dict[int, tuple[int, int, int]] = {}  # job -> (step, image base, batch)
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

        w = host.worker
        self.follow = JobFollower(w, self, JobBar(self.progress, done_value=0))
        self.follow.started.connect(self._on_started)
        self.follow.progress.connect(self._on_progress)
        self.follow.preview.connect(self._on_preview)
        self.follow.finished.connect(self._on_finished)
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
                self.lora_widgets.append(lora_row(self, i, ref))
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
        self.previews_received += 1

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        job = self.follow.job(job_id)
        if job is None:
            return
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
