"""ControlNet on the flow families (FLUX.1, SD 3.5, Z-Image, Qwen-Image) through the Runner, as
the CLI and the canvas send it (GenerateRequest.controls), on tiny random ControlNets of each
architecture (studio.engine.fixtures.tiny_flow_control) loaded from diffusers folders."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from flow_requests import flow_request

from studio.core.errors import BadInput
from studio.engine.diffusion.flow.load import flow_families
from studio.engine.jobs.events import Cancelled, Failed, Finished, Progress
from studio.engine.jobs.requests import ControlInput, GenerateRequest
from studio.engine.jobs.runner import Runner

# Every flow family whose descriptor names a ControlNet pipeline (each has a tiny ControlNet).
FAMILIES = tuple(
    f.name for f in flow_families() if f.tiny_model and f.supports("txt2img", controlnet=True)
)
SIZE = 64


@pytest.fixture(scope="session")
def flow_cn(flow_models, session_tmp) -> SimpleNamespace:
    """The tiny ControlNets and, per family, the base they fit (SD3: the two-block variant,
    see ``build_tiny_sd3_two_blocks``)."""
    from studio.engine.fixtures import tiny_flow_control as tc

    root = session_tmp / "tiny-flow-control"
    cns = tc.build_all(root)
    sd3 = root / "tiny-sd3-2blocks"
    if not (sd3 / "model_index.json").exists():
        tc.build_tiny_sd3_two_blocks(flow_models.sd3, sd3)
    bases = {n: getattr(flow_models, n) for n in FAMILIES} | {"sd3": sd3}
    return SimpleNamespace(cn=cns, base=bases)


def control_image(seed: int = 0) -> np.ndarray:
    """A canny-like guide: white edges of a few rectangles on black."""
    rng = np.random.default_rng(seed)
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    for _ in range(4):
        x, y = rng.integers(4, SIZE - 20, 2)
        img[y : y + 16, x] = img[y : y + 16, x + 15] = 255
        img[y, x : x + 16] = img[y + 15, x : x + 16] = 255
    return img


def req(model, controls=(), **kw) -> GenerateRequest:
    base = dict(width=SIZE, height=SIZE, guidance=1.0, seed=11, controls=tuple(controls))
    return flow_request(model, **{**base, **kw})


def ctl(model, **kw) -> ControlInput:
    return ControlInput(kind="canny", image=control_image(), model=str(model), **kw)


def finished(final) -> Finished:
    assert isinstance(final, Finished), getattr(final, "message", final)
    return final


@pytest.mark.parametrize("name", FAMILIES)
def test_control_image_steers_txt2img(flow_cn, name):
    runner = Runner(device="cpu", dtype="float32")
    base = flow_cn.base[name]
    events: list = []
    with_cn = finished(runner.run(req(base, [ctl(flow_cn.cn[name])]), emit=events.append))
    without = finished(runner.run(req(base)))
    (img,) = with_cn.images
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    assert not np.array_equal(img, without.images[0])  # same seed, the control changed it
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 2
    meta = with_cn.metadata[0]
    assert meta["family"] == name and meta["controlnets"][0]["kind"] == "canny"
    again = finished(runner.run(req(base, [ctl(flow_cn.cn[name])])))
    assert np.array_equal(again.images[0], img)  # reproducible
    weaker = finished(runner.run(req(base, [ctl(flow_cn.cn[name], weight=0.3)])))
    assert not np.array_equal(weaker.images[0], img)  # the weight is the conditioning scale


@pytest.mark.parametrize("name", FAMILIES)
def test_a_controlnet_of_another_family_is_one_clear_refusal(flow_cn, tiny_models, name):
    runner = Runner(device="cpu", dtype="float32")
    base = flow_cn.base[name]
    final = runner.run(req(base, [ctl(tiny_models.controlnet)]))
    assert isinstance(final, Failed), final
    assert final.exit_code == BadInput("x").exit_code
    assert "\n" not in final.message and "is for SD 1" in final.message
    other = "qwen" if name != "qwen" else "flux1"
    final = runner.run(req(base, [ctl(flow_cn.cn[other])]))
    assert isinstance(final, Failed) and "ControlNet" in final.message
    assert "\n" not in final.message
    finished(runner.run(req(base, [ctl(flow_cn.cn[name])])))  # the runner is still usable


@pytest.mark.parametrize("name", FAMILIES)
def test_cancel_at_step_k_with_controlnet_never_decodes(flow_cn, monkeypatch, name):
    import diffusers

    runner = Runner(device="cpu", dtype="float32")
    base = flow_cn.base[name]
    finished(runner.run(req(base, [ctl(flow_cn.cn[name])])))  # loaded
    vae_cls = type(runner._cache[next(k for k in runner.cached_keys if k.startswith("flow:"))]
                   .base.vae)  # fmt: skip
    assert vae_cls in (diffusers.AutoencoderKL, diffusers.AutoencoderKLQwenImage)
    decoded = []
    real = vae_cls.decode
    monkeypatch.setattr(vae_cls, "decode", lambda s, *a, **k: decoded.append(1) or real(s, *a, **k))
    k = 2

    def emit(ev):
        if isinstance(ev, Progress) and ev.step == k:
            runner.cancel()

    final = runner.run(req(base, [ctl(flow_cn.cn[name])], steps=5, preview="latent"), emit=emit)
    assert isinstance(final, Cancelled), final
    assert final.step == k and decoded == []
    finished(runner.run(req(base, [ctl(flow_cn.cn[name])])))
    assert decoded == [1]


@pytest.mark.parametrize("name", ("flux1", "zimage"))
def test_a_second_job_reuses_the_cached_controlnet(flow_cn, monkeypatch, name):
    from studio.engine.diffusion.flow import control as flow_control

    loads = []
    real = flow_control.load_controlnet_module

    def counting(*a, **k):
        loads.append(a[1])
        return real(*a, **k)

    monkeypatch.setattr(flow_control, "load_controlnet_module", counting)
    runner = Runner(device="cpu", dtype="float32")
    base = flow_cn.base[name]
    a = finished(runner.run(req(base, [ctl(flow_cn.cn[name])])))
    b = finished(runner.run(req(base, [ctl(flow_cn.cn[name], weight=0.5)], seed=3)))
    c = finished(runner.run(req(base, [ctl(flow_cn.cn[name])])))
    assert len(loads) == 1  # loaded once, three jobs
    assert any(key.startswith("flowcn:") for key in runner.cached_keys)
    assert np.array_equal(a.images[0], c.images[0])  # the same request reproduces
    assert not np.array_equal(a.images[0], b.images[0])


@pytest.mark.parametrize("name", ("flux1", "sd3", "qwen"))
def test_two_controlnets_use_the_family_multi_controlnet(flow_cn, name):
    runner = Runner(device="cpu", dtype="float32")
    base = flow_cn.base[name]
    cn = flow_cn.cn[name]
    two = finished(runner.run(req(base, [ctl(cn), ctl(cn, weight=0.5, end=0.5)])))
    one = finished(runner.run(req(base, [ctl(cn)])))
    assert two.images[0].shape == (SIZE, SIZE, 3)
    assert not np.array_equal(two.images[0], one.images[0])
    assert len(two.metadata[0]["controlnets"]) == 2


def test_refusals_where_the_family_cannot(flow_cn, flow_models, tmp_path):
    from studio.engine.fixtures.tiny_flow_control import build_tiny_qwen_controlnet

    runner = Runner(device="cpu", dtype="float32")
    qcn2 = build_tiny_qwen_controlnet(tmp_path / "qwen-cn-2", seed=1)
    final = runner.run(req(flow_cn.base["qwen"], [ctl(flow_cn.cn["qwen"]), ctl(qcn2)]))
    assert isinstance(final, Failed) and "not different ControlNets" in final.message
    zi, zcn = flow_cn.base["zimage"], flow_cn.cn["zimage"]
    final = runner.run(req(zi, [ctl(zcn), ctl(zcn)]))
    assert isinstance(final, Failed) and "one ControlNet at a time" in final.message
    final = runner.run(req(zi, [ctl(zcn, start=0.2)]))
    assert isinstance(final, Failed) and "start/end" in final.message
    final = runner.run(req(zi, [ctl(zcn, start=0.5, end=0.2)]))
    assert isinstance(final, Failed) and "0 <= start < end <= 1" in final.message
    init = np.full((SIZE, SIZE, 3), 128, np.uint8)
    sd3, scn = flow_cn.base["sd3"], flow_cn.cn["sd3"]
    final = runner.run(req(sd3, [ctl(scn)], init_image=init, strength=0.5))
    assert isinstance(final, Failed)
    assert final.message == "SD 3.5 models can't do img2img with ControlNet in Studio"
    final = runner.run(req(flow_models.flux2, [ctl(flow_cn.cn["flux1"])]))
    assert isinstance(final, Failed) and "\n" not in final.message


def test_flux_img2img_with_controlnet(flow_cn):
    runner = Runner(device="cpu", dtype="float32")
    base, cn = flow_cn.base["flux1"], flow_cn.cn["flux1"]
    init = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    events: list = []
    fin = finished(
        runner.run(req(base, [ctl(cn)], init_image=init, strength=0.5, steps=4), emit=events.append)
    )
    assert fin.images[0].shape == (SIZE, SIZE, 3)
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 2  # 4 x 0.5


@pytest.mark.parametrize("name", ("flux1", "zimage"))
def test_crop_inpaint_with_controlnet(flow_cn, monkeypatch, name):
    """The canvas' inpaint with a guide: the control image is fitted to the image and cropped
    to each box like the init image; pixels outside the box stay the input's."""
    from studio.engine.diffusion.flow import inpaint as flow_inpaint

    monkeypatch.setattr(flow_inpaint, "flow_target", lambda fam: 64)
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    mask = np.zeros((80, 96), np.uint8)
    mask[30:50, 30:60] = 255
    runner = Runner(device="cpu", dtype="float32")
    base, cn = flow_cn.base[name], flow_cn.cn[name]
    kw = dict(init_image=image, mask=mask, mask_padding=8, strength=1.0, width=96, height=80)
    with_cn = finished(runner.run(req(base, [ctl(cn)], **kw)))
    without = finished(runner.run(req(base, **kw)))
    out = with_cn.images[0]
    assert out.shape == image.shape
    x, y, w, h = with_cn.extra["regions"][0]
    outside = np.ones(mask.shape, bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(out[outside], image[outside])
    assert not np.array_equal(out, without.images[0])  # the guide reached the crop


def test_sd3_inpaint_with_a_guide_controlnet_is_refused(flow_cn):
    image = np.full((SIZE, SIZE, 3), 100, np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[20:40, 20:40] = 255
    final = Runner(device="cpu", dtype="float32").run(
        req(flow_cn.base["sd3"], [ctl(flow_cn.cn["sd3"])], init_image=image, mask=mask)
    )
    assert isinstance(final, Failed) and "needs an inpainting ControlNet" in final.message


def _single_file(flow_cn, name, tmp_path):
    import shutil

    out = tmp_path / f"{name}-controlnet.safetensors"
    shutil.copy(flow_cn.cn[name] / "diffusion_pytorch_model.safetensors", out)
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_single_file_controlnets_are_recognised_by_their_tensors(flow_cn, tmp_path, name):
    from studio.engine.diffusion.flow.control import controlnet_class, controlnet_info

    fam, cls, _ = controlnet_info(str(_single_file(flow_cn, name, tmp_path)))
    assert fam is not None and fam.name == name and cls == controlnet_class(fam)


def test_a_single_file_without_a_shipped_config_is_one_clear_message(flow_cn, tmp_path):
    runner = Runner(device="cpu", dtype="float32")
    f = _single_file(flow_cn, "flux1", tmp_path)
    final = runner.run(req(flow_cn.base["flux1"], [ctl(f)]))
    assert isinstance(final, Failed) and "\n" not in final.message
    assert "single file can't be loaded offline; use its diffusers folder" in final.message


def test_zimage_single_file_loads_offline_with_a_local_config(flow_cn, tmp_path, monkeypatch):
    """Z-Image's ControlNet is one diffusers' single-file loader converts: with the family's
    config folder present (``controlnet_config``), the file loads offline to the same weights
    as the folder."""
    import dataclasses
    import shutil

    import diffusers
    import torch

    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow import control as flow_control
    from studio.engine.diffusion.shared import loader

    f = _single_file(flow_cn, "zimage", tmp_path)
    (tmp_path / "configs" / "zimage-controlnet").mkdir(parents=True)
    shutil.copy(flow_cn.cn["zimage"] / "config.json", tmp_path / "configs" / "zimage-controlnet")
    monkeypatch.setattr(loader, "CONFIGS", tmp_path / "configs")
    fam = dataclasses.replace(family("zimage"), controlnet_config="zimage-controlnet")
    cn = flow_control.load_controlnet_module("ZImageControlNetModel", f, fam, torch.float32)
    ref = diffusers.ZImageControlNetModel.from_pretrained(flow_cn.cn["zimage"])
    a, b = cn.state_dict(), ref.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)
    with pytest.raises(flow_control.ModelError, match="use its diffusers folder"):
        flow_control.load_controlnet_module("ZImageControlNetModel", f, family("zimage"), None)


def test_an_sd15_controlnet_single_file_is_told_apart_too(tiny_models, tmp_path):
    import shutil

    from studio.engine.diffusion.families.registry import family
    from studio.engine.diffusion.flow.control import check_fit

    f = tmp_path / "control_sd15_canny.safetensors"
    shutil.copy(tiny_models.controlnet / "diffusion_pytorch_model.safetensors", f)
    with pytest.raises(BadInput, match="is for SD 1.* but my-flux is FLUX.1"):
        check_fit(str(f), family("flux1"), "my-flux")


def test_flux_controlnet_union_takes_its_mode_from_the_guide_kind(flow_cn, tmp_path):
    from dataclasses import replace

    from studio.engine.fixtures.tiny_flow_control import build_tiny_flux_controlnet

    union = build_tiny_flux_controlnet(tmp_path / "tiny-flux1-union", union=True)
    runner = Runner(device="cpu", dtype="float32")
    base = flow_cn.base["flux1"]
    canny = finished(runner.run(req(base, [ctl(union)])))
    depth = finished(runner.run(req(base, [replace(ctl(union), kind="depth")])))
    assert not np.array_equal(canny.images[0], depth.images[0])  # the mode embedding differs
    final = runner.run(req(base, [replace(ctl(union), kind="inpaint")]))
    assert isinstance(final, Failed) and "ControlNet-Union has no mode for 'inpaint'" in (
        final.message
    )
    two = finished(runner.run(req(base, [ctl(union), ctl(flow_cn.cn["flux1"])])))
    assert two.images[0].shape == (SIZE, SIZE, 3)  # a Union next to a plain ControlNet
