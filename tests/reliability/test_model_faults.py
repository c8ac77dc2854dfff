"""Faults around models: a model deleted or damaged mid-session, and the
accelerator running out of memory inside generation and the upscaler. Each ends in one clear
Failed (exit code 3 for a model problem), and the next job on the same Runner works."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.cli import main
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import GenerateRequest, UpscaleRequest
from studio.engine.jobs.runner import Runner

from .corpus import assert_one_clear_line

WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"


def gen(model: Path, seed: int = 0) -> GenerateRequest:
    return GenerateRequest(
        model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=seed, preview="off"
    )


def assert_model_failure(final) -> None:
    assert isinstance(final, Failed), final
    assert final.exit_code == 3, (final.exit_code, final.message)
    assert_one_clear_line(final.message)


@pytest.fixture
def two_models(tiny_models, tmp_path) -> tuple[Path, Path]:
    a, b = tmp_path / "model-a", tmp_path / "model-b"
    shutil.copytree(tiny_models.sd, a)
    shutil.copytree(tiny_models.sd, b)
    return a, b


def test_weight_file_deleted_mid_session(two_models, tmp_path):
    a, b = two_models
    runner = Runner(device="cpu")
    assert isinstance(runner.run(gen(a)), Finished)
    backup = tmp_path / "backup.safetensors"
    shutil.move(a / WEIGHTS, backup)
    # Another model takes the cache's place (it keeps one), then the damaged one is asked for.
    assert isinstance(runner.run(gen(b)), Finished)
    assert_model_failure(runner.run(gen(a, seed=1)))
    assert runner.current_job is None
    shutil.move(backup, a / WEIGHTS)
    assert isinstance(runner.run(gen(a, seed=2)), Finished)


def test_model_folder_deleted_after_cache_cleared(two_models, tmp_path):
    a, _ = two_models
    runner = Runner(device="cpu")
    first = runner.run(gen(a))
    assert isinstance(first, Finished)
    moved = tmp_path / "moved-away"
    shutil.move(a, moved)
    runner.clear_cache()
    final = runner.run(gen(a))
    assert isinstance(final, Failed)
    assert_one_clear_line(final.message)
    assert "model-a" in final.message and "no such" in final.message
    assert final.exit_code == 3  # model missing: exit 3
    shutil.move(moved, a)
    again = runner.run(gen(a))
    assert isinstance(again, Finished)
    assert np.array_equal(again.images[0], first.images[0])  # same seed, same model


def test_weight_file_truncated_on_disk(two_models):
    """Half a weight file (a copy cut short, a full disk): a model error, not a crash."""
    a, _ = two_models
    runner = Runner(device="cpu")
    data = (a / WEIGHTS).read_bytes()
    (a / WEIGHTS).write_bytes(data[: len(data) // 2])
    assert_model_failure(runner.run(gen(a)))
    (a / WEIGHTS).write_bytes(data)
    assert isinstance(runner.run(gen(a)), Finished)


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--model", "{gone}", "--prompt", "x"],
        ["generate", "--model", "{sd}", "--prompt", "x", "--lora", "{gone}.safetensors"],
        ["inpaint", "--image", "{img}", "--mask", "{mask}", "--method", "{gone}", "--prompt", "x"],
        ["inpaint", "--image", "{img}", "--mask", "{mask}", "--lama", "{gone}.pth"],
    ],
    ids=["generate-model", "generate-lora", "inpaint-method", "inpaint-lama"],
)
def test_missing_model_is_exit_3(argv, two_models, tmp_path, capsys):
    a, _ = two_models
    gone = tmp_path / "deleted-model"
    img = tmp_path / "i.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    mask = tmp_path / "m.png"
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 16:48] = 255
    Image.fromarray(m).save(mask)
    out = tmp_path / "o.png"
    argv = [x.format(gone=gone, sd=a, img=img, mask=mask) for x in argv] + ["--out", str(out)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert_one_clear_line(err)
    assert not out.exists()
    assert rc == 3, err


# -- out of memory ---------------------------------------------------------------------------


@pytest.fixture
def oom_on_second_unet_call(monkeypatch):
    """Make the UNet raise the accelerator's out-of-memory error on its 2nd call (mid-job)."""
    from diffusers import UNet2DConditionModel

    original = UNet2DConditionModel.forward
    calls = []

    def forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", forward)
    return lambda: monkeypatch.setattr(UNet2DConditionModel, "forward", original)


def test_generation_out_of_memory_then_next_job_works(tiny_models, oom_on_second_unet_call):
    runner = Runner(device="cpu")
    final = runner.run(gen(tiny_models.sd))
    assert isinstance(final, Failed)
    assert_one_clear_line(final.message)
    assert "out of memory" in final.message.lower()
    assert "Tried to allocate" not in final.message  # the user gets advice, not torch's text
    oom_on_second_unet_call()  # memory is available again
    assert isinstance(runner.run(gen(tiny_models.sd)), Finished)
    assert runner.current_job is None


def test_cli_generation_out_of_memory(tiny_models, oom_on_second_unet_call, tmp_path, capsys):
    out = tmp_path / "o.png"
    argv = ["generate", "--model", str(tiny_models.sd), "--prompt", "x", "--steps", "2"]
    rc = main(argv + ["--size", "64x64", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert_one_clear_line(err)
    assert "out of memory" in err.lower()
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_esrgan(tmp_path_factory) -> Path:
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    path = tmp_path_factory.mktemp("upscaler") / "tiny-x4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_upscaler_out_of_memory_at_every_tile_then_next_job_works(tiny_esrgan, monkeypatch):
    """tests/engine/test_upscale.py covers the tile halving and the clean failure at the
    smallest tile; this adds that the same Runner then upscales normally."""
    import spandrel

    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    original = spandrel.ImageModelDescriptor.__call__

    def always(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory")

    runner = Runner(device="cpu")
    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", always)
    final = runner.run(UpscaleRequest(image=image, model=str(tiny_esrgan), tile=64))
    assert isinstance(final, Failed)
    assert_one_clear_line(final.message)
    assert "memory" in final.message.lower()
    monkeypatch.setattr(spandrel.ImageModelDescriptor, "__call__", original)
    ok = runner.run(UpscaleRequest(image=image, model=str(tiny_esrgan), tile=64))
    assert isinstance(ok, Finished)
    assert ok.images[0].shape == (192, 160, 3)
