"""Speed settings for a loaded pipeline: regional ``torch.compile`` and channels-last.

Regional compilation compiles only the blocks a denoiser repeats (the transformer layers),
not the whole model: each distinct block class is traced once and the compiled code is
reused for every copy, so the compile time is a fraction of a whole-model compile while the
steps run at nearly the same speed (PyTorch recipe "Reducing torch.compile cold start
compilation time with regional compilation"; diffusers ``ModelMixin.compile_repeated_blocks``,
which reads the model class's ``_repeated_blocks``). Models whose class lists none (SD 3.5's
``SD3Transformer2DModel``) are compiled by their block class names here.

Channels-last (NHWC) memory layout speeds up the convolutions of the SD UNet and the VAEs on
tensor-core GPUs (cuDNN's preferred layout); it changes nothing for the flow transformers,
which have no convolutions in their blocks.

Compiled code is cached across runs: Inductor's FX-graph and autotune caches live under
``$STUDIO_HOME/cache/inductor`` (``TORCHINDUCTOR_CACHE_DIR``), so the second start of the
same model and size skips most of the compile.

The settings apply once per loaded model (a mark on each module records it); a pipeline under
sequential or group offload is not compiled, since its hooks move weights between devices
inside each block and every move would be a graph break. A LoRA applied later (its layers
wrap the compiled blocks' projections) makes the blocks recompile on the next image; a fused
LoRA only changes weights, which compiled code reads as inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from studio.core import paths

# Block classes to compile for denoisers whose class declares no ``_repeated_blocks``.
FALLBACK_BLOCKS: dict[str, tuple[str, ...]] = {
    "SD3Transformer2DModel": ("JointTransformerBlock",),
}
_MARK = "_studio_channels_last"
_COMPILED = "_studio_compiled"


@dataclass(frozen=True)
class SpeedSettings:
    """What to apply to a pipeline: ``compile`` the denoiser's repeated blocks, lay the
    convolutional parts out ``channels_last``."""

    compile: bool = False
    channels_last: bool = False

    @property
    def any(self) -> bool:
        """True when at least one setting is on."""
        return self.compile or self.channels_last


ENV_COMPILE = "STUDIO_COMPILE"
ENV_CHANNELS_LAST = "STUDIO_CHANNELS_LAST"


def settings_from_env(environ: Mapping[str, str] | None = None) -> SpeedSettings:
    """The engine-wide speed settings: ``STUDIO_COMPILE=1`` and ``STUDIO_CHANNELS_LAST=1``
    (set by ``studio generate --compile`` / ``--channels-last`` and by the app's Engine
    settings); anything but ``1``, ``true``, ``yes`` or ``on`` is off."""
    env = os.environ if environ is None else environ

    def on(name: str) -> bool:
        return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")

    return SpeedSettings(compile=on(ENV_COMPILE), channels_last=on(ENV_CHANNELS_LAST))


def inductor_cache_dir() -> str:
    """Inductor's cache folder for Studio (created on first use): ``$STUDIO_HOME/cache/inductor``
    unless the user set ``TORCHINDUCTOR_CACHE_DIR``."""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not chosen:
        chosen = str(paths.studio_home() / "cache" / "inductor")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = chosen
    os.makedirs(chosen, exist_ok=True)
    return chosen


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's denoiser: its ``transformer`` (flow families) or ``unet`` (SD)."""
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def block_names(model: Any) -> tuple[str, ...]:
    """The block classes that regional compilation compiles for ``model``."""
    declared = tuple(getattr(model, "_repeated_blocks", None) or ())
    return declared or FALLBACK_BLOCKS.get(type(model).__name__, ())


def compile_blocks(model: Any, **compile_kwargs: Any) -> int:
    """Compile every sub-module of ``model`` whose class is one of :func:`block_names`
    (``nn.Module.compile``, so the module keeps its parameters and hooks); returns how many
    were compiled (0 when the model has no repeated blocks)."""
    names = set(block_names(model))
    count = 0
    for sub in model.modules():
        if type(sub).__name__ in names:
            sub.compile(**compile_kwargs)
            count += 1
    return count


def apply_speed(
    pipe: Any,
    settings: SpeedSettings,
    *,
    offload: str = "none",
    weights: str = "bf16",
    device_type: str = "cuda",
    backend: str = "inductor",
) -> list[str]:
    """Apply ``settings`` to ``pipe``'s modules once (pipelines derived with ``from_pipe``
    share the modules, and so the marks); returns one line per thing done or declined, for the
    job's message. ``offload`` is the plan's offload mode (``none``, ``model``, ``group``,
    ``sequential``) and ``weights`` its storage (``bf16``, ``fp8``, ``nf4``, ``q8_0``, ...);
    ``device_type`` is where the denoiser runs (compile is declined on the CPU: Inductor's CPU
    code does not pay for these models); ``backend`` is ``torch.compile``'s (tests pass
    ``"eager"``). Compile is declined for stored-quantized weights too: their per-layer casts
    and dequantizing hooks are not verified under compile."""
    notes: list[str] = []
    if settings.channels_last:
        import torch

        parts = [getattr(pipe, name, None) for name in ("unet", "vae", "controlnet")]
        todo = [
            p for p in parts if p is not None and hasattr(p, "to") and not getattr(p, _MARK, False)
        ]
        for part in todo:
            part.to(memory_format=torch.channels_last)
            setattr(part, _MARK, True)
        if todo:
            notes.append("channels-last layout for the UNet and VAE")
    model = denoiser_of(pipe)
    if settings.compile and model is not None and not getattr(model, _COMPILED, False):
        if device_type == "cpu":
            notes.append("torch.compile is off on the CPU (it only pays on a GPU)")
        elif offload in ("group", "sequential"):
            notes.append(f"torch.compile is off under {offload} offload (its hooks break graphs)")
        elif weights not in ("bf16", "fp16"):
            notes.append(f"torch.compile is off for {weights} weights")
        elif not block_names(model):
            notes.append("torch.compile: this model has no repeated blocks to compile")
        else:
            inductor_cache_dir()
            count = compile_blocks(model, backend=backend, fullgraph=False, dynamic=False)
            notes.append(f"torch.compile: {count} blocks (the first image compiles them)")
        setattr(model, _COMPILED, True)  # declined stays declined for this loaded model
    return notes


def offload_mode(placement: str | None) -> str:
    """The offload mode of a placement label ("GPU", "model offload", ...; None on the CPU)."""
    if not placement or placement == "GPU":
        return "none"
    return placement.removesuffix(" offload")


def speed_up(ctx: Any, pipe: Any, *, offload: str, weights: str = "bf16") -> None:
    """Apply the engine-wide :func:`settings_from_env` to a job's pipeline and say what was
    done in the job's progress line (one message per line of :func:`apply_speed`)."""
    settings = settings_from_env()
    if not settings.any:
        return
    device = getattr(pipe, "device", None)
    notes = apply_speed(
        pipe, settings, offload=offload, weights=weights, device_type=getattr(device, "type", "cpu")
    )
    for note in notes:
        ctx.progress(getattr(ctx, "step", 0), getattr(ctx, "total", 0), note)
