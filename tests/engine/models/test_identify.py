"""Model-file identification on small files of each kind, and malicious pickles that must be
refused without running."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from studio_model_files import (
    controlnet_original_spec,
    kohya_lora_spec,
    peft_lora_spec,
    sd_checkpoint_spec,
    write_sparse_safetensors,
)

from studio.core.errors import BadInput
from studio.engine.models.identify import UnsafePickle, identify, read_tensors


@pytest.mark.parametrize("base", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("channels,kind", [(4, "txt2img"), (9, "inpaint")])
def test_single_file_checkpoints(tmp_path, base, channels, kind):
    path = write_sparse_safetensors(
        tmp_path / "ckpt.safetensors", sd_checkpoint_spec(base, channels)
    )
    found = identify(path)
    assert (found.kind, found.base, found.format) == (kind, base, "safetensors")
    assert found.details["in_channels"] == channels


def test_checkpoint_in_pickle_ckpt_with_state_dict_wrapper(tmp_path):
    """A .ckpt as older tools saved it: {"state_dict": {...}, "global_step": n}."""
    spec = sd_checkpoint_spec("sd1", 9)
    small = {k: torch.zeros(1) for k in spec}
    small["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 9, 3, 3)
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    small[key] = torch.zeros(320, 768, dtype=torch.float16)
    import numpy as np

    # numpy scalars next to the weights (as some trainers store global_step) are tolerated.
    extra = {"global_step": np.int64(470000), "epoch": 6, "lr": np.float32(1e-4)}
    torch.save({"state_dict": small, **extra}, tmp_path / "m.ckpt")
    found = identify(tmp_path / "m.ckpt")
    assert (found.kind, found.base, found.format) == ("inpaint", "sd1", "pickle")


def test_unet_only_and_refiner_and_odd_channels_are_refused(tmp_path):
    spec = {k: v for k, v in sd_checkpoint_spec("sd1").items() if k.startswith("model.")}
    with pytest.raises(BadInput, match="only the UNet"):
        identify(write_sparse_safetensors(tmp_path / "unet.safetensors", spec))
    refiner = {
        "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
        "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight": (3840, 1280),
    }
    with pytest.raises(BadInput, match="refiner"):
        identify(write_sparse_safetensors(tmp_path / "refiner.safetensors", refiner))
    with pytest.raises(BadInput, match="8-channel"):
        identify(
            write_sparse_safetensors(tmp_path / "p2p.safetensors", sd_checkpoint_spec("sd1", 8))
        )


@pytest.mark.parametrize("ctx,base", [(768, "sd1"), (1024, "sd2"), (2048, "sdxl")])
def test_controlnet_original_layout(tmp_path, ctx, base):
    path = write_sparse_safetensors(
        tmp_path / "control_v11p_sd15_openpose.safetensors", controlnet_original_spec(ctx)
    )
    found = identify(path)
    assert (found.kind, found.base) == ("controlnet", base)
    assert found.details["condition"] == "openpose" and found.details["layout"] == "original"


def test_diffusers_controlnet_taesd_vae_from_real_tiny_models(tiny_models):
    cn = identify(tiny_models.controlnet / "diffusion_pytorch_model.safetensors")
    assert cn.kind == "controlnet" and cn.details["layout"] == "diffusers"
    taesd = identify(tiny_models.taesd / "diffusion_pytorch_model.safetensors")
    assert taesd.kind == "preview-decoder"
    vae = identify(tiny_models.sd / "vae" / "diffusion_pytorch_model.safetensors")
    assert vae.kind == "vae"
    with pytest.raises(BadInput, match="single diffusers UNet component"):
        identify(tiny_models.sd / "unet" / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize(
    "spec,base,fmt",
    [
        (kohya_lora_spec(768), "sd1", "kohya"),
        (kohya_lora_spec(2048, te2=True), "sdxl", "kohya"),
        (peft_lora_spec(768), "sd1", "diffusers/peft"),
        (peft_lora_spec(1024), "sd2", "diffusers/peft"),
    ],
)
def test_lora_formats(tmp_path, spec, base, fmt):
    found = identify(write_sparse_safetensors(tmp_path / "style.safetensors", spec))
    assert (found.kind, found.base, found.details["lora_format"]) == ("lora", base, fmt)
    assert found.details["rank"] in (4, 8)


def test_lora_saved_by_diffusers_from_tiny_unet(tiny_models, tmp_path):
    """A real LoRA: peft adapter on the tiny UNet, saved with diffusers' save_lora_weights."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny_models.sd / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v"]))
    StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=get_peft_model_state_dict(unet), safe_serialization=True
    )
    (path,) = tmp_path.glob("*.safetensors")
    found = identify(path)
    assert found.kind == "lora" and found.details["rank"] == 4
    assert found.base is None  # the tiny UNet's context width (32) is no real family


def test_upscaler_pth_zip_and_legacy_and_torchscript(tmp_path):
    from spandrel.architectures.ESRGAN import ESRGAN

    model = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    torch.save({"params_ema": model.state_dict()}, tmp_path / "x2.pth")
    torch.save(model.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), torch.zeros(1, 3, 16, 16))
    torch.jit.save(traced, str(tmp_path / "traced.pt"))
    for name, fmt in (("x2.pth", "pickle"), ("old.pth", "pickle"), ("traced.pt", "torchscript")):
        found = identify(tmp_path / name)
        assert (found.kind, found.format) == ("upscaler", fmt), name
        assert found.details["architecture"] == "ESRGAN" and found.details["scale"] == 2


