"""Select by clicking and by words (SAM 2 + Grounding DINO) on tiny random models.

With random weights the masks mean nothing, so the real path is checked end to end for
shape, binarity and determinism, and the geometry (prompt scaling to the model's input,
low-res mask back to the image) and the multimask choice against independent computations.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from studio.core.errors import BadInput, ModelError
from studio.engine.fixtures.tiny_sam import build_tiny_grounding_dino, build_tiny_sam2
from studio.engine.jobs import runner as runner_mod
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import SegmentRequest
from studio.engine.jobs.runner import Runner
from studio.engine.vision import segment
from studio.engine.vision.segment import (
    SamSession,
    TextDetector,
    check_prompt,
    masks_to_image,
    normalize_phrase,
    to_model_coords,
)


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory):
    return build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"))


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory):
    return build_tiny_grounding_dino(tmp_path_factory.mktemp("tiny-gdino"))


@pytest.fixture
def installed(tmp_path, monkeypatch, sam_folder, dino_folder):
    """A Studio home whose models folder holds both tiny models under their catalog ids."""
    import shutil

    home = tmp_path / "home"
    for folder, name in ((sam_folder, segment.SAM2_ID), (dino_folder, segment.DINO_ID)):
        shutil.copytree(folder, home / "models" / segment.FOLDER / name)
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setitem(
        runner_mod.HANDLERS, SegmentRequest, "studio.engine.vision.segment:run_segment"
    )
    return home


def two_colour(h: int = 96, w: int = 128) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 30)
    img[:, w // 2 :] = (30, 30, 200)
    return img


# -- geometry --------------------------------------------------------------------------------


def test_prompt_scaling_matches_hand_values_and_sam2_processor():
    xy = np.array([[320.0, 240.0], [640.0, 0.0], [0.0, 480.0], [100.0, 50.0]])
    got = to_model_coords(xy, 640, 480, 1024)
    expected = np.array([[512, 512], [1024, 0], [0, 1024], [160, 106.6666667]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    box = to_model_coords(np.array([64.0, 48.0, 320.0, 240.0]), 640, 480, 1024)
    np.testing.assert_allclose(box, [102.4, 102.4, 512, 512], rtol=1e-6)

    from studio.engine.fixtures.tiny_sam import sam2_processor

    proc = sam2_processor(1024)
    enc = proc(
        original_sizes=[[480, 640]],
        input_points=[[[[100.0, 50.0], [640.0, 0.0]]]],
        input_labels=[[[1, 0]]],
        input_boxes=[[[64.0, 48.0, 320.0, 240.0]]],
        return_tensors="pt",
    )
    np.testing.assert_allclose(enc["input_points"][0, 0].numpy(), got[[3, 1]], rtol=1e-6)
    np.testing.assert_allclose(enc["input_boxes"][0, 0].numpy(), box, rtol=1e-6)


def test_mask_upscale_matches_opencv_bilinear():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(2, 32, 32)).astype(np.float32)
    got = masks_to_image(torch.from_numpy(low), 75, 100)
    assert got.shape == (2, 75, 100) and got.dtype == np.uint8
    for i in range(2):
        ref = cv2.resize(low[i], (100, 75), interpolation=cv2.INTER_LINEAR)
        clear = np.abs(ref) > 1e-3  # away from the threshold, both must agree
        assert np.array_equal((got[i] > 0)[clear], (ref > 0)[clear])
        assert set(np.unique(got[i])) <= {0, 255}


def test_mask_upscale_half_pixel_edge():
    # +1 on the left half of a 4x4, -1 on the right: with half-pixel centres output column 3
    # of 8 samples source x = 1.25 (value 0.5) and column 4 samples 1.75 (value -0.5).
    low = torch.tensor([[1.0, 1.0, -1.0, -1.0]] * 4)[None]
    got = masks_to_image(low, 6, 8)[0]
    assert np.array_equal(got[:, :4], np.full((6, 4), 255)) and not got[:, 4:].any()


def test_check_prompt_messages():
    with pytest.raises(BadInput, match=r"^point \(700, 10\) is outside the 640x480 image$"):
        check_prompt([(700, 10, 1)], None, 640, 480)
    with pytest.raises(BadInput, match="outside the 640x480 image"):
        check_prompt([(5, -1, 1)], None, 640, 480)
    with pytest.raises(BadInput, match=r"box \(0, 0, 641, 10\) is outside"):
        check_prompt([], (0, 0, 641, 10), 640, 480)
    with pytest.raises(BadInput, match="is empty"):
        check_prompt([], (50, 50, 40, 60), 640, 480)
    with pytest.raises(BadInput, match="label"):
        check_prompt([(1, 1, 2)], None, 640, 480)
    check_prompt([(0, 0, 1), (640, 480, 0)], (0, 0, 640, 480), 640, 480)  # edges are inside


def test_normalize_phrase():
    assert normalize_phrase("  Red   Cat ") == "red cat."
    assert normalize_phrase("a dog.") == "a dog."
    with pytest.raises(BadInput):
        normalize_phrase(" . ")


# -- the decode logic with a stub decoder ---------------------------------------------------------


class StubSam:
    """Stands in for Sam2Model: records the prompts; three 8x8 low-res masks (left half,
    top half, all) with predicted IoUs that favour the left half."""

    def __init__(self):
        self.calls = []
        self.embeds = 0

    def eval(self):
        return self

    def get_image_embeddings(self, pixels):
        self.embeds += 1
        return [torch.zeros(1, 4, 2, 2)]

    def __call__(self, **kw):
        self.calls.append(kw)
        left = torch.full((8, 8), -5.0)
        left[:, :4] = 5.0
        top = torch.full((8, 8), -5.0)
        top[:4] = 5.0
        every = torch.full((8, 8), 5.0)
        masks = torch.stack([top, left, every])[None, None]
        iou = torch.tensor([[[0.2, 0.9, 0.5]]])
        k = 3 if kw["multimask_output"] else 1
        return SimpleNamespace(pred_masks=masks[:, :, :k], iou_scores=iou[:, :, :k])


def test_single_click_keeps_best_iou_mask_and_scales_the_point():
    from studio.engine.fixtures.tiny_sam import sam2_processor

    stub = StubSam()
    session = SamSession(stub, sam2_processor(1024))
    image = two_colour(96, 128)
    session.embed(image)
    mask, score = session.decode_with_score([(32, 48)], [1])
    # the "left half" mask (IoU 0.9) is chosen: the red half of the image, exactly
    assert score == pytest.approx(0.9)
    assert mask.shape == (96, 128)
    assert np.array_equal(mask > 0, np.all(image == (200, 30, 30), axis=2))
    kw = stub.calls[-1]
    assert kw["multimask_output"] is True
    np.testing.assert_allclose(kw["input_points"].view(-1).numpy(), [32 * 8, 48 * 1024 / 96])
    assert kw["input_labels"].tolist() == [[[1]]]
    # two points, or a box: a single mask is asked for
    session.decode([(10, 10), (100, 10)], [1, 0])
    assert stub.calls[-1]["multimask_output"] is False
    session.decode(box=(0, 0, 64, 48))
    assert stub.calls[-1]["multimask_output"] is False
    np.testing.assert_allclose(stub.calls[-1]["input_boxes"].view(-1).numpy(), [0, 0, 512, 512])
    assert "input_points" not in stub.calls[-1]
    assert stub.embeds == 1  # one embedding for every prompt on the image


def test_embed_only_once_per_image():
    from studio.engine.fixtures.tiny_sam import sam2_processor

    stub = StubSam()
    session = SamSession(stub, sam2_processor(128))
    image = two_colour()
    for _ in range(3):
        session.embed(image.copy())
        session.decode([(5, 5)], [1])
    assert stub.embeds == 1
    other = image.copy()
    other[0, 0] = 0
    session.embed(other)
    assert stub.embeds == 2


# -- the real model path ----------------------------------------------------------------------


def test_real_sam2_masks_are_binary_image_sized_and_deterministic(sam_folder):
    image = two_colour(90, 120)
    a = SamSession.load(sam_folder, "cpu")
    a.embed(image)
    m1 = a.decode([(30, 45)], [1])
    m2 = a.decode([(30, 45)], [1])
    assert m1.shape == (90, 120) and m1.dtype == np.uint8
    assert set(np.unique(m1)) <= {0, 255}
    assert np.array_equal(m1, m2)
    b = SamSession.load(sam_folder, "cpu")
    b.embed(image)
    assert np.array_equal(b.decode([(30, 45)], [1]), m1)
    for mask in (
        a.decode(box=(10, 10, 60, 80)),
        a.decode([(30, 45), (100, 45)], [1, 0], box=(10, 10, 60, 80)),
    ):
        assert mask.shape == (90, 120) and set(np.unique(mask)) <= {0, 255}
    with pytest.raises(BadInput, match=r"point \(121, 5\) is outside the 120x90 image"):
        a.decode([(121, 5)], [1])


def test_real_decode_matches_full_forward(sam_folder):
    """Decoding on the cached embedding gives what one full Sam2Model forward gives."""
    from transformers import Sam2Processor

    session = SamSession.load(sam_folder, "cpu")
    image = two_colour(64, 80)
    session.embed(image)
    got = session.decode([(20, 30)], [1])
    proc = Sam2Processor.from_pretrained(str(sam_folder))
    inputs = proc(
        images=image, input_points=[[[[20, 30]]]], input_labels=[[[1]]], return_tensors="pt"
    )
    with torch.no_grad():
        out = session.model(**inputs, multimask_output=True)
    masks = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0]
    best = int(torch.argmax(out.iou_scores[0, 0]))
    assert np.array_equal(got > 0, masks[best].numpy())


def test_grounding_dino_boxes_inside_image(dino_folder):
    det = TextDetector.load(dino_folder, "cpu")
    image = two_colour(60, 80)
    boxes, scores, words = det.boxes(image, "a red square", threshold=0.0)
    assert boxes and len(boxes) == len(scores) == len(words)
    assert scores == sorted(scores, reverse=True)
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 60
    hi_boxes, _ = segment.boxes_for_text(image, "a red square", det, threshold=1.01)
    assert hi_boxes == []


# -- the job -----------------------------------------------------------------------------------


def test_job_click_reuses_embedding_across_jobs(installed, monkeypatch):
    from transformers import Sam2Model

    calls = {"n": 0}
    real = Sam2Model.get_image_embeddings

    def counting(self, *a, **k):
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(Sam2Model, "get_image_embeddings", counting)
    runner = Runner(device="cpu")
    image = two_colour(72, 96)
    first = runner.run(SegmentRequest(image, points=((20.0, 30.0, 1),)))
    second = runner.run(SegmentRequest(image.copy(), points=((20.0, 30.0, 1), (80.0, 30.0, 0))))
    assert isinstance(first, Finished) and isinstance(second, Finished)
    assert calls["n"] == 1
    for final in (first, second):
        (mask,) = final.images
        assert mask.shape == (72, 96) and set(np.unique(mask)) <= {0, 255}
        assert len(final.extra["scores"]) == 1
    runner.run(SegmentRequest(image[:, ::-1].copy(), box=(5.0, 5.0, 50.0, 40.0)))
    assert calls["n"] == 2


def test_job_without_a_prompt_only_embeds_and_the_click_reuses_it(installed, monkeypatch):
    """What the Smart select tool sends when it is picked: no masks, one embedding, which the
    first click then uses."""
    from transformers import Sam2Model

    calls = {"n": 0}
    real = Sam2Model.get_image_embeddings

    def counting(self, *a, **k):
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(Sam2Model, "get_image_embeddings", counting)
    runner = Runner(device="cpu")
    image = two_colour(72, 96)
    warm = runner.run(SegmentRequest(image))
    assert isinstance(warm, Finished) and len(warm.images) == 0 and calls["n"] == 1
    click = runner.run(SegmentRequest(image.copy(), points=((20.0, 30.0, 1),)))
    assert isinstance(click, Finished) and len(click.images) == 1 and calls["n"] == 1


def test_job_text_one_mask_per_instance(installed, monkeypatch):
    monkeypatch.setattr(segment, "BOX_THRESHOLD", 0.0)
    monkeypatch.setattr(segment, "TEXT_THRESHOLD", 0.0)
    final = Runner(device="cpu").run(SegmentRequest(two_colour(60, 80), text="red square"))
    assert isinstance(final, Finished)
    n = final.extra["instances"]
    assert n >= 1 and len(final.images) == n == len(final.extra["boxes"])
    assert len(final.extra["scores"]) == n
    for mask in final.images:
        assert mask.shape == (60, 80) and set(np.unique(mask)) <= {0, 255}


def test_job_bad_input_and_missing_model(installed, tmp_path, monkeypatch):
    runner = Runner(device="cpu")
    image = np.zeros((480, 640, 3), np.uint8)
    final = runner.run(SegmentRequest(image, points=((700.0, 10.0, 1),)))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert final.message == "point (700, 10) is outside the 640x480 image"
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "empty"))
    final = runner.run(SegmentRequest(image, points=((10.0, 10.0, 1),)))
    assert isinstance(final, Failed) and final.exit_code == 3
    assert final.message == "SAM 2 is not installed: studio models download sam2-hiera-small"
    with pytest.raises(ModelError, match="Grounding DINO is not installed"):
        segment.find_grounding_dino()
    with pytest.raises(ModelError, match="not a SAM 2 folder"):
        segment.find_sam2(str(tmp_path))


def test_sam2_video_layout_loads_as_the_image_model(tmp_path):
    """The released facebook/sam2.1-* repos are ``sam2_video`` checkpoints; the image model
    is a subset of them and loads with every weight."""
    from transformers import Sam2VideoModel

    folder = build_tiny_sam2(tmp_path / "video", video=True)
    session = SamSession.load(folder, "cpu")
    video = Sam2VideoModel.from_pretrained(str(folder)).state_dict()
    ours = session.model.state_dict()
    assert all(torch.equal(v, video[k]) for k, v in ours.items())
    session.embed(two_colour(40, 50))
    mask = session.decode([(10, 10)], [1])
    assert mask.shape == (40, 50) and set(np.unique(mask)) <= {0, 255}


# -- SAM 3 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam3_folder(tmp_path_factory):
    from studio.engine.fixtures.tiny_sam import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("tiny-sam3"))


def test_sam3_text_masks_match_the_full_forward(sam3_folder):
    from transformers import Sam3Processor

    seg = segment.Sam3Segmenter.load(sam3_folder, "cpu")
    image = two_colour(60, 80)
    masks, scores, boxes = seg.segment(image, "Red cat.", threshold=0.0)
    assert len(masks) == len(scores) == len(boxes) == 5  # every query of the tiny model
    assert scores == sorted(scores, reverse=True)
    for m in masks:
        assert m.shape == (60, 80) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    # the same as one plain forward + the processor's own post-processing
    proc = Sam3Processor.from_pretrained(str(sam3_folder))
    inputs = proc(images=image, text="red cat", return_tensors="pt")
    with torch.no_grad():
        out = seg.model(**inputs)
    ref = proc.post_process_instance_segmentation(out, threshold=0.0, target_sizes=[(60, 80)])[0]
    order = torch.argsort(ref["scores"], descending=True).tolist()
    for m, i in zip(masks, order, strict=True):
        assert np.array_equal(m > 0, ref["masks"][i].numpy() > 0)
    # a second phrase on the same image reuses the vision features
    calls = {"n": 0}
    real = seg.model.get_vision_features

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    seg.model.get_vision_features = counting
    seg.segment(image, "dog", threshold=0.0)
    assert calls["n"] == 0
    assert seg.segment(image, "dog", threshold=1.01)[0] == []


def test_job_with_sam3_model(installed, sam3_folder, monkeypatch):
    monkeypatch.setattr(segment, "SAM3_THRESHOLD", 0.0)
    runner = Runner(device="cpu")
    final = runner.run(SegmentRequest(two_colour(60, 80), text="cat", model=str(sam3_folder)))
    assert isinstance(final, Finished)
    assert final.extra["instances"] == len(final.images) == 5
    final = runner.run(
        SegmentRequest(two_colour(60, 80), points=((5.0, 5.0, 1),), model=str(sam3_folder))
    )
    assert isinstance(final, Failed) and final.exit_code == 2 and "SAM 2" in final.message
