"""LaMa through spandrel with random weights (no download): the spandrel LaMa architecture
is built here, saved as .safetensors (spandrel's key names) and as a TorchScript .pt with the
original ``generator.*`` names (the format of the published big-lama.pt), and loaded back
through the same ``spandrel.ModelLoader().load_from_file`` path users hit. Random weights
prove the plumbing (load, pad, crop, paste-back, selection), not the fill quality."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core import masks
from studio.core.errors import ModelError
from studio.core.imageio import load_image
from studio.engine.fixtures import write_random_esrgan, write_random_lama
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import InpaintRequest
from studio.engine.jobs.runner import Runner
from studio.engine.restore.lama import (
    NOT_INSTALLED,
    find_lama,
    lama_inpaint,
    load_lama,
    resolve_lama,
)


@pytest.fixture(scope="module")
def lama_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lama")
    st = write_random_lama(folder / "lama-random.safetensors")
    pt = write_random_lama(folder / "big-lama.pt")  # TorchScript, the big-lama.pt layout
    return {"safetensors": st, "torchscript": pt}


@pytest.fixture
def small(photos):
    img = masks.resize(load_image(photos.chelsea), (100, 75))  # sides not multiples of 8
    mask = np.zeros((75, 100), np.uint8)
    mask[40:70, 70:96] = 255  # near the corner: the crop box cannot snap to 8
    return img, mask


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript"])
def test_load_random_lama_both_formats(lama_files, fmt):
    desc = load_lama(lama_files[fmt], "cpu")
    assert desc.architecture.id == "LaMa"
    assert desc.size_requirements.multiple_of == 8


def test_both_formats_give_the_same_model(lama_files, small):
    img, mask = small
    a = lama_inpaint(load_lama(lama_files["safetensors"], "cpu"), img[:40, :48], mask[:40, :48])
    b = lama_inpaint(load_lama(lama_files["torchscript"], "cpu"), img[:40, :48], mask[:40, :48])
    assert np.array_equal(a, b)


def test_lama_job_on_crop(lama_files, small):
    img, mask = small
    runner = Runner(device="cpu")
    final = runner.run(
        InpaintRequest(
            image=img, mask=mask, method="lama", model=str(lama_files["torchscript"]), padding=16
        )
    )
    assert isinstance(final, Finished), getattr(final, "detail", final)
    out = final.images[0]
    (box,) = final.extra["regions"]
    assert box == masks.crop_box(masks.bbox(mask), (100, 75), 16)
    inside = np.zeros(mask.shape, bool)
    inside[box[1] : box[1] + box[3], box[0] : box[0] + box[2]] = True
    assert np.array_equal(out[~inside], img[~inside])
    # LaMa composites its prediction into the hole only; the paste-back keeps the rest
    assert np.array_equal(out[mask == 0], img[mask == 0])
    assert (out[mask > 0] != img[mask > 0]).any(axis=1).mean() > 0.5
    assert final.metadata[0]["model"] == "big-lama.pt"
    # the model stays cached for the next job
    assert any(k.startswith("lama:") for k in runner._cache)


def test_pads_odd_sizes(lama_files):
    desc = load_lama(lama_files["safetensors"], "cpu")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    mask = np.zeros((37, 45), np.uint8)
    mask[10:20, 10:30] = 255
    out = lama_inpaint(desc, img, mask)
    assert out.shape == (37, 45, 3)
    assert np.array_equal(out[mask == 0], img[mask == 0])


def test_installed_lama_is_found_and_auto_uses_it(lama_files, small, tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_LAMA", raising=False)
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    assert find_lama() is None
    with pytest.raises(ModelError, match="LaMa is not installed"):
        resolve_lama("")
    (tmp_path / "models" / "lama").mkdir(parents=True)
    target = tmp_path / "models" / "lama" / "big-lama.pt"
    target.symlink_to(lama_files["torchscript"])
    assert find_lama() == target
    assert resolve_lama("big-lama") == target
    img, mask = small
    final = Runner(device="cpu").run(InpaintRequest(image=img, mask=mask, method="auto", padding=8))
    assert isinstance(final, Finished) and final.extra["method"] == "lama"


def test_missing_and_wrong_files(tmp_path, monkeypatch, small):
    monkeypatch.delenv("STUDIO_LAMA", raising=False)
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="no such LaMa file"):
        resolve_lama(str(tmp_path / "nope.pt"))
    img, mask = small
    final = Runner(device="cpu").run(InpaintRequest(image=img, mask=mask, method="lama"))
    assert isinstance(final, Failed) and final.exit_code == 3 and final.message == NOT_INSTALLED
    # an ESRGAN file is a model, but not LaMa
    esr = write_random_esrgan(tmp_path / "esrgan.safetensors")
    with pytest.raises(ModelError, match="not LaMa"):
        load_lama(esr, "cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load as a LaMa model"):
        load_lama(junk, "cpu")
