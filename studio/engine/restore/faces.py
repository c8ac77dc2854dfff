"""Blind face restoration: find faces, align each to the FFHQ crop, restore it with a face
model, and paste it back.

Models (loaded through spandrel, purpose "FaceSR"):

* GFPGAN (Wang et al. 2021, "Towards Real-World Blind Face Restoration with Generative Facial
  Prior", CVPR): a U-Net encoder whose features modulate a pretrained StyleGAN2 decoder
  through spatial feature transforms. It takes and returns a 512x512 face in [-1, 1]; spandrel's
  descriptor passes the tensor through unscaled, so the scaling is done here.
* RestoreFormer (Wang et al. 2022, CVPR) and RestoreFormer++ (Wang et al. 2023, "RestoreFormer++:
  Towards Real-World Blind Face Restoration from Undegraded Key-Value Pairs", TPAMI): multi-head
  cross-attention between the degraded face's features and a high-quality codebook. spandrel's
  descriptor takes [0, 1] and normalises itself.

Detection: YuNet (Wu et al. 2023, "YuNet: A Tiny Millisecond-level Face Detector", Machine
Intelligence Research) through ``cv2.FaceDetectorYN``, which gives a box, five landmarks
(the eyes, the nose tip and the mouth corners, the image's left one first) and a score.

Alignment follows facexlib's ``FaceRestoreHelper``, the one GFPGAN's own inference uses: a
similarity transform (rotation, uniform scale, translation; ``cv2.estimateAffinePartial2D``)
takes the five landmarks onto the standard five points of FFHQ faces at 512x512
(:data:`FFHQ_TEMPLATE_512`), the face is cropped at 512x512, restored, warped back with the
inverse transform and pasted through the warped square, eroded and blurred so the seam fades
(width 1/20 of the face's side). ``strength`` scales that weight: 0 leaves every pixel of the
input as it was, 1 takes the restored face.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from studio.core import masks
from studio.core.errors import BadInput, ModelError
from studio.engine.jobs.requests import RestoreFacesRequest

if TYPE_CHECKING:
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.runner import JobContext

FACE_SIZE = 512
#: The five landmarks of an FFHQ face at 512x512 (x, y): the image's left eye, right eye, nose
#: tip, left and right mouth corners; facexlib, facexlib/utils/face_restoration_helper.py
#: (FaceRestoreHelper, ``template_3points=False``), https://github.com/xinntao/facexlib.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
#: What the crop holds outside the source image: facexlib's grey (BGR 135, 133, 132) in RGB.
BORDER_RGB = (132, 133, 135)
FACE_PURPOSE = "FaceSR"
#: spandrel architecture ids of face models whose input/output range is known: GFPGAN works
#: in [-1, 1] (scaled here), RestoreFormer's descriptor takes and gives [0, 1].
FACE_ARCHITECTURES = ("GFPGAN", "RestoreFormer")
MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt")
DEFAULT_MODEL = "gfpgan-1.4"
DEFAULT_DETECTOR = "yunet"


# -- detection ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x, y, w, h) in pixels, ``landmarks5`` a (5, 2) float32
    array in the template's order (:data:`FFHQ_TEMPLATE_512`), ``score`` in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks5: np.ndarray
    score: float = 1.0


class FaceDetector(Protocol):
    """An RGB uint8 (H, W, 3) image -> the faces in it."""

    def __call__(self, image: np.ndarray) -> list[Face]: ...


class YuNetDetector:
    """OpenCV's YuNet (``face_detection_yunet_2023mar.onnx`` from opencv_zoo, MIT licence).

    ``cv2.FaceDetectorYN.detect`` returns one row per face: x, y, w, h, then the right eye,
    left eye, nose tip, right and left mouth corners (the subject's right is the image's
    left, so the order is the template's), then the score. The network takes BGR."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        path = Path(model_path)
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, nms_threshold, top_k
            )
        except cv2.error as e:
            raise ModelError(f"{path.name}: cannot load as a YuNet face detector") from e

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        self._net.setInputSize((w, h))
        _, rows = self._net.detect(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
        if rows is None:
            return []
        return [
            Face(
                box=(float(r[0]), float(r[1]), float(r[2]), float(r[3])),
                landmarks5=np.asarray(r[4:14], np.float32).reshape(5, 2),
                score=float(r[14]),
            )
            for r in rows
        ]


_DETECTORS: dict[str, Callable[[], FaceDetector]] = {}


def register_detector(name: str, factory: Callable[[], FaceDetector]) -> None:
    """Make ``name`` usable as a request's ``detector``: ``factory()`` builds it (once per
    Runner cache). For other detectors (RetinaFace, ...) and for tests."""
    _DETECTORS[name] = factory


# -- model files -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Download:
    """A model file Studio knows by id: its file name and where to get it."""

    filename: str
    url: str
    folders: tuple[str, ...]


# Folder names: ComfyUI's (facerestore_models), AUTOMATIC1111's (GFPGAN).
FACE_FOLDERS = ("facerestore_models", "GFPGAN")
DETECTOR_FOLDERS = ("facedetection",)
FACE_MODELS: dict[str, Download] = {
    "gfpgan-1.4": Download(
        "GFPGANv1.4.pth",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
        FACE_FOLDERS,
    ),
}
YUNET = Download(
    "face_detection_yunet_2023mar.onnx",
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx",
    DETECTOR_FOLDERS,
)


def _roots() -> list[Path]:
    from studio.engine.models.folders import models_dir, portable_dir, user_folders

    roots = [models_dir(), portable_dir(), *user_folders()]
    return [r for r in roots if r is not None]


def _find_file(filename: str, folders: Sequence[str]) -> Path | None:
    for root in _roots():
        for folder in folders:
            path = root / folder / filename
            if path.is_file():
                return path
    return None


def _from_catalog(ref: str) -> Path | None:
    """The file of catalog id ``ref`` if the catalog lists it and it is installed."""
    from studio.engine.models.resolver import catalog_entry, resolve

    try:
        entry = catalog_entry(ref)
        if entry is None:
            return None
        return resolve(ref, entry.kind, file=True)
    except (ModelError, BadInput):
        return None


def _known(ref: str, spec: Download, what: str, flag: str) -> Path:
    found = _from_catalog(ref) or _find_file(spec.filename, spec.folders)
    if found is not None:
        return found
    from studio.engine.models.folders import models_dir
    from studio.engine.models.resolver import catalog_entry

    how = f"run `studio models download {ref}`, or " if catalog_entry(ref) is not None else ""
    raise ModelError(
        f"{ref}: {what} not installed: {how}download {spec.filename} from {spec.url} into "
        f"{models_dir() / spec.folders[0]}, or pass {flag} FILE"
    )


def resolve_face_model(model: str | None) -> Path:
    """A face restoration model: a file, a known id (:data:`FACE_MODELS`; None or "" is
    ``gfpgan-1.4``) or a file name in a face model folder. ModelError (exit 3) when missing."""
    ref = (model or "").strip() or DEFAULT_MODEL
    if ref in FACE_MODELS:
        return _known(ref, FACE_MODELS[ref], "face restoration model", "--model")
    path = Path(ref).expanduser()
    if path.is_dir():
        raise BadInput(f"{path.name}: is a folder; pass the face model file")
    if path.is_file():
        return path
    found = _find_file(ref, FACE_FOLDERS) if path.name == ref else None
    if found is not None:
        return found
    raise ModelError(
        f"{ref}: no such face restoration model (a model file, or one of {', '.join(FACE_MODELS)})"
    )


def resolve_detector(detector: str | None) -> tuple[str, Callable[[], FaceDetector]]:
    """(cache key, factory) of a detector: a registered name, ``yunet`` (None) or a YuNet
    ``.onnx`` file. ModelError (exit 3) when the YuNet file is missing."""
    ref = (detector or "").strip() or DEFAULT_DETECTOR
    if ref in _DETECTORS:
        return f"registered:{ref}", _DETECTORS[ref]
    if ref == DEFAULT_DETECTOR:
        env = os.environ.get("STUDIO_YUNET")
        path = Path(env) if env and Path(env).is_file() else None
        path = path or _known(ref, YUNET, "face detector", "--detector")
    else:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ModelError(f"{ref}: no such face detector (yunet or a YuNet .onnx file)")
        if path.suffix.lower() != ".onnx":
            raise ModelError(f"{path.name}: not a YuNet detector (an .onnx file)")
    return f"yunet:{path}", lambda: YuNetDetector(path)


def load_face_model(path: str | os.PathLike) -> Any:
    """Load ``path`` with spandrel (CPU, fp32, eval mode); it must be one of the face
    restoration architectures whose value range is handled here (:data:`FACE_ARCHITECTURES`).
    Returns the descriptor."""
    import spandrel

    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ModelError(f"{name}: no such model file")
    if path.suffix.lower() not in MODEL_EXTENSIONS:
        raise ModelError(f"{name}: not a model file (use .safetensors, .pth, .pt or .ckpt)")
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_file(path)
    except spandrel.UnsupportedModelError as e:
        raise ModelError(f"{name}: not a face restoration model spandrel knows") from e
    except pickle.UnpicklingError as e:
        raise ModelError(f"{name}: refused or not a valid checkpoint", str(e)) from e
    except Exception as e:  # noqa: BLE001 - corrupt/truncated files raise anything
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ModelError(f"{name}: cannot load the model ({first})", repr(e)) from e
    if getattr(descriptor, "purpose", None) != FACE_PURPOSE:
        raise ModelError(
            f"{name}: is a {descriptor.architecture.name} {descriptor.purpose} model, not a "
            "face restoration model"
        )
    if descriptor.architecture.id not in FACE_ARCHITECTURES:
        raise ModelError(
            f"{name}: {descriptor.architecture.name} face models are not supported "
            f"(use {' or '.join(FACE_ARCHITECTURES)})"
        )
    descriptor.eval()
    for p in descriptor.model.parameters():
        p.requires_grad_(False)
    return descriptor


def model_restorer(descriptor: Any, device: Any = None) -> Callable[[np.ndarray], np.ndarray]:
    """A (512, 512, 3) uint8 RGB crop -> the restored crop, with a loaded descriptor on
    ``device`` (a torch device; the descriptor's own when None), in fp32."""
    import torch

    param = next(descriptor.model.parameters())
    device = device or param.device
    gfpgan = descriptor.architecture.id == "GFPGAN"

    def restore(crop: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
        x = x.to(device, torch.float32) / 255.0
        with torch.inference_mode():
            if gfpgan:  # [-1, 1] in and out; return_rgb=False skips the side outputs
                y = (descriptor.model(x * 2.0 - 1.0, return_rgb=False)[0] + 1.0) / 2.0
            else:
                y = descriptor(x)
            y = y.float().clamp(0.0, 1.0)[0].permute(1, 2, 0).cpu().numpy()
        return np.rint(y * 255.0).astype(np.uint8)

    return restore


# -- alignment and paste-back -----------------------------------------------------------------
def face_template(size: int = FACE_SIZE) -> np.ndarray:
    """:data:`FFHQ_TEMPLATE_512` scaled to a ``size`` x ``size`` crop."""
    return FFHQ_TEMPLATE_512 * np.float32(size / 512.0)


def align_matrix(landmarks5: np.ndarray, size: int = FACE_SIZE) -> np.ndarray | None:
    """The 2x3 similarity transform taking the five landmarks onto the template of a
    ``size`` crop (``cv2.estimateAffinePartial2D``, RANSAC as facexlib), or None for
    degenerate landmarks."""
    src = np.asarray(landmarks5, np.float32).reshape(5, 2)
    if not np.isfinite(src).all():
        return None
    matrix, _ = cv2.estimateAffinePartial2D(src, face_template(size))
    if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:, :2])) < 1e-8:
        return None
    return matrix


