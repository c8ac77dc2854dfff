"""The memory planner's runtime side (studio.engine.diffusion.shared.memory) on small torch modules
and stand-in pipelines: apply_plan's diffusers calls, fp8 layerwise casting with adapters
kept in the compute dtype, the block lists group offload splits a text encoder into, the
groups it installs, smaller VAE tiles and the out-of-memory decode fallback."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import diffusers.hooks
import pytest
import torch
from diffusers import ModelMixin
from diffusers.hooks import apply_group_offloading
from torch import nn

from studio.engine.diffusion.shared import memory
from studio.engine.diffusion.shared.memory import ModelNeeds, Plan


def _plan(offload="none", weights="bf16", text="bf16", tiling=False, budget=10.0, needs=None):
    needs = needs or memory.MODEL_NEEDS["flux1-dev"]
    return Plan(needs, offload, weights, text, tiling, 1.0, budget, 0.0, None, 0.0)


# -- apply_plan -----------------------------------------------------------------------------


class FakeVae:
    def __init__(self):
        self.tiling = None

    def enable_tiling(self):
        self.tiling = True

    def disable_tiling(self):
        self.tiling = False


class FakePipe:
    """Records which of diffusers' placement calls a plan makes."""

    def __init__(self, main=None, attr="transformer"):
        self.calls = []
        setattr(self, attr, main)
        self.vae = FakeVae()
        self.components = {}

    def to(self, dev):
        self.calls.append(("to", torch.device(dev)))
        return self

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(("model", device))

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append(("sequential", device))


@pytest.mark.parametrize(
    "offload, call",
    [("none", "to"), ("model", "model"), ("sequential", "sequential")],
)
def test_apply_plan_makes_the_offload_call_on_a_gpu(offload, call):
    pipe = FakePipe()
    memory.apply_plan(pipe, _plan(offload), device="cuda")
    assert pipe.calls == [(call, torch.device("cuda"))]


@pytest.mark.parametrize("offload", ["model", "group", "sequential"])
def test_apply_plan_on_the_cpu_just_moves_the_pipeline(offload):
    pipe = FakePipe()
    memory.apply_plan(pipe, _plan(offload), device="cpu")
    assert pipe.calls == [("to", torch.device("cpu"))]


def test_apply_plan_group_offload_goes_through_apply_group_offload(monkeypatch):
    seen = []
    monkeypatch.setattr(memory, "apply_group_offload", lambda pipe, dev: seen.append((pipe, dev)))
    pipe = FakePipe()
    memory.apply_plan(pipe, _plan("group"), device="cuda")
    assert seen == [(pipe, torch.device("cuda"))] and pipe.calls == []


def test_apply_plan_places_on_cuda_by_default():
    pipe = FakePipe()
    memory.apply_plan(pipe, _plan("model"))
    assert pipe.calls == [("model", torch.device("cuda"))]


@pytest.mark.parametrize("tiling", [True, False])
def test_apply_plan_sets_vae_tiling_as_planned(tiling):
    pipe = FakePipe()
    memory.apply_plan(pipe, _plan(tiling=tiling), device="cpu")
    assert pipe.vae.tiling is tiling


def test_apply_plan_without_a_vae_or_its_tiling_still_places_the_pipeline():
    pipe = FakePipe()
    pipe.vae = object()  # no enable_tiling
    memory.apply_plan(pipe, _plan(tiling=True), device="cpu")
    pipe.vae = None
    memory.apply_plan(pipe, _plan(tiling=True), device="cpu")
    del pipe.vae
    memory.apply_plan(pipe, _plan(tiling=True), device="cpu")
    assert pipe.calls == [("to", torch.device("cpu"))] * 3


def _tiny_model():
    class Tiny(ModelMixin):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)  # diffusers' skip patterns keep "norm" layers
            self.norm_out = nn.Linear(8, 8)

        def forward(self, x):
            return self.norm_out(self.norm(self.b(self.a(x))))

    return Tiny()


