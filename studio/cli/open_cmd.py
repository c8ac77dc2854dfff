"""``studio open IMAGE...``: open the desktop app with images or a .studio project."""

from __future__ import annotations

import argparse
from pathlib import Path

from studio.core.errors import BadInput


def register(subparsers) -> None:
    p = subparsers.add_parser("open", help="open the desktop app with images or a project")
    p.add_argument("files", nargs="+", metavar="FILE", help="images or .studio projects")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not Path(f).exists()]
    if missing:
        raise BadInput(f"{missing[0]}: no such file")
    from studio.app import main

    return main([str(Path(f).resolve()) for f in args.files])
