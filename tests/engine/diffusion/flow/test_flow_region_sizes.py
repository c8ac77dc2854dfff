"""Regions of any size on the flow families (first-hour bug: SD 3.5 and Z-Image refused a
104x104 selection, "`height` and `width` have to be divisible by 16"; FLUX warned and
returned 96x96). The model works at the family descriptor's ``size_multiple`` (VAE factor x
patch size) and each image comes back at exactly the asked size. The tiny pipelines here have
the real models' geometry (``studio.engine.fixtures.tiny_flow_geometry``: VAE factor 8, 2x2
patches), so they refuse and drift exactly as the real ones do."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flow_requests import flow_request

from studio.engine.diffusion.families import family
from studio.engine.diffusion.flow import generate as flow_generate
from studio.engine.diffusion.flow.generate import run_flow_generate
from studio.engine.diffusion.flow.inpaint import flow_inpaint

SIZES = ((104, 104), (100, 72))


@pytest.fixture(scope="session")
def geo_models(session_tmp):
    from studio.engine.fixtures.tiny_flow_geometry import build_real_geometry

    return build_real_geometry(session_tmp / "tiny-flow-geometry", ("sd3", "zimage", "flux1"))


@pytest.fixture
def work_sizes(monkeypatch):
    """The (width, height) each pipeline call ran at."""
    seen = []
    real = flow_generate.denoise_flow

    def spy(*args, **kw):
        seen.append((kw["width"], kw["height"]))
        return real(*args, **kw)

    monkeypatch.setattr(flow_generate, "denoise_flow", spy)
    return seen


def test_families_declare_their_size_multiple():
    for name in ("sd3", "zimage", "qwen", "flux1", "flux1-fill", "flux1-kontext", "flux2"):
        assert family(name).size_multiple == 16, name
    for name in ("sd1", "sd2", "sdxl"):
        assert family(name).size_multiple == 8, name
    assert family("sd3").work_size(104, 104) == (112, 112)
    assert family("sd3").work_size(100, 72) == (112, 80)
    assert family("sd3").work_size(96, 64) == (96, 64)
    assert family("sd1").work_size(104, 100) == (104, 104)


@pytest.mark.parametrize("name", ("sd3", "zimage"))
@pytest.mark.parametrize("size", SIZES)
def test_txt2img_and_img2img_at_a_region_size_that_is_no_multiple_of_16(
    geo_models, job, work_sizes, name, size
):
    w, h = size
    fin = run_flow_generate(job().ctx, flow_request(geo_models[name], width=w, height=h))
    (img,) = fin.images
    assert img.shape == (h, w, 3) and img.std() > 0  # exactly the region
    assert fin.metadata[0]["width"] == w and fin.metadata[0]["height"] == h
    init = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    fin = run_flow_generate(
        job().ctx, flow_request(geo_models[name], width=w, height=h, init_image=init, strength=0.6)
    )
    assert fin.images[0].shape == (h, w, 3)
    assert all(ww % 16 == 0 and hh % 16 == 0 for ww, hh in work_sizes)
    assert work_sizes[-1] == family(name).work_size(w, h)


def test_flux_neither_warns_nor_drifts(geo_models, job, work_sizes):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = logging.getLogger("diffusers")
    handler = Keep(logging.WARNING)
    log.addHandler(handler)
    try:
        fin = run_flow_generate(job().ctx, flow_request(geo_models["flux1"], width=104, height=104))
    finally:
        log.removeHandler(handler)
    assert fin.images[0].shape == (104, 104, 3)  # not the pipeline's silent 96x96
    assert not [r for r in records if "divisible" in r.getMessage()]
    assert work_sizes == [(112, 112)]


@pytest.mark.parametrize("name", ("sd3", "zimage"))
def test_inpaint_crop_of_a_region_that_is_no_multiple_of_16(
    geo_models, job, work_sizes, monkeypatch, name
):
    from studio.engine.diffusion.flow import inpaint as module

    monkeypatch.setattr(module, "flow_target", lambda fam: 96)  # tiny: not 1024^2 crops
    w, h = 100, 72
    init = np.full((h, w, 3), 120, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[20:50, 30:70] = 255
    req = flow_request(
        geo_models[name], width=w, height=h, init_image=init, mask=mask, mask_padding=8
    )
    fin = flow_inpaint(job().ctx, req)
    (out,) = fin.images
    assert out.shape == (h, w, 3)
    x, y, bw, bh = fin.extra["regions"][0]
    outside = np.ones((h, w), bool)
    outside[y : y + bh, x : x + bw] = False
    assert (out[outside] == 120).all()  # outside the crop box: untouched
    assert work_sizes and all(ww % 16 == 0 and hh % 16 == 0 for ww, hh in work_sizes)
