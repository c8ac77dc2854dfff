"""``python -m studio``: the CLI (no arguments: the desktop app)."""

from studio.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
