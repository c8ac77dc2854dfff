"""Shared by the benchmark scripts (torch-free, so a benchmark can time torch's import)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def sd15_folder(explicit: str | None) -> Path:
    """An SD1.5-architecture pipeline with random weights, built once and cached (or the
    folder given)."""
    if explicit:
        return Path(explicit)
    cache = Path(
        os.environ.get("STUDIO_BENCH_CACHE") or Path(tempfile.gettempdir()) / "studio-bench"
    )
    folder = cache / "sd15-random"
    if not (folder / "model_index.json").exists():
        print(f"building the random SD1.5 pipeline in {folder} (once)…", file=sys.stderr)
        from studio.engine.fixtures.tiny_models import build_sd15_random

        build_sd15_random(folder)
    return folder
