"""``studio upscale``: GAN super-resolution (spandrel models) or Lanczos, headless.

    studio upscale --image I [--model FILE|ID | --method lanczos] [--scale N] [--tile PX]
                   [--overlap PX] [--sharpen A] [--device D] [--dtype T] --out OUT
    studio upscale --model FILE --info      # architecture, scale, fp16 support... as JSON

The output keeps the source image's metadata: its A1111 ``parameters`` text with
``Postprocess upscale by: N, Postprocess upscaler: NAME`` appended to the key/value line (the
same keys A1111's Extras tab writes, so A1111-compatible readers still parse the prompt), and
its ``studio`` JSON with an ``upscale`` record added.

This module imports no torch at import time (only when a job runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studio.cli import args as shared
from studio.cli.jobs import ProgressLine, execute
from studio.core.errors import BadInput, StudioError
from studio.core.metadata import append_parameters, append_studio_record


def upscale_parameters(
    source: str | None, scale: float, upscaler: str, size: tuple[int, int] | None = None
) -> str:
    """The A1111 ``parameters`` text of an upscaled image: the source's text with the
    upscale appended to its key/value line. Without source text it is that line alone, with
    the output ``Size`` as a third pair so readers parse it as parameters, not as a prompt."""
    extra = f"Postprocess upscale by: {scale:g}, Postprocess upscaler: {upscaler.replace(',', ' ')}"
    if (not source or not source.strip()) and size:
        extra += f", Size: {size[0]}x{size[1]}"
    return append_parameters(source, extra)


def upscale_studio_json(source: str | None, info: dict) -> dict:
    """The source's ``studio`` JSON (if any) with this upscale appended to ``upscales``."""
    return append_studio_record(source, "upscales", info)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "upscale",
        help="enlarge an image with a GAN upscaler (Real-ESRGAN, SwinIR, ...) or Lanczos",
        description="Enlarge an image with a super-resolution model loaded through spandrel "
        "(tiled, with feathered seams) or with Lanczos.",
    )
    p.add_argument("--image", help="input image")
    p.add_argument(
        "--model",
        default="",
        help="upscaler: a .safetensors/.pth/.pt/.ckpt file or an installed catalog id",
    )
    p.add_argument(
        "--method",
        choices=("model", "lanczos"),
        default=None,
        help="'lanczos' for the classical upscaler (no model); default: model if given",
    )
    p.add_argument("--scale", type=float, default=None, help="output scale (default: model's)")
    p.add_argument("--tile", type=int, default=0, help="tile size in px (default: automatic)")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in px (default 16)")
    p.add_argument(
        "--sharpen", type=float, default=0.0, help="lanczos: unsharp-mask amount (e.g. 0.5)"
    )
    shared.add_device(p)
    p.add_argument("--info", action="store_true", help="describe --model as JSON and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.add_argument("--out", help="output image (.png, .jpg, .webp)")
    p.set_defaults(func=run)


def _check_out(out: str) -> Path:
    from studio.core.imageio import SAVE_FORMATS

    path = Path(out)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise BadInput(f"{path.name}: unsupported output format (use .png, .jpg or .webp)")
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: output folder does not exist")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder")
    return path


def _pick_method(args: argparse.Namespace) -> tuple[str, str]:
    """(method, model). Without --model and --method, an installed upscaler if any, else
    Lanczos (said on stderr)."""
    if args.method == "lanczos":
        if args.model:
            raise BadInput("--model and --method lanczos exclude each other")
        return "lanczos", ""
    if args.model:
        return "model", args.model
    if args.method == "model":
        raise BadInput("--method model needs --model FILE or a catalog id")
    from studio.engine.restore import installed_upscalers

    found = installed_upscalers()
    if found:
        model_id = next(iter(found))
        if not args.quiet:
            print(f"studio: using installed upscaler {model_id}", file=sys.stderr)
        return "model", model_id
    if not args.quiet:
        print("studio: no upscaler model installed; using Lanczos", file=sys.stderr)
    return "lanczos", ""


def run(args: argparse.Namespace) -> int:
    if args.info:
        if not args.model:
            raise BadInput("--info needs --model")
        from studio.engine.restore import describe_upscaler

        print(json.dumps(describe_upscaler(args.model), indent=2))
        return 0
    if not args.image:
        raise BadInput("--image is required")
    if not args.out:
        raise BadInput("--out is required")
    if args.tile and args.tile < 32:
        raise BadInput(f"--tile {args.tile} is too small (at least 32, or 0 for automatic)")
    if args.scale is not None and not (0 < args.scale <= 16):
        raise BadInput(f"--scale {args.scale:g} is out of range (more than 0, at most 16)")
    if args.overlap < 0:
        raise BadInput("--overlap must be 0 or more")
    if args.sharpen < 0:
        raise BadInput("--sharpen must be 0 or more")
    out_path = _check_out(args.out)

    from studio.core.imageio import load_image, read_text_chunks, save_image

    image = load_image(args.image)  # first: a refused input is the only line on stderr
    try:
        chunks = read_text_chunks(args.image)
    except StudioError:
        chunks = {}
    method, model = _pick_method(args)

    scale = args.scale
    if scale is None:
        scale = 4.0 if method == "lanczos" else 0.0  # 0: the model's own scale (below)

    from studio.engine.jobs import Runner, UpscaleRequest

    runner = Runner(device=args.device, dtype=args.dtype)
    if scale == 0.0:
        from studio.engine.restore.upscale import load_upscaler, resolve_upscaler

        path = resolve_upscaler(model)
        descriptor = runner.cache(
            f"upscaler:{path}@{path.stat().st_mtime_ns}", lambda: load_upscaler(path)
        )
        scale = float(descriptor.scale)
    request = UpscaleRequest(
        image=image,
        model=model,
        method=method,
        scale=scale,
        tile=args.tile,
        overlap=args.overlap,
        sharpen=args.sharpen,
        device=args.device,
        dtype=args.dtype,
    )
    line = ProgressLine("upscale", quiet=args.quiet)
    final = execute(request, runner=runner, line=line)
    info = final.extra.get("upscale", {})
    upscaler = info.get("upscaler", "Lanczos")
    size = (int(final.images[0].shape[1]), int(final.images[0].shape[0]))
    parameters = upscale_parameters(chunks.get("parameters"), scale, upscaler, size)
    studio_json = upscale_studio_json(chunks.get("studio"), info)
    save_image(out_path, final.images[0], parameters=parameters, studio=studio_json)
    if not args.quiet:
        w, h = info.get("size", [final.images[0].shape[1], final.images[0].shape[0]])
        how = (
            f"{info.get('architecture')} x{info.get('model_scale')}, {info.get('dtype')}, "
            f"tile {info.get('tile')}"
            if method == "model"
            else "Lanczos"
        )
        print(f"studio: wrote {out_path} ({w}x{h}, {upscaler}: {how})", file=sys.stderr)
    return 0
