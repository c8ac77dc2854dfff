"""Generation through the Runner with the tiny models: txt2img, img2img, SDXL, seeds, batch
count, schedulers, previews per mode, cancel, and validation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from studio.engine.jobs.events import Cancelled, Failed, Finished, Preview, Progress, Started
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


def _req(model, **kw) -> GenerateRequest:
    base = dict(model=str(model), prompt="a cat", steps=3, width=64, height=64, preview="off")
    base.update(kw)
    return GenerateRequest(**base)


def _run(runner, request):
    events = []
    final = runner.run(request, emit=events.append)
    return final, events


def _ok(runner, request) -> Finished:
    final, _ = _run(runner, request)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    return final


def test_txt2img_shape_and_metadata(runner, tiny_models):
    final = _ok(runner, _req(tiny_models.sd, width=64, height=96, seed=11))
    (image,) = final.images
    assert image.shape == (96, 64, 3) and image.dtype == np.uint8
    assert image.std() > 0  # not a blank frame
    meta = final.metadata[0]
    assert meta["seed"] == 11 and meta["model"] == "tiny-sd"
    assert meta["sampler"] == "PNDM"  # the model's own default scheduler


def test_same_seed_same_pixels_different_seed_differs(runner, tiny_models):
    a = _ok(runner, _req(tiny_models.sd, seed=1)).images[0]
    b = _ok(runner, _req(tiny_models.sd, seed=1)).images[0]
    c = _ok(runner, _req(tiny_models.sd, seed=2)).images[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_count_uses_consecutive_seeds_each_reproducible_alone(runner, tiny_models):
    batch = _ok(runner, _req(tiny_models.sd, seed=40, count=3))
    assert [m["seed"] for m in batch.metadata] == [40, 41, 42]
    alone = _ok(runner, _req(tiny_models.sd, seed=41)).images[0]
    # One pipeline call for the batch, one generator per image: the same noise as alone; the
    # batched matmuls sum in another order, so pixels agree up to rounding.
    diff = np.abs(batch.images[1].astype(int) - alone.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.1, (diff.max(), diff.mean())
    assert not np.array_equal(batch.images[0], batch.images[1])
    other = _ok(runner, _req(tiny_models.sd, seed=7)).images[0]
    assert np.abs(other.astype(int) - alone.astype(int)).mean() > 5  # a seed matters far more


def test_count_runs_as_one_batch(runner, tiny_models, monkeypatch):
    from studio.engine.diffusion.sd import generate

    calls = []
    real = generate.denoise

    def spy(*args, **kwargs):
        calls.append((kwargs["num_images_per_prompt"], kwargs["generator"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "denoise", spy)
    final = _ok(runner, _req(tiny_models.sd, seed=40, count=4, scheduler="Euler a"))
    assert len(final.images) == 4 and [n for n, _ in calls] == [4]
    assert [g.initial_seed() for g in calls[0][1]] == [40, 41, 42, 43]
    alone = _ok(runner, _req(tiny_models.sd, seed=42, scheduler="Euler a")).images[0]
    assert np.abs(final.images[2].astype(int) - alone.astype(int)).max() <= 2


@pytest.mark.parametrize("scheduler, total", [("Euler", 6), (None, 8)])  # PNDM: steps + 1
def test_progress_is_monotonic_and_complete(runner, tiny_models, scheduler, total):
    final, events = _run(runner, _req(tiny_models.sd, steps=3, count=2, scheduler=scheduler))
    assert isinstance(final, Finished)
    assert isinstance(events[0], Started)
    steps = [e.step for e in events if isinstance(e, Progress)]
    totals = {e.total for e in events if isinstance(e, Progress)}
    assert totals == {total}
    assert steps == sorted(steps) and steps[-1] == total


def test_img2img_strength(runner, tiny_models, photos):
    from studio.core.imageio import load_image

    init = load_image(photos.astronaut, mode="RGB")
    low = _ok(runner, _req(tiny_models.sd, init_image=init, strength=0.3, steps=4, seed=3))
    high = _ok(runner, _req(tiny_models.sd, init_image=init, strength=1.0, steps=4, seed=3))
    txt = _ok(runner, _req(tiny_models.sd, steps=4, seed=3))
    assert low.images[0].shape == (64, 64, 3)
    assert low.metadata[0]["denoising_strength"] == 0.3
    assert not np.array_equal(low.images[0], high.images[0])
    assert not np.array_equal(low.images[0], txt.images[0])
    again = _ok(runner, _req(tiny_models.sd, init_image=init, strength=0.3, steps=4, seed=3))
    assert np.array_equal(low.images[0], again.images[0])


def test_sdxl_txt2img_and_img2img(runner, tiny_models):
    a = _ok(runner, _req(tiny_models.sdxl, steps=2, seed=5))
    b = _ok(runner, _req(tiny_models.sdxl, steps=2, seed=5))
    assert a.images[0].shape == (64, 64, 3)
    assert np.array_equal(a.images[0], b.images[0])
    init = np.full((64, 64, 3), 128, np.uint8)
    c = _ok(runner, _req(tiny_models.sdxl, steps=4, init_image=init, strength=0.5))
    assert c.images[0].shape == (64, 64, 3)


@pytest.mark.parametrize(
    "name", ["Euler", "Euler a", "DPM++ 2M Karras", "DDIM", "DDPM", "UniPC", "LCM", "Heun"]
)
def test_schedulers_run_and_are_recorded(runner, tiny_models, name):
    final, events = _run(runner, _req(tiny_models.sd, scheduler=name, preview="latent"))
    assert isinstance(final, Finished), getattr(final, "detail", "")
    assert final.metadata[0]["sampler"] == name
    total = [e for e in events if isinstance(e, Progress)][-1]
    assert total.step == total.total  # Heun's second-order evaluations counted too
    assert len([e for e in events if isinstance(e, Preview)]) == total.total


def test_turbo_uses_trailing_euler(tiny_models, tmp_path):
    import shutil

    from studio.core.cancel import CancelToken
    from studio.engine.diffusion.sd.pipeline import load_pipeline
    from studio.engine.jobs.runner import JobContext

    turbo = tmp_path / "tiny-sdxl-turbo"
    shutil.copytree(tiny_models.sdxl, turbo)
    runner = Runner()
    ctx = JobContext(1, lambda e: None, CancelToken(), runner)
    pipe = load_pipeline(ctx, str(turbo))
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    pipe.scheduler.set_timesteps(1)
    assert int(pipe.scheduler.timesteps[0]) == 999  # one step starts from pure noise
    final = _ok(runner, _req(turbo, steps=1, guidance=0.0))
    assert final.images[0].std() > 0


@pytest.mark.parametrize("mode", ["latent", "taesd", "full"])
@pytest.mark.parametrize("target", ["x0", "xt"])
def test_preview_count_and_shape_per_mode(runner, tiny_models, monkeypatch, mode, target):
    monkeypatch.setenv("STUDIO_TAESD", str(tiny_models.taesd))
    monkeypatch.setenv("STUDIO_PREVIEW_BUDGET", "off")  # every step, however slow the decoder
    final, events = _run(
        runner,
        _req(
            tiny_models.sd,
            steps=3,
            width=64,
            height=96,
            preview=mode,
            preview_of=target,
            scheduler="Euler a",
        ),
    )
    assert isinstance(final, Finished)
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3]
    shape = (12, 8, 3) if mode == "latent" else (96, 64, 3)
    for p in previews:
        assert p.image.shape == shape and p.image.dtype == np.uint8 and p.total == 3


def test_taesd_previews_keep_to_their_time_budget(runner, tiny_models, monkeypatch):
    import time

    from studio.engine.diffusion.shared import previews

    monkeypatch.setenv("STUDIO_TAESD", str(tiny_models.taesd))
    monkeypatch.delenv("STUDIO_PREVIEW_BUDGET", raising=False)
    call = previews.PreviewDecoder.__call__
    spent = []

    def slow(self, latents):
        t = time.perf_counter()
        time.sleep(0.2)  # a decoder far slower than a tiny UNet step
        out = call(self, latents)
        spent.append(time.perf_counter() - t)
        return out

    monkeypatch.setattr(previews.PreviewDecoder, "__call__", slow)
    t0 = time.perf_counter()
    final, events = _run(runner, _req(tiny_models.sd, steps=12, preview="taesd", scheduler="Euler"))
    total = time.perf_counter() - t0
    assert isinstance(final, Finished)
    steps = [e.step for e in events if isinstance(e, Preview)]
    assert steps[0] == 1 and 1 <= len(steps) < 12  # the first preview comes at once
    compute = total - sum(spent)
    # Within 10% of the compute time, overshooting by at most the preview that crossed it.
    assert sum(spent) - max(spent) <= 0.1 * compute + 0.01


def test_preview_off_touches_nothing(runner, tiny_models, monkeypatch):
    import diffusers

    from studio.engine.diffusion.shared import previews

    calls = []
    monkeypatch.setattr(previews.StepTap, "__init__", lambda *a: calls.append("tap"))
    monkeypatch.setattr(previews, "latent_to_rgb", lambda *a: calls.append("rgb"))
    decode = diffusers.AutoencoderKL.decode

    def counting(self, *a, **k):
        calls.append("decode")
        return decode(self, *a, **k)

    monkeypatch.setattr(diffusers.AutoencoderKL, "decode", counting)
    final, events = _run(runner, _req(tiny_models.sd, preview="off"))
    assert isinstance(final, Finished)
    assert not [e for e in events if isinstance(e, Preview)]
    assert calls == ["decode"]  # only the final decode


def test_x0_preview_differs_from_xt(runner, tiny_models):
    def last_preview(target):
        _, events = _run(
            runner,
            _req(
                tiny_models.sd,
                scheduler="Euler",
                preview_of=target,
                preview="latent",
                seed=9,
                steps=4,
            ),
        )
        return [e for e in events if isinstance(e, Preview)][0].image

    assert not np.array_equal(last_preview("x0"), last_preview("xt"))


def test_taesd_missing_falls_back_to_latent_with_one_message(tiny_models, monkeypatch):
    from studio.engine.diffusion.sd import sampling

    monkeypatch.delenv("STUDIO_TAESD", raising=False)
    monkeypatch.setattr(sampling, "_taesd_warned", set())
    runner = Runner()
    messages = []
    for _ in range(2):
        final, events = _run(runner, _req(tiny_models.sd, preview="taesd"))
        assert isinstance(final, Finished)
        previews = [e for e in events if isinstance(e, Preview)]
        assert previews and previews[0].image.shape == (8, 8, 3)  # latent-size previews
        messages += [e.message for e in events if isinstance(e, Progress) and e.message]
    assert len(messages) == 1 and "TAESD" in messages[0]


def test_cancel_mid_run_skips_decode_and_next_job_works(tiny_models, monkeypatch):
    import diffusers

    runner = Runner()
    _ok(runner, _req(tiny_models.sd, steps=2))  # load once
    counts = {"decode": 0, "unet": 0}
    decode = diffusers.AutoencoderKL.decode
    forward = diffusers.UNet2DConditionModel.forward

    def counting_decode(self, *a, **k):
        counts["decode"] += 1
        return decode(self, *a, **k)

    def counting_forward(self, *a, **k):
        counts["unet"] += 1
        return forward(self, *a, **k)

    monkeypatch.setattr(diffusers.AutoencoderKL, "decode", counting_decode)
    monkeypatch.setattr(diffusers.UNet2DConditionModel, "forward", counting_forward)
    steps = 8
    k = random.Random(0).randint(1, steps - 1)

    def emit(event):
        if isinstance(event, Progress) and event.step == k:
            runner.cancel()

    final = runner.run(_req(tiny_models.sd, steps=steps, preview="latent"), emit=emit)
    assert isinstance(final, Cancelled)
    assert final.step == k
    assert counts["decode"] == 0
    assert counts["unet"] == k  # CFG runs one batched UNet call per step: none after step k
    after = _ok(runner, _req(tiny_models.sd, steps=2))
    assert after.images[0].shape == (64, 64, 3)
    assert counts["decode"] == 1


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(width=65), "multiple of 8"),
        (dict(height=8), "between"),
        (dict(scheduler="Nope"), "Unknown scheduler"),
        (dict(steps=0), "steps"),
        (dict(init_image=np.zeros((64, 64, 3), np.uint8), strength=0.1, steps=3), "below one"),
        (dict(preview="bogus"), "preview"),
    ],
)
def test_bad_requests_fail_with_exit_2(runner, tiny_models, kw, words):
    final, _ = _run(runner, _req(tiny_models.sd, **kw))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert words in final.message and "\n" not in final.message


def test_missing_model_fails_with_exit_3(runner):
    final, _ = _run(runner, _req("someone/not-cached-model"))
    assert isinstance(final, Failed) and final.exit_code == 3
    assert "studio models download someone/not-cached-model" in final.message


def test_inpainting_model_refuses_txt2img(runner, tiny_models):
    final, _ = _run(runner, _req(tiny_models.sd_inpaint))
    assert isinstance(final, Failed) and final.exit_code == 2
    assert "inpainting model" in final.message


def test_vae_tiling_only_for_big_images(tiny_models):
    from studio.core.cancel import CancelToken
    from studio.engine.diffusion.sd.pipeline import load_pipeline
    from studio.engine.diffusion.sd.sampling import VAE_TILING_PIXELS, vae_tiling
    from studio.engine.jobs.runner import JobContext

    ctx = JobContext(1, lambda e: None, CancelToken(), Runner())
    pipe = load_pipeline(ctx, str(tiny_models.sd))
    vae_tiling(pipe, VAE_TILING_PIXELS + 1)
    assert pipe.vae.use_tiling
    vae_tiling(pipe, 512 * 512)
    assert not pipe.vae.use_tiling


def test_a_plan_that_tiles_the_vae_keeps_it_tiled_for_small_images(tiny_models):
    """When the memory plan for the card chose tiled decoding, a small job must not switch it
    off (only the plan knows the card); without such a plan small images decode untiled."""
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.engine.diffusion.sd import pipeline as P
    from studio.engine.diffusion.sd.sampling import vae_tiling
    from studio.engine.diffusion.shared.placement import plan_placement

    base = StableDiffusionPipeline.from_pretrained(tiny_models.sd, safety_checker=None)
    family = P.recognise_pipe(base)
    cpu = torch.device("cpu")
    # The scenario: the smallest free memory (in 1/64 GiB) for which the plan tiles the VAE.
    tiling = next(
        (f / 64 for f in range(1, 64 * 8) if getattr(plan_placement(base, family, cpu, "t", f / 64), "vae_tiling", False)),
        None,
    )  # fmt: skip
    assert tiling is not None
    P.place_base(base, cpu, "t", free_gib=tiling)
    vae_tiling(base, 64 * 64)
    assert base.vae.use_tiling
    P.place_base(base, cpu, "t", free_gib=64.0)  # plenty of memory: no tiling planned
    vae_tiling(base, 64 * 64)
    assert not base.vae.use_tiling
