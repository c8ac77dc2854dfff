"""What a real GPU run depends on, shown on the CPU with the tiny random models; each test
fails on code that lacks its fix.

1. LoRA on an fp8 plan: adapters loaded after diffusers' layerwise casting stay in the compute
   dtype (they came out float8 and the first step failed).
2. Group offload splits the text encoders into their layers (diffusers' block-level offload
   only splits a module's direct block lists: T5 / CLIP / Qwen3 were one group each), in as
   many groups as the planner counts, and applies under a prefetch stream.
3. NF4 is never group-offloaded; NF4 parts load with an explicit ``device_map``, one at a
   time, and go to the CPU under offload plans.
4. "full" / tiny previews under model offload decode on the execution device without the
   offload hook's swap (which pushed the transformer off the GPU every step).
5. The decode estimate counts VAE tiling only where it applies, flow jobs are planned at
   their size and with the RAM, and an out-of-memory decode in the flow path retries in tiles.
6. Same seed, same pixels whatever the plan; the family's preferred dtype (SD 3.5: bf16).

What needs CUDA itself (streams, bitsandbytes kernels, real memory numbers) is in
``benchmarks/gpu_check.py``; its CPU smoke run is tests/benchmarks/test_gpu_check.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.core.errors import BadInput
from studio.engine.diffusion.shared import memory
from studio.engine.diffusion.shared.memory import (
    MODEL_NEEDS,
    WEIGHT_FORMATS,
    apply_group_offload,
    block_groups,
    group_block_modules,
    offload_groups,
    plan_memory,
)
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import GenerateRequest, LoraSpec
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def tiny(session_tmp):
    from studio.engine.fixtures import tiny_flow_models

    return tiny_flow_models.build_all(session_tmp / "tiny-flow-models")


def _req(model, **kw) -> GenerateRequest:
    base = dict(
        prompt="a cat", width=64, height=64, steps=2, guidance=0.0, seed=3, preview="off",
        device="cpu", dtype="float32",
    )  # fmt: skip
    return GenerateRequest(**{**base, "model": str(model), **kw})


def _finished(runner: Runner, request) -> Finished:
    final = runner.run(request)
    assert isinstance(final, Finished), f"{final}: {getattr(final, 'detail', '')[-2000:]}"
    return final


def _entry(runner: Runner):
    (key,) = [k for k in runner.cached_keys if k.startswith("flow:")]
    return runner._cache[key]


def _pipe(folder):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe, seed: int = 0) -> np.ndarray:
    out = pipe(
        prompt="a cat", num_inference_steps=2, height=64, width=64, output_type="np",
        generator=torch.Generator().manual_seed(seed),
    ).images[0]  # fmt: skip
    return (np.clip(out, 0, 1) * 255).round().astype(int)


# -- 1. LoRA on an fp8 plan --------------------------------------------------------------------


def test_lora_on_an_fp8_plan_runs_in_the_compute_dtype_and_changes_the_image(tiny, tmp_path):
    from peft.tuners.lora import LoraLayer

    from studio.engine.fixtures.tiny_flow_models import build_tiny_flow_lora

    lora = build_tiny_flow_lora(tiny["flux1"], tmp_path / "style.safetensors")
    runner = Runner(device="cpu", dtype="float32")
    plain = _finished(runner, _req(tiny["flux1"], quant="fp8")).images[0]
    styled = _finished(
        runner, _req(tiny["flux1"], quant="fp8", loras=(LoraSpec(str(lora), 1.0),))
    ).images[0]
    assert np.abs(plain.astype(int) - styled.astype(int)).mean() > 1.0  # the LoRA acts
    tr = _entry(runner).base.transformer
    layers = [m for m in tr.modules() if isinstance(m, LoraLayer) and m.lora_A]
    assert layers
    for m in layers:
        assert m.get_base_layer().weight.dtype == torch.float8_e4m3fn  # still stored in fp8
        for name in m.lora_A:
            assert m.lora_A[name].weight.dtype == torch.float32  # the compute dtype
            assert m.lora_B[name].weight.dtype == torch.float32
    again = _finished(runner, _req(tiny["flux1"], quant="fp8")).images[0]
    assert np.array_equal(plain, again)  # unloaded: the plain fp8 model again


# -- 2. group offload of the text encoders ---------------------------------------------------


def _layers(module) -> int:
    cfg = module.config
    return int(getattr(cfg, "num_layers", None) or cfg.num_hidden_layers)


@pytest.mark.parametrize("name, family", [("flux1", "flux1"), ("flux2", "flux2"), ("sd3", "sd3")])
def test_group_offload_splits_every_text_encoder_into_its_layers(tiny, name, family):
    from studio.engine.diffusion.families.registry import family as by_name

    encoders = by_name(family).text_encoders
    ref = _image(_pipe(tiny[name]))
    # What Studio called before: the pipeline-level call leaves every encoder in one piece.
    whole = _pipe(tiny[name])
    whole.enable_group_offload("cpu", offload_type="block_level", num_blocks_per_group=1)
    assert all(block_groups(getattr(whole, te)) == 0 for te in encoders)
    pipe = _pipe(tiny[name])
    apply_group_offload(pipe, "cpu")  # what apply_plan calls for a group plan (no stream here)
    for te in encoders:
        module = getattr(pipe, te)
        layers = _layers(module)
        assert layers > 1
        # one group per layer (the planner's te_blocks), plus the embedding / norm groups
        assert block_groups(module) == layers, (te, type(module).__name__)
        assert len(offload_groups(module)) > layers
    assert block_groups(pipe.transformer) >= 1  # diffusers' own split (1 block in tiny SD3)
    assert np.array_equal(_image(pipe), ref)  # the same pixels as without offload


class _FakeStream:
    """Stands in for a CUDA stream at *apply* time (nothing runs): diffusers installs its
    lazy-prefetch hooks only when a stream is given, and that is where nesting fails."""

    def synchronize(self):
        pass


def _apply_with_stream(module, block_modules):
    from diffusers.hooks.group_offloading import (
        GroupOffloadingConfig,
        GroupOffloadingType,
        _apply_group_offloading,
    )

    cpu = torch.device("cpu")
    cfg = GroupOffloadingConfig(
        onload_device=cpu, offload_device=cpu, offload_type=GroupOffloadingType.BLOCK_LEVEL,
        non_blocking=False, record_stream=True, low_cpu_mem_usage=True, num_blocks_per_group=1,
        stream=_FakeStream(), block_modules=block_modules,
    )  # fmt: skip
    _apply_group_offloading(module, cfg)


@pytest.mark.parametrize("name, te", [("flux1", "text_encoder_2"), ("flux2", "text_encoder")])
def test_the_encoder_split_applies_under_a_prefetch_stream(tiny, name, te):
    """Naming only the way down (``block_modules=["encoder"]`` for T5) nests two
    lazy-prefetch hooks and diffusers refuses ("layer_execution_tracker already exists");
    group_block_modules names every child above the block level, so it applies."""
    module = getattr(_pipe(tiny[name]), te)
    names = group_block_modules(module)
    assert names
    _apply_with_stream(module, names)
    assert block_groups(module) == _layers(module)
    naive = getattr(_pipe(tiny[name]), te)
    way_down = [n for n in names if any(True for _ in getattr(naive, n).modules())][:1]
    with pytest.raises(ValueError, match="layer_execution_tracker"):
        _apply_with_stream(naive, [n for n in names if n in ("encoder", "model")] or way_down)


def _split_lists(module, names) -> int:
    """How many blocks diffusers' block-level offload makes with ``block_modules=names``
    (its recursion: named children are recursed, direct block lists are split)."""
    n = 0
    for child_name, child in module.named_children():
        if child_name in names:
            n += _split_lists(child, names)
        elif isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            n += len(child)
    return n


def _meta(build):
    with torch.device("meta"):
        return build()


def _t5_xxl():
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
        feed_forward_proj="gated-gelu",
    )  # fmt: skip
    return _meta(lambda: T5EncoderModel(cfg))


def _qwen3(hidden: int, ffn: int, tied: bool):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=tied,
    )  # fmt: skip
    return _meta(lambda: Qwen3ForCausalLM(cfg))


@pytest.mark.parametrize(
    "rows, build, blocks",
    [
        (("flux1-dev", "flux1-schnell", "sd35-large", "sd35-medium"), _t5_xxl, 24),
        (("flux2-klein-4b", "z-image-turbo"), lambda: _qwen3(2560, 9728, True), 36),
        (("flux2-klein-9b",), lambda: _qwen3(4096, 12288, False), 36),
    ],
)
def test_the_planner_counts_the_groups_applied_to_the_real_encoders(rows, build, blocks):
    """The real encoders (built on meta from their published configs): the split Studio
    applies makes one group per layer, the count the planner's ``te_blocks`` assumes."""
    model = build()
    names = group_block_modules(model)
    assert names and _split_lists(model, names) == blocks
    for key in rows:
        assert MODEL_NEEDS[key].te_blocks == blocks, key


