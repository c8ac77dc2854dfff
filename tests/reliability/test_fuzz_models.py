"""Fuzz the model-file identifier (studio.engine.models.identify, used by `studio models import` and
the app's model drop) with mutated .safetensors, torch zip checkpoints and legacy pickles:
it returns a description or raises a StudioError, never another exception, and never runs
code from a pickle."""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from studio.core.errors import StudioError

from .corpus import PWNED_MARKER


def _seeds() -> dict[str, bytes]:
    g = torch.Generator().manual_seed(0)
    sd = {
        "conv_first.weight": torch.randn(8, 3, 3, 3, generator=g),
        "conv_first.bias": torch.zeros(8),
        "lora_unet_down.lora_down.weight": torch.zeros(4, 16),
    }
    zipped = io.BytesIO()
    torch.save(sd, zipped)
    return {
        ".safetensors": save(sd, metadata={"format": "pt"}),
        ".pth": zipped.getvalue(),
        ".ckpt": pickle.dumps({"state_dict": {"w": [1, 2, 3]}}, protocol=2),
    }


SEEDS = _seeds()


@st.composite
def mutated_models(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[suffix])
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "overwrite", "insert"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return suffix, bytes(data)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated_models())
def test_fuzz_identify(scratch, case):
    from studio.engine.models.identify import identify

    suffix, data = case
    path = scratch / f"model{suffix}"
    path.write_bytes(data)
    PWNED_MARKER.unlink(missing_ok=True)
    try:
        identify(path)
    except StudioError as e:
        assert e.message and "\n" not in e.message, e.message
    assert not PWNED_MARKER.exists()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    "name,data",
    [
        # Pickle protocol 4 FRAME claiming 2**64-1 bytes: OverflowError inside pickle.
        ("frame.ckpt", b"\x80\x04\x95" + b"\xff" * 8 + b"N."),
        # BINBYTES8 claiming an exabyte: MemoryError or OverflowError inside pickle.
        ("huge.pth", b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"x."),
        # A safetensors header whose shape is not made of integers.
        (
            "shape.safetensors",
            (lambda h: len(h).to_bytes(8, "little") + h)(
                b'{"w": {"dtype": "F32", "shape": ["x"], "data_offsets": [0, 0]}}'
            ),
        ),
    ],
    ids=["pickle-frame", "pickle-binbytes8", "safetensors-shape"],
)
def test_found_by_the_fuzzer(tmp_path, name, data):
    from studio.core.errors import BadInput
    from studio.engine.models.identify import identify

    with pytest.raises(BadInput) as info:
        identify(_write(tmp_path, name, data))
    assert name in info.value.message and "\n" not in info.value.message
