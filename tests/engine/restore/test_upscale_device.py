"""Upscaler decisions that only matter on a GPU, tested with fakes (CUDA was NOT run here):
fp32 instead of emulated bf16, the tile size from free memory including the allocator's
cache, and the tile pipeline (the next tile is handed to the device before the current one
is waited for and blended)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.engine.jobs.device import DeviceChoice, free_bytes, native_bf16
from studio.engine.restore import tiling
from studio.engine.restore import upscale as U


def _descriptor(half: bool = True, bf16: bool = True, scale: int = 4):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3))
    return SimpleNamespace(
        supports_half=half,
        supports_bfloat16=bf16,
        scale=scale,
        model=model,
        size_requirements=SimpleNamespace(multiple_of=1, minimum=0, square=False),
    )


CUDA = DeviceChoice(torch.device("cuda"), torch.float16)


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_no_emulated_bf16(monkeypatch, native, expected):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return native or including_emulation  # pre-Ampere: "supported" only by emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    # a model without fp16 support falls to bf16 only where the card has it natively
    assert U.choose_dtype(_descriptor(half=False), CUDA) == expected
    assert asked == [False]
    assert native_bf16(torch.device("cuda")) is native
    # fp16 models are untouched; CPUs run fp32
    assert U.choose_dtype(_descriptor(), CUDA) == torch.float16
    cpu = DeviceChoice(torch.device("cpu"), torch.float16)
    assert U.choose_dtype(_descriptor(), cpu) == torch.float32


def _fake_cuda(monkeypatch, free: int, total: int, reserved: int, allocated: int) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, total))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated)


def test_tile_size_counts_the_allocators_cache(monkeypatch):
    gib = 1 << 30
    desc = _descriptor(scale=4)
    dev = torch.device("cuda")
    # after a diffusion job: little free at the driver, most of it cached by PyTorch
    _fake_cuda(monkeypatch, free=gib // 4, total=12 * gib, reserved=9 * gib, allocated=gib)
    assert free_bytes(dev) == (gib // 4 + 8 * gib, 12 * gib)
    big = U.auto_tile(desc, dev, torch.float16)
    _fake_cuda(monkeypatch, free=gib // 4, total=12 * gib, reserved=gib, allocated=gib)
    small = U.auto_tile(desc, dev, torch.float16)
    assert big > small >= 128
    # the estimate: bytes * C * (6 s^2 + 24) per input pixel, 60 % of the free memory
    per_px = 2 * 64 * (6 * 16 + 24)
    expected = int(((gib // 4 + 8 * gib) * 0.6 / per_px) ** 0.5) // 64 * 64
    assert big == min(U.MAX_TILE, expected)
    assert free_bytes(torch.device("cpu")) is None


def test_next_tile_is_submitted_before_the_current_is_blended():
    log: list[str] = []
    image = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32)

    def infer(tile: np.ndarray):
        n = sum(e.startswith("submit") for e in log)
        log.append(f"submit {n}")

        def wait() -> np.ndarray:
            log.append(f"wait {n}")
            return np.repeat(np.repeat(tile, 2, 0), 2, 1)

        return wait

    written = np.zeros((80, 120, 3), np.float32)

    def write(y, x, block):
        log.append("write")
        written[y : y + block.shape[0], x : x + block.shape[1]] = block

    tiling.blend_tiles(image, infer, 2, 24, 8, write)
    n = sum(e.startswith("submit") for e in log)
    assert n > 2
    # submit k+1 comes before wait k, and every wait is followed by that tile's write
    for k in range(n - 1):
        assert log.index(f"submit {k + 1}") < log.index(f"wait {k}")
    # the same pixels as the synchronous path
    eager = np.zeros_like(written)

    def write_eager(y, x, block):
        eager[y : y + block.shape[0], x : x + block.shape[1]] = block

    tiling.blend_tiles(image, lambda t: np.repeat(np.repeat(t, 2, 0), 2, 1), 2, 24, 8, write_eager)
    assert np.array_equal(written, eager)
    assert np.allclose(written, np.repeat(np.repeat(image, 2, 0), 2, 1), atol=1e-5)


@pytest.mark.parametrize("pending", [False, True])
def test_cancel_before_a_tile_stops_submitting(pending):
    submitted = []
    image = np.zeros((64, 64, 3), np.float32)
    state = {"tiles": 0}

    def check():
        if state["tiles"] >= 2:
            raise RuntimeError("cancelled")

    def on_tile(done, total):
        state["tiles"] = done

    def infer(t):
        submitted.append(1)
        return (lambda: t) if pending else t

    with pytest.raises(RuntimeError, match="cancelled"):
        tiling.blend_tiles(image, infer, 1, 32, 8, lambda *a: None, check=check, on_tile=on_tile)
    # synchronous: tiles 1-2 and nothing more; pending: tile 3 was queued while tile 2 blended
    assert len(submitted) == (3 if pending else 2)
