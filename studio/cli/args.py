"""The argument groups the CLI commands share, defined once so that the same option has the
same meaning and the same default in every command:

- sampling: ``--steps``/``--guidance``/``--scheduler`` default to the model's recommended
  values (the catalog's ``recommended`` table; turbo models 1 step, guidance 0), else 20
  steps, guidance 7 and the model's own scheduler; ``--schedule-type`` is A1111's "Schedule
  type" (ComfyUI's scheduler) for the sampler (``--scheduler 'DPM++ 2M SDE' --schedule-type
  exponential``; it wins over a schedule in the name); ``--seed`` defaults to a random 32-bit
  seed, recorded in the output's metadata;
- prompt: ``--prompt``, ``--negative``;
- preview: ``--preview`` (default: latent with ``--preview-dir``, else off), ``--preview-of``,
  ``--preview-dir``;
- device: ``--device``, ``--dtype`` (default: the best for the machine; ``STUDIO_DEVICE`` /
  ``STUDIO_DTYPE`` override it);
- memory: ``--quant`` (auto, bf16, fp8, q8_0, nf4, q4_k) and ``--offload`` (auto, none, model,
  group, sequential), the memory planner's overrides for the flow families (``auto``: the
  planner decides from the free VRAM; ``studio plan MODEL`` shows what it picks).

Each ``add_*`` adds a group to a parser; each ``resolve_*`` turns the parsed values into what
the request needs (after parsing, so a default that depends on the model is computed once the
model is known).
"""

from __future__ import annotations

import argparse
import secrets

from studio.core.errors import BadInput
from studio.engine.diffusion import OFFLOADS, WEIGHT_FORMATS

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.0
PREVIEW_MODES = ("latent", "taesd", "full", "off")
QUANTS = ("auto", *WEIGHT_FORMATS)
OFFLOAD_MODES = ("auto", *OFFLOADS)


def add_prompt(p: argparse.ArgumentParser, required: bool = True, what: str = "") -> None:
    suffix = f" ({what})" if what else ""
    if required:
        p.add_argument("--prompt", required=True, help="what to generate")
    else:
        p.add_argument("--prompt", default="", help="what to paint" + suffix)
    p.add_argument("--negative", default="", help="negative prompt" + suffix)


def add_sampling(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--steps", type=int, default=None,
        help=f"sampling steps (default: the model's recommended, else {DEFAULT_STEPS})",
    )  # fmt: skip
    g.add_argument(
        "--guidance", type=float, default=None,
        help=f"CFG scale (default: the model's recommended, else {DEFAULT_GUIDANCE:g})",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=int, default=None,
        help="seed (default: random; recorded in the output's metadata)",
    )  # fmt: skip
    g.add_argument(
        "--scheduler", default=None,
        help="sampler name, e.g. 'Euler a', 'DPM++ 2M Karras', ComfyUI's 'dpmpp_2m' "
        "(default: the model's)",
    )  # fmt: skip
    g.add_argument(
        "--schedule-type", default=None, metavar="NAME",
        help="A1111's schedule type (ComfyUI's scheduler) for --scheduler: automatic, uniform, "
        "karras, exponential, 'sgm uniform', simple, normal, ddim, beta",
    )  # fmt: skip


