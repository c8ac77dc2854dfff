"""Batching and LoRA fusing: ``--count 4`` as one batch against four single
runs, and a LoRA fused into the weights against the same LoRA as unfused adapters.

Runs the real job path (Runner + GenerateRequest) on a tiny random SD1.x-architecture model
(or ``--model FOLDER``) on the CPU by default, after one warm-up job per case, and prints a
Markdown table with the ratios. One run per case: a coarse figure, not a statistic. The tiny
model's steps are cheap, so per-call overhead (text encoding, scheduler set-up, VAE decode)
weighs more than with a real model; on a GPU the batch gain comes from filling the device.

    python benchmarks/bench_batch.py [--model FOLDER] [--size 256] [--steps 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _job(runner, model: str, size: int, steps: int, **kw):
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest

    req = GenerateRequest(
        model=model, prompt="a cat on a hill", steps=steps, width=size, height=size,
        preview="off", **kw,
    )  # fmt: skip
    t0 = time.perf_counter()
    final = runner.run(req)
    dt = time.perf_counter() - t0
    if not isinstance(final, Finished):
        raise SystemExit(f"job failed: {getattr(final, 'message', final)}")
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a diffusers SD folder (default: a tiny random SD1.x)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from studio.engine.diffusion.sd import pipeline
    from studio.engine.fixtures.tiny_models import build_tiny_lora, build_tiny_sd
    from studio.engine.jobs.requests import LoraSpec
    from studio.engine.jobs.runner import Runner

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-batch-"))
    model = Path(args.model) if args.model else build_tiny_sd(tmp / "tiny-sd")
    lora = build_tiny_lora(model, tmp / "loras" / "detail.safetensors")
    runner = Runner(device=args.device)
    job = lambda **kw: _job(runner, str(model), args.size, args.steps, **kw)  # noqa: E731

    job(count=1)  # warm-up: load the model
    batch = job(count=4, seed=10)
    singles = sum(job(count=1, seed=10 + k) for k in range(4))

    spec = (LoraSpec(str(lora), 0.8),)
    job(loras=spec)  # warm-up with the LoRA loaded and fused
    fused = job(loras=spec, count=2)
    real = pipeline.apply_loras
    pipeline.apply_loras = lambda p, e, lo, fuse=True: real(p, e, lo, fuse=False)
    try:
        job(loras=spec)  # unfuse once, outside the timing
        unfused = job(loras=spec, count=2)
    finally:
        pipeline.apply_loras = real

    print(f"\nmodel {model.name}, {args.size}x{args.size}, {args.steps} steps, {args.device}\n")
    print("| case | seconds | speed-up (time of the row below / this) |")
    print("|---|---:|---:|")
    print(f"| --count 4 as one batch | {batch:.2f} | {singles / batch:.2f}x |")
    print(f"| 4 single runs | {singles:.2f} | 1.00 |")
    print(f"| LoRA fused (2 images) | {fused:.2f} | {unfused / fused:.2f}x |")
    print(f"| LoRA unfused (2 images) | {unfused:.2f} | 1.00 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
