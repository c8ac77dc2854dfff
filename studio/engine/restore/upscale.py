"""GAN super-resolution (Real-ESRGAN, SwinIR, HAT, ... through spandrel) and the Lanczos fallback.

Real-ESRGAN (Wang et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with
Pure Synthetic Data") is an ESRGAN generator (RRDBNet; Wang et al. 2018) trained with the
adversarial loss of Goodfellow et al. 2014 plus perceptual and L1 losses. Any single-image
model spandrel recognises with purpose "SR" or "Restoration" is accepted.

How a job runs (:func:`run_upscale`):

* Model files are loaded by ``spandrel.ModelLoader``: ``.safetensors`` directly, ``.pth`` /
  ``.ckpt`` through spandrel's restricted unpickler (only tensors and OrderedDicts may be
  unpickled), ``.pt`` as TorchScript or a restricted pickle. The loaded descriptor is cached
  in the Runner (``upscaler:<path>``).
* The image is processed in overlapping tiles (:mod:`studio.engine.restore.tiling`), tile size from
  free GPU memory or fixed on CPU, halving on out-of-memory.
* fp16 (or bf16) on a GPU when the descriptor supports it; a tile that comes out
  non-finite in half precision switches the job to fp32 and is redone.
* Scales other than the model's: the model runs ``p = floor(log_s(target))`` times (at least
  once), then a Lanczos resize makes up the rest (down for 2x with an x4 model, up for 8x
  with an x4 model). Running an x4 GAN twice for 8x would build a 16x intermediate and
  amplify GAN artefacts, so it only repeats when the remaining factor is a whole pass.
* Alpha is *not* fed to the model: it is resized with Lanczos from the source alpha
  straight to the output size. GANs hallucinate texture on mattes and would double the work;
  colour under fully transparent pixels is meaningless and is left as the model made it.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from studio.core import resample
from studio.core.errors import BadInput, ModelError
from studio.engine.jobs.device import DeviceChoice, free_bytes, is_oom, native_bf16, pick_device
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import UpscaleRequest
from studio.engine.restore.tiling import AdaptiveTiler, spans

if TYPE_CHECKING:
    from studio.engine.jobs.runner import JobContext

MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt")
ACCEPTED_PURPOSES = ("SR", "Restoration")
CPU_TILE = 256  # CPU: a fixed size; big enough that the overlap costs little, small in RAM
MAX_TILE = 2048
MIN_TILE = 32
MAX_OUTPUT_SIDE = 16384


# -- model files ------------------------------------------------------------------------------
def resolve_upscaler(model: str) -> Path:
    """An upscaler reference (a file, a catalog id, or the name of a file imported or dropped
    into ``upscale_models/``) -> the file to load (:func:`studio.engine.models.resolve`)."""
    from studio.engine.models.resolver import resolve

    if not model:
        raise BadInput("no upscaler model given (give a model file, or use the lanczos method)")
    path = resolve(model, "upscaler", file=True)
    if path.is_dir():
        raise ModelError(f"{path.name}: is a folder; an upscaler is a single model file")
    return path


def installed_upscalers() -> dict[str, Path]:
    """{reference: file} of the upscalers on disk, installed catalog models first (their id),
    then imported and dropped files (their path); see :func:`studio.engine.models.list_models`."""
    from studio.engine.models.resolver import list_models

    return {
        c.ref: c.path for c in list_models("upscaler") if c.path is not None and c.path.is_file()
    }


def load_upscaler(path: str | os.PathLike) -> Any:
    """Load ``path`` with spandrel (on the CPU, fp32, eval mode) and check it is a
    single-image SR/restoration model. Returns the ``spandrel.ImageModelDescriptor``."""
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
        raise ModelError(
            f"{name}: not an upscaler (no architecture spandrel knows matches its weights)"
        ) from e
    except pickle.UnpicklingError as e:
        if "forbidden" not in str(e):
            raise ModelError(f"{name}: cannot load the model (not a valid checkpoint)") from e
        raise ModelError(
            f"{name}: refused: the checkpoint contains code objects, not only weights "
            "(use a .safetensors file)",
            str(e),
        ) from e
    except MemoryError as e:
        raise ModelError(f"{name}: not enough memory to load the model") from e
    except Exception as e:  # noqa: BLE001 - corrupt/truncated files raise anything
        raise ModelError(f"{name}: cannot load the model ({_reason(e)})", repr(e)) from e
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(
            f"{name}: is a {descriptor.architecture.name} {descriptor.purpose} model, "
            "not an upscaler"
        )
    if descriptor.purpose not in ACCEPTED_PURPOSES:
        raise ModelError(
            f"{name}: is a {descriptor.architecture.name} {descriptor.purpose} model "
            "(face restoration), not a general upscaler"
        )
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels not in (1, 3):
        raise ModelError(
            f"{name}: takes {descriptor.input_channels}-channel images; only RGB and gray "
            "models are supported"
        )
    descriptor.eval()
    for p in descriptor.model.parameters():
        p.requires_grad_(False)
    return descriptor


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:160] if lines else type(e).__name__


def describe_descriptor(descriptor: Any, path: str | os.PathLike | None = None) -> dict:
    """A JSON-friendly summary of a loaded spandrel descriptor."""
    req = descriptor.size_requirements
    info = {
        "architecture": descriptor.architecture.name,
        "architecture_id": str(descriptor.architecture.id),
        "purpose": descriptor.purpose,
        "scale": int(descriptor.scale),
        "tags": list(descriptor.tags),
        "input_channels": int(descriptor.input_channels),
        "output_channels": int(descriptor.output_channels),
        "supports_half": bool(descriptor.supports_half),
        "supports_bfloat16": bool(descriptor.supports_bfloat16),
        "size_requirements": {
            "minimum": int(req.minimum),
            "multiple_of": int(req.multiple_of),
            "square": bool(req.square),
        },
        "tiling": descriptor.tiling.name.lower(),
        "parameters": int(sum(p.numel() for p in descriptor.model.parameters())),
    }
    if path is not None:
        info = {"name": Path(path).stem, "path": str(path), **info}
    return info


def describe_upscaler(path: str | os.PathLike) -> dict:
    """Load an upscaler file and describe it: architecture, scale, purpose, fp16/bf16
    support, size requirements... Raises ModelError for anything that is not an upscaler."""
    resolved = resolve_upscaler(str(path))
    return describe_descriptor(load_upscaler(resolved), resolved)


# -- device, dtype, tile size -----------------------------------------------------------------
def choose_dtype(descriptor: Any, choice: DeviceChoice) -> torch.dtype:
    """The requested/default dtype if the model supports it on this device, else the next
    best: fp16 -> bf16 -> fp32. CPUs run fp32 unless bf16 was asked for explicitly. bf16 on a
    CUDA card only where it is native (Ampere and later): emulated bf16 is slower than fp32,
    so older cards run fp32 instead."""
    dtype = choice.dtype
    if choice.device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32  # fp16 convolutions on CPU are slow or missing
    if dtype == torch.float16 and not descriptor.supports_half:
        dtype = torch.bfloat16
    if dtype == torch.bfloat16:
        bf16_ok = descriptor.supports_bfloat16 and (
            choice.device.type != "cuda" or native_bf16(choice.device)
        )
        if not bf16_ok:
            dtype = torch.float32
    return dtype


def _feature_channels(model: torch.nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.out_channels)
        if isinstance(m, torch.nn.Linear):
            return int(m.out_features)
    return 64


def auto_tile(descriptor: Any, device: torch.device, dtype: torch.dtype) -> int:
    """Tile size (input px) from free accelerator memory; a fixed size on CPU.

    Estimate of activation memory per input pixel: ``bytes * C * (6 s^2 + 24)`` — ``C``
    feature channels held a few times over at low resolution (dense blocks concatenate up
    to ~4-6 C) and ~6 copies at the s^2 upsampled resolution. The estimate is deliberately
    rough: 60 % of the free memory is the budget, and an out-of-memory error halves the tile
    anyway. Free memory counts what PyTorch's allocator caches but does not use
    (:func:`~studio.engine.jobs.device.free_bytes`): after a diffusion job most of the card is
    cached, not taken."""
    align = max(1, descriptor.size_requirements.multiple_of)
    if device.type == "cuda":
        free, _total = free_bytes(device) or (0, 0)
        elem = torch.finfo(dtype).bits // 8
        per_px = (
            elem * _feature_channels(descriptor.model) * (6 * max(descriptor.scale, 1) ** 2 + 24)
        )
        tile = int(math.sqrt(free * 0.6 / per_px))
        tile = max(128, min(MAX_TILE, tile // 64 * 64))
    elif device.type == "mps":
        tile = 512
    else:
        tile = CPU_TILE
    return max(align, tile // align * align)


def plan_passes(model_scale: int, target: float) -> int:
    """How many times to run a ``model_scale`` x model for ``target`` x: the most whole
    passes not overshooting the target, at least one (a 2x target with an x4 model runs once
    and downscales)."""
    if model_scale <= 1 or target <= model_scale:
        return 1
    return max(1, int(math.floor(math.log(target) / math.log(model_scale) + 1e-9)))


# -- the job ----------------------------------------------------------------------------------
@dataclass
class UpscaleStats:
    tile: int = 0
    start_tile: int = 0
    overlap: int = 0
    passes: int = 1
    tiles: int = 0
    model_calls: int = 0
    oom_halvings: int = 0
    dtype: str = ""
    device: str = ""
    fp32_fallback: bool = False
    notes: list[str] = field(default_factory=list)


def _to_tensor(
    tile: np.ndarray, device: torch.device, dtype: torch.dtype, gray: bool, pinned: bool = False
):
    """An (1, C, H, W) tensor of ``dtype`` on ``device``. ``pinned``: upload from page-locked
    memory without waiting (CUDA), so the CPU can go on while the copy is queued."""
    arr = np.ascontiguousarray(tile)
    if not arr.flags.writeable:
        arr = arr.copy()
    t = torch.from_numpy(arr)
    t = t.pin_memory().to(device, non_blocking=True) if pinned else t.to(device)
    t = t.permute(2, 0, 1).unsqueeze(0)
    t = t.to(dtype) / 255.0 if arr.dtype == np.uint8 else t.to(dtype)
    if gray:
        # ITU-R BT.601 luma, what a grayscale model was trained on
        weights = torch.tensor([0.299, 0.587, 0.114], device=device, dtype=dtype)
        t = (t * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    if device.type == "cuda":
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def model_pass(
    image: np.ndarray,
    descriptor: Any,
    device: torch.device,
    dtype: torch.dtype,
    tile: int,
    overlap: int,
    stats: UpscaleStats,
    check=None,
    on_tile=None,
) -> np.ndarray:
    """One pass of the model over an RGB uint8 image, tiled; returns RGB uint8 at
    ``descriptor.scale`` x. Tile size ``0`` means the whole image in one tile."""
    scale = int(descriptor.scale)
    h, w = image.shape[:2]
    gray_in = descriptor.input_channels == 1
    state = {"dtype": dtype}

    def run_sync(tile_img: np.ndarray) -> np.ndarray:
        while True:
            x = _to_tensor(tile_img, device, state["dtype"], gray_in)
            with torch.inference_mode():
                y = descriptor(x)
            del x
            if state["dtype"] == torch.float32 or bool(torch.isfinite(y).all()):
                break
            # fp16 overflow (NaN/inf): redo this tile and the rest of the job in fp32
            del y
            _to_fp32()
        return _host(y[0].float().permute(1, 2, 0).cpu().numpy())

    def _to_fp32() -> None:
        state["dtype"] = torch.float32
        descriptor.to(dtype=torch.float32)
        stats.fp32_fallback = True
        stats.notes.append("half precision overflowed; switched to fp32")

    def run_async(tile_img: np.ndarray):
        """CUDA: queue upload, model and download without waiting (pinned buffers, one
        event) and return a callable that waits; blend_tiles blends the previous tile
        meanwhile, so the GPU does not idle while the CPU blends."""
        dtype_used = state["dtype"]
        x = _to_tensor(tile_img, device, dtype_used, gray_in, pinned=True)
        with torch.inference_mode():
            y = descriptor(x)
            finite = torch.isfinite(y).all() if dtype_used != torch.float32 else None
            host = torch.empty(y.shape[1:], dtype=torch.float32, pin_memory=True)
            host.copy_(y[0].float(), non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        del x, y

        def wait() -> np.ndarray:
            done.synchronize()
            if finite is not None and not bool(finite):
                if state["dtype"] != torch.float32:
                    _to_fp32()
                return run_sync(tile_img)
            return _host(host.permute(1, 2, 0).numpy())

        return wait

    def _host(out: np.ndarray) -> np.ndarray:
        if out.shape[2] == 1:
            out = np.repeat(out, 3, axis=2)
        return out

    infer = run_async if device.type == "cuda" else run_sync

    def on_oom(new_tile: int) -> None:
        from studio.engine.jobs.runner import free_memory

        free_memory()
        stats.notes.append(f"out of memory: tile halved to {new_tile} px")

    req = descriptor.size_requirements
    tiler = AdaptiveTiler(
        infer,
        scale,
        tile if tile > 0 else max(h, w),
        overlap,
        is_oom=is_oom,
        multiple_of=req.multiple_of,
        minimum=req.minimum,
        square=req.square,
        min_tile=max(MIN_TILE // 2, 2 * max(1, overlap) if tile > 0 else 1, req.minimum),
        check=check,
        on_oom=on_oom,
    )
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)

    def write(y: int, x: int, block: np.ndarray) -> None:
        out[y : y + block.shape[0], x : x + block.shape[1]] = resample.to_uint8(block)

    tiler.run(image, write, on_tile=on_tile)
    stats.tile = tiler.tile
    stats.oom_halvings += tiler.halvings
    stats.model_calls += tiler.calls
    stats.dtype = str(state["dtype"]).replace("torch.", "")
    return out


def _target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    if not (scale > 0) or not math.isfinite(scale):
        raise BadInput(f"scale must be a positive number (got {scale})")
    if scale > 16:
        raise BadInput(f"scale {scale:g} is too large (at most 16)")
    tw, th = resample.scaled_size(width, height, scale)
    if tw > MAX_OUTPUT_SIDE or th > MAX_OUTPUT_SIDE:
        raise BadInput(
            f"{width}x{height} at {scale:g}x would be {tw}x{th}; the limit is "
            f"{MAX_OUTPUT_SIDE} px a side"
        )
    return tw, th


def _validate_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise BadInput("the image is empty or not an image array")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] not in (3, 4):
        raise BadInput(f"the image has {image.shape[2]} channels (expected RGB or RGBA)")
    if image.dtype != np.uint8:
        raise BadInput("the image must be 8-bit")
    return image


def upscale_image(
    image: np.ndarray,
    descriptor: Any,
    scale: float,
    choice: DeviceChoice,
    tile: int = 0,
    overlap: int = 16,
    check=None,
    progress=None,
) -> tuple[np.ndarray, UpscaleStats]:
    """Upscale an RGB(A) uint8 image by ``scale`` with a loaded spandrel descriptor.
    ``progress(done, total, message)`` after each tile; ``check()`` before each."""
    image = _validate_image(image)
    h, w = image.shape[:2]
    tw, th = _target_size(w, h, scale)
    model_scale = max(1, int(descriptor.scale))
    passes = plan_passes(model_scale, scale)
    inter = (w * model_scale**passes, h * model_scale**passes)
    if max(inter) > 2 * MAX_OUTPUT_SIDE:
        raise BadInput(
            f"a {model_scale}x model on {w}x{h} makes {inter[0]}x{inter[1]} before resizing to "
            f"{scale:g}x; too large — use a smaller image or the lanczos method"
        )
    dtype = choose_dtype(descriptor, choice)
    descriptor.to(choice.device, dtype)
    if choice.device.type == "cuda":
        descriptor.model.to(memory_format=torch.channels_last)
    stats = UpscaleStats(passes=passes, overlap=overlap, device=str(choice.device))
    if tile <= 0:
        from spandrel import ModelTiling

        if descriptor.tiling == ModelTiling.INTERNAL:
            tile = 0  # the model tiles internally / needs the whole image
        else:
            tile = auto_tile(descriptor, choice.device, dtype)
            if descriptor.tiling == ModelTiling.DISCOURAGED:
                tile *= 2  # global-context models (e.g. SwinIR): fewer, larger tiles
    elif tile < MIN_TILE:
        raise BadInput(f"tile size {tile} is too small (at least {MIN_TILE} px)")
    stats.start_tile = tile

    # total tiles over all passes, for the progress bar
    totals = []
    pw, ph = w, h
    for _ in range(passes):
        t = tile if tile > 0 else max(pw, ph)
        align = descriptor.size_requirements.multiple_of
        totals.append(len(spans(pw, t, overlap, align)) * len(spans(ph, t, overlap, align)))
        pw, ph = pw * model_scale, ph * model_scale
    total = sum(totals)
    done_before = 0

    rgb = image[..., :3]
    for k in range(passes):

        def on_tile(done: int, _n: int, _base: int = done_before, _k: int = k) -> None:
            if progress is not None:
                pass_text = f" (pass {_k + 1}/{passes})" if passes > 1 else ""
                progress(_base + done, total, f"tile {_base + done}/{total}{pass_text}")

        rgb = model_pass(
            rgb, descriptor, choice.device, dtype, tile, overlap, stats, check, on_tile
        )
        done_before += totals[k]
        if tile > 0:
            tile = stats.tile  # keep a tile size that fitted after OOM halving
    stats.tiles = total
    if (rgb.shape[1], rgb.shape[0]) != (tw, th):
        if check is not None:
            check()
        rgb = resample.resize(rgb, (tw, th))
    if image.shape[2] == 4:
        alpha = resample.resize(image[..., 3], (tw, th))
        rgb = np.dstack([rgb, alpha])
    return rgb, stats


def upscale_lanczos(
    image: np.ndarray, scale: float, sharpen: float = 0.0
) -> tuple[np.ndarray, UpscaleStats]:
    image = _validate_image(image)
    h, w = image.shape[:2]
    _target_size(w, h, scale)
    out = resample.upscale_lanczos(image, scale, sharpen=sharpen)
    return out, UpscaleStats(device="cpu", dtype="float32")


def run_upscale(ctx: JobContext, request: UpscaleRequest) -> Finished:
    """Runner handler for :class:`UpscaleRequest`."""
    image = request.image
    method = (request.method or "model").lower()
    if method not in ("model", "lanczos"):
        raise BadInput(f"unknown upscale method {request.method!r} (use model or lanczos)")
    info: dict[str, Any] = {"method": method, "scale": float(request.scale)}
    if method == "lanczos":
        ctx.progress(0, 1)
        out, stats = upscale_lanczos(image, request.scale, request.sharpen)
        ctx.check()
        ctx.progress(1, 1, "Lanczos")
        info.update(upscaler="Lanczos", sharpen=float(request.sharpen))
    else:
        path = resolve_upscaler(request.model)
        mtime = path.stat().st_mtime_ns
        descriptor = ctx.runner.cache(f"upscaler:{path}@{mtime}", lambda: load_upscaler(path))
        choice = pick_device(request.device or ctx.runner.device, request.dtype or ctx.runner.dtype)
        out, stats = upscale_image(
            image,
            descriptor,
            request.scale,
            choice,
            tile=request.tile,
            overlap=request.overlap,
            check=ctx.check,
            progress=ctx.progress,
        )
        info.update(
            upscaler=path.stem,
            model=str(path),
            architecture=descriptor.architecture.name,
            model_scale=int(descriptor.scale),
            passes=stats.passes,
            tile=stats.tile,
            start_tile=stats.start_tile,
            overlap=stats.overlap,
            tiles=stats.tiles,
            oom_halvings=stats.oom_halvings,
            device=stats.device,
            dtype=stats.dtype,
        )
        if stats.notes:
            info["notes"] = list(dict.fromkeys(stats.notes))
    info["size"] = [int(out.shape[1]), int(out.shape[0])]
    info["source_size"] = [int(image.shape[1]), int(image.shape[0])]
    return ctx.finished([out], [{"upscale": info}], {"upscale": info})
