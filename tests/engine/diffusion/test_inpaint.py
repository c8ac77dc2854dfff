"""Inpainting jobs through the Runner: classical backends on real photos, SD inpainting with
tiny models (9-channel and ordinary UNets, SD1 and SDXL), previews in the crop, cancel,
outpainting and its seam."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core import masks
from studio.core.imageio import load_image
from studio.core.outpaint import Extension
from studio.engine.diffusion.route import outpaint_request
from studio.engine.jobs.events import Cancelled, Failed, Finished, Preview, Progress
from studio.engine.jobs.requests import GenerateRequest, InpaintRequest
from studio.engine.jobs.runner import Runner


def boxes_cover(shape, boxes) -> np.ndarray:
    inside = np.zeros(shape[:2], bool)
    for x, y, w, h in boxes:
        inside[y : y + h, x : x + w] = True
    return inside


def object_mask(shape, rect) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    x, y, w, h = rect
    m[y : y + h, x : x + w] = 255
    return m


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu")


@pytest.fixture(scope="module")
def sdxl_inpaint(tiny_models, tmp_path_factory):
    """A tiny SDXL *inpainting* pipeline (9-channel UNet with SDXL's text_time embedding),
    built from the tiny SDXL's text encoders and VAE."""
    import torch
    from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    from studio.engine.fixtures import tiny_models as tiny

    base = StableDiffusionXLPipeline.from_pretrained(tiny_models.sdxl)
    torch.manual_seed(0)
    pipe = StableDiffusionXLInpaintPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        text_encoder_2=base.text_encoder_2,
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2,
        unet=tiny.tiny_unet(in_channels=9, sdxl=True),
        scheduler=base.scheduler,
    )
    folder = tmp_path_factory.mktemp("tiny-sdxl-inpaint")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("method", ["telea", "ns"])
@pytest.mark.parametrize(
    "name, rect",
    [
        ("astronaut", (200, 150, 60, 80)),
        ("chelsea", (300, 90, 50, 40)),
        ("coffee", (250, 120, 90, 70)),
    ],
)
def test_classical_changes_mask_only(photos, runner, method, name, rect):
    img = load_image(getattr(photos, name))
    mask = object_mask(img.shape, rect)
    final = runner.run(InpaintRequest(image=img, mask=mask, method=method, padding=32))
    assert isinstance(final, Finished), final
    out = final.images[0]
    assert out.shape == img.shape and out.dtype == np.uint8
    (box,) = final.extra["regions"]
    assert box == masks.crop_box(masks.bbox(mask), (img.shape[1], img.shape[0]), 32)
    inside = boxes_cover(img.shape, [box])
    assert np.array_equal(out[~inside], img[~inside])  # outside the padded crop: bit-identical
    assert np.array_equal(out[mask == 0], img[mask == 0])  # classical: only the mask changes
    changed = (out[mask > 0] != img[mask > 0]).any(axis=1).mean()
    assert changed > 0.5
    # Telea/NS fill from the boundary: the fill's colour is close to the surrounding ring
    ring = (masks.grow(mask, 6) > 0) & (mask == 0)
    assert np.abs(out[mask > 0].mean(0) - img[ring].mean(0)).max() < 40
    assert final.metadata[0]["inpaint_method"] == method


def test_auto_without_lama_is_telea(runner, photos, monkeypatch):
    monkeypatch.delenv("STUDIO_LAMA", raising=False)
    img = load_image(photos.chelsea)
    final = runner.run(
        InpaintRequest(image=img, mask=object_mask(img.shape, (10, 10, 20, 20)), method="auto")
    )
    assert isinstance(final, Finished) and final.extra["method"] == "telea"


def test_two_far_strokes_make_two_small_crops(runner, photos):
    img = load_image(photos.coffee)
    mask = object_mask(img.shape, (10, 10, 20, 20)) | object_mask(img.shape, (560, 350, 20, 20))
    final = runner.run(InpaintRequest(image=img, mask=mask, method="telea", padding=16))
    boxes = final.extra["regions"]
    assert len(boxes) == 2
    assert sum(w * h for _, _, w, h in boxes) < 0.05 * img.shape[0] * img.shape[1]
    inside = boxes_cover(img.shape, boxes)
    assert np.array_equal(final.images[0][~inside], img[~inside])


