"""Training presets and request validation (torch-free, so the CLI and the UI can check a
request before a model loads).

The 12 GB preset is what lets an SDXL LoRA train on a 12 GB card (the settings the diffusers
DreamBooth-LoRA SDXL README and kohya-ss sd-scripts recommend for that size): the frozen
weights in half precision with the LoRA in fp32 (mixed precision), gradient checkpointing (Chen
et al. 2016: activations recomputed in the backward pass instead of stored), VAE latents and
text embeddings computed once so the VAE and text encoders leave the GPU, batch size 1, 8-bit
AdamW (Dettmers et al. 2022) when bitsandbytes is installed, and a rank of at most 32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from studio.core.errors import BadInput

if TYPE_CHECKING:
    from studio.engine.jobs.requests import TrainLoraRequest

PRESETS: dict[str, dict] = {
    "12gb": {
        "gradient_checkpointing": True,
        "cache_latents": True,
        "cache_text": True,
        "batch_size": 1,
        "optimizer": "adamw8bit",
        "mixed_precision": None,  # half precision on a GPU (bf16 where native, else fp16)
        "max_rank": 32,
    },
}
OPTIMIZERS = ("adamw", "adamw8bit")
MIXED_PRECISION = ("no", "fp16", "bf16")
SAVE_FORMATS = ("diffusers", "kohya")
MAX_STEPS = 100_000
MAX_RANK = 256


def apply_preset(request: TrainLoraRequest) -> TrainLoraRequest:
    """``request`` with its preset's settings applied (the request itself when it has none).
    BadInput for an unknown preset name."""
    name = (request.preset or "").strip().lower()
    if not name:
        return request
    preset = PRESETS.get(name)
    if preset is None:
        raise BadInput(f"Unknown training preset {request.preset!r} (use {', '.join(PRESETS)})")
    changes = {k: v for k, v in preset.items() if k != "max_rank"}
    if "max_rank" in preset:
        changes["rank"] = min(int(request.rank), int(preset["max_rank"]))
    return dataclasses.replace(request, preset=None, **changes)


def validate_request(request: TrainLoraRequest) -> None:
    """BadInput in one line for a value no training run can use (before any model loads)."""
    trigger = (request.trigger or "").strip()
    if not trigger:
        raise BadInput("--trigger: give the word that will stand for the subject (e.g. sks)")
    if "\n" in trigger or len(trigger) > 100:
        raise BadInput("--trigger: one short word or phrase on one line")
    if not request.images:
        raise BadInput("No training images given (at least 1 is needed)")

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise BadInput(message)

    need(1 <= int(request.steps) <= MAX_STEPS, f"--steps must be 1..{MAX_STEPS}")
    need(1 <= int(request.rank) <= MAX_RANK, f"--rank must be 1..{MAX_RANK}")
    lr = float(request.lr)
    need(math.isfinite(lr) and 0 < lr < 1, "--lr must be between 0 and 1 (e.g. 1e-4)")
    if request.resolution is not None:
        need(64 <= int(request.resolution) <= 4096, "--resolution must be 64..4096 pixels")
    need(int(request.batch_size) >= 1, "--batch-size must be at least 1")
    need(int(request.sample_every) >= 0, "--sample-every must be 0 (never) or more")
    need(int(request.checkpoint_every) >= 0, "--checkpoint-every must be 0 (never) or more")
    need(1 <= int(request.sample_steps) <= 500, "--sample-steps must be 1..500")
    need(int(request.lr_warmup) >= 0, "--lr-warmup must be 0 or more")
    need(float(request.max_grad_norm) > 0, "--max-grad-norm must be positive")
    need(
        request.optimizer in OPTIMIZERS,
        f"Unknown optimizer {request.optimizer!r} (use {', '.join(OPTIMIZERS)})",
    )
    need(
        request.mixed_precision is None or request.mixed_precision in MIXED_PRECISION,
        f"Unknown mixed precision {request.mixed_precision!r} (use {', '.join(MIXED_PRECISION)})",
    )
    need(
        request.save_format in SAVE_FORMATS,
        f"Unknown LoRA format {request.save_format!r} (use {', '.join(SAVE_FORMATS)})",
    )
    if request.prior_preservation:
        need(
            bool((request.class_prompt or "").strip()),
            "Prior preservation needs a class prompt (--class-prompt, e.g. 'a photo of a dog')",
        )
        need(int(request.num_class_images) >= 1, "--class-images must be at least 1")
        need(float(request.prior_weight) >= 0, "--prior-weight must be 0 or more")
