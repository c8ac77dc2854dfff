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

A folder of the user's (Add folder…, ``STUDIO_MODEL_PATHS``) is a folder of models wherever
they sit: besides its kind folders, the models directly in it or in other sub-folders (up to
:data:`MAX_DEPTH` deep; not virtual environments, caches or outputs: :data:`SKIP_DIRS`) are
listed too, each by what it is: a diffusers pipeline folder (``model_index.json``; inpainting
when its UNet takes 9 channels), a diffusers component folder by its ``config.json`` class
(ControlNet, TAESD, VAE), the OpenPose/DWPose files, or a single file by its tensor names and
shapes (:mod:`~studio.engine.models.identify`, header only; files only an upscaler/LaMa
architecture test could tell are left to the kind folders, which need no such test).
ControlNets are listed with the family they were trained for (``base``: from the config's
cross-attention width, or the file's tensors), so a picker can offer the ones that fit.

Nothing is cached but what a file's header said (keyed by its size and time): a file dropped
while the app runs is listed by the next call. Torch-free.
"""

from __future__ import annotations

import json
import re
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
    base_by_context,
    classify_embedding,
    context_dim,
    describe_embedding,
    flow_file,
    guess_condition,
    identify,
    read_tensors,
)
from studio.engine.models.registry import list_imported

MAX_DEPTH = 3  # sub-folders users sort their files into (A1111/ComfyUI allow them too)
# Sub-folders of a user's folder that hold no models of theirs (an A1111/ComfyUI install's
# code, environments, outputs): not searched for loose models.
SKIP_DIRS = frozenset(
    {
        "venv", ".venv", "env", "site-packages", "__pycache__", "node_modules", "repositories",
        "extensions", "custom_nodes", "outputs", "output", "input", "temp", "tmp", "cache",
        "log", "logs", "snapshots", "blobs",
    }
)  # fmt: skip
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


def controlnet_fits(name: str, kind: str) -> bool:
    """Whether a ControlNet file or folder called ``name`` may be of ``kind``
    ("controlnet-canny", ...): its name's condition (canny, openpose, ...) says so, and a name
    without one fits every ControlNet kind (its weights don't say what it was trained on)."""
    return _controlnet_fits(name, kind)


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
    such as "controlnet", several, or () for all kinds), then the models elsewhere in the
    user's folders (:func:`loose_models`). One entry per path, in search order; a file that
    fits several of the asked kinds is listed under the first."""
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
    for m in loose_models(wanted):
        if m.path not in seen:
            seen.add(m.path)
            out.append(m)
    return out


# ------------------------------------------------------------------------------------------
# Models anywhere in a user's folder (not in a kind folder)


def _kind_folder_paths() -> set[Path]:
    """Every kind folder :func:`folder_models` searches by kind (so not searched loose)."""
    from studio.core.catalog import KINDS

    return {f for k in KINDS for f in kind_folders(k)}


def _walk_loose(folder: Path, skip: set[Path], depth: int = 0) -> Iterator[Path]:
    """Model folders and weight files under ``folder``, not entering the kind folders
    searched by kind (``skip``), :data:`SKIP_DIRS` or model folders."""
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    if all((folder / f).is_file() for f in DWPOSE_FILES):
        yield folder
    for child in children:
        low = child.name.lower()
        if child.name.startswith(".") or low in SKIP_DIRS:
            continue
        if child.is_dir():
            if _is_model_folder(child):
                yield child
            elif child not in skip and depth < MAX_DEPTH:
                yield from _walk_loose(child, skip, depth + 1)
        elif _is_weight_file(child):
            yield child


def loose_models(kind: str | tuple[str, ...] = ()) -> list[ModelFile]:
    """Models in the user's folders outside their kind folders (see the module docstring),
    of the asked kinds (() for all), each under the first asked kind it is; in the order of
    the asked kinds, then of the folders."""
    from studio.core.catalog import KINDS

    wanted = kinds_of(kind) if kind else KINDS
    skip = _kind_folder_paths()
    out: list[ModelFile] = []
    seen: set[Path] = set()
    for root in user_folders():
        for entry in _walk_loose(root, skip):
            if entry in seen:
                continue
            seen.add(entry)
            found = what_is(entry)
            if found is None:
                continue
            kinds, base, description = found
            k = next((k for k in wanted if k in kinds), None)
            if k is not None:
                out.append(ModelFile(entry, k, "folder", base, description))
    return sorted(out, key=lambda m: wanted.index(m.kind))  # by kind, as the kind folders


def what_is(entry: Path) -> tuple[tuple[str, ...], str | None, str] | None:
    """(the catalog kinds it may serve as, its family or None, a description: a file's, from
    its header; "" for a folder, which its name describes) of a model folder or weight file
    found outside a kind folder; None when it is not a model Studio can tell without loading
    it."""
    name = entry.name
    if entry.is_dir():
        if (entry / OPENPOSE_BODY).is_file() or all((entry / f).is_file() for f in DWPOSE_FILES):
            return ("pose-detector",), None, ""
        if (entry / "model_index.json").is_file():
            unet = _read_json(entry / "unet" / "config.json")
            in_ch = unet.get("in_channels")
            cls = str(_read_json(entry / "model_index.json").get("_class_name", ""))
            inpainting = in_ch == 9 or "Inpaint" in cls or (in_ch is None and "inpaint" in name)
            base = base_by_context(_first_int(unet.get("cross_attention_dim")))
            if base is None and unet.get("addition_embed_type") == "text_time":
                base = "sdxl"
            kind = "inpaint" if inpainting else "txt2img"
            return (kind,), base, ""
        config = _read_json(entry / "config.json")
        cls = str(config.get("_class_name", ""))
        if "ControlNet" in cls:
            kinds = tuple(k for k in CONTROLNET_KINDS if _controlnet_fits(name, k))
            return kinds, _controlnet_config_base(config), ""
        if cls == "AutoencoderTiny":
            return ("preview-decoder",), None, ""
        if cls == "AutoencoderKL":
            return ("vae",), None, ""
        return None
    found = _identify_cached(entry)
    if found is None:
        return None
    kind, base, description = found
    if kind == "controlnet":
        return tuple(k for k in CONTROLNET_KINDS if _controlnet_fits(name, k)), base, description
    return (kind,), base, description


def _first_int(value: object) -> int | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _controlnet_config_base(config: dict) -> str | None:
    """A diffusers ControlNet's family from its config: the cross-attention width (768 SD 1.x,
    1024 SD 2.x, 2048 SDXL) or SDXL's added time embedding."""
    base = base_by_context(_first_int(config.get("cross_attention_dim")))
    if base is None and config.get("addition_embed_type") == "text_time":
        base = "sdxl"
    return base


