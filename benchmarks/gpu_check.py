"""GPU check: full-size models with random weights through Studio's own job path, under every
plan the memory planner offers for 8 / 12 / 16 / 24 GiB cards, with a LoRA, each preview mode
and a cancel; steps/s, s/image, peak allocated memory against the planner's estimate, and
whether the same seed gives the same pixels under different plans.

    python benchmarks/gpu_check.py --cpu-smoke --out DIR   # tiny fixtures on the CPU (seconds)
    python benchmarks/gpu_check.py --quick --out DIR       # a subset, ~8 min on one H100
    python benchmarks/gpu_check.py --part 1/3 --out DIR    # the whole matrix in 3 parts
    python benchmarks/gpu_check.py --bare --out DIR        # Studio vs a bare diffusers call

Models (``--models``): SD 1.5, SDXL, FLUX.1 schnell / dev, FLUX.2 klein 4B / 9B, Z-Image
Turbo, SD 3.5 Medium / Large, Qwen-Image. Each is built directly on the GPU in bf16 (fp16 for
the UNet families) from the configs shipped in models/configs/<id>/ where there are some, else
from diffusers' class defaults or the published config values typed in below (the built
parameter count is recorded next to the planner's size). Tokenizers are Studio's small local
ones (no vocabulary download; random weights make the prompt meaningless anyway).

How a job runs: the model's configs are written to a folder (no weights), the in-memory
pipeline is handed to the loader (``flow.load.adopt_flow`` / ``pipeline.adopt_pipeline``:
planned for the card's free memory, placed by Studio's ``apply_plan``), and a GenerateRequest
for that folder goes through ``Runner.run`` like a CLI or canvas job. A card is emulated with
``torch.cuda.set_per_process_memory_fraction`` (the planner is told the card's size; the
fraction makes an over-optimistic estimate fail with out-of-memory instead of passing). The
weights are rebuilt from the same seed for every plan (fp8 casting and offload hooks change a
model for good), so equal pixels across plans compare like with like.

Per plan: steps/s (Progress events), s/image (the job's wall time), peak allocated GiB (after
``reset_peak_memory_stats``) vs the planned peak, ok / the error. Per model, once: a random
LoRA (on the first plan and on an fp8 plan), each preview mode (latent, taesd with a random
AutoencoderTiny where the family has one, full), a cancel at step 1 (time to Cancelled).
``--bare`` times the same in-memory model and settings called directly
(``pipe(prompt, ..., generator)``) against Studio's job (ratio Studio / bare): SD 1.5 512^2
fp16 20 steps, SDXL 1024^2 20 steps, FLUX.1 schnell 1024^2 4 steps, whole on the GPU; then
Studio's job again with its speed settings (``STUDIO_COMPILE=1``: regional torch.compile;
``STUDIO_CHANNELS_LAST=1`` for the SD families), after two warm-up images that compile it.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``. ``--cpu-smoke`` runs the same
code on the tiny random pipelines of studio.engine.fixtures (FLUX.1, SD 1.5) on the CPU:
no cards are emulated there, and forced fp8 / model-offload plans stand in for the planner's
GPU choices (offloading is a no-op on the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GIB = 2**30
CARDS = (8, 12, 16, 24)
PREVIEWS = ("latent", "taesd", "full")
PROMPT = "a photo of a cat"


# -- the models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One model: planner row / folder name, Studio family, native size, steps, guidance."""

    key: str
    family: str
    size: int
    steps: int
    guidance: float
    sd: bool = False  # a UNet family (the SD job path and planner)


