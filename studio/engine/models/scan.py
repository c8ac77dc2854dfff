"""Model files on disk that the catalog does not describe: imported files and files dropped
into a models folder (Studio's own, the portable one beside the program, the user's
AUTOMATIC1111/ComfyUI folders; see :mod:`studio.engine.models.folders`).

A folder holds a kind by its name (:data:`~studio.engine.models.folders.KIND_FOLDERS`); where
one folder holds several kinds, the entry's name or its ``config.json`` decides, without
reading weights:

- ``checkpoints/``: "inpaint" in the name (or a diffusers folder whose UNet takes 9 input
  channels) is an inpainting model, anything else txt2img;
- ``inpaint/``: names with "lama" (and ``.pt``/``.pth`` files, LaMa's formats) are LaMa,
  the rest inpainting checkpoints;
- ``controlnet/``: the condition in the name (canny, openpose, scribble, inpaint; as the
  identifier guesses it); a name without one fits every ControlNet kind;
- ``vae/``: TAESD (``tae*`` names, ``AutoencoderTiny`` folders) is a preview decoder;
- ``pose/``: ``body_pose_model.pth`` (OpenPose) or a folder with the DWPose ONNX pair;
- ``embeddings/``: .safetensors/.pt/.bin files (textual inversion); their family is read from
  the tensor shapes (a header, no weights) so the lists can say which model they fit.

Nothing is cached: a file dropped while the app runs is listed by the next call. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from studio.engine.models.folders import (
    CONTROLNET_KINDS,
    EMBEDDING_SUFFIXES,
    WEIGHT_SUFFIXES,
    kind_folders,
    kinds_of,
    models_dir,
    user_folders,
)
from studio.engine.models.identify import (
    classify_embedding,
    describe_embedding,
    guess_condition,
    read_tensors,
)
from studio.engine.models.registry import list_imported

MAX_DEPTH = 3  # sub-folders users sort their files into (A1111/ComfyUI allow them too)
OPENPOSE_BODY = "body_pose_model.pth"
DWPOSE_FILES = ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")
_CONDITION_KIND = {
    "canny": "controlnet-canny",
    "openpose": "controlnet-pose",
    "scribble": "controlnet-scribble",
    "inpaint": "controlnet-inpaint",
}
# The identifier's kinds (import records) -> catalog kinds.
_IMPORTED_KINDS = {"controlnet": CONTROLNET_KINDS}


@dataclass(frozen=True)
class ModelFile:
    """A model on disk outside the catalog. ``source``: "imported" (``studio models import``,
    drag and drop) or "folder" (dropped into a models folder). ``path`` is a file or a
    folder (diffusers layout, DWPose pair)."""

    path: Path
    kind: str
    source: str
    base: str | None = None
    description: str = ""

    @property
    def name(self) -> str:
        """What a prompt tag or ``--model NAME`` calls it: the file stem or folder name."""
        return self.path.stem if self.path.is_file() else self.path.name


# ------------------------------------------------------------------------------------------
# Deciding what an entry of a kind folder is


def _lower(p: Path) -> str:
    return p.name.lower()


def _is_weight_file(p: Path) -> bool:
    return (
        p.is_file()
        and p.suffix.lower() in WEIGHT_SUFFIXES
        and not p.name.startswith(".")
        and not p.name.endswith(".part")
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_model_folder(p: Path) -> bool:
    return (
        (p / "model_index.json").is_file()
        or (p / "config.json").is_file()
        or (p / OPENPOSE_BODY).is_file()
        or all((p / f).is_file() for f in DWPOSE_FILES)
    )


def _controlnet_fits(name: str, kind: str) -> bool:
    condition = guess_condition(name)
    if condition is None:
        return True
    return _CONDITION_KIND.get(condition) == kind


def fits(entry: Path, kind: str, folder: Path) -> bool:
    """Is ``entry`` (a file or model folder inside the kind folder ``folder``) a model of
    ``kind``? Decided from names and small JSON configs only (see the module docstring)."""
    name = _lower(entry)
    where = folder.name.lower()
    is_dir = entry.is_dir()
    if kind == "pose-detector":
        if is_dir:
            return (entry / OPENPOSE_BODY).is_file() or all(
                (entry / f).is_file() for f in DWPOSE_FILES
            )
        return entry.name == OPENPOSE_BODY
    if is_dir:
        if (entry / "model_index.json").is_file():
            if kind not in ("txt2img", "inpaint"):
                return False
            in_ch = _read_json(entry / "unet" / "config.json").get("in_channels")
            inpainting = in_ch == 9 or (in_ch is None and "inpaint" in name)
            return inpainting == (kind == "inpaint")
        cls = str(_read_json(entry / "config.json").get("_class_name", ""))
        if kind in CONTROLNET_KINDS:
            return "ControlNet" in cls and _controlnet_fits(name, kind)
        if kind == "preview-decoder":
            return cls == "AutoencoderTiny"
        if kind == "vae":
            return cls == "AutoencoderKL"
        return False
    if entry.suffix.lower() == ".onnx":
        return False  # only the DWPose pair, handled above
    lama_named = "lama" in name
    if kind == "lama":
        return (
            lama_named
            or where in ("lama",)
            or (where == "inpaint" and entry.suffix.lower() in (".pt", ".pth"))
        )
    if kind == "inpaint":
        if lama_named or (where == "inpaint" and entry.suffix.lower() in (".pt", ".pth")):
            return False
        return where == "inpaint" or "inpaint" in name
    if kind == "txt2img":
        return "inpaint" not in name
    if kind in CONTROLNET_KINDS:
        return _controlnet_fits(name, kind)
    if kind == "preview-decoder":
        return name.startswith("tae")
    if kind == "vae":
        return not name.startswith("tae")
    if kind == "embedding":
        return entry.suffix.lower() in EMBEDDING_SUFFIXES
    return True  # upscaler, lora: any weights file in their folders


def _walk(folder: Path, depth: int = 0) -> Iterator[Path]:
    """Weight files and model folders under ``folder`` (sorted; model folders not entered)."""
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    if depth == 0 and all((folder / f).is_file() for f in DWPOSE_FILES):
        yield folder  # the DWPose pair loose in pose/
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if _is_model_folder(child):
                yield child
            elif depth < MAX_DEPTH:
                yield from _walk(child, depth + 1)
        elif _is_weight_file(child):
            yield child


# ------------------------------------------------------------------------------------------
# Lists


def folder_models(kind: str | tuple[str, ...] = ()) -> list[ModelFile]:
    """Models dropped into the kind folders of every root (``kind``: a catalog kind, a group
    such as "controlnet", several, or () for all kinds). One entry per path, in search
    order; a file that fits several of the asked kinds is listed under the first."""
    from studio.core.catalog import KINDS

    wanted = kinds_of(kind) if kind else KINDS
    out: list[ModelFile] = []
    seen: set[Path] = set()
    for k in wanted:
        for folder in kind_folders(k):
            for entry in _walk(folder):
                if entry not in seen and fits(entry, k, folder):
                    seen.add(entry)
                    out.append(_described(ModelFile(entry, k, "folder")))
    return out


def _described(m: ModelFile) -> ModelFile:
    """An embedding with its family and vector count (read from its header); other kinds as
    they are (their names decide, nothing is read)."""
    if m.kind != "embedding":
        return m
    from studio.core.errors import StudioError

    try:
        found = classify_embedding(read_tensors(m.path)[0])
    except StudioError as e:
        return ModelFile(m.path, m.kind, m.source, None, f"unreadable: {e}")
    if found is None:
        return ModelFile(m.path, m.kind, m.source, None, "not a textual-inversion embedding")
    base, vectors, _layout = found
    return ModelFile(m.path, m.kind, m.source, base, describe_embedding(base, vectors))


def imported_models(kind: str | tuple[str, ...] = ()) -> list[ModelFile]:
    """Imported files (``$STUDIO_HOME/models/imported.json``) of the asked kinds."""
    wanted = set(kinds_of(kind)) if kind else None
    out: list[ModelFile] = []
    for rec in list_imported():
        kinds = _IMPORTED_KINDS.get(rec.kind, (rec.kind,))
        if wanted is not None:
            hits = [k for k in kinds if k in wanted]
            if not hits:
                continue
            if rec.kind == "controlnet":
                hits = [k for k in hits if _controlnet_fits(rec.name, k)] or hits
            kinds = tuple(hits)
        out.append(ModelFile(Path(rec.path), kinds[0], "imported", rec.base, rec.description))
    return out


def local_models(kind: str | tuple[str, ...] = ()) -> list[ModelFile]:
    """Imported files, then dropped ones, of the asked kinds; each path once."""
    out: list[ModelFile] = []
    seen: set[Path] = set()
    for m in [*imported_models(kind), *folder_models(kind)]:
        key = _key(m.path)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def find_local(name: str, kind: str | tuple[str, ...]) -> Path | None:
    """A local (imported or dropped) model of ``kind`` by file name, stem or folder name."""
    for m in local_models(kind):
        if name in (m.path.name, m.name):
            return m.path
    return None


def local_pipelines(kinds: tuple[str, ...] = ("txt2img", "inpaint"), limit: int = 50) -> list[Path]:
    """Generation models on disk outside the catalog, for the model pickers: diffusers folders
    and single-file checkpoints in every root's checkpoint folders, imported checkpoints, and
    diffusers folders placed directly in a user folder (or Studio's models folder)."""
    out = [m.path for m in local_models(kinds)]
    for root in [models_dir(), *user_folders()]:
        try:
            children = sorted(root.iterdir()) if root.is_dir() else []
        except OSError:
            children = []
        out += [c for c in children if (c / "model_index.json").is_file()]
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))][:limit]