def add_preview(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("previews")
    g.add_argument(
        "--preview", choices=PREVIEW_MODES, default=None,
        help="preview decoder (default: latent with --preview-dir, else off)",
    )  # fmt: skip
    g.add_argument(
        "--preview-of", choices=("x0", "xt"), default="x0",
        help="preview the predicted clean image x0 (default) or the noisy x_t",
    )  # fmt: skip
    g.add_argument("--preview-dir", help="write every preview as step_NNN.png here")


def add_device(p: argparse.ArgumentParser, dtype: bool = True) -> None:
    g = p.add_argument_group("device")
    g.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    if dtype:
        g.add_argument(
            "--dtype", default=None,
            help="float16, bfloat16 or float32 (default: best for the device)",
        )  # fmt: skip


def add_model_extras(p: argparse.ArgumentParser) -> None:
    """``--vae`` (an external VAE) and ``--clip-skip`` (A1111's "Clip skip"), both SD options;
    they map to the requests' ``vae`` and ``clip_skip``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--vae", metavar="MODEL", default=None,
        help="external VAE: catalog id, folder or file (default: the model's own)",
    )  # fmt: skip
    g.add_argument(
        "--clip-skip", type=int, default=1, metavar="N",
        help="CLIP layers to skip, A1111 style: 1 = the last layer (default), 2 = one before",
    )  # fmt: skip


def add_memory(p: argparse.ArgumentParser) -> None:
    """``--quant`` and ``--offload``: the memory plan's overrides (GenerateRequest.quant /
    .offload; ``auto`` -> None, the planner decides). Case-insensitive; a bad value is one
    line and exit 2 (argparse's choices)."""
    from studio.engine.diffusion import quant_family_labels

    g = p.add_argument_group(f"memory ({quant_family_labels()})")
    g.add_argument(
        "--quant", type=str.lower, choices=QUANTS, default="auto",
        help="weights: bf16, fp8 (layerwise casting), q8_0/q4_k (a GGUF file), nf4 "
        "(bitsandbytes); default auto: what fits the free VRAM (see `studio plan`)",
    )  # fmt: skip
    g.add_argument(
        "--offload", type=str.lower, choices=OFFLOAD_MODES, default="auto",
        help="none (all on the GPU), model, group or sequential CPU offload (slowest); "
        "default auto: what fits",
    )  # fmt: skip


def resolve_memory(args: argparse.Namespace, family: str | None = None) -> dict:
    """``{"quant": ..., "offload": ...}`` for the request (``auto`` -> None). ``family``: the
    model's family name when known; the overrides are for the flow families, so giving one
    for an SD 1.x/2.x/SDXL model is refused (BadInput) instead of silently ignored."""
    quant = None if args.quant in (None, "auto") else args.quant
    offload = None if args.offload in (None, "auto") else args.offload
    if family and (quant or offload):
        from studio.engine.diffusion import family_label, is_flow_family, quant_family_labels

        if not is_flow_family(family):
            opt = f"--quant {quant}" if quant else f"--offload {offload}"
            raise BadInput(
                f"{opt}: {family_label(family)} models run in fp16 with the offload Studio "
                f"picks; --quant/--offload are for {quant_family_labels()} "
                "(STUDIO_OFFLOAD=model forces offload for SD models)"
            )
    return {"quant": quant, "offload": offload}


def random_seed() -> int:
    return secrets.randbelow(2**32)


def resolve_sampling(args: argparse.Namespace, model: str | None, rec: dict | None = None) -> dict:
    """steps, guidance, seed and scheduler (canonical name or None) for ``model`` (None: no
    diffusion model, the fallbacks apply); ``rec``: the model's recommended settings when the
    caller has them already. Raises BadInput for an unknown scheduler name."""
    canonical = None
    if model:
        from studio.engine.diffusion import canonical_name, recommended_settings

        rec = recommended_settings(model) if rec is None else rec
        canonical = canonical_name
    rec = rec or {}
    scheduler = args.scheduler
    schedule_type = getattr(args, "schedule_type", None)
    if scheduler is not None:
        if canonical is None:
            from studio.engine.diffusion import canonical_name as canonical
        scheduler = canonical(scheduler, schedule_type)
    elif rec.get("scheduler") and canonical is not None:
        try:
            scheduler = canonical(str(rec["scheduler"]))
        except BadInput:
            scheduler = None
        if schedule_type:  # the recommended sampler with the schedule asked for
            if scheduler is None:
                raise BadInput("--schedule-type needs --scheduler for this model")
            scheduler = canonical(scheduler, schedule_type)
    elif schedule_type:
        raise BadInput(
            "--schedule-type needs --scheduler (the model's own scheduler has no A1111 name)"
        )
    return {
        "steps": args.steps if args.steps is not None else int(rec.get("steps", DEFAULT_STEPS)),
        "guidance": (
            args.guidance
            if args.guidance is not None
            else float(rec.get("guidance", DEFAULT_GUIDANCE))
        ),
        "seed": args.seed if args.seed is not None else random_seed(),
        "scheduler": scheduler,
    }


def resolve_preview(args: argparse.Namespace) -> str:
    return args.preview or ("latent" if args.preview_dir else "off")
