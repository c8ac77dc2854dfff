"""The Generate panel's job rows: the progress text of a job of several images
(``StepCounter``), the finished images to stage, the queue list (each job with its cancel button) and the history strip
(thumbnails whose parameters can be used again). The panel's slots call these."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidgetItem, QMenu, QToolButton, QWidget

from studio.ui.panels.generate_model import resize
from studio.ui.panels.staging import Staged
from studio.ui.qimage import qimage_from_array

# The panel the rows are built on: a ``generate.GeneratePanel``.
GeneratePanel = QWidget


class StepCounter:
    """The progress text of the running job, from the engine's step count over all images."""

    def __init__(self) -> None:
        self._steps: dict[int, tuple[int, int, int]] = {}  # job -> (step, image base, batch)

    def text(self, job_id: int, step: int, total: int, count: int) -> str:
        """ "Step 84/150" for one image; for several, which image and its own step: "image 1
        of 4, step 84/150" (the engine counts steps over all images: 84/600). Images the SD
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


def staged_results(panel: GeneratePanel, job, event) -> list[Staged]:
    """A finished job's images to stage at its region (each also into the document's
    history, its metadata completed from the request), sized to the region unless the
    document is empty."""
    x, y, w, h = job.region
    request = job.request
    images = list(getattr(event, "images", ()))
    metas = list(getattr(event, "metadata", ()))
    staged: list[Staged] = []
    for i, image in enumerate(images):
        meta = dict(metas[i]) if i < len(metas) else {}
        seed = meta.get("seed", request.seed + i)
        meta.setdefault("seed", seed)
        meta.setdefault("prompt", request.prompt)
        meta.setdefault("model", request.model)
        placed = image if panel._doc_empty() else resize(image, (w, h))
        name = f"#{seed} {request.prompt[:24] or 'generated'}".strip()
        staged.append(Staged(placed, name, (x, y), meta))
        panel.host.model.add_history(image, meta)
        panel.last_seed = int(seed) if isinstance(seed, int) else panel.last_seed
        panel.results_received += 1
    return staged


def fill_queue(panel: GeneratePanel) -> None:
    """The Generate button's text, Cancel, and one row per queued or running job."""
    worker = panel.host.worker
    jobs = worker.jobs("compute")  # not the model-file jobs (downloads, scans)
    busy = worker.running_in("compute") is not None
    panel.generate_button.setText(f"Queue ({len(jobs)})" if busy else "Generate")
    panel.cancel_button.setEnabled(busy)
    panel.queue_list.clear()
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
        x.clicked.connect(panel._cancel_clicked)
        h.addWidget(label, 1)
        h.addWidget(x)
        item.setSizeHint(row.sizeHint())
        panel.queue_list.addItem(item)
        panel.queue_list.setItemWidget(item, row)
    panel.queue_label.setText(f"Queue ({len(jobs)})" if jobs else "Queue: empty")
    panel.queue_list.setVisible(bool(jobs))  # room for the form while nothing waits


def fill_history(panel: GeneratePanel) -> None:
    """One thumbnail per history entry, newest first, its parameters as the tooltip."""
    model = panel.host.model
    panel.history.clear()
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
        panel.history.addItem(item)


def history_entry(panel: GeneratePanel, item: QListWidgetItem):
    """The document's history entry a thumbnail shows, or None."""
    uid = item.data(Qt.ItemDataRole.UserRole)
    for e in panel.host.model.doc.history:
        if e.uid == uid:
            return e
    return None


def history_menu(panel: GeneratePanel, pos) -> None:
    """A thumbnail's menu: use its parameters, or add it as a layer."""
    item = panel.history.itemAt(pos)
    entry = history_entry(panel, item) if item is not None else None
    if entry is None:
        return
    menu = QMenu(panel)
    use = menu.addAction("Use these parameters")
    add = menu.addAction("Add as layer")
    chosen = menu.exec(panel.history.viewport().mapToGlobal(pos))
    if chosen is use:
        panel.apply_parameters(entry.parameters)
    elif chosen is add:
        panel.host.add_layer(entry.image, f"#{entry.parameters.get('seed', '')} (history)")


def plan_timer(panel: GeneratePanel) -> QTimer:
    """While settings change, the memory plan is looked up once they pause for 150 ms."""
    timer = QTimer(panel)
    timer.setSingleShot(True)
    timer.setInterval(150)
    timer.timeout.connect(panel._show_plan)
    return timer


def connect_panel(panel: GeneratePanel, host) -> None:
    """Connect the panel's slots to its job follower (``panel.follow``), the worker's queue
    and device, the document model and the model folders."""
    follow, worker, model = panel.follow, host.worker, host.model
    follow.started.connect(panel._on_started)
    follow.progress.connect(panel._on_progress)
    follow.preview.connect(panel._on_preview)
    follow.finished.connect(panel._on_finished)
    worker.queue_changed.connect(panel._refresh_queue)
    if hasattr(worker, "device_changed"):
        worker.device_changed.connect(panel._on_device)
    model.history_changed.connect(panel._refresh_history)
    model.selection_changed.connect(panel._sync_size)
    model.document_replaced.connect(panel._sync_size)
    model.document_replaced.connect(panel.staging.on_document_replaced)
    host.models_updated.connect(panel.fill_models)  # downloaded or imported: at once
    host.models_updated.connect(panel.state.forget_models)
