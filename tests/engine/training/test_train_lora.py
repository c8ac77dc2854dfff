"""DreamBooth LoRA training end to end on the tiny SD/SDXL models (CPU): the loss falls, the
LoRA loads through the generate path and changes its pixels, the file's metadata, a run
cancelled at step 15 and resumed ends with the weights of an uninterrupted 30-step run,
cached and uncached latents/embeddings train identically, prior preservation, SDXL, the
kohya format, and one-line refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.engine.jobs import (
    Cancelled,
    Failed,
    Finished,
    GenerateRequest,
    LoraSpec,
    Preview,
    Progress,
    Runner,
    Started,
)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load_file(str(path))


def _run(runner: Runner, request, cancel_at: int | None = None):
    events = []

    def emit(e):
        events.append(e)
        if cancel_at is not None and isinstance(e, Progress) and e.step == cancel_at:
            runner.cancel()

    return runner.run(request, emit=emit), events


def _generate(runner: Runner, model, loras=(), **kw) -> np.ndarray:
    base = dict(model=str(model), prompt="a photo of sks", steps=2, width=64, height=64, seed=3)
    base.update(kw)
    final = runner.run(GenerateRequest(**base, loras=tuple(loras), preview="off"))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    return final.images[0]


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu")


@pytest.fixture(scope="module")
def trained(tiny_models, train_images, tmp_path_factory, runner):
    """One uninterrupted 30-step run (samples every 10 steps, a loss log)."""
    from studio.engine.jobs import TrainLoraRequest

    folder = tmp_path_factory.mktemp("trained")
    request = TrainLoraRequest(
        model=str(tiny_models.sd),
        images=tuple(str(p) for p in train_images),
        trigger="sks",
        steps=30,
        rank=4,
        lr=1e-2,
        resolution=64,
        seed=0,
        batch_size=4,
        checkpoint_every=0,
        sample_every=10,
        sample_steps=2,
        out=str(folder / "sks.safetensors"),
        log_csv=str(folder / "loss.csv"),
    )
    final, events = _run(runner, request)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    return final, events, request


def test_loss_falls_over_30_steps(trained):
    final, _, _ = trained
    losses = final.extra["losses"]
    assert len(losses) == 30 and all(np.isfinite(losses))
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    assert last < first - 0.02, (first, last)


def test_events_progress_previews_and_log(trained):
    final, events, request = trained
    assert isinstance(events[0], Started) and events[-1] is final
    steps = [e for e in events if isinstance(e, Progress) and e.message.startswith("step ")]
    assert [e.step for e in steps] == list(range(1, 31))
    assert all(e.total == 30 for e in steps)
    assert "loss " in steps[-1].message and "ETA " in steps[-1].message
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [10, 20, 30]
    assert previews[0].image.shape == (64, 64, 3) and previews[0].image.dtype == np.uint8
    assert len(final.images) == 1 and np.array_equal(final.images[0], previews[-1].image)
    with open(request.log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert np.allclose([float(r["loss"]) for r in rows], final.extra["losses"], atol=1e-5)
    # The run's folder sits next to the LoRA, hidden, with the final checkpoint in it.
    out = Path(final.extra["path"])
    assert out == Path(request.out).resolve() and out.is_file()
    assert (out.parent / ".sks.training" / "checkpoints" / "step-000030").is_dir()


def test_file_is_a_diffusers_lora_with_training_metadata(trained):
    from studio.engine.models.identify import identify
    from studio.engine.training import read_lora_metadata

    final, _, _ = trained
    path = Path(final.extra["path"])
    meta = read_lora_metadata(path)
    assert meta["studio_base_model"] == "tiny-sd"
    assert meta["studio_trigger"] == "sks"
    assert meta["studio_steps"] == "30" and meta["studio_rank"] == "4"
    assert meta["studio_images"] == "4" and meta["studio_family"] == "sd1"
    assert meta["ss_network_dim"] == "4"
    adapter = json.loads(meta["lora_adapter_metadata"])
    assert adapter["unet.r"] == 4 and adapter["unet.lora_alpha"] == 4
    keys = list(_weights(path))
    assert keys and all(k.startswith("unet.") for k in keys)
    assert any(k.endswith("attn1.to_q.lora.down.weight") for k in keys)
    assert identify(path).kind == "lora"


def test_lora_loads_through_generate_and_changes_the_pixels(trained, tiny_models, runner):
    final, _, _ = trained
    plain = _generate(runner, tiny_models.sd)
    with_lora = _generate(runner, tiny_models.sd, loras=[LoraSpec(final.extra["path"], 1.0)])
    assert with_lora.shape == plain.shape
    assert np.abs(with_lora.astype(int) - plain.astype(int)).max() > 0
    # and it loads in plain diffusers too
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models.sd, safety_checker=None)
    pipe.load_lora_weights(final.extra["path"])
    assert pipe.get_active_adapters()


def test_cancel_at_15_then_resume_equals_uninterrupted(trained, make_request, tmp_path, runner):
    final, _, _ = trained
    out = tmp_path / "resumed.safetensors"
    stopped, events = _run(runner, make_request(out), cancel_at=15)
    assert isinstance(stopped, Cancelled) and stopped.step == 15
    checkpoints = tmp_path / ".resumed.training" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step-000015"]
    assert not out.exists()
    done, events = _run(runner, make_request(out, resume=True))
    assert isinstance(done, Finished), getattr(done, "detail", done)
    assert any("Resuming from step 15" in e.message for e in events if isinstance(e, Progress))
    steps = [e.step for e in events if isinstance(e, Progress) and e.message.startswith("step ")]
    assert steps == list(range(16, 31))
    assert done.extra["losses"] == pytest.approx(final.extra["losses"], abs=1e-6)
    a, b = _weights(Path(final.extra["path"])), _weights(out)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a), worst


def test_resume_refuses_other_settings_and_fresh_run_starts_over(make_request, tmp_path, runner):
    out = tmp_path / "r.safetensors"
    stopped, _ = _run(runner, make_request(out, steps=4, batch_size=1), cancel_at=2)
    assert isinstance(stopped, Cancelled)
    bad, _ = _run(runner, make_request(out, steps=4, batch_size=1, rank=8, resume=True))
    assert isinstance(bad, Failed) and bad.exit_code == 2
    assert "Cannot resume" in bad.message and "rank" in bad.message and "\n" not in bad.message
    fresh, events = _run(runner, make_request(out, steps=2, batch_size=1))
    assert isinstance(fresh, Finished)
    assert any("Starting over" in e.message for e in events if isinstance(e, Progress))
    names = [p.name for p in (tmp_path / ".r.training" / "checkpoints").iterdir()]
    assert names == ["step-000002"]
    kept = tmp_path / ".r.training" / "checkpoints.previous"  # the old run is set aside
    assert [p.name for p in kept.iterdir()] == ["step-000002"]


def test_cached_uncached_and_checkpointed_train_the_same(make_request, tmp_path, runner):
    results = {}
    variants = {
        "cached": {},
        "uncached": {"cache_latents": False, "cache_text": False},
        "grad-ckpt": {"gradient_checkpointing": True},
    }
    for name, kw in variants.items():
        out = tmp_path / f"{name}.safetensors"
        final, _ = _run(runner, make_request(out, steps=3, **kw))
        assert isinstance(final, Finished), getattr(final, "detail", final)
        results[name] = _weights(out)
    ref = results["cached"]
    for name in ("uncached", "grad-ckpt"):
        assert all(torch.allclose(ref[k], results[name][k], atol=1e-6) for k in ref), name


def test_prior_preservation_generates_and_reuses_class_images(make_request, tmp_path, runner):
    out = tmp_path / "dog.safetensors"
    kw = dict(
        steps=2,
        batch_size=1,
        class_prompt="a photo of a shape",
        prior_preservation=True,
        num_class_images=2,
        sample_steps=2,
        log_csv=str(tmp_path / "loss.csv"),
    )
    final, events = _run(runner, make_request(out, **kw))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    made = [e.message for e in events if isinstance(e, Progress) and "class image" in e.message]
    assert made[:2] == ["Generating class image 1/2", "Generating class image 2/2"]
    folder = tmp_path / ".dog.training" / "class-images"
    assert sorted(p.name for p in folder.glob("*.png")) == ["class-0000.png", "class-0001.png"]
    with open(tmp_path / "loss.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # loss = instance + prior_weight * prior
        assert float(r["loss"]) == pytest.approx(float(r["instance_loss"]) + float(r["prior_loss"]))
    again, events = _run(runner, make_request(out, **kw))
    assert isinstance(again, Finished)
    assert not [e for e in events if isinstance(e, Progress) and "Generating class" in e.message]


def test_sdxl_trains_with_both_text_encoders_and_loads(tiny_models, train_images, tmp_path, runner):
    from studio.engine.jobs import TrainLoraRequest

    out = tmp_path / "xl.safetensors"
    request = TrainLoraRequest(
        model=str(tiny_models.sdxl),
        images=tuple(str(p) for p in train_images[:2]),
        trigger="sks",
        steps=3,
        rank=4,
        lr=1e-2,
        resolution=64,
        checkpoint_every=0,
        out=str(out),
    )
    final, _ = _run(runner, request)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    from studio.engine.training import read_lora_metadata

    assert read_lora_metadata(out)["studio_family"] == "sdxl"
    plain = _generate(runner, tiny_models.sdxl)
    with_lora = _generate(runner, tiny_models.sdxl, loras=[LoraSpec(str(out), 1.0)])
    assert np.abs(with_lora.astype(int) - plain.astype(int)).max() > 0


def test_kohya_format_loads_like_the_diffusers_one(make_request, tiny_models, tmp_path, runner):
    diff_out, kohya_out = tmp_path / "d.safetensors", tmp_path / "k.safetensors"
    a, _ = _run(runner, make_request(diff_out, steps=2, optimizer="adamw8bit"))
    b, _ = _run(runner, make_request(kohya_out, steps=2, save_format="kohya"))
    assert isinstance(a, Finished) and isinstance(b, Finished)
    assert any("8-bit Adam unavailable" in n for n in a.extra["notes"])
    keys = list(_weights(kohya_out))
    assert all(k.startswith("lora_unet_") for k in keys)
    assert any(k.endswith(".alpha") for k in keys)
    x = _generate(runner, tiny_models.sd, loras=[LoraSpec(str(diff_out), 1.0)])
    y = _generate(runner, tiny_models.sd, loras=[LoraSpec(str(kohya_out), 1.0)])
    assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_default_output_goes_to_the_models_lora_folder(make_request, tmp_path, monkeypatch, runner):
    from studio.engine.models import find_lora, list_models

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    request = make_request(None, steps=1, batch_size=1, trigger="my subject")
    final, _ = _run(runner, request)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    path = tmp_path / "home" / "models" / "loras" / "my_subject.safetensors"
    assert Path(final.extra["path"]) == path.resolve() and path.is_file()
    assert find_lora("my_subject") == path
    assert [m.path.name for m in list_models("lora")] == ["my_subject.safetensors"]


def test_refusals_are_one_line_and_leave_the_runner_usable(
    make_request, tmp_path, runner, monkeypatch
):
    bad_image = tmp_path / "broken.png"
    bad_image.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cases = [
        (make_request(tmp_path / "a.safetensors", images=()), 2, "at least 1"),
        (make_request(tmp_path / "a.safetensors", images=(str(bad_image),)), 2, "broken.png"),
        (make_request(tmp_path / "a.safetensors", model=str(tmp_path / "nope")), 3, "nope"),
        (make_request(tmp_path / "a.png"), 2, ".safetensors"),
        (make_request(tmp_path / "a.safetensors", steps=0), 2, "--steps"),
        (make_request(tmp_path / "a.safetensors", prior_preservation=True), 2, "class prompt"),
    ]
    for request, code, words in cases:
        final, _ = _run(runner, request)
        assert isinstance(final, Failed), request
        assert final.exit_code == code and words in final.message, final.message
        assert "\n" not in final.message
    from studio.engine.diffusion.families import family
    from studio.engine.diffusion.shared import defaults

    monkeypatch.setattr(defaults, "model_family", lambda ref: family("flux1"))
    final, _ = _run(runner, make_request(tmp_path / "f.safetensors"))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert "training supports SD 1.5 and SDXL" in final.message
    monkeypatch.undo()
    ok, _ = _run(runner, make_request(tmp_path / "ok.safetensors", steps=1, batch_size=1))
    assert isinstance(ok, Finished)


def test_v_prediction_models_train_on_the_velocity(make_request, tiny_models, tmp_path, runner):
    """A v-prediction scheduler config (SD 2.x-768) trains on v = sqrt(abar) eps -
    sqrt(1 - abar) x0 (``get_velocity``) instead of eps."""
    import shutil

    model = tmp_path / "tiny-v"
    shutil.copytree(tiny_models.sd, model)
    cfg_file = model / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["prediction_type"] = "v_prediction"
    cfg_file.write_text(json.dumps(cfg))
    from diffusers import DDPMScheduler

    calls = []
    real = DDPMScheduler.get_velocity

    def spy(self, sample, noise, timesteps):
        calls.append(timesteps)
        return real(self, sample, noise, timesteps)

    import unittest.mock

    with unittest.mock.patch.object(DDPMScheduler, "get_velocity", spy):
        final, _ = _run(runner, make_request(tmp_path / "v.safetensors", model=str(model), steps=2))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    assert len(calls) == 2
    from studio.engine.training import read_lora_metadata

    assert (
        read_lora_metadata(tmp_path / "v.safetensors")["studio_prediction_type"] == "v_prediction"
    )
