"""``python -m studio``: the CLI; with no arguments, the desktop app (straight to
``studio.app`` so the window's first paint does not wait for the CLI's imports)."""

import sys

if __name__ == "__main__":
    if len(sys.argv) <= 1:
        from studio.app import main
    else:
        from studio.cli import main
    raise SystemExit(main())
