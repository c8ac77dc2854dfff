"""Entry point of the frozen app: no arguments opens the window, anything else is the CLI."""

import multiprocessing
import os
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    # A windowed bundle has no console: sys.stdout/sys.stderr are None, and tqdm progress bars
    # (diffusers, huggingface_hub) would crash writing to them.
    if sys.stdout is None or sys.stderr is None:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("DIFFUSERS_PROGRESS_BAR", "0")
        os.environ.setdefault("TQDM_DISABLE", "1")
    from studio.cli import main

    sys.exit(main())
