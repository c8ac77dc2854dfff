"""Preview cost per step (off / latent / taesd / full) and cancel latency, on an
SD1.5-architecture UNet and VAE with random weights (studio.engine.fixtures.tiny_models.build_sd15_random: the
real shapes, so the compute is real), through the same Runner/GenerateRequest path users hit.

    python benchmarks/bench_previews.py --quick        # 128 px, few steps (CPU)
    python benchmarks/bench_previews.py                # 256 px on CPU
    python benchmarks/bench_previews.py --gpu          # 512 px fp16 on CUDA

Per-step time is the smallest gap between consecutive Progress events (it includes the preview
made for the previous step), in process CPU time on a CPU (steadier than wall time on a shared
machine) and synchronized wall time on a GPU; modes run interleaved, in rotated order each
round. Whole runs include Studio's preview budget (taesd previews are skipped while they
would take over 10% of the job time). Because whole-run ratios are noisy on a busy machine,
the preview work is also timed alone (same decoder, a latent of the same size, repeated) and
reported as (step + preview) / step: the cost if every step got a preview. Cancel: cancel() is called at a random
moment inside a random step from another thread; "steps after cancel" counts the steps that
completed after the call (targets: latent <= 1.03x, taesd <= 1.15x, cancel within 1 step).
TAESD here is a random-weight AutoencoderTiny with madebyollin/taesd's architecture.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import sd15_folder  # noqa: E402 - benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def taesd_folder() -> Path:
    from diffusers import AutoencoderTiny

    folder = Path(tempfile.mkdtemp(prefix="bench-taesd-"))
    AutoencoderTiny().save_pretrained(folder)  # default config = madebyollin/taesd
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="128 px, 4 steps, 2 rounds")
    ap.add_argument("--gpu", action="store_true", help="CUDA, float16, 512 px")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--cancels", type=int, default=0, help="cancel trials")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--model", default=None, help="an SD1.5 folder instead of the random one")
    args = ap.parse_args(argv)
    if args.gpu:
        args.device, args.dtype = args.device or "cuda", args.dtype or "float16"
    size = args.size or (512 if args.gpu else 128 if args.quick else 256)
    steps = args.steps or (5 if args.quick else 8)
    rounds = args.rounds or (2 if args.quick else 3)
    cancels = args.cancels or (3 if args.quick else 5)

    import diffusers
    import torch

    from studio.engine.jobs.events import Cancelled, Finished, Progress
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    diffusers.utils.logging.set_verbosity_error()
    os.environ["STUDIO_TAESD"] = str(taesd_folder())
    folder = sd15_folder(args.model)
    runner = Runner(device=args.device, dtype=args.dtype)

    def request(preview: str, n: int = steps, seed: int = 0) -> GenerateRequest:
        return GenerateRequest(
            model=str(folder), prompt="a photo of a cat", steps=n, width=size, height=size,
            seed=seed, scheduler="Euler a", preview=preview, preview_of="x0",
        )  # fmt: skip

    on_gpu = (args.device or "").startswith("cuda")

    def clock() -> float:
        # On a shared CPU, process CPU time (all torch threads) is far steadier than wall time;
        # on a GPU, wall time after a synchronize.
        if on_gpu:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def timed(preview: str, seed: int) -> list[float]:
        stamps: list[float] = []

        def emit(e):
            if isinstance(e, Progress) and e.step > 0 and not e.message:
                stamps.append(clock())

        final = runner.run(request(preview, seed=seed), emit=emit)
        if not isinstance(final, Finished):
            raise SystemExit(f"{preview}: {final}")
        return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]

    print(f"loading {folder} …", file=sys.stderr)
    t0 = time.perf_counter()
    timed("off", 0)  # load + warm up
    load_s = time.perf_counter() - t0
    modes = ["off", "latent", "taesd", "full"]
    per_step: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for m in order:
            per_step[m].extend(timed(m, seed=r))
            print(f"round {r + 1}/{rounds} {m}: done", file=sys.stderr)
    # min: interference from other processes only ever adds time.
    med = {m: min(v) for m, v in per_step.items()}

    # The preview work alone, repeated on a latent of this size: the same decoders the job
    # uses, so the overhead ratio is (step + preview) / step without the noise of whole runs.
    from studio.engine.diffusion.sd.sampling import preview_decoder
    from studio.engine.jobs.runner import JobContext

    pipe = next(p for p in runner._cache.values() if hasattr(p, "base")).base
    ctx = JobContext(0, lambda e: None, __import__("studio.core.cancel").core.cancel.CancelToken(),
                     runner)  # fmt: skip
    lat = torch.randn(1, 4, size // 8, size // 8, device=pipe.device, dtype=pipe.unet.dtype)
    iso: dict[str, float] = {"off": 0.0}
    for m in ("latent", "taesd", "full"):
        dec = preview_decoder(ctx, pipe, m)
        dec(lat)  # warm
        reps = 50 if m == "latent" else 10 if m == "taesd" else 2
        t = clock()
        for _ in range(reps):
            dec(lat)
        iso[m] = (clock() - t) / reps

    # Cancel latency: cancel at a random moment inside a random step from another thread.
    decodes = {"n": 0}
    decode = diffusers.AutoencoderKL.decode

    def counting(self, *a, **k):
        decodes["n"] += 1
        return decode(self, *a, **k)

    diffusers.AutoencoderKL.decode = counting
    rng = random.Random(1)
    after, delays, step_walls, decodes_after = [], [], [], 0
    n_cancel = max(steps, 8)
    for trial in range(cancels):
        target = rng.randint(1, n_cancel - 3)
        seen = {"step": 0, "t": 0.0, "wall": 0.0}
        reached = threading.Event()

        def emit(e, target=target, seen=seen, reached=reached):
            if isinstance(e, Progress) and not e.message:
                now = time.perf_counter()
                if seen["t"] and e.step > seen["step"]:
                    seen["wall"] = now - seen["t"]
                seen["step"], seen["t"] = e.step, now
                if e.step >= target and seen["wall"]:
                    reached.set()

        result: dict = {}

        def job_body(result=result, emit=emit):
            result["final"] = runner.run(request("latent", n_cancel), emit=emit)

        job = threading.Thread(target=job_body)
        job.start()
        reached.wait()
        time.sleep(rng.random() * 0.8 * seen["wall"])  # somewhere inside the next step
        step_at_cancel = seen["step"]
        before = decodes["n"]
        t_cancel = time.perf_counter()
        runner.cancel()
        job.join()
        delays.append(time.perf_counter() - t_cancel)
        step_walls.append(seen["wall"])
        final = result["final"]
        if not isinstance(final, Cancelled):
            raise SystemExit(f"cancel trial {trial}: ended with {type(final).__name__}")
        after.append(final.step - step_at_cancel)
        decodes_after += decodes["n"] - before
    diffusers.AutoencoderKL.decode = decode

    dev = (
        runner.device
        or os.environ.get("STUDIO_DEVICE")
        or ("cuda" if torch.cuda.is_available() else "cpu")
    )
    print(
        f"## Previews and cancel — SD1.5 architecture (random weights), {size}x{size}, "
        f"Euler a, {steps} steps, {rounds} rounds, device {dev}"
        f"{', ' + args.dtype if args.dtype else ''}\n"
    )
    print(f"Model load + first run: {load_s:.1f} s\n")
    unit = "GPU wall s" if on_gpu else "CPU s"
    print(
        f"| preview | best {unit}/step, whole runs | ratio vs off | preview alone ({unit}) "
        "| (step + preview) / step | target |"
    )
    print("|---|---:|---:|---:|---:|---|")
    targets = {"off": "", "latent": "<= 1.03", "taesd": "<= 1.15", "full": "(VAE decode)"}
    for m in modes:
        ratio = med[m] / med["off"]
        alone = (med["off"] + iso[m]) / med["off"]
        print(f"| {m} | {med[m]:.3f} | {ratio:.3f} | {iso[m]:.4f} | {alone:.3f} | {targets[m]} |")
    print()
    print("| cancel trials | steps completed after cancel (max) | mean time to stop | "
          "in steps (wall) | VAE decodes after cancel |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    mean_delay = statistics.mean(delays)
    as_steps = statistics.mean(d / w for d, w in zip(delays, step_walls, strict=True))
    print(
        f"| {cancels} | {max(after)} | {mean_delay * 1000:.0f} ms | "
        f"{as_steps:.2f} | {decodes_after} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
