"""Measure the walk of image jobs through Studio's modules, as they run.

Each job (txt2img on a tiny SD 1.x model, txt2img on a tiny FLUX.1 model, an SD inpaint) runs
through the public Runner with a profile hook that records every call into a ``studio``
module. A module is a *room* (the family descriptors together are one); the walk counts the rooms a job enters, how often it passes
from one room into another (*entries*), and how many of those entries go back into a room it
had already been in (*returns*). The models are built and loaded, and the handlers imported,
before the measured job, so the walk is the job's own, not the import's. Two steps per job,
so the per-step callbacks weigh little.

    python tools/job_walk.py            # a table
    python tools/job_walk.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PKG = ROOT / "studio"


def _room(filename: str) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(PKG).as_posix()
    except ValueError:
        return None
    # The descriptors are data the registry reads (each family's ``matches``): one room.
    return "engine/diffusion/families/" if rel.startswith("engine/diffusion/families/") else rel


def walk(run) -> dict:
    """Rooms, entries and returns of the studio calls made while ``run()`` runs."""
    seen: list[str] = []
    stack: list[str | None] = []
    entries = returns = 0

    def hook(frame, event, arg):
        nonlocal entries, returns
        if event == "call":
            room = _room(frame.f_code.co_filename)
            caller = next((r for r in reversed(stack) if r is not None), None)
            stack.append(room)
            if room is not None and room != caller and frame.f_code.co_name != "<module>":
                entries += 1
                if room in seen:
                    returns += 1
                else:
                    seen.append(room)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(hook)
    try:
        run()
    finally:
        sys.setprofile(None)
    return {"rooms": len(seen), "entries": entries, "returns": returns, "visited": seen}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from studio.engine.fixtures.tiny_flow_models import build_tiny_flux
    from studio.engine.fixtures.tiny_models import build_tiny_sd
    from studio.engine.jobs import Finished, GenerateRequest, InpaintRequest, Runner

    tmp = Path(tempfile.mkdtemp(prefix="studio-walk-"))
    sd, flux = build_tiny_sd(tmp / "sd"), build_tiny_flux(tmp / "flux")
    image = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    jobs = {
        "txt2img, SD 1.x": GenerateRequest(model=str(sd), prompt="a cat", steps=2, width=64,
                                           height=64, seed=1),
        "txt2img, FLUX.1": GenerateRequest(model=str(flux), prompt="a cat", steps=2, width=64,
                                           height=64, seed=1),
        "inpaint, SD 1.x": InpaintRequest(image=image, mask=mask, method="diffusion",
                                          model=str(sd), prompt="a cat", steps=2, padding=8),
    }  # fmt: skip
    runner = Runner(device="cpu")
    for request in jobs.values():  # load and import everything once
        assert isinstance(runner.run(request, emit=lambda e: None), Finished)
    out = {}
    for name, request in jobs.items():
        result: dict = {}

        def run(request=request, result=result):
            result["final"] = runner.run(request, emit=lambda e: None)

        out[name] = walk(run)
        assert isinstance(result["final"], Finished), result["final"]
    if args.json:
        print(
            json.dumps(
                {k: {x: v[x] for x in ("rooms", "entries", "returns")} for k, v in out.items()}
            )
        )
    else:
        print(f"{'job':<18} {'rooms':>6} {'entries':>8} {'returns':>8}")
        for name, v in out.items():
            print(f"{name:<18} {v['rooms']:>6} {v['entries']:>8} {v['returns']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
