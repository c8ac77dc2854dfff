"""The Generate panel's memory-plan controls: the Weights (quant) and Offload combos of the
Advanced group. "Auto" (data "") lets the planner (``studio.engine.diffusion.shared.memory``) decide
from the free VRAM; a weight format whose package is not installed (NF4 without bitsandbytes,
GGUF without gguf) is listed but disabled, with the reason as its tooltip."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox

from studio.engine import diffusion

# State names whose change changes the plan line (GenerateModel's properties + "device").
PLAN_NAMES = frozenset({"model", "width", "height", "quant", "offload", "device"})

QUANT_ITEMS = (
    ("", "Auto", "What fits the free VRAM (the plan line shows it)"),
    ("bf16", "bf16", "Full precision weights: best quality, most memory"),
    ("fp8", "fp8", "Weights stored in 8 bits, computed in bf16: half the memory"),
    ("q8_0", "GGUF Q8_0", "Load a Q8_0 .gguf transformer file (about half the memory)"),
    ("nf4", "NF4 4-bit", "bitsandbytes 4-bit NormalFloat: about a quarter of the memory"),
    ("q4_k", "GGUF Q4_K", "Load a Q4_K .gguf transformer file (about a third of the memory)"),
)
OFFLOAD_ITEMS = (
    ("", "Auto", "What fits the free VRAM (the plan line shows it)"),
    ("none", "None (all on GPU)", "Everything on the GPU: fastest, most memory"),
    ("model", "Model offload", "One component on the GPU at a time (text encoders, then "
     "the transformer, then the VAE)"),
    ("group", "Group offload", "Transformer blocks streamed to the GPU, two at a time"),
    ("sequential", "Sequential", "One layer at a time: least memory, slowest"),
)  # fmt: skip
_PACKAGE = {"q8_0": "gguf", "q4_k": "gguf", "nf4": "bitsandbytes"}


def _fill(combo: QComboBox, items) -> None:
    combo.clear()
    for data, label, tip in items:
        combo.addItem(label, data)
        combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)


def fill_quant_combo(combo: QComboBox, formats: frozenset[str] | None = None) -> None:
    """The Weights combo; ``formats``: what this installation can load (default
    ``available_formats()``); the others are disabled."""
    _fill(combo, QUANT_ITEMS)
    try:
        formats = diffusion.available_formats() if formats is None else formats
    except Exception:  # noqa: BLE001 - unknown: leave every item enabled
        formats = None
    model = combo.model()
    for i, (data, _label, tip) in enumerate(QUANT_ITEMS):
        if data and formats is not None and data not in formats:
            item = model.item(i)
            item.setEnabled(False)
            item.setToolTip(f"{tip}. Needs the {_PACKAGE.get(data, data)} package.")
    combo.setToolTip(
        f"Weights of the flow models ({diffusion.quant_family_labels()}): smaller formats fit "
        "smaller cards at some quality cost"
    )


def fill_offload_combo(combo: QComboBox) -> None:
    _fill(combo, OFFLOAD_ITEMS)
    combo.setToolTip(
        "Where the weights live: on the GPU, or in RAM and moved to the GPU as needed "
        "(slower, needs less VRAM)"
    )


def show_plan(panel) -> None:
    """The plan line of a ``generate.GeneratePanel``, the Weights/Offload rows only where
    they apply (flow models), and the Sampler only where it does (not the flow models)."""
    text, tip = panel.state.plan_text()
    panel.plan_label.setText(text)
    panel.plan_label.setToolTip(tip)
    panel.plan_label.setProperty("fits", "does NOT fit" not in text)
    flow = panel.state.is_flow()
    panel.advanced_form.setRowVisible(panel.quant_combo, flow)
    panel.advanced_form.setRowVisible(panel.offload_combo, flow)
    # The flow families sample with their own flow-matching Euler scheduler.
    panel.scheduler.setEnabled(not flow)
    panel.scheduler.setToolTip(
        "This model samples with its own flow-matching Euler scheduler"
        if flow
        else "The sampler (A1111 and ComfyUI names are accepted in pasted parameters)"
    )
