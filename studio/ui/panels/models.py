"""The model manager panel: installed and available models (sizes, licences), downloads with
progress (bytes, speed, ETA) and cancel, remove, import of model files, and a first-run offer
of the starter set that downloads only after the user agrees.

Downloads, scans, imports and removals are engine jobs (``studio.engine.jobs``
DownloadRequest, ImportModelRequest, ScanModelsRequest, RemoveModelRequest) queued through
the host's worker like every other job, in its files lane (their own engine thread and
queue), report progress (bytes and a status line) and cancel through it; they run while a
generation runs. No torch here: the catalog is torch-free and the engine runs in the
worker's threads.

A download that cannot reach its server (the engine's NetworkError, ``kind == "network"``:
told from the exception chain, never from the message) stops the rest of the download queue
(the queued downloads are cancelled, not each failing) and is said once, in GUI words: no
network, and what to do instead (Import…, Add folder…, or Download later). The panel reports
its own jobs' failures (``REPORTS_FAILURES``: the window's jobs room leaves them to it).

Models found in the user's folders (Add folder…: diffusers folders, model files and
A1111/ComfyUI kind folders alike; the scan's "found") are listed with where they are, and
adding a folder says what was found there (or why nothing was).

The widgets are built by ``models_form`` and the tree is filled by ``models_tree``; this
module holds what the panel does. It follows its jobs through a ``job_follower.JobFollower``.
Dropped model files are
told and imported by ``studio.ui.model_files`` (``import_model_file``, ``is_model_file``;
named here too), which hands them to this panel's ``import_files``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from studio.core.catalog import Catalog, Entry, format_size, load_catalog
from studio.core.errors import StudioError
from studio.engine.jobs import (
    DownloadRequest,
    ImportModelRequest,
    RemoveModelRequest,
    ScanModelsRequest,
)
from studio.ui.job_follower import JobFollower
from studio.ui.model_files import MODEL_FILTER, MODEL_SUFFIXES, import_model_file, is_model_file
from studio.ui.panels.models_form import lay_out
from studio.ui.panels.models_tree import (
    KIND_LABELS,
    ROLE_FOUND,
    ROLE_ID,
    ROLE_IMPORTED,
    fill,
    folder_report,
)
from studio.ui.panels.starter_dialog import StarterDialog

__all__ = [
    "KIND_LABELS",
    "MODEL_FILTER",
    "MODEL_SUFFIXES",
    "ROLE_FOUND",
    "ROLE_ID",
    "ROLE_IMPORTED",
    "ModelsPanel",
    "import_model_file",
    "is_model_file",
]

log = logging.getLogger(__name__)

# What the user can do without a network (the one message when downloads can't connect).
NO_NETWORK_HELP = (
    "Use the models you already have: Import… model files, or Add folder… to point Studio at "
    "a folder of models (an AUTOMATIC1111 or ComfyUI models folder works as it is). Or "
    "download later: pick the models here and press Download when you are online."
)


class ModelsPanel(QWidget):
    """Installed/available models, downloads, remove, import; docked by the main window."""

    FILTERS = ("All", "Installed", "Available", "Starter set")
    REPORTS_FAILURES = True  # the window's jobs room leaves this panel's failures to it

    def __init__(self, host: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        try:
            self.catalog = load_catalog()
            catalog_error = ""
        except StudioError as e:
            self.catalog = Catalog([])
            catalog_error = e.message
        self.installed: dict[str, str] = {}
        self.imported: list = []
        self.found: list = []  # scan.ModelFile: models in the user's folders (Add folder…)
        self._added_folder: str | None = None  # report what the next scan finds there
        self._stopping: set[int] = set()  # downloads cancelled because there is no network
        # This panel's jobs in the worker: job id -> (kind, subject); kind is "download"
        # (subject: the Entry), "import" (the file path), "remove" (the name) or "scan".
        self.jobs: dict[int, tuple[str, Any]] = {}
        self._scan: int | None = None
        self._rescan = False
        self._first_scan_done = False
        self.starter_dialog: StarterDialog | None = None
        self.confirm = self._confirm  # replaceable in tests

        lay_out(self, catalog_error)  # every widget (models_form)

        self.follow = JobFollower(host.worker, self)  # this panel's jobs only
        self.follow.started.connect(self._on_started)
        self.follow.progress.connect(self._on_progress)
        self.follow.finished.connect(self._on_finished)
        self.follow.failed.connect(self._on_failed)
        self.follow.cancelled.connect(self._on_cancelled)

        self._show_progress(False)
        self.populate()
        self.update_buttons()
        QTimer.singleShot(0, self.refresh)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def offline() -> bool:
        from studio.engine.models import offline_mode

        return offline_mode()

    def _confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def _error(self, message: str, detail: str = "") -> None:
        self.host.show_error(message, detail)
        self.status_label.setText(message)

    def _submit(self, kind: str, subject: Any, request: object, label: str) -> int | None:
        if self.host.worker.closed:  # the window is closing: nothing more to run
            return None
        # Model jobs need no torch: start the engine thread without importing the engine
        # (the window's start_engine still warms it up), so a scan never waits for torch.
        self.host.worker.start(warm_up=False)
        job_id = self.follow.submit(request, label=label)
        self.jobs[job_id] = (kind, subject)
        return job_id

    def _jobs_of(self, *kinds: str) -> list[int]:
        return [j for j, (k, _) in self.jobs.items() if k in kinds]

    def _show_progress(self, on: bool) -> None:
        self.progress_bar.setVisible(on)
        self.cancel_button.setVisible(on)
        self.progress_label.setVisible(on)
        if not on:
            self.progress_bar.setValue(0)
            self.progress_label.setText("")

    def selected_entries(self) -> list[Entry]:
        out = []
        for item in self.tree.selectedItems():
            model_id = item.data(0, ROLE_ID)
            entry = self.catalog.get(model_id) if model_id else None
            if entry is not None:
                out.append(entry)
        return out

    def selected_imported(self) -> list[str]:
        return [
            item.data(0, ROLE_IMPORTED)
            for item in self.tree.selectedItems()
            if item.data(0, ROLE_IMPORTED)
        ]

    def busy_ids(self) -> set[str]:
        """Catalog ids with a download queued or running in the worker."""
        return {self.jobs[j][1].id for j in self._jobs_of("download")}

    # -- listing ---------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Rescan what is installed (a ScanModelsRequest in the worker)."""
        if self._scan is not None:
            self._rescan = True
            return
        self._scan = self._submit("scan", None, ScanModelsRequest(), "Scan models")

    def _on_scanned(self, installed: dict, imported: list, found: list | None = None) -> None:
        # A rescan follows a download, import, removal or an added folder (which changes no
        # catalog or import record): tell every picker.
        changed = self._first_scan_done
        self.installed = dict(installed)
        self.imported = list(imported)
        self.found = list(found or [])
        self.populate()
        if self._added_folder is not None and not self._rescan:  # a scan that saw the folder
            self._report_folder(self._added_folder)
            self._added_folder = None
        if changed:  # downloaded, imported, removed or a folder added: every picker follows
            self.host.models_changed()
        if not self._first_scan_done:
            self._first_scan_done = True
            self.maybe_offer_starter()

    @Slot()
    def populate(self) -> None:
        """Fill the tree again for the filter (``models_tree.fill``) and the info line."""
        mode = self.filter_combo.currentText()
        busy = self.busy_ids()
        fill(self.tree, self.catalog, self.installed, self.imported, self.found, mode, busy,
             self._current_id)  # fmt: skip
        total = sum(e.size for e in self.catalog if e.id in self.installed)
        note = f"{len(self.installed)} installed ({format_size(total)} catalog models)"
        if self.offline():
            note += " — offline mode: downloads are off"
        self.info_label.setText(note)
        self.update_buttons()

    @Slot()
    def update_buttons(self) -> None:
        entries = self.selected_entries()
        busy = self.busy_ids()
        can_download = any(e.id not in self.installed and e.id not in busy for e in entries)
        self.download_button.setEnabled(can_download and not self.offline())
        self.remove_button.setEnabled(
            any(e.id in self.installed for e in entries) or bool(self.selected_imported())
        )

    def _current_id(self) -> str | None:
        """The catalog id being downloaded now (the files lane's running job), if any."""
        kind, subject = self.jobs.get(self.host.worker.running_in("files"), (None, None))
        return subject.id if kind == "download" else None

    # -- downloads -------------------------------------------------------------------------
    @Slot()
    def download_selected(self) -> None:
        entries = [e for e in self.selected_entries() if e.id not in self.installed]
        if entries:
            total = sum(e.size for e in entries)
            names = ", ".join(e.name for e in entries)
            if self.confirm("Download models", f"Download {names} ({format_size(total)})?"):
                self.download(entries)

    def download(self, entries: list[Entry]) -> None:
        """Queue downloads (the user already agreed): one DownloadRequest per model in the
        worker."""
        if self.offline():
            self._error(
                "Offline mode is on (STUDIO_OFFLINE/HF_HUB_OFFLINE): downloads are disabled"
            )
            return
        busy = self.busy_ids()
        for e in entries:
            if e.id not in busy and e.id not in self.installed:
                busy.add(e.id)
                self._submit("download", e, DownloadRequest(e.id), f"Download {e.name}")
        self.populate()

    @Slot()
    def cancel_downloads(self) -> None:
        """Cancel this panel's downloads and imports, queued and running."""
        for job_id in self._jobs_of("download", "import"):
            self.host.worker.cancel(job_id)
        self.populate()

    # -- worker events (only this panel's jobs) ----------------------------------------------
    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        kind, subject = self.jobs.get(job_id, (None, None))
        if kind in ("download", "import"):
            name = subject.name if kind == "download" else Path(subject).name
            self._show_progress(True)
            self.progress_bar.setValue(0)
            self.progress_label.setText(f"{name}: starting…")
            self.populate()

    @Slot(int, "qint64", "qint64")
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        kind, _ = self.jobs.get(job_id, (None, None))
        if kind not in ("download", "import"):
            return
        job = self.host.worker.job(job_id)
        self.progress_bar.setValue(int(1000 * step / total) if total > 0 else 0)
        if job is not None and job.message:
            self.progress_label.setText(job.message)

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        if job_id not in self.jobs:
            return
        kind, subject = self.jobs.pop(job_id)
        extra = getattr(event, "extra", None) or {}
        if kind == "scan":
            self._scan = None
            self._on_scanned(
                extra.get("installed", {}), extra.get("imported", []), extra.get("found", [])
            )
        elif kind == "download":
            self.installed[subject.id] = str(extra.get("path", ""))
            self.status_label.setText(f"{subject.id} installed")
        elif kind == "import":
            rec = extra["imported"]
            self.status_label.setText(f"Imported {rec.name}: {rec.description}")
            self.host.show_status(f"Imported {rec.name}: {rec.description}")
        elif kind == "remove":
            self.installed.pop(subject, None)
            name = Path(subject).name
            freed = int(extra.get("freed", 0))
            self.status_label.setText(f"Removed {name} ({format_size(freed)} freed)")
        self._job_ended(kind)

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, message: str, detail: str) -> None:
        # This panel reports its jobs' failures (REPORTS_FAILURES: the window's jobs room
        # shows everyone else's). No network: one message and the download queue stops.
        if job_id not in self.jobs:
            return
        kind, subject = self.jobs.pop(job_id)
        job = self.host.worker.job(job_id)  # readable while its end is delivered
        if kind == "scan":
            self._scan = None
        if kind == "download" and job is not None and job.error_kind == "network":
            self._no_network(subject, message, detail)
        else:
            self.status_label.setText(message)
            self.host.show_error(message, detail)
        self._job_ended(kind)

    def _no_network(self, entry: Entry, message: str, detail: str) -> None:
        """A download could not reach its server: cancel the other downloads (queued ones
        never start) and say it once, with what to do instead."""
        others = self._jobs_of("download")
        names = [self.jobs[j][1].name for j in others]
        self._stopping.update(others)
        for job_id in others:
            self.host.worker.cancel(job_id)
        stopped = entry.name
        if names:
            n = len(names)
            stopped += f" and {n} more download{'s' if n > 1 else ''} ({', '.join(names)})"
        text = f"No network: {stopped} stopped.\n\n{NO_NETWORK_HELP}"
        self.status_label.setText(f"No network: downloads stopped. {NO_NETWORK_HELP}")
        self.host.show_error(text, f"{message}\n{detail}".strip())

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        if job_id not in self.jobs:
            return
        kind, subject = self.jobs.pop(job_id)
        if job_id in self._stopping:  # stopped for want of a network: said once already
            self._stopping.discard(job_id)
        elif kind == "scan":
            self._scan = None
        elif kind == "download":
            self.status_label.setText(f"{subject.id}: download cancelled (it resumes next time)")
        elif kind == "import":
            self.status_label.setText(f"Import of {Path(subject).name} cancelled")
        self._job_ended(kind)

    def _job_ended(self, kind: str) -> None:
        if not self._jobs_of("download", "import"):
            self._show_progress(False)
        if kind == "scan":
            if self._rescan:
                self._rescan = False
                self.refresh()
        elif kind in ("download", "import", "remove"):
            self.populate()
            self.refresh()
        self.update_buttons()

    # -- remove ----------------------------------------------------------------------------
    @Slot()
    def remove_selected(self) -> None:
        """Delete the selected downloads and imported files (RemoveModelRequests)."""
        entries = [e for e in self.selected_entries() if e.id in self.installed]
        files = self.selected_imported()
        names = [e.name for e in entries] + [Path(f).name for f in files]
        if not names or not self.confirm("Remove models", f"Delete {', '.join(names)}?"):
            return
        for name in [e.id for e in entries] + files:
            self._submit("remove", name, RemoveModelRequest(name), f"Remove {Path(name).name}")

    # -- import ----------------------------------------------------------------------------
    @Slot()
    def choose_import(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import model files", "", MODEL_FILTER)
        if paths:
            self.import_files(paths)

    def import_files(self, paths: list[str]) -> list[int | None]:
        """Queue an ImportModelRequest per file; returns the job ids."""
        self.status_label.setText(f"Importing {', '.join(Path(p).name for p in paths)}…")
        return [
            self._submit("import", str(p), ImportModelRequest(str(p)), f"Import {Path(p).name}")
            for p in paths
        ]

    # -- user folders ----------------------------------------------------------------------
    @Slot()
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        """Remember ``folder`` in models.json (searched for installed models) and rescan."""
        from studio.engine.models import store

        folders = [f for f in store.load_settings().get("folders", []) if isinstance(f, str)]
        if folder not in folders:
            store.update_settings(folders=[*folders, folder])
        self.status_label.setText(f"Looking for models in {folder}…")
        self._added_folder = folder
        self.refresh()

    def _report_folder(self, folder: str) -> None:
        """Say what the scan found in the folder just added, or why nothing."""
        text = folder_report(folder, self.found, self.catalog, self.installed)
        self.status_label.setText(text)
        self.host.show_status(text)

    # -- first run -------------------------------------------------------------------------
    def maybe_offer_starter(self) -> bool:
        """Offer the starter set once (remembered in models.json), only when online and
        when none of it is installed yet. Returns True if the dialog was shown."""
        from studio.engine.models import store

        if store.load_settings().get("starter_offered") or self.offline():
            return False
        starter = [e for e in self.catalog.starter_set() if e.id not in self.installed]
        if not starter or len(starter) < len(self.catalog.starter_set()):
            return False  # the user already has some of it: don't nag
        self.starter_dialog = StarterDialog(starter, self, self.catalog, self.installed)
        self.starter_dialog.accepted.connect(self._on_starter_accepted)
        self.starter_dialog.rejected.connect(self._on_starter_rejected)
        self.starter_dialog.show()
        return True

    @Slot()
    def _on_starter_accepted(self) -> None:
        from studio.engine.models import store

        store.update_settings(starter_offered=True)
        dialog = self.starter_dialog
        self.starter_dialog = None
        if dialog is not None:
            self.download(dialog.entries)
            dialog.deleteLater()

    @Slot()
    def _on_starter_rejected(self) -> None:
        from studio.engine.models import store

        store.update_settings(starter_offered=True)
        dialog = self.starter_dialog
        self.starter_dialog = None
        self.status_label.setText(
            "Starter models not downloaded; pick models here and press Download any time"
        )
        if dialog is not None:
            dialog.deleteLater()

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel this panel's jobs (the window shuts the worker down)."""
        for job_id in list(self.jobs):
            self.host.worker.cancel(job_id)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)
