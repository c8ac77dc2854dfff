"""GAN upscaling through the real path: tiny random ESRGANs (spandrel's own architecture)
saved as .safetensors/.pth, loaded by spandrel, run tiled through the Runner."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
from safetensors.torch import save_file

from studio.core import resample
from studio.core.errors import ModelError
from studio.engine.fixtures import write_random_esrgan
from studio.engine.jobs.device import DeviceChoice
from studio.engine.jobs.events import Cancelled, Failed, Finished, Progress
from studio.engine.jobs.requests import UpscaleRequest
from studio.engine.jobs.runner import Runner
from studio.engine.restore import upscale as U


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upscalers")
    st4 = write_random_esrgan(folder / "tiny-x4.safetensors")
    pth4 = write_random_esrgan(folder / "tiny-x4.pth")  # the same weights (same seed)
    # Real-ESRGAN x2plus layout: pixel-unshuffle by 2, then a x4 RRDBNet -> x2 overall.
    st2 = write_random_esrgan(folder / "tiny-x2.safetensors", scale=2)
    return {"x4": st4, "x4_pth": pth4, "x2": st2, "folder": folder}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from PIL import Image

    src = Path(__file__).parents[2] / "data" / "photos" / "astronaut.png"
    return np.asarray(Image.open(src).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))


def _run(request: UpscaleRequest, runner: Runner | None = None, emit=None) -> Finished:
    final = (runner or Runner()).run(request, emit=emit)
    assert isinstance(final, Finished), getattr(final, "message", final)
    return final


# -- loading ----------------------------------------------------------------------------------
def test_safetensors_and_pth_load_the_same_model(esrgan):
    a = U.load_upscaler(esrgan["x4"])
    b = U.load_upscaler(esrgan["x4_pth"])
    assert isinstance(a, spandrel.ImageModelDescriptor)
    assert a.architecture.name == b.architecture.name == "ESRGAN"
    assert a.scale == b.scale == 4
    for (ka, va), (kb, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_describe_upscaler_reports_architecture_and_scale(esrgan):
    info = U.describe_upscaler(esrgan["x4"])
    assert info["architecture"] == "ESRGAN"
    assert info["scale"] == 4
    assert info["purpose"] == "SR"
    assert info["supports_half"] is True
    assert "8nf" in info["tags"] and "1nb" in info["tags"]
    x2 = U.describe_upscaler(esrgan["x2"])
    assert x2["scale"] == 2
    assert x2["size_requirements"]["multiple_of"] == 4  # unshuffle needs multiples of 4


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.target = str(marker)
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"model.0.weight": evil}, f)
    with pytest.raises(ModelError, match="refused|cannot load"):
        U.load_upscaler(bad)
    assert not marker.exists()


def test_non_upscaler_files_are_refused(tmp_path):
    weights = tmp_path / "not-sr.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, str(weights))
    with pytest.raises(ModelError, match="not an upscaler"):
        U.load_upscaler(weights)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(ModelError, match="notes.pth: cannot load"):
        U.load_upscaler(text)
    with pytest.raises(ModelError, match="no such model file"):
        U.resolve_upscaler(str(tmp_path / "missing.safetensors"))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="not a model file"):
        U.load_upscaler(other)


def test_non_upscaler_fails_the_job_with_exit_3(tmp_path, photo):
    weights = tmp_path / "not-sr.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(weights))
    final = Runner().run(UpscaleRequest(image=photo, model=str(weights)))
    assert isinstance(final, Failed)
    assert final.exit_code == 3
    assert "not an upscaler" in final.message and "\n" not in final.message


# -- sizes, scales, alpha ---------------------------------------------------------------------
def test_output_size_and_metadata(esrgan, photo):
    fin = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), scale=4, tile=0))
    out = fin.images[0]
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    info = fin.extra["upscale"]
    assert info["architecture"] == "ESRGAN" and info["model_scale"] == 4
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert fin.metadata[0]["upscale"]["size"] == [256, 256]


def test_model_output_is_the_network_output(esrgan, photo):
    """The upscale is the network applied to the image (not e.g. a resize)."""
    net = U.load_upscaler(esrgan["x4"])
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255.0
    ref = (net(x)[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    out = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), scale=4)).images[0]
    assert np.abs(out.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("scale", [2.0, 3.0, 8.0, 1.5])
def test_any_output_scale(esrgan, scale):
    img = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    fin = _run(UpscaleRequest(image=img, model=str(esrgan["x4"]), scale=scale, tile=0))
    assert fin.images[0].shape[:2] == (round(12 * scale), round(20 * scale))
    assert fin.extra["upscale"]["passes"] == 1  # x4 model: once, then Lanczos up/down


def test_plan_passes():
    assert U.plan_passes(4, 4) == 1
    assert U.plan_passes(4, 2) == 1
    assert U.plan_passes(4, 8) == 1
    assert U.plan_passes(4, 16) == 2
    assert U.plan_passes(2, 8) == 3
    assert U.plan_passes(1, 4) == 1


def test_x2_model_repeats_for_4x(esrgan):
    img = np.random.default_rng(2).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    fin = _run(UpscaleRequest(image=img, model=str(esrgan["x2"]), scale=4, tile=0))
    assert fin.images[0].shape == (40, 56, 3)
    assert fin.extra["upscale"]["passes"] == 2


@pytest.mark.parametrize("model", ["x4", "x2"])
def test_odd_sizes_meet_size_requirements(esrgan, model):
    img = np.random.default_rng(3).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    fin = _run(UpscaleRequest(image=img, model=str(esrgan[model]), scale=4, tile=0))
    assert fin.images[0].shape == (28, 52, 3)
    # tiled, with tiles that are not multiples of 4 at the edges
    big = np.random.default_rng(4).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    fin = _run(UpscaleRequest(image=big, model=str(esrgan[model]), scale=2, tile=32, overlap=8))
    assert fin.images[0].shape == (74, 90, 3)


def test_alpha_is_kept(esrgan):
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[2:12, 3:21, 3] = 255
    fin = _run(UpscaleRequest(image=rgba, model=str(esrgan["x4"]), scale=4, tile=0))
    out = fin.images[0]
    assert out.shape == (96, 128, 4)
    a = out[..., 3]
    # 3+ source px inside the opaque box (beyond Lanczos-3's reach of the edge): opaque
    assert a[5 * 4 : 9 * 4, 6 * 4 : 18 * 4].min() == 255
    assert a[16 * 4 :].max() == 0 and a[:, 25 * 4 :].max() == 0  # far away: transparent
    assert np.array_equal(a, resample.resize(rgba[..., 3], (128, 96)))


def test_grayscale_input_is_accepted(esrgan):
    gray = np.random.default_rng(6).integers(0, 256, (8, 8), dtype=np.uint8)
    fin = _run(UpscaleRequest(image=gray, model=str(esrgan["x4"]), scale=4))
    assert fin.images[0].shape == (32, 32, 3)


def test_lanczos_method_needs_no_model(photo):
    fin = _run(UpscaleRequest(image=photo, method="lanczos", scale=2.5, sharpen=0.5))
    assert fin.images[0].shape == (160, 160, 3)
    assert fin.extra["upscale"]["upscaler"] == "Lanczos"


def test_bad_scale_is_bad_input(esrgan, photo):
    for scale in (0.0, -2.0, 64.0):
        final = Runner().run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), scale=scale))
        assert isinstance(final, Failed) and final.exit_code == 2, scale


# -- tiling -----------------------------------------------------------------------------------
def test_tiled_matches_untiled(esrgan, photo):
    runner = Runner()
    whole = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=0), runner)
    assert whole.extra["upscale"]["tiles"] == 1
    tiled = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=32, overlap=16), runner)
    assert tiled.extra["upscale"]["tiles"] == 9
    diff = np.abs(whole.images[0].astype(int) - tiled.images[0].astype(int))
    assert diff.max() <= 2, diff.max()


def test_progress_per_tile_and_cancel_between_tiles(esrgan, photo, monkeypatch):
    calls = []
    original = spandrel.ImageModelDescriptor.__call__

    def counting(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", counting)
    runner = Runner()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 2:
            runner.cancel()

    final = runner.run(
        UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=32, overlap=8), emit=emit
    )
    assert isinstance(final, Cancelled)
    assert len(calls) == 2  # the third tile never ran
    steps = [(e.step, e.total) for e in events if isinstance(e, Progress)]
    assert steps == [(1, 9), (2, 9)]
    # the runner is usable again
    fin = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=0), runner)
    assert fin.images[0].shape == (256, 256, 3)


def test_out_of_memory_halves_the_tile_and_goes_on(esrgan, photo, monkeypatch):
    runner = Runner()
    ref = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=0), runner).images[0]
    original = spandrel.ImageModelDescriptor.__call__
    seen = []

    def limited(self, x):
        seen.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return original(self, x)

    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", limited)
    fin = _run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=64, overlap=8), runner)
    info = fin.extra["upscale"]
    assert info["start_tile"] == 64 and info["tile"] == 32 and info["oom_halvings"] == 1
    assert seen[0] == 64 and max(seen[1:]) <= 32
    assert any("halved" in n for n in info["notes"])
    diff = np.abs(fin.images[0].astype(int) - ref.astype(int))
    assert diff.max() <= 2, diff.max()


def test_out_of_memory_at_the_smallest_tile_fails_cleanly(esrgan, photo, monkeypatch):
    def always(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", always)
    final = Runner().run(UpscaleRequest(image=photo, model=str(esrgan["x4"]), tile=64))
    assert isinstance(final, Failed)
    assert "Out of memory" in final.message and "\n" not in final.message


def test_half_precision_overflow_falls_back_to_fp32(esrgan, photo, monkeypatch):
    descriptor = U.load_upscaler(esrgan["x4"])
    original = spandrel.ImageModelDescriptor.__call__

    def overflowing(self, x):
        y = original(self, x)
        return y if x.dtype == torch.float32 else torch.full_like(y, float("nan"))

    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", overflowing)
    choice = DeviceChoice(torch.device("cpu"), torch.bfloat16)
    out, stats = U.upscale_image(photo, descriptor, 4, choice, tile=32, overlap=8)
    assert stats.fp32_fallback and stats.dtype == "float32"
    assert out.shape == (256, 256, 3)
    assert descriptor.dtype == torch.float32


def test_dtype_choice_follows_model_support():
    from types import SimpleNamespace

    cpu = torch.device("cpu")
    both = SimpleNamespace(supports_half=True, supports_bfloat16=True)
    no_half = SimpleNamespace(supports_half=False, supports_bfloat16=True)
    neither = SimpleNamespace(supports_half=False, supports_bfloat16=False)
    assert U.choose_dtype(both, DeviceChoice(cpu, torch.float32)) == torch.float32
    assert U.choose_dtype(both, DeviceChoice(cpu, torch.float16)) == torch.float32
    assert U.choose_dtype(no_half, DeviceChoice(cpu, torch.bfloat16)) == torch.bfloat16
    assert U.choose_dtype(neither, DeviceChoice(cpu, torch.bfloat16)) == torch.float32
    mps = torch.device("mps")
    assert U.choose_dtype(both, DeviceChoice(mps, torch.float16)) == torch.float16
    assert U.choose_dtype(no_half, DeviceChoice(mps, torch.float16)) == torch.bfloat16
    assert U.choose_dtype(neither, DeviceChoice(mps, torch.float16)) == torch.float32


def test_auto_tile_on_cpu_is_fixed_and_aligned(esrgan):
    d = U.load_upscaler(esrgan["x2"])
    tile = U.auto_tile(d, torch.device("cpu"), torch.float32)
    assert tile == U.CPU_TILE and tile % d.size_requirements.multiple_of == 0


def test_model_is_cached_in_the_runner(esrgan, photo, monkeypatch):
    runner = Runner()
    loads = []
    original = U.load_upscaler
    monkeypatch.setattr(U, "load_upscaler", lambda p: loads.append(p) or original(p))
    small = photo[:16, :16]
    _run(UpscaleRequest(image=small, model=str(esrgan["x4"])), runner)
    _run(UpscaleRequest(image=small, model=str(esrgan["x4"]), scale=2), runner)
    assert len(loads) == 1


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
def test_a_transformer_upscaler_with_a_minimum_size(tmp_path):
    """SwinIR (spandrel's architecture, tiny random weights): size_requirements.minimum is
    met by padding small tiles, the output is cropped back."""
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    net = SwinIR(
        img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
        upsampler="pixelshuffle", mlp_ratio=2.0,
    )  # fmt: skip
    path = tmp_path / "tiny-swinir-x2.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    info = U.describe_upscaler(path)
    assert info["architecture"] == "SwinIR" and info["scale"] == 2
    assert info["size_requirements"]["minimum"] == 16
    img = np.random.default_rng(7).integers(0, 256, (9, 40, 3), dtype=np.uint8)  # 9 < 16
    fin = _run(UpscaleRequest(image=img, model=str(path), scale=2, tile=32, overlap=8))
    assert fin.images[0].shape == (18, 80, 3)
    assert fin.extra["upscale"]["tiles"] == 2


def test_tiled_matches_untiled_for_a_model_with_multiple_of(esrgan):
    """x2plus layout (pixel-unshuffle: sides must be multiples of 4): interior tiles are
    aligned, the last ones padded, and the blend still matches one untiled pass."""
    img = np.random.default_rng(8).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    img = np.ascontiguousarray(resample.resize(resample.resize(img, (18, 12)), (70, 45)))
    runner = Runner()
    whole = _run(UpscaleRequest(image=img, model=str(esrgan["x2"]), scale=2), runner)
    tiled = _run(
        UpscaleRequest(image=img, model=str(esrgan["x2"]), scale=2, tile=32, overlap=16),
        runner,
    )
    assert tiled.extra["upscale"]["tiles"] > 4
    diff = np.abs(whole.images[0].astype(int) - tiled.images[0].astype(int))
    assert diff.max() <= 2, diff.max()
