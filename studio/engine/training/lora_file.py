"""Writing a trained LoRA (Hu et al. 2021: W' = W + (alpha / r) B A on the UNet's attention
projections) the way the ecosystem reads it, with Studio's training facts in the header.

- ``diffusers`` (default): what diffusers' ``examples/dreambooth/train_dreambooth_lora.py``
  writes -- ``convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))`` through the
  pipeline class's ``save_lora_weights`` (``unet.`` prefixed keys), with the peft
  ``LoraConfig`` as ``lora_adapter_metadata`` so ``pipe.load_lora_weights`` rebuilds the exact
  rank and alpha;
- ``kohya``: kohya-ss/AUTOMATIC1111/ComfyUI key names (``lora_unet_..._to_q.lora_down.weight``
  and ``.alpha``) by diffusers' ``convert_state_dict_to_kohya`` (the inverse of what
  ``load_lora_weights`` converts on load).

Either file carries ``studio_*`` keys (base model, family, trigger, steps, rank, images, ...)
and kohya's ``ss_*`` keys in its safetensors metadata; :func:`read_lora_metadata` reads them
back without torch. The file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.core.atomic import atomic_write_bytes

ADAPTER_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY


def adapter_metadata(config: dict) -> dict:
    """A peft ``LoraConfig.to_dict()`` made JSON-safe (sets -> sorted lists, enums -> str)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, set | frozenset):
            value = sorted(value)
        elif hasattr(value, "value") and isinstance(value.value, str):
            value = value.value
        out[key] = value
    return json.loads(json.dumps(out, default=str))


def training_metadata(info: dict) -> dict[str, str]:
    """The header strings for a run: ``studio_<key>`` for every entry of ``info`` (base_model,
    family, trigger, steps, rank, alpha, images, resolution, lr, seed, class_prompt,
    prior_preservation, ...) and the kohya-ss ``ss_*`` keys A1111's LoRA browser shows."""
    meta = {f"studio_{k}": str(v) for k, v in info.items() if v is not None}
    kohya = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": info.get("rank"),
        "ss_network_alpha": info.get("alpha"),
        "ss_max_train_steps": info.get("steps"),
        "ss_num_train_images": info.get("images"),
        "ss_resolution": info.get("resolution"),
        "ss_learning_rate": info.get("lr"),
        "ss_seed": info.get("seed"),
        "ss_output_name": info.get("name"),
        "ss_sd_model_name": info.get("base_model"),
    }
    meta.update({k: str(v) for k, v in kohya.items() if v is not None})
    return meta


def save_lora(
    path: Path,
    peft_state: dict,
    config: dict,
    pipeline_cls: type,
    info: dict,
    fmt: str = "diffusers",
) -> Path:
    """Write the UNet LoRA ``peft_state`` (``get_peft_model_state_dict(unet)``, fp32) to
    ``path`` in ``fmt`` ("diffusers" | "kohya") with ``info`` in the header (see the module
    docstring). ``pipeline_cls``: the model's pipeline class (its ``save_lora_weights``)."""
    import safetensors.torch
    import torch

    path = Path(path)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in peft_state.items()}
    adapter = adapter_metadata(config)
    meta = {"format": "pt", **training_metadata(info)}
    if fmt == "kohya":
        from diffusers.utils import convert_state_dict_to_kohya

        kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
        alpha = float(adapter.get("lora_alpha", info.get("alpha", 1)))
        # convert_state_dict_to_kohya writes alpha = rank; the LoRA's own alpha is what counts.
        kohya = {
            k: (torch.tensor(alpha) if k.endswith(".alpha") else v.contiguous())
            for k, v in kohya.items()
        }
        atomic_write_bytes(path, safetensors.torch.save(kohya, metadata=meta))
        return path

    from diffusers.utils import convert_state_dict_to_diffusers

    meta[ADAPTER_KEY] = json.dumps(
        {f"{pipeline_cls.unet_name}.{k}": v for k, v in adapter.items()}, indent=2, sort_keys=True
    )

    def write(weights: dict, _filename: str) -> None:
        data = {k: v.contiguous() for k, v in weights.items()}
        atomic_write_bytes(path, safetensors.torch.save(data, metadata=meta))

    pipeline_cls.save_lora_weights(
        save_directory=str(path.parent),
        unet_lora_layers=convert_state_dict_to_diffusers(state),
        weight_name=path.name,
        save_function=write,
        safe_serialization=True,
    )
    return path


def read_lora_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of a LoRA file (no tensor is read; torch-free)."""
    from studio.engine.models.identify import read_safetensors_header

    return dict(read_safetensors_header(Path(path))[1])
