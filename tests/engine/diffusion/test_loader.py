"""Model resolution and loading: folders, HF cache repo ids (offline), catalog ids, single-file
checkpoints (architecture detection, shipped configs, tokenizer lookup), variants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.shared import loader
from studio.engine.diffusion.shared.loader import detect_checkpoint, pick_variant, resolve_model

# -- resolution ----------------------------------------------------------------------------------


def test_resolve_folder_and_errors(tiny_models, tmp_path):
    r = resolve_model(str(tiny_models.sd))
    assert r.kind == "folder" and r.name == "tiny-sd"
    with pytest.raises(ModelError, match="no such model file"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="no such model file"):
        resolve_model("./relative/missing")
    with pytest.raises(BadInput, match="No model"):
        resolve_model("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        resolve_model(str(tmp_path / "empty"))
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(ModelError, match="not a model file"):
        resolve_model(str(txt))


def test_missing_repo_id_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as e:
        resolve_model("someone/some-model")
    msg = str(e.value)
    assert "not in the Hugging Face cache" in msg and "HF_HUB_OFFLINE" in msg
    assert "studio models download someone/some-model" in msg
    assert "huggingface-cli download someone/some-model" in msg


def test_catalog_id_not_downloaded():
    with pytest.raises(ModelError, match="studio models download sd15"):
        resolve_model("sd15")


def fake_hf_cache(cache: Path, repo: str, source: Path, files: list[str] | None = None) -> Path:
    """Lay ``source`` out as the HF hub cache does (refs/main -> snapshots/<commit>/...)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    if files is None:
        shutil.copytree(source, snap)
    else:
        for f in files:
            (snap / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / f, snap / f)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snap


def test_repo_id_from_hf_cache_loads_offline(tiny_models, tmp_path, monkeypatch):
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    cache = tmp_path / "hub"
    snap = fake_hf_cache(cache, "tester/tiny-sd", tiny_models.sd)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    r = resolve_model("tester/tiny-sd")
    assert r.kind == "folder" and r.path == snap and r.name == "tester/tiny-sd"
    final = Runner().run(
        GenerateRequest(model="tester/tiny-sd", prompt="x", steps=1, width=64, height=64)
    )
    assert isinstance(final, Finished)
    assert final.metadata[0]["model"] == "tester/tiny-sd"