@pytest.mark.parametrize("attr", ["transformer", "unet"])
def test_fp8_plan_stores_the_denoiser_in_float8_and_marks_the_compute_dtype(attr):
    main = _tiny_model().to(torch.bfloat16)
    pipe = FakePipe(main, attr)
    memory.apply_plan(pipe, _plan(weights="fp8"), device="cpu")
    assert main.a.weight.dtype == main.b.weight.dtype == torch.float8_e4m3fn
    assert main.norm_out.weight.dtype == torch.bfloat16
    # the cast layers tell PEFT to create later adapters in the compute dtype
    assert main.a.compute_dtype == main.b.compute_dtype == torch.bfloat16
    assert not hasattr(main.norm_out, "compute_dtype")
    # the step still runs: weights are upcast to bf16 per layer
    assert main(torch.ones(1, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_an_fp8_plan_on_a_pipeline_without_a_denoiser_only_places_it():
    pipe = FakePipe(None)
    memory.apply_plan(pipe, _plan(weights="fp8"), device="cpu")
    assert pipe.calls == [("to", torch.device("cpu"))]


def test_bf16_plan_leaves_the_weights_alone():
    main = _tiny_model()
    memory.apply_plan(FakePipe(main), _plan(weights="bf16"), device="cpu")
    assert main.a.weight.dtype == torch.float32 and not hasattr(main.a, "compute_dtype")


def test_keep_adapters_counts_the_layers_diffusers_cast():
    main = _tiny_model()
    assert memory.keep_adapters_in_compute_dtype(main) == 0  # nothing cast yet
    main.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert memory.keep_adapters_in_compute_dtype(main) == 2  # a and b
    assert main.a.compute_dtype == torch.float32


# -- group offload: which block lists a text encoder is split into ---------------------------


class T5Like(nn.Module):
    """T5EncoderModel's layout: the blocks two levels down (``encoder.block``)."""

    def __init__(self, n=3, head=False):
        super().__init__()
        self.shared = nn.Embedding(10, 16)
        self.encoder = nn.Module()
        self.encoder.block = nn.ModuleList(nn.Linear(16, 16) for _ in range(n))
        self.encoder.final_layer_norm = nn.LayerNorm(16)
        if head:
            # a list of two small layers (about 1 % of the blocks' parameters): no block list
            self.head = nn.Module()
            self.head.sub = nn.Module()
            self.head.sub.layers = nn.ModuleList(nn.Linear(1, 2) for _ in range(2))

    def forward(self, x):
        h = self.shared(x)
        for b in self.encoder.block:
            h = b(h)
        return self.encoder.final_layer_norm(h)


def test_block_modules_name_the_way_down_to_the_blocks():
    # every child of each level above the block list: the level keeps no group of its own
    assert memory.group_block_modules(T5Like()) == ["encoder", "shared"]
    assert memory.group_block_modules(T5Like(head=True)) == ["encoder", "head", "shared"]


def test_block_modules_ignore_small_lists_but_take_a_list_above_the_share():
    m = T5Like(head=True)
    # the head's list holds 8 of the blocks' 816 parameters: a block list only at share < 1 %
    assert memory.group_block_modules(m, share=0.005) == ["encoder", "head", "shared", "sub"]
    assert memory.group_block_modules(m, share=0.05) == ["encoder", "head", "shared"]


def test_a_list_of_one_neither_holds_blocks_nor_sets_the_scale():
    m = nn.Module()
    m.big = nn.ModuleList([nn.Linear(100, 100)])  # one layer of 10,100 parameters
    m.enc = nn.Module()
    m.enc.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))  # 40: the largest list
    m.a = nn.Module()
    m.a.x = nn.Module()
    m.a.x.one = nn.ModuleList([nn.Linear(10, 10)])
    assert memory.group_block_modules(m) == ["a", "big", "enc"]


def test_a_list_at_exactly_the_share_is_a_block_list():
    m = nn.Module()
    m.enc = nn.Module()
    m.enc.block = nn.ModuleList(nn.Linear(4, 4, bias=False) for _ in range(2))  # 32
    m.head = nn.Module()
    m.head.sub = nn.Module()
    m.head.sub.layers = nn.ModuleList(nn.Linear(4, 2, bias=False) for _ in range(2))  # 16
    assert memory.group_block_modules(m, share=0.5) == ["enc", "head", "sub"]
    assert memory.group_block_modules(m, share=0.51) == ["enc", "head"]


