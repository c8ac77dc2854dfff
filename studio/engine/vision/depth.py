"""Monocular depth maps for depth ControlNets, with Depth Anything V2 (Yang et al. 2024,
"Depth Anything V2", NeurIPS 2024; arXiv:2406.09414): a DINOv2 ViT encoder with a DPT head
that predicts relative inverse depth (disparity, larger = nearer), loaded through
transformers' ``DepthAnythingForDepthEstimation`` and its ``DPTImageProcessor``.

Control image convention: depth ControlNets (ControlNet 1.1 depth, Zhang et al. 2023; the
SDXL, FLUX, SD 3.5, Z-Image and Qwen-Image depth/union ControlNets) were trained on MiDaS-style
inverse depth (Ranftl et al. 2020) normalised to 0..255 per image, so near is white and far
is black. :func:`estimate_depth` writes exactly that: ``255 * (d - min d) / (max d - min d)``
of the model's raw ``predicted_depth`` resized to the input (bicubic, as the processor's
``post_process_depth_estimation`` does), the normalisation Depth Anything's own demo uses.

Model lookup (:func:`find_depth_model`): a folder holding ``config.json`` + weights (+ the
processor's ``preprocessor_config.json``), the catalog id ``depth-anything-v2-small`` or the
Hugging Face repo id, or nothing for the installed Small model. A missing model is a one-line
:class:`ModelError` (CLI exit 3) saying how to get it. torch/transformers are imported only
inside functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import BadInput, ModelError

CATALOG_ID = "depth-anything-v2-small"
REPO_ID = "depth-anything/Depth-Anything-V2-Small-hf"
#: the kind the catalog files Depth Anything under
KIND = "depth-estimator"
NOT_INSTALLED = (
    f"Depth Anything V2 is not installed: get it with `studio models download {CATALOG_ID}` "
    f"(99 MB, from {REPO_ID}), or pass a folder holding its config.json and weights with --model"
)

Region = tuple[int, int, int, int]


def _installed_small() -> Path | None:
    """The installed Depth Anything V2 Small folder: the catalog entry wherever the model
    store put it, else the repo in the Hugging Face cache; None when neither is there."""
    from studio.engine.models.resolver import catalog_entry, hf_cached
    from studio.engine.models.store import find_installed

    try:
        entry = catalog_entry(CATALOG_ID)
    except BadInput:  # a broken user catalog: fall back on the HF cache
        entry = None
    if entry is not None:
        found = find_installed(entry)
        if found is not None:
            return found
    return hf_cached(REPO_ID)


def find_depth_model(model: str | None = None) -> Path:
    """The folder of the Depth Anything model ``model`` names: a folder (or a file in one),
    the catalog id / repo id of Depth Anything V2 Small, a catalog id or model-folder name of
    a depth estimator, a cached repo id, or None / "" for the installed Small model. Raises
    ModelError (exit 3) when it is not there or not a transformers model folder."""
    ref = (model or "").strip()
    if ref in ("", CATALOG_ID, REPO_ID):
        found = _installed_small()
        if found is None:
            raise ModelError(NOT_INSTALLED)
        return found
    from studio.engine.models.resolver import resolve

    try:
        path = resolve(ref, KIND)
    except ModelError as e:
        raise ModelError(f"{ref}: no such depth model ({e.message})") from e
    if path.is_file():
        path = path.parent
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path.name}: not a Depth Anything folder (no config.json); pass the folder of "
            f"a transformers depth model such as {REPO_ID}"
        )
    return path


def load_depth_model(path: str | os.PathLike, device: str | None = None) -> tuple[Any, Any]:
    """``(model, processor)`` from a transformers depth-estimation folder, the model in eval
    mode on ``device`` (fp32: the output is quantised to 8 bits, and half precision only
    saves time on an accelerator). Raises ModelError with one line if it does not load."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from studio.engine.jobs.device import pick_device

    path = Path(path)
    choice = pick_device(device, "float32")
    try:
        processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32
        )
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; one line for the user
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path.name}: cannot load as a depth model ({msg[:160]})") from e
    model.to(choice.device).eval()
    return model, processor


def crop_region(image: np.ndarray, region: Region | None) -> np.ndarray:
    """The ``region`` (x, y, w, h) of ``image`` (all of it for None); BadInput when the
    region is malformed or not inside the image."""
    if region is None:
        return image
    try:
        if isinstance(region, (str, bytes)):
            raise TypeError("a string")
        x, y, w, h = (int(v) for v in region)
    except (TypeError, ValueError) as e:
        raise BadInput(f"depth: region must be (x, y, w, h), not {region!r}") from e
    height, width = image.shape[:2]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise BadInput(
            f"depth: region ({x}, {y}, {w}, {h}) is not inside the {width}x{height} image"
        )
    return image[y : y + h, x : x + w]


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        from studio.core.imageio import rgb_on_white

        return rgb_on_white(image)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[..., :3]


def normalize_depth(depth: np.ndarray) -> np.ndarray:
    """Inverse depth (larger = nearer) -> uint8 with the nearest point 255 and the farthest 0,
    rounded. A flat map (no depth differences) is all 0."""
    d = np.asarray(depth, np.float64)
    lo, hi = float(d.min()), float(d.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        return np.zeros(d.shape, np.uint8)
    return np.clip(np.rint((d - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def predict_depth(model: Any, processor: Any, image: np.ndarray) -> np.ndarray:
    """The model's raw ``predicted_depth`` for an RGB uint8 image, resized (bicubic) to the
    image's size: a float32 (H, W) array of relative inverse depth."""
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    inputs = processor(images=image, return_tensors="pt")
    param = next(model.parameters())
    pixels = inputs["pixel_values"].to(param.device, param.dtype)
    with torch.inference_mode():
        predicted = model(pixel_values=pixels).predicted_depth  # (1, h', w')
        resized = F.interpolate(
            predicted[:, None].float(), size=(h, w), mode="bicubic", align_corners=False
        )
    return resized[0, 0].cpu().numpy()


def estimate_depth(
    model: Any, processor: Any, image: np.ndarray, region: Region | None = None
) -> np.ndarray:
    """A depth control image: (H, W) uint8 of ``image``'s size (of the ``region`` (x, y, w, h)
    crop's size when given), near = white (see the module docstring). ``image`` is uint8
    RGB, RGBA (composited on white) or grey."""
    if image is None or getattr(image, "ndim", 0) not in (2, 3) or image.size == 0:
        raise BadInput("depth: no image given")
    rgb = np.ascontiguousarray(_rgb(crop_region(image, region)), dtype=np.uint8)
    if min(rgb.shape[:2]) < 2:
        raise BadInput(f"depth: the image is too small ({rgb.shape[1]}x{rgb.shape[0]} px)")
    return normalize_depth(predict_depth(model, processor, rgb))
