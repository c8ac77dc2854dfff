"""Build the Studio bundle: `python installer/build.py [--console] [--no-archive]`.

Produces dist/studio/ (one-folder app; `dist/studio/studio --selftest` smoke-tests it) and an
archive for the platform (dist/studio-<version>-<platform>.tar.gz or .zip), and prints the
bundle size. Needs `pip install -e ".[bundle]"`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--console", action="store_true", help="console app (default: windowed)")
    parser.add_argument("--no-archive", action="store_true", help="skip the archive")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller")
    args = parser.parse_args(argv)
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        # A missing extra is one line and exit 2 (the CLI's contract), never a traceback.
        print(
            'build.py: error: building the bundle needs PyInstaller, the "bundle" extra: '
            'pip install -e ".[bundle]"',
            file=sys.stderr,
        )
        return 2

    env = dict(os.environ, STUDIO_WINDOWED="0" if args.console else "1")
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(ROOT / "installer" / "studio.spec"),
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(args.dist),
        "--workpath",
        str(args.work),
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    app = args.dist / "studio"
    # The portable models folder lives next to the executable, where users drop their models
    # (studio.core.paths looks there first in a bundle).
    bundled = app / "_internal" / "models"
    if bundled.is_dir() and not (app / "models").exists():
        shutil.move(str(bundled), str(app / "models"))
    size = folder_size(app)
    print(f"bundle: {app} ({size / 2**20:.0f} MiB)")

    if sys.platform.startswith("linux"):
        share = app / "share"
        share.mkdir(exist_ok=True)
        for f in [
            *(ROOT / "installer" / "linux").iterdir(),
            *(ROOT / "resources" / "desktop").iterdir(),
        ]:
            shutil.copy(f, share / f.name)
        shutil.copy(ROOT / "resources" / "icon.png", share / "icon.png")

    if not args.no_archive:
        from studio import __version__

        plat = f"{platform.system().lower()}-{platform.machine().lower()}"
        base = args.dist / f"studio-{__version__}-{plat}"
        fmt = "zip" if sys.platform == "win32" else "gztar"
        archive = shutil.make_archive(str(base), fmt, root_dir=args.dist, base_dir="studio")
        print(f"archive: {archive} ({Path(archive).stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
