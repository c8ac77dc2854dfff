"""`studio --selftest`: prove an installation (or a frozen bundle) works end to end, offline.

Builds tiny random models in a temp folder (Stable Diffusion, an SD inpainting model, a
full-size LaMa, an ESRGAN and a Z-Image flow pipeline), then runs, through the same Runner the
app uses: a 2-step generation, a classical (Telea), a LaMa and a diffusion inpaint, a model
upscale and a flow-family generation; then builds the main window offscreen and checks its
first paint. Prints one line, ``studio selftest: OK (...)``, or what failed; exit 0/1.

``STUDIO_SELFTEST_IMPORTS=FILE`` also writes the top-level packages the run imported, one a
line: the bundle test checks that the frozen app carries each one's data and metadata.
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

    from studio.engine.fixtures.restore_models import write_random_lama

    lama = write_random_lama(tmp / "lama-random.safetensors")
    inp = run("inpaint (LaMa)", InpaintRequest(image=photo_damaged, mask=mask, method="lama", model=str(lama)))  # fmt: skip
    _check_outside_mask("inpaint (LaMa)", inp.images[0], photo_damaged, mask)
    done.append("inpaint LaMa")

    sd_inpaint = tiny.build_tiny_sd(tmp / "tiny-sd-inpaint", inpainting=True)
    request = InpaintRequest(
        image=photo_damaged, mask=mask, method="diffusion", model=str(sd_inpaint), prompt="a cat",
        steps=2, padding=8, preview="off",
    )  # fmt: skip
    inp = run("inpaint (SD)", request)
    # The diffusion result is blended in through a feathered mask: the promise is every pixel
    # farther than twice the feather from the mask (masks.blend_alpha's reach).
    import cv2

    grown = cv2.dilate(mask, np.ones((4 * request.feather + 1,) * 2, np.uint8))
    _check_outside_mask("inpaint (SD)", inp.images[0], photo_damaged, grown)
    done.append("inpaint SD")

    from studio.engine.fixtures.tiny_flow_models import build_tiny_zimage

    zimage = build_tiny_zimage(tmp / "tiny-zimage")
    flow = run(
        "generate (Z-Image)",
        GenerateRequest(model=str(zimage), prompt="a cat", steps=2, width=64, height=64, seed=1,
                        guidance=0.0, preview="off"),
    )  # fmt: skip
    if flow.images[0].shape != (64, 64, 3):
        raise RuntimeError(f"generate (Z-Image): unexpected output {flow.images[0].shape}")
    done.append("flow")

    _first_paint(tmp)
    done.append("GUI")
    return done


def _check_outside_mask(name: str, result: np.ndarray, image: np.ndarray, mask: np.ndarray) -> None:
    if result.shape[:2] != image.shape[:2]:
        raise RuntimeError(f"{name}: unexpected output size {result.shape}")
    if not np.array_equal(result[..., :3][mask == 0], image[mask == 0]):
        raise RuntimeError(f"{name}: pixels outside the mask changed")


def _first_paint(tmp: Path) -> None:
    """The main window, built and painted offscreen (its settings in a temp folder): the Qt
    libraries, platform plugin, theme and every panel load and draw."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    saved_home = os.environ.get("STUDIO_HOME")
    os.environ["STUDIO_HOME"] = str(tmp / "home")
    try:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance() or QApplication(["studio"])
        from studio.ui.main_window import MainWindow
        from studio.ui.settings import Settings

        window = MainWindow(Settings())
        try:
            window.resize(1280, 800)
            window.show()
            for _ in range(5):
                app.processEvents()
            image = window.grab().toImage()
            if image.isNull() or image.width() < 640 or image.height() < 400:
                raise RuntimeError(f"GUI: the window painted {image.width()}x{image.height()} px")
            # A real first paint has the docks, the canvas and text: many distinct colours.
            step = max(1, image.width() // 64)
            colours = {image.pixel(x, y) for x in range(0, image.width(), step)
                       for y in range(0, image.height(), step)}  # fmt: skip
            if len(colours) < 8:
                raise RuntimeError(f"GUI: the first paint has {len(colours)} colour(s)")
            if set(window.panel_errors or {}):
                raise RuntimeError(f"GUI: panels failed to load: {', '.join(window.panel_errors)}")
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
    finally:
        if saved_home is None:
            os.environ.pop("STUDIO_HOME", None)
        else:
            os.environ["STUDIO_HOME"] = saved_home


def _write_imports() -> None:
    """The top-level packages this process imported, for the bundle test."""
    target = os.environ.get("STUDIO_SELFTEST_IMPORTS")
    if target:
        names = sorted({n.split(".", 1)[0] for n in list(sys.modules)})
        Path(target).write_text("\n".join(names) + "\n")


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
    _write_imports()
    _print(f"studio selftest: OK ({', '.join(done)}; {time.perf_counter() - start:.1f} s)")
    return 0


def _print(line: str) -> None:
    stream = sys.stdout or sys.stderr
    if stream is not None:
        print(line, file=stream, flush=True)
    else:  # windowed frozen app: no console at all
        log = Path(tempfile.gettempdir()) / "studio-selftest.log"
        log.write_text(line + "\n")