def test_compact_upscaler_safetensors(tmp_path):
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4)
    save_file(model.state_dict(), tmp_path / "general-x4v3.safetensors")
    found = identify(tmp_path / "general-x4v3.safetensors")
    assert (found.kind, found.details["scale"]) == ("upscaler", 4)


def test_lama_full_shape(tmp_path):
    """The real LaMa architecture's keys and shapes (zero weights, sparse file)."""
    from spandrel.architectures.LaMa import LaMa

    with torch.device("meta"):
        state = LaMa().state_dict()
    # Named like big-lama.pt's TorchScript state dict ("generator.model.N...").
    spec = {k.replace("model.model", "generator.model"): tuple(v.shape) for k, v in state.items()}
    path = write_sparse_safetensors(tmp_path / "big-lama.safetensors", spec, dtype="F32")
    assert path.stat().st_size > 200_000_000  # full size on paper ...
    found = identify(path)
    assert found.kind == "lama" and found.details["architecture"] == "LaMa"


def test_unidentifiable_files_are_refused(tmp_path):
    torch.save({"foo.weight": torch.zeros(3, 3)}, tmp_path / "x.pth")
    with pytest.raises(BadInput, match="Could not identify x.pth"):
        identify(tmp_path / "x.pth")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadInput, match="unsupported model file type"):
        identify(tmp_path / "notes.txt")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(100))
    with pytest.raises(BadInput, match="not a valid .safetensors"):
        identify(tmp_path / "junk.safetensors")
    (tmp_path / "trunc.ckpt").write_bytes(b"\x80\x04\x95")
    with pytest.raises(BadInput):
        identify(tmp_path / "trunc.ckpt")
    with pytest.raises(BadInput, match="No such file"):
        identify(tmp_path / "missing.safetensors")
    # FLUX-like / SD3-like keys that no family descriptor matches: named, not "unknown"
    flux = {"double_blocks.0.img_attn.qkv.weight": (9216, 3072), "img_in.weight": (3072, 64)}
    with pytest.raises(BadInput, match="FLUX model Studio does not run"):
        identify(write_sparse_safetensors(tmp_path / "flux-odd.safetensors", flux))
    sd3 = {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536)}
    with pytest.raises(BadInput, match="Stable Diffusion 3 variant"):
        identify(write_sparse_safetensors(tmp_path / "sd3.safetensors", sd3))
    write_sparse_safetensors(tmp_path / "emb.safetensors", {"emb_params": (4, 768)})
    assert identify(tmp_path / "emb.safetensors").kind == "embedding"  # tests/.../test_embeddings


# ------------------------------------------------------------------------------------------
# Malicious pickles: refused, and the payload never runs.


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilExec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [_Evil, _EvilExec])
@pytest.mark.parametrize("container", ["raw", "torch-zip", "torch-legacy", "torchscript-zip"])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload, container):
    marker = tmp_path / "PWNED"
    evil = payload(marker)
    path = tmp_path / "model.ckpt"
    if container == "raw":
        path.write_bytes(pickle.dumps({"model.0.weight": evil}))
    elif container == "torch-zip":
        torch.save({"state_dict": {"w": torch.zeros(2)}, "callback": evil}, path)
    elif container == "torch-legacy":
        torch.save({"w": torch.zeros(2), "x": evil}, path, _use_new_zipfile_serialization=False)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(evil))
            z.writestr("archive/code/__torch__.py", "")
            z.writestr("archive/constants.pkl", pickle.dumps(()))
    assert not marker.exists()
    with pytest.raises(UnsafePickle, match="never runs"):
        identify(path)
    assert not marker.exists()
    # The same through the safe reader directly, and via the importer's entry point.
    with pytest.raises(BadInput):
        read_tensors(path)
    assert not marker.exists()


def test_pickled_classes_are_refused_even_if_harmless(tmp_path):
    """Only the torch rebuild helpers are allowed: any other class (here a plain dataclass-ish
    object from this module) is refused rather than constructed."""
    path = tmp_path / "m.pth"
    torch.save({"w": torch.zeros(2), "cfg": Path("/tmp")}, path)
    with pytest.raises(UnsafePickle, match="pathlib"):
        identify(path)


@pytest.mark.parametrize(
    "extra,config,full",
    [
        ({"guidance_in.in_layer.bias": (3072,)}, "flux1-dev", False),
        ({}, "flux1-schnell", False),
        ({"guidance_in.in_layer.bias": (3072,), "vae.decoder.conv_in.weight": (512, 16, 3, 3)},
         "flux1-dev", True),
    ],
)  # fmt: skip
def test_flow_family_files_are_identified_by_the_descriptors(tmp_path, extra, config, full):
    """A FLUX.1 transformer (BFL key names, as BFL and ComfyUI ship it) or full checkpoint is a
    txt2img model of family flux1, with the config the engine loads it by; a transformer-only
    file says where its text encoders and VAE come from."""
    keys = {
        "double_blocks.0.img_attn.norm.key_norm.scale": (128,),
        "img_in.weight": (3072, 64),
        **extra,
    }
    found = identify(write_sparse_safetensors(tmp_path / f"{config}.safetensors", keys))
    assert (found.kind, found.base) == ("txt2img", "flux1")
    assert found.details["config"] == config and found.details["transformer_only"] is not full
    assert ("come from black-forest-labs/" in found.description) is not full
