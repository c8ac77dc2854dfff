"""The flow families on the normal job path: the registry knows them, and a GenerateRequest
through the Runner (as the CLI and the UI send it) reaches ``run_flow_generate``."""

from __future__ import annotations

import numpy as np
from flow_requests import flow_request

from studio.engine.diffusion.families.registry import families, recognise_folder
from studio.engine.jobs.events import Cancelled, Finished, Progress
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


def _req(model, **kw) -> GenerateRequest:
    return flow_request(model, **{"seed": 5, **kw})


def test_registry_recognises_the_flow_folders(flow_models):
    names = {f.name for f in families()}
    assert {"flux1", "flux1-fill", "flux1-kontext", "flux2", "zimage", "sd3", "qwen"} <= names
    for name in ("flux1", "flux2", "zimage", "sd3", "qwen"):
        fam = recognise_folder(getattr(flow_models, name))
        assert fam.name == name and fam.prediction == "flow"
    assert recognise_folder(flow_models.fill).name == "flux1-fill"


def test_generate_request_through_the_runner_runs_flux(flow_models):
    runner = Runner(device="cpu", dtype="float32")
    events: list = []
    final = runner.run(_req(flow_models.flux1), emit=events.append)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    (img,) = final.images
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 0
    assert final.metadata[0]["family"] == "flux1"
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 2


def test_cancel_through_the_runner_at_step_k_never_decodes(flow_models, monkeypatch):
    import diffusers

    runner = Runner(device="cpu", dtype="float32")
    decoded = []
    real = diffusers.AutoencoderKL.decode

    def counting(self, *a, **k):
        decoded.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(diffusers.AutoencoderKL, "decode", counting)
    k = 2

    def emit(ev):
        if isinstance(ev, Progress) and ev.step == k:
            runner.cancel()

    final = runner.run(_req(flow_models.flux1, steps=5, preview="latent"), emit=emit)
    assert isinstance(final, Cancelled), final
    assert final.step == k
    assert decoded == []
    after = runner.run(_req(flow_models.flux1))  # the runner still works
    assert isinstance(after, Finished) and decoded == [1]


def test_inpaint_through_the_runner_keeps_pixels_outside_the_padded_box(flow_models, monkeypatch):
    from studio.core import masks
    from studio.engine.diffusion.flow import inpaint as flow_inpaint

    # the crop runs at 64x64 (the family's native 1024^2 is slow on a CPU test)
    monkeypatch.setattr(flow_inpaint, "flow_target", lambda fam: 64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mask = np.zeros((96, 128), np.uint8)
    mask[40:56, 50:70] = 255
    runner = Runner(device="cpu", dtype="float32")
    req = _req(flow_models.flux1, init_image=image, mask=mask, mask_padding=8, strength=1.0)
    final = runner.run(req)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    (out,) = final.images
    assert out.shape == image.shape
    (box,) = final.extra["regions"]
    x, y, w, h = box
    outside = np.ones((96, 128), bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(out[outside], image[outside])  # bit-identical outside the box
    assert not np.array_equal(out[40:56, 50:70], image[40:56, 50:70])  # the hole was redrawn
    assert w < 128 and h < 96 and masks.crop(mask, box).any()
    assert final.metadata[0]["family"] == "flux1"
    assert (final.metadata[0]["width"], final.metadata[0]["height"]) == (128, 96)


def test_inpaint_request_through_the_runner_on_a_flow_model(flow_models, monkeypatch):
    from studio.engine.diffusion.flow import inpaint as flow_inpaint
    from studio.engine.jobs.requests import InpaintRequest

    monkeypatch.setattr(flow_inpaint, "flow_target", lambda fam: 64)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[20:36, 30:50] = 255
    req = InpaintRequest(
        image=image, mask=mask, method="diffusion", model=str(flow_models.flux1), prompt="x",
        steps=2, guidance=0.0, padding=8, preview="off", device="cpu", dtype="float32",
    )  # fmt: skip
    final = Runner(device="cpu", dtype="float32").run(req)
    assert isinstance(final, Finished), getattr(final, "detail", final)
    (out,) = final.images
    x, y, w, h = final.extra["regions"][0]
    outside = np.ones((64, 96), bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(out[outside], image[outside])
    assert not np.array_equal(out[20:36, 30:50], image[20:36, 30:50])
    assert final.metadata[0]["family"] == "flux1"


def test_the_face_exports_the_flow_names_and_edit_models_have_folders():
    import studio.engine.diffusion as face
    from studio.engine.diffusion.flow.generate import run_flow_generate
    from studio.engine.models.folders import folder_names

    assert face.run_flow_generate is run_flow_generate
    assert "FLUX.1" in face.render_capabilities()
    assert {"run_flow_generate", "render_capabilities", "render_table"} <= set(face.__all__)
    assert "checkpoints" in folder_names("edit")


def test_load_flow_plans_memory_from_the_free_memory(monkeypatch):
    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow.load import flow_plan

    flux = family("flux1")
    assert flow_plan(flux, "cpu") is None  # the CPU: nothing to plan
    assert flow_plan(flux, "cuda", free_gib=80).offload == "none"  # fits whole
    assert flow_plan(flux, "cuda", free_gib=12).offload != "none"  # 12B in bf16 doesn't
    assert flow_plan(family("flux1-fill"), "cuda", free_gib=80).offload == "none"
    monkeypatch.setenv("STUDIO_OFFLOAD", "sequential")
    assert flow_plan(flux, "cuda", free_gib=80).offload == "sequential"
