"""Human body pose detection with the OpenPose body network (Cao et al. 2017, "Realtime
Multi-Person 2D Pose Estimation using Part Affinity Fields", arXiv:1611.08050).

The network is the 6-stage, two-branch CNN used by ControlNet's annotator and controlnet_aux
(controlnet_aux's ``controlnet_aux/open_pose/model.py``, not part of Studio: a VGG-19 front end, then per stage branch L1 = 38 part-affinity-field
channels (19 limbs x (x, y)) and branch L2 = 19 confidence maps (18 parts + background)). It
loads the same weight file, ``body_pose_model.pth`` from ``lllyasviel/Annotators``, through
``torch.load(weights_only=True)`` (no pickle code runs), with the layer-name mapping of
controlnet_aux's ``util.transfer`` (the file's keys have no ``model0.`` style prefix).

Post-processing follows the paper (and controlnet_aux's ``open_pose/body.py``): non-maximum suppression on the
Gaussian-smoothed confidence maps gives part candidates (Sec. 2.2); each candidate limb is
scored by the line integral of the PAF along it, E = mean_u L_c(p(u)) . d / |d| (Eq. 10,
sampled at 10 points), plus a length prior; limbs are matched greedily per limb type (Sec.
2.4) and chained into people sharing parts. People with fewer than 4 parts or a mean score
under 0.4 are dropped.

The result is a :class:`studio.core.pose.Pose` in pixel coordinates of the input image.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from studio.core.errors import BadInput, ModelError
from studio.core.imageio import rgb_on_white
from studio.core.pose import N_BODY, Person, Pose

BODY_FILE = "body_pose_model.pth"
HAND_FILE = "hand_pose_model.pth"
FACE_FILE = "facenet.pth"
REPO_ID = "lllyasviel/Annotators"
CATALOG_ID = "openpose"

# 1-based part pairs (the paper's 19 limbs: 17 drawn + 2 ear-shoulder links) and, for each,
# the heatmap-stack indices of its PAF x/y channels (minus 19 = index into the 38 PAF maps).
_LIMB_SEQ = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
)  # fmt: skip
_MAP_IDX = (
    (31, 32), (39, 40), (33, 34), (35, 36), (41, 42), (43, 44), (19, 20), (21, 22), (23, 24),
    (25, 26), (27, 28), (29, 30), (47, 48), (49, 50), (53, 54), (51, 52), (55, 56), (37, 38),
    (45, 46),
)  # fmt: skip

BOX_SIZE = 368  # the network input height (at scale 0.5 of the original recipe's 368 box)
SCALE = 0.5
STRIDE = 8
PAD_VALUE = 128
THRESH_PART = 0.1
THRESH_PAF = 0.05
MID_SAMPLES = 10
DETECT_RESOLUTION = 512  # short side the image is resized to before detection
HAND_SCALES = (0.5, 1.0, 1.5, 2.0)  # multiples of the 368 px box the hand crop is run at
THRESH_HAND = 0.05
FACE_SIZE = 384  # the face crop is resized to this square
THRESH_FACE = 0.05


# -- the network ----------------------------------------------------------------------------------


def _gaussian(a: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Gaussian smoothing of a heat map as scipy.ndimage.gaussian_filter does it (reflected
    border, kernel radius 4 sigma), with OpenCV, which Studio already depends on."""
    radius = int(4.0 * sigma + 0.5)
    k = 2 * radius + 1
    return cv2.GaussianBlur(
        np.ascontiguousarray(a, dtype=np.float32), (k, k), sigma, borderType=cv2.BORDER_REFLECT
    )


