"""The Inpaint panel's state, without widgets: the mask tools' sizes, the padding and blend
edge every job uses, the Erase method, Fill from prompt's model, prompts and sampling
settings, and the outpaint sides, aspect, overlap and backend. Properties persist themselves
through the typed settings (``studio.ui.properties``; the prompts, seed and outpaint sides are
per-image and not saved; the model is saved when a Fill job is submitted, as Generate's is),
and ``request(action, image, mask)`` turns the state into an ``InpaintRequest``, so what the
panel sends is testable without a window.
"""

from __future__ import annotations

import numpy as np

from studio.core.errors import StudioError
from studio.core.outpaint import Extension, extend, parse_aspect, to_aspect
from studio.engine.jobs import InpaintRequest
from studio.ui.properties import PanelModel, Property

ERASE_METHODS = (
    ("auto", "Auto (LaMa if installed, else Telea)"),
    ("lama", "LaMa"),
    ("telea", "Telea (OpenCV)"),
    ("ns", "Navier-Stokes (OpenCV)"),
)
OUTPAINT_WITH = (("diffusion", "Prompt model"), ("erase", "Erase method"))
ASPECTS = ("1:1", "4:3", "3:2", "16:9", "9:16", "2:3", "3:4")
SIDES = ("left", "right", "top", "bottom")
MAX_SIDE = 16384  # the largest outpainted image side
ACTIONS = ("erase", "fill", "outpaint")

# (label, lowest, highest) of each number: the panel's widgets take their ranges from here,
# and ``problem()`` names the first value outside its range.
RANGES: dict[str, tuple[str, float, float]] = {
    "grow": ("Grow/shrink", 1, 256),
    "feather": ("Feather", 1, 256),
    "padding": ("Padding", 0, 512),
    "blend": ("Blend edge", 0, 128),
    "steps": ("Steps", 1, 150),
    "guidance": ("Guidance", 0.0, 30.0),
    "strength": ("Strength", 0.05, 1.0),
    "seed": ("Seed", 0, 2**31 - 1),
    "overlap": ("Overlap", 0, 256),
    **{side: (f"Outpaint {side}", 0, 2048) for side in SIDES},
}


