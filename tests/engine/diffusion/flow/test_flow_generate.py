"""The flow families on tiny random models loaded through the user's path (resolve_model ->
DiffusionPipeline.from_pretrained offline -> the family's pipeline): txt2img, img2img,
inpaint, seeds, x0_hat previews, cancel at step k with no decode, metadata with the family."""

from __future__ import annotations

import numpy as np
import pytest
from flow_requests import flow_request

from studio.core.errors import BadInput, JobCancelled
from studio.engine.diffusion.families import family
from studio.engine.diffusion.flow.generate import run_flow_generate, steps_for
from studio.engine.diffusion.flow.load import flow_families, load_flow
from studio.engine.jobs.requests import GenerateRequest

# Every flow family with a tiny model and a txt2img pipeline (the registry's descriptors).
FAMILIES = tuple(f.name for f in flow_families() if f.tiny_model and f.supports("txt2img"))
# ... whose img2img pipeline noises the input by a strength, and those with an inpaint
# pipeline (plus the FLUX.1 Fill variant's folder).
IMG2IMG = tuple(n for n in FAMILIES if family(n).supports("img2img") and not family(n).edit)
INPAINT = (*(n for n in FAMILIES if family(n).supports("inpaint")), "fill")
SIZE = 64


def request(model, **kw) -> GenerateRequest:
    return flow_request(model, **{"width": SIZE, "height": SIZE, "seed": 7, **kw})


@pytest.mark.parametrize("name", FAMILIES)
def test_txt2img_two_steps_with_latent_previews(flow_models, job, name):
    j = job()
    fin = run_flow_generate(j.ctx, request(getattr(flow_models, name), preview="latent"))
    (img,) = fin.images
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8 and img.std() > 0
    assert fin.metadata[0]["family"] == name and fin.extra["family"] == name
    assert fin.metadata[0]["seed"] == 7
    assert j.steps[0] == 0 and j.steps[-1] == 2 and 1 in j.steps
    assert len(j.previews) == 2  # one x0_hat preview per step
    for p in j.previews:
        assert p.image.ndim == 3 and p.image.shape[-1] == 3 and p.image.dtype == np.uint8


