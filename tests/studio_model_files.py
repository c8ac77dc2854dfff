"""Builders of small model files with the real key names and shapes of each kind, for the
identification/import tests. Large tensors are written as sparse safetensors files: a valid
header and zero-filled data that takes no disk blocks (``truncate``), so an SD1.5-shaped
checkpoint costs nothing to create."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def write_sparse_safetensors(
    path: Path, spec: dict[str, tuple[int, ...]], dtype: str = "F16", metadata: dict | None = None
) -> Path:
    header: dict = {}
    offset = 0
    for name, shape in spec.items():
        n = math.prod(shape) * _BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return path


def sd_checkpoint_spec(base: str = "sd1", in_channels: int = 4) -> dict[str, tuple[int, ...]]:
    """A subset of the real keys/shapes of an original-layout (LDM) single-file checkpoint."""
    ctx = {"sd1": 768, "sd2": 1024, "sdxl": 2048}[base]
    spec: dict[str, tuple[int, ...]] = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, in_channels, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": (320,),
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
        "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
    }
    if base == "sdxl":
        spec["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"] = (
            640,
            ctx,
        )
        spec["model.diffusion_model.label_emb.0.0.weight"] = (1280, 2816)
        spec["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = (
            49408,
            768,
        )
        spec["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"] = (
            3 * 1280,
            1280,
        )
    else:
        spec["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = (
            320,
            ctx,
        )
        if base == "sd2":
            spec["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = (
                3 * 1024,
                1024,
            )
        else:
            spec["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = (
                49408,
                768,
            )
    return spec


def controlnet_original_spec(ctx: int = 768) -> dict[str, tuple[int, ...]]:
    return {
        "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
        "control_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, ctx),
        "control_model.zero_convs.0.0.weight": (320, 320, 1, 1),
        "control_model.middle_block_out.0.weight": (1280, 1280, 1, 1),
    }


def kohya_lora_spec(ctx: int = 768, te2: bool = False) -> dict[str, tuple[int, ...]]:
    unet = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    spec = {
        f"{unet}.lora_down.weight": (8, ctx),
        f"{unet}.lora_up.weight": (320, 8),
        f"{unet}.alpha": (),
    }
    te = "lora_te1_" if te2 else "lora_te_"
    spec[f"{te}text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = (8, 768)
    spec[f"{te}text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = (768, 8)
    if te2:
        spec["lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = (8, 1280)
        spec["lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = (1280, 8)
    return spec


def peft_lora_spec(ctx: int = 768) -> dict[str, tuple[int, ...]]:
    p = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    return {
        f"{p}.to_k.lora_A.weight": (4, ctx),
        f"{p}.to_k.lora_B.weight": (320, 4),
        f"{p}.to_v.lora_A.weight": (4, ctx),
        f"{p}.to_v.lora_B.weight": (320, 4),
    }
