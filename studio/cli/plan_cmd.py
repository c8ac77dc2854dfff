"""``studio plan MODEL``: the memory plan Studio would use for a model, without running it.

    studio plan MODEL [--vram GIB] [--ram GIB] [--size WxH] [--quant Q] [--offload O] [--json]
    studio plan --table [--vram 8,12,16,24]

The first line is the plan (``memory.Plan.describe``): where the weights live (GPU, model /
group / sequential offload), how they are stored (bf16, fp8, GGUF q8_0/q4_k, nf4), the
estimated peak against the free VRAM, and whether it fits. Then the device it was planned
for and the diffusers calls that realise it. Without ``--vram`` the free memory of this
machine's GPU is measured (torch); on a CPU-only machine there is no plan (float32 on the
CPU) and ``--vram`` shows what a card of that size would get. The numbers are the planner's
estimates (sizes from the models' repos, working memory estimated), not measurements.
Exit codes: 0 done (also when the plan does not fit: the line says so), 2 bad input, 3 model
unknown or not installed (and not a catalog model).
"""

from __future__ import annotations

import argparse
import json

from studio.cli import args as shared
from studio.core.errors import BadInput, ModelError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="show the memory plan (offload, quantization) for a model on this or a given GPU",
        description=(
            "Show how Studio would fit a model on the GPU: full GPU or model/group/sequential "
            "offload, bf16/fp8/GGUF/NF4 weights, the estimated peak VRAM. Nothing is loaded."
        ),
    )
    p.add_argument(
        "model", metavar="MODEL", nargs="?",
        help="catalog id (installed or not), HF repo id, folder, .safetensors or .gguf file",
    )  # fmt: skip
    p.add_argument(
        "--vram", metavar="GIB", default=None,
        help="plan for a card with this much free memory (GiB) instead of this machine's GPU; "
        "with --table a list, e.g. 8,12,16,24",
    )  # fmt: skip
    p.add_argument("--ram", type=float, metavar="GIB", help="system RAM to check offload against")
    p.add_argument("--size", help="WIDTHxHEIGHT of the job (default: the model's native size)")
    p.add_argument("--table", action="store_true", help="the plan table of every family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    shared.add_device(p, dtype=False)
    shared.add_memory(p)
    p.set_defaults(func=run)


def _gib(text: str, what: str = "--vram") -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{what} {text!r}: give the free memory in GiB, e.g. {what} 12") from None
    if not 0 < value <= 4096:
        raise BadInput(f"{what} {text!r}: must be between 0 and 4096 GiB")
    return value


def _table(args: argparse.Namespace) -> int:
    from studio.engine.diffusion import render_table

    cards = [_gib(c.strip()) for c in (args.vram or "8,12,16,24").split(",") if c.strip()]
    print(render_table(cards_gib=cards, ram_gib=args.ram))
    return 0


def _unknown(ref: str) -> None:
    """Raise the resolver's own message (not installed, no such folder), else say that the
    family can't be told without loading the model."""
    from studio.engine.diffusion.shared.loader import resolve_model

    resolved = resolve_model(ref)  # ModelError / BadInput with the reason
    raise ModelError(
        f"{resolved.name}: Studio can't tell this model's family without loading it, so it "
        "has no memory plan (it is planned when it loads)"
    )


def run(args: argparse.Namespace) -> int:
    if args.table:
        return _table(args)
    if not args.model:
        raise BadInput("give a MODEL (catalog id, repo id, folder or file), or --table")
    from studio.engine.diffusion import (
        device_memory,
        model_needs,
        plan_for_model,
        plan_line,
    )

    memory = shared.resolve_memory(args)
    pixels = None
    if args.size:
        from studio.cli.generate_cmd import parse_size

        w, h = parse_size(args.size)
        pixels = w * h
    found = model_needs(args.model)
    if found is None:
        _unknown(args.model)
    shared.resolve_memory(args, found.family)  # refuses --quant/--offload for SD families
    if args.vram is not None:
        free = _gib(args.vram)
        device = {"device": "cuda", "name": f"a {free:g} GiB card", "free_gib": free}
        where = f"a card with {free:g} GiB free (--vram)"
    else:
        device = device_memory(args.device)
        free = device.get("free_gib")
        where = device["name"] + (f", {free:.1f} GiB free" if free is not None else "")
    plan = plan_for_model(args.model, free, pixels, ram_gib=args.ram, **memory)
    line = plan.describe() if plan is not None else plan_line(None, device["device"])
    if args.json:
        out = {
            "model": args.model,
            "family": found.family,
            "label": found.needs.label,
            "device": device,
            "line": line,
            "plan": None,
        }
        if plan is not None:
            out["plan"] = {
                "offload": plan.offload,
                "weights": plan.weights,
                "text_weights": plan.text_weights,
                "vae_tiling": plan.vae_tiling,
                "peak_gib": plan.peak_gib,
                "budget_gib": plan.budget_gib,
                "ram_gib": plan.ram_gib,
                "fits": plan.fits,
                "forced": plan.forced,
                "notes": list(plan.notes),
                "calls": plan.pipeline_calls(),
            }
        print(json.dumps(out, indent=2))
        return 0
    if plan is None:
        print(f"{found.needs.label}: {plan_line(None, device['device'])}")
        why = "no GPU here" if device["device"] == "cpu" else f"{where}: free memory unknown"
        print(f"  ({why}; --vram GIB shows the plan for a card of that size)")
        return 0
    print(line)
    print(f"  planned for: {where}")
    for call in plan.pipeline_calls():
        print(f"  runs: {call}")
    return 0