@pytest.mark.parametrize("name", ("flux1", "zimage"))
def test_seeds_reproduce(flow_models, job, name):
    model = getattr(flow_models, name)
    a = run_flow_generate(job().ctx, request(model, seed=3)).images[0]
    b = run_flow_generate(job().ctx, request(model, seed=3)).images[0]
    c = run_flow_generate(job().ctx, request(model, seed=4)).images[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    batch = run_flow_generate(job().ctx, request(model, seed=3, count=2))
    assert np.array_equal(batch.images[0], a)  # image k of a batch is seed + k alone
    assert np.array_equal(batch.images[1], c)


@pytest.mark.parametrize("name", FAMILIES)
def test_cancel_at_step_k_never_decodes(flow_models, job, name):
    j = job(cancel_at=1)
    entry = load_flow(j.ctx, str(getattr(flow_models, name)), "cpu", "float32")
    decoded = []
    vae = entry.base.vae
    real = vae.decode
    vae.decode = lambda *a, **k: decoded.append(1) or real(*a, **k)
    try:
        with pytest.raises(JobCancelled):
            run_flow_generate(j.ctx, request(getattr(flow_models, name), steps=4, preview="latent"))
    finally:
        del vae.decode
    assert max(j.steps) == 1  # stopped right after step 1 of 4
    assert decoded == []  # no VAE decode after the cancel (not even for the preview)


@pytest.mark.parametrize("name", IMG2IMG)
def test_img2img(flow_models, job, name):
    rng = np.random.default_rng(0)
    init = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    j = job()
    fin = run_flow_generate(
        j.ctx, request(getattr(flow_models, name), init_image=init, strength=0.5, steps=4)
    )
    assert fin.images[0].shape == (SIZE, SIZE, 3)
    assert j.steps[-1] == steps_for(4, 0.5) == 2


@pytest.mark.parametrize("name", INPAINT)
def test_inpaint(flow_models, job, name):
    rng = np.random.default_rng(1)
    init = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    fin = run_flow_generate(
        job().ctx,
        request(getattr(flow_models, name), init_image=init, mask=mask, strength=1.0, steps=2),
    )
    assert fin.images[0].shape == (SIZE, SIZE, 3)
    assert fin.extra["family"] == ("flux1-fill" if name == "fill" else name)


def test_fill_model_refuses_txt2img(flow_models, job):
    with pytest.raises(BadInput, match="FLUX.1 Fill models can't do txt2img"):
        run_flow_generate(job().ctx, request(flow_models.fill))


@pytest.mark.parametrize("name", FAMILIES)
def test_full_vae_preview_matches_the_final_decode_at_the_last_step(flow_models, job, name):
    """At the last step sigma_next = 0, so x0_hat equals the final latent: the "full" preview
    of the last step is the final image (same VAE, same de-normalisation: FLUX.2's batch-norm
    statistics and patchify, Qwen's mean/std, the others' scale and shift), up to rounding."""
    j = job()
    fin = run_flow_generate(j.ctx, request(getattr(flow_models, name), preview="full", steps=3))
    last = j.previews[-1].image.astype(int)
    assert last.shape == fin.images[0].shape
    assert np.abs(last - fin.images[0].astype(int)).max() <= 2


def test_kontext_edit_takes_the_image_without_strength(flow_models, job, tmp_path):
    """A Kontext folder (the dev-shaped transformer under FluxKontextPipeline) runs the
    image-conditioned edit: the whole schedule, whatever strength the request carries."""
    import json
    import shutil

    kontext = tmp_path / "tiny-kontext"
    shutil.copytree(flow_models.flux1, kontext)
    index = json.loads((kontext / "model_index.json").read_text())
    index["_class_name"] = "FluxKontextPipeline"
    (kontext / "model_index.json").write_text(json.dumps(index))
    init = np.random.default_rng(2).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    j = job()
    fin = run_flow_generate(j.ctx, request(kontext, init_image=init, strength=0.3, steps=3))
    assert fin.extra["family"] == "flux1-kontext" and fin.images[0].shape == (SIZE, SIZE, 3)
    assert j.steps[-1] == 3  # no strength cut
    with pytest.raises(BadInput, match="FLUX.1 Kontext models can't do txt2img"):
        run_flow_generate(job().ctx, request(kontext))


def test_clip_skip_is_ignored_and_said_so(flow_models, job):
    """Clip skip picks an earlier CLIP layer; the flow families are conditioned by T5/LLM
    states, and the UI sends its clip-skip setting with every request: the job runs, says it
    ignored it, and the metadata does not claim it."""
    j = job()
    fin = run_flow_generate(j.ctx, request(flow_models.sd3, clip_skip=2))
    plain = run_flow_generate(job().ctx, request(flow_models.sd3))
    assert np.array_equal(fin.images[0], plain.images[0])
    notes = [e.message for e in j.events if isinstance(e, j.Progress) and e.message]
    assert notes == ["Clip skip 2 ignored: SD 3.5 models are not conditioned by CLIP layers"]
    assert "clip_skip" not in fin.metadata[0]


def _external_vae(src, out, seed):
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(src / "vae")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    vae.save_pretrained(out)
    return vae


def test_external_vae_on_a_flow_family_is_used_for_that_job_only(
    flow_models, job, tmp_path, monkeypatch
):
    from studio.core.errors import ModelError

    ext = tmp_path / "flux-vae"
    vae = _external_vae(flow_models.flux1, ext, 5)
    own = run_flow_generate(job().ctx, request(flow_models.flux1)).images[0]
    other = run_flow_generate(job().ctx, request(flow_models.flux1, vae=str(ext))).images[0]
    assert other.shape == own.shape and not np.array_equal(own, other)
    again = run_flow_generate(job().ctx, request(flow_models.flux1)).images[0]
    assert np.array_equal(again, own)  # the model's own VAE is back
    with pytest.raises(BadInput, match="use their own AutoencoderKLQwenImage"):
        run_flow_generate(job().ctx, request(flow_models.qwen, vae=str(ext)))
    from safetensors.torch import save_file

    single = tmp_path / "ae.safetensors"
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(single))
    import shutil

    from studio.engine.diffusion.shared import loader

    configs = tmp_path / "configs"
    monkeypatch.setattr(loader, "CONFIGS", configs)  # no FLUX.1 VAE config shipped
    with pytest.raises(ModelError, match="single file can't be loaded offline yet"):
        run_flow_generate(job().ctx, request(flow_models.flux1, vae=str(single)))
    (configs / "flux1-schnell").mkdir(parents=True)  # the family's shipped VAE config
    shutil.copytree(flow_models.flux1 / "vae", configs / "flux1-schnell" / "vae")
    from_file = run_flow_generate(job().ctx, request(flow_models.flux1, vae=str(single)))
    assert np.array_equal(from_file.images[0], other)  # the same weights as the folder


def test_an_sd_vae_on_flux_is_one_clear_refusal(flow_models, tiny_models, job):
    with pytest.raises(BadInput, match="has 4 latent channels; FLUX.1 models need 16"):
        run_flow_generate(job().ctx, request(flow_models.flux1, vae=str(tiny_models.sd)))


def test_guidance_distilled_flux_writes_forges_distilled_cfg_scale(flow_models, job):
    """Forge writes a FLUX.1 dev image as ``CFG scale: 1, Distilled CFG Scale: 3.5`` (the
    guidance embedding, not classifier-free guidance); a family with real CFG keeps its
    ``CFG scale``. Read back, the distilled value is what Studio pastes as the guidance."""
    from studio.core.metadata import format_parameters, parse_parameters

    fin = run_flow_generate(job().ctx, request(flow_models.flux1, guidance=3.5))
    meta = fin.metadata[0]
    assert (meta["cfg_scale"], meta["distilled_cfg_scale"]) == (1.0, 3.5)
    text = format_parameters(meta)
    assert "CFG scale: 1" in text and "Distilled CFG Scale: 3.5" in text
    assert parse_parameters(text)["distilled_cfg_scale"] == 3.5
    sd3 = run_flow_generate(job().ctx, request(flow_models.sd3, guidance=4.5)).metadata[0]
    assert sd3["cfg_scale"] == 4.5 and "distilled_cfg_scale" not in sd3
