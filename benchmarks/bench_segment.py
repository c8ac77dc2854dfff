"""Select by clicking: one SAM 2 image embedding against one click's decode.

    python benchmarks/bench_segment.py            # tiny model + full-size hiera-small config
    python benchmarks/bench_segment.py --quick    # tiny model only
    python benchmarks/bench_segment.py --json     # machine-readable
    python benchmarks/bench_segment.py --app      # + click-to-outline latency in the window

SAM 2 (Ravi et al. 2024) runs its image encoder once per image and only the prompt encoder
and mask decoder per click; a click must cost a small fraction of the embedding for
selection to feel live. Random weights (the timings do not depend on them): the tiny test
model (128 px input) and SAM 2.1 hiera-small's architecture at 1024 px, built in memory.
Reported: median ms of the embedding and of a one-point decode, and decode / embedding.
``--app`` also times, in the real main window (offscreen Qt) with the tiny model installed,
the Smart select tool from a click on the canvas to the candidate's outline on screen, after
the embedding the tool asked for when it was picked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def bench(name: str, full: bool, n_embed: int, n_decode: int, device: str) -> dict:
    import numpy as np
    import torch
    from transformers import Sam2Model

    from studio.engine.fixtures.tiny_sam import sam2_config, sam2_processor
    from studio.engine.vision.segment import SamSession

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = Sam2Model(sam2_config(full=full)).eval().to(device)
    build_s = time.perf_counter() - t0
    side = 1024 if full else 128
    session = SamSession(model, sam2_processor(side), device)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)  # a 4:3 photo-sized image
    session.embed(image)  # warm-up
    embed_ms = _median_ms(lambda: session.use(session.compute_embedding(image)), n_embed)
    session.decode([(300, 200)], [1])  # warm-up
    decode_ms = _median_ms(lambda: session.decode([(300, 200)], [1]), n_decode)
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "params_m": round(params / 1e6, 2),
        "input": side,
        "build_s": round(build_s, 2),
        "embed_ms": round(embed_ms, 2),
        "decode_ms": round(decode_ms, 2),
        "ratio": round(decode_ms / embed_ms, 4),
    }


def app_latency(clicks: int = 10) -> dict:
    """Median and worst ms from a click on the canvas to the candidate's outline, in the main
    window with the tiny SAM 2 installed in a temporary STUDIO_HOME."""
    import os
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="studio-bench-home-"))
    os.environ["STUDIO_HOME"] = str(home)
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from studio.engine.fixtures.tiny_sam import build_tiny_sam2
    from studio.engine.vision import segment
    from studio.ui.main_window import MainWindow

    build_tiny_sam2(home / "models" / segment.FOLDER / segment.SAM2_ID)
    app = QApplication.instance() or QApplication([])
    win = MainWindow()
    win.resize(1280, 800)
    win.show()
    win.jobs.start_engine()
    win.import_images([str(ROOT / "tests" / "data" / "photos" / "astronaut.png")])
    sel = win.smart_select

    def wait(cond, timeout=60.0):
        t0 = time.perf_counter()
        while not cond():
            app.processEvents()
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("the window did not answer")
            time.sleep(0.001)

    win.canvas.set_tool("smart")  # as W does
    wait(lambda: sel._running is None)  # the embedding, asked for when the tool was picked
    vp = win.canvas.viewport()
    times = []
    for k in range(clicks):
        sel._drop()  # as Esc does
        point = win.canvas.mapFromScene(QPointF(100 + 20 * k, 200))
        t0 = time.perf_counter()
        QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)
        wait(lambda: sel.candidate is not None and sel.ants.isVisible())
        times.append((time.perf_counter() - t0) * 1000.0)
    win.hide()  # not close(): that would ask whether to save the imported picture
    return {"clicks": clicks, "median_ms": statistics.median(times), "max_ms": max(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the tiny model only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--app", action="store_true", help="also click-to-outline in the window")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench("tiny (test config)", False, 5, 20, args.device)]
    if not args.quick:
        rows.append(bench("sam2.1-hiera-small (random)", True, 3, 10, args.device))
    app = app_latency() if args.app else None
    if args.json:
        print(json.dumps({"device": args.device, "rows": rows, "app": app}, indent=2))
        return 0
    print(f"{'model':30} {'params':>8} {'input':>6} {'embed ms':>10} {'click ms':>10} {'ratio':>8}")
    for r in rows:
        print(
            f"{r['model']:30} {r['params_m']:>7}M {r['input']:>6} {r['embed_ms']:>10.1f} "
            f"{r['decode_ms']:>10.2f} {r['ratio']:>8.3f}"
        )
    if app is not None:
        print(
            f"app, tiny model: click to outline median {app['median_ms']:.1f} ms, "
            f"worst {app['max_ms']:.1f} ms over {app['clicks']} clicks"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