class InpaintModel(PanelModel):
    """What the Inpaint panel shows and sends."""

    # mask tools
    grow = Property(8, setting="inpaint_grow")
    feather = Property(8, setting="inpaint_feather")
    # every job
    padding = Property(32, setting="inpaint_padding")  # context around the mask
    blend = Property(8, setting="inpaint_blend")  # soft edge where the result meets the original
    # Erase object
    erase_method = Property("auto", setting="inpaint_erase_method")  # a key of ERASE_METHODS
    # Fill from prompt
    model = Property("")
    prompt = Property("")
    negative_prompt = Property("")
    steps = Property(25, setting="inpaint_steps")
    guidance = Property(7.0, setting="inpaint_guidance")
    strength = Property(1.0, setting="inpaint_strength")
    seed = Property(0, kind=int)
    # Outpaint
    left = Property(0)
    right = Property(0)
    top = Property(0)
    bottom = Property(0)
    aspect = Property("")  # "" = the sides as set, else one of ASPECTS
    overlap = Property(32, setting="inpaint_overlap")
    outpaint_with = Property("diffusion", setting="inpaint_outpaint_with")  # or "erase"

    def __init__(self, settings=None, parent=None) -> None:
        super().__init__(settings, parent)
        self.persist = False  # a damaged setting falls back to the default, unsaved
        if self.erase_method not in dict(ERASE_METHODS):
            self.erase_method = "auto"
        if self.outpaint_with not in dict(OUTPAINT_WITH):
            self.outpaint_with = "diffusion"
        self.persist = True
        if settings is not None and settings.inpaint_model:
            self.model = settings.inpaint_model

    def remember_model(self) -> None:
        """Save the model (when a job that uses it is submitted)."""
        if self.settings is not None and self.model.strip():
            self.settings.inpaint_model = self.model.strip()

    # -- checks -------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """The first setting outside its range (one message), or None."""
        for name, (label, lo, hi) in RANGES.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                return f"{label} must be between {lo:g} and {hi:g} (it is {value:g})."
        return None

    # -- requests -----------------------------------------------------------------------------
    def erase_fields(self) -> dict:
        """(method, model) for the erase backend: LaMa/auto use the installed big-lama."""
        if self.erase_method not in dict(ERASE_METHODS):
            keys = ", ".join(k for k, _ in ERASE_METHODS)
            raise ValueError(f"Unknown erase method “{self.erase_method}”: use one of {keys}.")
        return dict(method=self.erase_method, model="")

    def diffusion_fields(self) -> dict:
        """Fill from prompt's fields of the request; ValueError without a model."""
        model = self.model.strip()
        if not model:
            raise ValueError("Choose a model for Fill from prompt.")
        return dict(
            method="diffusion",
            model=model,
            prompt=self.prompt.strip(),
            negative_prompt=self.negative_prompt.strip(),
            steps=int(self.steps),
            guidance=float(self.guidance),
            strength=float(self.strength),
            seed=int(self.seed),
        )

    def fields(self, action: str) -> dict:
        """The backend fields of ``action`` ("erase", "fill" or "outpaint": the prompt model
        or the erase method, as "Using" says)."""
        if action not in ACTIONS:
            raise ValueError(f"Unknown inpaint action “{action}”: use one of {', '.join(ACTIONS)}.")
        if action == "fill" or (action == "outpaint" and self.outpaint_with == "diffusion"):
            return self.diffusion_fields()
        return self.erase_fields()

    def request(
        self,
        action: str,
        image: np.ndarray | None,
        mask: np.ndarray | None,
        fields: dict | None = None,
    ) -> InpaintRequest:
        """The request of ``action`` for ``image`` (RGBA uint8, the visible image) and ``mask``
        ((H, W) uint8, 255 = inpaint). ``fields``: the backend fields taken when the job
        began (an outpaint's later passes keep them), else ``fields(action)``. Raises
        ValueError with one message for the user."""
        if image is None:
            raise ValueError("Open an image first.")
        if mask is None:
            raise ValueError("Paint a mask over the area first (the brush paints the mask).")
        if mask.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}: they must be the same size."
            )
        fields = self.fields(action) if fields is None else fields
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        return InpaintRequest(
            image=image,
            mask=mask,
            padding=int(self.padding),
            feather=int(self.blend),
            **fields,
        )

    # -- outpaint -----------------------------------------------------------------------------
    def extension(self, size: tuple[int, int]) -> Extension | None:
        """The extension of an image of ``size`` (w, h) the model is set to (None if it adds
        nothing). A bad aspect raises StudioError (studio.core.outpaint.parse_aspect)."""
        if self.aspect:
            ext = to_aspect(tuple(size), parse_aspect(self.aspect))
        else:
            ext = Extension(**{side: int(getattr(self, side)) for side in SIDES})
        return None if ext.empty else ext

    def outpaint_extension(self, size: tuple[int, int]) -> Extension:
        """``extension(size)``, or ValueError when it adds nothing, grows the image past
        MAX_SIDE or the aspect ratio is not one."""
        try:
            ext = self.extension(size)
        except StudioError as e:  # a bad aspect ratio or side
            raise ValueError(e.message) from e
        if ext is None:
            raise ValueError("Set how many pixels to add on a side, or an aspect ratio, first.")
        W, H = ext.new_size(tuple(size))
        if W > MAX_SIDE or H > MAX_SIDE:
            raise ValueError(f"The outpainted image would be {W}x{H}: too large.")
        return ext

    def extend(self, image: np.ndarray, step: Extension) -> tuple[np.ndarray, np.ndarray]:
        """One outpaint pass's (canvas, mask): ``image`` grown by ``step``, with ``overlap``
        px of the old image redrawn (studio.core.outpaint.extend)."""
        return extend(image, step, overlap=int(self.overlap), seed=int(self.seed))