def test_block_modules_none_where_diffusers_finds_the_blocks_itself():
    direct = nn.Module()
    direct.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
    direct.proj = nn.Linear(4, 4)
    assert memory.group_block_modules(direct) is None  # a direct child list
    assert memory.group_block_modules(nn.Sequential(nn.Linear(2, 2))) is None  # one entry
    flat = nn.Module()
    flat.a, flat.b = nn.Linear(2, 2), nn.Linear(2, 2)
    assert memory.group_block_modules(flat) is None  # no list at all
    single = nn.Module()
    single.inner = nn.Module()
    single.inner.one = nn.ModuleList([nn.Linear(2, 2)])  # a list of one is not a block list
    single.inner.two = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    assert memory.group_block_modules(single) == ["inner"]


def test_block_modules_of_parameterless_lists():
    m = nn.Module()
    m.enc = nn.Module()
    m.enc.acts = nn.ModuleList([nn.ReLU(), nn.ReLU()])  # no parameters anywhere
    assert memory.group_block_modules(m) is None  # nothing to move: no block list


def test_group_offload_of_a_t5_layout_gives_one_group_per_block():
    m = T5Like(n=3)
    apply_group_offloading(
        m, onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1,
        block_modules=memory.group_block_modules(m),
    )  # fmt: skip
    groups = memory.offload_groups(m)
    assert memory.block_groups(m) == 3
    assert len(groups) > 3  # the blocks plus the remaining layers (embedding, final norm)
    assert len({id(g) for g in groups}) == len(groups)
    assert m(torch.tensor([[1, 2]])).shape == (1, 2, 16)


def test_blocks_grouped_in_pairs_count_once_per_group():
    m = nn.Module()
    m.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(4))
    m.head = nn.Linear(4, 4)
    apply_group_offloading(
        m, onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=2
    )
    # two groups of two blocks (each block carries its group's hook) and the head's group
    assert len(memory.offload_groups(m)) == 3 and memory.block_groups(m) == 2


def test_a_module_without_group_offload_has_no_groups():
    m = T5Like()
    assert memory.offload_groups(m) == [] and memory.block_groups(m) == 0


class Recorder(nn.Module):
    """A diffusers model: has its own enable_group_offload."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.kwargs = None

    def enable_group_offload(self, **kwargs):
        self.kwargs = kwargs


@pytest.mark.parametrize(
    "device, use_stream, stream",
    [("cuda", None, True), ("cpu", None, False), ("cuda", False, False), ("cpu", True, True)],
)
def test_apply_group_offload_splits_every_module_block_by_block(
    monkeypatch, device, use_stream, stream
):
    applied = []
    monkeypatch.setattr(
        diffusers.hooks, "apply_group_offloading", lambda m, **kw: applied.append((m, kw))
    )
    model, encoder = Recorder(), T5Like()
    pipe = SimpleNamespace(
        components={"scheduler": "not a module", "transformer": model, "text_encoder": encoder}
    )
    memory.apply_group_offload(pipe, device, use_stream=use_stream)
    want = dict(
        onload_device=torch.device(device), offload_device=torch.device("cpu"),
        offload_type="block_level", num_blocks_per_group=1, use_stream=stream,
    )  # fmt: skip
    assert model.kwargs == want
    assert len(applied) == 1 and applied[0][0] is encoder
    assert applied[0][1] == {**want, "block_modules": ["encoder", "shared"]}


# -- smaller tiles ----------------------------------------------------------------------------


class KLVae:
    """AutoencoderKL's tiling attributes (tile in px and in latent px)."""

    def __init__(self, tile=1024, latent=128, channels=(128, 256, 512, 512)):
        self.tile_sample_min_size = tile
        self.tile_latent_min_size = latent
        self.use_tiling = False
        self.config = SimpleNamespace(block_out_channels=channels)
        self.decoded = []

    def enable_tiling(self):
        self.use_tiling = True

    def decode(self, z, *args, **kwargs):
        self.decoded.append((self.use_tiling, self.tile_sample_min_size, args, kwargs))
        return ("image of", z)


