"""Headless CLI: ``studio <command>``. A stable contract (see the README and docs/architecture.md).

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``func=run(args) -> int``. Exit codes: 0 done; 2 bad usage or bad input;
3 model missing or unloadable; 130 cancelled. No traceback ever reaches the user: errors are
one line on stderr (set ``STUDIO_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import importlib
import os
import sys
from functools import cache

from studio import __version__
from studio.core.errors import StudioError

COMMANDS = (
    "studio.cli.open_cmd",
    "studio.cli.generate_cmd",
    "studio.cli.inpaint_cmd",
    "studio.cli.upscale_cmd",
    "studio.cli.restore_cmd",
    "studio.cli.segment_cmd",
    "studio.cli.control_cmd",
    "studio.cli.info_cmd",
    "studio.cli.plan_cmd",
    "studio.cli.models_cmd",
    "studio.cli.train_cmd",
)


@cache
def _parser_class():
    """argparse that exits 2 with one line (not the whole usage) on bad arguments. Made on
    first use: `studio` without arguments starts the app without importing argparse."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            self.exit(2, f"studio: error: {message} (see `{self.prog} --help`)\n")

    return _Parser


def build_parser(only: str | None = None):
    """The CLI parser (an ``argparse.ArgumentParser``); with ``only`` (a command name) just
    that subcommand is imported, so `studio open` does not pay for importing every other
    command's module."""
    _Parser = _parser_class()
    parser = _Parser(prog="studio", description="Studio: generative image editor.")
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="build a tiny model and run generate, inpaint and upscale; print OK",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    modules = COMMANDS
    if only is not None and f"studio.cli.{only}_cmd" in COMMANDS:
        modules = (f"studio.cli.{only}_cmd",)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # the subcommand is not built yet
                continue
            raise
        module.register(sub)
    return parser


def error(message: str) -> None:
    # The contract is one line: a multi-line message (e.g. a library's exception text folded
    # into ours) is joined rather than spilled over several lines.
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"studio: error: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from studio.app import main as app_main

        return app_main([])
    try:
        parser = build_parser(only=argv[0] if not argv[0].startswith("-") else None)
        args = parser.parse_args(argv)
        if args.selftest:
            from studio.selftest import run_selftest

            return run_selftest()
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except StudioError as e:
        error(e.message)
        if os.environ.get("STUDIO_DEBUG") and e.detail:
            print(e.detail, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        error("cancelled")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        error(f"unexpected error: {type(e).__name__}: {e}")
        if os.environ.get("STUDIO_DEBUG"):
            import traceback

            traceback.print_exc()
        return 1
