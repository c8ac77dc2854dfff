"""The Inpaint panel: mask tools (fill holes, select all, invert, grow/shrink, feather, clear),
one-click "Erase object" (LaMa when installed, else OpenCV Telea), "Fill from prompt" (Stable
Diffusion inpainting with the model chosen here), and outpainting (extend the canvas by N px
per side or to an aspect ratio).

The brush and eraser that paint the mask live in the canvas; every mask edit here is one undo
step (``host.set_mask``). Jobs go to the worker as ``InpaintRequest``s; the engine works on
the mask's padded crop (previews are painted inside it) and the result is staged in place,
as a Generate result is (``staging.StagingBar``: Accept or Discard; Enter, X): accepted, it
becomes one new layer holding just the changed box, so undo removes it in one step. An
outpaint grows the document and adds the result in one undo step.

Its jobs are followed by a ``job_follower.JobFollower`` (progress, cancel, failure; the
panel places the results).

The settings live in an ``InpaintModel`` (``studio.ui.panels.inpaint_model``: persisted, and
the requests are built there); the widgets are built and bound to it by ``inpaint_form`` and
hold no state of their own.

Torch-free: only numpy, Qt, studio.core and the torch-free engine modules (requests, lama's
``find_lama``).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QWidget

from studio.core import masks as mask_ops
from studio.core.outpaint import Extension
from studio.engine.jobs import InpaintRequest
from studio.ui.commands import ExtendCanvasCommand
from studio.ui.job_follower import JobBar, JobFollower
from studio.ui.panels.inpaint_form import bind_fields, lay_out
from studio.ui.panels.inpaint_model import ASPECTS, ERASE_METHODS, InpaintModel
from studio.ui.panels.inpaint_support import changes_only, inpaint_models, installed_lama, union_box
from studio.ui.panels.staging import Staged

__all__ = ["ASPECTS", "ERASE_METHODS", "InpaintModel", "InpaintPanel"]


class InpaintPanel(QWidget):
    """Mask tools, Erase object, Fill from prompt and Outpaint (see the module doc). The
    settings live in ``self.state`` (an ``InpaintModel``); the widgets are bound to it."""

    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.state = InpaintModel(host.settings, self)  # the panel's settings (no widgets)
        self.job_id: int | None = None
        self._outpaint_ext: Extension | None = None
        self._outpaint_passes: list[Extension] = []
        self._outpaint_fields: dict = {}
        self._outpaint_done = Extension()
        self.last_result: np.ndarray | None = None

        lay_out(self)  # every widget (inpaint_form)
        bind_fields(self)
        bar = JobBar(self.progress, self.status)
        self.follow = JobFollower(host.worker, self, bar, errors=host.show_error)
        self.follow.ended.connect(self._done)
        self.follow.finished.connect(self._on_finished)
        self.follow.failed.connect(self._on_stopped)
        self.follow.cancelled.connect(self._on_stopped)
        self.refresh_erase_info()

    # -- mask tools ---------------------------------------------------------------------------
    def _current_mask(self) -> np.ndarray | None:
        w, h = self.host.image_size()
        if not w or not h:
            self.host.show_error("Open an image first.")
            return None
        m = self.host.mask()
        return np.zeros((h, w), np.uint8) if m is None else m

    def _edit_mask(self, op, text: str) -> None:
        m = self._current_mask()
        if m is None:
            return
        new = op(m)
        if not np.array_equal(new, m):
            self.host.set_mask(new, text)

    @Slot()
    def fill_holes(self) -> None:
        self._edit_mask(mask_ops.fill_holes, "Fill mask holes")

    @Slot()
    def fill_all(self) -> None:
        self._edit_mask(mask_ops.fill, "Select all (mask)")

    @Slot()
    def invert(self) -> None:
        self._edit_mask(mask_ops.invert, "Invert mask")

    @Slot()
    def clear(self) -> None:
        self._edit_mask(mask_ops.clear, "Clear mask")

    @Slot()
    def grow(self) -> None:
        px = int(self.state.grow)
        self._edit_mask(lambda m: mask_ops.grow(m, px), f"Grow mask {px} px")

    @Slot()
    def shrink(self) -> None:
        px = int(self.state.grow)
        self._edit_mask(lambda m: mask_ops.shrink(m, px), f"Shrink mask {px} px")

    @Slot()
    def feather(self) -> None:
        px = int(self.state.feather)
        self._edit_mask(lambda m: mask_ops.feather(m, px), f"Feather mask {px} px")

    # -- jobs ---------------------------------------------------------------------------------
    def refresh_erase_info(self) -> None:
        lama = installed_lama()
        if lama is not None:
            self.erase_info.setText(f"Auto uses LaMa ({lama.name}).")
        else:
            self.erase_info.setText(
                "Auto uses Telea. For better results download “Big LaMa” in the Models panel."
            )

    @property
    def running(self) -> bool:
        return self.job_id is not None

    def _set_running(self, running: bool) -> None:
        for b in (self.erase_button, self.fill_button_run, self.outpaint_button):
            b.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _request(self, action: str, image, mask, fields: dict | None = None):
        """``self.state.request(...)``, or None after telling the user why not."""
        try:
            return self.state.request(action, image, mask, fields)
        except ValueError as e:
            self.host.show_error(str(e))
            return None

    @Slot()
    def _refill_models(self) -> None:
        """Models were downloaded or imported: list them, keeping the chosen one."""
        self.model_combo.set_items(inpaint_models())

    def _submit(self, request: InpaintRequest, kind: str, label: str, region=None) -> None:
        if request.method == "diffusion":
            self.state.remember_model()
        ext = self._outpaint_ext if kind == "outpaint" else None
        target = {"kind": kind, "source": request.image, "extension": ext}
        self.job_id = self.follow.submit(request, region=region, label=label, target=target)
        self._set_running(True)
        self.follow.bar.busy("Loading…")  # while the model loads
        self.status.setText(f"{label}…")

    @Slot()
    def erase(self) -> None:
        if self.running:
            return
        request = self._request("erase", self.host.composite(), self.host.mask())
        if request is not None:
            self._submit(request, "erase", "Erase object")

    @Slot()
    def fill_from_prompt(self) -> None:
        if self.running:
            return
        request = self._request("fill", self.host.composite(), self.host.mask())
        if request is not None:
            self._submit(request, "fill", "Fill from prompt")

    def extension(self) -> Extension | None:
        """The outpaint extension the panel is set to (None if it adds nothing)."""
        return self.state.extension(self.host.image_size())

    @Slot()
    def outpaint(self) -> None:
        if self.running:
            return
        image = self.host.composite()
        if image is None:
            self.host.show_error("Open an image first.")
            return
        try:
            ext = self.state.outpaint_extension((image.shape[1], image.shape[0]))
            fields = self.state.fields("outpaint")
        except ValueError as e:
            self.host.show_error(str(e))
            return
        self._outpaint_ext = ext
        self._outpaint_passes = ext.passes()
        self._outpaint_fields = fields
        self._outpaint_done = Extension()
        self._submit_outpaint_pass(image)

    def _submit_outpaint_pass(self, image: np.ndarray) -> None:
        """Submit the next pass (left/right, then top/bottom) on ``image``, the canvas so far.
        Previews arrive in that canvas's coordinates, whose origin lies at minus the sides
        added so far (the document grows once, when the last pass is done)."""
        step = self._outpaint_passes.pop(0)
        done = self._outpaint_done
        total = Extension(
            left=done.left + step.left,
            right=done.right + step.right,
            top=done.top + step.top,
            bottom=done.bottom + step.bottom,
        )
        self._outpaint_done = total
        canvas, mask = self.state.extend(image, step)
        request = self._request("outpaint", canvas, mask, self._outpaint_fields)
        if request is None:
            self._outpaint_passes = []
            return
        region = (-total.left, -total.top, canvas.shape[1], canvas.shape[0])
        self._submit(request, "outpaint", "Outpaint", region=region)

    @Slot()
    def cancel(self) -> None:
        if self.job_id is not None:
            self.follow.cancel(self.job_id)
            self.status.setText("Cancelling…")

    # -- the follower's signals (this panel's jobs) ---------------------------------------------
    @Slot(int)
    def _done(self, job_id: int) -> None:
        self.job_id = None
        self._set_running(False)

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        job = self.follow.job(job_id)
        if job is None:
            return
        kind, ext, source = job.target["kind"], job.target["extension"], job.target["source"]
        images = getattr(event, "images", ())
        if not images:
            self.status.setText("The job returned no image.")
            return
        result = images[0]
        self.last_result = result
        meta = dict(event.metadata[0]) if getattr(event, "metadata", ()) else {}
        extra = getattr(event, "extra", {}) or {}
        method = extra.get("method", "")
        names = {"lama": "LaMa", "telea": "Telea", "ns": "Navier-Stokes", "diffusion": "SD"}
        how = names.get(method, method)
        if kind == "outpaint" and self._outpaint_passes:
            self._submit_outpaint_pass(result)  # the next side, on this result
            return
        if kind == "outpaint" and ext is not None:
            self.host.push_command(
                ExtendCanvasCommand(self.host.model, ext, result, f"Outpaint ({how})", meta)
            )
        else:
            x, y, w, h = union_box(
                extra.get("regions") or [(0, 0, result.shape[1], result.shape[0])]
            )
            patch = changes_only(result[y : y + h, x : x + w], source, (x, y, w, h))
            title = "Erase" if kind == "erase" else "Fill"
            self.staging.add([Staged(patch, f"{title} ({how})", (x, y), meta)])
        self.status.setText(f"Done with {how} in {getattr(event, 'seconds', 0.0):.1f} s")

    @Slot(int)
    @Slot(int, str, str)
    def _on_stopped(self, job_id: int, *_: object) -> None:
        """A failed or cancelled job: the outpaint passes after it never run."""
        self._outpaint_passes = []
