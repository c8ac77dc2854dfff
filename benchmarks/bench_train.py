"""DreamBooth LoRA training (``studio train lora``): seconds per step with cached VAE latents
and text embeddings against encoding them every step, and the peak memory of each.

Runs the real job path (Runner + TrainLoraRequest) on the tiny random SD1.x-architecture model
(or ``--model FOLDER``), each mode in its own subprocess so that its peak memory is its own:
peak RSS (``getrusage`` ru_maxrss: weights, activations, the optimizer) and, on CUDA, the
allocator's peak (``torch.cuda.max_memory_allocated``). Seconds per step is the median gap
between consecutive step Progress events after ``--warmup`` steps. Modes alternate over
``--rounds``; the table gives the median. On the tiny model the VAE and text encoders are
almost free, so the ratio is small; with a real SD1.5/SDXL VAE at 512-1024 px the encode is
a large share of a step.

    python benchmarks/bench_train.py --quick          # 64 px, 12 steps, 1 round (CPU)
    python benchmarks/bench_train.py                  # 128 px, 30 steps, 2 rounds
    python benchmarks/bench_train.py --json           # the numbers as JSON too
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODES = {
    "cached": {"cache_latents": True, "cache_text": True},
    "uncached": {"cache_latents": False, "cache_text": False},
}


def _images(folder: Path, n: int, size: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        w, h = (size, size) if i % 2 == 0 else (size, size * 3 // 4)
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.stack([(xx * 3 + 17 * i) % 256, (yy * 3) % 256, xx * 0 + 90 + i], -1)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(a.astype(np.uint8)).save(path)
        out.append(str(path))
    return out


def child(args: argparse.Namespace) -> int:
    """One training run in this process; prints one JSON line."""
    import resource

    import torch

    from studio.engine.jobs import Finished, Progress, Runner, TrainLoraRequest

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    images = _images(work / "images", args.images, args.size)
    stamps: list[float] = []

    def emit(event) -> None:
        if isinstance(event, Progress) and event.message.startswith("step "):
            stamps.append(time.perf_counter())

    request = TrainLoraRequest(
        model=args.model,
        images=tuple(images),
        trigger="sks",
        steps=args.steps,
        rank=args.rank,
        lr=1e-4,
        resolution=args.size,
        seed=0,
        checkpoint_every=0,
        out=str(work / f"{args.child}.safetensors"),
        device=args.device,
        **MODES[args.child],
    )
    t0 = time.perf_counter()
    final = Runner(device=args.device).run(request, emit=emit)
    if not isinstance(final, Finished):
        print(json.dumps({"error": getattr(final, "message", str(final))}))
        return 1
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][args.warmup :]
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    cuda = None
    if torch.cuda.is_available():
        cuda = torch.cuda.max_memory_allocated() / 2**20
    print(
        json.dumps(
            {
                "mode": args.child,
                "s_per_step": statistics.median(gaps) if gaps else float("nan"),
                "peak_rss_mib": peak_rss,
                "peak_cuda_mib": cuda,
                "total_s": time.perf_counter() - t0,
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 px, 12 steps, 1 round")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    ap.add_argument("--model", help="a diffusers SD folder (default: the tiny random SD1.x)")
    ap.add_argument("--size", type=int, default=0, help="training resolution")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2, help="step gaps left out of the median")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--child", choices=tuple(MODES), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.size = args.size or (64 if args.quick else 128)
    args.steps = args.steps or (12 if args.quick else 30)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.child:
        return child(args)

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-train-"))
    if not args.model:
        from studio.engine.fixtures.tiny_models import build_tiny_sd

        args.model = str(build_tiny_sd(tmp / "tiny-sd"))
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    env = dict(os.environ, PYTHONPATH=str(ROOT), STUDIO_HOME=str(tmp / "home"))
    for r in range(args.rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for mode in order:
            cmd = [
                sys.executable, __file__, "--child", mode, "--work", str(tmp),
                "--model", args.model, "--size", str(args.size), "--steps", str(args.steps),
                "--warmup", str(args.warmup), "--images", str(args.images),
                "--rank", str(args.rank), "--device", args.device,
                "--threads", str(args.threads),
            ]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if out.returncode != 0 or not lines:
                print(out.stdout[-2000:] + out.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{mode}: the training run failed")
            results[mode].append(json.loads(lines[-1]))

    def med(mode: str, key: str) -> float | None:
        values = [r[key] for r in results[mode] if r.get(key) is not None]
        return statistics.median(values) if values else None

    cached, uncached = med("cached", "s_per_step"), med("uncached", "s_per_step")
    name = Path(args.model).name
    print(
        f"\nmodel {name}, {args.images} images at {args.size} px, rank {args.rank}, "
        f"{args.steps} steps, {args.device}, {args.rounds} round(s)\n"
    )
    cuda = med("cached", "peak_cuda_mib") is not None
    head = "| latents & text embeddings | s/step | peak RSS MiB |" + (
        " peak CUDA MiB |" if cuda else ""
    )
    print(head)
    print("|---|---:|---:|" + ("---:|" if cuda else ""))
    for mode, label in (("cached", "cached (encoded once)"), ("uncached", "encoded every step")):
        row = f"| {label} | {med(mode, 's_per_step'):.4f} | {med(mode, 'peak_rss_mib'):.0f} |"
        if cuda:
            row += f" {med(mode, 'peak_cuda_mib'):.0f} |"
        print(row)
    ratio = uncached / cached if cached else float("nan")
    print(f"\nuncached / cached seconds per step: {ratio:.2f}x")
    if args.json:
        summary = {
            "model": name,
            "size": args.size,
            "steps": args.steps,
            "device": args.device,
            "cached": {
                k: med("cached", k) for k in ("s_per_step", "peak_rss_mib", "peak_cuda_mib")
            },
            "uncached": {
                k: med("uncached", k) for k in ("s_per_step", "peak_rss_mib", "peak_cuda_mib")
            },
            "ratio_uncached_over_cached": ratio,
            "runs": results,
        }
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