def _make_layers(block: list[tuple[str, list[int]]], no_relu: set[str]) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = []
    for name, v in block:
        if "pool" in name:
            layers.append((name, nn.MaxPool2d(kernel_size=v[0], stride=v[1], padding=v[2])))
        else:
            layers.append(
                (name, nn.Conv2d(v[0], v[1], kernel_size=v[2], stride=v[3], padding=v[4]))
            )
            if name not in no_relu:
                layers.append(("relu_" + name, nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class BodyPoseModel(nn.Module):
    """The OpenPose body network; module and layer names match ``body_pose_model.pth``."""

    def __init__(self) -> None:
        super().__init__()
        # As in the reference implementation, the stage-6 L2 (heatmap) output keeps its ReLU.
        no_relu = {"conv5_5_CPM_L1", "conv5_5_CPM_L2"} | {
            f"Mconv7_stage{i}_L{b}" for i in range(2, 7) for b in (1, 2)
        } - {"Mconv7_stage6_L2"}
        block0 = [
            ("conv1_1", [3, 64, 3, 1, 1]),
            ("conv1_2", [64, 64, 3, 1, 1]),
            ("pool1_stage1", [2, 2, 0]),
            ("conv2_1", [64, 128, 3, 1, 1]),
            ("conv2_2", [128, 128, 3, 1, 1]),
            ("pool2_stage1", [2, 2, 0]),
            ("conv3_1", [128, 256, 3, 1, 1]),
            ("conv3_2", [256, 256, 3, 1, 1]),
            ("conv3_3", [256, 256, 3, 1, 1]),
            ("conv3_4", [256, 256, 3, 1, 1]),
            ("pool3_stage1", [2, 2, 0]),
            ("conv4_1", [256, 512, 3, 1, 1]),
            ("conv4_2", [512, 512, 3, 1, 1]),
            ("conv4_3_CPM", [512, 256, 3, 1, 1]),
            ("conv4_4_CPM", [256, 128, 3, 1, 1]),
        ]
        self.model0 = _make_layers(block0, no_relu)
        for b, out in ((1, 38), (2, 19)):
            stage1 = [
                (f"conv5_1_CPM_L{b}", [128, 128, 3, 1, 1]),
                (f"conv5_2_CPM_L{b}", [128, 128, 3, 1, 1]),
                (f"conv5_3_CPM_L{b}", [128, 128, 3, 1, 1]),
                (f"conv5_4_CPM_L{b}", [128, 512, 1, 1, 0]),
                (f"conv5_5_CPM_L{b}", [512, out, 1, 1, 0]),
            ]
            setattr(self, f"model1_{b}", _make_layers(stage1, no_relu))
            for i in range(2, 7):
                stage = [(f"Mconv1_stage{i}_L{b}", [185, 128, 7, 1, 3])]
                stage += [(f"Mconv{j}_stage{i}_L{b}", [128, 128, 7, 1, 3]) for j in range(2, 6)]
                stage += [
                    (f"Mconv6_stage{i}_L{b}", [128, 128, 1, 1, 0]),
                    (f"Mconv7_stage{i}_L{b}", [128, out, 1, 1, 0]),
                ]
                setattr(self, f"model{i}_{b}", _make_layers(stage, no_relu))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, H, W) BGR in [-0.5, 0.5). Returns (PAFs (N,38,H/8,W/8), heatmaps (N,19,..))."""
        features = self.model0(x)
        out = features
        pafs = heat = features
        for i in range(1, 7):
            pafs = getattr(self, f"model{i}_1")(out)
            heat = getattr(self, f"model{i}_2")(out)
            out = torch.cat([pafs, heat, features], 1)
        return pafs, heat


def file_state_dict(model: BodyPoseModel) -> dict[str, torch.Tensor]:
    """The model's weights under the key names of ``body_pose_model.pth`` (no block prefix)."""
    return {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}


def _read_weights(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(path))
        else:
            weights = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: not a readable OpenPose {what} weight file ({e})") from e
    if isinstance(weights, dict) and "state_dict" in weights:
        weights = weights["state_dict"]
    if not isinstance(weights, dict):
        raise ModelError(f"{path.name}: not an OpenPose {what} weight file")
    return weights


def _load_into(model: nn.Module, path: Path, what: str, expected: str) -> None:
    """Load a file whose keys lack the block prefix (``util.transfer``) or match exactly."""
    weights = _read_weights(path, what)
    try:
        mapped = {}
        for name in model.state_dict():
            short = name.split(".", 1)[1] if "." in name else name
            mapped[name] = weights[name] if name in weights else weights[short]
        model.load_state_dict(mapped)
    except (KeyError, RuntimeError, TypeError) as e:
        raise ModelError(
            f"{path.name}: not OpenPose {what} weights (expected the layers of {expected})",
            repr(e),
        ) from e


def load_body_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> BodyPoseModel:
    """Load ``body_pose_model.pth`` (or a .safetensors with the same keys) safely."""
    model = BodyPoseModel()
    _load_into(model, Path(path), "body", BODY_FILE)
    return model.to(device).eval()


class HandPoseModel(nn.Module):
    """The OpenPose hand network (Simon et al. 2017, "Hand Keypoint Detection in Single Images
    using Multiview Bootstrapping"): VGG front end and 6 stages of 22 confidence maps (21
    keypoints + background). Names match ``hand_pose_model.pth``."""

    def __init__(self) -> None:
        super().__init__()
        no_relu = {"conv6_2_CPM"} | {f"Mconv7_stage{i}" for i in range(2, 7)}
        block1_0 = [
            ("conv1_1", [3, 64, 3, 1, 1]),
            ("conv1_2", [64, 64, 3, 1, 1]),
            ("pool1_stage1", [2, 2, 0]),
            ("conv2_1", [64, 128, 3, 1, 1]),
            ("conv2_2", [128, 128, 3, 1, 1]),
            ("pool2_stage1", [2, 2, 0]),
            ("conv3_1", [128, 256, 3, 1, 1]),
            ("conv3_2", [256, 256, 3, 1, 1]),
            ("conv3_3", [256, 256, 3, 1, 1]),
            ("conv3_4", [256, 256, 3, 1, 1]),
            ("pool3_stage1", [2, 2, 0]),
            ("conv4_1", [256, 512, 3, 1, 1]),
            ("conv4_2", [512, 512, 3, 1, 1]),
            ("conv4_3", [512, 512, 3, 1, 1]),
            ("conv4_4", [512, 512, 3, 1, 1]),
            ("conv5_1", [512, 512, 3, 1, 1]),
            ("conv5_2", [512, 512, 3, 1, 1]),
            ("conv5_3_CPM", [512, 128, 3, 1, 1]),
        ]
        self.model1_0 = _make_layers(block1_0, no_relu)
        self.model1_1 = _make_layers(
            [("conv6_1_CPM", [128, 512, 1, 1, 0]), ("conv6_2_CPM", [512, 22, 1, 1, 0])], no_relu
        )
        for i in range(2, 7):
            stage = [(f"Mconv1_stage{i}", [150, 128, 7, 1, 3])]
            stage += [(f"Mconv{j}_stage{i}", [128, 128, 7, 1, 3]) for j in range(2, 6)]
            stage += [(f"Mconv6_stage{i}", [128, 128, 1, 1, 0])]
            stage += [(f"Mconv7_stage{i}", [128, 22, 1, 1, 0])]
            setattr(self, f"model{i}", _make_layers(stage, no_relu))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model1_0(x)
        out = self.model1_1(features)
        for i in range(2, 7):
            out = getattr(self, f"model{i}")(torch.cat([out, features], 1))
        return out


class FaceNet(nn.Module):
    """The OpenPose face network (the cascade of Wei et al. 2016, "Convolutional Pose
    Machines", trained on 70 face landmarks): VGG front end and 6 stages of 71 maps. Layer
    names match ``facenet.pth`` (flat: ``conv1_1``, ..., ``Mconv7_stage6``)."""

    _FRONT = (
        ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool", ("conv2_1", 64, 128),
        ("conv2_2", 128, 128), "pool", ("conv3_1", 128, 256), ("conv3_2", 256, 256),
        ("conv3_3", 256, 256), ("conv3_4", 256, 256), "pool", ("conv4_1", 256, 512),
        ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
        ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3_CPM", 512, 128),
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        for spec in self._FRONT:
            if spec != "pool":
                name, cin, cout = spec
                setattr(self, name, nn.Conv2d(cin, cout, 3, 1, 1))
        self.conv6_1_CPM = nn.Conv2d(128, 512, 1, 1, 0)
        self.conv6_2_CPM = nn.Conv2d(512, 71, 1, 1, 0)
        for i in range(2, 7):
            setattr(self, f"Mconv1_stage{i}", nn.Conv2d(199, 128, 7, 1, 3))
            for j in range(2, 6):
                setattr(self, f"Mconv{j}_stage{i}", nn.Conv2d(128, 128, 7, 1, 3))
            setattr(self, f"Mconv6_stage{i}", nn.Conv2d(128, 128, 1, 1, 0))
            setattr(self, f"Mconv7_stage{i}", nn.Conv2d(128, 71, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's 71 maps (70 landmarks + background)."""
        relu = torch.relu
        h = x
        for spec in self._FRONT:
            h = (
                nn.functional.max_pool2d(h, 2, 2)
                if spec == "pool"
                else relu(getattr(self, spec[0])(h))
            )
        features = h
        h = self.conv6_2_CPM(relu(self.conv6_1_CPM(h)))
        for i in range(2, 7):
            h = torch.cat([h, features], 1)
            for j in range(1, 7):
                h = relu(getattr(self, f"Mconv{j}_stage{i}")(h))
            h = getattr(self, f"Mconv7_stage{i}")(h)
        return h


def load_hand_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> HandPoseModel:
    model = HandPoseModel()
    _load_into(model, Path(path), "hand", HAND_FILE)
    return model.to(device).eval()


def load_face_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> FaceNet:
    model = FaceNet()
    _load_into(model, Path(path), "face", FACE_FILE)
    return model.to(device).eval()


# -- finding the weights ---------------------------------------------------------------------------
def default_model_folder() -> Path:
    """Where Studio looks for the OpenPose weights by default."""
    from studio.engine.models.folders import kind_dir

    return kind_dir("pose-detector") / CATALOG_ID


def how_to_get() -> str:
    return (
        f"get it with `studio models download {CATALOG_ID}`, or put {BODY_FILE} (from the "
        f"Hugging Face repo {REPO_ID}) in {default_model_folder()} or the models folder's "
        "pose/ (or any folder, passed as --model FOLDER)"
    )


def _body_in(path: Path) -> Path | None:
    if path.is_file():
        return path
    return path / BODY_FILE if (path / BODY_FILE).is_file() else None


def find_body_weights(model: str | None = None) -> Path:
    """Resolve the body weights: a file, a folder holding ``body_pose_model.pth``, a name in
    the pose folders, or (None, "openpose", "lllyasviel/Annotators") the installed ones:
    the catalog's ``openpose`` where the model manager put it, a body file in a pose folder,
    then the body file alone in the Hugging Face cache. Never downloads. Raises ModelError
    saying how to get them."""
    from studio.engine.models.resolver import hf_cached, resolve
    from studio.engine.models.scan import local_models

    ref = (model or "").strip()
    if ref and ref not in (CATALOG_ID, REPO_ID):
        try:
            found = resolve(ref, "pose-detector")
        except ModelError as e:
            raise ModelError(f"Pose model {ref!r} not found; {how_to_get()}", e.message) from e
        body = _body_in(found)
        if body is None:
            raise ModelError(f"{found}: no {BODY_FILE} in this folder; {how_to_get()}")
        return body
    from studio.engine.models.folders import kind_folders

    # Where downloads go, then the same name in every pose folder (other roots, the layout
    # named for the kind).
    candidates: list[Path] = [default_model_folder()]
    candidates += [f / CATALOG_ID for f in kind_folders("pose-detector")]
    try:
        candidates.append(resolve(CATALOG_ID, "pose-detector"))
    except (ModelError, BadInput):  # not installed, or a user catalog that redefines it
        pass
    candidates += [m.path for m in local_models("pose-detector")]
    for c in candidates:
        body = _body_in(c) if c.exists() else None
        if body is not None and body.name == BODY_FILE:
            return body
    cached = hf_cached(REPO_ID, BODY_FILE)  # hand/face files are optional here
    if cached is not None:
        return cached
    raise ModelError(f"No pose detector model is installed; {how_to_get()}")


def _installed_dwpose() -> Path | None:
    """The DWPose ONNX pair where the model manager or the user put it, or None."""
    from studio.engine.models.folders import kind_folders
    from studio.engine.models.resolver import hf_cached, resolve
    from studio.engine.models.scan import local_models
    from studio.engine.vision import dwpose

    candidates: list[Path] = [default_model_folder().parent / dwpose.CATALOG_ID]
    candidates += [f / dwpose.CATALOG_ID for f in kind_folders("pose-detector")]
    try:
        candidates.append(resolve(dwpose.CATALOG_ID, "pose-detector"))
    except (ModelError, BadInput):
        pass
    candidates += [m.path for m in local_models("pose-detector") if m.path.is_dir()]
    for c in candidates:
        if c.is_dir() and dwpose.is_dwpose_folder(c):
            return c
    files = [hf_cached(dwpose.REPO_ID, f) for f in (dwpose.DET_FILE, dwpose.POSE_FILE)]
    if files[0] is not None and files[1] is not None and files[0].parent == files[1].parent:
        return files[0].parent
    return None


def find_pose_model(model: str | None = None) -> tuple[str, Path]:
    """Which detector ``model`` names: ("dwpose", folder with the ONNX pair) or ("openpose",
    body_pose_model.pth). ``model`` is a folder or file, "dwpose"/"openpose" (or their
    Hugging Face repo ids), or None: DWPose when it is installed and onnxruntime is
    available, else OpenPose. Raises ModelError saying how to get one."""
    from studio.engine.vision import dwpose

    ref = (model or "").strip()
    if ref in (dwpose.CATALOG_ID, dwpose.REPO_ID):
        folder = _installed_dwpose()
        if folder is None:
            raise ModelError(
                f"DWPose is not installed; get it with `studio models download "
                f"{dwpose.CATALOG_ID}` (or put {dwpose.DET_FILE} and {dwpose.POSE_FILE} from "
                f"{dwpose.REPO_ID} in a folder and pass it as the model)"
            )
        return "dwpose", folder
    if ref and ref not in (CATALOG_ID, REPO_ID):
        p = Path(ref).expanduser()
        folder = p.parent if p.is_file() and p.suffix.lower() == ".onnx" else p
        if folder.is_dir() and dwpose.is_dwpose_folder(folder):
            return "dwpose", folder
        if p.is_file() and p.suffix.lower() == ".onnx":
            raise ModelError(
                f"{p.name}: DWPose needs {dwpose.DET_FILE} and {dwpose.POSE_FILE} side by side"
            )
        return "openpose", find_body_weights(ref)
    if not ref:
        folder = _installed_dwpose()
        if folder is not None and dwpose.onnxruntime_available():
            return "dwpose", folder
        try:
            return "openpose", find_body_weights(None)
        except ModelError as e:
            if folder is not None:  # DWPose is here but onnxruntime is not
                dwpose._ort()
            raise ModelError(
                "No pose detector model is installed; get one with `studio models download "
                f"openpose` or `studio models download dwpose`, or put {BODY_FILE} (from "
                f"{REPO_ID}) in {default_model_folder()}"
            ) from e
    return "openpose", find_body_weights(ref)


def load_detector(kind: str, path: str | os.PathLike, device: str | None = None):
    """A detector object with ``detect(image, check=, hands=, face=) -> Pose``."""
    if kind == "dwpose":
        from studio.engine.vision.dwpose import DWPoseDetector

        return DWPoseDetector.load(path, device)
    return PoseDetector.load(str(path), device)


# -- inference --------------------------------------------------------------------------------------
def _pad_right_down(img: np.ndarray, stride: int, value: int) -> tuple[np.ndarray, int, int]:
    h, w = img.shape[:2]
    pad_h = (-h) % stride
    pad_w = (-w) % stride
    out = cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(value,) * 3)
    return out, pad_h, pad_w


@torch.no_grad()
def body_maps(
    model: BodyPoseModel, bgr: np.ndarray, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence maps (H, W, 19) and PAFs (H, W, 38) at the image's size (Sec. 2.1)."""
    h, w = bgr.shape[:2]
    scale = SCALE * BOX_SIZE / h
    resized = cv2.resize(bgr, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    padded, pad_h, pad_w = _pad_right_down(resized, STRIDE, PAD_VALUE)
    x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)[None])).float()
    x = (x / 256.0 - 0.5).to(device)
    pafs, heat = model(x)

    def upsample(t: torch.Tensor) -> np.ndarray:
        m = t[0].float().cpu().numpy().transpose(1, 2, 0)
        m = cv2.resize(m, (0, 0), fx=STRIDE, fy=STRIDE, interpolation=cv2.INTER_CUBIC)
        m = m[: padded.shape[0] - pad_h, : padded.shape[1] - pad_w, :]
        return cv2.resize(m, (w, h), interpolation=cv2.INTER_CUBIC)

    return upsample(heat), upsample(pafs)


def find_peaks(heatmap: np.ndarray, threshold: float = THRESH_PART) -> list[list[tuple]]:
    """Per part: (x, y, score, id) local maxima of the smoothed map above ``threshold``."""
    all_peaks: list[list[tuple]] = []
    counter = 0
    for part in range(N_BODY):
        raw = heatmap[:, :, part]
        m = _gaussian(raw)
        peak = m > threshold
        # >= its lower/right neighbours, and strictly > its upper/left ones so that a flat
        # top of two equal pixels gives one peak, not two candidates for the same part.
        peak[1:, :] &= m[1:, :] > m[:-1, :]
        peak[:-1, :] &= m[:-1, :] >= m[1:, :]
        peak[:, 1:] &= m[:, 1:] > m[:, :-1]
        peak[:, :-1] &= m[:, :-1] >= m[:, 1:]
        ys, xs = np.nonzero(peak)
        order = np.lexsort((xs, ys))
        peaks = [
            (int(xs[i]), int(ys[i]), float(raw[ys[i], xs[i]]), counter + n)
            for n, i in enumerate(order)
        ]
        counter += len(peaks)
        all_peaks.append(peaks)
    return all_peaks


def assemble(
    all_peaks: list[list[tuple]], paf: np.ndarray, image_height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy multi-person parsing with PAFs (Sec. 2.4). Returns ``candidate`` (n, 4: x, y,
    score, id) and ``subset`` (people, 20: 18 candidate ids or -1, total score, part count)."""
    h, w = paf.shape[:2]
    connections: list[np.ndarray | None] = []
    for (a1, b1), (mx, my) in zip(_LIMB_SEQ, _MAP_IDX, strict=True):
        cand_a, cand_b = all_peaks[a1 - 1], all_peaks[b1 - 1]
        if not cand_a or not cand_b:
            connections.append(None)
            continue
        px, py = paf[:, :, mx - 19], paf[:, :, my - 19]
        scored = []
        for i, ca in enumerate(cand_a):
            for j, cb in enumerate(cand_b):
                dx, dy = cb[0] - ca[0], cb[1] - ca[1]
                norm = max(0.001, math.hypot(dx, dy))
                xs = np.rint(np.linspace(ca[0], cb[0], MID_SAMPLES)).astype(int).clip(0, w - 1)
                ys = np.rint(np.linspace(ca[1], cb[1], MID_SAMPLES)).astype(int).clip(0, h - 1)
                e = px[ys, xs] * (dx / norm) + py[ys, xs] * (dy / norm)
                score = float(e.mean()) + min(0.5 * image_height / norm - 1.0, 0.0)
                if (e > THRESH_PAF).sum() > 0.8 * len(e) and score > 0:
                    scored.append((i, j, score, score + ca[2] + cb[2]))
        scored.sort(key=lambda t: t[2], reverse=True)
        used_a: set[int] = set()
        used_b: set[int] = set()
        rows = []
        for i, j, s, _ in scored:
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            rows.append((cand_a[i][3], cand_b[j][3], s, i, j))
            if len(rows) >= min(len(cand_a), len(cand_b)):
                break
        connections.append(np.array(rows, dtype=float).reshape(-1, 5))

    candidate = np.array([p for peaks in all_peaks for p in peaks], dtype=float).reshape(-1, 4)
    subset = -1 * np.ones((0, 20))
    for k, conn in enumerate(connections):
        if conn is None:
            continue
        ia, ib = _LIMB_SEQ[k][0] - 1, _LIMB_SEQ[k][1] - 1
        for part_a, part_b, s, _, _ in conn:
            found = [
                j for j in range(len(subset)) if subset[j][ia] == part_a or subset[j][ib] == part_b
            ][:2]
            if len(found) == 1:
                j = found[0]
                if subset[j][ib] != part_b:
                    subset[j][ib] = part_b
                    subset[j][-1] += 1
                    subset[j][-2] += candidate[int(part_b), 2] + s
            elif len(found) == 2:
                j1, j2 = found
                both = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
                if not (both == 2).any():  # disjoint halves of one person: merge
                    subset[j1][:-2] += subset[j2][:-2] + 1
                    subset[j1][-2:] += subset[j2][-2:]
                    subset[j1][-2] += s
                    subset = np.delete(subset, j2, 0)
                else:
                    subset[j1][ib] = part_b
                    subset[j1][-1] += 1
                    subset[j1][-2] += candidate[int(part_b), 2] + s
            elif k < 17:
                row = -1 * np.ones(20)
                row[ia], row[ib] = part_a, part_b
                row[-1] = 2
                row[-2] = candidate[int(part_a), 2] + candidate[int(part_b), 2] + s
                subset = np.vstack([subset, row])
    keep = [
        i for i in range(len(subset)) if subset[i][-1] >= 4 and subset[i][-2] / subset[i][-1] >= 0.4
    ]
    return candidate, subset[keep]


def to_pose(candidate: np.ndarray, subset: np.ndarray, width: int, height: int) -> Pose:
    people = []
    for row in subset:
        body = []
        for idx in row[:N_BODY]:
            if idx < 0:
                body.append((0.0, 0.0, 0.0))
            else:
                x, y, score = candidate[int(idx), :3]
                body.append((float(x), float(y), float(min(1.0, max(0.01, score)))))
        people.append(Person(body=body))
    return Pose(width, height, people)


# -- hands and face (crops placed from the body keypoints) ---------------------------------------
def hand_boxes(body: list, width: int, height: int) -> list[tuple[int, int, int, bool]]:
    """Square hand crops (x, y, side, is_left) from shoulder, elbow and wrist, as OpenPose's
    handDetector.cpp: centre = wrist + 0.33 (wrist - elbow), side = 1.5 max(|wrist-elbow|,
    0.9 |elbow-shoulder|), clipped to the image; crops under 20 px are skipped."""
    out = []
    for (s_i, e_i, w_i), is_left in (((5, 6, 7), True), ((2, 3, 4), False)):
        (x1, y1, c1), (x2, y2, c2), (x3, y3, c3) = body[s_i], body[e_i], body[w_i]
        if min(c1, c2, c3) <= 0:
            continue
        side = 1.5 * max(math.hypot(x3 - x2, y3 - y2), 0.9 * math.hypot(x2 - x1, y2 - y1))
        x = max(0.0, x3 + 0.33 * (x3 - x2) - side / 2)
        y = max(0.0, y3 + 0.33 * (y3 - y2) - side / 2)
        side = min(side, width - x, height - y)
        if side >= 20:
            out.append((int(x), int(y), int(side), is_left))
    return out


def face_box(body: list, width: int, height: int) -> tuple[int, int, int] | None:
    """A square face crop (x, y, side) around the nose, sized from the eyes (3x) and ears
    (1.5x) as in the ControlNet annotator's faceDetect; None if too small or no head."""
    x0, y0, c0 = body[0]
    if c0 <= 0:
        return None
    half = 0.0
    for idx, k in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5)):
        x1, y1, c1 = body[idx]
        if c1 > 0:
            half = max(half, k * max(abs(x0 - x1), abs(y0 - y1)))
    if half <= 0:
        return None
    x, y = max(0.0, x0 - half), max(0.0, y0 - half)
    side = min(2 * half, width - x, height - y)
    if side < 20:
        return None
    return int(x), int(y), int(side)


def _peak_in_largest_blob(raw: np.ndarray, threshold: float) -> tuple[float, float, float] | None:
    """The maximum of ``raw`` inside the connected region (of the smoothed map above
    ``threshold``) that holds the most mass; None if nothing passes."""
    smooth = _gaussian(raw)
    binary = (smooth > threshold).astype(np.uint8)
    if not binary.any():
        return None
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    sums = np.bincount(labels.ravel(), weights=raw.ravel(), minlength=n)[1:]
    best = int(np.argmax(sums)) + 1
    masked = np.where(labels == best, raw, -np.inf)
    y, x = np.unravel_index(int(np.argmax(masked)), raw.shape)
    return float(x), float(y), float(raw[y, x])


@torch.no_grad()
def hand_keypoints(
    model: HandPoseModel,
    bgr: np.ndarray,
    device: torch.device | str = "cpu",
    scales: tuple[float, ...] = HAND_SCALES,
) -> list[tuple[float, float, float]]:
    """21 hand keypoints (x, y, confidence; 0 = missing) in the crop's pixels: confidence
    maps averaged over ``scales`` of the 368 px box."""
    h, w = bgr.shape[:2]
    acc = np.zeros((h, w, 22), np.float32)
    for scale in scales:
        k = scale * BOX_SIZE / h
        resized = cv2.resize(bgr, (0, 0), fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
        padded, pad_h, pad_w = _pad_right_down(resized, STRIDE, PAD_VALUE)
        x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)[None])).float()
        out = model((x / 256.0 - 0.5).to(device))[0].float().cpu().numpy().transpose(1, 2, 0)
        out = cv2.resize(out, (0, 0), fx=STRIDE, fy=STRIDE, interpolation=cv2.INTER_CUBIC)
        out = out[: padded.shape[0] - pad_h, : padded.shape[1] - pad_w, :]
        acc += cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC) / len(scales)
    points = []
    for part in range(21):
        peak = _peak_in_largest_blob(acc[:, :, part], THRESH_HAND)
        points.append((0.0, 0.0, 0.0) if peak is None else (peak[0], peak[1], _conf(peak[2])))
    return points


