"""The ADetailer-style face detail pass: what each face's inpaint request holds (with a
recording double for the inpaint job), and one run through Studio's real inpaint job on a
tiny random SD1.x inpainting pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.adetailer import parse_adetailer
from studio.core.errors import BadInput, JobCancelled
from studio.engine.jobs.events import Progress
from studio.engine.jobs.requests import DetailFacesRequest
from studio.engine.jobs.runner import CancelToken, JobContext, Runner
from studio.engine.restore import faces as F
from studio.engine.restore.face_detail import run_detail, split_prompts

LANDMARKS = np.zeros((5, 2), np.float32)  # not used by the detail pass


def face(x: float, y: float, w: float, h: float, score: float) -> F.Face:
    return F.Face((x, y, w, h), LANDMARKS, score)


FACES = [face(10, 12, 30, 34, 0.9), face(60, 20, 20, 22, 0.8), face(90, 70, 18, 18, 0.2)]


@pytest.fixture
def photo() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (100, 120, 3), dtype=np.uint8)


@pytest.fixture
def detector() -> str:
    F.register_detector("detail-three", lambda: lambda image: list(FACES))
    return "detail-three"


class RecordingInpaint:
    """Fills the mask with 10 * (call number) and records the request."""

    def __init__(self) -> None:
        self.requests: list = []

    def __call__(self, req) -> np.ndarray:
        self.requests.append(req)
        out = req.image.copy()
        out[req.mask > 0] = 10 * len(self.requests)
        return out


def ctx(events: list | None = None, token: CancelToken | None = None) -> JobContext:
    return JobContext(1, (events if events is not None else []).append, token or CancelToken(), Runner(device="cpu"))  # fmt: skip


def test_each_face_gets_its_box_prompt_and_strength(photo, detector):
    inpaint = RecordingInpaint()
    request = DetailFacesRequest(
        photo,
        model="some-sd-model",
        prompt="green eyes [SEP] blue eyes",
        negative_prompt="blurry",
        denoising_strength=0.35,
        confidence=0.5,
        dilate=4,
        mask_blur=6,
        padding=24,
        seed=7,
        detector=detector,
    )
    final = run_detail(ctx(), request, inpaint=inpaint)
    assert len(inpaint.requests) == 2  # the 0.2 face is under the confidence
    first, second = inpaint.requests
    assert [r.prompt for r in inpaint.requests] == ["green eyes", "blue eyes"]
    assert [r.negative_prompt for r in inpaint.requests] == ["blurry", "blurry"]
    assert [r.seed for r in inpaint.requests] == [7, 8]
    for r in inpaint.requests:
        assert r.method == "diffusion" and r.model == "some-sd-model"
        assert r.strength == 0.35 and r.padding == 24 and r.feather == 6
    # the box grown by 4 px: face 1 is x 10..40, y 12..46 -> 6..44, 8..50
    ys, xs = np.nonzero(first.mask)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (6, 44, 8, 50)
    ys, xs = np.nonzero(second.mask)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (56, 84, 16, 46)
    assert second.image[20, 20, 0] == 10  # face 2 is drawn on the result of face 1
    out = final.images[0]
    assert out[30, 30, 0] == 10 and out[30, 70, 0] == 20
    untouched = (first.mask == 0) & (second.mask == 0)
    assert np.array_equal(out[untouched], photo[untouched])
    assert final.extra["detailed"] == 2
    assert [f["detailed"] for f in final.extra["faces"]] == [True, True, False]
    units, _ = parse_adetailer("Steps: 1, Seed: 1, " + final.extra["adetailer"])
    assert units[0].model == detector and units[0].prompt == "green eyes [SEP] blue eyes"
    assert units[0].denoising_strength == 0.35 and units[0].confidence == 0.5
    assert units[0].inpaint_padding == 24 and units[0].mask_blur == 6


def test_one_prompt_serves_every_face():
    assert split_prompts("a face") == ["a face"]
    assert split_prompts("a [SEP]b[SEP] c") == ["a", "b", "c"]


def test_no_face_above_confidence_is_unchanged(photo, detector):
    inpaint = RecordingInpaint()
    events: list = []
    request = DetailFacesRequest(photo, model="m", confidence=0.95, detector=detector)
    final = run_detail(ctx(events), request, inpaint=inpaint)
    assert inpaint.requests == [] and np.array_equal(final.images[0], photo)
    assert any(isinstance(e, Progress) and "unchanged" in e.message for e in events)


def test_bad_requests(photo, detector):
    for kwargs in ({"denoising_strength": 0.0}, {"confidence": 1.5}, {"model": ""}):
        req = DetailFacesRequest(photo, **{"model": "m", "detector": detector, **kwargs})
        with pytest.raises(BadInput):
            run_detail(ctx(), req, inpaint=RecordingInpaint())
    with pytest.raises(BadInput):
        run_detail(ctx(), DetailFacesRequest(photo[..., 0], model="m", detector=detector))


def test_cancel_between_faces(photo, detector):
    token = CancelToken()
    inpaint = RecordingInpaint()

    def cancelling(req):
        token.cancel()
        return inpaint(req)

    request = DetailFacesRequest(photo, model="m", confidence=0.5, detector=detector)
    with pytest.raises(JobCancelled):
        run_detail(ctx(token=token), request, inpaint=cancelling)
    assert len(inpaint.requests) == 1


def test_through_studios_inpaint_job(tmp_path, photo, detector):
    from studio.engine.fixtures.tiny_models import build_tiny_sd

    model = build_tiny_sd(tmp_path / "tiny-sd-inpaint", inpainting=True)
    request = DetailFacesRequest(
        photo, model=str(model), prompt="a face", steps=4, confidence=0.5, detector=detector
    )
    events: list = []
    final = run_detail(ctx(events), request)
    out = final.images[0]
    assert out.shape == photo.shape and out.dtype == np.uint8
    # Studio's inpaint keeps every pixel farther than 2 x feather (4) from the mask (the box
    # grown by 4): compare beyond 4 + 8 + 2 px of each box.
    from studio.engine.restore.face_detail import face_mask

    grown = np.zeros(photo.shape[:2], bool)
    for f in FACES[:2]:
        grown |= face_mask(f, photo.shape, 4 + 8 + 2) > 0
    assert (~grown).sum() > 5000
    assert np.array_equal(out[~grown], photo[~grown])
    assert not np.array_equal(out[20:40, 15:35], photo[20:40, 15:35])
    assert final.extra["detailed"] == 2