# -- 3. NF4 ------------------------------------------------------------------------------------


def test_nf4_is_never_planned_with_group_offload():
    for key in MODEL_NEEDS:
        for card in (4, 6, 8, 10, 12, 16, 24, 32, 48):
            for ram in (16, 32, 64, None):
                p = plan_memory(key, card, ram_gib=ram, formats=WEIGHT_FORMATS)
                assert not (p.offload == "group" and "nf4" in (p.weights, p.text_weights)), (
                    key, card, p.describe(),
                )  # fmt: skip
    with pytest.raises(BadInput, match="group-offloaded"):
        plan_memory("qwen-image", 8, offload="group", weights="nf4")
    with pytest.raises(BadInput, match="group-offloaded"):
        plan_memory("flux1-dev", 8, offload="group", text_weights="nf4")


@pytest.mark.parametrize("offload", ["model", "none"])
def test_nf4_parts_load_with_a_device_map_and_wait_on_the_cpu(tiny, monkeypatch, offload):
    import diffusers
    import transformers

    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow import load as flow_load

    calls: list = []

    class Loaded:
        def __init__(self, name):
            self.name, self.moved = name, []

        def to(self, device):
            self.moved.append(str(device))
            return self

    def spy(cls_name):
        def from_pretrained(cls, folder, **kw):
            calls.append((cls_name, kw))
            return Loaded(kw.get("subfolder"))

        return classmethod(from_pretrained)

    for lib, name in (
        (diffusers, "FluxTransformer2DModel"),
        (transformers, "CLIPTextModel"),
        (transformers, "T5EncoderModel"),
    ):
        monkeypatch.setattr(getattr(lib, name), "from_pretrained", spy(name))
    pipeline_kw: dict = {}
    monkeypatch.setattr(
        diffusers.DiffusionPipeline,
        "from_pretrained",
        classmethod(lambda cls, folder, **kw: pipeline_kw.update(kw) or "pipe"),
    )
    monkeypatch.setattr(flow_load, "_bnb_config", lambda library, dtype: ("nf4", library))
    plan = plan_memory(
        "flux1-dev", 80 if offload == "none" else 12, offload=offload, weights="nf4",
        text_weights="nf4",
    )  # fmt: skip
    out = flow_load._load_folder(
        tiny["flux1"], family("flux1"), torch.bfloat16, plan, torch.device("cuda:1")
    )
    assert out == "pipe"
    assert {c for c, _ in calls} == {"FluxTransformer2DModel", "CLIPTextModel", "T5EncoderModel"}
    for cls_name, kw in calls:
        assert kw["device_map"] == {"": "cuda:1"}, cls_name  # the job's GPU, not the current one
        assert kw["quantization_config"][0] == "nf4"
    parts = {k: v for k, v in pipeline_kw.items() if isinstance(v, Loaded)}
    assert set(parts) == {"transformer", "text_encoder", "text_encoder_2"}
    for part in parts.values():
        assert part.moved == (["cpu"] if offload != "none" else [])


