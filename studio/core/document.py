"""The Document: a stack of layers (image, control, pose and one mask layer), a selection,
and the generation history; and its ``.studio`` project file.

A project file is a zip archive::

    manifest.json        {"format": "studio-project", "version": 1, "width": ..., ...}
    layers/<n>.png       one PNG per layer (RGBA; the mask layer as 8-bit gray)
    history/<n>.png      one PNG per generation-history entry

It is written atomically (temp file, fsync, rename: studio.core.atomic), so a crash while
saving leaves the previous file intact. ``load_project`` refuses damaged files and files
written by a newer Studio with ``BadInput`` and never returns a half-loaded document.

numpy + Pillow only (no Qt), so the CLI and tests can read and write projects too.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.core.atomic import atomic_writer
from studio.core.errors import BadInput

FORMAT = "studio-project"
FORMAT_VERSION = 1
EXTENSION = ".studio"
LAYER_KINDS = ("image", "control", "pose", "mask")
SNAP = 8

_uids = itertools.count(1)


def _next_uid() -> int:
    return next(_uids)


@dataclass(eq=False)
class Layer:
    """One layer. ``pixels`` is RGBA uint8 (H, W, 4); for the mask layer (H, W) uint8 with
    255 = "regenerate this pixel". ``offset`` (x, y) places it on the document."""

    name: str
    kind: str
    pixels: np.ndarray = field(repr=False)
    visible: bool = True
    opacity: float = 1.0
    offset: tuple[int, int] = (0, 0)
    metadata: dict = field(default_factory=dict)
    uid: int = field(default_factory=_next_uid)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def is_mask(self) -> bool:
        return self.kind == "mask"


@dataclass(eq=False)
class HistoryEntry:
    """A generated result and the parameters that made it (to re-apply later)."""

    image: np.ndarray = field(repr=False)
    parameters: dict = field(default_factory=dict)
    uid: int = field(default_factory=_next_uid)


def to_rgba(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> contiguous RGBA uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise BadInput(f"expected 8-bit image data, got {a.dtype}")
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise BadInput(f"expected an RGB or RGBA image, got shape {a.shape}")
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    return np.ascontiguousarray(a)


def snap_rect(
    rect: tuple[int, int, int, int], width: int, height: int, multiple: int = SNAP
) -> tuple[int, int, int, int]:
    """Clip ``rect`` (x, y, w, h) to the image and snap it to multiples of ``multiple``:
    the origin rounds down, the size rounds to the nearest multiple (at least one), and the
    result stays inside the image whenever the image is at least ``multiple`` pixels a side."""
    x, y, w, h = (int(round(v)) for v in rect)
    if w < 0:
        x, w = x + w, -w
    if h < 0:
        y, h = y + h, -h
    x1, y1 = min(width, x + w), min(height, y + h)
    x0 = min(max(0, x), max(0, width - multiple)) // multiple * multiple
    y0 = min(max(0, y), max(0, height - multiple)) // multiple * multiple
    sw = max(multiple, int(round((x1 - x0) / multiple)) * multiple)
    sh = max(multiple, int(round((y1 - y0) / multiple)) * multiple)
    sw = min(sw, max(multiple, (width - x0) // multiple * multiple))
    sh = min(sh, max(multiple, (height - y0) // multiple * multiple))
    return x0, y0, sw, sh


class Document:
    """Layers bottom to top; exactly one mask layer (created with the document)."""

    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width = int(width)
        self.height = int(height)
        self.layers: list[Layer] = [
            Layer("Mask", "mask", np.zeros((self.height, self.width), np.uint8))
        ]
        self.selection: tuple[int, int, int, int] | None = None
        self.history: list[HistoryEntry] = []
        self.active_uid: int = self.layers[0].uid

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_image(cls, image: np.ndarray, name: str = "Background") -> Document:
        rgba = to_rgba(image)
        doc = cls(rgba.shape[1], rgba.shape[0])
        layer = Layer(name, "image", rgba)
        doc.layers.insert(0, layer)
        doc.active_uid = doc.mask_layer.uid
        return doc

    @property
    def is_empty(self) -> bool:
        return self.width == 0 or self.height == 0

    # -- lookup ------------------------------------------------------------------------------
    @property
    def mask_layer(self) -> Layer:
        for layer in self.layers:
            if layer.is_mask:
                return layer
        raise AssertionError("a document always has a mask layer")

    def layer(self, uid: int) -> Layer:
        for layer in self.layers:
            if layer.uid == uid:
                return layer
        raise KeyError(uid)

    def index_of(self, uid: int) -> int:
        for i, layer in enumerate(self.layers):
            if layer.uid == uid:
                return i
        raise KeyError(uid)

    @property
    def active_layer(self) -> Layer:
        try:
            return self.layer(self.active_uid)
        except KeyError:
            return self.mask_layer

    # -- pixels ------------------------------------------------------------------------------
    def resize_canvas(self, width: int, height: int) -> None:
        """Set the document size (used when the first layer arrives); the mask is resized,
        keeping what fits."""
        old = self.mask_layer.pixels
        new = np.zeros((height, width), np.uint8)
        h, w = min(height, old.shape[0]), min(width, old.shape[1])
        new[:h, :w] = old[:h, :w]
        self.mask_layer.pixels = new
        self.width, self.height = int(width), int(height)

    def composite(self, kinds: tuple[str, ...] = ("image",)) -> np.ndarray:
        """The visible layers of ``kinds`` flattened (Porter-Duff "over", layer opacity
        applied) onto a transparent canvas of the document size: RGBA uint8."""
        out = np.zeros((self.height, self.width, 4), np.float32)
        for layer in self.layers:
            if layer.kind not in kinds or not layer.visible or layer.opacity <= 0:
                continue
            ox, oy = layer.offset
            lw, lh = layer.size
            x0, y0 = max(0, ox), max(0, oy)
            x1, y1 = min(self.width, ox + lw), min(self.height, oy + lh)
            if x1 <= x0 or y1 <= y0:
                continue
            src = layer.pixels[y0 - oy : y1 - oy, x0 - ox : x1 - ox].astype(np.float32) / 255.0
            a = src[..., 3:4] * float(layer.opacity)
            dst = out[y0:y1, x0:x1]
            da = dst[..., 3:4]
            oa = a + da * (1.0 - a)
            rgb = src[..., :3] * a + dst[..., :3] * da * (1.0 - a)
            dst[..., :3] = np.where(oa > 0, rgb / np.maximum(oa, 1e-8), 0.0)
            dst[..., 3:4] = oa
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def mask(self) -> np.ndarray | None:
        """The mask (H, W) uint8, or None when nothing is masked."""
        m = self.mask_layer.pixels
        return m if m.size and m.any() else None

    def generation_region(self) -> tuple[int, int, int, int]:
        """The selection, or the whole image; snapped to multiples of 8."""
        if self.is_empty:
            return 0, 0, 0, 0
        rect = self.selection or (0, 0, self.width, self.height)
        return snap_rect(rect, self.width, self.height)

    def snapshot(self) -> Document:
        """A deep copy (for saving in the background while the user keeps painting)."""
        return copy.deepcopy(self)


# -- project file --------------------------------------------------------------------------
def _png(array: np.ndarray) -> bytes:
    from PIL import Image  # imported when needed: keeps app start-up light

    buf = io.BytesIO()
    mode = "L" if array.ndim == 2 else ("RGBA" if array.shape[2] == 4 else "RGB")
    Image.fromarray(array, mode).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def project_bytes(doc: Document) -> bytes:
    """Encode ``doc`` as the bytes of a .studio file."""
    manifest: dict = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "width": doc.width,
        "height": doc.height,
        "selection": list(doc.selection) if doc.selection else None,
        "active": doc.index_of(doc.active_uid)
        if any(la.uid == doc.active_uid for la in doc.layers)
        else None,
        "layers": [],
        "history": [],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for i, layer in enumerate(doc.layers):
            name = f"layers/{i}.png"
            z.writestr(name, _png(layer.pixels))
            manifest["layers"].append(
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "file": name,
                    "visible": layer.visible,
                    "opacity": layer.opacity,
                    "offset": list(layer.offset),
                    "metadata": layer.metadata,
                }
            )
        for i, entry in enumerate(doc.history):
            name = f"history/{i}.png"
            z.writestr(name, _png(entry.image))
            manifest["history"].append({"file": name, "parameters": entry.parameters})
        z.writestr("manifest.json", json.dumps(manifest, indent=1, default=str))
    return buf.getvalue()


def save_project(doc: Document, path: str | os.PathLike) -> Path:
    """Write ``doc`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: folder does not exist")
    data = project_bytes(doc)
    with atomic_writer(path) as f:
        f.write(data)
    return path


def load_project(path: str | os.PathLike) -> Document:
    """Read a .studio file; BadInput for anything damaged, incomplete or too new."""
    path = Path(path)
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise BadInput(f"{name}: no such file") from e
    except OSError as e:
        raise BadInput(f"{name}: cannot read ({e.strerror or e})") from e
    return project_from_bytes(data, name)


def project_from_bytes(data: bytes, name: str = "project") -> Document:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadInput(f"{name}: not a Studio project (or the file is damaged)") from e
    with z:
        try:
            if z.getinfo("manifest.json").file_size > 16 * 2**20:
                raise ValueError("the manifest is implausibly large")
            manifest = json.loads(z.read("manifest.json").decode("utf-8"))
        except KeyError as e:
            raise BadInput(f"{name}: not a Studio project (no manifest)") from e
        except (
            zipfile.BadZipFile,
            OSError,
            ValueError,
            EOFError,
            RuntimeError,
            NotImplementedError,
        ) as e:
            raise BadInput(f"{name}: the project file is damaged ({e})") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BadInput(f"{name}: not a Studio project")
        version = manifest.get("version")
        if not isinstance(version, int) or version < 1:
            raise BadInput(f"{name}: the project file is damaged (bad version)")
        if version > FORMAT_VERSION:
            raise BadInput(
                f"{name}: made by a newer Studio (project version {version}; this one reads "
                f"up to {FORMAT_VERSION}). Update Studio to open it."
            )
        try:
            return _build(z, manifest, name)
        except BadInput:
            raise
        except MemoryError as e:
            raise BadInput(f"{name}: the project is too large to open") from e
        except (
            KeyError,
            TypeError,
            ValueError,
            zipfile.BadZipFile,
            OSError,
            EOFError,
            RuntimeError,  # zipfile: an encrypted member ("password required")
            NotImplementedError,  # zipfile: an unsupported compression method
        ) as e:
            raise BadInput(f"{name}: the project file is damaged ({type(e).__name__}: {e})") from e


def _read_png(z: zipfile.ZipFile, member: str, name: str, mode: str) -> np.ndarray:
    from studio.core.imageio import open_bytes

    try:
        im = open_bytes(z.read(member), member)
    except BadInput as e:
        raise BadInput(f"{name}: the project file is damaged ({e.message})") from e
    return np.ascontiguousarray(np.array(im.convert(mode), dtype=np.uint8))


def _build(z: zipfile.ZipFile, m: dict, name: str) -> Document:
    from studio.core.imageio import MAX_PIXELS, MAX_SIDE

    width, height = int(m["width"]), int(m["height"])
    if width < 0 or height < 0:
        raise ValueError("negative size")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise BadInput(
            f"{name}: the canvas is {width}x{height}, larger than Studio supports "
            f"(at most {MAX_SIDE} px a side)"
        )
    doc = Document(width, height)
    doc.layers = []
    for spec in m["layers"]:
        kind = spec["kind"]
        if kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {kind!r}")
        pixels = _read_png(z, spec["file"], name, "L" if kind == "mask" else "RGBA")
        if kind == "mask" and pixels.shape != (height, width):
            raise ValueError("the mask does not match the document size")
        ox, oy = spec.get("offset", (0, 0))
        doc.layers.append(
            Layer(
                name=str(spec.get("name", kind)),
                kind=kind,
                pixels=pixels,
                visible=bool(spec.get("visible", True)),
                opacity=float(min(1.0, max(0.0, spec.get("opacity", 1.0)))),
                offset=(int(ox), int(oy)),
                metadata=dict(spec.get("metadata") or {}),
            )
        )
    masks = [la for la in doc.layers if la.is_mask]
    if len(masks) > 1:
        raise ValueError("more than one mask layer")
    if not masks:
        doc.layers.append(Layer("Mask", "mask", np.zeros((height, width), np.uint8)))
    for spec in m.get("history", []):
        image = _read_png(z, spec["file"], name, "RGBA")
        doc.history.append(HistoryEntry(image, dict(spec.get("parameters") or {})))
    sel = m.get("selection")
    doc.selection = tuple(int(v) for v in sel) if sel else None  # type: ignore[assignment]
    active = m.get("active")
    doc.active_uid = (
        doc.layers[active].uid
        if isinstance(active, int) and 0 <= active < len(doc.layers)
        else doc.mask_layer.uid
    )
    return doc
