"""The contract between the main window and feature panels (inpaint, control/pose, upscale,
model manager, ...). A panel is a QWidget in ``studio/ui/panels/<name>.py`` whose constructor
takes a ``Host``; the main window implements Host and docks the panel. Panels never import
torch: they build engine requests (studio.engine.jobs.requests) and submit them through the host's
worker, and put results on the canvas through undoable host calls.

The window's own rooms (``documents.Documents``, ``jobs.Jobs``) are given the window as their
Host too, so what they use of it is declared here as well.

A panel may also define these optional hooks, which the window calls when present:
``set_shown(bool)`` (its dock became the visible tab or stopped being it: live previews),
``shutdown()`` (the window closes: stop its threads) and, on the Generate panel,
``apply_parameters(meta: dict)`` (an opened PNG's generation parameters, when the user agrees).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance
    from PySide6.QtGui import QImage, QUndoCommand
    from PySide6.QtWidgets import QWidget

    from studio.ui.document_model import DocumentModel
    from studio.ui.settings import Settings
    from studio.ui.worker import Worker


class Host(Protocol):
    """Everything a panel may use. Implemented by ``studio.ui.main_window.MainWindow`` (the
    shell answers each call itself or from the room that holds it: ``worker`` is the jobs
    room's, ``maybe_save`` and ``open_image_document`` the documents room's, ``add_panel``
    the docks'). Panels call these directly (no ``getattr`` probing), so a test host
    implements what its panel uses (``FakeHost`` in tests/ui/test_models_panel.py and
    tests/ui/test_control_panel.py); tests/ui/test_ui_host.py checks the window has all."""

    #: The document and its undo stack (signals: structure_changed, pixels_changed,
    #: selection_changed, active_changed, document_replaced, history_changed).
    model: DocumentModel
    #: The typed settings the panel models persist themselves through.
    settings: Settings
    #: The docked panels by title ("Generate", "Models", ...).
    panels: dict[str, QWidget]
    #: Signal, emitted (by ``models_changed``) when installed models changed: model pickers
    #: connect to it and list them again, so downloads and imports show at once.
    models_updated: SignalInstance

    # The background worker: ``submit(request) -> job_id``, ``cancel(job_id)``, and Qt
    # signals started(int), progress(int, int, int), preview(int, QImage, object region),
    # finished(int, object Finished event), failed(int, str, str), cancelled(int).
    @property
    def worker(self) -> Worker: ...

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the document; (0, 0) when there is none."""

    def composite(self) -> np.ndarray | None:
        """The visible image layers flattened to RGBA uint8 (H, W, 4), or None if empty."""

    def active_layer_image(self) -> np.ndarray | None:
        """RGBA uint8 of the current layer, or None."""

    def mask(self) -> np.ndarray | None:
        """The mask layer as (H, W) uint8 (255 = selected), or None if it is empty."""

    def selection_rect(self) -> tuple[int, int, int, int]:
        """The generation region (x, y, w, h): the selection, or the whole image."""

    def add_layer(
        self,
        image: np.ndarray,
        name: str,
        kind: str = "image",
        offset: tuple[int, int] = (0, 0),
        metadata: dict | None = None,
    ) -> None:
        """Add a layer as one undoable step. ``kind``: "image", "control" or "pose". The
        active layer (the brush's target) does not change."""

    def set_mask(self, mask: np.ndarray, text: str = "Edit mask") -> None:
        """Replace the mask layer's pixels as one undoable step."""

    def push_command(self, command: QUndoCommand) -> None:
        """Push (and so execute) an undo command on the document's undo stack."""

    def show_error(self, message: str, detail: str = "") -> None:
        """Non-modal error message with optional details; the app stays usable."""

    def show_preview(self, image: np.ndarray, region: tuple[int, int, int, int]) -> None:
        """Paint a temporary overlay (e.g. a live Canny preview) at region; clear_preview()
        removes it."""

    def clear_preview(self) -> None: ...

    def show_staged(self, image: QImage, region: tuple[int, int, int, int]) -> None:
        """Show a staged result (not yet a layer) in place; clear_staged() removes it."""

    def clear_staged(self) -> None: ...

    def add_panel(self, title: str, widget: QWidget) -> None:
        """Dock a panel (tabbed with the others on the right side)."""

    def show_status(self, text: str, ms: int = 6000) -> None:
        """A transient message in the status bar."""

    def maybe_save(self) -> bool:
        """Ask about unsaved changes: True to go on (saved or discarded), False to stay."""

    def open_image_document(self, image: np.ndarray, name: str, metadata: dict | None) -> bool:
        """Open ``image`` as a new document (never replacing unsaved work without asking)."""

    def models_changed(self) -> None:
        """Installed models changed (download, import, scan): every model list refreshes."""