SPECS = {
    s.key: s
    for s in (
        Spec("sd15", "sd1", 512, 20, 7.0, sd=True),
        Spec("sdxl", "sdxl", 1024, 20, 7.0, sd=True),
        Spec("flux1-schnell", "flux1", 1024, 4, 0.0),
        Spec("flux1-dev", "flux1", 1024, 20, 3.5),
        Spec("flux2-klein-4b", "flux2", 1024, 4, 1.0),
        Spec("flux2-klein-9b", "flux2", 1024, 4, 1.0),
        Spec("z-image-turbo", "zimage", 1024, 8, 0.0),
        Spec("sd35-medium", "sd3", 1024, 20, 4.5),
        Spec("sd35-large", "sd3", 1024, 20, 4.5),
        Spec("qwen-image", "qwen", 1328, 20, 4.0),
    )
}
# --quick: (model, cards, extras) that fit ~8 minutes on one H100 (steps cut to 4).
QUICK = (("sd15", (8,), False), ("sdxl", (8, 12), False), ("flux1-schnell", (8, 24), True))
QUICK_STEPS = 4
BARE = (("sd15", 512, 20), ("sdxl", 1024, 20), ("flux1-schnell", 1024, 4))

# Published configs typed in where models/configs/ has none (google/t5-v1_1-xxl,
# black-forest-labs FLUX.1 / SD 3.5 VAEs, FLUX.2 klein, SD 3.5 Medium, Qwen3, Qwen2.5-VL-7B).
T5_XXL = dict(
    d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
    feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
)  # fmt: skip
KL16_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2, norm_num_groups=32, sample_size=1024, use_quant_conv=False,
    use_post_quant_conv=False, force_upcast=True,
)  # fmt: skip
FLUX_VAE = dict(KL16_VAE, scaling_factor=0.3611, shift_factor=0.1159)
SD3_VAE = dict(KL16_VAE, scaling_factor=1.5305, shift_factor=0.0609)
KLEIN = {
    "flux2-klein-4b": dict(num_layers=5, num_single_layers=20, num_attention_heads=24,
                           joint_attention_dim=7680),
    "flux2-klein-9b": dict(num_layers=8, num_single_layers=24, num_attention_heads=32,
                           joint_attention_dim=12288),
}  # fmt: skip
KLEIN_COMMON = dict(
    patch_size=1, in_channels=128, attention_head_dim=128, timestep_guidance_channels=256,
    mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, guidance_embeds=False,
)  # fmt: skip
SD35_MEDIUM = dict(
    sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
    pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)), qk_norm="rms_norm",
)  # fmt: skip
QWEN3 = {  # Qwen/Qwen3-4B (FLUX.2 klein 4B, Z-Image), Qwen/Qwen3-8B (klein 9B)
    "4b": dict(hidden_size=2560, intermediate_size=9728, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=12288, tie_word_embeddings=False),
}
QWEN3_COMMON = dict(
    num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    vocab_size=151936, max_position_embeddings=40960, rope_theta=1000000.0,
)  # fmt: skip
QWEN25_VL_7B = dict(
    text_config=dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
        rope_theta=1000000.0,
        rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
    ),
    vision_config=dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31], in_chans=3,
    ),
    vocab_size=152064, tie_word_embeddings=False,
)  # fmt: skip
SCHEDULERS = {
    "flux1-schnell": dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False),
    "flux1-dev": dict(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
    ),
    "flux2": dict(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
    ),
    "zimage": dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False),
    "sd3": dict(num_train_timesteps=1000, shift=3.0),
    "qwen": dict(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
        time_shift_type="exponential",
    ),
}  # fmt: skip


