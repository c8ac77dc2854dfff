"""Time to window shown: Studio (`python -m studio`) against a bare PySide6 window, measured
side by side in one run (fresh subprocesses, alternating, median of several repetitions).

Both report when their window is shown and the event loop has run once (QTimer 0 after
show()). Wall time is measured by this script from process launch to that line, so Python
start-up and imports are included. Studio puts its main window on screen first and then
builds the canvas, docks and panels (numpy, Pillow, OpenCV load then): the table gives both
"shown" and "ready" (everything built, the app usable). The probe also says whether torch was
imported by then (it must not be: the engine loads in the background afterwards).

    python benchmarks/bench_startup.py [--quick] [--reps N]

Target: Studio / bare <= 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE = r"""
import sys, time
t0 = time.perf_counter()
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QLabel
app = QApplication(sys.argv)
w = QMainWindow()
w.setCentralWidget(QLabel("hello"))
w.resize(1280, 800)
w.show()
def probe():
    print(f"STUDIO_SHOWN {time.perf_counter() - t0:.4f} torch={'torch' in sys.modules}", flush=True)
    app.quit()
QTimer.singleShot(0, probe)
app.exec()
"""


def run_once(cmd: list[str], env: dict) -> tuple[float, float, bool, float]:
    """(wall seconds to shown, in-process seconds to shown, torch imported by ready,
    wall seconds to ready)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wall = ready = None
    inproc, torch = float("nan"), False
    assert p.stdout is not None
    for line in p.stdout:
        parts = line.split()
        if line.startswith("STUDIO_SHOWN"):
            wall = time.perf_counter() - t0
            inproc, torch = float(parts[1]), parts[2] == "torch=True"
        elif line.startswith("STUDIO_READY"):
            ready = time.perf_counter() - t0
            torch = torch or parts[2] == "torch=True"
    p.wait(timeout=60)
    if wall is None:
        raise SystemExit(f"no probe line from {' '.join(cmd)} (exit {p.returncode})")
    return wall, inproc, torch, ready if ready is not None else wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions instead of 9")
    ap.add_argument("--reps", type=int, default=0)
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 9)

    home = tempfile.mkdtemp(prefix="studio-bench-startup-")
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen" if not env.get("DISPLAY") else "xcb")
    env.update(STUDIO_HOME=home, STUDIO_STARTUP_PROBE="1", PYTHONPATH=str(ROOT))
    bare_cmd = [sys.executable, "-c", BARE]
    studio_cmd = [sys.executable, "-m", "studio"]
    photo = ROOT / "tests" / "data" / "photos" / "chelsea.png"
    open_cmd = [sys.executable, "-m", "studio", "open", str(photo)]

    # warm the OS file cache once for each, then alternate
    run_once(bare_cmd, env)
    run_once(studio_cmd, env)
    results: dict[str, list[tuple]] = {"bare": [], "studio": [], "open": []}
    for _ in range(reps):
        results["bare"].append(run_once(bare_cmd, env))
        results["studio"].append(run_once(studio_cmd, env))
        results["open"].append(run_once(open_cmd, env))

    def med(key: str, i: int) -> float:
        return statistics.median(r[i] for r in results[key])

    base = med("bare", 0)
    print(
        f"Startup: time to window shown, median of {reps} runs "
        f"(QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']}, {os.cpu_count()} cores)\n"
    )
    print(
        "| program | shown: wall (s) | shown: ratio vs bare | ready: wall (s) "
        "| ready: ratio vs bare | torch loaded |"
    )
    print("|---|---|---|---|---|---|")
    rows = [
        ("bare PySide6 QMainWindow", "bare"),
        ("`python -m studio`", "studio"),
        ("`python -m studio open IMAGE`", "open"),
    ]
    for label, key in rows:
        torch = any(r[2] for r in results[key])
        print(
            f"| {label} | {med(key, 0):.3f} | {med(key, 0) / base:.2f}x | {med(key, 3):.3f} "
            f"| {med(key, 3) / base:.2f}x | {'yes' if torch else 'no'} |"
        )
    ratio = med("studio", 0) / base
    print(f"\nTarget (shown) <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
