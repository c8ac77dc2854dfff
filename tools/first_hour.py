"""A scripted walk through a new user's first hour, under a real X server, with a screenshot
of every step in docs/screenshots/first-hour-NN-*.png.

    python tools/first_hour.py                 # starts Xvfb + openbox at 1280x800 if no DISPLAY
    python tools/first_hour.py --size 1920x1080 --out /tmp/walk

Each step does what a person does (keys on the canvas, strokes with the mouse, buttons,
Help > Keyboard shortcuts) on the real main window and checks what they would see; the walk
stops at the first step that goes wrong and exits 1 naming it. No model is needed: erasing
uses Telea, the pose is the default skeleton. Screenshots are of the whole screen (the window
manager's frame included), so a window placed off-screen shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PHOTO = ROOT / "tests" / "data" / "photos" / "astronaut.png"


class StepFailed(Exception):
    pass


def _x_server(size: str) -> list[subprocess.Popen]:
    """Xvfb and openbox on a free display when none is set (both must be installed)."""
    if os.environ.get("DISPLAY"):
        return []
    if shutil.which("Xvfb") is None:
        raise SystemExit("no DISPLAY and no Xvfb: apt-get install xvfb openbox")
    display = next(f":{n}" for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    procs = [subprocess.Popen(["Xvfb", display, "-screen", "0", f"{size}x24", "-nolisten", "tcp"])]
    os.environ["DISPLAY"] = display
    for _ in range(50):
        if Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
            break
        time.sleep(0.1)
    if shutil.which("openbox"):
        procs.append(subprocess.Popen(["openbox"], stderr=subprocess.DEVNULL))
        time.sleep(0.5)
    return procs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--size", default="1280x800", help="the screen, WIDTHxHEIGHT")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    procs = _x_server(args.size)
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ.setdefault("STUDIO_HOME", tempfile.mkdtemp(prefix="studio-first-hour-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return _walk(args.out, width, height)
    finally:
        for p in reversed(procs):
            p.terminate()


def _walk(out: Path, width: int, height: int) -> int:
    import numpy as np
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings
    from studio.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    settings = Settings()
    apply_theme(app, settings.theme)
    window = MainWindow(settings)
    window.resize(min(1280, width), min(800, height))
    window.show()
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    def wait(ms: int = 300, until=None, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while True:
            app.processEvents()
            QTest.qWait(min(ms, 50))
            if until is None:
                ms -= 50
                if ms <= 0:
                    return
            elif until():
                return
            if time.monotonic() > end:
                raise StepFailed("timed out waiting")

    def shot(name: str) -> None:
        wait(400)
        path = out / f"first-hour-{len(shots) + 1:02d}-{name}.png"
        window.screen().grabWindow(0).save(str(path))
        shots.append(path)
        print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    def check(ok: bool, what: str) -> None:
        if not ok:
            raise StepFailed(what)

    def point(x: float, y: float):
        return window.canvas.mapFromScene(QPointF(x, y))

    def stroke(points) -> None:
        vp = window.canvas.viewport()
        pts = [point(x, y) for x, y in points]
        QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
        for p in pts[1:]:
            QTest.mouseMove(vp, p)
            wait(20)
        QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])

    steps = [
        "the window opens inside the screen",
        "a photo opens, titled by its name, Generate in front",
        "B over the canvas picks the brush; a stroke paints the mask",
        "Erase object (Telea) stages its result in place",
        "Enter accepts it as a layer, undoable",
        "Default skeleton makes the pose layer active; its nose drags",
        "a Canny guide picked with Control in front shows its edges",
        "Help > Keyboard shortcuts lists the keys",
        "the Models panel opens",
    ]
    step = steps[0]
    try:
        wait(800)
        frame = window.frameGeometry()
        screen = window.screen().availableGeometry()
        check(screen.contains(frame.topLeft()), f"frame at {frame.topLeft()} is off {screen}")
        shot("window")

        step = steps[1]
        window.documents.open_paths([str(PHOTO)])
        wait(until=lambda: not window.model.doc.is_empty)
        check("astronaut" in window.windowTitle(), f"title {window.windowTitle()!r}")
        shot("photo")

        step = steps[2]
        window.canvas.actual_size()
        window.canvas.centerOn(256, 256)
        QTest.mouseMove(window.canvas.viewport(), point(256, 256))
        window.canvas.setFocus()
        QTest.keyClick(window.canvas.viewport(), Qt.Key.Key_B)
        check(window.canvas.tool == "brush", f"tool is {window.canvas.tool!r}")
        stroke([(220, 240), (250, 250), (290, 255), (310, 270)])
        mask = window.mask()
        check(mask is not None and mask[250, 250] == 255, "the stroke left no mask")
        shot("mask")

        step = steps[3]
        window.show_panel("Inpaint")
        inpaint = window.panels["Inpaint"]
        inpaint.erase_method.setCurrentIndex(inpaint.erase_method.findData("telea"))
        layers = len(window.model.doc.layers)
        QTest.mouseClick(inpaint.erase_button, Qt.MouseButton.LeftButton)
        wait(until=lambda: not inpaint.running and inpaint.staging.current is not None)
        check(len(window.model.doc.layers) == layers, "the result was added without asking")
        shot("staged")

        step = steps[4]
        undo = window.model.undo.count()
        window.canvas.setFocus()
        QTest.keyClick(window.canvas, Qt.Key.Key_Return)
        wait(200)
        check(len(window.model.doc.layers) == layers + 1, "Enter did not keep the result")
        check(window.model.undo.count() == undo + 1, "keeping it is not one undo step")
        shot("accepted")

        step = steps[5]
        window.show_panel("Control")
        control = window.panels["Control"]
        control.template_button.click()
        wait(200)
        pose = window.model.doc.active_layer
        check(pose is not None and pose.kind == "pose", "the pose layer is not active")
        nose = control.editor.pose.people[0].body[0]
        window.canvas.centerOn(*nose[:2])
        target = (nose[0] + 30, nose[1] + 20)
        stroke([nose[:2], (nose[0] + 15, nose[1] + 10), target])
        moved = control.editor.pose.people[0].body[0]
        check(abs(moved[0] - target[0]) <= 2 and abs(moved[1] - target[1]) <= 2, "no drag")
        shot("pose")

        step = steps[6]
        photo = next(la for la in window.model.doc.layers if la.kind == "image")
        window.model.set_active(photo.uid)
        control.add_canny_layer()
        guide = [la for la in window.model.doc.layers if la.kind == "control"][-1]
        window.model.set_active(guide.uid)
        preview = window.canvas.preview_item
        wait(until=lambda: not preview.image.isNull() and preview.isVisible(), timeout=10)
        shot("canny")
        window.show_panel("Generate")
        wait(until=lambda: preview.image.isNull(), timeout=10)

        step = steps[7]
        window.menus.act_shortcuts.trigger()
        dialog = window.menus.shortcuts_dialog
        wait(until=lambda: dialog is not None and dialog.isVisible(), timeout=10)
        from PySide6.QtWidgets import QTableWidget

        table = dialog.findChild(QTableWidget)
        keys = {
            table.item(r, c).text()
            for r in range(table.rowCount())
            for c in range(table.columnCount())
            if table.item(r, c)
        }
        check({"B", "E", "Ctrl+Z"} <= keys, f"shortcuts listed: {sorted(keys)[:12]}")
        shot("shortcuts")
        dialog.close()

        step = steps[8]
        window.show_panel("Models")
        shot("models")
        check(bool(np.asarray(shots).size), "no screenshot")
    except StepFailed as e:
        print(f"first hour: step {steps.index(step) + 1} ({step}) failed: {e}", file=sys.stderr)
        shot("failed")
        return 1
    finally:
        window.model.undo.setClean()
        window.close()
    print(f"first hour: {len(steps)} steps, {len(shots)} screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
