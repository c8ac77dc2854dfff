"""``Lora hashes`` in the infotext Studio writes, computed as A1111's Lora extension does.

A1111 (transcribed): ``extensions-builtin/Lora/network.py`` ``NetworkOnDisk`` takes the
file's ``sshs_model_hash`` metadata, else ``hashes.sha256(..., use_addnet_hash=True)`` for a
``.safetensors`` file (``addnet_hash_safetensors``: the sha256 of the bytes after the 8-byte
length and the JSON header), else the file's sha256; ``shorthash`` is its first 12 hex
digits; ``extra_networks_lora.py`` writes ``Lora hashes: "alias: shorthash, ..."`` with ":"
and "," taken out of the alias."""

from __future__ import annotations

import hashlib
import io

import torch
from safetensors.torch import save_file

from studio.core.metadata import (
    format_parameters,
    lora_hash,
    lora_hashes,
    parse_parameters,
    request_metadata,
)
from studio.engine.jobs.requests import GenerateRequest, LoraSpec


def addnet_hash_safetensors(b) -> str:
    """A1111 modules/hashes.py, verbatim in substance."""
    hash_sha256 = hashlib.sha256()
    blksize = 1024 * 1024
    b.seek(0)
    header = b.read(8)
    n = int.from_bytes(header, "little")
    offset = n + 8
    b.seek(offset)
    for chunk in iter(lambda: b.read(blksize), b""):
        hash_sha256.update(chunk)
    return hash_sha256.hexdigest()


def test_safetensors_hash_is_the_addnet_hash_not_the_file_sha256(tmp_path):
    path = tmp_path / "ink.safetensors"
    save_file({"w": torch.arange(6.0)}, path, metadata={"ss_output_name": "ink"})
    data = path.read_bytes()
    want = addnet_hash_safetensors(io.BytesIO(data))
    assert lora_hash(path) == want
    assert want != hashlib.sha256(data).hexdigest()  # the header (metadata) doesn't count
    renamed = tmp_path / "other.safetensors"
    save_file({"w": torch.arange(6.0)}, renamed, metadata={"ss_output_name": "changed"})
    assert lora_hash(renamed) == want  # same tensors, other metadata: same hash


def test_sshs_model_hash_metadata_wins_and_other_files_hash_whole(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"w": torch.ones(2)}, path, metadata={"sshs_model_hash": "abcdef0123456789" * 4})
    assert lora_hash(path) == "abcdef0123456789" * 4
    pt = tmp_path / "b.pt"
    pt.write_bytes(b"not a safetensors file")
    assert lora_hash(pt) == hashlib.sha256(b"not a safetensors file").hexdigest()
    assert lora_hash(tmp_path / "missing.safetensors") is None


def test_lora_hashes_line_is_a1111s(tmp_path):
    a, b = tmp_path / "ink.safetensors", tmp_path / "de:tail,s.safetensors"
    save_file({"w": torch.zeros(3)}, a)
    save_file({"w": torch.ones(3)}, b)
    value = lora_hashes([LoraSpec(str(a), 0.6), LoraSpec(str(b))])
    assert value == f"ink: {lora_hash(a)[:12]}, details: {lora_hash(b)[:12]}"
    meta = request_metadata(
        GenerateRequest(model="m", prompt="x", loras=(LoraSpec(str(a)),)), 1, "m"
    )
    text = format_parameters(meta)
    assert f'Lora hashes: "ink: {lora_hash(a)[:12]}"' in text
    assert parse_parameters(text)["lora_hashes"] == f"ink: {lora_hash(a)[:12]}"
    # the LoRAs that ran (a prompt's <lora:> tags too) are hashed when given
    both = request_metadata(
        GenerateRequest(model="m", prompt="x"), 1, "m", ran_loras=[LoraSpec(str(b))]
    )
    assert both["lora_hashes"] == f"details: {lora_hash(b)[:12]}" and "loras" not in both


def test_forge_distilled_cfg_scale_is_read():
    info = parse_parameters(
        "a fox\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
        "Distilled CFG Scale: 3.5, Seed: 1, Size: 1024x1024, Model: flux1-dev"
    )
    assert info["distilled_cfg_scale"] == 3.5 and info["cfg_scale"] == 1.0
    assert "Distilled CFG Scale: 3.5" in format_parameters(info)


def test_odd_safetensors_headers_fall_back_to_the_addnet_hash(tmp_path):
    for i, header in enumerate((b'{"__metadata__": ["not", "a", "dict"]}', b"[1, 2]", b"")):
        data = len(header).to_bytes(8, "little") + header + b"tensor bytes"
        path = tmp_path / f"odd{i}.safetensors"
        path.write_bytes(data)
        assert lora_hash(path) == hashlib.sha256(b"tensor bytes").hexdigest()


def test_a_folder_has_no_hash(tmp_path):
    folder = tmp_path / "looks_like.safetensors"
    folder.mkdir()
    assert lora_hash(folder) is None
    assert lora_hashes([LoraSpec(str(folder))]) is None