def test_pick_variant(tmp_path):
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "X", "unet": ["diffusers", "U"], "vae": ["diffusers", "V"]})
    )
    for c in ("unet", "vae"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert pick_variant(tmp_path, prefer_fp16=True) is None
    for c in ("unet", "vae"):
        (tmp_path / c / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    assert pick_variant(tmp_path, prefer_fp16=True) == "fp16"
    assert pick_variant(tmp_path, prefer_fp16=False) is None
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # sd15-inpaint case
    assert pick_variant(tmp_path, prefer_fp16=False) == "fp16"


# -- shipped configs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, unet, text, text2",
    [
        ("sd15", 859_520_964, 123_060_480, None),
        ("sd15-inpaint", 859_535_364, 123_060_480, None),
        ("sd21", 865_910_724, 340_387_840, None),
        ("sd21-base", 865_910_724, 340_387_840, None),
        ("sdxl", 2_567_463_684, 123_060_480, 694_659_840),
    ],
)
def test_shipped_configs_build_the_real_architectures(name, unet, text, text2):
    """Instantiated on the meta device, the shipped configs have exactly the parameter counts
    of the published models (SD1.5 UNet 859.5M, SD2 865.9M, SDXL 2.567B, CLIP-L 123M,
    OpenCLIP-H 340M, OpenCLIP-bigG 694.7M; VAE 83.65M)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = loader.CONFIGS / name

    def count(m):
        return sum(p.numel() for p in m.parameters())

    index = json.loads((folder / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    with init_empty_weights():
        assert count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(
            folder / "unet"))) == unet  # fmt: skip
        assert count(AutoencoderKL.from_config(AutoencoderKL.load_config(
            folder / "vae"))) == 83_653_863  # fmt: skip
        assert count(CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))) == text
        if text2:
            cfg = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            assert count(CLIPTextModelWithProjection(cfg)) == text2
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["beta_schedule"] == "scaled_linear"


def test_shipped_controlnet_config():
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    with init_empty_weights():
        cn = ControlNetModel.from_config(
            ControlNetModel.load_config(loader.CONFIGS / "sd15-controlnet")
        )
    assert sum(p.numel() for p in cn.parameters()) == 361_279_120


# -- single-file checkpoints -------------------------------------------------------------------


def _write(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    from safetensors.torch import save_file

    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path))
    return path


@pytest.mark.parametrize(
    "shapes, expected",
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "sd15"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}, "sd15-inpaint"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (
                    320,
                    1024,
                ),
            },
            "sd21-base",  # all-zero weights: not v-prediction (see the v-prediction test)
        ),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
                "conditioner.embedders.1.model.ln_final.weight": (1280,),
            },
            "sdxl",
        ),
    ],
)
def test_detect_checkpoint(tmp_path, shapes, expected):
    assert detect_checkpoint(_write(tmp_path / "m.safetensors", shapes)) == expected


V_NORM = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
SD2_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
    "cond_stage_model.model.ln_final.weight": torch.zeros(1024),
}


def _sd2_file(path: Path, norm_std: float | None, yaml: str | None = None) -> Path:
    """An SD2 checkpoint in the real (LDM) key layout with the one tensor the v-prediction test
    reads: the last output block's first transformer norm bias (1280 wide in SD2)."""
    from safetensors.torch import save_file

    state = dict(SD2_KEYS)
    if norm_std is not None:
        g = torch.Generator().manual_seed(0)
        state[V_NORM] = torch.randn(1280, generator=g) * norm_std
    save_file(state, str(path))
    if yaml is not None:
        path.with_suffix(".yaml").write_text(yaml)
    return path


def test_sd2_v_prediction_is_decided_by_the_weights_not_the_name(tmp_path):
    """ComfyUI's test (supported_models.SD20.model_type): the norm bias of a v-prediction SD2
    has a std above 0.09. The file name ("base", "768") no longer decides."""
    assert detect_checkpoint(_sd2_file(tmp_path / "v2-1_512-base.safetensors", 0.2)) == "sd21"
    assert detect_checkpoint(_sd2_file(tmp_path / "v2-1_768-ema.safetensors", 0.02)) == (
        "sd21-base"
    )
    # A1111's sidecar config wins over the weights.
    v_yaml = 'model:\n  params:\n    parameterization: "v"\n'
    assert detect_checkpoint(_sd2_file(tmp_path / "a.safetensors", 0.02, v_yaml)) == "sd21"
    eps_yaml = "model:\n  params:\n    linear_start: 0.00085\n"
    assert detect_checkpoint(_sd2_file(tmp_path / "b.safetensors", 0.2, eps_yaml)) == "sd21-base"


def test_sd2_and_sdxl_inpainting_files_get_inpainting_configs(tmp_path):
    """conv_in with 9 input channels is checked before the family's config is chosen, and the
    chosen config builds a 9-channel UNet of the published size (meta device, no weights)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    cases = {
        "sd21-inpaint": {"cond_stage_model.model.ln_final.weight": (1024,)},
        "sdxl-inpaint": {"conditioner.embedders.1.model.ln_final.weight": (1280,)},
    }
    # The published txt2img UNets plus conv_in's 5 extra input channels (320 x 5 x 3 x 3).
    extra_in = 320 * 5 * 3 * 3
    sizes = {"sd21-inpaint": 865_910_724 + extra_in, "sdxl-inpaint": 2_567_463_684 + extra_in}
    for config, extra in cases.items():
        path = _write(
            tmp_path / f"{config}.safetensors",
            {"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3), **extra},
        )
        assert detect_checkpoint(path) == config
        cfg = UNet2DConditionModel.load_config(loader.CONFIGS / config / "unet")
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(cfg)
        assert unet.config.in_channels == 9
        assert sum(p.numel() for p in unet.parameters()) == sizes[config]
        index = json.loads((loader.CONFIGS / config / "model_index.json").read_text())
        assert "Inpaint" in index["_class_name"]


def test_detect_rejects_non_checkpoints(tmp_path):
    with pytest.raises(ModelError, match="not a Stable Diffusion checkpoint"):
        detect_checkpoint(_write(tmp_path / "x.safetensors", {"foo": (2,)}))
    with pytest.raises(ModelError, match="diffusers-format"):
        detect_checkpoint(_write(tmp_path / "y.safetensors", {"down_blocks.0.w": (2,)}))
    junk = tmp_path / "z.safetensors"
    junk.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a readable"):
        detect_checkpoint(junk)


# A diffusers -> original (LDM) key conversion for the tiny UNet/VAE/CLIP, the inverse of what
# diffusers' from_single_file does (after diffusers' scripts/convert_diffusers_to_original_
# stable_diffusion.py, generalised to any block count and layers_per_block).


def _unet_to_ldm(sd: dict, cfg: dict) -> dict:
    n = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    pairs = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    for i in range(n):
        for j in range(lpb):
            pairs.append(
                (f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(lpb + 1) * i + j + 1}.0.")
            )
            pairs.append(
                (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(lpb + 1) * i + j + 1}.1.")
            )
        pairs.append(
            (f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(lpb + 1) * (i + 1)}.0.op.")
        )
        has_attn = "CrossAttn" in cfg["up_block_types"][i]
        for j in range(lpb + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(lpb + 1) * i + j}.0."))
            pairs.append(
                (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(lpb + 1) * i + j}.1.")
            )
        pairs.append(
            (
                f"up_blocks.{i}.upsamplers.0.",
                f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attn else 1}.",
            )
        )
    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
              ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
              ("conv_shortcut", "skip_connection")]  # fmt: skip
    out = {}
    for k, v in sd.items():
        new = k
        for a, b in pairs:
            if new.startswith(a):
                new = b + new[len(a) :]
                if ".resnets." in a:
                    for x, y in resnet:
                        new = new.replace(f".{x}.", f".{y}.")
                break
        out["model.diffusion_model." + new] = v
    return out


def _vae_to_ldm(sd: dict, cfg: dict) -> dict:
    n = len(cfg["block_out_channels"])
    pairs = [("encoder.mid_block.attentions.0.", "encoder.mid.attn_1."),
             ("decoder.mid_block.attentions.0.", "decoder.mid.attn_1."),
             ("encoder.conv_norm_out.", "encoder.norm_out."),
             ("decoder.conv_norm_out.", "decoder.norm_out.")]  # fmt: skip
    for part in ("encoder", "decoder"):
        for i in range(2):
            pairs.append((f"{part}.mid_block.resnets.{i}.", f"{part}.mid.block_{i + 1}."))
    for i in range(n):
        pairs.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."))
        pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        pairs.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block."))
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample."))
    attn = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
            ("to_out.0.", "proj_out.")]  # fmt: skip
    out = {}
    for k, v in sd.items():
        new = k
        for a, b in pairs:
            if new.startswith(a):
                new = b + new[len(a) :]
                break
        new = new.replace("conv_shortcut", "nin_shortcut")
        if ".attn_1." in new:
            for x, y in attn:
                new = new.replace(".attn_1." + x, ".attn_1." + y)
            if v.ndim == 2:
                v = v[:, :, None, None]
        out["first_stage_model." + new] = v
    return out


def tiny_single_file(sd_folder: Path, out: Path) -> Path:
    from safetensors.torch import load_file, save_file

    unet_cfg = json.loads((sd_folder / "unet" / "config.json").read_text())
    vae_cfg = json.loads((sd_folder / "vae" / "config.json").read_text())
    state = {}
    state.update(
        _unet_to_ldm(
            load_file(sd_folder / "unet" / "diffusion_pytorch_model.safetensors"), unet_cfg
        )
    )
    state.update(
        _vae_to_ldm(load_file(sd_folder / "vae" / "diffusion_pytorch_model.safetensors"), vae_cfg)
    )
    te = load_file(sd_folder / "text_encoder" / "model.safetensors")
    # A1111 checkpoints name them cond_stage_model.transformer.text_model.* (transformers >= 5.6
    # saves CLIPTextModel without the text_model. level).
    state.update({
        "cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in te.items()
    })  # fmt: skip
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


@pytest.fixture
def tiny_configs(tiny_models, tmp_path, monkeypatch):
    """A configs folder whose "sd15" entry describes the tiny model (configs only, no weights,
    no tokenizer vocabulary: like the shipped ones)."""
    root = tmp_path / "configs"
    dst = root / "sd15"
    for f in tiny_models.sd.rglob("*.json"):
        rel = f.relative_to(tiny_models.sd)
        if rel.parts[0] == "tokenizer" and rel.name in ("vocab.json", "tokenizer.json"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst / rel)
    monkeypatch.setattr(loader, "CONFIGS", root)
    return dst


def test_single_file_needs_a_tokenizer_and_says_where_to_get_it(
    tiny_models, tiny_configs, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    ckpt = tiny_single_file(tiny_models.sd, tmp_path / "tiny-v1.safetensors")
    with pytest.raises(ModelError) as e:
        loader.load_single_file(ckpt, "txt2img", torch.float32)
    msg = str(e.value)
    assert "No CLIP tokenizer" in msg
    assert "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5" in msg


def test_single_file_loads_offline_with_cached_tokenizer_and_generates(
    tiny_models, tiny_configs, tmp_path, monkeypatch
):
    """The whole single-file path: detect v1 from tensors, config= the local folder, tokenizer
    from the HF cache copy of the base repo; the result equals the diffusers-folder model."""
    import numpy as np

    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    cache = tmp_path / "hub"
    fake_hf_cache(
        cache,
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        tiny_models.sd,
        ["tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"],
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    ckpt = tiny_single_file(tiny_models.sd, tmp_path / "tiny-v1.safetensors")
    assert detect_checkpoint(ckpt) == "sd15"
    runner = Runner()
    req = dict(prompt="a cat", steps=2, width=64, height=64, seed=4, preview="off")
    single = runner.run(GenerateRequest(model=str(ckpt), **req))
    assert isinstance(single, Finished), single
    assert single.metadata[0]["model"] == "tiny-v1"
    folder = runner.run(GenerateRequest(model=str(tiny_models.sd), **req))
    np.testing.assert_allclose(single.images[0].astype(int), folder.images[0].astype(int), atol=2)


def test_sdxl_controlnet_single_file_gets_a_clear_message(tmp_path):
    """Only the SD1.5 ControlNet config ships: an SDXL ControlNet file (its class-embedding
    `label_emb` keys give it away) is refused in one line instead of a config mismatch."""
    import torch
    from safetensors.torch import save_file

    from studio.core.errors import ModelError
    from studio.engine.diffusion.shared.loader import load_controlnet

    path = tmp_path / "controlnet-sdxl.safetensors"
    save_file(
        {
            "control_model.label_emb.0.0.weight": torch.zeros(4, 4),
            "control_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
        },
        str(path),
    )
    with pytest.raises(ModelError, match="SDXL ControlNet single file") as info:
        load_controlnet(str(path), torch.float32)
    assert "\n" not in info.value.message


# -- SDXL v-prediction and zero-terminal-SNR files --------------------------------------------

SDXL_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "conditioner.embedders.1.model.ln_final.weight": (1280,),
}


@pytest.mark.parametrize(
    "markers, declared",
    [
        ((), {}),
        (("v_pred",), {"prediction_type": "v_prediction"}),
        (("v_pred", "ztsnr"), {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}),
    ],
)
def test_sdxl_marker_keys_declare_the_schedule_as_comfyui_reads_them(tmp_path, markers, declared):
    """ComfyUI (supported_models.SDXL.model_type): a ``v_pred`` key means v-prediction, and
    ``ztsnr`` beside it zero terminal SNR (NoobAI-XL V-Pred style files)."""
    from studio.engine.diffusion.families import recognise_file

    shapes = {**SDXL_KEYS, **{m: (1,) for m in markers}}
    match = recognise_file(_write(tmp_path / "noob.safetensors", shapes))
    assert match.config == "sdxl" and dict(match.scheduler) == declared


def test_a_declared_zero_snr_v_schedule_reaches_every_sampler():
    """On SDXL's shipped scheduler: v-prediction, and the last timestep pure noise (Lin et al.
    2024: alpha_bar_T = 0; diffusers keeps 2**-24 to avoid a division by zero) where the
    stock schedule leaves alpha_bar_T = 0.0047 — in the sampler the job builds, too."""
    from diffusers import EulerDiscreteScheduler

    from studio.engine.diffusion.sd.schedulers import make_scheduler

    stock = EulerDiscreteScheduler.from_pretrained(loader.CONFIGS / "sdxl" / "scheduler")
    assert float(stock.alphas_cumprod[-1]) == pytest.approx(0.0047, abs=1e-4)
    declared = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
    sched = loader.with_file_scheduler(stock, declared)
    assert loader.with_file_scheduler(stock, {}) is stock
    for job in (sched, make_scheduler("Euler a", dict(sched.config))):
        assert job.config.prediction_type == "v_prediction"
        assert float(job.alphas_cumprod[-1]) == pytest.approx(2.0**-24)