_HEADERS: dict[tuple[str, int, int], tuple[str, str | None, str] | None] = {}


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns)


def _identify_cached(path: Path) -> tuple[str, str | None, str] | None:
    """(kind, base, description) of a weight file by its header, or None; remembered per
    (path, size, time), so a changed file is read again."""
    key = _stamp(path)
    if key is None:
        return None
    if key not in _HEADERS:
        if len(_HEADERS) > 4096:
            _HEADERS.clear()
        _HEADERS[key] = _identify_light(path)
    return _HEADERS[key]


def _identify_light(path: Path) -> tuple[str, str | None, str] | None:
    """:func:`~studio.engine.models.identify.identify` for the files its tensor names decide
    (checkpoints, flow files, LoRAs, ControlNets, embeddings, VAEs, TAESD, OpenPose); None
    for the rest, which only its upscaler/LaMa architecture test (torch) could tell: a
    picker's list is read in the GUI thread, which never imports torch."""
    from studio.core.errors import StudioError

    try:
        tensors, _fmt, _meta = read_tensors(path)
    except (StudioError, OSError):
        return None
    if not tensors or not _decided_by_names(tensors, path.name):
        return None
    try:
        found = identify(path)
    except (StudioError, OSError):
        return None
    return found.kind, found.base, found.description


def _decided_by_names(tensors: dict, name: str) -> bool:
    """Whether identify() decides this file before its architecture (spandrel) test."""
    keys = list(tensors)
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return True
    if any(re.search(r"\.lora_[AB]\.weight$|\.lora[._](down|up)\.weight$", k) for k in keys):
        return True
    if "model.diffusion_model.input_blocks.0.0.weight" in tensors:
        return True
    stripped = {k.removeprefix("control_model.") for k in keys}
    if (
        "input_hint_block.0.weight" in stripped
        or "controlnet_cond_embedding.conv_in.weight" in stripped
    ):
        return True
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        return True
    vae = {k.removeprefix("first_stage_model.").removeprefix("vae.") for k in keys}
    if "encoder.conv_in.weight" in vae and "decoder.conv_out.weight" in vae:
        return True
    if "conv1_1.weight" in tensors and "Mconv7_stage6_L2.weight" in tensors:
        return True
    if classify_embedding(tensors) is not None:
        return True
    try:
        return flow_file(tensors, name) is not None
    except Exception:  # noqa: BLE001 - a family test that can't read this file: undecided
        return False


def _controlnet_base(path: Path) -> str | None:
    """The family a ControlNet in a kind folder was made for: a folder's config.json, or a
    file's tensors (its header; remembered like :func:`_identify_cached`)."""
    if path.is_dir():
        for cfg in (path / "config.json", path / "controlnet" / "config.json"):
            if cfg.is_file():
                return _controlnet_config_base(_read_json(cfg))
        return None
    key = _stamp(path)
    if key is None:
        return None
    if key not in _HEADERS:
        from studio.core.errors import StudioError

        try:
            tensors = read_tensors(path)[0]
        except (StudioError, OSError):
            tensors = {}
        stripped = {k.removeprefix("control_model."): v for k, v in tensors.items()}
        base = base_by_context(context_dim(stripped))
        if base is None and (
            "add_embedding.linear_1.weight" in stripped or "label_emb.0.0.weight" in stripped
        ):
            base = "sdxl"
        _HEADERS[key] = ("controlnet", base, "ControlNet") if tensors else None
    found = _HEADERS[key]
    return found[1] if found is not None else None


def _described(m: ModelFile) -> ModelFile:
    """An embedding with its family and vector count (read from its header), a ControlNet
    with the family it was made for (its config or header); other kinds as they are (their
    names decide, nothing is read)."""
    if m.kind in CONTROLNET_KINDS:
        return ModelFile(m.path, m.kind, m.source, _controlnet_base(m.path), m.description)
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
