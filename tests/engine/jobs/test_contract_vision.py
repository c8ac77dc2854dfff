"""The job contract (``test_contract.JobContract``: events in order with the job id, cancel at
step k with no work after it, a failure that leaves the runner usable) for the selection and
face jobs: SegmentRequest (SAM 2), RestoreFacesRequest and DetailFacesRequest, on tiny random
models and a detector double with known faces."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.jobs import DetailFacesRequest, RestoreFacesRequest, SegmentRequest
from studio.engine.restore import faces as F
from tests.engine.jobs.test_contract import JobContract, _image, _spy, runner  # noqa: F401 - the fixture

FACES = [
    F.Face(
        (8.0, 8.0, 20.0, 20.0),
        np.array([[14, 15], [22, 15], [18, 19], [15, 24], [21, 24]], np.float32),
        0.9,
    ),  # fmt: skip
    F.Face(
        (36.0, 30.0, 20.0, 20.0),
        np.array([[42, 37], [50, 37], [46, 41], [43, 46], [49, 46]], np.float32),
        0.9,
    ),  # fmt: skip
]


@pytest.fixture(scope="module")
def sam_home(tmp_path_factory):
    from studio.engine.fixtures.tiny_sam import build_tiny_sam2
    from studio.engine.vision import segment

    home = tmp_path_factory.mktemp("sam-home")
    build_tiny_sam2(home / "models" / segment.FOLDER / segment.SAM2_ID)
    return home


class TestSegment(JobContract):
    cancel_at = 2  # after "loading SAM 2": the embedding and the decode must not run

    @pytest.fixture(autouse=True)
    def _home(self, sam_home, monkeypatch):
        monkeypatch.setenv("STUDIO_HOME", str(sam_home))

    def request(self):
        return SegmentRequest(_image(48, 64), points=((20.0, 30.0, 1),))

    def bad_request(self):
        return SegmentRequest(_image(48, 64), points=((20.0, 30.0, 1),), model="no-such-sam")

    def watch(self, monkeypatch, token):
        from transformers import Sam2Model

        calls: list[bool] = []
        _spy(monkeypatch, Sam2Model, "get_image_embeddings", token, calls)
        _spy(monkeypatch, Sam2Model, "forward", token, calls)
        return calls


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    from studio.engine.fixtures.tiny_faces import write_tiny_restoreformer

    return write_tiny_restoreformer(tmp_path_factory.mktemp("faces") / "tiny-rf.pth")


@pytest.fixture
def two_faces():
    F.register_detector("contract-two-faces", lambda: lambda image: list(FACES))
    return "contract-two-faces"


class TestRestoreFaces(JobContract):
    cancel_at = 2  # after the first face: the second is never restored

    @pytest.fixture(autouse=True)
    def _models(self, face_model, two_faces, tmp_path):
        self.model, self.detector, self.tmp = face_model, two_faces, tmp_path

    def request(self):
        return RestoreFacesRequest(_image(64, 64), model=str(self.model), detector=self.detector)

    def bad_request(self):
        missing = str(self.tmp / "missing.pth")
        return RestoreFacesRequest(_image(64, 64), model=missing, detector=self.detector)

    def watch(self, monkeypatch, token):
        calls: list[bool] = []
        _spy(monkeypatch, F, "paste_face", token, calls)
        return calls


class TestDetailFaces(JobContract):
    cancel_at = 3  # while the first face's inpaint runs: no paste, no second face
    bad_exit_code = 3

    @pytest.fixture(autouse=True)
    def _models(self, tiny_models, two_faces, tmp_path):
        self.model = tiny_models.sd_inpaint
        self.detector, self.tmp = two_faces, tmp_path

    def request(self):
        return DetailFacesRequest(
            _image(64, 64), model=str(self.model), prompt="a face", steps=5, detector=self.detector
        )

    def bad_request(self):
        return DetailFacesRequest(
            _image(64, 64), model=str(self.tmp / "none"), prompt="a", detector=self.detector
        )

    def watch(self, monkeypatch, token):
        from diffusers import AutoencoderKL

        calls: list[bool] = []
        _spy(monkeypatch, AutoencoderKL, "decode", token, calls)
        return calls
