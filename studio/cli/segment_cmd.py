"""``studio segment``: select a region by clicking (points, a box) or by words, as a mask.

    studio segment --image I [--point X,Y[:1|0]]... [--box X0,Y0,X1,Y1] [--model M] --out MASK
    studio segment --image I --text PHRASE [--model M] --out MASK

Points and the box are in image pixels; a point's label is 1 (inside, the default) or 0
(outside). SAM 2 (``--model``: a folder or ``sam2-hiera-small``, the default) makes the mask;
with ``--text`` Grounding DINO (the installed ``grounding-dino-tiny``) finds every instance
the phrase names and the mask unites them (or SAM 3 alone, when ``--model`` is a SAM 3
folder or ``sam3``). The mask is the image's size, white = selected.
Exit codes: 0 done, 2 bad input (a malformed value, a point or box outside the image), 3
model missing, 130 cancelled.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from studio.cli import args as shared
from studio.cli.jobs import ProgressLine, execute, quiet_libraries
from studio.core.errors import BadInput


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="select a region by clicks, a box or words (SAM 2, Grounding DINO) as a mask",
        description="Make a selection mask (white = selected, the image's size) from clicks "
        "and/or a box with SAM 2, or from a phrase with Grounding DINO + SAM 2.",
    )
    p.add_argument("--image", required=True, help="input image")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y[:1|0]",
        help="a click in pixels; :1 inside (default), :0 outside; repeat for more",
    )
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object, in pixels")
    p.add_argument("--text", metavar="PHRASE", help="select every instance of what this names")
    p.add_argument(
        "--model",
        help="a SAM 2 folder or sam2-hiera-small (default); for --text also a SAM 3 folder or sam3",
    )
    p.add_argument("--out", required=True, help="output mask (.png, .jpg, .webp)")
    shared.add_device(p, dtype=False)
    p.set_defaults(func=run)


def _numbers(text: str, n: int, what: str, example: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise BadInput(f"{what} {text!r}: expected {example}")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """``X,Y`` or ``X,Y:1`` (inside) / ``X,Y:0`` (outside) -> (x, y, label)."""
    coords, _, label = text.strip().partition(":")
    x, y = _numbers(coords, 2, "--point", "X,Y or X,Y:1 / X,Y:0, e.g. 120,80:1")
    if label.strip() not in ("", "0", "1"):
        raise BadInput(f"--point {text!r}: the label after ':' must be 1 (inside) or 0 (outside)")
    return x, y, int(label or 1)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``X0,Y0,X1,Y1`` -> (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = _numbers(text.strip(), 4, "--box", "X0,Y0,X1,Y1, e.g. 10,20,200,180")
    return x0, y0, x1, y1


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from studio.core.imageio import load_image, save_image
    from studio.engine.jobs import Runner
    from studio.engine.jobs.requests import SegmentRequest
    from studio.engine.vision.segment import check_prompt

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise BadInput(f"{out.name}: unsupported output format (use .png, .jpg or .webp)")
    if not out.parent.exists():
        raise BadInput(f"{out.parent}: output folder does not exist")
    points = tuple(parse_point(p) for p in args.point)
    box = parse_box(args.box) if args.box else None
    text = (args.text or "").strip() or None
    if args.text is not None and text is None:
        raise BadInput("--text is empty")
    if text and (points or box):
        raise BadInput("use --text or --point/--box, not both")
    if not text and not points and box is None:
        raise BadInput("give --point, --box or --text")
    image = load_image(args.image, "RGB")
    h, w = image.shape[:2]
    check_prompt(points, box, w, h)  # before loading any model: exit 2 without waiting
    request = SegmentRequest(image, points, box, text, args.model, args.device)
    quiet_libraries()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr carries only the one line of an error
    final = execute(
        request, runner=Runner(device=args.device), line=ProgressLine("segment", plain=False)
    )
    mask = np.zeros((h, w), np.uint8)
    for m in final.images:
        mask = np.maximum(mask, m)
    save_image(out, np.repeat(mask[..., None], 3, axis=2), studio={"segment": _meta(request)})
    n = final.extra.get("instances", len(final.images))
    what = f"{n} instance{'' if n == 1 else 's'} of {text!r}" if text else "selection"
    print(f"{out} ({what}, {(mask > 0).mean():.1%} selected)")
    return 0


def _meta(request) -> dict:
    return {
        "points": [list(p) for p in request.points],
        "box": list(request.box) if request.box is not None else None,
        "text": request.text,
    }