def test_rgba_input_keeps_alpha_outside(runner):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    mask = object_mask(img.shape, (20, 20, 16, 16))
    final = runner.run(InpaintRequest(image=img, mask=mask, method="telea", padding=8))
    out = final.images[0]
    assert out.shape == (64, 64, 4)
    assert np.array_equal(out[mask == 0][:, :3], img[mask == 0][:, :3])
    (box,) = final.extra["regions"]
    inside = boxes_cover(img.shape, [box])
    assert np.array_equal(out[~inside], img[~inside])
    assert (out[mask > 0, 3] == 255).all()
    assert (out[..., 3] >= img[..., 3]).all()  # the opaque patch composited over


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask=np.zeros((64, 64), np.uint8)), "mask is empty"),
        (dict(mask=np.zeros((32, 64), np.uint8)), "the mask is 64x32 but the image is 64x64"),
        (dict(method="magic"), "unknown inpaint method"),
        (dict(method="diffusion"), "needs a Stable Diffusion model"),
        (dict(padding=-3), "padding"),
    ],
)
def test_bad_requests_fail_with_exit_2(runner, kwargs, match):
    img = np.zeros((64, 64, 3), np.uint8)
    base = dict(image=img, mask=object_mask(img.shape, (8, 8, 8, 8)), method="telea")
    final = runner.run(InpaintRequest(**{**base, **kwargs}))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert match in final.message and "\n" not in final.message


# -- diffusion ---------------------------------------------------------------------------------------
def _small_photo(photos):
    """chelsea shrunk to 150x100: a mask crop of ~64 px keeps the tiny-model runs fast."""
    return masks.resize(load_image(photos.chelsea), (150, 100))


@pytest.mark.parametrize("which", ["sd_inpaint", "sd", "sdxl", "sdxl_inpaint"])
def test_diffusion_inpaint_end_to_end(runner, tiny_models, sdxl_inpaint, photos, which):
    img = _small_photo(photos)
    mask = object_mask(img.shape, (60, 30, 24, 24))
    events = []
    final = runner.run(
        InpaintRequest(
            image=img,
            mask=mask,
            method="diffusion",
            model=str(sdxl_inpaint if which == "sdxl_inpaint" else getattr(tiny_models, which)),
            prompt="a cat",
            steps=2,
            padding=16,
            seed=5,
        ),
        emit=events.append,
    )
    assert isinstance(final, Finished), getattr(final, "detail", final)
    out = final.images[0]
    (box,) = final.extra["regions"]
    assert box == masks.crop_box(masks.bbox(mask), (150, 100), 16)
    inside = boxes_cover(img.shape, [box])
    assert out.shape == img.shape
    assert np.array_equal(out[~inside], img[~inside])
    assert (out[mask > 0] != img[mask > 0]).any(axis=1).mean() > 0.5
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and all(p.region == box for p in previews)
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == sorted(steps) and max(steps) >= 2  # progress only moves forward
    meta = final.metadata[0]
    assert meta["inpaint_method"] == "diffusion" and meta["prompt"] == "a cat" and meta["seed"] == 5


