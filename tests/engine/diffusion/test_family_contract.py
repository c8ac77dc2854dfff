"""The family contract, in the manner of diffusers' PipelineTesterMixin: every registered
family with a tiny model (``Family.tiny_model``) runs the same checks through the job handler
users hit (``route.run_generate``): txt2img with one latent preview per step, img2img and
inpaint where its descriptor names the pipeline, cancel at step k with no decode after it,
LoRA where the pipeline class loads LoRAs (flow families' inpaint through their own pipeline), and a memory plan from its planner rows. Adding a
family adds it here; nothing in this file names one."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.catalog import known_bases
from studio.core.errors import JobCancelled
from studio.engine.diffusion.families import families, family
from studio.engine.diffusion.route import run_generate
from studio.engine.diffusion.shared.capabilities import _has_lora
from studio.engine.jobs.requests import GenerateRequest, LoraSpec

SIZE = 64
TINY = tuple(f.name for f in families() if f.tiny_model is not None)


@pytest.fixture(scope="module")
def tiny(session_tmp):
    """family name -> its tiny pipeline folder, built on first use."""
    root = session_tmp / "family-contract"
    built: dict = {}

    def get(name: str):
        if name not in built:
            folder = root / f"tiny-{name}"
            if not (folder / "model_index.json").exists():
                family(name).tiny_model(folder)
            built[name] = folder
        return built[name]

    return get


def request(model, **kw) -> GenerateRequest:
    base = dict(prompt="a cat", width=SIZE, height=SIZE, steps=2, guidance=0.0, seed=3)
    base.update(preview="off", device="cpu", dtype="float32")
    return GenerateRequest(**{**base, "model": str(model), **kw})


class Ctx:
    """A real JobContext recording its events, cancelled at progress step ``cancel_at``."""

    _runner: list = []

    def __init__(self, cancel_at: int | None = None) -> None:
        from studio.core.cancel import CancelToken
        from studio.engine.jobs.events import Preview, Progress
        from studio.engine.jobs.runner import JobContext, Runner

        self.events: list = []
        token = CancelToken()

        def emit(ev):
            self.events.append(ev)
            if isinstance(ev, Progress) and cancel_at is not None and ev.step >= cancel_at:
                token.cancel()

        if not Ctx._runner:
            Ctx._runner.append(Runner(device="cpu", dtype="float32"))
        self.ctx = JobContext(1, emit, token, Ctx._runner[0])
        self._types = Preview, Progress

    @property
    def previews(self):
        return [e for e in self.events if isinstance(e, self._types[0])]

    @property
    def steps(self):
        return [e.step for e in self.events if isinstance(e, self._types[1])]


@pytest.fixture
def job():
    return Ctx


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


def test_every_base_family_has_a_tiny_model_and_a_catalog_base():
    """A family registered without a tiny model would skip the whole contract; the catalog's
    ``bases`` (what core validates entries against) are the registry's base families."""
    base = {f.name for f in families() if f.base is None}
    assert base - set(TINY) == set()
    assert set(known_bases()) == base


@pytest.mark.parametrize("name", TINY)
def test_txt2img_with_previews(tiny, job, name):
    fam = family(name)
    j = job()
    fin = run_generate(j.ctx, request(tiny(name), preview="latent"))
    (img,) = fin.images
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8 and img.std() > 0
    assert fin.metadata[0]["seed"] == 3
    assert len(j.previews) == max(j.steps) >= 2  # one preview per step (PNDM adds one)
    assert j.previews[-1].image.ndim == 3 and j.previews[-1].image.shape[-1] == 3
    assert fam.name == name


@pytest.mark.parametrize("name", [n for n in TINY if family(n).supports("img2img")])
def test_img2img(tiny, job, name):
    fin = run_generate(job().ctx, request(tiny(name), init_image=_image(), strength=0.5, steps=4))
    assert fin.images[0].shape == (SIZE, SIZE, 3)


# The flow families' own inpaint pipeline at the tiny size (the canvas path, which scales each
# crop to the family's native area, is tests/engine/diffusion/test_inpaint_keeps_photo.py's).
@pytest.mark.parametrize(
    "name", [n for n in TINY if family(n).supports("inpaint") and family(n).prediction == "flow"]
)
def test_inpaint(tiny, job, name):
    from studio.engine.diffusion.flow.generate import run_flow_generate

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    fin = run_flow_generate(
        job().ctx, request(tiny(name), init_image=_image(), mask=mask, strength=1.0, steps=2)
    )
    assert fin.images[0].shape == (SIZE, SIZE, 3)
    assert fin.extra["family"] == name


@pytest.mark.parametrize("name", TINY)
def test_cancel_at_step_k_never_decodes(tiny, job, name):
    j = job(cancel_at=1)
    with pytest.raises(JobCancelled):
        run_generate(j.ctx, request(tiny(name), steps=4, preview="latent"))
    assert max(j.steps) == 1
    assert len(j.previews) <= 1


@pytest.mark.parametrize("name", [n for n in TINY if _has_lora(family(n))])
def test_lora_changes_the_image_and_unloads(tiny, job, tmp_path, name):
    model = tiny(name)
    if family(name).prediction == "flow":
        from studio.engine.fixtures.tiny_flow_models import build_tiny_flow_lora as build
    else:
        from studio.engine.fixtures.tiny_models import build_tiny_lora as build
    lora = build(model, tmp_path / "lora.safetensors")
    plain = run_generate(job().ctx, request(model)).images[0]
    styled = run_generate(job().ctx, request(model, loras=(LoraSpec(str(lora), 1.0),))).images[0]
    again = run_generate(job().ctx, request(model)).images[0]
    assert not np.array_equal(plain, styled)
    assert np.array_equal(plain, again)


@pytest.mark.parametrize("name", [f.name for f in families()])
def test_memory_plan(name):
    from studio.engine.diffusion.shared.memory_models import plan_for_family, row_for

    fam = family(name)
    row = row_for(name)
    assert row is not None and row.total_gb > 0
    assert row.family in (fam.name, fam.root)
    plan = plan_for_family(name, 24)
    assert plan is not None and plan.fits, plan.describe()
