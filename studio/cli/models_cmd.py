"""``studio models list | download | import | verify | remove``.

- ``list [--json] [--kind K] [--installed]``: the catalog with installed status, size and
  licence, plus imported files.
- ``download ID... [--yes]`` (or ``--starter``): asks on a terminal before downloading,
  showing the size; one updating progress line (bytes, speed, ETA); Ctrl+C cancels cleanly
  (exit 130) and a later run resumes.
- ``import FILE... [--link] [--name N]``: identify and copy into Studio's models folder.
- ``verify [ID]``: sha256 of installed files against the catalog (exit 3 on a mismatch).
- ``remove ID``: delete a downloaded catalog model or an imported file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from studio.cli.jobs import ProgressLine, ctrl_c_cancels, execute
from studio.core.cancel import CancelToken
from studio.core.catalog import format_size, load_catalog
from studio.core.errors import BadInput, ModelError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list, download, import and verify models",
        description="Manage models: the catalog, downloads, imported files.",
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")

    ls = sub.add_parser("list", help="catalog models with installed status, and imported files")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--kind", help="only this kind (e.g. txt2img, upscaler, lora)")
    ls.add_argument("--installed", action="store_true", help="only installed models")
    ls.set_defaults(func=run_list)

    dl = sub.add_parser("download", help="download catalog models (asks first on a terminal)")
    dl.add_argument("ids", nargs="*", metavar="ID", help="catalog ids (see `studio models list`)")
    dl.add_argument("--starter", action="store_true", help="the starter set")
    dl.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    dl.set_defaults(func=run_download)

    im = sub.add_parser("import", help="identify a model file and add it to Studio's models")
    im.add_argument("files", nargs="+", metavar="FILE")
    im.add_argument("--link", action="store_true", help="link instead of copying")
    im.add_argument("--name", help="store under this name (one file only)")
    im.add_argument("--force", action="store_true", help="replace an imported file of that name")
    im.add_argument("--json", action="store_true", help="machine-readable output")
    im.set_defaults(func=run_import)

    ve = sub.add_parser("verify", help="check installed files against the catalog's sha256")
    ve.add_argument("id", nargs="?", metavar="ID", help="one model (default: all installed)")
    ve.set_defaults(func=run_verify)

    rm = sub.add_parser("remove", help="delete a downloaded or imported model")
    rm.add_argument("id", metavar="ID_OR_NAME")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(func=run_remove)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:  # the contract's name; dispatches by action
    return int(args.func(args) or 0)


# -- list ------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from studio.engine.models import importer, store

    catalog = load_catalog()
    rows = []
    for entry in catalog:
        if args.kind and entry.kind != args.kind:
            continue
        path = store.find_installed(entry)
        if args.installed and path is None:
            continue
        rows.append(
            {
                "id": entry.id,
                "name": entry.name,
                "kind": entry.kind,
                "base": list(entry.bases),
                "size": entry.size,
                "license": entry.license,
                "source": entry.source,
                "starter": entry.starter,
                "optional": entry.optional,
                "installed": path is not None,
                "path": str(path) if path else None,
                "recommended": dict(entry.recommended),
            }
        )
    imported = [r for r in importer.list_imported() if not args.kind or r.kind == args.kind]
    from studio.engine.models.scan import folder_models

    known = {r["path"] for r in rows} | {r.path for r in importer.list_imported()}
    dropped = [m for m in folder_models(args.kind or ()) if str(m.path) not in known]
    if args.json:
        out = {
            "models": rows,
            "imported": [
                {
                    "name": r.name,
                    "path": r.path,
                    "kind": r.kind,
                    "base": r.base,
                    "description": r.description,
                    "size": r.size,
                }
                for r in imported
            ],
            "found": [{"name": m.name, "path": str(m.path), "kind": m.kind} for m in dropped],
            "models_dir": str(store.models_dir()),
            "hf_cache": str(store.hf_cache_dir()),
            "offline": store.offline_mode(),
        }
        print(json.dumps(out, indent=2))
        return 0
    if rows:
        w_id = max(len(r["id"]) for r in rows)
        w_kind = max(len(r["kind"]) for r in rows)
        print(f"{'ID':<{w_id}}  {'KIND':<{w_kind}}  {'BASE':<8}  {'SIZE':>9}  STATUS     LICENSE")
        for r in rows:
            status = "installed" if r["installed"] else ("starter" if r["starter"] else "-")
            base = "/".join(r["base"]) or "-"
            print(
                f"{r['id']:<{w_id}}  {r['kind']:<{w_kind}}  {base:<8}  "
                f"{format_size(r['size']):>9}  {status:<9}  {r['license']}"
            )
    elif not imported and not dropped:
        print("No models match.")
    if imported:
        print("\nImported:")
        for r in imported:
            print(
                f"  {r.name}  [{r.kind}{'/' + r.base if r.base else ''}]  "
                f"{format_size(r.size)}  {r.description}"
            )
    if dropped:
        print("\nIn the model folders:")
        for m in dropped:
            print(f"  {m.name}  [{m.kind}{'/' + m.base if m.base else ''}]  {m.path}")
    return 0


# -- download --------------------------------------------------------------------------------


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run_download(args: argparse.Namespace) -> int:
    from studio.engine.models import download, store

    catalog = load_catalog()
    entries = [catalog.require(i) for i in args.ids]
    if args.starter:
        entries += [e for e in catalog.starter_set() if e not in entries]
    if not entries:
        raise BadInput("Name at least one model id (or --starter); see `studio models list`")
    todo = [e for e in entries if store.find_installed(e) is None]
    for e in entries:
        if e not in todo:
            print(f"{e.id}: already installed at {store.find_installed(e)}")
    if not todo:
        return 0
    download.ensure_online(", ".join(e.id for e in todo))
    total = sum(e.size for e in todo)
    if not args.yes and sys.stdin.isatty():
        lines = [f"  {e.id:<22} {format_size(e.size):>9}  {e.license}" for e in todo]
        print("Studio will download:\n" + "\n".join(lines))
        if not _confirm(f"Total {format_size(total)}. Continue? [y/N] "):
            print("Nothing downloaded.")
            return 1
    from studio.engine.jobs import DownloadRequest, Runner

    runner = Runner()  # one job at a time; Ctrl+C cancels, the .part file stays for resume
    for e in todo:
        final = execute(DownloadRequest(e.id), runner=runner, line=ProgressLine(e.id))
        print(f"{e.id}: installed at {final.extra['path']}")
    return 0


# -- import ----------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    from studio.engine.jobs import ImportModelRequest, Runner

    if args.name and len(args.files) > 1:
        raise BadInput("--name works with one file only")
    runner = Runner()
    results = []
    for f in args.files:
        request = ImportModelRequest(f, link=args.link, name=args.name, overwrite=args.force)
        # plain=False: a script reading stderr (or --json's stdout) sees no progress text
        final = execute(request, runner=runner, line=ProgressLine("import", plain=False))
        rec = final.extra["imported"]
        results.append(rec)
        if not args.json:
            print(f"{os.path.basename(f)}: {rec.description} -> {rec.path}")
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "path": r.path,
                        "kind": r.kind,
                        "base": r.base,
                        "description": r.description,
                        "format": r.format,
                        "details": r.details,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


# -- verify / remove -------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from studio.engine.models import download, store

    catalog = load_catalog()
    if args.id:
        entry = catalog.require(args.id)
        if store.find_installed(entry) is None:
            raise ModelError(
                f"{entry.id} is not installed: run `studio models download {entry.id}`"
            )
        entries = [entry]
    else:
        entries = [e for e in catalog if store.find_installed(e) is not None]
        if not entries:
            print("No catalog models are installed.")
            return 0
    token = CancelToken()
    bad = []
    with ctrl_c_cancels(token.cancel):  # the .part file stays for resume
        for entry in entries:
            for r in download.verify(entry, token=token):
                status = {True: "ok", False: "FAILED", None: "-"}[r.ok]
                print(f"{entry.id}: {status}  {r.message}  {r.file}")
                if r.ok is False:
                    bad.append(entry.id)
    if bad:
        raise ModelError(
            f"Checksum mismatch for {', '.join(sorted(set(bad)))}: remove and download again"
        )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from studio.engine.models import importer, store

    catalog = load_catalog()
    entry = catalog.get(args.id)
    if entry is not None:
        path = store.find_installed(entry)
        if path is None:
            raise ModelError(f"{entry.id} is not installed")
        if not args.yes and sys.stdin.isatty():
            if not _confirm(f"Delete {entry.id} ({path})? [y/N] "):
                return 1
        freed = store.remove(entry)
        print(f"{entry.id}: removed ({format_size(freed)} freed)")
        return 0
    freed = importer.remove_imported(args.id)
    print(f"{args.id}: removed ({format_size(freed)} freed)")
    return 0
