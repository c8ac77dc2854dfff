import numpy as np
import pytest
import torch

from studio.core.errors import BadInput, ModelError
from studio.core.imageio import load_image
from studio.engine.fixtures.tiny_depth import build_tiny_depth_anything
from studio.engine.jobs.events import Failed, Finished, Progress
from studio.engine.jobs.requests import PreprocessRequest
from studio.engine.jobs.runner import Runner
from studio.engine.vision.depth import (
    estimate_depth,
    find_depth_model,
    load_depth_model,
    normalize_depth,
)


@pytest.fixture(scope="module")
def depth_folder(tmp_path_factory):
    return build_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth-anything"))


@pytest.fixture(scope="module")
def loaded(depth_folder):
    return load_depth_model(depth_folder, "cpu")


@pytest.fixture
def picture(photos):
    return load_image(photos.chelsea, "RGB")[::4, ::4]  # 113x75: a size not a multiple of 14


def _reference(model, processor, rgb):
    """Near = white from the model's raw predicted_depth, resized with transformers' own
    post-processing, then 255 * (d - min) / (max - min)."""
    inputs = processor(images=rgb, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    raw = outputs.predicted_depth
    depth = processor.post_process_depth_estimation(outputs, target_sizes=[rgb.shape[:2]])
    d = depth[0]["predicted_depth"].numpy().astype(np.float64)
    return raw, np.round((d - d.min()) / (d.max() - d.min()) * 255).astype(np.uint8)


def test_folder_loads_as_depth_anything(loaded, depth_folder):
    model, processor = loaded
    assert type(model).__name__ == "DepthAnythingForDepthEstimation"
    assert model.config.patch_size == 14 and model.config.backbone_config.model_type == "dinov2"
    assert type(processor).__name__.startswith("DPTImageProcessor")
    assert {"config.json", "preprocessor_config.json"} <= {p.name for p in depth_folder.iterdir()}


def test_output_is_the_image_size_uint8_and_deterministic(loaded, picture):
    model, processor = loaded
    out = estimate_depth(model, processor, picture)
    assert out.shape == picture.shape[:2] == (75, 113) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out, estimate_depth(model, processor, picture))


def test_near_is_white_against_raw_prediction(loaded, picture):
    model, processor = loaded
    raw, expected = _reference(model, processor, picture)
    assert raw.ndim == 3 and raw.shape[1] % 14 == 0 and raw.shape[2] % 14 == 0
    assert float(raw.max() - raw.min()) > 0  # the random model does predict depth differences
    out = estimate_depth(model, processor, picture)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert (out == expected).mean() > 0.99
    # the largest inverse depth (the nearest point) is white, the smallest black
    full = (
        processor.post_process_depth_estimation(
            model(**processor(images=picture, return_tensors="pt")), target_sizes=[(75, 113)]
        )[0]["predicted_depth"]
        .detach()
        .numpy()
    )
    assert out.flat[int(np.argmax(full))] == 255 and out.flat[int(np.argmin(full))] == 0


def test_normalize_depth_values():
    d = np.array([[2.0, 4.0], [6.0, 10.0]])
    assert normalize_depth(d).tolist() == [[0, 64], [128, 255]]  # 255 * (d - 2) / 8, rounded
    assert normalize_depth(np.full((3, 3), 7.0)).tolist() == [[0] * 3] * 3


def test_region_crop(loaded, picture):
    model, processor = loaded
    x, y, w, h = 10, 5, 60, 40
    out = estimate_depth(model, processor, picture, (x, y, w, h))
    assert out.shape == (h, w)
    crop = np.ascontiguousarray(picture[y : y + h, x : x + w])
    assert np.array_equal(out, estimate_depth(model, processor, crop))
    assert np.abs(out.astype(int) - _reference(model, processor, crop)[1].astype(int)).max() <= 1
    with pytest.raises(BadInput):
        estimate_depth(model, processor, picture, (100, 0, 60, 40))  # past the right edge


def test_rgba_and_grey_inputs(loaded, picture):
    model, processor = loaded
    rgba = np.dstack([picture, np.full(picture.shape[:2], 255, np.uint8)])
    assert np.array_equal(
        estimate_depth(model, processor, rgba), estimate_depth(model, processor, picture)
    )
    assert estimate_depth(model, processor, picture[..., 0]).shape == (75, 113)


def test_depth_job(depth_folder, loaded, picture):
    runner = Runner()
    events = []
    req = PreprocessRequest("depth", picture, (("model", str(depth_folder)),), device="cpu")
    final = runner.run(req, emit=events.append)
    assert isinstance(final, Finished), final
    model, processor = loaded
    assert np.array_equal(final.images[0], estimate_depth(model, processor, picture))
    assert final.metadata[0] == {"control": "depth", "model": str(depth_folder)}
    assert any(isinstance(e, Progress) for e in events)
    assert any(k.startswith("depth:") for k in runner.cached_keys)  # cached for the next job

    region = PreprocessRequest(
        "depth", picture, (("model", str(depth_folder)), ("region", (0, 0, 30, 20)))
    )
    final = runner.run(region)
    assert isinstance(final, Finished), final
    assert final.images[0].shape == (20, 30) and final.metadata[0]["region"] == [0, 0, 30, 20]


@pytest.mark.parametrize("region", ["1234", (0, 0, 10), (100, 0, 60, 40), (0, 0, 0, 5)])
def test_depth_job_bad_region_exits_2(region, picture, tmp_path, monkeypatch):
    """A bad region is refused before any model is looked for (none is installed here)."""
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    final = Runner().run(PreprocessRequest("depth", picture, (("region", region),)))
    assert isinstance(final, Failed) and final.exit_code == 2, final


def test_missing_model(tmp_path, monkeypatch, picture):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError) as e:
        find_depth_model(None)
    assert "studio models download depth-anything-v2-small" in e.value.message
    with pytest.raises(ModelError):
        find_depth_model(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError):
        find_depth_model(str(tmp_path / "empty"))
    final = Runner().run(PreprocessRequest("depth", picture))
    assert isinstance(final, Failed) and final.exit_code == 3
    assert "depth-anything-v2-small" in final.message and "\n" not in final.message


def test_default_model_from_the_hf_cache(depth_folder, tmp_path, monkeypatch, picture):
    """With no --model, the Small repo is found in the Hugging Face cache layout."""
    import shutil

    cache = tmp_path / "hub"
    repo = cache / "models--depth-anything--Depth-Anything-V2-Small-hf"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(depth_folder, repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    found = find_depth_model(None)
    assert found == repo / "snapshots" / commit
    assert find_depth_model("depth-anything/Depth-Anything-V2-Small-hf") == found
    final = Runner().run(PreprocessRequest("depth", picture))
    assert isinstance(final, Finished), final
    assert final.metadata[0]["model"] == "depth-anything-v2-small"
    assert final.images[0].shape == (75, 113)
