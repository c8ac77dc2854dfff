"""Whole-body pose detection with DWPose (Yang et al. 2023, "Effective Whole-body Pose
Estimation with Two-stages Distillation", arXiv:2307.15880) run through onnxruntime: the
published ONNX pair from ``yzd-v/DWPose``.

1. ``yolox_l.onnx`` finds people (YOLOX, Ge et al. 2021): the image is letterboxed into
   640x640 (grey 114 padding), the 8400 anchor-free predictions (strides 8/16/32) are decoded
   to boxes, scored objectness x class, and class-aware NMS (IoU 0.45) keeps persons scoring
   over 0.3.
2. ``dw-ll_ucoco_384.onnx`` (an RTMPose-l head distilled on COCO-WholeBody) sees each box,
   padded x1.25 and widened to the 288:384 aspect, through an affine warp, normalised with the
   ImageNet mean/std. Its SimCC outputs (Li et al. 2022, "SimCC: a Simple Coordinate
   Classification Perspective for Human Pose Estimation") are decoded by argmax per axis at
   half-pixel bins (split ratio 2); a keypoint's score is the smaller of the two maxima.
3. The 133 COCO-WholeBody points become OpenPose's layout as the DWPose annotator does: a
   neck (mean of the shoulders) is inserted, the 17 body points reordered to BODY_18, and the
   68 face and 2 x 21 hand points kept (faces get OpenPose's two pupil points as missing);
   points scoring under 0.3 are missing.

Needs ``onnxruntime`` (the ``pose`` extra). The image is fed as RGB, as the reference
annotator feeds it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from studio.core.errors import BadInput, ModelError
from studio.core.imageio import rgb_on_white
from studio.core.pose import N_FACE, Person, Pose

DET_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
REPO_ID = "yzd-v/DWPose"
CATALOG_ID = "dwpose"

DET_SIZE = (640, 640)  # (h, w)
DET_STRIDES = (8, 16, 32)
NMS_IOU = 0.45
SCORE_MIN = 0.1
PERSON_MIN = 0.3
BOX_PADDING = 1.25
SIMCC_SPLIT = 2.0
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
VISIBLE = 0.3
DETECT_RESOLUTION = 512

# COCO-WholeBody body order -> OpenPose BODY_18 (after the neck is inserted at 17).
_MMPOSE_IDX = (17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3)
_OPENPOSE_IDX = (1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        # A missing extra is a setup problem, not a model problem: exit 2, one line.
        raise BadInput(
            'DWPose needs onnxruntime, the "pose" extra: pip install "studio[pose]" '
            '(in a checkout: pip install -e ".[pose]")'
        ) from e
    return onnxruntime


def is_dwpose_folder(folder: Path) -> bool:
    return (folder / DET_FILE).is_file() and (folder / POSE_FILE).is_file()


def _providers(device: str | None) -> list[str]:
    ort = _ort()
    available = ort.get_available_providers()
    want = []
    if device not in ("cpu",):
        for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider"):
            if p in available:
                want.append(p)
    return [*want, "CPUExecutionProvider"]


def _session(path: Path, device: str | None):
    ort = _ort()
    try:
        return ort.InferenceSession(str(path), providers=_providers(device))
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
        raise ModelError(f"{path.name}: not a loadable ONNX model ({e})", repr(e)) from e


# -- stage 1: people -------------------------------------------------------------------------
def letterbox(image: np.ndarray, size: tuple[int, int] = DET_SIZE) -> tuple[np.ndarray, float]:
    """The image scaled to fit ``size`` (h, w) at the top-left of a grey (114) canvas, as a
    (1, 3, h, w) float32 batch, and the scale factor."""
    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    nh, nw = int(h * r), int(w * r)
    canvas = np.full((size[0], size[1], 3), 114, np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32), r


def decode_yolox(out: np.ndarray, size: tuple[int, int] = DET_SIZE) -> np.ndarray:
    """(N, 85) raw YOLOX predictions -> (N, 85) with centre/size in input pixels: cx, cy =
    (p + grid) * stride, w, h = exp(p) * stride."""
    grids, strides = [], []
    for s in DET_STRIDES:
        hs, ws = size[0] // s, size[1] // s
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((hs * ws, 1), s))
    grid = np.concatenate(grids, 0)
    stride = np.concatenate(strides, 0)
    if out.shape[0] != grid.shape[0]:
        raise ModelError(
            f"{DET_FILE}: expected {grid.shape[0]} predictions for a {size[1]}x{size[0]} "
            f"input, got {out.shape[0]}"
        )
    out = out.astype(np.float32).copy()
    out[:, :2] = (out[:, :2] + grid) * stride
    out[:, 2:4] = np.exp(np.clip(out[:, 2:4], -10, 10)) * stride
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; boxes are (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx0 = np.maximum(x0[i], x0[order[1:]])
        yy0 = np.maximum(y0[i], y0[order[1:]])
        xx1 = np.minimum(x1[i], x1[order[1:]])
        yy1 = np.minimum(y1[i], y1[order[1:]])
        inter = np.maximum(0.0, xx1 - xx0 + 1) * np.maximum(0.0, yy1 - yy0 + 1)
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][overlap <= iou]
    return keep


def person_boxes(pred: np.ndarray, ratio: float) -> np.ndarray:
    """Decoded predictions -> (n, 4) person boxes in image pixels (class-aware NMS, persons
    over PERSON_MIN)."""
    boxes = np.empty((len(pred), 4), np.float32)
    boxes[:, 0] = pred[:, 0] - pred[:, 2] / 2
    boxes[:, 1] = pred[:, 1] - pred[:, 3] / 2
    boxes[:, 2] = pred[:, 0] + pred[:, 2] / 2
    boxes[:, 3] = pred[:, 1] + pred[:, 3] / 2
    boxes /= ratio
    # YOLOX's demo runs NMS per class and keeps class 0 (person) over PERSON_MIN; the other
    # classes' NMS cannot change the person boxes, so only class 0 is run.
    person = pred[:, 4] * pred[:, 5]
    valid = person > SCORE_MIN
    vb, vs = boxes[valid], person[valid]
    keep_boxes = [vb[i] for i in nms(vb, vs, NMS_IOU) if vs[i] > PERSON_MIN]
    return np.array(keep_boxes, np.float32).reshape(-1, 4)


# -- stage 2: keypoints ---------------------------------------------------------------------
def box_to_center_scale(box: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (w, h) of ``box`` padded x1.25 and widened/heightened to ``aspect`` (w/h)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    w, h = (x1 - x0) * BOX_PADDING, (y1 - y0) * BOX_PADDING
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], np.float32)


def crop_warp(center: np.ndarray, scale: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine map from the image to the (w, h) = ``size`` model input: the box
    ``scale`` around ``center`` fills the input."""
    w, h = size
    k = w / scale[0]
    return np.array([[k, 0, w / 2 - k * center[0]], [0, k, h / 2 - k * center[1]]], np.float32)


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split: float = SIMCC_SPLIT
) -> tuple[np.ndarray, np.ndarray]:
    """(K, Wx), (K, Wy) -> keypoints (K, 2) in model-input pixels and scores (K,)."""
    xs = simcc_x.argmax(axis=1)
    ys = simcc_y.argmax(axis=1)
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    points = np.stack([xs, ys], axis=1).astype(np.float32) / split
    points[scores <= 0] = -1
    return points, scores


