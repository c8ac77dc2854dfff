"""LaMa inpainting (Suvorov et al. 2022, "Resolution-robust Large Mask Inpainting with
Fourier Convolutions"): a feed-forward, adversarially trained generator whose fast Fourier
convolutions give it an image-wide receptive field, so it fills large holes with plausible
texture in one pass. Loaded through spandrel (architecture "LaMa").

spandrel's ``ModelLoader().load_from_file`` reads ``.pt`` (TorchScript, like the published
``big-lama.pt``: it takes the scripted module's state dict), ``.pth``/``.ckpt`` (restricted
unpickler) and ``.safetensors``; keys ``generator.model.*`` (the original checkpoints) and
``model.model.*`` (spandrel's own) are both recognised.

This module imports torch/spandrel only inside functions, so ``find_lama`` (used by the UI
to decide between LaMa and Telea) is cheap and torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from studio.core.errors import BadInput, ModelError

CATALOG_ID = "big-lama"
#: crops larger than this (long side) are shrunk for LaMa and the result enlarged back
MAX_SIDE = 2048
NOT_INSTALLED = (
    "LaMa is not installed: get it with `studio models download big-lama` (205 MB), or pass "
    "a LaMa file with --lama FILE; `--method telea` works without any download"
)


def find_lama() -> Path | None:
    """The installed LaMa file, or None: ``$STUDIO_LAMA``, then the catalog's ``big-lama``
    wherever the model store finds it, then a LaMa file imported or dropped into a models
    folder (``$STUDIO_HOME/models/lama/``, the portable ``inpaint/``, the user's folders)."""
    env = os.environ.get("STUDIO_LAMA")
    if env and Path(env).is_file():
        return Path(env)
    from studio.engine.models.resolver import resolve
    from studio.engine.models.scan import local_models

    try:
        found = resolve(CATALOG_ID, "lama", file=True)
    except (ModelError, BadInput):  # not installed, or a user catalog that redefines it
        found = None
    if found is not None:
        return found
    files = [m.path for m in local_models("lama") if m.path.is_file()]
    return files[0] if files else None


def resolve_lama(model: str = "") -> Path:
    """A LaMa file from a path, the catalog id, a name in the model folders, or "" / "lama"
    for the installed one. Raises ModelError (exit 3: model missing) when it is not there,
    BadInput for a folder or a catalog model of another kind."""
    ref = (model or "").strip()
    if ref in ("", "lama", CATALOG_ID):
        found = find_lama()
        if found is None:
            raise ModelError(NOT_INSTALLED)
        return found
    from studio.engine.models.resolver import resolve

    try:
        path = resolve(ref, "lama")
    except ModelError as e:
        raise ModelError(f"{ref}: no such LaMa file", e.message) from e
    if path.is_dir():
        raise BadInput(f"{path.name}: is a folder; pass the LaMa model file (big-lama.pt)")
    return path


def load_lama(path: str | Path, device: str | None = None):
    """Load a LaMa model file through spandrel; returns its MaskedImageModelDescriptor in eval
    mode on ``device``. Raises ModelError with one line if it is not a loadable LaMa."""
    import torch
    from spandrel import MaskedImageModelDescriptor, ModelLoader

    from studio.engine.jobs.device import pick_device

    choice = pick_device(device, "float32")
    path = Path(path)
    try:
        desc = ModelLoader(device=torch.device("cpu")).load_from_file(str(path))
    except Exception as e:  # noqa: BLE001 - spandrel raises many kinds; one line for the user
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path.name}: cannot load as a LaMa model ({msg[:160]})") from e
    if not isinstance(desc, MaskedImageModelDescriptor) or desc.architecture.id != "LaMa":
        raise ModelError(
            f"{path.name}: is {_article(desc.architecture.name)} model, not LaMa (an inpainting "
            "model)"
        )
    # fp32 always: LaMa's FFT layers do not support fp16 (spandrel: supports_half=False), and
    # cuFFT's reduced-precision paths only take power-of-two sizes.
    desc.to(choice.device).eval()
    return desc


def lama_inpaint(desc, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inpaint ``image`` (H, W, 3 uint8) where ``mask`` (H, W uint8) > 0 with a loaded LaMa
    descriptor; returns (H, W, 3) uint8. The input is reflect-padded to a multiple of 8 (the
    generator downsamples 3 times) and crops over MAX_SIDE are processed shrunk."""
    import torch

    from studio.core import masks

    h, w = image.shape[:2]
    work, work_mask = image, mask
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        size = (max(8, round(w * s)), max(8, round(h * s)))
        work, work_mask = masks.resize(image, size), masks.resize(mask, size)
    padded, (ow, oh) = masks.pad_to_multiple(work, 8)
    padded_mask, _ = masks.pad_to_multiple(work_mask, 8)
    param = next(desc.model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1)[None]
    x = x.to(param.device, param.dtype) / 255.0
    m = torch.from_numpy((padded_mask > 0).astype(np.float32))[None, None]
    m = m.to(param.device, param.dtype)
    with torch.inference_mode():
        y = desc(x, m)
    out = (y[0].float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    out = out[:oh, :ow]
    if (ow, oh) != (w, h):
        out = masks.resize(out, (w, h))
    return np.ascontiguousarray(out)


def _article(word: str) -> str:
    """ "an ESRGAN", "a SwinIR"."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word
