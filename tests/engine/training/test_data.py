"""The torch-free parts of training: finding and checking images, captions, aspect-ratio
buckets, the batch schedule, the run's paths, presets and request validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import BadInput
from studio.engine.jobs import TrainLoraRequest
from studio.engine.training.data import (
    batch_for_step,
    check_images,
    epoch_batches,
    find_images,
    fit_to_bucket,
    instance_prompt,
    make_buckets,
    nearest_bucket,
    prepare_images,
    sidecar_caption,
    training_paths,
)
from studio.engine.training.presets import apply_preset, validate_request


def test_buckets_are_multiples_of_64_with_about_the_same_area():
    buckets = make_buckets(512)
    assert (512, 512) in buckets and (256, 1024) in buckets and (1024, 256) in buckets
    for w, h in buckets:
        assert w % 64 == 0 and h % 64 == 0
        assert w * h <= 512 * 512
        assert w * h >= 0.8 * 512 * 512, (w, h)
        assert max(w, h) / min(w, h) <= 4
    assert make_buckets(64) == [(64, 64)]
    assert (1024, 1024) in make_buckets(1024) and (832, 1216) in make_buckets(1024)


@pytest.mark.parametrize(
    "size, want",
    [((512, 512), (512, 512)), ((1920, 1080), (640, 384)), ((600, 800), (448, 576))],
)
def test_nearest_bucket_keeps_the_aspect_ratio(size, want):
    got = nearest_bucket(*size, make_buckets(512))
    assert got == want
    assert abs(math.log(got[0] / got[1]) - math.log(size[0] / size[1])) < 0.12


def test_fit_to_bucket_covers_then_crops_only_the_excess():
    image = np.zeros((300, 451, 3), np.uint8)  # chelsea's size
    bucket = nearest_bucket(451, 300, make_buckets(512))
    pixels, (top, left) = fit_to_bucket(image, bucket)
    assert pixels.shape == (bucket[1], bucket[0], 3)
    assert bucket == (576, 384)  # 3:2 exactly
    assert top <= 1 and left <= 1  # no square crop: only the rounding is cut away


def test_prepare_images_records_original_size_crop_and_bucket(photos):
    prepared = prepare_images([str(photos.chelsea)], 512, ["a photo of sks cat"])
    (im,) = prepared
    assert im.original == (300, 451) and im.bucket == nearest_bucket(451, 300, make_buckets(512))
    assert im.pixels.shape == (im.bucket[1], im.bucket[0], 3) and im.prompt == "a photo of sks cat"


def test_find_images_sorts_skips_other_files_and_refuses_none(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    assert [p.name for p in find_images(tmp_path)] == ["a.jpg", "b.png"]
    assert [p.name for p in find_images(tmp_path, tmp_path / "sub" / "c.png")] == [
        "a.jpg",
        "b.png",
        "c.png",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="no images found"):
        find_images(empty)
    with pytest.raises(BadInput, match="no such folder"):
        find_images(tmp_path / "missing")


def test_check_images_names_the_unreadable_one(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), "red").save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    check_images([good])
    with pytest.raises(BadInput, match="bad.png"):
        check_images([good, bad])
    with pytest.raises(BadInput, match="at least 1"):
        check_images([])


def test_captions_and_instance_prompts(tmp_path):
    img = tmp_path / "x.png"
    (tmp_path / "x.txt").write_text("  a sks dog\n on grass ")
    assert sidecar_caption(img) == "a sks dog on grass"
    assert sidecar_caption(tmp_path / "none.png") is None
    assert instance_prompt("sks", "a sks dog on grass", None) == "a sks dog on grass"
    assert instance_prompt("sks", "a dog on grass", None) == "sks, a dog on grass"
    assert instance_prompt("sks", None, "a photo of a dog") == "a photo of sks dog"
    assert instance_prompt("sks", None, None) == "a photo of sks"
    req = TrainLoraRequest("m", images=(str(img),), trigger="sks", captions={str(img): "hi"})
    assert req.caption(str(img)) == "hi" and req.caption("other") is None
    hash(req)  # frozen and hashable although captions came as a dict


def test_batch_schedule_is_deterministic_covers_each_epoch_and_groups_buckets():
    buckets = [(64, 64), (64, 128), (64, 64), (64, 128), (64, 64)]
    e0 = epoch_batches(buckets, 2, seed=7, epoch=0)
    assert e0 == epoch_batches(buckets, 2, seed=7, epoch=0)
    assert sorted(i for b in e0 for i in b) == list(range(5))
    for batch in e0:
        assert len({buckets[i] for i in batch}) == 1  # one bucket per batch
    assert epoch_batches(buckets, 2, 7, 1) != e0 or epoch_batches(buckets, 2, 7, 2) != e0
    per_epoch = len(e0)
    assert [batch_for_step(buckets, 2, 7, k) for k in range(per_epoch)] == e0


def test_training_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    p = training_paths(None, "sks dog")
    assert p.out == (tmp_path / "home" / "models" / "loras" / "sks_dog.safetensors").resolve()
    assert p.folder.name == ".sks_dog.training" and p.folder.parent == p.out.parent
    assert p.checkpoints.parent == p.folder and p.class_images.parent == p.folder
    with pytest.raises(BadInput, match=".safetensors"):
        training_paths(tmp_path / "x.pt", "sks")
    with pytest.raises(BadInput, match="does not exist"):
        training_paths(tmp_path / "nope" / "x.safetensors", "sks")


def _req(**kw) -> TrainLoraRequest:
    return TrainLoraRequest(**{"model": "m", "images": ("a.png",), "trigger": "sks", **kw})


def test_12gb_preset():
    r = apply_preset(_req(preset="12gb", rank=64, batch_size=4))
    assert r.gradient_checkpointing and r.cache_latents and r.cache_text
    assert r.optimizer == "adamw8bit" and r.batch_size == 1 and r.rank == 32
    assert apply_preset(_req(preset="12GB", rank=8)).rank == 8
    assert apply_preset(_req()) == _req()
    with pytest.raises(BadInput, match="Unknown training preset"):
        apply_preset(_req(preset="4gb"))


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"trigger": " "}, "--trigger"),
        ({"steps": 0}, "--steps"),
        ({"rank": 0}, "--rank"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"resolution": 32}, "--resolution"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"save_format": "ckpt"}, "format"),
        ({"prior_preservation": True}, "class prompt"),
        ({"images": ()}, "at least 1"),
    ],
)
def test_validation_refuses_in_one_line(kw, words):
    with pytest.raises(BadInput, match=words) as info:
        validate_request(_req(**kw))
    assert "\n" not in info.value.message


def test_validation_accepts_the_defaults():
    validate_request(_req())
    validate_request(_req(prior_preservation=True, class_prompt="a photo of a dog"))


def test_request_is_torch_free_to_build():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from studio.engine.jobs import TrainLoraRequest\n"
        "from studio.engine.training import find_images, make_buckets, validate_request\n"
        "r = TrainLoraRequest('m', images=('a.png',), trigger='sks'); validate_request(r)\n"
        "print('ok', make_buckets(64))\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-2000:]