@contextlib.contextmanager
def building(device: str, dtype):
    """New tensors on ``device`` in ``dtype`` (weights are created where they run)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def _configs(*parts) -> dict:
    from studio.core.paths import configs_dir

    return json.loads(configs_dir().joinpath(*parts).read_text())


def _clip(tok_dir: Path, config_dir: tuple[str, str], projection: bool = False, proj_dim=None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.core.paths import configs_dir

    cfg = CLIPTextConfig.from_pretrained(configs_dir() / config_dir[0] / config_dir[1])
    if proj_dim:
        cfg.projection_dim = proj_dim
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _tokenizers(folder: Path):
    from transformers import CLIPTokenizer

    from studio.engine.fixtures.tiny_flow_models import write_qwen_tokenizer, write_t5_tokenizer
    from studio.engine.fixtures.tiny_models import write_tokenizer

    write_tokenizer(folder / "tok-clip")
    return SimpleTok(
        clip=CLIPTokenizer.from_pretrained(folder / "tok-clip"),
        t5=write_t5_tokenizer(folder / "tok-t5"),
        qwen=write_qwen_tokenizer(folder / "tok-qwen"),
    )


@dataclass
class SimpleTok:
    clip: object
    t5: object
    qwen: object


def build_full(spec: Spec, work: Path, device: str):
    """The full-size pipeline of ``spec`` with random weights, built on ``device``."""
    import diffusers
    import torch
    import transformers

    dtype = torch.float16 if spec.sd else torch.bfloat16
    tok = _tokenizers(work)
    torch.manual_seed(0)  # the same weights for every plan
    # Schedulers keep their tables on the CPU: made outside the GPU context.
    folder = "sd15" if spec.key == "sd15" else "sdxl"
    if spec.sd:
        index = _configs(folder, "model_index.json")
        sched = getattr(diffusers, index["scheduler"][1]).from_config(
            _configs(folder, "scheduler", "scheduler_config.json")
        )
    else:
        sched = diffusers.FlowMatchEulerDiscreteScheduler(
            **SCHEDULERS.get(spec.key, SCHEDULERS.get(spec.family, {}))
        )
    with building(device, dtype):
        if spec.sd:
            parts = {"scheduler": sched}
            for name, (lib, cls) in ((k, v) for k, v in index.items() if isinstance(v, list)):
                if lib is None or name in ("safety_checker", "feature_extractor", "scheduler"):
                    continue
                if name.startswith("tokenizer"):
                    parts[name] = tok.clip
                elif name.startswith("text_encoder"):
                    parts[name] = _clip(work, (folder, name), projection="Projection" in cls)
                else:
                    parts[name] = getattr(diffusers, cls).from_config(
                        _configs(folder, name, "config.json")
                    )
            if spec.key == "sd15":
                parts.update(safety_checker=None, feature_extractor=None)
                parts["requires_safety_checker"] = False
            return getattr(diffusers, index["_class_name"])(**parts)
        if spec.family == "flux1":
            return diffusers.FluxPipeline(
                scheduler=sched,
                vae=diffusers.AutoencoderKL(**FLUX_VAE),
                text_encoder=_clip(work, ("sd15", "text_encoder")),
                tokenizer=tok.clip,
                text_encoder_2=transformers.T5EncoderModel(transformers.T5Config(**T5_XXL)),
                tokenizer_2=tok.t5,
                transformer=diffusers.FluxTransformer2DModel.from_config(
                    _configs(spec.key, "transformer", "config.json")
                ),
            )
        if spec.family == "flux2":
            size = "4b" if spec.key.endswith("4b") else "8b"
            te = transformers.Qwen3ForCausalLM(
                transformers.Qwen3Config(**QWEN3_COMMON, **QWEN3[size])
            )
            return diffusers.Flux2KleinPipeline(
                scheduler=sched,
                vae=diffusers.AutoencoderKLFlux2(),
                text_encoder=te,
                tokenizer=tok.qwen,
                transformer=diffusers.Flux2Transformer2DModel(**KLEIN_COMMON, **KLEIN[spec.key]),
                is_distilled=True,
            )
        if spec.family == "zimage":
            te = transformers.Qwen3Model(transformers.Qwen3Config(**QWEN3_COMMON, **QWEN3["4b"]))
            return diffusers.ZImagePipeline(
                scheduler=sched,
                vae=diffusers.AutoencoderKL(**FLUX_VAE),
                text_encoder=te,
                tokenizer=tok.qwen,
                transformer=diffusers.ZImageTransformer2DModel(),
            )
        if spec.family == "sd3":
            if spec.key == "sd35-large":
                tr_cfg = _configs("sd35-large", "transformer", "config.json")
                transformer = diffusers.SD3Transformer2DModel.from_config(tr_cfg)
            else:
                transformer = diffusers.SD3Transformer2DModel(**SD35_MEDIUM)
            return diffusers.StableDiffusion3Pipeline(
                scheduler=sched,
                vae=diffusers.AutoencoderKL(**SD3_VAE),
                text_encoder=_clip(work, ("sd15", "text_encoder"), True, proj_dim=768),
                tokenizer=tok.clip,
                text_encoder_2=_clip(work, ("sdxl", "text_encoder_2"), True),
                tokenizer_2=tok.clip,
                text_encoder_3=transformers.T5EncoderModel(transformers.T5Config(**T5_XXL)),
                tokenizer_3=tok.t5,
                transformer=transformer,
                image_encoder=None,
                feature_extractor=None,
            )
        if spec.family == "qwen":
            te = transformers.Qwen2_5_VLForConditionalGeneration(
                transformers.Qwen2_5_VLConfig(**QWEN25_VL_7B)
            ).eval()
            return diffusers.QwenImagePipeline(
                scheduler=sched,
                vae=diffusers.AutoencoderKLQwenImage(),
                text_encoder=te,
                tokenizer=tok.qwen,
                transformer=diffusers.QwenImageTransformer2DModel.from_config(
                    _configs("qwen-image", "transformer", "config.json")
                ),
            )
    raise ValueError(f"no builder for {spec.key}")


def write_config_folder(pipe, folder: Path) -> Path:
    """``model_index.json`` and every component's config (no weights): what Studio's
    recognition, planner and cache key read from a model folder."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(folder)
    for name, comp in pipe.components.items():
        if comp is None or isinstance(comp, (bool, str, int, float)):
            continue
        sub = folder / name
        if hasattr(comp, "save_config"):  # diffusers models and schedulers
            comp.save_config(sub)
        elif isinstance(comp, torch.nn.Module):  # transformers models
            comp.config.save_pretrained(sub)
        elif hasattr(comp, "save_pretrained"):  # tokenizers
            comp.save_pretrained(sub)
    return folder


