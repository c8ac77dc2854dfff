"""Inpainting keeps the photo: for every method an ``InpaintRequest`` can name (OpenCV Telea and
Navier-Stokes, "auto", LaMa, SD inpainting with a 9-channel UNet and with a plain txt2img UNet,
and the flow families the descriptors route inpainting to: FLUX.1, FLUX.1 Fill, FLUX.1
Kontext, FLUX.2 klein, Z-Image, SD3, Qwen-Image), a job on a textured image with masks in the
middle, along each border, around the whole frame, L-shaped and in two separate places leaves
every pixel beyond the mask's soft edge byte-identical to the input.

The expected region is computed here with OpenCV, not with Studio's helpers: the mask dilated by
a (2r + 1) x (2r + 1) square, r = the reach of the paste-back's soft edge. With ``feather=0``
that is the mask itself (r = 0): not one pixel outside what the user painted may change. With
``feather=f`` the soft edge is documented to reach about 2f past the mask (grown by f/2, then a
Gaussian of sigma f/2: ``shared.crop.effective_feather``, ``core.masks.blend_alpha``), so r = 2f;
the padding is chosen so the crop box reaches further than that, and a method that wrote its
whole padded crop back (or pasted it at the wrong place) would fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import InpaintRequest
from studio.engine.jobs.runner import Runner

H = W = 96
PADDING = 16  # > 2 * FEATHER: the crop box reaches past the soft edge
FEATHER = 4


def texture(h: int = H, w: int = W, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Noise over stripes and a gradient: every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 127 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0) + (xx + yy) * 0.3
    img = base[..., None] + rng.normal(0, 25, (h, w, channels))
    return np.clip(img, 0, 255).astype(np.uint8)


def _mask(*rects: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    for y0, y1, x0, x1 in rects:
        m[y0:y1, x0:x1] = 255
    return m


MASKS = {
    "square": _mask((40, 56, 40, 56)),
    "top": _mask((0, 10, 30, 66)),
    "bottom": _mask((86, 96, 30, 66)),
    "left": _mask((30, 66, 0, 10)),
    "right": _mask((30, 66, 86, 96)),
    "frame": _mask((0, 6, 0, 96), (90, 96, 0, 96), (0, 96, 0, 6), (0, 96, 90, 96)),
    "L": _mask((20, 70, 24, 34), (60, 70, 24, 70)),
    "two": _mask((8, 20, 8, 20), (70, 84, 66, 84)),
}


def beyond_reach(mask: np.ndarray, reach: int) -> np.ndarray:
    """True where a pixel is more than ``reach`` px (Chebyshev) from every masked pixel."""
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    return cv2.dilate((mask > 0).astype(np.uint8), kernel) == 0


def check_keeps_photo(image: np.ndarray, mask: np.ndarray, out: np.ndarray, feather: int):
    assert out.shape == image.shape and out.dtype == np.uint8
    keep = beyond_reach(mask, 2 * feather)
    # not vacuous: some pixels of the padded crop lie beyond the soft edge
    assert (keep & ~beyond_reach(mask, PADDING)).any()
    changed = (out != image).any(axis=2)
    assert not (changed & keep).any(), (
        f"{int((changed & keep).sum())} pixels beyond {2 * feather} px of the mask changed"
    )
    assert changed[mask > 0].any()  # the hole was inpainted


def run(runner: Runner, request: InpaintRequest) -> np.ndarray:
    final = runner.run(request)
    assert isinstance(final, Finished), getattr(final, "message", final)
    (out,) = final.images
    return out


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu", dtype="float32")


# -- classical and LaMa --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lama_file(tmp_path_factory) -> Path:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(0)
    net = LaMa(in_nc=4, out_nc=3).eval()
    path = tmp_path_factory.mktemp("lama") / "lama-random.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("feather", [0, FEATHER])
@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("method", ["telea", "ns", "auto"])  # auto: no LaMa installed -> Telea
def test_classical(runner, method, mask_name, feather):
    image, mask = texture(seed=1), MASKS[mask_name]
    request = InpaintRequest(
        image=image, mask=mask, method=method, padding=PADDING, feather=feather
    )
    check_keeps_photo(image, mask, run(runner, request), feather)


@pytest.mark.parametrize(
    "mask_name, feather", [(m, FEATHER) for m in MASKS] + [("two", 0), ("frame", 0)]
)
def test_lama(runner, lama_file, mask_name, feather):
    image, mask = texture(seed=1), MASKS[mask_name]
    request = InpaintRequest(
        image=image, mask=mask, method="lama", model=str(lama_file), padding=PADDING,
        feather=feather,
    )  # fmt: skip
    check_keeps_photo(image, mask, run(runner, request), feather)


# -- Stable Diffusion ----------------------------------------------------------------------------
def _diffusion(model, image, mask, feather, **kw) -> InpaintRequest:
    base = dict(
        image=image, mask=mask, method="diffusion", model=str(model), prompt="a cat", steps=2,
        guidance=1.0, seed=3, padding=PADDING, feather=feather, preview="off", device="cpu",
        dtype="float32",
    )  # fmt: skip
    return InpaintRequest(**{**base, **kw})


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("kind", ["sd_inpaint", "sd"])
def test_sd(runner, tiny_models, kind, mask_name):
    image, mask = texture(seed=2), MASKS[mask_name]
    out = run(runner, _diffusion(getattr(tiny_models, kind), image, mask, FEATHER))
    check_keeps_photo(image, mask, out, FEATHER)


@pytest.mark.parametrize("mask_name", ["square", "two", "frame"])
@pytest.mark.parametrize("kind", ["sd_inpaint", "sd"])
def test_sd_without_feather_changes_only_the_mask(runner, tiny_models, kind, mask_name):
    image, mask = texture(seed=3), MASKS[mask_name]
    out = run(runner, _diffusion(getattr(tiny_models, kind), image, mask, 0))
    check_keeps_photo(image, mask, out, 0)


def test_sd_strength_below_one(runner, tiny_models):
    image, mask = texture(seed=4), MASKS["L"]
    out = run(runner, _diffusion(tiny_models.sd, image, mask, FEATHER, strength=0.5, steps=4))
    check_keeps_photo(image, mask, out, FEATHER)


def test_rgba_keeps_color_and_alpha(runner, tiny_models):
    image, mask = texture(seed=5, channels=4), MASKS["two"]
    for request in (
        InpaintRequest(image=image, mask=mask, method="telea", padding=PADDING, feather=FEATHER),
        _diffusion(tiny_models.sd_inpaint, image, mask, FEATHER),
    ):
        check_keeps_photo(image, mask, run(runner, request), FEATHER)


# -- flow families ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flow_models(session_tmp):
    """The tiny flow pipelines (the same folders tests/engine/diffusion/flow builds), FLUX.1
    Fill, and Kontext (the FLUX.1 folder under FluxKontextPipeline)."""
    from studio.engine.fixtures import tiny_flow_models as tiny

    root = session_tmp / "tiny-flow-models"
    paths = dict(tiny.build_all(root))
    fill = root / "tiny-flux1-fill"
    if not (fill / "model_index.json").exists():
        tiny.build_tiny_flux(fill, fill=True)
    kontext = root / "tiny-flux1-kontext"
    if not (kontext / "model_index.json").exists():
        shutil.copytree(paths["flux1"], kontext)
        index = json.loads((kontext / "model_index.json").read_text())
        index["_class_name"] = "FluxKontextPipeline"
        (kontext / "model_index.json").write_text(json.dumps(index))
    return {**paths, "fill": fill, "kontext": kontext}


@pytest.fixture
def small_crops(monkeypatch):
    """The crops run at 64x64 (the families' native ~1024^2 is slow on a CPU test)."""
    from studio.engine.diffusion.flow import inpaint as flow_inpaint

    monkeypatch.setattr(flow_inpaint, "flow_target", lambda fam: 64)


FLOW = ["flux1", "fill", "kontext", "flux2", "zimage", "sd3", "qwen"]


def test_the_flow_models_route_to_flow_inpaint(flow_models):
    from studio.engine.diffusion.shared.defaults import model_family

    for name in FLOW:
        fam = model_family(str(flow_models[name]))
        assert fam is not None and fam.prediction == "flow" and fam.supports("inpaint"), name


@pytest.mark.parametrize("mask_name", ["square", "left", "two"])
@pytest.mark.parametrize("name", FLOW)
def test_flow(runner, flow_models, small_crops, name, mask_name):
    image, mask = texture(seed=6), MASKS[mask_name]
    out = run(runner, _diffusion(flow_models[name], image, mask, FEATHER))
    check_keeps_photo(image, mask, out, FEATHER)


@pytest.mark.parametrize("mask_name", ["top", "bottom", "right", "frame", "L"])
def test_flow_every_other_mask(runner, flow_models, small_crops, mask_name):
    image, mask = texture(seed=7), MASKS[mask_name]
    out = run(runner, _diffusion(flow_models["sd3"], image, mask, FEATHER))
    check_keeps_photo(image, mask, out, FEATHER)


@pytest.mark.parametrize("name", ["fill", "zimage"])
def test_flow_without_feather_changes_only_the_mask(runner, flow_models, small_crops, name):
    image, mask = texture(seed=8), MASKS["two"]
    out = run(runner, _diffusion(flow_models[name], image, mask, 0))
    check_keeps_photo(image, mask, out, 0)
