"""Tiny random-weight models of the real architectures, written to disk in the same formats
users have, so tests, the self-test and benchmarks load them through the real code path.

Nothing here touches the network: the CLIP tokenizer gets a locally written byte-level BPE
vocabulary. The VAE has 4 blocks so it downsamples x8 like SD's (ControlNet's conditioning
embedding needs that). ``sd15_unet_config`` is the real SD1.5 UNet shape, for benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-unicode table (same as transformers' bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer with a byte-level vocab (every byte, alone or word-final) and a few
    merges, written with save_pretrained so it loads like a real one."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["a t</w>", "t h", "th e</w>", "c a", "ca t</w>", "o n</w>", "a n"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges])
    tok.model_max_length = 77
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)


def tiny_text_encoder(vocab_size: int, hidden: int = 32, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(cfg)


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.18215,
    )


def tiny_unet(in_channels: int = 4, cross_attention_dim: int = 32, sdxl: bool = False):
    from diffusers import UNet2DConditionModel

    kwargs = {}
    if sdxl:
        kwargs = dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=8 * 6 + 16,  # 6 time ids + text_encoder_2 proj
            transformer_layers_per_block=(1, 1),
        )
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
        **kwargs,
    )


def tiny_taesd():
    from diffusers import AutoencoderTiny

    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )


def build_tiny_sd(folder: str | Path, inpainting: bool = False, seed: int = 0) -> Path:
    """Write a tiny SD1.x-architecture diffusers pipeline folder (model_index.json etc.).
    ``inpainting=True`` gives the 9-channel UNet of SD inpainting checkpoints."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    write_tokenizer(folder / "tokenizer")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = cls(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=tiny_unet(in_channels=9 if inpainting else 4),
        scheduler=PNDMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_sdxl(folder: str | Path, seed: int = 0) -> Path:
    """A tiny SDXL-architecture pipeline folder (two text encoders, text_time embedding)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    write_tokenizer(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer_2")
    tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
    sched_cfg = dict(SCHEDULER_CONFIG, _class_name="EulerDiscreteScheduler")
    sched_cfg.pop("skip_prk_steps")
    sched_cfg.pop("set_alpha_to_one")
    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(len(tok), hidden=16),
        text_encoder_2=tiny_text_encoder(len(tok2), hidden=16, projection=16),
        tokenizer=tok,
        tokenizer_2=tok2,
        unet=tiny_unet(cross_attention_dim=32, sdxl=True),
        scheduler=EulerDiscreteScheduler.from_config(sched_cfg),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_controlnet(folder: str | Path, sd_folder: str | Path, seed: int = 0) -> Path:
    """A ControlNetModel made from the tiny SD UNet (ControlNetModel.from_unet)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(sd_folder) / "unet")
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    # from_unet copies UNet weights; the zero convs start at zero. Perturb them so the
    # control image visibly changes the output in tests, as a trained ControlNet would.
    with torch.no_grad():
        for p in cn.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.5)
    cn.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def build_tiny_lora(sd_folder: str | Path, out: str | Path, seed: int = 0) -> Path:
    """A random LoRA (rank 4) on the tiny SD UNet's attention projections, made with peft's
    LoraConfig and saved in diffusers format by ``save_lora_weights``: loads with
    ``pipe.load_lora_weights`` like a downloaded one. Weights are random and scaled up so the
    effect on the tiny model's output is clearly visible."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    out = Path(out)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(sd_folder) / "unet")
    unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,  # random A and B: a non-zero update, like a trained LoRA
        )
    )
    state = get_peft_model_state_dict(unet)
    with torch.no_grad():
        for v in state.values():
            v.mul_(3.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        out.parent, unet_lora_layers=state, weight_name=out.name, safe_serialization=True
    )
    return out


def build_tiny_taesd(folder: str | Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tiny_taesd().save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def sd15_unet_config() -> dict:
    """The real Stable Diffusion 1.5 UNet configuration (860M parameters)."""
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def sd15_random_pipeline(seed: int = 0):
    """An in-memory SD1.5-architecture StableDiffusionPipeline with random weights: the real
    UNet and VAE shapes (real compute, no download), with the tiny text encoder (its cost is
    one pass per job). The tokenizer is written to a temp folder and loaded back."""
    import tempfile

    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=tiny_text_encoder(len(tokenizer), hidden=768),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**sd15_unet_config()),
        scheduler=PNDMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sd15_random(folder: str | Path, seed: int = 0) -> Path:
    """``sd15_random_pipeline`` saved as a diffusers folder (loads like a real SD1.5)."""
    folder = Path(folder)
    pipe = sd15_random_pipeline(seed)
    pipe.save_pretrained(folder, safe_serialization=True)
    pipe.tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))