@torch.no_grad()
def face_keypoints(
    model: FaceNet, bgr: np.ndarray, device: torch.device | str = "cpu"
) -> list[tuple[float, float, float]]:
    """70 face landmarks (x, y, confidence; 0 = missing) in the crop's pixels."""
    h, w = bgr.shape[:2]
    interp = cv2.INTER_AREA if max(h, w) > FACE_SIZE else cv2.INTER_CUBIC
    x = cv2.resize(bgr, (FACE_SIZE, FACE_SIZE), interpolation=interp)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).float() / 256.0 - 0.5
    maps = model(x.to(device))
    maps = nn.functional.interpolate(maps, (h, w), mode="bilinear", align_corners=True)
    maps = maps[0].float().cpu().numpy()
    points = []
    for part in range(70):
        m = maps[part]
        y, xx = np.unravel_index(int(np.argmax(m)), m.shape)
        v = float(m[y, xx])
        points.append((float(xx), float(y), _conf(v)) if v > THRESH_FACE else (0.0, 0.0, 0.0))
    return points


def _conf(v: float) -> float:
    return float(min(1.0, max(0.01, v)))


class PoseDetector:
    """OpenPose detection from an RGB(A) image to a :class:`Pose`: bodies, and hands and
    faces when their models are loaded."""

    kind = "openpose"

    @property
    def has_hands(self) -> bool:
        return self.hand is not None

    @property
    def has_face(self) -> bool:
        return self.face is not None

    def __init__(
        self,
        body: nn.Module,
        device: torch.device | str = "cpu",
        hand: HandPoseModel | None = None,
        face: FaceNet | None = None,
        hand_scales: tuple[float, ...] = HAND_SCALES,
    ) -> None:
        self.body = body
        self.hand = hand
        self.face = face
        self.hand_scales = hand_scales
        self.device = torch.device(device)

    @classmethod
    def load(
        cls,
        model: str | None = None,
        device: str | None = None,
        hands: bool = True,
        face: bool = True,
    ) -> PoseDetector:
        """The body model from ``model`` (see :func:`find_body_weights`), and the hand and face
        models when their files sit beside it (optional: missing ones are skipped)."""
        from studio.engine.jobs.device import pick_device

        dev = pick_device(device).device
        path = find_body_weights(model)
        hand_path, face_path = path.parent / HAND_FILE, path.parent / FACE_FILE
        return cls(
            load_body_model(path, dev),
            dev,
            hand=load_hand_model(hand_path, dev) if hands and hand_path.is_file() else None,
            face=load_face_model(face_path, dev) if face and face_path.is_file() else None,
        )

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
        small = rgb
        if k < 1.0:
            small = cv2.resize(
                rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA
            )
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        heat, paf = body_maps(self.body, bgr, self.device)
        if check:
            check()
        peaks = find_peaks(heat)
        candidate, subset = assemble(peaks, paf, bgr.shape[0])
        pose = to_pose(candidate, subset, bgr.shape[1], bgr.shape[0])
        for person in pose.people:
            if check:
                check()
            if hands and self.hand is not None:
                for x, y, side, is_left in hand_boxes(person.body, bgr.shape[1], bgr.shape[0]):
                    crop = bgr[y : y + side, x : x + side]
                    pts = hand_keypoints(self.hand, crop, self.device, self.hand_scales)
                    pts = _offset(pts, x, y)
                    if is_left:
                        person.hand_left = pts
                    else:
                        person.hand_right = pts
            if face and self.face is not None:
                box = face_box(person.body, bgr.shape[1], bgr.shape[0])
                if box is not None:
                    x, y, side = box
                    crop = bgr[y : y + side, x : x + side]
                    person.face = _offset(face_keypoints(self.face, crop, self.device), x, y)
        if check:
            check()
        return _scaled(pose, w, h)


def _offset(points: list, dx: float, dy: float) -> list:
    return [(x + dx, y + dy, c) if c > 0 else (0.0, 0.0, 0.0) for x, y, c in points]


def _scaled(pose: Pose, width: int, height: int) -> Pose:
    """``pose`` (on the detection-size canvas) on a ``width`` x ``height`` canvas."""
    sx, sy = width / pose.width, height / pose.height
    if (sx, sy) == (1.0, 1.0):
        return pose

    def scale(points: list | None) -> list | None:
        if points is None:
            return None
        return [(x * sx, y * sy, c) if c > 0 else (0.0, 0.0, 0.0) for x, y, c in points]

    people = [
        Person(scale(p.body), scale(p.hand_left), scale(p.hand_right), scale(p.face))
        for p in pose.people
    ]
    return Pose(width, height, people)
