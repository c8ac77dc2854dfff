"""``studio info IMAGE``: print an image's generation metadata as JSON.

Reads Studio's ``studio`` JSON chunk and the AUTOMATIC1111 ``parameters`` text (PNG text
chunk, or EXIF UserComment in JPEG/WebP), so images made by either tool work. An image with
no generation metadata prints ``{"source": null}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from studio.core.errors import BadInput


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="print an image's generation metadata as JSON",
        description="Print the generation parameters of an image made by Studio or AUTOMATIC1111.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--raw", action="store_true", help="print only the A1111 parameters text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from studio.core.metadata import format_parameters, read_metadata

    path = Path(args.image).expanduser()
    if _is_model(args.image, path):
        raise BadInput(
            f"{args.image}: a model, not an image; `studio plan {args.image}` shows how it "
            "fits the GPU (add --vram GIB for another card)"
        )
    if not path.exists():
        raise BadInput(f"{args.image}: no such file")
    if path.is_dir():
        raise BadInput(f"{args.image}: is a folder, not an image")
    info = read_metadata(path)
    if args.raw:
        text = info.get("parameters")
        if text is None and info.get("source"):
            text = format_parameters(info)
        print(text or "")
        return 0
    print(json.dumps(info, indent=2, ensure_ascii=False, default=str))
    return 0


def _is_model(ref: str, path: Path) -> bool:
    """A model folder or file, or a model Studio knows by name (catalog id, planner key)."""
    if path.is_dir():
        return (path / "model_index.json").exists()
    if path.suffix.lower() in (".safetensors", ".gguf", ".ckpt"):
        return True
    if path.exists():
        return False
    try:
        from studio.engine.diffusion import model_needs

        return model_needs(ref) is not None
    except Exception:  # noqa: BLE001 - not a model either: the image messages apply
        return False
