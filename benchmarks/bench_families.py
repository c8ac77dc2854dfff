"""Step time per flow family with previews off / latent / tiny decoder / full VAE (ratio vs
off), on the tiny random pipelines of studio.engine.fixtures.tiny_flow_models, through the
flow job handler (studio.engine.diffusion.flow.generate.run_flow_generate) users hit.

    python benchmarks/bench_families.py --quick     # 64 px, 4 steps, 2 rounds
    python benchmarks/bench_families.py             # 128 px, 6 steps, 3 rounds

Per-step time is the median gap between consecutive Progress events (it includes the preview
made for that step), in process CPU time (steadier than wall time on a shared CPU); modes run
interleaved, rotated each round. The tiny decoder is a random AutoencoderTiny with TAEF1's /
TAESD3's architecture (16 latent channels) for the families that have one (FLUX.1, Z-Image,
SD3); FLUX.2 (TAEF2 is not an AutoencoderTiny) and Qwen-Image (TAEW2.1) show "-" there.
Tiny models have tiny transformers, so preview costs weigh more here than on real ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILIES = ("flux1", "flux2", "zimage", "sd3", "qwen")
TINY_ENV = {"flux1": "STUDIO_TAEF1", "zimage": "STUDIO_TAEF1", "sd3": "STUDIO_TAESD3"}


def tiny_decoder_folder(cache: Path) -> Path:
    from diffusers import AutoencoderTiny

    folder = cache / "taef1-random"
    if not (folder / "config.json").exists():
        AutoencoderTiny(latent_channels=16).save_pretrained(folder)  # TAEF1/TAESD3 shape
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--families", default=",".join(FAMILIES))
    args = ap.parse_args(argv)
    size = args.size or (64 if args.quick else 128)
    steps = args.steps or (4 if args.quick else 6)
    rounds = args.rounds or (2 if args.quick else 3)

    import diffusers

    from studio.core.cancel import CancelToken
    from studio.engine.diffusion.flow.generate import run_flow_generate
    from studio.engine.fixtures.tiny_flow_models import build_all
    from studio.engine.jobs.events import Progress
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import JobContext, Runner

    diffusers.utils.logging.set_verbosity_error()
    cache = Path(
        os.environ.get("STUDIO_BENCH_CACHE") or Path(tempfile.gettempdir()) / "studio-bench"
    )
    models = build_all(cache / "flow")
    taef = tiny_decoder_folder(cache)
    for env in set(TINY_ENV.values()):
        os.environ[env] = str(taef)
    runner = Runner(device="cpu", dtype="float32")
    modes = ("off", "latent", "taesd", "full")

    def step_times(family: str, preview: str) -> list[float]:
        marks: list[float] = []

        def emit(ev):
            if isinstance(ev, Progress) and ev.step > 0:
                marks.append(time.process_time())

        ctx = JobContext(1, emit, CancelToken(), runner)
        req = GenerateRequest(
            prompt="a cat",
            model=str(models[family]),
            width=size,
            height=size,
            steps=steps,
            guidance=0.0,
            seed=0,
            preview=preview,
            device="cpu",
            dtype="float32",
        )
        start = time.process_time()
        run_flow_generate(ctx, req)
        return [b - a for a, b in zip([start, *marks[:-1]], marks, strict=True)][1:]

    print(f"size {size} px, {steps} steps, {rounds} rounds, CPU time per step (median)")
    print("| family | off (ms) | latent | tiny decoder | full VAE |")
    print("|---|---|---|---|---|")
    for family in [f for f in args.families.split(",") if f]:
        times: dict[str, list[float]] = {m: [] for m in modes}
        step_times(family, "off")  # warm-up: load and first call
        for r in range(rounds):
            for m in modes[r % len(modes) :] + modes[: r % len(modes)]:
                times[m] += step_times(family, m)
        med = {m: statistics.median(v) for m, v in times.items() if v}
        off = med["off"]

        def cell(m: str, med=med, off=off, family=family) -> str:
            if m == "taesd" and family not in TINY_ENV:
                return "-"
            return f"{med[m] / off:.2f}x"

        print(
            f"| {family} | {off * 1000:.1f} | {cell('latent')} | {cell('taesd')} | {cell('full')} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