@pytest.mark.parametrize(
    "tile, latent, side, want, want_latent",
    [
        (1024, 128, 1024, 512, 64),  # half the VAE's tile
        (1024, 128, 3000, 512, 64),
        (1024, 128, 600, 256, 32),  # half the side is 300 px: whole latent px in steps of 8
        (1024, 128, 200, 256, 32),  # never below the 256 px floor
        (512, 64, 512, 256, 32),  # SD 1.x
        (256, 32, 256, 128, 16),  # a VAE with 256 px tiles: half its tile, under the floor
        (64, 8, 64, 32, 4),  # below 8 latent px the tile is not rounded
        (256, 32, 100, 128, 16),  # a small image on a small-tile VAE: half the VAE's tile
        (512, 512, 512, 256, 256),  # a VAE that does not downsample: steps of 8 px
        (1024, 0, 1024, 512, 1),  # a VAE reporting no latent tile: no division by zero
    ],
)
def test_smaller_tiles_of_an_autoencoder_kl(tile, latent, side, want, want_latent):
    vae = KLVae(tile, latent)
    assert memory.smaller_tiles(vae, side) == want
    assert vae.use_tiling
    assert (vae.tile_sample_min_size, vae.tile_latent_min_size) == (want, want_latent)
    # whole pixels: diffusers steps through the image in ranges of these sizes
    assert type(vae.tile_sample_min_size) is int and type(vae.tile_latent_min_size) is int


def test_smaller_tiles_floor_is_a_parameter():
    vae = KLVae()
    assert memory.smaller_tiles(vae, 200, floor=128) == 128
    # 70 px tiles rounded down to whole 8-latent-px steps of the 8x VAE: 64 px
    assert memory.smaller_tiles(KLVae(), 140, floor=64) == 64


class WanVae:
    """Qwen-Image's (Wan) VAE: tile height/width and strides."""

    def __init__(self, stride=True):
        self.tile_sample_min_height = self.tile_sample_min_width = 256
        if stride:
            self.tile_sample_stride_height = self.tile_sample_stride_width = 192
        self.use_tiling = False
        self.config = SimpleNamespace()

    def enable_tiling(self):
        self.use_tiling = True


@pytest.mark.parametrize("side", [1328, 100])
def test_smaller_tiles_of_a_wan_vae(side):
    vae = WanVae()
    assert memory.smaller_tiles(vae, side) == 128  # half its 256 px tile (under the floor)
    assert vae.tile_sample_min_height == vae.tile_sample_min_width == 128
    assert vae.tile_sample_stride_height == vae.tile_sample_stride_width == 96  # 3/4 overlap
    assert type(vae.tile_sample_min_height) is int and type(vae.tile_sample_stride_width) is int


def test_smaller_tiles_of_a_wan_vae_with_a_large_tile_and_no_strides():
    vae = WanVae(stride=False)
    vae.tile_sample_min_height = vae.tile_sample_min_width = 1024
    assert memory.smaller_tiles(vae, 900) == 450
    assert vae.tile_sample_min_width == 450 and not hasattr(vae, "tile_sample_stride_height")
    vae.tile_sample_min_height = vae.tile_sample_min_width = 1024
    assert memory.smaller_tiles(vae, 300) == 256  # not below the 256 px floor


def test_smaller_tiles_of_a_vae_without_tile_sizes_only_turns_tiling_on():
    vae = SimpleNamespace(use_tiling=False, tile_sample_min_size=None, tile_latent_min_size=8)
    vae.enable_tiling = lambda: setattr(vae, "use_tiling", True)
    assert memory.smaller_tiles(vae, 777) == 777 and vae.use_tiling
    assert vae.tile_sample_min_size is None


def test_smaller_tiles_needs_the_latent_size_for_the_kl_layout():
    vae = WanVae()
    vae.tile_sample_min_size = 1024  # but no tile_latent_min_size: the Wan layout applies
    assert memory.smaller_tiles(vae, 1328) == 128 and vae.tile_sample_min_size == 1024