def build_tiny(spec: Spec, work: Path, device: str):
    """``--cpu-smoke``: the tiny fixture of the family, loaded in memory (float32)."""
    from diffusers import DiffusionPipeline

    from studio.engine.fixtures import tiny_flow_models, tiny_models

    folder = work / f"tiny-{spec.key}"
    if not (folder / "model_index.json").exists():
        if spec.sd:
            tiny_models.build_tiny_sd(folder)
        else:
            tiny_flow_models.build_tiny_flux(folder)
    return DiffusionPipeline.from_pretrained(folder, local_files_only=True), folder


# -- measuring one job --------------------------------------------------------------------------


@dataclass
class Run:
    model: str
    kind: str  # plan | lora | preview | cancel | bare | studio
    card_gib: float | None = None
    plan: str = ""
    offload: str = ""
    weights: str = ""
    text_weights: str = ""
    plan_peak_gib: float | None = None
    plan_fits: bool | None = None
    preview: str = "off"
    ok: bool = False
    status: str = ""
    error: str = ""
    steps: int = 0
    steps_per_s: float | None = None
    s_per_image: float | None = None
    peak_gib: float | None = None
    within_plan: bool | None = None
    image_sha1: str = ""
    same_seed_same_pixels: bool | None = None
    lora_changes_pixels: bool | None = None
    cancel_s: float | None = None
    notes: list = field(default_factory=list)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _free_all(runner) -> None:
    import torch

    runner.clear_cache()
    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)


