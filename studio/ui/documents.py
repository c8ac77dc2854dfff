"""Documents: new, open (images and projects), import as layers, drop and paste, save,
export, the recent-files menu, and autosave with crash recovery.

``Documents`` is one room of the window shell (``main_window.MainWindow``). It owns its
``Autosave`` (timer, change counter, recovery file) and the secondary windows it opens; it
talks to the rest through the ``Host`` contract only (``model``, ``settings``, ``panels``,
``composite``, ``show_error``, ``show_status``, ``worker`` for dropped model files), asks its
questions through the ``ask`` callable it is given (tests script the answers), and shows the
document's name in the title of the window it is given. ``title_changed`` tells the shell.

Autosave (``autosave.Autosave``) writes the recovery file in the background while the
document has unsaved changes; ``offer_recovery`` offers it back after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPoint, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget
from shiboken6 import isValid

from studio.ui.autosave import Autosave
from studio.ui.shareable import shareable

if TYPE_CHECKING:
    from studio.ui.host import Host

#: (title, text, buttons, default) -> the button chosen; QMessageBox.question by default.
Ask = Callable[[str, str, Any, Any], Any]

log = logging.getLogger(__name__)

EXTENSION = ".studio"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif)"
PROJECT_FILTER = f"Studio project (*{EXTENSION})"
EXPORT_FILTER = "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)"

# Imported by import_heavy() (when the room is made, as the window is built) so the window
# frame can be on screen before numpy & co. load.
np: Any = None
recovery: Any = None
Document: Any = None
load_project: Any = None
save_project: Any = None
StudioError: Any = None
array_from_qimage: Any = None
qimage_from_array: Any = None


def import_heavy() -> None:
    global np, recovery, Document, load_project, save_project, StudioError
    global array_from_qimage, qimage_from_array
    if np is not None:
        return
    import numpy

    from studio.core import document as _document
    from studio.core import recovery as _recovery
    from studio.core.errors import StudioError as _StudioError
    from studio.ui import qimage as _qimage

    assert _document.EXTENSION == EXTENSION
    np, recovery, StudioError = numpy, _recovery, _StudioError
    Document, load_project = _document.Document, _document.load_project
    save_project = _document.save_project
    array_from_qimage, qimage_from_array = _qimage.array_from_qimage, _qimage.qimage_from_array


class Documents(QObject):
    """Open, save, export, autosave and recovery of one window's document."""

    #: The window title was updated (the document was replaced, saved or changed).
    title_changed = Signal()

    def __init__(
        self,
        window: QWidget,
        host: Host,
        ask: Ask | None = None,
        new_window: Callable[[], Any] | None = None,
        autosave: bool = True,
    ) -> None:
        """``window``: parent of the dialogs, shows the title. ``new_window``: makes the
        window ``open_image_document`` fills (a shell with a ``documents`` room and ``ask``).
        ``autosave``: write the recovery file (a secondary window leaves it to the first)."""
        super().__init__(window)
        import_heavy()
        self._window = window
        self.host = host
        self.model = host.model
        self.settings = host.settings
        self.ask: Ask = ask or self.question
        self._new_window = new_window
        self.windows: list[Any] = []  # the secondary windows opened from this one
        #: The recovery file, written on a timer (``autosave.Autosave``).
        self.autosaver = Autosave(self.model, self.settings.autosave_seconds, self, autosave)
        #: The file name of the image the document was opened from (its title until saved).
        self.image_name: str | None = None
        self._opening: str | None = None  # the image name of the document being opened
        self.model.document_replaced.connect(self._on_replaced)  # before update_title
        self.model.undo.cleanChanged.connect(self.update_title)
        self.model.document_replaced.connect(self.update_title)
        self._autosaves = autosave

    @Slot()
    def update_title(self) -> None:
        """The window title: the document's name, ``*`` while it has unsaved changes."""
        window = self._window
        if not isValid(window):  # the window is being deleted (its undo stack clears itself)
            return
        name = Path(self.model.path).name if self.model.path else self.image_name or "Untitled"
        if self.model.doc.is_empty and not self.model.path:
            name = "Studio"
            window.setWindowTitle("Studio")
        else:
            window.setWindowTitle(f"{name}[*] — Studio")
        window.setWindowModified(self.model.dirty)
        self.title_changed.emit()

    @Slot()
    def _on_replaced(self) -> None:
        self.image_name, self._opening = self._opening, None

    def question(self, title: str, text: str, buttons, default) -> QMessageBox.StandardButton:
        """The default ``ask``: a modal question box over the window."""
        return QMessageBox.question(self._window, title, text, buttons, default)

    def close(self) -> None:
        """The window closes: no more autosaves; the first window's recovery file goes."""
        self.autosaver.stop()
        if self._autosaves:
            self.autosaver.clear()

    def maybe_save(self) -> bool:
        """Prompt about unsaved changes. True: go on (saved or discarded); False: stay."""
        if not self.model.dirty or self.model.doc.is_empty:
            return True
        SB = QMessageBox.StandardButton
        answer = self.ask(
            "Unsaved changes",
            "The document has unsaved changes. Save them first?",
            SB.Save | SB.Discard | SB.Cancel,
            SB.Save,
        )
        if answer == SB.Save:
            return self.save()
        return answer == SB.Discard

    def _start_dir(self) -> str:
        return self.settings.last_dir or str(Path.home())

    def _remember(self, path: str) -> None:
        self.settings.last_dir = str(Path(path).parent)
        self.settings.push_recent("recent_files", str(Path(path).resolve()))

    @Slot()
    def new_document(self) -> None:
        if self.maybe_save():
            self.model.replace(Document())
            self.autosaver.clear()

    @Slot()
    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self._window,
            "Open",
            self._start_dir(),
            f"Images and projects (*{EXTENSION} *.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff "
            f"*.gif);;{PROJECT_FILTER};;{IMAGE_FILTER}",
        )
        if paths:
            self.open_paths(paths)

    @Slot()
    def import_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self._window, "Import", self._start_dir(), IMAGE_FILTER
        )
        if paths:
            self.import_images(paths)

    def open_paths(self, paths: list[str]) -> bool:
        """Open a project, or images as a new document (the first one sets the size; the
        others become layers). Asks about unsaved changes first."""
        paths = [str(p) for p in paths]
        projects = [p for p in paths if p.lower().endswith(EXTENSION)]
        if projects:
            return self.open_project(projects[0])
        loaded, errors = self._load_images(paths)
        self._report_load_errors(errors)
        if not loaded:
            return False
        if not self.maybe_save():
            return False
        (first_path, first), *rest = loaded
        doc = Document.from_image(first, Path(first_path).stem)
        for p, image in rest:
            doc.layers.insert(len(doc.layers) - 1, _layer(image, Path(p).stem))
        self._opening = Path(first_path).name  # the title: "photo.jpg — Studio"
        self.model.replace(doc)
        for p, _ in loaded:
            self._remember(p)
        self._offer_parameters([p for p, _ in loaded])
        return True

    def open_project(self, path: str) -> bool:
        try:
            doc = load_project(path)
        except StudioError as e:
            self.host.show_error(e.message, e.detail)
            return False
        if not self.maybe_save():
            return False
        self.model.replace(doc, path=str(path))
        self._remember(path)
        self.host.show_status(f"Opened {Path(path).name}")
        return True

    def import_images(self, paths: list[str]) -> int:
        """Add images as layers (one undo step). An empty document takes the first's size."""
        loaded, errors = self._load_images([str(p) for p in paths])
        self._report_load_errors(errors)
        if not loaded:
            return 0
        self.model.undo.beginMacro(
            f"Add {len(loaded)} layers" if len(loaded) > 1 else f"Add “{Path(loaded[0][0]).stem}”"
        )
        try:
            for p, image in loaded:
                self.model.add_layer(image, Path(p).stem)
        finally:
            self.model.undo.endMacro()
        self._offer_parameters([p for p, _ in loaded])
        return len(loaded)

    def _load_images(self, paths: list[str]) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
        loaded, errors = [], []
        for p in paths:
            try:
                loaded.append((p, _imageio().load_image(p, mode="RGBA")))
            except StudioError as e:
                errors.append(e.message)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{Path(p).name}: {type(e).__name__}: {e}")
        return loaded, errors

    def _report_load_errors(self, errors: list[str]) -> None:
        if errors:
            head = errors[0] if len(errors) == 1 else f"{len(errors)} files could not be opened."
            self.host.show_error(head, "\n".join(errors))

    @Slot(list)
    def on_files_dropped(self, paths: list[str]) -> None:
        from studio.ui.model_files import import_model_file, is_model_file

        models = [p for p in paths if is_model_file(p)]
        for p in models:  # checkpoints, LoRAs, upscalers...: identified and imported
            import_model_file(self.host, p)
        paths = [p for p in paths if not is_model_file(p)]
        if not paths:
            return
        if any(p.lower().endswith(EXTENSION) for p in paths) or self.model.doc.is_empty:
            self.open_paths(paths)
        else:
            self.import_images(paths)

    @Slot(QImage)
    def on_image_dropped(self, image: QImage) -> None:
        self._add_qimage(image, "Dropped image")

    def _add_qimage(self, image: QImage, name: str) -> None:
        array = array_from_qimage(image, "RGBA")
        if self.model.doc.is_empty:
            self.model.replace(Document.from_image(array, name))
        else:
            self.model.add_layer(array, name)

    def _offer_parameters(self, paths: list[str]) -> None:
        """A PNG made by Studio or AUTOMATIC1111: offer to load its generation parameters."""
        panel = self.host.panels.get("Generate")
        if panel is None or not hasattr(panel, "apply_parameters"):
            return
        try:
            from studio.core.metadata import read_metadata
        except ImportError:
            return
        for p in paths:
            try:
                meta = read_metadata(p)
            except StudioError:
                continue
            if not meta.get("source") or not meta.get("prompt"):
                continue
            SB = QMessageBox.StandardButton
            who = "Studio" if meta["source"] == "studio" else "AUTOMATIC1111"
            answer = self.ask(
                "Generation parameters",
                f"{Path(p).name} was made by {who}:\n\n“{str(meta.get('prompt'))[:200]}”"
                "\n\nLoad its parameters into the Generate panel?",
                SB.Yes | SB.No,
                SB.Yes,
            )
            if answer == SB.Yes:
                panel.apply_parameters(meta)
            return

    def open_image_document(self, image, name: str, metadata: dict | None = None) -> bool:
        """Open ``image`` as a new, unsaved document in a window of its own: the working
        document is never replaced. The window comes from ``new_window``."""
        if self._new_window is None:
            self.host.show_status("This window cannot open another one")
            return False
        window = self._new_window()
        doc = Document.from_image(image, name)
        doc.layers[0].metadata = dict(metadata or {})
        window.documents.adopt(doc)
        window.ask = self.ask  # the same prompts (tests script them)
        window.resize(self._window.size())
        window.move(self._window.pos() + QPoint(40, 40))
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.destroyed.connect(lambda *_: self._forget_window(window))
        self.windows.append(window)
        window.show()
        self.host.show_status(f"Opened “{name}” in a new window")
        return True

    def adopt(self, doc) -> None:
        """Show ``doc`` (a Document) as this window's new, unsaved document: closing asks."""
        self.model.replace(doc)
        self.model.undo.resetClean()
        self.update_title()

    def _forget_window(self, window) -> None:
        if window in self.windows:
            self.windows.remove(window)

    @Slot()
    def save(self) -> bool:
        if not self.model.path:
            return self.save_as()
        return self.save_to(self.model.path)

    @Slot()
    def save_as(self) -> bool:
        if self.model.doc.is_empty:
            self.host.show_status("Nothing to save")
            return False
        start = self.model.path or str(Path(self._start_dir()) / f"untitled{EXTENSION}")
        path, _ = QFileDialog.getSaveFileName(self._window, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        if not path.lower().endswith(EXTENSION):
            path += EXTENSION
        return self.save_to(path)

    def save_to(self, path: str) -> bool:
        """Save the project to ``path`` (atomically); the document is clean after it."""
        try:
            save_project(self.model.doc, path)
        except StudioError as e:
            self.host.show_error(e.message, e.detail)
            return False
        self.model.path = str(path)
        self.model.undo.setClean()
        self.autosaver.clear()
        self._remember(path)
        self.update_title()
        self.host.show_status(f"Saved {Path(path).name}")
        return True

    @Slot()
    def export_dialog(self) -> None:
        if self.host.composite() is None:
            self.host.show_status("Nothing to export")
            return
        stem = Path(self.model.path).stem if self.model.path else "image"
        path, chosen = QFileDialog.getSaveFileName(
            self._window,
            "Export image",
            str(Path(self._start_dir()) / f"{stem}.png"),
            EXPORT_FILTER,
        )
        if path:
            if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                path += {"JPEG": ".jpg", "WebP": ".webp"}.get(chosen.split()[0], ".png")
            self.export(path)

    def export_metadata(self) -> dict | None:
        """The generation metadata to keep on export: the topmost visible generated layer's."""
        for layer in reversed(self.model.doc.layers):
            if layer.kind == "image" and layer.visible and layer.metadata:
                return layer.metadata
        return None

    def export(self, path: str) -> bool:
        image = self.host.composite()
        if image is None:
            return False
        meta = shareable(self.export_metadata())
        text = None
        if meta:
            text = meta.get("parameters") if isinstance(meta.get("parameters"), str) else None
            if text is None:
                try:
                    from studio.core.metadata import format_parameters

                    text = format_parameters(meta)
                except Exception:  # noqa: BLE001 - metadata is optional on export
                    text = None
        if Path(path).suffix.lower() in (".jpg", ".jpeg") or not image[..., 3].min() < 255:
            image = np.ascontiguousarray(image[..., :3])
        try:
            _imageio().save_image(path, image, parameters=text, studio=meta)
        except StudioError as e:
            self.host.show_error(e.message, e.detail)
            return False
        self.settings.last_dir = str(Path(path).parent)
        self.host.show_status(f"Exported {Path(path).name}")
        return True

    @Slot()
    def copy_image(self) -> None:
        image = self.host.composite()
        if image is None:
            return
        x, y, w, h = self.model.doc.selection or (0, 0, image.shape[1], image.shape[0])
        QGuiApplication.clipboard().setImage(qimage_from_array(image[y : y + h, x : x + w]))
        self.host.show_status("Copied")

    @Slot()
    def paste(self) -> None:
        md = QGuiApplication.clipboard().mimeData()
        if md is not None and md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if paths:
                self.on_files_dropped(paths)
                return
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.host.show_status("The clipboard holds no image")
            return
        self._add_qimage(image, "Pasted")

    def fill_recent(self, menu: QMenu) -> None:
        """List the recent files in ``menu`` (File > Open recent, as it opens)."""
        menu.clear()
        for p in self.settings.recent_files:
            a = menu.addAction(p)
            a.setData(p)
            a.triggered.connect(lambda *_, p=p: self.open_paths([p]))
        if menu.isEmpty():
            menu.addAction("(none)").setEnabled(False)

    def autosave(self, background: bool = True) -> bool:
        """Write the recovery file now if the document changed (``autosave.Autosave``)."""
        return self.autosaver.autosave(background)

    def offer_recovery(self) -> bool:
        """After a crash: offer to restore the autosave of the session that died."""
        # At start-up no autosave of this session exists yet: a file with our own PID is a
        # dead session's whose PID was reused (containers give the same PIDs every launch).
        found = recovery.orphaned_recoveries(own_pid_is_orphan=True)
        if not found:
            return False
        path, source = max(found, key=lambda item: _mtime(item[0]))  # the newest crash
        SB = QMessageBox.StandardButton
        where = f" (from {Path(source).name})" if source else ""
        answer = self.ask(
            "Recover unsaved work",
            f"Studio did not close properly last time. Restore the autosaved document{where}?",
            SB.Yes | SB.No,
            SB.Yes,
        )
        restored = False
        if answer == SB.Yes:
            try:
                doc = load_project(path)
            except StudioError as e:
                kept = recovery.set_aside(path)  # not offered again, but not deleted either
                self.host.show_error(
                    f"The recovery file could not be read: {e.message} (kept as {kept})",
                    e.detail,
                )
                return False
            else:
                self.model.replace(doc, path=None)
                # Unsaved by definition: mark dirty so closing prompts to save.
                self.model.undo.resetClean()
                self.update_title()
                restored = True
        # Only the file the user answered about: other crashed sessions are offered next time.
        recovery.discard(path)
        if restored:
            recovery.write_recovery(self.model.doc, source)
        return restored


def _layer(image, name: str):
    from studio.core.document import Layer, to_rgba

    return Layer(name, "image", to_rgba(image))


def _imageio():
    from studio.core import imageio

    return imageio


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