# -- 4. previews under model offload -------------------------------------------------------------


def _emulate_model_offload(vae, monkeypatch) -> list:
    """The VAE's accelerate CpuOffload hook as ``enable_model_cpu_offload`` installs it, with
    the previous model of the chain (the transformer) standing where the CPU is not (meta):
    the hook's pre_forward offloads it when the VAE is used. Returns the offload calls."""
    from accelerate.hooks import CpuOffload, UserCpuOffloadHook, add_hook_to_module

    calls: list = []
    resident = torch.nn.Linear(1, 1, device="meta")
    prev = UserCpuOffloadHook(resident, CpuOffload(execution_device="cpu"))
    monkeypatch.setattr(prev, "offload", lambda: calls.append("transformer offloaded"))
    add_hook_to_module(vae, CpuOffload(execution_device="cpu", prev_module_hook=prev))
    return calls


def test_full_flow_previews_under_model_offload_leave_the_transformer_alone(tiny, monkeypatch):
    from studio.engine.diffusion.flow.previews import FlowPreview

    pipe = _pipe(tiny["flux1"])
    lat = torch.randn(1, 256, 64, generator=torch.Generator().manual_seed(0))  # packed 64 px
    ref = FlowPreview(pipe, "flux1", "full", 64, 64)(lat)
    calls = _emulate_model_offload(pipe.vae, monkeypatch)
    hook = pipe.vae._hf_hook
    img = FlowPreview(pipe, "flux1", "full", 64, 64)(lat)
    assert calls == []  # before: every preview pushed the transformer off the GPU
    assert pipe.vae._hf_hook is hook  # the hook is back for the pipeline's own decode
    assert np.array_equal(img, ref)
    pipe.vae.decode(torch.zeros(1, 16, 32, 32))  # the pipeline's decode still fires the hook
    assert calls == ["transformer offloaded"]


