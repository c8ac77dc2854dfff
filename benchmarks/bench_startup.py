"""Time to window shown: Studio (`python -m studio`) against a bare PySide6 window, measured
side by side in one run (fresh subprocesses, alternating, median of several repetitions).

Both report when their window is shown and the event loop has run once (QTimer 0 after
show()). Wall time is measured by this script from process launch to that line, so Python
start-up and imports are included. Studio puts its main window on screen first and then
builds the canvas, docks and panels (numpy, Pillow, OpenCV load then): the table gives both
"shown" and "ready" (everything built, the app usable). The probe also says whether torch was
imported by then (it must not be: the engine loads in the background afterwards).

    python benchmarks/bench_startup.py [--quick] [--reps N]

Target: Studio / bare <= 1.3x ("shown", wall). The CPU columns (process CPU seconds by the
time the window is shown) are the same comparison, steadier on a machine that other jobs keep
busy: wall time there mostly measures the wait for a core. PYTHONDONTWRITEBYTECODE is unset
for the children so that neither side recompiles its sources on every run.
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
TARGET = 1.3  # "shown" at most 1.3x a bare PySide6 window

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
    print(f"STUDIO_SHOWN {time.perf_counter() - t0:.4f} torch={'torch' in sys.modules} cpu={time.process_time():.4f}", flush=True)
    app.quit()
QTimer.singleShot(0, probe)
app.exec()
"""


def run_once(cmd: list[str], env: dict) -> tuple[float, float, bool, float, float]:
    """(wall seconds to shown, in-process seconds to shown, torch imported by ready,
    wall seconds to ready, CPU seconds of the process by shown)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wall = ready = None
    inproc, torch, cpu = float("nan"), False, float("nan")
    assert p.stdout is not None
    for line in p.stdout:
        parts = line.split()
        if line.startswith("STUDIO_SHOWN"):
            wall = time.perf_counter() - t0
            inproc, torch = float(parts[1]), parts[2] == "torch=True"
            if len(parts) > 3 and parts[3].startswith("cpu="):
                cpu = float(parts[3][4:])
        elif line.startswith("STUDIO_READY"):
            ready = time.perf_counter() - t0
            torch = torch or parts[2] == "torch=True"
    p.wait(timeout=60)
    if wall is None:
        raise SystemExit(f"no probe line from {' '.join(cmd)} (exit {p.returncode})")
    return wall, inproc, torch, ready if ready is not None else wall, cpu


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
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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

    base, cpu_base = med("bare", 0), med("bare", 4)
    print(
        f"Startup: time to window shown, median of {reps} runs "
        f"(QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']}, {os.cpu_count()} cores)\n"
    )
    print(
        "| program | shown: wall (s) | shown: ratio vs bare | shown: CPU (s) | CPU ratio "
        "| ready: wall (s) | ready: ratio vs bare | torch loaded |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = [
        ("bare PySide6 QMainWindow", "bare"),
        ("`python -m studio`", "studio"),
        ("`python -m studio open IMAGE`", "open"),
    ]
    for label, key in rows:
        torch = any(r[2] for r in results[key])
        print(
            f"| {label} | {med(key, 0):.3f} | {med(key, 0) / base:.2f}x | {med(key, 4):.3f} "
            f"| {med(key, 4) / cpu_base:.2f}x | {med(key, 3):.3f} | {med(key, 3) / base:.2f}x "
            f"| {'yes' if torch else 'no'} |"
        )
    ratio = med("studio", 0) / base
    cpu_ratio = med("studio", 4) / cpu_base
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"\nTarget (shown) <= {TARGET}x: {verdict} ({ratio:.2f}x wall, {cpu_ratio:.2f}x CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
