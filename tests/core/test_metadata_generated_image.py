"""The ``Lora hashes`` of an image the engine really generated (studio.core.metadata through
the runner): the first 12 hex digits of the sha256 of the LoRA file after its safetensors
header, as A1111's ``hashes.addnet_hash_safetensors`` computes it."""

from __future__ import annotations

import hashlib

from studio.core.metadata import format_parameters
from studio.engine.jobs.requests import GenerateRequest, LoraSpec


def _addnet_hash(data: bytes) -> str:
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n :]).hexdigest()


def test_generated_image_with_a_lora_has_its_hash(tiny_models, tmp_path):
    from studio.engine.fixtures import tiny_models as tiny
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.runner import Runner

    lora = tiny.build_tiny_lora(tiny_models.sd, tmp_path / "tiny_lora.safetensors")
    final = Runner().run(
        GenerateRequest(
            model=str(tiny_models.sd), prompt="a cat", steps=2, width=64, height=64,
            preview="off", loras=(LoraSpec(str(lora), 0.8),),
        )
    )  # fmt: skip
    assert isinstance(final, Finished), getattr(final, "message", final)
    want = f"tiny_lora: {_addnet_hash(lora.read_bytes())[:12]}"
    assert final.metadata[0]["lora_hashes"] == want
    assert f'Lora hashes: "{want}"' in format_parameters(final.metadata[0])