def emulate_card(card_gib: float | None) -> None:
    """Cap this process's CUDA allocations at ``card_gib`` (None: the whole card)."""
    import torch

    if not _cuda():
        return
    total = torch.cuda.get_device_properties(0).total_memory
    frac = 1.0 if card_gib is None else min(1.0, card_gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(frac)


def run_job(runner, request, run: Run, cancel_at: int | None = None):
    """Run ``request`` through ``runner`` and fill ``run`` with what was measured; returns the
    final event."""
    import torch

    from studio.core.cancel import CancelToken
    from studio.engine.jobs.events import Cancelled, Finished, Progress

    token = CancelToken()
    stamps: dict[int, float] = {}
    cancelled_at: list[float] = []

    def emit(ev):
        if isinstance(ev, Progress) and ev.step >= 1 and ev.step not in stamps:
            stamps[ev.step] = time.perf_counter()
            if cancel_at is not None and ev.step >= cancel_at and not cancelled_at:
                cancelled_at.append(time.perf_counter())
                token.cancel()

    if _cuda():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    final = runner.run(request, emit=emit, token=token)
    wall = time.perf_counter() - t0
    run.status = type(final).__name__
    run.steps = len(stamps)
    if len(stamps) >= 2:
        first, last = min(stamps), max(stamps)
        span = stamps[last] - stamps[first]
        run.steps_per_s = round((last - first) / span, 3) if span > 0 else None
    if _cuda():
        run.peak_gib = round(torch.cuda.max_memory_allocated() / GIB, 2)
        if run.plan_peak_gib is not None:
            run.within_plan = run.peak_gib <= run.plan_peak_gib
    if isinstance(final, Finished):
        run.ok = cancel_at is None
        run.s_per_image = round(wall / max(1, len(final.images)), 3)
        run.image_sha1 = hashlib.sha1(final.images[0].tobytes()).hexdigest()[:16]
    elif isinstance(final, Cancelled):
        run.ok = cancel_at is not None
        if cancelled_at:
            run.cancel_s = round(time.perf_counter() - cancelled_at[0], 3)
    else:
        run.error = getattr(final, "message", str(final))[:300]
    return final


def random_lora(pipe, spec: Spec, out: Path, rank: int = 4) -> Path:
    """A random LoRA on the denoiser's attention q/k/v, saved as the pipeline class saves
    one (``save_lora_weights``), so it loads like a downloaded file."""
    import torch

    denoiser = "unet" if spec.sd else "transformer"
    module = getattr(pipe, denoiser)
    gen = torch.Generator().manual_seed(1)
    state = {}
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v"):
            a = torch.randn(rank, m.in_features, generator=gen) / m.in_features**0.5
            b = torch.randn(m.out_features, rank, generator=gen) * 0.5
            state[f"{name}.lora_A.weight"] = a.to(torch.bfloat16)
            state[f"{name}.lora_B.weight"] = b.to(torch.bfloat16)
    out.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(
        out.parent, **{f"{denoiser}_lora_layers": state}, weight_name=out.name,
        safe_serialization=True,
    )  # fmt: skip
    return out


def tiny_decoder(spec: Spec, work: Path) -> str | None:
    """A random AutoencoderTiny for the family's preview env variable (None: none exists)."""
    from diffusers import AutoencoderTiny

    from studio.engine.diffusion.families.registry import family

    fam = family(spec.family)
    if not fam.preview_env or fam.latent_channels not in (4, 16):
        return None
    folder = work / f"taesd-{fam.latent_channels}"
    if not (folder / "config.json").exists():
        AutoencoderTiny(latent_channels=fam.latent_channels).save_pretrained(folder)
    os.environ[fam.preview_env] = str(folder)
    return fam.preview_env


# -- one model under its plans ------------------------------------------------------------------


def _plans(spec: Spec, folder: Path, pipe, cards, device: str, smoke: bool):
    """[(card, quant, offload, plan)] the planner picks for ``cards`` (distinct ones, at the
    smallest card that picked them); on the CPU smoke run, forced fp8 / model offload too."""
    import torch

    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow.load import flow_plan
    from studio.engine.diffusion.shared.placement import plan_placement

    if smoke:
        forced = [] if spec.sd else [(None, "fp8", None, None), (None, None, "model", None)]
        return [(None, None, None, None), *forced]
    out, seen = [], set()
    for card in cards:
        if spec.sd:
            plan = plan_placement(pipe, family(spec.family), torch.device("cuda"), spec.key, card)
        else:
            plan = flow_plan(family(spec.family), "cuda", card, hint=spec.key, folder=folder)
        sig = (plan.offload, plan.weights, plan.text_weights)
        if sig not in seen:
            seen.add(sig)
            out.append((card, None, None, plan))
    return out


def _request(spec: Spec, folder: Path, size: int, steps: int, device: str, **kw):
    from studio.engine.jobs.requests import GenerateRequest

    dtype = "float32" if device == "cpu" else ("float16" if spec.sd else "bfloat16")
    base = dict(
        model=str(folder), prompt=PROMPT, width=size, height=size, steps=steps,
        guidance=spec.guidance, seed=7, preview="off", device=device, dtype=dtype,
    )  # fmt: skip
    return GenerateRequest(**{**base, **kw})


def _adopt(runner, spec: Spec, folder: Path, pipe, device: str, card, quant, offload):
    from studio.engine.diffusion.flow.load import adopt_flow
    from studio.engine.diffusion.sd.pipeline import adopt_pipeline

    dtype = "float32" if device == "cpu" else None
    if spec.sd:
        return adopt_pipeline(runner, str(folder), pipe, device, dtype, free_gib=card)
    entry = adopt_flow(
        runner, str(folder), pipe, device, dtype, quant=quant, offload=offload, free_gib=card
    )
    return entry.plan


def check_model(spec: Spec, cards, args, work: Path, extras: bool = True) -> list[Run]:
    import numpy as np

    from studio.engine.jobs.requests import LoraSpec
    from studio.engine.jobs.runner import Runner

    smoke = args.cpu_smoke
    device = "cpu" if smoke else "cuda"
    size = 64 if smoke else args.size or spec.size
    steps = 2 if smoke else (QUICK_STEPS if args.quick else args.steps or spec.steps)
    runner = Runner(device=device, dtype="float32" if smoke else None)

    def fresh():
        if smoke:
            return build_tiny(spec, work, device)
        pipe = build_full(spec, work / "tok", device)
        return pipe, write_config_folder(pipe, work / spec.key)

    runs: list[Run] = []
    pipe, folder = fresh()
    params = sum(p.numel() for n in ("transformer", "unet") if hasattr(pipe, n)
                 for p in getattr(pipe, n).parameters())  # fmt: skip
    plans = _plans(spec, folder, pipe, cards, device, smoke)
    images: dict[str, np.ndarray] = {}
    fp8_done = False
    for i, (card, quant, offload, _planned) in enumerate(plans):
        if i:
            _free_all(runner)
            del pipe
            pipe, folder = fresh()
        run = Run(spec.key, "plan", card)
        try:
            plan = _adopt(runner, spec, folder, pipe, device, card, quant, offload)
        except Exception as e:  # noqa: BLE001 - a plan Studio can't make in memory
            run.error = f"{type(e).__name__}: {e}"[:300]
            runs.append(run)
            continue
        if plan is not None:
            run.plan, run.plan_peak_gib, run.plan_fits = plan.short(), plan.peak_gib, plan.fits
            run.offload, run.weights, run.text_weights = (
                plan.offload, plan.weights, plan.text_weights,
            )  # fmt: skip
        else:
            run.plan, run.weights = "CPU" + (f", {quant}" if quant else ""), quant or "bf16"
            run.offload = offload or "none"
        if i == 0:
            run.notes.append(f"denoiser {params / 1e9:.3g}B parameters")
        emulate_card(card)
        req = dict(quant=quant, offload=offload)
        final = run_job(runner, _request(spec, folder, size, steps, device, **req), run)
        if run.ok:  # against the first plan with the same weight format (None: it is the first)
            fmt = run.weights or "bf16"
            if fmt in images:
                run.same_seed_same_pixels = bool(np.array_equal(images[fmt], final.images[0]))
            else:
                images[fmt] = final.images[0]
        runs.append(run)
        lora_here = extras and run.ok and (i == 0 or (run.weights == "fp8" and not fp8_done))
        if lora_here:
            fp8_done = fp8_done or run.weights == "fp8"
            lora = random_lora(pipe, spec, work / "lora" / f"{spec.key}.safetensors")
            lr = Run(spec.key, "lora", card, run.plan, run.offload, run.weights, run.text_weights,
                     run.plan_peak_gib, run.plan_fits)  # fmt: skip
            styled = run_job(runner, _request(spec, folder, size, steps, device,
                             loras=(LoraSpec(str(lora), 1.0),), **req), lr)  # fmt: skip
            if lr.ok:
                lr.lora_changes_pixels = not np.array_equal(styled.images[0], final.images[0])
            runs.append(lr)
        if extras and i == 0 and run.ok:
            env = tiny_decoder(spec, work)
            for mode in PREVIEWS:
                pr = Run(spec.key, "preview", card, run.plan, run.offload, run.weights,
                         run.text_weights, run.plan_peak_gib, run.plan_fits, preview=mode)  # fmt: skip
                if mode == "taesd" and env is None:
                    pr.notes.append("no tiny decoder for this family: latent previews")
                run_job(runner, _request(spec, folder, size, min(steps, 3), device,
                        preview=mode, **req), pr)  # fmt: skip
                runs.append(pr)
            cr = Run(spec.key, "cancel", card, run.plan, run.offload, run.weights,
                     run.text_weights, run.plan_peak_gib, run.plan_fits)  # fmt: skip
            run_job(runner, _request(spec, folder, size, max(steps, 4), device, **req), cr,
                    cancel_at=1)  # fmt: skip
            runs.append(cr)
        emulate_card(None)
    _free_all(runner)
    del pipe
    return runs


def check_bare(key: str, size: int, steps: int, work: Path, rounds: int = 2) -> list[Run]:
    """The same in-memory model and settings, whole on the GPU: a bare diffusers call vs
    Studio's job (both warmed up once, then interleaved)."""
    import torch

    from studio.engine.jobs.runner import Runner

    spec = SPECS[key]
    runner = Runner(device="cuda")
    pipe = build_full(spec, work / "tok", "cuda")
    folder = write_config_folder(pipe, work / key)
    _adopt(runner, spec, folder, pipe, "cuda", 80, None, None)  # whole on the GPU
    req = _request(spec, folder, size, steps, "cuda")
    extra = {}
    if not spec.sd:  # the family's own call arguments, as Studio passes them
        from studio.engine.diffusion.families.registry import family

        extra = dict(family(spec.family).call_kwargs(pipe, size, size))

    def bare():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pipe(
            prompt=PROMPT, num_inference_steps=steps, guidance_scale=spec.guidance,
            height=size, width=size, generator=torch.Generator("cuda").manual_seed(7),
            output_type="np", **extra,
        )  # fmt: skip
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    def studio():
        r = Run(key, "studio")
        run_job(runner, req, r)
        return r.s_per_image if r.ok else float("nan")

    bare(), studio()  # warm-up
    times = {"bare": [], "studio": []}
    for _ in range(rounds):
        times["bare"].append(bare())
        times["studio"].append(studio())
    # Then Studio's job with its speed settings on (regional torch.compile; channels-last for
    # the SD UNet and VAE): two warm-up images compile, then the same rounds.
    speed_env = {"STUDIO_COMPILE": "1", "STUDIO_CHANNELS_LAST": "1" if spec.sd else "0"}
    saved = {k: os.environ.get(k) for k in speed_env}
    os.environ.update(speed_env)
    try:
        studio(), studio()
        times["compiled"] = [studio() for _ in range(rounds)]
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    b, s = statistics.median(times["bare"]), statistics.median(times["studio"])
    c = statistics.median(times["compiled"])
    run = Run(key, "bare", None, f"GPU, {size}px, {steps} steps", ok=b == b and s == s)
    run.s_per_image = round(s, 3)
    run.notes = [
        f"bare {b:.3f} s", f"studio {s:.3f} s", f"ratio {s / b:.3f}",
        f"compiled {c:.3f} s", f"compiled ratio {c / b:.3f}",
    ]  # fmt: skip
    _free_all(runner)
    return [run]


# -- the report ---------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    head = (
        "| model | kind | card | plan | preview | ok | steps/s | s/image | peak GiB | "
        "planned GiB | same seed | notes |"
    )
    rows = [head, "|" + "---|" * 12]
    for r in report["runs"]:

        def f(v):
            return "-" if v is None or v == "" else (f"{v:g}" if isinstance(v, float) else str(v))

        notes = "; ".join([*r["notes"], r["error"]] if r["error"] else r["notes"])
        extra = []
        if r["lora_changes_pixels"] is not None:
            extra.append(f"LoRA changes pixels: {r['lora_changes_pixels']}")
        if r["cancel_s"] is not None:
            extra.append(f"cancelled in {r['cancel_s']:g} s")
        notes = "; ".join(x for x in (notes, *extra) if x)
        rows.append(
            f"| {r['model']} | {r['kind']} | {f(r['card_gib'])} | {f(r['plan'])} | "
            f"{r['preview']} | {'yes' if r['ok'] else 'NO'} | {f(r['steps_per_s'])} | "
            f"{f(r['s_per_image'])} | {f(r['peak_gib'])} | {f(r['plan_peak_gib'])} | "
            f"{f(r['same_seed_same_pixels'])} | {notes} |"
        )
    env = report["environment"]
    title = f"# GPU check ({report['mode']}) on {env['device']}"
    return "\n".join([title, "", f"torch {env['torch']}, diffusers {env['diffusers']}", "", *rows])