def to_openpose(keypoints: np.ndarray, scores: np.ndarray) -> Person:
    """133 COCO-WholeBody points (image pixels) and scores -> an OpenPose :class:`Person`."""
    info = np.concatenate([keypoints, scores[:, None]], axis=1)  # (133, 3)
    neck = info[[5, 6]].mean(axis=0)
    neck[2] = min(info[5, 2], info[6, 2]) if min(info[5, 2], info[6, 2]) > VISIBLE else 0.0
    info = np.insert(info, 17, neck, axis=0)  # (134, 3)
    info[list(_OPENPOSE_IDX)] = info[list(_MMPOSE_IDX)]

    def points(rows: np.ndarray) -> list[tuple[float, float, float]]:
        return [
            (float(x), float(y), float(min(1.0, c))) if c > VISIBLE else (0.0, 0.0, 0.0)
            for x, y, c in rows
        ]

    face = points(info[24:92]) + [(0.0, 0.0, 0.0)] * (N_FACE - 68)
    return Person(
        body=points(info[:18]),
        face=face,
        hand_left=points(info[92:113]),
        hand_right=points(info[113:134]),
    )


class DWPoseDetector:
    """YOLOX person boxes + DWPose whole-body keypoints, with onnxruntime."""

    kind = "dwpose"
    has_hands = True
    has_face = True

    def __init__(self, det_session, pose_session) -> None:
        self.det = det_session
        self.pose = pose_session
        shape = self.pose.get_inputs()[0].shape  # (1, 3, h, w)
        try:
            self.pose_size = (int(shape[3]), int(shape[2]))  # (w, h)
        except (TypeError, ValueError, IndexError) as e:
            raise ModelError(f"{POSE_FILE}: unexpected input shape {shape}") from e

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | None = None) -> DWPoseDetector:
        folder = Path(folder)
        if not is_dwpose_folder(folder):
            raise ModelError(f"{folder}: needs {DET_FILE} and {POSE_FILE} (from {REPO_ID})")
        device = device or os.environ.get("STUDIO_DEVICE") or None
        return cls(_session(folder / DET_FILE, device), _session(folder / POSE_FILE, device))

    def boxes(self, rgb: np.ndarray) -> np.ndarray:
        batch, ratio = letterbox(rgb)
        out = self.det.run(None, {self.det.get_inputs()[0].name: batch})[0]
        return person_boxes(decode_yolox(np.asarray(out)[0]), ratio)

    def keypoints(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.pose_size
        center, scale = box_to_center_scale(box, w / h)
        warp = crop_warp(center, scale, (w, h))
        crop = cv2.warpAffine(rgb, warp, (w, h), flags=cv2.INTER_LINEAR)
        x = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
        simcc_x, simcc_y = self.pose.run(None, {self.pose.get_inputs()[0].name: x})[:2]
        pts, scores = decode_simcc(np.asarray(simcc_x)[0], np.asarray(simcc_y)[0])
        pts = pts / np.array([w, h], np.float32) * scale + center - scale / 2
        return pts, scores

    def detect(
        self,
        image: np.ndarray,
        resolution: int = DETECT_RESOLUTION,
        check: Callable[[], None] | None = None,
        hands: bool = True,
        face: bool = True,
    ) -> Pose:
        rgb = rgb_on_white(image)
        h, w = rgb.shape[:2]
        k = resolution / min(h, w) if resolution else 1.0
        if k < 1.0:
            rgb = cv2.resize(
                rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA
            )
        rgb = np.ascontiguousarray(rgb)
        sh, sw = rgb.shape[:2]
        boxes = self.boxes(rgb)
        if check:
            check()
        if len(boxes) == 0:  # as the annotator: no box -> try the whole picture
            boxes = np.array([[0, 0, sw, sh]], np.float32)
        sx, sy = w / sw, h / sh
        people = []
        for box in boxes:
            pts, scores = self.keypoints(rgb, box)
            if check:
                check()
            pts = pts * np.array([sx, sy], np.float32)
            # The padded crop reaches past the picture: points out there count as missing.
            outside = (pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] >= w) | (pts[:, 1] >= h)
            person = to_openpose(pts, np.where(outside, 0.0, scores))
            if not any(c > 0 for _, _, c in person.body):
                continue
            if not hands:
                person.hand_left = person.hand_right = None
            if not face:
                person.face = None
            people.append(person)
        return Pose(w, h, people)