def test_diffusion_inpaint_is_seeded(runner, tiny_models, photos):
    img = _small_photo(photos)
    mask = object_mask(img.shape, (60, 30, 24, 24))
    req = dict(
        image=img,
        mask=mask,
        method="diffusion",
        model=str(tiny_models.sd_inpaint),
        steps=2,
        padding=8,
    )
    a = runner.run(InpaintRequest(**req, seed=1)).images[0]
    b = runner.run(InpaintRequest(**req, seed=1)).images[0]
    c = runner.run(InpaintRequest(**req, seed=2)).images[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generate_with_init_and_mask_goes_through_diffusion_inpaint(runner, tiny_models, photos):
    img = _small_photo(photos)
    mask = object_mask(img.shape, (100, 60, 20, 20))
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sd_inpaint),
            prompt="x",
            init_image=img,
            mask=mask,
            mask_padding=8,
            strength=1.0,
            steps=2,
            count=2,
            seed=3,
        )
    )
    assert isinstance(final, Finished), getattr(final, "detail", final)
    assert len(final.images) == 2 and [m["seed"] for m in final.metadata] == [3, 4]
    (box,) = final.extra["regions"]
    inside = boxes_cover(img.shape, [box])
    for out in final.images:
        assert out.shape == img.shape
        assert np.array_equal(out[~inside], img[~inside])
    assert not np.array_equal(final.images[0], final.images[1])
    assert final.metadata[0]["width"] == 150 and final.metadata[0]["height"] == 100


def test_cancel_mid_inpaint_then_next_job_works(runner, tiny_models, photos):
    img = _small_photo(photos)
    mask = object_mask(img.shape, (60, 30, 24, 24))
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 1:
            runner.cancel()

    req = InpaintRequest(
        image=img, mask=mask, method="diffusion", model=str(tiny_models.sd), steps=5, padding=8
    )
    final = runner.run(req, emit=emit)
    assert isinstance(final, Cancelled)
    assert not any(isinstance(e, Finished) for e in events)
    # nothing ran after the step that saw the cancel
    assert max(e.step for e in events if isinstance(e, Progress)) == 1
    again = runner.run(req)
    assert isinstance(again, Finished)


def test_cancel_between_regions_classical(runner, photos):
    img = load_image(photos.coffee)
    mask = object_mask(img.shape, (10, 10, 20, 20)) | object_mask(img.shape, (560, 350, 20, 20))
    seen = []

    def emit(event):
        seen.append(event)
        if isinstance(event, Progress) and event.step == 1:
            runner.cancel()

    final = runner.run(InpaintRequest(image=img, mask=mask, method="telea", padding=8), emit=emit)
    assert isinstance(final, Cancelled)
    assert sum(isinstance(e, Preview) for e in seen) == 1


# -- outpainting -------------------------------------------------------------------------------------
def column_steps(image: np.ndarray) -> np.ndarray:
    d = np.abs(np.diff(image.astype(np.float32), axis=1)).mean(axis=(0, 2))
    return np.concatenate([[0.0], d])


def test_outpaint_size_and_seamless(runner, photos):
    img = load_image(photos.coffee)  # 600x400
    ext = Extension(left=96, right=64)
    req = outpaint_request(
        InpaintRequest(image=img, mask=img[..., 0], method="telea"), ext, overlap=24
    )
    final = runner.run(req)
    assert isinstance(final, Finished)
    out = final.images[0]
    assert out.shape == (400, 600 + 160, 3)
    # left and right strips are separate blobs: two crops, not the whole canvas
    assert len(final.extra["regions"]) == 2
    # the original, minus the overlap bands, is untouched
    assert np.array_equal(out[:, 96 + 24 : 96 + 600 - 24], img[:, 24:-24])
    # the seams (old edge, and the inner edge of the band) are no harder than the photo's own
    # column-to-column changes
    g = column_steps(out)
    photo_g = column_steps(img)[1:]
    for seam in (96, 96 + 24, 96 + 600, 96 + 600 - 24):
        assert g[seam] <= np.percentile(photo_g, 95), seam
    # and the new area is not flat: it continues the photo
    assert out[:, :96].std() > 5


def test_outpaint_with_tiny_sd(runner, tiny_models):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    req = InpaintRequest(
        image=img,
        mask=img[..., 0],
        method="diffusion",
        model=str(tiny_models.sd_inpaint),
        steps=2,
        padding=8,
    )
    final = runner.run(outpaint_request(req, Extension(top=32), overlap=8))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    out = final.images[0]
    assert out.shape == (96, 64, 3)
    (box,) = final.extra["regions"]
    assert np.array_equal(out[box[1] + box[3] :], img[box[1] + box[3] - 32 :])


