"""Tiled GAN upscaling: the cost of the overlap, memory bounded by the tile, GPU throughput.

    python benchmarks/bench_upscale.py --quick     # small sizes, minutes on a 2-core CPU
    python benchmarks/bench_upscale.py             # 512 px timing image, 2048 vs 512 memory
    python benchmarks/bench_upscale.py --gpu       # + Real-ESRGAN-sized RRDBNet MP/s (CUDA;
                                                   #   also automatic when CUDA is available)

All models are random-weight RRDBNets (spandrel's ESRGAN architecture) loaded through
spandrel, run through ``studio.engine.restore.upscale.upscale_image`` — the code path of the app.

1. Overlap cost. Tiles of T px sharing o px with each neighbour recompute the overlaps:
   in the limit of many tiles the work grows by ``(T / (T - o))^2``. The exact ratio for the
   grid actually used is ``sum(tile areas) / image area`` (also printed). Measured: time tiled /
   CPU time of the tiled run with overlap / the same tiles without overlap (and / one
   untiled tile), one torch thread, best of N interleaved runs, same process. CPU time on
   one thread measures the work done even while other processes compete for the cores.
2. Memory. Each input size runs in a fresh subprocess. After the model and the input are
   loaded, the kernel's peak-RSS counter is reset (``echo 5 > /proc/self/clear_refs``) and
   ``VmHWM`` is read after the upscale: peak delta = everything the upscale allocated at its
   peak (torch's CPU allocator returns to malloc, so RSS is the honest measure; tracemalloc
   misses torch tensors). The upscaled output itself (``W*H*s^2*3`` bytes) is unavoidable and
   is subtracted to give the *working* memory, which should not grow with the image (only
   the thin overlap band carried between tile rows grows, with the width). The child runs
   with ``MALLOC_MMAP_THRESHOLD_`` fixed so freed buffers leave RSS at once. tracemalloc's
   peak (numpy and Python allocations only, not torch tensors) is printed beside it.
3. Throughput (``--gpu``): input megapixels per second of a 64-filter, 23-block RRDBNet
   (Real-ESRGAN x4plus's size) in fp16 and fp32 on CUDA, automatic tile size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _descriptor(filters: int, blocks: int, scale: int = 4, seed: int = 0):
    import spandrel
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet

    torch.manual_seed(seed)
    net = RRDBNet(in_nc=3, out_nc=3, num_filters=filters, num_blocks=blocks, scale=scale)
    return spandrel.ModelLoader().load_from_state_dict(net.state_dict()).eval()


def _image(size: int):
    import numpy as np
    from PIL import Image

    photo = ROOT / "tests" / "data" / "photos" / "astronaut.png"
    im = Image.open(photo).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im).copy()


def _grid_ratio(size: int, tile: int, overlap: int) -> float:
    from studio.engine.restore.tiling import spans

    sp = spans(size, tile, overlap)
    covered = sum(s.length for s in sp)
    return (covered / size) ** 2


def overlap_table(size: int, filters: int, blocks: int, configs, repeats: int) -> list[str]:
    """Per-pixel cost of tiles with overlap against the same tiles without, on images sized
    so that every tile is exactly T x T in both grids (n tiles per side: L = n(T-o)+o with
    overlap, L0 = nT without). Then the only difference is the recomputed overlap, and the
    expected ratio is the grid's area ratio (nT/L)^2, which tends to (T/(T-o))^2."""
    import torch

    from studio.engine.jobs.device import DeviceChoice
    from studio.engine.restore.tiling import spans
    from studio.engine.restore.upscale import upscale_image

    d = _descriptor(filters, blocks)
    choice = DeviceChoice(torch.device("cpu"), torch.float32)
    # One thread and CPU time (not wall time): the work done, unaffected by other processes
    # competing for the cores or by thread-pool spin-waits.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    upscale_image(_image(32), d, 4, choice, tile=0)  # warm-up

    plans = []
    for tile, overlap in configs:
        n = max(2, round((size - overlap) / (tile - overlap)))
        side, side0 = n * (tile - overlap) + overlap, n * tile
        assert all(sp.length == tile for sp in spans(side, tile, overlap))
        plans.append((tile, overlap, n, side, side0))
    runs = {(size, size, 0)}  # untiled reference
    for tile, overlap, _n, side, side0 in plans:
        runs |= {(side, tile, overlap), (side0, tile, 0)}
    images = {side: _image(side) for side, _, _ in runs}
    cpu: dict[tuple[int, int, int], float] = {}
    for _ in range(repeats):  # interleaved, best of N: drift hits all configs alike
        for key in sorted(runs):
            side, tile, overlap = key
            t0 = time.process_time()
            upscale_image(images[side], d, 4, choice, tile=tile, overlap=overlap)
            dt = time.process_time() - t0
            cpu[key] = min(dt, cpu.get(key, dt))
    torch.set_num_threads(threads)

    untiled = cpu[(size, size, 0)] / size**2
    rows = [
        f"Overlap cost: x4 RRDBNet ({filters} filters, {blocks} blocks), CPU fp32, 1 thread, "
        f"CPU time, best of {repeats} interleaved. Cost = CPU us per input pixel; every tile "
        f"exactly T x T. Untiled reference: {size}x{size} in one tile, {untiled * 1e6:.2f} us/px.",
        "",
        "| tile T | overlap o | tiles | image (overlap / none) | us/px no overlap "
        "| us/px with overlap | measured ratio | exact (nT/L)^2 | (T/(T-o))^2 | tiled / untiled |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tile, overlap, n, side, side0 in plans:
        c0 = cpu[(side0, tile, 0)] / side0**2
        c1 = cpu[(side, tile, overlap)] / side**2
        rows.append(
            f"| {tile} | {overlap} | {n}x{n} | {side} / {side0} | {c0 * 1e6:.2f} | "
            f"{c1 * 1e6:.2f} | {c1 / c0:.3f} | {(n * tile / side) ** 2:.3f} | "
            f"{(tile / (tile - overlap)) ** 2:.3f} | {c1 / untiled:.3f} |"
        )
    return rows


def _memory_child(size: int, filters: int, blocks: int, tile: int, overlap: int) -> dict:
    """Runs in a fresh process: peak RSS delta of one upscale."""
    import gc

    import torch

    from studio.engine.jobs.device import DeviceChoice
    from studio.engine.restore.upscale import upscale_image

    torch.set_num_threads(1)
    d = _descriptor(filters, blocks)
    img = _image(size)
    choice = DeviceChoice(torch.device("cpu"), torch.float32)
    upscale_image(img[:64, :64], d, 4, choice, tile=tile, overlap=overlap)  # warm-up
    gc.collect()

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    import tracemalloc

    base = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    tracemalloc.start()
    t0 = time.perf_counter()
    out, stats = upscale_image(img, d, 4, choice, tile=tile, overlap=overlap)
    seconds = time.perf_counter() - t0
    peak = status("VmHWM")
    _, np_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "size": size,
        "peak_delta": peak - base,
        "numpy_peak": np_peak,
        "output": int(out.nbytes),
        "tiles": stats.tiles,
        "seconds": seconds,
    }


