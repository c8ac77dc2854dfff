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
from studio.core.paths import studio_home

CATALOG_ID = "big-lama"
FILENAMES = ("big-lama.pt", "big-lama.safetensors", "big-lama.pth", "lama.pt", "lama.safetensors")
#: crops larger than this (long side) are shrunk for LaMa and the result enlarged back
MAX_SIDE = 2048
NOT_INSTALLED = (
    "LaMa is not installed: get it with `studio models download big-lama` (205 MB), or pass "
    "a LaMa file with --lama FILE; `--method telea` works without any download"
)


def find_lama() -> Path | None:
    """The installed LaMa file, or None: ``$STUDIO_LAMA``, then the catalog's ``big-lama``
    wherever the model store finds it (``$STUDIO_HOME/models/lama/`` or the user's model
    folders), then the usual file names in Studio's models folder."""
    env = os.environ.get("STUDIO_LAMA")
    if env and Path(env).is_file():
        return Path(env)
    try:
        from studio.core.catalog import load_catalog
        from studio.engine.models.store import find_installed

        entry = load_catalog().get(CATALOG_ID)
        found = find_installed(entry) if entry is not None else None
        if found is not None and Path(found).is_file():
            return Path(found)
    except Exception:  # noqa: BLE001 - a broken catalog/store must not hide a file on disk
        pass
    models = studio_home() / "models"
    for folder in (models / "lama", models, models / CATALOG_ID):
        for name in FILENAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def resolve_lama(model: str = "") -> Path:
    """A LaMa file from a path, the catalog id, or "" / "lama" for the installed one.
    Raises ModelError (exit 3: model missing) for a path that does not exist or when none is
    installed, BadInput for a folder."""
    ref = (model or "").strip()
    if ref in ("", "lama", CATALOG_ID):
        found = find_lama()
        if found is None:
            raise ModelError(NOT_INSTALLED)
        return found
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise BadInput(f"{path.name}: is a folder; pass the LaMa model file (big-lama.pt)")
    raise ModelError(f"{ref}: no such LaMa file")


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
            f"{path.name}: is a {desc.architecture.name} model, not LaMa (an inpainting model)"
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
