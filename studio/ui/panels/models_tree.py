"""The Models panel's tree: the catalog's models (installed and available), the imported
files and the models found in the user's folders, each group shown only when it has a row;
and what a scan found in a folder just added."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from studio.core.catalog import Catalog, format_size

ROLE_ID = Qt.ItemDataRole.UserRole
ROLE_IMPORTED = Qt.ItemDataRole.UserRole + 1
ROLE_FOUND = Qt.ItemDataRole.UserRole + 2  # the path of a model found in the user's folders
KIND_LABELS = {
    "txt2img": "generation",
    "inpaint": "inpainting",
    "controlnet-canny": "ControlNet (edges)",
    "controlnet-pose": "ControlNet (pose)",
    "controlnet-scribble": "ControlNet (scribble)",
    "controlnet-inpaint": "ControlNet (inpaint)",
    "preview-decoder": "preview decoder",
    "pose-detector": "pose detector",
    "lama": "LaMa",
    "lora": "LoRA",
    "embedding": "embedding",
    "vae": "VAE",
    "upscaler": "upscaler",
    "edit": "edit",
}


def fill(
    tree: QTreeWidget,
    catalog: Catalog,
    installed: dict[str, str],
    imported: Iterable,
    found: Iterable,
    mode: str,
    busy: set[str],
    current_id: Callable[[], str | None],
) -> None:
    """Fill ``tree`` again for the filter ``mode`` ("All", "Installed", "Available",
    "Starter set"), keeping the selected catalog rows selected. ``busy``: the ids queued or
    downloading; ``current_id()``: the one downloading now."""
    selected = {i.data(0, ROLE_ID) for i in tree.selectedItems()}
    tree.clear()
    groups = {
        "installed": QTreeWidgetItem(tree, ["Installed"]),
        "available": QTreeWidgetItem(tree, ["Available"]),
        "imported": QTreeWidgetItem(tree, ["Imported files"]),
        "found": QTreeWidgetItem(tree, ["In your folders"]),
    }
    for entry in catalog:
        is_installed = entry.id in installed
        if mode == "Installed" and not is_installed:
            continue
        if mode == "Available" and is_installed:
            continue
        if mode == "Starter set" and not entry.starter:
            continue
        if is_installed:
            status = "installed"
        elif entry.id in busy:
            status = "downloading" if current_id() == entry.id else "queued"
        else:
            status = "starter" if entry.starter else ""
        parent = groups["installed" if is_installed else "available"]
        item = QTreeWidgetItem(
            parent,
            [
                entry.name,
                entry.kind,
                "/".join(entry.bases) or "-",
                format_size(entry.size),
                entry.license,
                status,
            ],
        )
        item.setData(0, ROLE_ID, entry.id)
        tip = (
            f"{entry.name} ({entry.id})\n{entry.kind}, {'/'.join(entry.bases) or '-'}, "
            f"{entry.license}\n{entry.source}"
        )
        if entry.description:
            tip += f"\n{entry.description}"
        if is_installed:
            tip += f"\n{installed[entry.id]}"
        item.setToolTip(0, tip)
        item.setToolTip(4, entry.license)
        if entry.id in selected:
            item.setSelected(True)
    if mode in ("All", "Installed"):
        for rec in imported:
            item = QTreeWidgetItem(
                groups["imported"],
                [rec.name, rec.kind, rec.base or "-", format_size(rec.size), "", "imported"],
            )
            item.setData(0, ROLE_IMPORTED, rec.path)
            item.setToolTip(0, f"{rec.description}\n{rec.path}")
        for m in found:
            _found_row(groups["found"], m)
    for group in groups.values():
        group.setFlags(group.flags() & ~Qt.ItemFlag.ItemIsSelectable)
        group.setExpanded(True)
        group.setHidden(group.childCount() == 0)


def _found_row(group: QTreeWidgetItem, m) -> None:
    """The row of ``m`` (a ``scan.ModelFile`` in the user's folders): its size, kind and
    the folder it is in."""
    path = Path(m.path)
    try:
        size = format_size(path.stat().st_size) if path.is_file() else "-"
    except OSError:  # removed since the scan
        size = "-"
    where = path.parent.name or str(path.parent)
    kind = KIND_LABELS.get(m.kind, m.kind)
    item = QTreeWidgetItem(group, [m.name, kind, m.base or "-", size, "", f"in {where}"])
    item.setData(0, ROLE_FOUND, str(path))
    about = f"{m.description}\n" if m.description else ""
    item.setToolTip(0, f"{m.name}: {kind} model\n{about}{path}")
    item.setToolTip(5, str(path))


def folder_report(folder: str, found: Iterable, catalog: Catalog, installed: dict) -> str:
    """What the scan found in ``folder`` (the models found there and the catalog models
    installed there), or why nothing."""
    root = Path(folder)

    def inside(path: str | Path) -> bool:
        try:
            Path(path).resolve().relative_to(root.resolve())
            return True
        except (OSError, ValueError):
            return False

    names = [m.name for m in found if inside(m.path)]
    names += [catalog.get(i).name for i, p in installed.items() if inside(p)]
    if names:
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        return f"Found {len(names)} model{'s' if len(names) > 1 else ''} in {folder}: {shown}"
    return (
        f"No models found in {folder}. Studio looks for diffusers model folders (with "
        "a model_index.json), model files (.safetensors, .ckpt, .pth, …) and "
        "AUTOMATIC1111/ComfyUI folders (checkpoints/, loras/, ControlNet/, …)."
    )