def environment() -> dict:
    import diffusers
    import torch

    dev = torch.cuda.get_device_name(0) if _cuda() else f"CPU ({platform.processor() or 'cpu'})"
    return {"device": dev, "torch": torch.__version__, "diffusers": diffusers.__version__}


def selection(args) -> list[tuple[str, tuple, bool]]:
    """(model, cards, extras) to run."""
    if args.cpu_smoke:
        return [("flux1-schnell", (None,), True), ("sd15", (None,), True)]
    if args.quick:
        return list(QUICK)
    keys = [k for k in (args.models.split(",") if args.models else SPECS) if k]
    for k in keys:
        if k not in SPECS:
            raise SystemExit(f"unknown model {k!r} (use {', '.join(SPECS)})")
    if args.part:
        n, m = (int(x) for x in args.part.split("/"))
        keys = keys[n - 1 :: m]
    cards = tuple(float(c) for c in args.cards.split(",")) if args.cards else CARDS
    return [(k, cards, True) for k in keys]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json / gpu_check.md")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--cpu-smoke", action="store_true", help="tiny fixtures on the CPU")
    mode.add_argument("--quick", action="store_true", help="a subset (~8 min on one H100)")
    mode.add_argument("--bare", action="store_true", help="Studio vs a bare diffusers call")
    ap.add_argument("--part", default="", help="N/M: the N-th of M parts of the whole run")
    ap.add_argument("--models", default="", help="comma-separated model keys")
    ap.add_argument("--cards", default="", help="comma-separated card sizes in GiB")
    ap.add_argument("--size", type=int, default=0, help="image side (default: the model's)")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--work", default="", help="scratch folder (default: a temp folder)")
    args = ap.parse_args(argv)
    if not args.cpu_smoke and not _cuda():
        print("no CUDA device: use --cpu-smoke (nothing else runs without a GPU)", file=sys.stderr)
        return 2
    if args.cpu_smoke:
        os.environ.setdefault("STUDIO_DEVICE", "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work_ctx = (
        contextlib.nullcontext(args.work)
        if args.work
        else tempfile.TemporaryDirectory(prefix="gpu-check-")
    )
    report = {"mode": "", "environment": environment(), "runs": []}
    report["mode"] = (
        "cpu-smoke" if args.cpu_smoke else "quick" if args.quick else "bare" if args.bare
        else f"part {args.part}" if args.part else "full"
    )  # fmt: skip
    t0 = time.perf_counter()
    with work_ctx as work:
        work = Path(work)
        if args.bare:
            for key, size, steps in BARE:
                report["runs"] += [asdict(r) for r in check_bare(key, size, steps, work)]
        else:
            for key, cards, extras in selection(args):
                print(f"{key}: cards {cards}", file=sys.stderr)
                runs = check_model(SPECS[key], cards, args, work, extras)
                report["runs"] += [asdict(r) for r in runs]
                (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["all_ok"] = all(r["ok"] for r in report["runs"])
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (out / "gpu_check.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
