import numpy as np
import pytest

from studio.core.canny import canny
from studio.core.imageio import load_image
from studio.core.pose import N_BODY, Pose
from studio.engine.fixtures import write_random_openpose
from studio.engine.jobs.events import Failed, Finished, Progress
from studio.engine.jobs.requests import PreprocessRequest
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def pose_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openpose-weights")
    write_random_openpose(folder)
    return folder


def test_canny_job(photos):
    rgb = load_image(photos.coffee, "RGB")
    events = []
    final = Runner().run(
        PreprocessRequest("canny", rgb, (("low", 60), ("high", 120))), emit=events.append
    )
    assert isinstance(final, Finished), final
    assert np.array_equal(final.images[0], canny(rgb, 60, 120))
    assert final.metadata[0]["control"] == "canny" and final.metadata[0]["low"] == 60
    assert any(isinstance(e, Progress) for e in events)


def test_scribble_job():
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[5:8, :] = 255
    final = Runner().run(PreprocessRequest("scribble", layer))
    assert isinstance(final, Finished)
    assert final.images[0][6].min() == 255 and final.images[0][20].max() == 0


def test_pose_job_returns_image_and_json(pose_folder, photos):
    rgb = load_image(photos.astronaut, "RGB")[:96, :64]
    runner = Runner()
    final = runner.run(PreprocessRequest("pose", rgb, (("model", str(pose_folder)),)))
    assert isinstance(final, Finished), final
    image = final.images[0]
    assert image.shape == (96, 64, 3) and image.dtype == np.uint8
    pose = Pose.from_dict(final.extra["pose"])
    assert (pose.width, pose.height) == (64, 96)
    assert all(len(p.body) == N_BODY for p in pose.people)
    assert np.array_equal(image, pose.render())
    # the loaded model is cached for the next job
    assert any(k.startswith("pose:") for k in runner._cache)


def test_pose_job_without_model_fails_with_exit_3(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    final = Runner().run(PreprocessRequest("pose", np.zeros((64, 64, 3), np.uint8)))
    assert isinstance(final, Failed) and final.exit_code == 3
    assert "studio models download openpose" in final.message


@pytest.mark.parametrize(
    "req",
    [
        PreprocessRequest("normal", np.zeros((8, 8, 3), np.uint8)),
        PreprocessRequest("canny", np.zeros((8, 8, 3), np.uint8), (("low", "x"),)),
        PreprocessRequest("canny", np.zeros((0, 0, 3), np.uint8)),
    ],
)
def test_bad_requests_exit_2(req):
    final = Runner().run(req)
    assert isinstance(final, Failed) and final.exit_code == 2, final


def test_cancelled_pose_job(pose_folder):
    from studio.core.cancel import CancelToken
    from studio.engine.jobs.events import Cancelled

    token = CancelToken()
    token.cancel()
    final = Runner().run(
        PreprocessRequest("pose", np.zeros((64, 64, 3), np.uint8), (("model", str(pose_folder)),)),
        token=token,
    )
    assert isinstance(final, Cancelled)