def test_full_sd_previews_under_model_offload_leave_the_unet_alone(tiny_models, monkeypatch):
    from studio.engine.diffusion.shared.previews import PreviewDecoder

    pipe = _pipe(tiny_models.sd)
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = PreviewDecoder(pipe, "full", "sd1")(lat)
    calls = _emulate_model_offload(pipe.vae, monkeypatch)
    assert np.array_equal(PreviewDecoder(pipe, "full", "sd1")(lat), ref)
    assert calls == []


# -- 5. decoding: the estimate, the job's size, the fallback --------------------------------------


def test_tiling_is_planned_only_where_it_applies():
    """FLUX / SD 3.5 VAEs tile only above 1024 px: at 1024^2 a 'tiled VAE' plan decoded in one
    piece (the README's FLUX row at 24 GiB said "tiled VAE, 23.2 GiB")."""
    for key, n in MODEL_NEEDS.items():
        side = min(n.native_px, getattr(n, "vae_tile_px", 1024))
        for card in (8, 12, 16, 24, 32):
            p = plan_memory(key, card, ram_gib=32, formats=WEIGHT_FORMATS, pixels=side * side)
            assert not p.vae_tiling, (key, card, p.describe())
    flux = MODEL_NEEDS["flux1-dev"]
    assert memory.decode_gib(flux, 1.0, True, 1024) == memory.decode_gib(flux, 1.0, False, 1024)
    assert memory.decode_gib(flux, 4.0, True, 2048) < memory.decode_gib(flux, 4.0, False, 2048) / 3
    big = plan_memory("flux1-dev", 24, ram_gib=64, formats=WEIGHT_FORMATS, size=(2048, 2048))
    assert big.peak_gib > plan_memory("flux1-dev", 24, ram_gib=64, formats=WEIGHT_FORMATS).peak_gib


def test_flow_jobs_are_planned_at_their_size_and_with_the_ram():
    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow.load import flow_plan

    flux = family("flux1")
    native = flow_plan(flux, "cuda", free_gib=24, ram_gib=64)
    big = flow_plan(flux, "cuda", free_gib=24, ram_gib=64, size=(2048, 2048))
    assert big.peak_gib > native.peak_gib
    roomy = flow_plan(flux, "cuda", free_gib=12, ram_gib=64)
    short = flow_plan(flux, "cuda", free_gib=12, ram_gib=28)  # bf16's 31 GiB don't fit
    assert roomy.fits and short.fits, (roomy.describe(), short.describe())
    assert short.ram_gib <= short.ram_budget_gib < roomy.ram_gib
    tiny_ram = flow_plan(flux, "cuda", free_gib=12, ram_gib=8)
    assert not tiny_ram.fits and "exceed the RAM" in tiny_ram.describe()