# -- the out-of-memory decode fallback --------------------------------------------------------


def _oom():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")


class NoTilingVae:
    def decode(self, z):
        return z


def test_decode_fallback_is_installed_once_and_only_where_tiling_exists():
    assert not memory.install_decode_fallback(None)
    assert not memory.install_decode_fallback(NoTilingVae())
    assert not memory.install_decode_fallback(SimpleNamespace(decode=lambda z: z))
    vae = KLVae()
    assert memory.install_decode_fallback(vae)
    assert not memory.install_decode_fallback(vae)  # wrapped already
    assert vae.decode.__wrapped__ is KLVae.decode


def test_decode_without_an_error_is_the_vaes_own():
    vae = KLVae()
    memory.install_decode_fallback(vae)
    z = torch.zeros(1, 16, 128, 128)
    assert vae.decode(z, 1, return_dict=False) == ("image of", z)
    assert vae.decoded == [(False, 1024, (1,), {"return_dict": False})]


class OomVae(KLVae):
    def __init__(self, fails=1, error=None, **kw):
        super().__init__(**kw)
        self.fails = fails
        self.error = error or _oom()
        self.calls = []

    def decode(self, z, *args, **kwargs):
        self.decoded.append((self.use_tiling, self.tile_sample_min_size))
        self.calls.append((z, args, kwargs))
        if len(self.decoded) <= self.fails:
            raise self.error
        return "image"


def test_an_out_of_memory_decode_runs_again_in_smaller_tiles(caplog):
    vae = OomVae()
    memory.install_decode_fallback(vae)
    z = torch.zeros(1, 16, 64, 96)  # 512 x 768 px through the 8x VAE
    with caplog.at_level(logging.WARNING):
        assert vae.decode(z, 7, return_dict=False) == "image"
    # the retry: tiled, half the 768 px side (384 px is 48 latent px, a multiple of 8)
    assert vae.decoded == [(False, 1024), (True, 384)]
    assert [(c[0] is z, c[1], c[2]) for c in vae.calls] == [
        (True, (7,), {"return_dict": False})
    ] * 2
    [record] = caplog.records
    assert record.name == "studio.engine.diffusion.shared.memory"
    assert record.getMessage().startswith("Out of memory while decoding 768x512;")
    assert "384 px tiles" in record.getMessage()
    # the VAE's own settings are back for the next call
    assert (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size) == (
        False, 1024, 128,
    )  # fmt: skip


def test_the_vae_factor_follows_its_down_blocks(caplog):
    vae = OomVae(channels=(128, 256, 512))  # three blocks: 4x
    memory.install_decode_fallback(vae)
    with caplog.at_level(logging.WARNING):
        vae.decode(torch.zeros(1, 4, 100, 150))
    assert "decoding 600x400" in caplog.text
    # half the 600 px side, in whole 8-latent-px steps of the tile (64 px): 256 px
    assert vae.decoded[1] == (True, 256)


def test_a_vae_without_a_latent_tile_size_counts_8x(caplog):
    vae = OomVae(channels=(128, 256, 512))
    del vae.tile_latent_min_size
    memory.install_decode_fallback(vae)
    with caplog.at_level(logging.WARNING):
        vae.decode(torch.zeros(1, 4, 100, 150))
    assert "decoding 1200x800" in caplog.text


def test_video_latents_give_their_last_two_sides(caplog):
    # Qwen-Image's VAE decodes (batch, channels, frames, height, width) latents
    vae = OomVae()
    memory.install_decode_fallback(vae)
    with caplog.at_level(logging.WARNING):
        assert vae.decode(torch.zeros(1, 16, 1, 64, 96)) == "image"
    assert "decoding 768x512" in caplog.text


def test_a_vae_without_block_channels_counts_8x(caplog):
    vae = OomVae()
    del vae.config.block_out_channels
    memory.install_decode_fallback(vae)
    with caplog.at_level(logging.WARNING):
        vae.decode(torch.zeros(1, 16, 64, 64))
    assert "decoding 512x512" in caplog.text