def memory_table(sizes, filters: int, blocks: int, tile: int, overlap: int) -> list[str]:
    results = []
    for size in sizes:
        code = (
            f"import json,sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from benchmarks.bench_upscale import _memory_child; "
            f"print(json.dumps(_memory_child({size}, {filters}, {blocks}, {tile}, {overlap})))"
        )
        # A fixed mmap threshold: freed large buffers go back to the kernel at once, so RSS
        # tracks live memory instead of glibc's adaptive retention (which made the RSS of the
        # same run vary by 100 MiB between runs).
        env = dict(os.environ, STUDIO_DEVICE="cpu", MALLOC_MMAP_THRESHOLD_="131072")
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
        )
        if proc.returncode != 0:
            return [f"Memory: measurement failed: {proc.stderr.strip().splitlines()[-1:]}"]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    mib = 2**20
    rows = [
        f"Memory: x4 RRDBNet ({filters} filters, {blocks} blocks), tile {tile}, overlap "
        f"{overlap}, CPU fp32, 1 thread; peak RSS delta per upscale (fresh process, VmHWM reset)",
        "",
        "| input | tiles | tile used | output MiB | peak RSS delta MiB "
        "| working MiB (RSS - output) | numpy-side working MiB (tracemalloc - output) | time s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    from studio.engine.restore.tiling import spans

    used = {r["size"]: spans(r["size"], tile, overlap)[0].length for r in results}
    for r in results:
        work = r["peak_delta"] - r["output"]
        rows.append(
            f"| {r['size']}x{r['size']} | {r['tiles']} | {used[r['size']]} | "
            f"{r['output'] / mib:.1f} | "
            f"{r['peak_delta'] / mib:.1f} | {work / mib:.1f} | "
            f"{(r['numpy_peak'] - r['output']) / mib:.1f} | {r['seconds']:.1f} |"
        )
    if len(results) >= 2:
        a, b = results[0], results[-1]
        px = (b["size"] / a["size"]) ** 2
        wa = max(1, a["peak_delta"] - a["output"])
        wb = b["peak_delta"] - b["output"]
        ta, tb = used[a["size"]], used[b["size"]]
        rows += [
            "",
            f"{px:.0f}x the pixels: working memory x{wb / wa:.2f}; the balanced tiles grew "
            f"from {ta} to {tb} px, area x{(tb / ta) ** 2:.2f} (an untiled run would scale "
            f"with the pixels: x{px:.0f})",
        ]
    return rows


def gpu_table(size: int) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return ["Throughput: skipped — no CUDA GPU on this machine (CPU-only torch)."]
    from studio.engine.jobs.device import DeviceChoice
    from studio.engine.restore.upscale import upscale_image

    d = _descriptor(64, 23)  # Real-ESRGAN x4plus's size
    img = _image(size)
    rows = [
        f"Throughput: RRDBNet 64 filters 23 blocks x4 (Real-ESRGAN x4plus size), {size}x{size} "
        f"input, {torch.cuda.get_device_name(0)}, automatic tile",
        "",
        "| dtype | tile | seconds | input MP/s | peak GPU MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for dtype in (torch.float16, torch.float32):
        choice = DeviceChoice(torch.device("cuda"), dtype)
        upscale_image(img[:128, :128], d, 4, choice)  # warm-up (cuDNN autotune, allocator)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        _, stats = upscale_image(img, d, 4, choice)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**20
        rows.append(
            f"| {stats.dtype} | {stats.tile} | {dt:.2f} | {size * size / 1e6 / dt:.2f} | "
            f"{peak:.0f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU, minutes)")
    parser.add_argument(
        "--gpu", action="store_true", help="the CUDA fp16/fp32 throughput (default: if CUDA)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        timing = dict(size=192, filters=8, blocks=1, repeats=2)
        configs = [(96, 16), (64, 8), (64, 16), (48, 16)]
        mem = dict(sizes=(128, 512), filters=8, blocks=1, tile=64, overlap=8)
    else:
        timing = dict(size=512, filters=16, blocks=2, repeats=3)
        configs = [(256, 16), (256, 32), (128, 8), (128, 16), (128, 32), (64, 16)]
        mem = dict(sizes=(512, 2048), filters=8, blocks=1, tile=256, overlap=16)
    out = ["## Upscale (tiled GAN super-resolution)", ""]
    out += overlap_table(
        timing["size"], timing["filters"], timing["blocks"], configs, timing["repeats"]
    )
    out += [""]
    out += memory_table(**mem)
    out += [""]
    import torch

    if args.gpu or torch.cuda.is_available():
        out += gpu_table(512 if args.quick else 1024)
    else:
        out += ["Throughput (fp16 RRDBNet 64x23 on CUDA): skipped — no CUDA GPU here."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