def _oom_above(vae, monkeypatch, latent_px: int | None) -> list:
    """The VAE decoder runs out of memory on latents wider than ``latent_px`` (None: always),
    as a real one does on an image too large for the card."""
    real = vae.decoder.forward
    seen: list = []

    def forward(z, *args, **kwargs):
        seen.append(tuple(z.shape[-2:]))
        if latent_px is None or max(z.shape[-2:]) > latent_px:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return real(z, *args, **kwargs)

    monkeypatch.setattr(vae.decoder, "forward", forward)
    return seen


_TILING = ("use_tiling", "tile_sample_min_size", "tile_latent_min_size", "tile_overlap_factor")


def test_an_out_of_memory_flow_decode_retries_in_tiles(tiny, monkeypatch):
    runner = Runner(device="cpu", dtype="float32")
    ref = _finished(runner, _req(tiny["flux1"])).images[0]
    vae = _entry(runner).base.vae
    before = {a: vars(vae).get(a) for a in _TILING}
    seen = _oom_above(vae, monkeypatch, latent_px=16)
    out = _finished(runner, _req(tiny["flux1"])).images[0]
    assert seen[0] == (32, 32) and all(max(s) <= 16 for s in seen[1:])  # whole, then tiles
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 12  # tiles blend, not identical
    assert {a: vars(vae).get(a) for a in _TILING} == before  # settings restored
    _oom_above(vae, monkeypatch, latent_px=None)
    final = runner.run(_req(tiny["flux1"]))
    assert not isinstance(final, Finished) and "out of memory" in final.message.lower()


def test_a_plan_decodes_in_tiles_where_the_jobs_size_needs_them():
    """The plan's placement at a size it was not loaded for: tiled where untiled would not fit."""
    plan = plan_memory("flux1-dev", 12, ram_gib=64, formats=("bf16", "fp8"), offload="model")
    assert not memory.tiled_decode_needed(plan, 1024, 1024)
    assert memory.tiled_decode_needed(plan, 3072, 3072)


# -- 6. seeds, dtypes ----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_pixels_under_another_plan(tiny):
    a = _finished(Runner(device="cpu", dtype="float32"), _req(tiny["flux1"]))
    b = _finished(Runner(device="cpu", dtype="float32"), _req(tiny["flux1"], offload="model"))
    assert np.array_equal(a.images[0], b.images[0])
    assert a.metadata[0]["offload"] and b.metadata[0]["offload"]  # the plan is recorded


def test_the_seed_generator_is_a_cpu_one_whatever_the_device():
    """A CUDA generator would give a resident job other noise than an offloaded one."""
    from studio.engine.jobs.device import generator_for

    assert generator_for(1, torch.device("cuda")).device.type == "cpu"


def test_sd35_loads_in_its_preferred_bf16_on_a_gpu(tiny, monkeypatch):
    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow import load as flow_load
    from studio.engine.diffusion.shared import defaults, placement
    from studio.engine.jobs import device as jobs_device
    from studio.engine.jobs.device import DeviceChoice

    cuda = DeviceChoice(torch.device("cuda"), torch.float16)  # pick_device's GPU default
    monkeypatch.setattr(defaults, "device_support", lambda dev: (True, True))
    monkeypatch.setattr(jobs_device, "pick_device", lambda *a: cuda)
    monkeypatch.setattr(placement, "free_memory_gib", lambda dev: 80.0)
    keys: list = []
    runner = SimpleNamespace(
        device=None, dtype=None, cache=lambda key, factory: keys.append(key) or "entry"
    )
    assert flow_load.load_flow(SimpleNamespace(runner=runner), str(tiny["sd3"])) == "entry"
    assert "torch.bfloat16" in keys[0], keys  # the cache key holds the dtype it loads in
    sd3 = family("sd3")
    assert flow_load.flow_dtype(sd3, cuda, requested=False) == torch.bfloat16
    assert flow_load.flow_dtype(sd3, cuda, requested=True) == torch.float16  # asked for