def test_a_second_out_of_memory_is_raised_and_the_settings_restored():
    vae = OomVae(fails=2)
    memory.install_decode_fallback(vae)
    with pytest.raises(torch.OutOfMemoryError):
        vae.decode(torch.zeros(1, 16, 128, 128))
    assert len(vae.decoded) == 2
    assert (vae.use_tiling, vae.tile_sample_min_size) == (False, 1024)


def test_other_errors_are_not_retried():
    vae = OomVae(error=ValueError("bad latents"))
    memory.install_decode_fallback(vae)
    with pytest.raises(ValueError, match="bad latents"):
        vae.decode(torch.zeros(1, 16, 8, 8))
    assert len(vae.decoded) == 1


def test_the_cuda_cache_is_freed_before_the_retry_only_on_cuda(monkeypatch):
    freed = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
    vae = OomVae(fails=2)
    memory.install_decode_fallback(vae)
    z = SimpleNamespace(shape=(1, 16, 128, 128), device=torch.device("cuda"))
    with pytest.raises(torch.OutOfMemoryError):
        vae.decode(z)
    assert freed == [1]
    vae2 = OomVae(fails=2)
    memory.install_decode_fallback(vae2)
    with pytest.raises(torch.OutOfMemoryError):
        vae2.decode(torch.zeros(1, 16, 128, 128))
    assert freed == [1]


# A row with round GiB figures (decimal GB = GiB x 2**30 / 1e9), 512 px VAE tiles.
G = 2**30 / 1e9
ROW = ModelNeeds(
    "test", "Test", "flux1", 10 * G, 4 * G, 0.5 * G, 10, 4, 2 * G, 3 * G,
    te_layer_gb=0.5 * G, fp8_keep=0.2, te_keep=0.1, vae_tile_px=512,
)  # fmt: skip


def test_a_planned_decode_is_tiled_where_its_size_needs_it():
    # Model offload: only the 0.5 GiB VAE is resident at decode time. Untiled, the decode
    # needs 3 GiB x pixels / 1024**2; tiled, one 512 px tile (0.75 GiB) plus 24 bytes a pixel.
    plan = _plan("model", budget=3.6, needs=ROW)
    vae = KLVae(tile=512, latent=64)
    memory.install_decode_fallback(vae, plan)
    vae.decode(torch.zeros(1, 16, 128, 128))  # 1024 px: 3.5 GiB untiled, fits 3.6
    vae.decode(torch.zeros(1, 16, 128, 136))  # 1088 x 1024: 0.5 + 3.1875 > 3.6, tiled 1.28
    assert [d[0] for d in vae.decoded] == [False, True]
    assert not vae.use_tiling  # restored after the call
    vae.use_tiling = True  # the user's own tiling is kept as is
    vae.decode(torch.zeros(1, 16, 128, 128))
    assert vae.decoded[-1][0] is True


def test_a_planned_decode_is_tiled_on_a_vae_that_has_not_tiled_yet():
    plan = _plan("model", budget=3.6, needs=ROW)
    vae = KLVae(tile=512, latent=64)
    del vae.use_tiling  # set by the first enable_tiling()
    memory.install_decode_fallback(vae, plan)
    vae.decode(torch.zeros(1, 16, 128, 136))
    assert vae.decoded[-1][0] is True


