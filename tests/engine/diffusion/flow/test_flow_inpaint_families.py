"""Crop-to-mask inpainting per flow family through the Runner, with the GenerateRequest the
canvas sends (init_image + mask + mask_padding): FLUX.1 Fill, FLUX.1 Kontext (its inpaint
pipeline), FLUX.2 klein, Z-Image, SD 3.5 and Qwen-Image. The output is the init image's size,
pixels beyond the mask's feathered edge are the input's bit for bit, the hole is redrawn and
the family is in the metadata."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from flow_requests import flow_request

from studio.engine.jobs.events import Failed, Finished, Progress
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner

H, W = 80, 112
PADDING = 16  # feather = min(8, padding // 2) = 8


@pytest.fixture(scope="session")
def kontext(flow_models, session_tmp):
    """A Kontext folder: the tiny FLUX.1 under FluxKontextPipeline (what tells Kontext apart)."""
    folder = session_tmp / "tiny-flow-models" / "tiny-flux1-kontext"
    if not (folder / "model_index.json").exists():
        shutil.copytree(flow_models.flux1, folder)
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"] = "FluxKontextPipeline"
        (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(autouse=True)
def small_crops(monkeypatch):
    """The crops run at 64x64 (the families' native ~1024^2 is slow on a CPU test)."""
    from studio.engine.diffusion.flow import inpaint as flow_inpaint

    monkeypatch.setattr(flow_inpaint, "flow_target", lambda fam: 64)


def _model(flow_models, kontext, name):
    return {"fill": flow_models.fill, "kontext": kontext}.get(name) or getattr(flow_models, name)


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[30:46, 40:64] = 255
    return image, mask


def _req(model, image, mask, **kw) -> GenerateRequest:
    base = dict(width=W, height=H, guidance=1.0, seed=9, mask_padding=PADDING, strength=1.0)
    return flow_request(model, **{**base, "init_image": image, "mask": mask, **kw})


CASES = {
    "fill": "flux1-fill",
    "kontext": "flux1-kontext",
    "flux2": "flux2",
    "zimage": "zimage",
    "sd3": "sd3",
    "qwen": "qwen",
}


@pytest.mark.parametrize("name", list(CASES))
def test_crop_to_mask_inpaint_keeps_everything_beyond_the_feather(flow_models, kontext, name):
    image, mask = _scene()
    events: list = []
    final = Runner(device="cpu", dtype="float32").run(
        _req(_model(flow_models, kontext, name), image, mask), emit=events.append
    )
    assert isinstance(final, Finished), getattr(final, "message", final)
    (out,) = final.images
    assert out.shape == image.shape and out.dtype == np.uint8
    # beyond the feathered edge (grow radius/2 + feather radius, plus a margin): unchanged
    reach = cv2.dilate(mask, np.ones((2 * 16 + 1, 2 * 16 + 1), np.uint8)) > 0
    assert np.array_equal(out[~reach], image[~reach])
    assert reach.sum() < mask.size  # the check above is not vacuous
    assert not np.array_equal(out[mask > 0], image[mask > 0])  # the hole was redrawn
    meta = final.metadata[0]
    assert meta["family"] == CASES[name] and final.extra["family"] == CASES[name]
    assert (meta["width"], meta["height"]) == (W, H)
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 2


def test_two_holes_are_two_crops_and_strength_cuts_the_steps(flow_models):
    image, _ = _scene(1)
    mask = np.zeros((H, W), np.uint8)
    mask[4:14, 4:14] = 255
    mask[60:72, 90:104] = 255
    events: list = []
    final = Runner(device="cpu", dtype="float32").run(
        _req(flow_models.zimage, image, mask, steps=4, strength=0.5), emit=events.append
    )
    assert isinstance(final, Finished), getattr(final, "message", final)
    assert len(final.extra["regions"]) == 2
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 2 * 2  # 2 crops x 2 steps
    out = final.images[0]
    reach = cv2.dilate(mask, np.ones((33, 33), np.uint8)) > 0
    assert np.array_equal(out[~reach], image[~reach])


def test_fill_ignores_strength_as_its_descriptor_says(flow_models):
    """FLUX.1 Fill takes the masked image as a model input (no ``strength_tasks``): the whole
    schedule runs whatever strength the canvas sends."""
    image, mask = _scene(2)
    events: list = []
    final = Runner(device="cpu", dtype="float32").run(
        _req(flow_models.fill, image, mask, steps=4, strength=0.5), emit=events.append
    )
    assert isinstance(final, Finished), getattr(final, "message", final)
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 4


def test_rgba_canvas_image_keeps_its_alpha_outside_the_mask(flow_models):
    image, mask = _scene(3)
    alpha = np.full((H, W, 1), 200, np.uint8)
    rgba = np.concatenate([image, alpha], axis=2)
    final = Runner(device="cpu", dtype="float32").run(_req(flow_models.sd3, rgba, mask))
    assert isinstance(final, Finished), getattr(final, "message", final)
    out = final.images[0]
    assert out.shape == rgba.shape
    reach = cv2.dilate(mask, np.ones((33, 33), np.uint8)) > 0
    assert np.array_equal(out[~reach], rgba[~reach])


def test_an_empty_mask_is_one_clear_refusal(flow_models):
    image, _ = _scene()
    final = Runner(device="cpu", dtype="float32").run(
        _req(flow_models.qwen, image, np.zeros((H, W), np.uint8))
    )
    assert isinstance(final, Failed) and "mask is empty" in final.message
