"""Mutation testing of one module with mutmut 3: ``tools/mutation.sh NAME``.

A target (``targets/NAME.toml``) names the modules to mutate and the tests that guard them.
The run happens in a scratch copy of the checkout (mutmut writes ``mutants/`` beside the
sources and reads its settings from ``pyproject.toml``), so several targets can run at once
and the checkout is never touched. It prints one summary line, the surviving mutants and
their diffs (``survivors.diff`` in the scratch copy), and exits 1 when fewer than
``--min-killed`` percent of the mutants were killed.

Counting: killed and timeout are caught; survived, no tests and suspicious are not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TARGETS = Path(__file__).resolve().parent / "targets"
CAUGHT = {"killed", "timeout"}


def load_target(name: str) -> dict:
    path = TARGETS / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in TARGETS.glob("*.toml")))
        raise SystemExit(f"no mutation target {name!r}; known: {known}")
    target = tomllib.loads(path.read_text("utf-8"))
    for key in ("modules", "tests"):
        for rel in target[key]:
            if not (ROOT / rel).exists():
                raise SystemExit(f"{path.name}: {key} entry {rel} does not exist")
    return target


def copy_checkout(work: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a test run sees them."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    if work.exists():
        shutil.rmtree(work)
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the work tree but still tracked
        dst = work / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def configure(work: Path, target: dict) -> None:
    section = (
        "\n[tool.mutmut]\n"
        'source_paths = ["studio"]\n'
        f"only_mutate = {toml_list(target['modules'])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(target['tests'])}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        # The shipped data the package finds beside itself (catalog, configs, icons): mutmut
        # copies only the sources and the tests into its mutants/ folder.
        'also_copy = ["models", "resources"]\n'
        f"do_not_mutate_patterns = {toml_list(target.get('do_not_mutate_patterns', []))}\n"
    )
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text("utf-8") + section, "utf-8")


def results(work: Path, env: dict) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    status = {}
    for line in out.splitlines():
        name, sep, verdict = line.strip().rpartition(": ")
        if sep:
            status[name] = verdict
    return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/mutation.sh", description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a target in tools/mutation/targets (masks, metadata, ...)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--min-killed", type=float, default=90.0)
    ap.add_argument(
        "--work", type=Path, help="scratch folder (default: $TMPDIR/studio-mutation/NAME)"
    )
    args = ap.parse_args(argv)

    target = load_target(args.name)
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / "studio-mutation" / args.name
    copy_checkout(work)
    configure(work, target)
    # One intra-op thread: mutmut forks its workers from a process whose torch thread pool is
    # already running, and a forked child that runs a torch op then hangs — a survivor would
    # show up as a timeout (counted as caught).
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )  # fmt: skip
    env.pop("CI", None)  # a skip is a skip here; CI's skip-as-failure rule is for the suite
    log = work / "mutmut.log"
    with log.open("w") as fh:
        run = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs)],
            cwd=work,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    if run.returncode != 0:
        print(log.read_text("utf-8", "replace")[-4000:])
        print(f"mutmut failed (exit {run.returncode}); full log: {log}")
        return 2

    status = results(work, env)
    counts: dict[str, int] = {}
    for verdict in status.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    total = len(status)
    caught = sum(counts.get(v, 0) for v in CAUGHT)
    share = 100.0 * caught / total if total else 100.0
    missed = sorted(n for n, v in status.items() if v not in CAUGHT)
    with (work / "survivors.diff").open("w") as fh:
        for name in missed:
            shown = subprocess.run(
                [sys.executable, "-m", "mutmut", "show", name],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
            )
            fh.write(shown.stdout + "\n")
    for name in missed:
        print(f"  {status[name]:>10}  {name}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{args.name}: {total} mutants, {caught} caught ({share:.1f} %): {summary}")
    print(f"diffs of the {len(missed)} not caught: {work / 'survivors.diff'}")
    return 0 if share >= args.min_killed else 1


if __name__ == "__main__":
    sys.exit(main())