def test_tiled_decode_needed_at_the_budget_boundary():
    # 1024 px on model offload: 0.5 + 3 = 3.5 GiB untiled, 0.5 + 0.75 + 0.0234 tiled
    assert memory.tiled_decode_needed(_plan("model", budget=3.49, needs=ROW), 1024, 1024)
    assert not memory.tiled_decode_needed(_plan("model", budget=3.51, needs=ROW), 1024, 1024)
    # all on the GPU the 14 GiB of other weights stay resident: 17.5 GiB untiled
    assert memory.tiled_decode_needed(_plan("none", budget=17.4, needs=ROW), 1024, 1024)
    assert not memory.tiled_decode_needed(_plan("none", budget=17.6, needs=ROW), 1024, 1024)
    # fp8 weights: 6 + 4 + 0.5 resident, 13.5 GiB untiled
    fp8 = _plan("none", "fp8", budget=13.4, needs=ROW)
    assert memory.tiled_decode_needed(fp8, 1024, 1024)
    assert not memory.tiled_decode_needed(_plan("none", "fp8", budget=13.6, needs=ROW), 1024, 1024)
    # NF4 text encoders: 4 x (0.1 + 0.9 x 4.5 / 16) = 1.4125 GiB, 14.9125 GiB untiled
    nf4 = _plan("none", "bf16", "nf4", budget=14.85, needs=ROW)
    assert memory.tiled_decode_needed(nf4, 1024, 1024)
    nf4 = _plan("none", "bf16", "nf4", budget=14.95, needs=ROW)
    assert not memory.tiled_decode_needed(nf4, 1024, 1024)
    # a non-square job: the longest side decides whether tiles apply
    assert memory.tiled_decode_needed(_plan("model", budget=0.1, needs=ROW), 1024, 300)
    assert memory.tiled_decode_needed(_plan("model", budget=0.1, needs=ROW), 300, 1024)
    # an image that fits one tile is never tiled
    assert not memory.tiled_decode_needed(_plan("model", budget=0.1, needs=ROW), 512, 512)
    # 1024 x 100: wider than a tile but with fewer pixels than one, tiles don't help
    assert not memory.tiled_decode_needed(_plan("model", budget=0.1, needs=ROW), 1024, 100)
    # 1024 x 262: just over one tile's pixels, tiles help (0.756 vs 0.768 GiB)
    assert memory.tiled_decode_needed(_plan("model", budget=1.2, needs=ROW), 1024, 262)


def test_a_decode_that_just_fits_is_not_tiled():
    # a 2 GiB decode and the 0.5 GiB VAE: exactly 2.5 GiB, within a 2.5 GiB budget
    row = ModelNeeds(**{**ROW.__dict__, "decode_gb": 2 * G})
    assert not memory.tiled_decode_needed(_plan("model", budget=2.5, needs=row), 1024, 1024)
    assert memory.tiled_decode_needed(_plan("model", budget=2.49, needs=row), 1024, 1024)


# 200 px VAE tiles: one tile is 3.8 % of the native 1024**2 pixels.
SMALL_TILES = ModelNeeds(**{**ROW.__dict__, "vae_tile_px": 200})


def test_tiny_decodes_count_at_least_a_twentieth_of_the_native_pixels():
    # 300 x 100 px is 2.9 % of 1024**2, counted as 5 %: 0.5 + 0.15 GiB untiled, and tiles
    # of 3.8 % (0.114 GiB) are smaller
    assert memory.tiled_decode_needed(_plan("model", budget=0.6, needs=SMALL_TILES), 300, 100)
    assert not memory.tiled_decode_needed(_plan("model", budget=0.66, needs=SMALL_TILES), 300, 100)
    # 200 x 100: no side over the tile, no tiles
    assert not memory.tiled_decode_needed(_plan("model", budget=0.1, needs=SMALL_TILES), 200, 100)


# -- load-time formats ----------------------------------------------------------------------


def test_load_kwargs_quantize_the_nf4_parts_only():
    assert memory.load_kwargs(_plan("model", "fp8")) == {}
    assert memory.load_kwargs(_plan("model", "q8_0")) == {}
    q = memory.load_kwargs(
        _plan("model", "nf4", "nf4"), {"text_encoders": "text_encoder,text_encoder_2"}
    )
    q = q["quantization_config"]
    assert q.quant_backend == "bitsandbytes_4bit"
    assert q.components_to_quantize == ["transformer", "text_encoder", "text_encoder_2"]
    assert q.quant_kwargs == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": torch.bfloat16,
    }  # fmt: skip
    q = memory.load_kwargs(_plan("model", "bf16", "nf4"))["quantization_config"]
    assert q.components_to_quantize == ["text_encoder"]  # a pipeline with one encoder
    q = memory.load_kwargs(_plan("model", "nf4", "bf16"), {"text_encoders": "x"})
    assert q["quantization_config"].components_to_quantize == ["transformer"]
