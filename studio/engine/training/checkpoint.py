"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a folder ``step-NNNNNN`` (in the run's ``checkpoints/`` folder, next to the
LoRA) holding:

- ``adapter.safetensors``: the LoRA's peft state (``get_peft_model_state_dict``, fp32, exact
  bits), loaded back with ``set_peft_model_state_dict`` as diffusers' DreamBooth script's
  ``load_model_hook`` does;
- ``optimizer.pt``: the optimizer's, the learning-rate schedule's and (fp16) the gradient
  scaler's state dicts (``torch.load(weights_only=True)`` reads them: tensors and numbers only);
- ``rng.pt`` / ``rng.json``: torch's CPU (and CUDA) generator states, numpy's and Python's;
- ``state.json``: the step, and the settings a resumed run must share with this one (model,
  images, rank, seed, ...; :func:`compatible` compares them).

A folder is written under a temporary name and renamed when complete, so a crash mid-save
leaves the previous checkpoint as the newest one. Only the newest ``keep`` are kept.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.core.errors import BadInput

FORMAT = 1
_NAME = re.compile(r"^step-(\d{6,})$")


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    step: int
    state: dict


def checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint under ``root``, oldest first."""
    if not root.is_dir():
        return []
    out = []
    for child in root.iterdir():
        m = _NAME.match(child.name)
        if m and child.is_dir() and (child / "state.json").is_file():
            out.append((int(m.group(1)), child))
    return sorted(out)


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The newest readable checkpoint under ``root`` (None when there is none)."""
    for step, folder in reversed(checkpoint_dirs(root)):
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return Checkpoint(folder, step, state)
    return None


def rng_states() -> tuple[dict, dict]:
    """(torch states for ``rng.pt``, numpy/Python states for ``rng.json``)."""
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    plain = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }
    return tensors, plain


def set_rng_states(tensors: dict, plain: dict) -> None:
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(tensors["cuda"])
    if "numpy" in plain:
        kind, keys, pos, has_gauss, gauss = plain["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "python" in plain:
        version, internal, gauss_next = plain["python"]
        random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(
    root: Path,
    step: int,
    adapter: dict,
    optimizer_state: dict,
    state: dict,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` under ``root`` (see the module docstring) and prune to the
    newest ``keep``. Returns its folder."""
    import safetensors.torch

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in adapter.items()}
        safetensors.torch.save_file(weights, str(tmp / "adapter.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        tensors, plain = rng_states()
        torch.save(tensors, tmp / "rng.pt")
        (tmp / "rng.json").write_text(json.dumps(plain), encoding="utf-8")
        full = {"format": FORMAT, **state, "step": int(step)}
        (tmp / "state.json").write_text(json.dumps(full, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _step, folder in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Checkpoint) -> tuple[dict, dict]:
    """(the adapter's peft state dict, the optimizer/schedule/scaler states) of ``ckpt``,
    with the RNG states restored."""
    import safetensors.torch

    folder = ckpt.folder
    try:
        adapter = safetensors.torch.load_file(str(folder / "adapter.safetensors"), device="cpu")
        # On the CPU: Optimizer.load_state_dict moves each state to its parameter's device
        # (and keeps Adam's step counts on the CPU, where non-capturable Adam wants them).
        opt = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        tensors = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
        plain = json.loads((folder / "rng.json").read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001 - a damaged checkpoint is one clear line
        raise BadInput(
            f"Checkpoint {folder.name} is damaged ({type(e).__name__}); delete {folder} to "
            "resume from the one before, or train without --resume"
        ) from e
    set_rng_states(tensors, plain)
    return adapter, opt


# The settings a resumed run must share with its checkpoint (the rest may change: more steps,
# another sample prompt, another output format).
MUST_MATCH = (
    "model",
    "images",
    "rank",
    "seed",
    "resolution",
    "batch_size",
    "lr",
    "lr_warmup",
    "prior_preservation",
    "prior_weight",
    "num_class_images",
    "optimizer",
    "mixed_precision",
    "prompts",
)


def compatible(saved: dict, now: dict) -> str | None:
    """None when a run with settings ``now`` can continue checkpoint ``saved``; else what
    differs, as one line."""
    if saved.get("format") != FORMAT:
        return f"it was written by another Studio version (format {saved.get('format')})"
    for key in MUST_MATCH:
        if saved.get(key) != now.get(key):
            if key in ("images", "prompts"):
                return f"the training {key} changed"
            return f"it was made with {key} {saved.get(key)!r}, this run has {now.get(key)!r}"
    return None
