"""Screenshot of the app at work: opens a photo, paints an inpainting mask with the brush,
selects a region and runs a tiny-model generation there, then saves QWidget.grab() of the
main window.

    xvfb-run -s "-screen 0 1280x800x24" python tools/screenshot.py --out docs/screenshot.png
    python tools/screenshot.py --theme light --out /tmp/light.png   # offscreen works too

The tiny random model (studio.engine.fixtures.tiny_models) produces noise, not a picture: the point is the
layout. Use --model FOLDER for a real SD1.5 model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--theme", default="dark", choices=("dark", "light"))
    ap.add_argument("--photo", default=str(ROOT / "tests" / "data" / "photos" / "astronaut.png"))
    ap.add_argument("--model", default=None, help="SD model folder (default: a tiny random one)")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)

    os.environ.setdefault("STUDIO_HOME", tempfile.mkdtemp(prefix="studio-shot-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    model = args.model
    if model is None:
        model = str(Path(tempfile.mkdtemp(prefix="studio-shot-model-")) / "tiny-sd")
        from studio.engine.fixtures.tiny_models import build_tiny_sd

        build_tiny_sd(model)

    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings
    from studio.ui.theme import apply_theme

    settings = Settings()
    settings.theme = args.theme
    apply_theme(app, args.theme)
    window = MainWindow(settings)
    window.resize(1280, 800)
    window.show()
    window.move(0, 0)

    def pump(seconds: float = 0.2) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)

    pump()
    window.open_paths([args.photo])
    pump()
    view = window.canvas
    view.fit()
    pump()

    # Paint a mask stroke over the helmet, like a user would.
    view.set_brush(size=46, hardness=0.6)
    vp = view.viewport()
    points = [(380, 390), (400, 410), (430, 420), (455, 440), (470, 470), (470, 500)]
    pts = [view.mapFromScene(QPointF(x, y)) for x, y in points]
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
        pump(0.01)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])

    # Select the generation region and generate there.
    window.model.set_selection((320, 64, 128, 128))
    panel = window.panels["Generate"]
    panel.model_combo.setCurrentText(model)
    panel.prompt.setPlainText("a small red rocket flying over the stars, oil painting")
    panel.negative.setPlainText("blurry, text, watermark")
    panel.steps.setValue(args.steps)
    panel.guidance.setValue(7.5)
    panel.scheduler.setCurrentIndex(max(0, panel.scheduler.findData("Euler a")))
    panel.random_seed.setChecked(False)
    panel.seed.setValue(1234)
    window.start_engine()
    panel.generate()
    panel.generate()  # a second job waits in the queue
    deadline = time.monotonic() + 600
    while window.worker.running_job is None and time.monotonic() < deadline:
        pump(0.02)
    while window.worker.busy and time.monotonic() < deadline:
        pump(0.05)
    while panel.staging.items:  # accept the staged results: they become layers
        panel.staging.accept_button.click()
    window.act_show_mask.trigger()  # Shift+M: the mask (hidden over new results) again
    pump(0.5)
    view.fit()
    pump(0.3)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(out))
    print(f"{'saved' if ok else 'FAILED to save'} {out} ({window.width()}x{window.height()})")
    window.model.undo.setClean()
    window.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
