"""Face restoration: FFHQ alignment, paste-back, strength, and the job on a tiny random
RestoreFormer with a detector double (YuNet's weights are not available offline)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from studio.core.errors import BadInput, JobCancelled, ModelError
from studio.engine.jobs.events import Cancelled, Finished, Progress
from studio.engine.jobs.requests import RestoreFacesRequest
from studio.engine.jobs.runner import HANDLERS, CancelToken, JobContext, Runner
from studio.engine.restore import faces as F

# facexlib/utils/face_restoration_helper.py, FaceRestoreHelper (template_3points=False):
# "standard 5 landmarks for FFHQ faces with 512 x 512".
FACEXLIB_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    """The 2x3 matrix image -> crop: p' = scale * R(degrees) p + t."""
    a = math.radians(degrees)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def to_image(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Crop points -> image points through the inverse of ``matrix`` (solved by hand)."""
    lin, t = matrix[:, :2], matrix[:, 2]
    return (np.linalg.inv(lin) @ (pts - t).T).T


def face_at(matrix: np.ndarray, score: float = 0.9) -> F.Face:
    pts = to_image(matrix, FACEXLIB_TEMPLATE).astype(np.float32)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return F.Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), pts, score)


# A face of about 130 px: the crop is 512 / 0.25; rotated 15 degrees.
MATRIX = similarity(4.0, 15.0, -700.0, -500.0)


class FixedDetector:
    def __init__(self, faces: list[F.Face]) -> None:
        self.faces = faces
        self.calls = 0

    def __call__(self, image: np.ndarray) -> list[F.Face]:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.calls += 1
        return list(self.faces)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from studio.engine.fixtures.tiny_faces import write_tiny_restoreformer

    return write_tiny_restoreformer(tmp_path_factory.mktemp("faces") / "tiny-rf.pth")


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (360, 420, 3), dtype=np.uint8)


def white(crop: np.ndarray) -> np.ndarray:
    assert crop.shape == (512, 512, 3)
    return np.full_like(crop, 255)


def square_outline(matrix: np.ndarray, shape: tuple[int, ...], grow: int = 2) -> np.ndarray:
    """Pixels on or inside the 512 crop square mapped back into the image, grown by
    ``grow`` px (a bool mask), computed without the code under test."""
    corners = np.array([[0, 0], [512, 0], [512, 512], [0, 512]], float)
    poly = np.round(to_image(matrix, corners)).astype(np.int32)
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [poly], 255)
    m = cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return m > 0


def ctx_for(runner: Runner, events: list, token: CancelToken | None = None) -> JobContext:
    return JobContext(1, events.append, token or CancelToken(), runner)


# -- alignment -----------------------------------------------------------------------------
def test_template_is_facexlibs():
    np.testing.assert_allclose(F.FFHQ_TEMPLATE_512, FACEXLIB_TEMPLATE, atol=1e-5)
    np.testing.assert_allclose(F.face_template(256), FACEXLIB_TEMPLATE / 2, atol=1e-5)


@pytest.mark.parametrize(
    "matrix",
    [MATRIX, similarity(2.0, -40.0, -100.0, 80.0), similarity(0.5, 0.0, 200.0, 150.0)],
)
def test_landmarks_map_onto_the_template(matrix):
    face = face_at(matrix)
    found = F.align_matrix(face.landmarks5)
    assert found is not None
    mapped = face.landmarks5 @ found[:, :2].T + found[:, 2]
    assert np.abs(mapped - FACEXLIB_TEMPLATE).max() < 1.0
    # It is the similarity the landmarks were made with (scale, rotation, shift).
    np.testing.assert_allclose(found[:, :2], matrix[:, :2], atol=1e-3)
    np.testing.assert_allclose(found[:, 2], matrix[:, 2], atol=0.5)


def test_crop_puts_the_landmarks_at_the_template():
    face = face_at(MATRIX)
    img = np.zeros((360, 420, 3), np.uint8)
    dots = np.round(face.landmarks5).astype(int)
    for x, y in dots:  # one bright pixel at each landmark's nearest pixel
        img[y, x] = 255
    # where the known similarity sends those pixels in the crop (computed here, not by cv2)
    expected = dots @ MATRIX[:, :2].T + MATRIX[:, 2]
    crop = F.crop_face(img, F.align_matrix(face.landmarks5)).astype(np.float32)[..., 0]
    for ex, ey in expected:
        x0, y0 = int(ex) - 8, int(ey) - 8
        win = crop[y0 : y0 + 17, x0 : x0 + 17]
        ys, xs = np.mgrid[y0 : y0 + 17, x0 : x0 + 17]
        cx, cy = (win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()
        assert abs(cx - ex) < 1.0 and abs(cy - ey) < 1.0


def test_degenerate_landmarks_give_no_matrix():
    assert F.align_matrix(np.zeros((5, 2), np.float32)) is None
    assert F.align_matrix(np.full((5, 2), np.nan, np.float32)) is None


# -- paste-back and strength -------------------------------------------------------------------
def test_paste_leaves_pixels_outside_the_face_bit_identical(photo):
    out = F.paste_face(photo, np.full((512, 512, 3), 255, np.uint8), MATRIX)
    outside = ~square_outline(MATRIX, photo.shape)
    assert outside.sum() > 0.5 * outside.size
    assert np.array_equal(out[outside], photo[outside])
    # inside the feathered mask as computed by the module: the same rule
    inverse = cv2.invertAffineTransform(MATRIX.astype(np.float64))
    box = F._square_box(inverse, 512, photo.shape)
    x, y, w, h = box
    alpha = np.zeros(photo.shape[:2], np.float32)
    alpha[y : y + h, x : x + w] = F.paste_mask(inverse, box)
    assert np.array_equal(out[alpha == 0], photo[alpha == 0])
    # the face's middle (the nose tip) is the restored face, white
    nx, ny = to_image(MATRIX, FACEXLIB_TEMPLATE[2:3])[0]
    assert (out[int(ny) - 3 : int(ny) + 4, int(nx) - 3 : int(nx) + 4] == 255).all()
    assert alpha.max() == pytest.approx(1.0) and 0 < alpha[alpha > 0].min() < 0.1  # feathered


def test_strength_zero_gives_exactly_the_input(photo):
    faces = [face_at(MATRIX)]
    out, done = F.restore_faces(photo, faces, white, strength=0.0)
    assert done == 1 and out.dtype == np.uint8
    assert np.array_equal(out, photo)
    assert np.array_equal(
        F.paste_face(photo, white(np.zeros((512, 512, 3), np.uint8)), MATRIX, 0.0), photo
    )


def test_half_strength_is_halfway(photo):
    out, _ = F.restore_faces(photo, [face_at(MATRIX)], white, strength=0.5)
    nx, ny = np.round(to_image(MATRIX, FACEXLIB_TEMPLATE[2:3])[0]).astype(int)
    expected = np.rint(0.5 * 255 + 0.5 * photo[ny, nx].astype(np.float32))
    assert np.abs(out[ny, nx].astype(np.float32) - expected).max() <= 1


def test_alpha_is_kept_and_grey_images_work(photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 77, np.uint8)])
    out, _ = F.restore_faces(rgba, [face_at(MATRIX)], white)
    assert out.shape == rgba.shape and (out[..., 3] == 77).all()
    grey = photo[..., 0].copy()
    out, _ = F.restore_faces(grey, [face_at(MATRIX)], white)
    nx, ny = np.round(to_image(MATRIX, FACEXLIB_TEMPLATE[2:3])[0]).astype(int)
    assert out.shape == grey.shape and out[ny, nx] == 255
    outside = ~square_outline(MATRIX, grey.shape)
    assert np.array_equal(out[outside], grey[outside])


def test_gfpgan_gets_minus_one_to_one():
    """GFPGAN works in [-1, 1] (spandrel passes the tensor through): an identity network
    in that range must give the crop back."""
    seen = {}

    def net(x, return_rgb=True):
        seen["range"] = (float(x.min()), float(x.max()))
        return x, []

    net.parameters = lambda: iter([torch.zeros(1)])
    desc = SimpleNamespace(model=net, architecture=SimpleNamespace(id="GFPGAN"))
    crop = np.zeros((512, 512, 3), np.uint8)
    crop[:, 256:] = 255
    out = F.model_restorer(desc)(crop)
    assert seen["range"] == (-1.0, 1.0)
    assert np.array_equal(out, crop)


# -- models and detectors ----------------------------------------------------------------------
def test_tiny_restoreformer_loads_as_a_face_model(tiny_model):
    desc = F.load_face_model(tiny_model)
    assert desc.architecture.id == "RestoreFormer" and desc.purpose == "FaceSR"
    assert tiny_model.stat().st_size < 4_000_000


def test_an_upscaler_is_not_a_face_model(tmp_path):
    from studio.engine.fixtures.restore_models import write_random_esrgan

    path = write_random_esrgan(tmp_path / "x4.pth")
    with pytest.raises(ModelError, match="not a face restoration model"):
        F.load_face_model(path)


def test_missing_models_say_how_to_get_them(studio_home):
    with pytest.raises(ModelError) as e:
        F.resolve_face_model(None)
    assert e.value.exit_code == 3
    assert "GFPGANv1.4.pth" in e.value.message and "TencentARC/GFPGAN" in e.value.message
    assert "\n" not in e.value.message
    with pytest.raises(ModelError, match="face_detection_yunet_2023mar.onnx"):
        F.resolve_detector(None)
    with pytest.raises(ModelError):
        F.resolve_face_model(str(studio_home / "nope.pth"))


def test_a_dropped_file_is_found(studio_home, tiny_model):
    folder = studio_home / "models" / "facerestore_models"
    folder.mkdir(parents=True)
    (folder / "GFPGANv1.4.pth").write_bytes(tiny_model.read_bytes())
    assert F.resolve_face_model("gfpgan-1.4") == folder / "GFPGANv1.4.pth"


# -- the job -------------------------------------------------------------------------------------
def test_job_restores_the_face_and_leaves_the_rest(photo, tiny_model):
    face = face_at(MATRIX)
    detector = FixedDetector([face])
    F.register_detector("test-one-face", lambda: detector)
    events: list = []
    request = RestoreFacesRequest(photo, model=str(tiny_model), detector="test-one-face")
    final = F.run_restore(ctx_for(Runner(device="cpu"), events), request)
    assert isinstance(final, Finished) and len(final.images) == 1
    out = final.images[0]
    assert out.shape == photo.shape and out.dtype == np.uint8
    outside = ~square_outline(MATRIX, photo.shape)
    assert np.array_equal(out[outside], photo[outside])
    nx, ny = np.round(to_image(MATRIX, FACEXLIB_TEMPLATE[2:3])[0]).astype(int)
    assert not np.array_equal(
        out[ny - 5 : ny + 5, nx - 5 : nx + 5], photo[ny - 5 : ny + 5, nx - 5 : nx + 5]
    )
    assert final.extra["restored"] == 1 and final.extra["architecture"] == "RestoreFormer"
    np.testing.assert_allclose(final.extra["faces"][0]["box"], face.box, atol=0.01)
    assert final.extra["faces"][0]["score"] == pytest.approx(0.9)
    assert detector.calls == 1
    assert any(isinstance(e, Progress) and e.message == "face 1/1" for e in events)


def test_no_face_leaves_the_image_unchanged(photo, tiny_model):
    F.register_detector("test-no-face", lambda: FixedDetector([]))
    events: list = []
    request = RestoreFacesRequest(photo, model=str(tiny_model), detector="test-no-face")
    final = F.run_restore(ctx_for(Runner(device="cpu"), events), request)
    assert np.array_equal(final.images[0], photo) and final.images[0] is not photo
    assert final.extra["faces"] == [] and final.extra["restored"] == 0
    assert any(isinstance(e, Progress) and "no faces" in e.message for e in events)


def test_bad_strength_and_image_are_bad_input(photo, tiny_model):
    F.register_detector("test-no-face", lambda: FixedDetector([]))
    runner = Runner(device="cpu")
    for strength in (-0.1, 1.5, float("nan")):
        req = RestoreFacesRequest(
            photo, model=str(tiny_model), strength=strength, detector="test-no-face"
        )
        with pytest.raises(BadInput, match="strength"):
            F.run_restore(ctx_for(runner, []), req)
    req = RestoreFacesRequest(
        photo.astype(np.float32), model=str(tiny_model), detector="test-no-face"
    )
    with pytest.raises(BadInput):
        F.run_restore(ctx_for(runner, []), req)


def test_cancel_stops_between_faces(photo, tiny_model, monkeypatch):
    faces = [face_at(MATRIX), face_at(similarity(4.0, 0.0, -100.0, -100.0))]
    F.register_detector("test-two-faces", lambda: FixedDetector(faces))
    monkeypatch.setitem(HANDLERS, RestoreFacesRequest, "studio.engine.restore.faces:run_restore")
    runner = Runner(device="cpu")
    token = CancelToken()
    restored: list[int] = []

    def emit(event):
        if isinstance(event, Progress) and event.message.startswith("face "):
            restored.append(event.step)
            token.cancel()  # after the first face

    request = RestoreFacesRequest(photo, model=str(tiny_model), detector="test-two-faces")
    final = runner.run(request, emit=emit, token=token)
    assert isinstance(final, Cancelled)
    assert restored == [1]
    # cancelled before it starts: the handler raises at its first check
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        F.run_restore(ctx_for(runner, [], token), request)


def test_yunet_file_errors_are_model_errors(tmp_path):
    junk = tmp_path / "face_detection_yunet_2023mar.onnx"
    junk.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match="cannot load as a YuNet"):
        F.YuNetDetector(junk)
    key, factory = F.resolve_detector(str(junk))  # found; it fails when built
    assert key == f"yunet:{junk}"
    with pytest.raises(ModelError):
        F.resolve_detector(str(tmp_path / "missing.onnx"))
    other = tmp_path / "detector.pth"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="onnx"):
        F.resolve_detector(str(other))
