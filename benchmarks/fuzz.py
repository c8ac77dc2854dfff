"""Long fuzz run (hypothesis) of every parser that reads user files: image loader, A1111
parameters parser, .studio project loader, model catalog parser.

    python benchmarks/fuzz.py                 # 10,000 examples each
    python benchmarks/fuzz.py --examples 500  # quicker (run_all.py uses --quick = 1,000)

Prints a table: target, examples, failures, seconds. Exit 1 if any target failed (the
failing input is printed by hypothesis).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.reliability import fuzz_targets as ft  # noqa: E402

TARGETS = {
    "image loader": (ft.image_inputs, ft.image_loader),
    "A1111 parameters parser": (ft.parameters_texts(), ft.parameters_parser),
    "project file loader": (ft.project_files(), ft.project_loader),
    "catalog parser": (ft.catalog_texts(), ft.catalog_parser),
}


def run(name: str, examples: int) -> tuple[int, float, str]:
    strategy, target = TARGETS[name]
    count = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def check(value):
        nonlocal count
        count += 1
        target(value)

    t0 = time.perf_counter()
    try:
        check()
        err = ""
    except Exception as e:  # noqa: BLE001 - report it in the table
        err = f"{type(e).__name__}: {e}".splitlines()[0]
        traceback.print_exc()
    return count, time.perf_counter() - t0, err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 examples each")
    args = parser.parse_args(argv)
    n = 1_000 if args.quick else args.examples
    print("| target | examples run | failures | seconds |")
    print("|---|---:|---:|---:|")
    failed = 0
    for name in TARGETS:
        count, secs, err = run(name, n)
        failed += bool(err)
        print(
            f"| {name} | {count} | {1 if err else 0}{' (' + err + ')' if err else ''} | {secs:.1f} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
