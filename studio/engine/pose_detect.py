"""Human body pose detection with the OpenPose body network (Cao et al. 2017, "Realtime
Multi-Person 2D Pose Estimation using Part Affinity Fields", arXiv:1611.08050).

The network is the 6-stage, two-branch CNN used by ControlNet's annotator and controlnet_aux
(``open_pose/model.py``: a VGG-19 front end, then per stage branch L1 = 38 part-affinity-field
channels (19 limbs x (x, y)) and branch L2 = 19 confidence maps (18 parts + background)). It
loads the same weight file, ``body_pose_model.pth`` from ``lllyasviel/Annotators``, through
``torch.load(weights_only=True)`` (no pickle code runs), with the layer-name mapping of
controlnet_aux's ``util.transfer`` (the file's keys have no ``model0.`` style prefix).

Post-processing follows the paper (and ``open_pose/body.py``): non-maximum suppression on the
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
from scipy.ndimage import gaussian_filter
from torch import nn

from studio.core.errors import BadInput, ModelError
from studio.core.pose import N_BODY, Person, Pose

BODY_FILE = "body_pose_model.pth"
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


# -- the network ----------------------------------------------------------------------------------
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


def load_body_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> BodyPoseModel:
    """Load ``body_pose_model.pth`` (or a .safetensors with the same keys) safely."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(path))
        else:
            weights = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path.name}: not a readable OpenPose weight file ({e})") from e
    if isinstance(weights, dict) and "state_dict" in weights:
        weights = weights["state_dict"]
    model = BodyPoseModel()
    try:
        mapped = {}
        for name in model.state_dict():
            short = name.split(".", 1)[1]
            mapped[name] = weights[short] if short in weights else weights[name]
        model.load_state_dict(mapped)
    except (KeyError, RuntimeError, TypeError) as e:
        raise ModelError(
            f"{path.name}: not OpenPose body weights (expected the layers of {BODY_FILE})",
            repr(e),
        ) from e
    return model.to(device).eval()


# -- finding the weights ---------------------------------------------------------------------------
def _studio_home() -> Path:
    home = os.environ.get("STUDIO_HOME")
    if home:
        return Path(home)
    import platformdirs

    return Path(platformdirs.user_data_dir("studio", appauthor=False))


def default_model_folder() -> Path:
    """Where Studio looks for the OpenPose weights by default."""
    return _studio_home() / "models" / "pose-detector" / CATALOG_ID


def how_to_get() -> str:
    return (
        f"get it with `studio models download {CATALOG_ID}`, or put {BODY_FILE} (from the "
        f"Hugging Face repo {REPO_ID}) in {default_model_folder()} (or any folder, passed "
        "as --model FOLDER)"
    )


def find_body_weights(model: str | None = None) -> Path:
    """Resolve the body weights: a file, a folder holding ``body_pose_model.pth``, or (None,
    "openpose", "lllyasviel/Annotators") the default folder, then the Hugging Face cache.
    Never downloads. Raises ModelError saying how to get them."""
    ref = (model or "").strip()
    if ref and ref not in (CATALOG_ID, REPO_ID):
        p = Path(ref).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            if (p / BODY_FILE).is_file():
                return p / BODY_FILE
            raise ModelError(f"{p}: no {BODY_FILE} in this folder; {how_to_get()}")
        raise ModelError(f"Pose model {ref!r} not found; {how_to_get()}")
    local = default_model_folder() / BODY_FILE
    if local.is_file():
        return local
    cached = _catalog_or_cache()
    if cached is not None:
        return cached
    raise ModelError(f"No pose detector model is installed; {how_to_get()}")


def _catalog_or_cache() -> Path | None:
    """The catalog's "openpose" entry where the model manager installed it (Studio's models
    folder, the user's model folders or the HF cache), else just the body file in the HF
    cache (hand/face files are optional here)."""
    try:
        from studio.core.catalog import load_catalog
        from studio.engine.store import find_installed

        entry = load_catalog().get(CATALOG_ID)
        found = find_installed(entry) if entry is not None else None
        if found is not None:
            found = Path(found)
            if found.is_dir() and (found / BODY_FILE).is_file():
                return found / BODY_FILE
            if found.is_file():
                return found
    except Exception:  # noqa: BLE001 - a broken catalog must not hide the HF cache
        pass
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(REPO_ID, BODY_FILE, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached
        return None


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
        m = gaussian_filter(raw, sigma=3)
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


class PoseDetector:
    """OpenPose body detection from an RGB(A) image to a :class:`Pose`."""

    def __init__(self, body: BodyPoseModel, device: torch.device | str = "cpu") -> None:
        self.body = body
        self.device = torch.device(device)

    @classmethod
    def load(cls, model: str | None = None, device: str | None = None) -> PoseDetector:
        from studio.engine.device import pick_device

        dev = pick_device(device).device
        path = find_body_weights(model)
        return cls(load_body_model(path, dev), dev)

    def detect(
        self,
        image: np.ndarray,
        resolution: int = DETECT_RESOLUTION,
        check: Callable[[], None] | None = None,
    ) -> Pose:
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise BadInput(f"pose detection needs an RGB image, got shape {image.shape}")
        h, w = image.shape[:2]
        rgb = image[..., :3]
        if image.shape[2] == 4:  # transparent = white, as controlnet_aux's HWC3 does
            a = image[..., 3:4].astype(np.float32) / 255.0
            rgb = (rgb * a + 255.0 * (1 - a)).clip(0, 255).astype(np.uint8)
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
        if check:
            check()
        if len(candidate) and small is not rgb:
            candidate = candidate.copy()
            candidate[:, 0] *= w / small.shape[1]
            candidate[:, 1] *= h / small.shape[0]
        return to_pose(candidate, subset, w, h)


def write_random_weights(folder: str | os.PathLike, seed: int = 0) -> Path:
    """``body_pose_model.pth`` with random weights in the real file format (for tests and
    benchmarks: the detector then runs end to end, though it finds nobody real)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    path = folder / BODY_FILE
    torch.save(file_state_dict(BodyPoseModel()), path)
    return path
