"""`studio --selftest`: prove an installation (or a frozen bundle) works end to end, offline.

Builds a tiny random Stable Diffusion pipeline and a tiny random ESRGAN in a temp folder, then
runs, through the same Runner the app uses: a 2-step generation, a classical (Telea) inpaint
and a model upscale. Prints one line, ``studio selftest: OK (...)``, or what failed; exit 0/1.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _checks(tmp: Path) -> list[str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from safetensors.torch import save_file

    from studio.engine.fixtures import tiny_models as tiny
    from studio.engine.jobs import Finished, GenerateRequest, InpaintRequest, Runner, UpscaleRequest

    done: list[str] = []
    runner = Runner(device=os.environ.get("STUDIO_DEVICE"))

    def run(name: str, request: object) -> Finished:
        final = runner.run(request)
        if not isinstance(final, Finished):
            raise RuntimeError(f"{name}: {getattr(final, 'message', type(final).__name__)}")
        return final

    sd = tiny.build_tiny_sd(tmp / "tiny-sd")
    gen = run(
        "generate",
        GenerateRequest(model=str(sd), prompt="a cat", steps=2, width=64, height=64, seed=1),
    )
    img = gen.images[0]
    if img.shape != (64, 64, 3) or img.dtype != np.uint8:
        raise RuntimeError(f"generate: unexpected output {img.shape} {img.dtype}")
    done.append("generate")

    photo = np.zeros((64, 64, 3), np.uint8)
    photo[:, :, 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    mask = np.zeros((64, 64), np.uint8)
    mask[24:40, 24:40] = 255
    photo_damaged = photo.copy()
    photo_damaged[28:36, 28:36] = 255
    inp = run("inpaint", InpaintRequest(image=photo_damaged, mask=mask, method="telea"))
    out = inp.images[0][..., :3]
    if not np.array_equal(out[mask == 0], photo_damaged[mask == 0]):
        raise RuntimeError("inpaint: pixels outside the mask changed")
    done.append("inpaint")

    from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    upscaler = tmp / "tiny-esrgan-x4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(upscaler))
    up = run("upscale", UpscaleRequest(image=photo, model=str(upscaler), scale=4, tile=32))
    if up.images[0].shape[:2] != (256, 256):
        raise RuntimeError(f"upscale: unexpected output size {up.images[0].shape}")
    done.append("upscale")
    return done


def run_selftest() -> int:
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="studio-selftest-"))
    try:
        done = _checks(tmp)
    except Exception as e:  # noqa: BLE001 - report, never a traceback
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        _print(f"studio selftest: FAILED: {msg}")
        if os.environ.get("STUDIO_DEBUG"):
            import traceback

            traceback.print_exc()
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _print(f"studio selftest: OK ({', '.join(done)}; {time.perf_counter() - start:.1f} s)")
    return 0


def _print(line: str) -> None:
    stream = sys.stdout or sys.stderr
    if stream is not None:
        print(line, file=stream, flush=True)
    else:  # windowed frozen app: no console at all
        log = Path(tempfile.gettempdir()) / "studio-selftest.log"
        log.write_text(line + "\n")
