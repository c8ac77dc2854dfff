"""Device and dtype choice: CUDA fp16/bf16, Apple MPS fp16, CPU fp32; all overridable."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from studio.core.errors import BadInput

_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype

    @property
    def is_accelerator(self) -> bool:
        return self.device.type in ("cuda", "mps", "xpu")


def pick_device(device: str | None = None, dtype: str | None = None) -> DeviceChoice:
    """Best device available unless told otherwise (``STUDIO_DEVICE``/``STUDIO_DTYPE`` env
    vars or arguments). fp16 on CUDA/MPS, bf16 where fp16 is unsupported, fp32 on CPU."""
    device = device or os.environ.get("STUDIO_DEVICE") or None
    dtype = dtype or os.environ.get("STUDIO_DTYPE") or None
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BadInput(f"Unknown device {device!r} (use cuda, mps or cpu)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInput("CUDA was requested but no CUDA GPU is available")
    if dtype is None:
        dt = torch.float16 if dev.type in ("cuda", "mps") else torch.float32
    else:
        if dtype.lower() not in _DTYPES:
            raise BadInput(f"Unknown dtype {dtype!r} (use float16, bfloat16 or float32)")
        dt = _DTYPES[dtype.lower()]
    return DeviceChoice(dev, dt)


def generator_for(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator, always on the CPU: diffusers draws the noise there and moves it to
    ``device``, so a seed gives the same picture whatever the memory plan (an offloaded
    pipeline and a resident one), on every accelerator, as ComfyUI's seeds do. ``device`` is
    the job's device, which the noise is moved to by diffusers."""
    del device
    return torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


def is_oom(error: BaseException) -> bool:
    """True for an accelerator (or host) out-of-memory error."""
    if isinstance(error, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if oom and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_cache(device: torch.device) -> None:
    """Give the allocator's cached blocks back (after an out-of-memory, before a retry)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def free_bytes(device: torch.device) -> tuple[int, int] | None:
    """(free, total) bytes of an accelerator, counting the memory PyTorch's caching allocator
    holds but does not use as free (``mem_get_info`` + ``memory_reserved`` -
    ``memory_allocated``): that memory is reused by the next allocation without asking the
    driver. None for the CPU and devices that do not report it."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(0, cached)), int(total)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively. CUDA before Ampere "supports" bf16 only by
    emulation, slower than fp32 (``is_bf16_supported(including_emulation=False)``)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return device.type == "cpu"
