"""Select by clicking (SAM 2, Ravi et al. 2024) with the Smart select tool (W) on the canvas.

Picking the tool asks the engine for the image embedding of what the canvas shows, in the
background; each click then runs only SAM 2's prompt decoder on it. A left click adds a
positive point, Alt+click a negative one, a drag draws a box. The candidate shows at once as
an outline with a light tint over the image. Enter makes it the mask, Shift+Enter adds it to
the mask, Alt+Enter subtracts it, each one undo step; Esc drops the points. Edit > Select by
words asks for a phrase ("the dog") and makes every instance the engine finds (Grounding DINO
boxes decoded by SAM 2) the candidate, applied with the same keys.

The newest click wins: while a decode runs, later clicks wait as one pending request, never a
queue. The engine side is ``studio.engine.vision.segment`` (the ``SegmentRequest`` job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QInputDialog

from studio.engine.jobs import SegmentRequest
from studio.ui.job_follower import JobFollower
from studio.ui.mask_view import MaskOutlineItem
from studio.ui.qimage import qimage_from_array

if TYPE_CHECKING:
    from studio.ui.canvas import CanvasView
    from studio.ui.host import Host

TOOL = "smart"
DRAG_PX = 4  # a press and release further apart than this (screen px) is a box
TINT = (40, 160, 255)


class SmartSelect(QObject):
    """The Smart select tool's state: points, box, the candidate mask and its outline."""

    def __init__(
        self, host: Host, canvas: CanvasView, menu=None, parent: QObject | None = None
    ) -> None:
        """``menu``: where Select by words… goes (the Edit menu), if given."""
        super().__init__(parent)
        self.host, self.canvas = host, canvas
        self.jobs = JobFollower(host.worker, self, errors=host.show_error)
        self.jobs.finished.connect(self._on_finished)
        self.jobs.ended.connect(self._on_ended)
        self.points: list[tuple[float, float, int]] = []
        self._words: str | None = None  # the phrase of the last Select by words
        self.box: tuple[float, float, float, float] | None = None
        self.candidate: np.ndarray | None = None
        self._image: np.ndarray | None = None
        self._running: int | None = None  # the job in the engine now
        self._latest: int | None = None  # the newest job submitted: only its mask is shown
        self._pending = False
        self._press: tuple[QPointF, QPointF, bool] | None = None
        self.item = QGraphicsPixmapItem()  # the candidate's tint
        self.item.setZValue(1e6 - 0.6)  # above the layers and the mask, below the rubber band
        self.item.setVisible(False)
        self.ants = MaskOutlineItem()  # and its marching ants
        self.ants.setZValue(1e6 - 0.5)
        canvas.scene().addItem(self.item)
        canvas.scene().addItem(self.ants)
        canvas.click_handler = self
        model = canvas.model
        for signal in (model.pixels_changed, model.structure_changed, model.document_replaced):
            signal.connect(self._forget_image)
        canvas.tool_changed.connect(self._on_tool)
        self.keys: dict[str, QAction] = {}
        for name, key, text in (
            ("replace", "Return", "Use the selection as the mask"),
            ("add", "Shift+Return", "Add the selection to the mask"),
            ("subtract", "Alt+Return", "Subtract the selection from the mask"),
        ):
            act = QAction(text, canvas)
            act.setShortcuts([QKeySequence(key), QKeySequence(key.replace("Return", "Enter"))])
            act.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            act.setEnabled(False)
            act.triggered.connect(getattr(self, f"_{name}"))
            canvas.addAction(act)
            self.keys[name] = act
        # Esc is "Cancel job" for the window; while there are points it drops them instead
        # (the canvas takes the key before the window's shortcut sees it).
        canvas.installEventFilter(self)
        if menu is not None:
            self.add_to(menu)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        kind = event.type()
        if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and (
            event.key() == Qt.Key.Key_Escape
            and (self.points or self.box is not None or self.candidate is not None)
        ):
            if kind == QEvent.Type.KeyPress:
                self._drop()
            event.accept()
            return True
        return super().eventFilter(obj, event)

    def add_to(self, menu) -> None:
        """Edit > Select by words… in ``menu``."""
        self.words_action = QAction("Select by &words…", self)
        self.words_action.setStatusTip("Select every instance of a phrase (“the dog”)")
        self.words_action.triggered.connect(self.ask_words)
        menu.addAction(self.words_action)

    @Slot()
    def ask_words(self) -> None:
        phrase, ok = QInputDialog.getText(
            self.canvas.window(), "Select by words", "What to select (e.g. “the dog”, “sky”):"
        )
        if ok:
            self.select_words(phrase)

    def select_words(self, phrase: str) -> int | None:
        """Every instance of ``phrase`` as the candidate (the Smart select tool is picked so
        the keys apply); None when there is no image or no phrase."""
        phrase = phrase.strip()
        image = self._snapshot()
        if not phrase or image is None:
            return None
        if self.canvas.tool != TOOL:
            self.canvas.set_tool(TOOL)  # embeds first: the words' job queues behind it
        self.points, self.box, self._words = [], None, phrase
        self._running = None  # a running embedding is not waited for: words are new work
        self._submit(SegmentRequest(image=image, text=phrase))
        return self._latest

    # -- the canvas's mouse, while the tool is picked ---------------------------------------
    def press(self, pos: QPointF, screen: QPointF, modifiers) -> None:
        negative = bool(modifiers & Qt.KeyboardModifier.AltModifier)
        self._press = (pos, screen, negative)

    def move(self, pos: QPointF) -> None:
        if self._press is not None:
            start = self._press[0]
            self.canvas.show_rubber(start, pos)

    def release(self, pos: QPointF, screen: QPointF) -> None:
        if self._press is None:
            return
        start, start_screen, negative = self._press
        self._press = None
        self.canvas.hide_rubber()
        moved = screen - start_screen
        if max(abs(moved.x()), abs(moved.y())) > DRAG_PX:
            x0, x1 = sorted((start.x(), pos.x()))
            y0, y1 = sorted((start.y(), pos.y()))
            self.box = (x0, y0, x1, y1)
        else:
            self.points.append((pos.x(), pos.y(), 0 if negative else 1))
        self._decode()

    # -- jobs --------------------------------------------------------------------------------
    @Slot(str)
    def _on_tool(self, tool: str) -> None:
        if tool != TOOL:
            self._drop()
            return
        image = self._snapshot()
        if image is not None:
            self.host.show_status("Smart select: click the thing to select; Alt+click excludes")
            self._submit(SegmentRequest(image=image))  # the embedding, before the first click

    def _snapshot(self) -> np.ndarray | None:
        """What the canvas shows (RGB), flattened once and kept until the document changes,
        so a click does not flatten the whole document again."""
        doc = self.canvas.model.doc
        if doc.is_empty:
            return None
        if self._image is None:
            self._image = np.ascontiguousarray(doc.composite()[..., :3])
        return self._image

    @Slot()
    def _forget_image(self, *_args) -> None:
        self._image = None

    def _decode(self) -> None:
        if not self.points and self.box is None:
            return
        if self._running is not None:
            self._pending = True  # the newest state is sent when the running one ends
            return
        image = self._snapshot()
        if image is not None:
            self._submit(SegmentRequest(image=image, points=tuple(self.points), box=self.box))

    def _submit(self, request: SegmentRequest) -> None:
        if self._running is not None:
            return
        self._running = self._latest = self.jobs.submit(request, label="Smart select")

    @Slot(int, object)
    def _on_finished(self, job_id: int, final: object) -> None:
        if job_id != self._latest:
            return
        images = list(getattr(final, "images", None) or [])
        if self._words is not None:
            phrase, self._words = self._words, None
            if not images:
                self.host.show_status(f"Nothing found for “{phrase}”.")
                return
            union = np.maximum.reduce([np.asarray(m) for m in images])
            self.candidate = (union > 127).astype(np.uint8) * 255
            n = len(images)
            self.host.show_status(
                f"“{phrase}”: {n} found. Enter: mask, Shift+Enter: add, Alt+Enter: subtract"
            )
            self._show()
            return
        if not images or (not self.points and self.box is None):
            return  # the embedding alone, or the points were dropped meanwhile
        self.candidate = (np.asarray(images[0]) > 127).astype(np.uint8) * 255
        self._show()

    @Slot(int)
    def _on_ended(self, job_id: int) -> None:
        if job_id != self._running:
            return
        self._running = None
        if self._pending:
            self._pending = False
            self._decode()

    # -- the candidate -----------------------------------------------------------------------
    def _show(self) -> None:
        cand = self.candidate
        if cand is None:
            self.item.setVisible(False)
            self.ants.set_mask(None, now=True)
            return
        h, w = cand.shape
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., :3] = TINT
        rgba[..., 3] = np.where(cand > 0, 56, 0)
        self.item.setPixmap(QPixmap.fromImage(qimage_from_array(rgba)))
        self.item.setVisible(True)
        self.ants.set_mask(cand, now=True)
        self.ants.setVisible(True)
        for act in self.keys.values():
            act.setEnabled(True)

    def _apply(self, how: str) -> None:
        cand = self.candidate
        doc = self.canvas.model.doc
        if cand is None or doc.is_empty or cand.shape != (doc.height, doc.width):
            return
        old = doc.mask() if doc.mask() is not None else np.zeros_like(cand)
        if how == "add":
            new, text = np.maximum(old, cand), "Add to mask (smart select)"
        elif how == "subtract":
            new, text = np.where(cand > 0, 0, old).astype(np.uint8), "Subtract from mask"
        else:
            new, text = cand, "Mask from smart select"
        self.host.set_mask(new, text)
        self._drop()

    @Slot()
    def _replace(self) -> None:
        self._apply("replace")

    @Slot()
    def _add(self) -> None:
        self._apply("add")

    @Slot()
    def _subtract(self) -> None:
        self._apply("subtract")

    def _drop(self) -> None:
        self.points, self.box, self.candidate, self._pending = [], None, None, False
        self._words = None
        self.item.setVisible(False)
        self.ants.set_mask(None, now=True)
        self.ants.setVisible(False)
        for act in self.keys.values():
            act.setEnabled(False)
