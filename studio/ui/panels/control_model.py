"""The Control panel's state and what it sends, without widgets.

- ``ControlModel``: the source of the guides (active layer or visible image), the Canny
  thresholds and blur, the live preview switch, the pose detector (a folder, or "" for the
  installed one) and whether hands and face are detected; persisted through the typed
  settings (``studio.ui.properties``). It builds the Canny guide of a source crop
  (``edges``, ``canny_metadata``) and the pose detection job (``pose_request``).
- The guides themselves are the document's control and pose layers; each layer's metadata
  holds its ControlNet settings (enabled, weight, start, end, model; ``model_auto``: the
  model is the panel's default, which follows the generation model, until the user picks
  one). ``entries`` lists them,
  ``control_image`` turns a layer's pixels into the RGB guide (a pose layer renders its
  keypoints; strokes on a transparent scribble layer are white, whatever their colour), and
  ``control_input`` makes the ``ControlInput`` of ``GenerateRequest.controls``, checking the
  settings so a bad value is one message before any job runs; ``document_controls`` does it
  for every enabled guide of a document (what the Generate panel sends, read from the
  document, not from the Control panel).
- Which ControlNets a guide may use (``controlnet_options``, ``default_controlnet``): those
  of the guide's kind made for the generation model's family (catalog entries by their base,
  imported and folder ControlNets by their identified family), installed first, then the
  ones to download; the default is an installed one that fits, else the catalog's that fits
  (SD-Turbo, SD 2.x, gets the SD 2.1 ControlNets, not ``sd15-canny``).

Canny: Canny 1986, "A Computational Approach to Edge Detection" (``studio.core.canny``);
ControlNet: Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion
Models" (weight = conditioning scale; start/end = the fraction of the steps it guides).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from studio.core.canny import DEFAULT_HIGH, DEFAULT_LOW, canny, scribble_from_layer
from studio.core.errors import StudioError
from studio.core.pose import Pose, render
from studio.engine.jobs import ControlInput, PreprocessRequest
from studio.ui.pose_editor import rgba_to_control
from studio.ui.properties import PanelModel, Property

if TYPE_CHECKING:
    from studio.core.document import Document

CONTROL_KINDS = ("control", "pose")  # layer kinds that guide generation
# The ControlNet a new guide of each kind uses when the generation model's family is not
# known (catalog ids; editable per layer). With a known family: ``default_controlnet``.
DEFAULT_CONTROLNETS = {
    "canny": "sd15-canny",
    "pose": "sd15-openpose",
    "scribble": "sd15-scribble",
    "depth": "sd15-depth",
}
# A guide's kind -> the catalog kind of the ControlNets made for it.
CONTROLNET_KIND = {
    "canny": "controlnet-canny",
    "pose": "controlnet-pose",
    "scribble": "controlnet-scribble",
    "inpaint": "controlnet-inpaint",
    "depth": "controlnet-depth",
}
SOURCES = (("layer", "Active layer"), ("composite", "Visible image"))
THRESHOLD_MAX = 500
# (label, lowest, highest) of the panel's numbers; its widgets take their ranges from here.
RANGES: dict[str, tuple[str, int, int]] = {
    "low": ("Canny low threshold", 0, THRESHOLD_MAX),
    "high": ("Canny high threshold", 0, THRESHOLD_MAX),
    "blur": ("Blur", 0, 15),
}
# (label, default, lowest, highest) of a control layer's settings (the list's spin boxes).
LAYER_RANGES: dict[str, tuple[str, float, float, float]] = {
    "weight": ("weight", 1.0, 0.0, 2.0),
    "start": ("start", 0.0, 0.0, 1.0),
    "end": ("end", 1.0, 0.0, 1.0),
}


@dataclass
class ControlEntry:
    """One guide: a control or pose layer of the document (``uid``). ``settings`` is the
    layer's metadata (the Control panel's list edits it in place)."""

    kind: str  # "canny" | "scribble" | "pose" | other ControlNet kinds
    name: str
    uid: int | None = None
    offset: tuple[int, int] = (0, 0)
    settings: dict = field(default_factory=dict)

    def get(self, key: str, default):
        return self.settings.get(key, default)

    @property
    def model(self) -> str:
        """The ControlNet this guide uses (the kind's default until one is typed)."""
        return str(self.get("model", DEFAULT_CONTROLNETS.get(self.kind, "")))


def new_layer_metadata(meta: dict, model: str | None = None) -> dict:
    """The metadata of a new control layer: ``meta`` (with its "control" kind) and the
    default ControlNet settings of that kind; ``model``: the ControlNet that fits the
    generation model (``default_controlnet``), else the kind's family-less default. The
    choice is the panel's (``model_auto``) until the user picks one."""
    return {
        **meta,
        "weight": 1.0,
        "start": 0.0,
        "end": 1.0,
        "model": DEFAULT_CONTROLNETS.get(meta["control"], "") if model is None else model,
        "model_auto": True,
        "enabled": True,
    }


@dataclass(frozen=True)
class ControlNetOption:
    """A ControlNet a guide may use. ``fits``: True when made for the generation model's
    family (or the family is not known), None when the ControlNet's own family is not known
    (it may fit), False when made for another family."""

    ref: str  # catalog id, else the path
    name: str
    base: str | None
    installed: bool
    catalog: bool
    fits: bool | None
    size: int = 0


def controlnet_options(
    choices: Iterable,
    family: str | None,
    accepts: Callable[[str], bool] | None = None,
) -> list[ControlNetOption]:
    """``choices`` (``studio.engine.models.ModelChoice``s of one ControlNet kind, installed
    and catalog ones) as options for a model of ``family`` ("sd2", ...; None: not known),
    best first: installed ones made for the family, installed ones of an unknown family,
    then the catalog's to download that fit; those made for another family last (fits
    False). ``accepts(base)``: whether the family takes a ControlNet of ``base`` (its
    descriptor's ``accepts_controlnet``; default: the same family)."""
    accepts = accepts or (lambda base: base == family)
    out: list[ControlNetOption] = []
    for c in choices:
        catalog = c.source == "catalog"
        path = Path(c.ref)
        is_file = c.path is not None and Path(c.path).is_file()
        name = c.label if catalog else (path.stem if is_file else path.name)
        if family is None:
            fits: bool | None = True
        elif c.base is None:
            fits = None
        else:
            fits = bool(accepts(c.base))
        out.append(ControlNetOption(c.ref, name, c.base, c.installed, catalog, fits, c.size))

    def rank(o: ControlNetOption) -> int:
        if o.fits is False:
            return 4
        if o.installed:
            return 0 if o.fits else 1
        return 2 if o.fits else 3

    return sorted(out, key=rank)  # stable: catalog order, then imported, then folders


def default_controlnet(kind: str, options: list[ControlNetOption], family: str | None) -> str:
    """The ControlNet a new guide of ``kind`` uses: the first installed option that may fit,
    else the first to download that fits; with the family unknown and nothing installed the
    kind's catalog default; "" when the family is known and nothing fits."""
    usable = [o for o in options if o.fits is not False]
    for o in usable:
        if o.installed:
            return o.ref
    if family is None:
        return DEFAULT_CONTROLNETS.get(kind, usable[0].ref if usable else "")
    return next((o.ref for o in usable if o.fits), "")


def entries(layers: Iterable) -> list[ControlEntry]:
    """The guides among ``layers`` (``studio.core.document.Layer``s): control and pose
    layers, in document order."""
    out = []
    for layer in layers:
        if layer.kind not in CONTROL_KINDS:
            continue
        kind = str(
            layer.metadata.get("control") or ("pose" if layer.kind == "pose" else "scribble")
        )
        out.append(ControlEntry(kind, layer.name, layer.uid, tuple(layer.offset), layer.metadata))
    return out


def control_image(
    entry: ControlEntry,
    pixels: np.ndarray | None,
    offset: tuple[int, int],
    size: tuple[int, int],
) -> np.ndarray | None:
    """The RGB guide (``size`` (w, h)) of ``entry`` whose layer holds ``pixels`` (RGBA) at
    ``offset``; None without pixels."""
    if pixels is None:
        return None
    w, h = size
    if entry.kind == "pose" and isinstance(entry.settings.get("pose"), dict):
        try:
            pose = Pose.from_dict(entry.settings["pose"])
            if (pose.width, pose.height) == (w, h):
                return render(pose)
        except StudioError:
            pass
    if entry.kind == "scribble" and has_transparency(pixels):
        # strokes on a transparent layer: every stroke is white, whatever its colour
        control = scribble_from_layer(pixels)
    else:
        # an opaque layer (e.g. Layer > New control layer: black to paint white on) or
        # edges: the pixels over black are the guide, as drawn
        control = rgba_to_control(pixels)
    return place(control, offset, (w, h))[..., :3]


def control_input(
    entry: ControlEntry,
    image: np.ndarray,
    region: tuple[int, int, int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> ControlInput:
    """The ``ControlInput`` of ``entry`` for its document-sized RGB guide ``image``, cropped
    to ``region`` (x, y, w, h) and resized to ``size`` (w, h) when given. Raises ValueError
    (one message naming the layer) for a setting the engine would refuse."""
    values = {}
    for key, (label, default, lo, hi) in LAYER_RANGES.items():
        raw = entry.get(key, default)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = float("nan")
        if not lo <= value <= hi:
            raise ValueError(
                f"Control layer “{entry.name}”: {label} must be a number from {lo:g} to "
                f"{hi:g} (it is {raw!r}); set it in the Control panel's list."
            )
        values[key] = value
    if values["start"] >= values["end"]:
        raise ValueError(
            f"Control layer “{entry.name}”: start ({values['start']:g}) must be before end "
            f"({values['end']:g}); set them in the Control panel's list."
        )
    model = entry.model.strip()
    if not model:
        raise ValueError(
            f"Control layer “{entry.name}” has no ControlNet: choose one in the Control "
            "panel's list (import one in the Models panel if none fits), or turn the layer off."
        )
    if region is not None:
        x, y, rw, rh = region
        image = image[y : y + rh, x : x + rw]
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_LINEAR)
    return ControlInput(kind=entry.kind, image=np.ascontiguousarray(image), model=model, **values)


def document_controls(
    doc: Document,
    region: tuple[int, int, int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[ControlInput, ...]:
    """The enabled guides of ``doc`` as ControlInputs, for ``GenerateRequest.controls``.
    Images are RGB uint8 at the document size, or cropped to ``region`` (x, y, w, h) and
    resized to ``size`` (w, h) when given (pass the generation region and output size).
    Raises ValueError (one message) for a layer setting the engine would refuse."""
    out = []
    for e in entries(doc.layers):
        if not e.get("enabled", True):
            continue
        layer = next((la for la in doc.layers if la.uid == e.uid), None)
        if layer is None:
            continue
        full = (doc.width or layer.size[0], doc.height or layer.size[1])
        image = control_image(e, layer.pixels, tuple(layer.offset), full)
        if image is not None:
            out.append(control_input(e, image, region, size))
    return tuple(out)


class ControlModel(PanelModel):
    """What the Control panel shows and sends."""

    source = Property("layer", setting="control_source")  # a key of SOURCES
    low = Property(DEFAULT_LOW, setting="control_low")
    high = Property(DEFAULT_HIGH, setting="control_high")
    blur = Property(0, setting="control_blur")  # Gaussian kernel px before Canny (0 = none)
    live = Property(True, setting="control_live")  # the Canny overlay follows the sliders
    pose_model = Property("", setting="control_pose_model")  # "" = the installed detector
    hands = Property(True, setting="control_hands")  # hands and face too, when installed

    def __init__(self, settings=None, parent=None) -> None:
        super().__init__(settings, parent)
        if self.source not in dict(SOURCES):
            self.persist = False  # a damaged setting falls back to the default, unsaved
            self.source = "layer"
            self.persist = True

    def thresholds(self) -> tuple[int, int]:
        return int(self.low), int(self.high)

    def problem(self) -> str | None:
        """The first setting outside its range (one message), or None."""
        for name, (label, lo, hi) in RANGES.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                return f"{label} must be between {lo} and {hi} (it is {value})."
        return None

    def _checked(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def edges(self, crop: np.ndarray | None) -> np.ndarray:
        """The Canny guide (RGB, white edges on black) of the source ``crop`` (RGB/RGBA)."""
        if crop is None:
            raise ValueError("Open an image first: edges are found in the active layer or image.")
        self._checked()
        low, high = self.thresholds()
        return canny(crop, low, high, blur=int(self.blur))

    def canny_name(self) -> str:
        return "Canny {}/{}".format(*self.thresholds())

    def canny_metadata(self) -> dict:
        """What a new Canny layer records of how it was made (``new_layer_metadata`` adds
        the ControlNet settings)."""
        low, high = self.thresholds()
        return {"control": "canny", "low": low, "high": high, "blur": int(self.blur)}

    def pose_request(self, crop: np.ndarray | None) -> PreprocessRequest:
        """The pose detection job for the source ``crop`` (RGBA; transparent areas are seen
        as white): hands and face when ``hands``, the detector folder when one is set."""
        if crop is None:
            raise ValueError(
                "Open an image first: poses are detected in the active layer or image."
            )
        if crop.ndim == 3 and crop.shape[2] == 4:
            a = crop[..., 3:4].astype(np.float32) / 255.0
            rgb = (crop[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
        else:
            rgb = crop[..., :3]
        extras = bool(self.hands)
        params: tuple = (("hands", extras), ("face", extras))
        folder = self.pose_model.strip()
        if folder:
            params += (("model", folder),)
        return PreprocessRequest("pose", np.ascontiguousarray(rgb), params)


def has_transparency(pixels: np.ndarray) -> bool:
    return pixels.ndim == 3 and pixels.shape[2] == 4 and bool((pixels[..., 3] < 255).any())


def place(image: np.ndarray, offset: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``image`` pasted at ``offset`` into a transparent/black canvas of ``size`` (w, h)."""
    w, h = size
    ox, oy = int(offset[0]), int(offset[1])
    ih, iw = image.shape[:2]
    if (ox, oy) == (0, 0) and (iw, ih) == (w, h):
        return image
    channels = image.shape[2] if image.ndim == 3 else 1
    out = np.zeros((h, w, channels) if image.ndim == 3 else (h, w), np.uint8)
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(w, ox + iw), min(h, oy + ih)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = image[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return out