@pytest.mark.parametrize(
    "which, cls, channels",
    [
        ("sd_inpaint", "StableDiffusionInpaintPipeline", 9),
        ("sd", "StableDiffusionInpaintPipeline", 4),
        ("sdxl", "StableDiffusionXLInpaintPipeline", 4),
        ("sdxl_inpaint", "StableDiffusionXLInpaintPipeline", 9),
    ],
)
def test_inpaint_pipeline_class_and_model_size(
    runner, tiny_models, sdxl_inpaint, which, cls, channels
):
    """9-channel inpainting UNets and ordinary ones both get the family's inpaint pipeline;
    the crop is scaled to the model's native size (tiny models: 8 latents x 8 = 64 px)."""
    from studio.core.cancel import CancelToken
    from studio.engine.diffusion.sd.inpaint import model_target
    from studio.engine.diffusion.sd.pipeline import load_pipeline
    from studio.engine.jobs.runner import JobContext

    ctx = JobContext(0, lambda e: None, CancelToken(), runner)
    model = sdxl_inpaint if which == "sdxl_inpaint" else getattr(tiny_models, which)
    pipe = load_pipeline(ctx, str(model), task="inpaint")
    assert type(pipe).__name__ == cls
    assert pipe.unet.config.in_channels == channels
    assert model_target(pipe) == 64


def test_outpaint_corner_runs_in_strips(runner, photos):
    """Left + top would join into one L-shaped blob (crop = whole canvas); the two passes keep
    every crop a strip along one side."""
    from studio.core.cancel import CancelToken
    from studio.engine.diffusion.route import outpaint
    from studio.engine.jobs.runner import JobContext

    img = load_image(photos.coffee)  # 600x400
    events = []
    ctx = JobContext(0, events.append, CancelToken(), runner)
    req = InpaintRequest(image=img, mask=img[..., 0], method="telea", padding=16)
    done = outpaint(ctx, req, Extension(left=64, top=48), overlap=16)
    out = done.images[0]
    assert out.shape == (448, 664, 3)
    assert done.extra["offset"] == (-64, -48)
    assert np.array_equal(out[48 + 16 :, 64 + 16 :], img[16:, 16:])
    canvas_area = 448 * 664
    crops = [e.region for e in events if isinstance(e, Preview)]
    assert len(crops) == 2  # one strip per pass
    for _, _, w, h in crops:
        assert w * h < 0.25 * canvas_area


@pytest.mark.parametrize("model", ["sd", "sd_inpaint"])
def test_controlnet_inpaint_follows_the_control_inside_the_crop_only(
    runner, tiny_models, photos, model
):
    """Inpainting with a ControlNet (the inpaint variant): the control image (any
    size, fitted to the image) steers the result, and outside the crop nothing changes."""
    from studio.engine.jobs.requests import ControlInput

    img = _small_photo(photos)
    mask = object_mask(img.shape, (60, 30, 30, 30))

    def run(control: np.ndarray | None, weight: float = 1.0):
        controls = ()
        if control is not None:
            controls = (ControlInput("canny", control, str(tiny_models.controlnet), weight),)
        final = runner.run(
            GenerateRequest(
                model=str(getattr(tiny_models, model)),
                prompt="x",
                init_image=img,
                mask=mask,
                mask_padding=8,
                strength=1.0,
                steps=2,
                seed=5,
                controls=controls,
            )
        )
        assert isinstance(final, Finished), getattr(final, "message", final)
        return final

    edges = np.zeros((50, 75, 3), np.uint8)  # half the image size: fitted first
    edges[::4] = 255
    blank = np.zeros_like(edges)
    a, b = run(edges), run(blank)
    (box,) = a.extra["regions"]
    inside = boxes_cover(img.shape, [box])
    for out in (a.images[0], b.images[0]):
        assert np.array_equal(out[~inside], img[~inside])
    assert not np.array_equal(a.images[0], b.images[0])  # the control steers the fill
    # Weight 0 is the same as no ControlNet at all.
    assert np.array_equal(run(edges, 0.0).images[0], run(None).images[0])
