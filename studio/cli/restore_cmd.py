"""``studio restore``: restore the faces of a photo (GFPGAN, RestoreFormer), headless.

    studio restore --image I [--model FILE|ID] [--strength S] [--detector yunet|FILE]
                   [--device D] --out OUT.png

Faces are found with YuNet, aligned to the FFHQ crop, restored at 512x512 and pasted back
(:mod:`studio.engine.restore.faces`). An image without faces is written unchanged (a note on
stderr). Exit codes: 2 bad input (image, strength, output path), 3 a model or the detector
missing, 130 cancelled. The output keeps the source's metadata with ``Face restoration:
NAME`` added to its A1111 ``parameters`` (AUTOMATIC1111's key) and a ``face_restorations``
record in its ``studio`` JSON.

This module imports no torch at import time (only when a job runs).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from studio.cli.jobs import ProgressLine, execute
from studio.core.errors import BadInput, StudioError
from studio.core.metadata import append_parameters, append_studio_record


def restore_parameters(source: str | None, model: str) -> str:
    """The source's A1111 ``parameters`` text with ``Face restoration: MODEL`` on its
    key/value line (a line of its own when the text has none)."""
    return append_parameters(source, f"Face restoration: {model.replace(',', ' ')}")


def restore_studio_json(source: str | None, info: dict) -> dict:
    """The source's ``studio`` JSON (if any) with this restoration appended."""
    return append_studio_record(source, "face_restorations", info)


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is out of range (0 to 1)")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "restore",
        help="restore the faces in a photo (GFPGAN, RestoreFormer)",
        description="Find faces (YuNet), restore each with a face restoration model loaded "
        "through spandrel (GFPGAN, RestoreFormer) and paste it back.",
    )
    p.add_argument("--image", help="input image")
    p.add_argument(
        "--model",
        default=None,
        help="face model: a .pth/.safetensors file, gfpgan-1.4 (default) or a RestoreFormer file",
    )
    p.add_argument(
        "--strength",
        type=_strength,
        default=1.0,
        help="0 keeps the original, 1 the restored face (default 1)",
    )
    p.add_argument(
        "--detector", default=None, help="face detector: yunet (default) or a YuNet .onnx file"
    )
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.add_argument("--out", help="output image (.png, .jpg, .webp)")
    p.set_defaults(func=run)


def _check_out(out: str | None) -> Path:
    from studio.core.imageio import SAVE_FORMATS

    if not out:
        raise BadInput("--out is required")
    path = Path(out)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise BadInput(f"{path.name}: unsupported output format (use .png, .jpg or .webp)")
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: output folder does not exist")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder")
    return path


def run(args: argparse.Namespace) -> int:
    if not args.image:
        raise BadInput("--image is required")
    out_path = _check_out(args.out)

    from studio.core.imageio import load_image, read_text_chunks, save_image

    image = load_image(args.image)
    try:
        chunks = read_text_chunks(args.image)
    except StudioError:
        chunks = {}

    from studio.engine.jobs import Runner
    from studio.engine.jobs.requests import RestoreFacesRequest

    runner = Runner(device=args.device)
    request = RestoreFacesRequest(
        image=image,
        model=args.model,
        strength=args.strength,
        device=args.device,
        detector=args.detector,
    )
    line = ProgressLine("restore", quiet=args.quiet)
    final = execute(request, runner=runner, line=line)
    info = dict(final.extra)
    name = info.get("model", "face restoration")
    parameters = (
        restore_parameters(chunks.get("parameters"), name)
        if info.get("restored")
        else (chunks.get("parameters") or None)
    )
    studio_json = restore_studio_json(chunks.get("studio"), info)
    save_image(out_path, final.images[0], parameters=parameters, studio=studio_json)
    if not args.quiet:
        h, w = final.images[0].shape[:2]
        found = len(info.get("faces", []))
        print(
            f"studio: wrote {out_path} ({w}x{h}, {info.get('restored', 0)} of {found} face(s) "
            f"restored with {name})",
            file=sys.stderr,
        )
    return 0
