"""ControlNet guides: the live Canny preview and the pose editor against their frame budgets,
and where OpenPose detection spends its time.

    python benchmarks/bench_control.py --quick    # 1024 px preview, 512 px detection
    python benchmarks/bench_control.py            # + 2048 px preview

1. Live Canny preview. The Control panel's ``update_preview`` (read the cached source crop,
   cv2.Canny, build the RGBA overlay, hand it to the canvas) on an offscreen MainWindow, the
   code path a slider move runs; median of N runs, and cv2.Canny alone beside it. The issue's
   budget is 100 ms per update at 1024x1024; ratio = time / budget (< 1 is within it).
2. Pose editing. ``studio.core.pose.render`` of a 3-person pose (what a keypoint drag redraws
   every mouse move) against a 16.7 ms (60 Hz) frame.
3. OpenPose detection (random weights, the real network and file format) on a 512 px image:
   the body network's forward pass vs. the heatmap/PAF parsing, as shares of the total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def _photo(size: int):
    import cv2
    import numpy as np

    from studio.core.imageio import load_image

    img = load_image(ROOT / "tests" / "data" / "photos" / "astronaut.png", "RGB")
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC))


def bench_preview(sizes: list[int], n: int) -> list[tuple[str, float, float]]:
    import cv2
    from PySide6.QtWidgets import QApplication

    from studio.ui.main_window import MainWindow

    os.environ.setdefault("STUDIO_HOME", tempfile.mkdtemp(prefix="studio-bench-"))
    app = QApplication.instance() or QApplication([])
    rows = []
    for size in sizes:
        win = MainWindow()
        win.show()
        img = _photo(size)
        win.add_layer(img, "photo")
        panel = win.panels["Control"]
        panel.source_combo.setCurrentIndex(panel.source_combo.findData("composite"))
        # The overlay is drawn while a Canny guide is picked with the Control panel in front.
        panel.add_canny_layer()
        guide = [layer for layer in win.model.doc.layers if layer.kind == "control"][-1]
        win.model.set_active(guide.uid)
        panel.preview.set_shown(True)
        if not panel.preview.wanted():
            raise SystemExit("bench_control: the Canny overlay is not active; nothing to time")
        values = iter(range(10_000))

        def step(panel=panel, values=values) -> None:
            panel.low_spin.setValue(20 + next(values) % 200)
            panel.update_preview()

        step()
        preview = _median_ms(step, n)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        canny_only = _median_ms(lambda gray=gray: cv2.Canny(gray, 100, 200), n)
        app.processEvents()
        win.model.undo.setClean()
        win.close()
        rows.append((f"Canny live preview update, {size}x{size}", preview, 100.0))
        rows.append((f"  of which cv2.Canny alone, {size}x{size}", canny_only, 100.0))
    return rows


def bench_render(n: int) -> list[tuple[str, float, float]]:
    from studio.core.pose import default_pose, render

    pose = default_pose(1024, 1024, people=3)
    return [("Pose render (3 people), 1024x1024", _median_ms(lambda: render(pose), n), 1000 / 60)]


def bench_detect() -> list[tuple[str, float, float]]:
    import torch

    from studio.engine.fixtures import write_random_openpose
    from studio.engine.vision import pose_detect

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="studio-bench-pose-"))
    path = write_random_openpose(folder)
    det = pose_detect.PoseDetector(pose_detect.load_body_model(path))
    bgr = _photo(512)[:, :, ::-1].copy()
    pose_detect.body_maps(det.body, bgr)  # warm-up
    t0 = time.perf_counter()
    heat, paf = pose_detect.body_maps(det.body, bgr)
    t1 = time.perf_counter()
    peaks = pose_detect.find_peaks(heat)
    pose_detect.assemble(peaks, paf, bgr.shape[0])
    t2 = time.perf_counter()
    total = (t2 - t0) * 1000.0
    path.unlink()
    return [
        ("OpenPose body network, 512x512 (share of detection)", (t1 - t0) * 1000.0, total),
        ("OpenPose peak finding + PAF parsing (share of detection)", (t2 - t1) * 1000.0, total),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 px only, fewer runs")
    parser.add_argument("--no-detect", action="store_true", help="skip the detection timing")
    args = parser.parse_args(argv)
    sizes = [1024] if args.quick else [1024, 2048]
    n = 7 if args.quick else 21
    rows = bench_preview(sizes, n) + bench_render(n)
    if not args.no_detect:
        rows += bench_detect()
    print("| measure | time (ms) | budget / total (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for name, ms, budget in rows:
        print(f"| {name} | {ms:.1f} | {budget:.1f} | {ms / budget:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
