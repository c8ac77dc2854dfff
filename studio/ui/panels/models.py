"""The model manager panel: installed and available models (sizes, licences), downloads with
progress (bytes, speed, ETA) and cancel, remove, import of model files, and a first-run offer
of the starter set that downloads only after the user agrees.

Downloads, scans and imports run in their own QThreads (never on the GUI thread and never in
the generation worker, which runs one job at a time). No torch here: the catalog, store,
downloader and importer are torch-free at import time (identifying an upscaler file imports
spandrel inside the import thread).

For the app shell: :func:`import_model_file(host, path)` imports a dropped model file and
:func:`is_model_file(path)` tells model files from images.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.cancel import CancelToken
from studio.core.catalog import Catalog, Entry, format_size, load_catalog
from studio.core.errors import JobCancelled, StudioError
from studio.ui.panels.starter_dialog import StarterDialog

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".sft")
MODEL_FILTER = "Model files (*.safetensors *.ckpt *.pth *.pt *.bin);;All files (*)"
ROLE_ID = Qt.ItemDataRole.UserRole
ROLE_IMPORTED = Qt.ItemDataRole.UserRole + 1


def is_model_file(path: str | Path) -> bool:
    """True for files the model importer handles (so a drop can be routed here)."""
    return Path(path).suffix.lower() in MODEL_SUFFIXES


# ------------------------------------------------------------------------------------------
# Background jobs (QThreads emitting queued signals to the GUI thread)


class DownloadThread(QThread):
    """Downloads entries one after another; cancel() stops at the next chunk."""

    progress = Signal(object)  # studio.engine.models.download.DownloadProgress
    entry_done = Signal(str, str)  # id, path
    entry_failed = Signal(str, str, str)  # id, message, detail
    entry_cancelled = Signal(str)

    def __init__(self, entries: list[Entry], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.entries = list(entries)
        self.token = CancelToken()

    def cancel(self) -> None:
        self.token.cancel()

    def run(self) -> None:
        from studio.engine.models import download

        for entry in self.entries:
            if self.token.cancelled:
                self.entry_cancelled.emit(entry.id)
                continue
            try:
                path = download.download(entry, token=self.token, progress=self.progress.emit)
            except JobCancelled:
                self.entry_cancelled.emit(entry.id)
            except StudioError as e:
                self.entry_failed.emit(entry.id, e.message, e.detail)
            except Exception as e:  # noqa: BLE001 - never kill the app from a thread
                log.exception("download of %s failed", entry.id)
                self.entry_failed.emit(entry.id, f"Download of {entry.id} failed: {e}", repr(e))
            else:
                self.entry_done.emit(entry.id, str(path))


class ScanThread(QThread):
    """Finds what is installed (file system only, no network)."""

    scanned = Signal(object, object)  # {id: path}, [ImportedModel]

    def __init__(self, catalog: Catalog, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog

    def run(self) -> None:
        from studio.engine.models import importer, store

        found: dict[str, str] = {}
        for entry in self.catalog:
            try:
                path = store.find_installed(entry)
            except Exception:  # noqa: BLE001 - a broken cache entry is "not installed"
                path = None
            if path is not None:
                found[entry.id] = str(path)
        self.scanned.emit(found, importer.list_imported())


class ImportThread(QThread):
    """Identifies and copies model files into Studio's models folder."""

    imported = Signal(object)  # ImportedModel
    import_failed = Signal(str, str, str)  # file, message, detail

    def __init__(self, paths: list[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = list(paths)

    def run(self) -> None:
        from studio.engine.models import importer

        for p in self.paths:
            try:
                self.imported.emit(importer.import_file(p))
            except StudioError as e:
                self.import_failed.emit(p, e.message, e.detail)
            except Exception as e:  # noqa: BLE001
                log.exception("import of %s failed", p)
                self.import_failed.emit(p, f"Could not import {Path(p).name}: {e}", repr(e))


class _ThreadKeeper(QObject):
    """Holds running threads (unparented, so closing a panel never destroys a running
    QThread) until they finish; on application quit cancels downloads and waits."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[QThread] = set()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        # Also at interpreter exit (scripts/tests that never run app.exec()): a QThread
        # destroyed while running aborts the process.
        atexit.register(self._shutdown_at_exit)

    def _shutdown_at_exit(self) -> None:
        with contextlib.suppress(RuntimeError):  # C++ objects already gone
            self.shutdown()

    def keep(self, thread: QThread) -> None:
        self.threads.add(thread)
        thread.finished.connect(self.release)

    @Slot()
    def release(self) -> None:
        thread = self.sender()
        if thread in self.threads:
            self.threads.discard(thread)
            thread.wait()  # finished() is emitted just before run() has fully returned
            thread.deleteLater()

    @Slot()
    def shutdown(self, timeout_ms: int = 10000) -> None:
        for t in list(self.threads):
            if isinstance(t, DownloadThread):
                t.cancel()
        for t in list(self.threads):
            t.wait(timeout_ms)


_keeper: _ThreadKeeper | None = None


def keeper() -> _ThreadKeeper:
    global _keeper
    if _keeper is None:
        _keeper = _ThreadKeeper()
    return _keeper


# ------------------------------------------------------------------------------------------
# First-run dialog


# ------------------------------------------------------------------------------------------
# The panel


class ModelsPanel(QWidget):
    """Installed/available models, downloads, remove, import; docked by the main window."""

    FILTERS = ("All", "Installed", "Available", "Starter set")

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
        self.download_thread: DownloadThread | None = None
        self.queue: list[Entry] = []
        self._threads: set[QThread] = set()
        self._scan: ScanThread | None = None
        self._rescan = False
        self._first_scan_done = False
        self.starter_dialog: StarterDialog | None = None
        self.confirm = self._confirm  # replaceable in tests

        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(self.FILTERS)
        self.filter_combo.currentIndexChanged.connect(self.populate)
        top.addWidget(self.filter_combo, 1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Kind", "Base", "Size", "Licence", "Status"])
        self.tree.setRootIsDecorated(True)
        self.tree.setAlternatingRowColors(True)
        # Fits the dock without sideways scrolling: the name stretches (elided, the full
        # name, id, kind, base and licence are in the tooltip); Kind and Base are hidden
        # (the View > columns of a wider dock can show them); Licence is elided.
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (3, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(4, 84)
        header.setMinimumSectionSize(40)
        self.tree.setColumnHidden(1, True)
        self.tree.setColumnHidden(2, True)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.itemSelectionChanged.connect(self.update_buttons)
        layout.addWidget(self.tree, 1)

        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info_label)

        buttons = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download_selected)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Add a .safetensors/.ckpt/.pth model file you have")
        self.import_button.clicked.connect(self.choose_import)
        self.folder_button = QPushButton("Add folder…")
        self.folder_button.setToolTip(
            "Also use models from a folder of yours (files named like catalog models, "
            "diffusers folders named by catalog id, LoRAs in a lora/ subfolder)"
        )
        self.folder_button.clicked.connect(self.choose_folder)
        for b in (self.download_button, self.remove_button, self.import_button, self.folder_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)

        progress_row = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        progress_row.addWidget(self.progress_bar, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_downloads)
        progress_row.addWidget(self.cancel_button)
        layout.addLayout(progress_row)
        self.progress_label = QLabel()
        layout.addWidget(self.progress_label)
        self.status_label = QLabel(catalog_error)
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

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

    def _keep(self, thread: QThread) -> None:
        self._threads.add(thread)
        thread.finished.connect(self._thread_finished)
        keeper().keep(thread)

    @Slot()
    def _thread_finished(self) -> None:
        thread = self.sender()
        self._threads.discard(thread)
        if thread is self._scan:
            self._scan = None
            if self._rescan:
                self._rescan = False
                self.refresh()
        if isinstance(thread, DownloadThread) and thread is self.download_thread:
            self.download_thread = None
            self._show_progress(False)
            if self.queue:
                self._start_next_download()
            self.update_buttons()

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
        ids = {e.id for e in self.queue}
        if self.download_thread is not None:
            ids |= {e.id for e in self.download_thread.entries}
        return ids

    # -- listing ---------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Rescan what is installed (in a thread)."""
        if self._scan is not None:
            self._rescan = True
            return
        self._scan = ScanThread(self.catalog)
        self._scan.scanned.connect(self._on_scanned)
        self._keep(self._scan)
        self._scan.start()

    @Slot(object, object)
    def _on_scanned(self, installed: dict, imported: list) -> None:
        # A rescan follows a download, import, removal or an added folder (which changes no
        # catalog or import record): tell every picker.
        changed = self._first_scan_done
        self.installed = dict(installed)
        self.imported = list(imported)
        self.populate()
        if changed:  # downloaded, imported, removed or a folder added: every picker follows
            self.host.models_changed()
        if not self._first_scan_done:
            self._first_scan_done = True
            self.maybe_offer_starter()

    @Slot()
    def populate(self) -> None:
        selected = {i.data(0, ROLE_ID) for i in self.tree.selectedItems()}
        self.tree.clear()
        mode = self.filter_combo.currentText()
        busy = self.busy_ids()
        groups = {
            "installed": QTreeWidgetItem(self.tree, ["Installed"]),
            "available": QTreeWidgetItem(self.tree, ["Available"]),
            "imported": QTreeWidgetItem(self.tree, ["Imported files"]),
        }
        for entry in self.catalog:
            is_installed = entry.id in self.installed
            if mode == "Installed" and not is_installed:
                continue
            if mode == "Available" and is_installed:
                continue
            if mode == "Starter set" and not entry.starter:
                continue
            if is_installed:
                status = "installed"
            elif entry.id in busy:
                status = "downloading" if self._current_id() == entry.id else "queued"
            else:
                status = "starter" if entry.starter else ""
            parent = groups["installed" if is_installed else "available"]
            item = QTreeWidgetItem(
                parent,
                [
                    entry.name,
                    entry.kind,
                    "/".join(entry.bases) or "-",
                    format_size(entry.size),
                    entry.license,
                    status,
                ],
            )
            item.setData(0, ROLE_ID, entry.id)
            tip = (
                f"{entry.name} ({entry.id})\n{entry.kind}, {'/'.join(entry.bases) or '-'}, "
                f"{entry.license}\n{entry.source}"
            )
            if entry.description:
                tip += f"\n{entry.description}"
            if is_installed:
                tip += f"\n{self.installed[entry.id]}"
            item.setToolTip(0, tip)
            item.setToolTip(4, entry.license)
            if entry.id in selected:
                item.setSelected(True)
        if mode in ("All", "Installed"):
            for rec in self.imported:
                item = QTreeWidgetItem(
                    groups["imported"],
                    [rec.name, rec.kind, rec.base or "-", format_size(rec.size), "", "imported"],
                )
                item.setData(0, ROLE_IMPORTED, rec.path)
                item.setToolTip(0, f"{rec.description}\n{rec.path}")
        for group in groups.values():
            group.setFlags(group.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            group.setExpanded(True)
            group.setHidden(group.childCount() == 0)
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
        t = self.download_thread
        return getattr(t, "current_id", None) if t is not None else None

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
        """Queue downloads (the user already agreed). Runs in a DownloadThread."""
        if self.offline():
            self._error(
                "Offline mode is on (STUDIO_OFFLINE/HF_HUB_OFFLINE): downloads are disabled"
            )
            return
        busy = self.busy_ids()
        self.queue += [e for e in entries if e.id not in busy and e.id not in self.installed]
        if self.download_thread is None and self.queue:
            self._start_next_download()
        self.populate()

    def _start_next_download(self) -> None:
        entry = self.queue.pop(0)
        thread = DownloadThread([entry])
        thread.current_id = entry.id
        thread.progress.connect(self._on_progress)
        thread.entry_done.connect(self._on_download_done)
        thread.entry_failed.connect(self._on_download_failed)
        thread.entry_cancelled.connect(self._on_download_cancelled)
        self.download_thread = thread
        self._keep(thread)
        self._show_progress(True)
        self.progress_label.setText(f"{entry.name}: starting…")
        thread.start()

    @Slot(object)
    def _on_progress(self, p) -> None:
        self.progress_bar.setValue(int(p.fraction * 1000))
        self.progress_label.setText(p.line())

    @Slot(str, str)
    def _on_download_done(self, model_id: str, path: str) -> None:
        self.installed[model_id] = path
        self.status_label.setText(f"{model_id} installed")
        self.populate()
        self.refresh()

    @Slot(str, str, str)
    def _on_download_failed(self, model_id: str, message: str, detail: str) -> None:
        self._error(message, detail)
        self.populate()

    @Slot(str)
    def _on_download_cancelled(self, model_id: str) -> None:
        self.status_label.setText(f"{model_id}: download cancelled (it resumes next time)")
        self.populate()

    @Slot()
    def cancel_downloads(self) -> None:
        self.queue.clear()
        if self.download_thread is not None:
            self.download_thread.cancel()
        self.populate()

    # -- remove ----------------------------------------------------------------------------
    @Slot()
    def remove_selected(self) -> None:
        from studio.engine.models import importer, store

        entries = [e for e in self.selected_entries() if e.id in self.installed]
        files = self.selected_imported()
        names = [e.name for e in entries] + [Path(f).name for f in files]
        if not names or not self.confirm("Remove models", f"Delete {', '.join(names)}?"):
            return
        freed = 0
        for e in entries:
            try:
                freed += store.remove(e)
            except StudioError as err:
                self._error(err.message, err.detail)
            self.installed.pop(e.id, None)
        for f in files:
            try:
                freed += importer.remove_imported(f)
            except StudioError as err:
                self._error(err.message, err.detail)
        self.status_label.setText(f"Removed {', '.join(names)} ({format_size(freed)} freed)")
        self.refresh()

    # -- import ----------------------------------------------------------------------------
    @Slot()
    def choose_import(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import model files", "", MODEL_FILTER)
        if paths:
            self.import_files(paths)

    def import_files(self, paths: list[str]) -> ImportThread:
        thread = ImportThread([str(p) for p in paths])
        thread.imported.connect(self._on_imported)
        thread.import_failed.connect(self._on_import_failed)
        self._keep(thread)
        self.status_label.setText(f"Importing {', '.join(Path(p).name for p in paths)}…")
        thread.start()
        return thread

    @Slot(object)
    def _on_imported(self, rec) -> None:
        self.status_label.setText(f"Imported {rec.name}: {rec.description}")
        self.host.show_status(f"Imported {rec.name}: {rec.description}")
        self.refresh()

    @Slot(str, str, str)
    def _on_import_failed(self, path: str, message: str, detail: str) -> None:
        self._error(message, detail)

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
        self.status_label.setText(f"Also looking for models in {folder}")
        self.refresh()

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
    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Cancel downloads and wait for this panel's threads (call before the app quits)."""
        self.queue.clear()
        if self.download_thread is not None:
            self.download_thread.cancel()
        for t in list(self._threads):
            t.wait(timeout_ms)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)


def import_model_file(host: Any, path: str | Path) -> ImportThread:
    """Import a model file dropped on the window: identify it (nothing in it runs) and copy it
    into Studio's models folder, in a background thread. Errors go to ``host.show_error``.

    Uses the docked Models panel when there is one (its list updates), else a standalone
    thread."""
    panel = host.panels.get("Models")
    if isinstance(panel, ModelsPanel):
        return panel.import_files([str(path)])
    thread = ImportThread([str(path)])
    reporter = _HostReporter(host)
    thread.reporter = reporter  # lives as long as the thread
    thread.imported.connect(reporter.on_imported)
    thread.import_failed.connect(reporter.on_failed)
    keeper().keep(thread)
    thread.start()
    return thread


class _HostReporter(QObject):
    """GUI-thread receiver for a standalone import (slots must be QObject methods)."""

    def __init__(self, host: Any) -> None:
        super().__init__()
        self.host = host

    @Slot(object)
    def on_imported(self, rec) -> None:
        self.host.show_status(f"Imported {rec.name}: {rec.description}")

    @Slot(str, str, str)
    def on_failed(self, path: str, message: str, detail: str) -> None:
        self.host.show_error(message, detail)
