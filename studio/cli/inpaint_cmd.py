"""``studio inpaint``: remove or replace what a mask covers, or outpaint (extend the canvas).

    studio inpaint --image I --mask M [--method auto|lama|telea|ns|MODEL] [--prompt P]
                   [--padding PX] [--feather PX] --out OUT
    studio inpaint --image I --outpaint left=128,right=128 [--overlap PX] [...] --out OUT
    studio inpaint --image I --outpaint 16:9 [...] --out OUT

``--method``: ``telea`` / ``ns`` (OpenCV, offline, no download), ``lama`` (the installed
big-lama, or ``--lama FILE``), ``auto`` (the default: LaMa if installed, else Telea), or any
Stable Diffusion model (catalog id, Hugging Face repo id, diffusers folder or checkpoint file),
which fills the mask from ``--prompt``. Exit codes: 0 done, 2 bad input (e.g. a mask whose
size differs from the image), 3 model missing or unloadable, 130 cancelled (Ctrl+C).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.cli import args as shared
from studio.cli.jobs import ProgressLine, execute, preview_folder
from studio.core.errors import BadInput

BUILTIN_METHODS = ("auto", "lama", "telea", "ns")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inpaint",
        help="remove/replace the masked area, or outpaint (extend the canvas)",
        description=(
            "Inpaint the white area of --mask (OpenCV Telea/NS, LaMa or a Stable Diffusion "
            "model), working on the mask's padded crop; or extend the canvas with --outpaint."
        ),
    )
    p.add_argument("--image", required=True, help="input image")
    p.add_argument("--mask", help="mask image, same size as --image: white = regenerate")
    p.add_argument(
        "--method",
        default="auto",
        help="auto (LaMa if installed, else Telea), lama, telea, ns, or an SD model "
        "(catalog id, repo id, folder or file) to fill from --prompt",
    )
    p.add_argument("--lama", metavar="FILE", help="LaMa model file (implies --method lama)")
    shared.add_prompt(p, required=False, what="SD models")
    shared.add_sampling(p)
    p.add_argument("--strength", type=float, default=1.0, help="1.0 = repaint fully (SD)")
    p.add_argument(
        "--padding", type=int, default=32, help="context px around the mask (default 32)"
    )
    p.add_argument(
        "--feather",
        type=int,
        default=8,
        help="soft edge of the paste-back, px (pixels over twice this far from the mask stay exactly as they were)",
    )
    p.add_argument(
        "--outpaint",
        metavar="SPEC",
        help="extend the canvas instead of using --mask: left=N,right=N,top=N,bottom=N "
        "(also x=N, y=N, all=N) or an aspect ratio such as 16:9",
    )
    p.add_argument(
        "--overlap", type=int, default=32, help="outpaint: px of the old image redrawn at the seam"
    )
    shared.add_model_extras(p)
    shared.add_preview(p)
    shared.add_device(p)
    p.add_argument("--out", required=True, help="output image (.png, .jpg, .webp)")
    p.set_defaults(func=run)


def build_request(args: argparse.Namespace, image, mask):
    """The InpaintRequest for parsed ``args`` (method/model resolution included)."""
    from studio.engine.jobs import InpaintRequest

    method, model = args.method.strip(), ""
    if args.lama:
        if method not in ("auto", "lama"):
            raise BadInput("--lama goes with --method lama (or no --method)")
        method, model = "lama", args.lama
    elif method.lower() in BUILTIN_METHODS:
        method = method.lower()
    else:
        method, model = "diffusion", method
    sampling = shared.resolve_sampling(args, model if method == "diffusion" else None)
    return InpaintRequest(
        image=image,
        mask=mask,
        method=method,
        model=model,
        prompt=args.prompt,
        negative_prompt=args.negative,
        steps=sampling["steps"],
        guidance=sampling["guidance"],
        strength=args.strength,
        seed=sampling["seed"],
        padding=args.padding,
        feather=args.feather,
        scheduler=sampling["scheduler"],
        preview=shared.resolve_preview(args),
        preview_of=args.preview_of,
        device=args.device,
        dtype=args.dtype,
        vae=args.vae,
        clip_skip=args.clip_skip,
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from studio.core.imageio import load_image, load_mask, save_image
    from studio.core.metadata import format_parameters
    from studio.core.outpaint import parse_extension

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise BadInput(f"{out.name}: unsupported output format (use .png, .jpg or .webp)")
    if not out.parent.exists():
        raise BadInput(f"{out.parent}: output folder does not exist")
    if args.mask and args.outpaint:
        raise BadInput("use --mask or --outpaint, not both")
    if not args.mask and not args.outpaint:
        raise BadInput("--mask is required (or --outpaint to extend the canvas)")
    if not 0 <= args.overlap <= 1024:
        raise BadInput("--overlap must be between 0 and 1024 px")
    image = load_image(args.image)
    h, w = image.shape[:2]
    ext = None
    if args.outpaint:
        ext = parse_extension(args.outpaint, (w, h))
        mask = np.zeros((h, w), np.uint8)  # replaced by the outpaint mask
    else:
        mask = load_mask(args.mask, size=(w, h))
    request = build_request(args, image, mask)
    preview_dir = preview_folder(args.preview_dir)

    from studio.engine.jobs import Runner

    runner = Runner(device=args.device, dtype=args.dtype)
    line = ProgressLine("inpaint", plain=False)
    if ext is not None:
        # One job per pass (left/right, then top/bottom), each on the previous result.
        from dataclasses import replace

        from studio.engine.diffusion import outpaint_request

        jobs = [(step, outpaint_request) for step in ext.passes()]
    else:
        jobs = [(None, None)]
    final = None
    for step, make in jobs:
        if make is not None:
            source = final.images[0] if final is not None else image
            request = make(replace(request, image=source), step, overlap=args.overlap)
        final = execute(request, runner=runner, line=line, preview_dir=preview_dir)
    result, meta = final.images[0], (final.metadata[0] if final.metadata else {})
    save_image(out, result, parameters=format_parameters(meta), studio=meta)
    if request.method == "diffusion" and not args.prompt:
        # Said after the job, so a refused input still gets exactly one line on stderr.
        print("studio: note: no --prompt; the model filled the mask unguided", file=sys.stderr)
    print(f"{out} ({final.extra.get('method', request.method)}, {final.seconds:.1f} s)")
    return 0