def crop_face(image: np.ndarray, matrix: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The aligned ``size`` x ``size`` face crop of an RGB image."""
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_RGB,
    )


def _square_box(inverse: np.ndarray, size: int, shape: tuple[int, ...]) -> masks.Box | None:
    """The image-clipped bounding box (x, y, w, h) of the crop square mapped back."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ inverse.T
    h, w = shape[:2]
    x0, y0 = max(0, math.floor(pts[:, 0].min())), max(0, math.floor(pts[:, 1].min()))
    x1, y1 = min(w, math.ceil(pts[:, 0].max()) + 1), min(h, math.ceil(pts[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def paste_mask(inverse: np.ndarray, box: masks.Box, size: int = FACE_SIZE) -> np.ndarray:
    """The paste weight over ``box`` (float32 in [0, 1]): the crop square warped back, eroded
    by 1 px against interpolated edges, then eroded by the seam width (1/20 of the face's
    side) and Gaussian-blurred by as much, so the weight is 0 on and outside the square's
    edge (facexlib's ``paste_faces_to_input_image``)."""
    x, y, w, h = box
    local = inverse.copy()
    local[:, 2] -= (x, y)
    square = np.ones((size, size), np.float32)
    inv = cv2.warpAffine(square, local, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    inv = cv2.erode(inv, np.ones((2, 2), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    edge = int(math.sqrt(float(inv.sum()))) // 20
    if edge <= 0:
        return inv
    center = cv2.erode(
        inv, np.ones((2 * edge, 2 * edge), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return cv2.GaussianBlur(center, (2 * edge + 1, 2 * edge + 1), 0)


def paste_face(
    image: np.ndarray,
    restored: np.ndarray,
    matrix: np.ndarray,
    strength: float = 1.0,
    inplace: bool = False,
) -> np.ndarray:
    """Warp the restored crop back into ``image`` (RGB, or grey (H, W)) with the inverse of
    ``matrix`` and blend it with weight ``strength * paste_mask``. Pixels where that weight
    is 0 (outside the feathered square, or everywhere with strength 0) keep their bits."""
    out = image if inplace else image.copy()
    size = restored.shape[0]
    inverse = cv2.invertAffineTransform(matrix)
    box = _square_box(inverse, size, image.shape)
    if box is None or strength <= 0:
        return out
    alpha = paste_mask(inverse, box, size) * np.float32(min(1.0, strength))
    x, y, w, h = box
    local = inverse.copy()
    local[:, 2] -= (x, y)
    patch = cv2.warpAffine(restored, local, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    if out.ndim == 2:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    return masks.paste_back(out, patch, box, alpha, inplace=True)


def restore_faces(
    image: np.ndarray,
    faces: Sequence[Face],
    restore: Callable[[np.ndarray], np.ndarray],
    strength: float = 1.0,
    size: int = FACE_SIZE,
    check: Callable[[], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Restore each face of ``image`` (RGB/RGBA/grey uint8; alpha is kept as it is) with
    ``restore`` (an aligned RGB crop -> the restored crop) and paste it back. Returns the
    image and how many faces were restored (faces with degenerate landmarks are skipped)."""
    rgb = _rgb(image)
    out = image[..., :3].copy() if image.ndim == 3 else image.copy()
    done = 0
    for i, face in enumerate(faces):
        if check is not None:
            check()
        matrix = align_matrix(face.landmarks5, size)
        if matrix is None:
            continue
        if strength > 0:
            restored = restore(crop_face(rgb, matrix, size))
            paste_face(out, restored, matrix, strength, inplace=True)
        done += 1
        if progress is not None:
            progress(i + 1, len(faces), f"face {i + 1}/{len(faces)}")
    if image.ndim == 3 and image.shape[2] == 4:
        out = np.concatenate([out, image[..., 3:]], axis=2)
    return out, done


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(image[..., :3])


# -- the job -----------------------------------------------------------------------------------
def check_request(request: RestoreFacesRequest) -> np.ndarray:
    """The request's image once its image and strength are valid (BadInput, exit 2)."""
    image = request.image
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise BadInput("the image must be an 8-bit RGB, RGBA or grey picture")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise BadInput(f"the image has shape {image.shape}; RGB, RGBA or grey is needed")
    if min(image.shape[:2]) < 1:
        raise BadInput("the image is empty")
    s = request.strength
    if not isinstance(s, (int, float)) or not math.isfinite(s) or not 0.0 <= s <= 1.0:
        raise BadInput(f"strength {s} is out of range (0 to 1)")
    return image


def _face_info(face: Face) -> dict:
    return {
        "box": [round(float(v), 2) for v in face.box],
        "score": round(float(face.score), 4),
        "landmarks": [[round(float(a), 2), round(float(b), 2)] for a, b in face.landmarks5],
    }


def run_restore(ctx: JobContext, request: RestoreFacesRequest) -> Finished:
    """Runner handler for :class:`RestoreFacesRequest`: one image out; ``extra["faces"]``
    lists the faces found (box x, y, w, h; score; landmarks). No face: the image unchanged
    and a progress note, not an error."""
    from studio.engine.jobs.device import pick_device

    image = check_request(request)
    path = resolve_face_model(request.model)
    det_key, det_factory = resolve_detector(request.detector)
    ctx.progress(0, 1, "detecting faces")
    detector = ctx.runner.cache(f"face-detector:{det_key}", det_factory)
    faces = list(detector(_rgb(image)))
    ctx.check()
    info: dict[str, Any] = {
        "model": path.stem,
        "strength": float(request.strength),
        "faces": [_face_info(f) for f in faces],
    }
    if not faces:
        ctx.progress(1, 1, "no faces found; the image is unchanged")
        info["restored"] = 0
        return ctx.finished([image.copy()], [{"restore_faces": info}], info)
    choice = pick_device(request.device or ctx.runner.device, "float32")
    mtime = path.stat().st_mtime_ns
    descriptor = ctx.runner.cache(
        f"face-restorer:{path}@{mtime}:{choice.device}",
        lambda: load_face_model(path).to(choice.device),
    )
    info["architecture"] = descriptor.architecture.name
    ctx.progress(0, len(faces), f"restoring {len(faces)} face(s) with {path.stem}")
    out, done = restore_faces(
        image,
        faces,
        model_restorer(descriptor, choice.device),
        float(request.strength),
        check=ctx.check,
        progress=ctx.progress,
    )
    ctx.check()
    info["restored"] = done
    return ctx.finished([out], [{"restore_faces": info}], info)
