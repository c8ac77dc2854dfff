"""Select by clicking: one SAM 2 image embedding against one click's decode.

    python benchmarks/bench_segment.py            # tiny model + full-size hiera-small config
    python benchmarks/bench_segment.py --quick    # tiny model only
    python benchmarks/bench_segment.py --json     # machine-readable

SAM 2 (Ravi et al. 2024) runs its image encoder once per image and only the prompt encoder
and mask decoder per click; a click must cost a small fraction of the embedding for
selection to feel live. Random weights (the timings do not depend on them): the tiny test
model (128 px input) and SAM 2.1 hiera-small's architecture at 1024 px, built in memory.
Reported: median ms of the embedding and of a one-point decode, and decode / embedding.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the tiny model only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench("tiny (test config)", False, 5, 20, args.device)]
    if not args.quick:
        rows.append(bench("sam2.1-hiera-small (random)", True, 3, 10, args.device))
    if args.json:
        print(json.dumps({"device": args.device, "rows": rows}, indent=2))
        return 0
    print(f"{'model':30} {'params':>8} {'input':>6} {'embed ms':>10} {'click ms':>10} {'ratio':>8}")
    for r in rows:
        print(
            f"{r['model']:30} {r['params_m']:>7}M {r['input']:>6} {r['embed_ms']:>10.1f} "
            f"{r['decode_ms']:>10.2f} {r['ratio']:>8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
