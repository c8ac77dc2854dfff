"""Fuzz targets shared by the quick hypothesis tests (test_fuzz.py) and the long run
(benchmarks/fuzz.py). Each target takes fuzzed input and returns normally when the code under
test either succeeded with a well-formed result or refused with the documented error; any
other exception is a bug that the fuzzer reports."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from studio.core.errors import BadInput, StudioError


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (12, 10, 3), np.uint8)
    out = []
    for fmt, mode in (
        ("PNG", "RGB"),
        ("PNG", "RGBA"),
        ("PNG", "P"),
        ("JPEG", "RGB"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "RGB"),
    ):
        buf = io.BytesIO()
        im = Image.fromarray(arr, "RGB").convert(mode)
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEED_IMAGES = _seed_images()


@st.composite
def mutated_images(draw) -> bytes:
    """Valid small images of several formats with bit flips, truncation and splices."""
    data = bytearray(draw(st.sampled_from(SEED_IMAGES)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
    return bytes(data)


image_inputs = st.one_of(mutated_images(), st.binary(max_size=512))


def image_loader(data: bytes) -> None:
    from studio.core.imageio import normalize, open_bytes

    try:
        arr = normalize(open_bytes(data, "fuzz.png"))
    except BadInput:
        return
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] in (3, 4)
    assert arr.shape[0] >= 1 and arr.shape[1] >= 1


A1111_LINES = [
    "a photo of a cat, <lora:detail:0.6>",
    "Negative prompt: blurry, lowres",
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.55, Lora hashes: "a: 1, b: 2"',
]


@st.composite
def parameters_texts(draw) -> str:
    lines = [
        draw(st.sampled_from(A1111_LINES)) if draw(st.booleans()) else draw(st.text(max_size=80))
        for _ in range(draw(st.integers(0, 5)))
    ]
    text = "\n".join(lines)
    if text and draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=10)) + text[i:]
    return text


def parameters_parser(text: str) -> None:
    from studio.core.metadata import format_parameters, parse_parameters

    info = parse_parameters(text)
    assert isinstance(info, dict)
    # Whatever was parsed can be written back and re-parsed without error.
    again = parse_parameters(format_parameters(info))
    assert isinstance(again, dict)


def project_loader(data: bytes) -> None:
    from studio.core.document import Document, project_from_bytes

    try:
        doc = project_from_bytes(data, "fuzz.studio")
    except StudioError:
        return
    assert isinstance(doc, Document)
    for layer in doc.layers:
        assert layer.pixels.dtype == np.uint8


@st.composite
def project_files(draw) -> bytes:
    """Mutations of a real small project file (made once with the real saver)."""
    data = bytearray(draw(st.sampled_from(_seed_projects())))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[i] ^= 1 << draw(st.integers(0, 7))
        else:
            del data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


_PROJECTS: list[bytes] = []


def _seed_projects() -> list[bytes]:
    if not _PROJECTS:
        from studio.core.document import Document, project_bytes

        rng = np.random.default_rng(0)
        doc = Document.from_image(rng.integers(0, 256, (16, 24, 3), np.uint8))
        mask = np.zeros((16, 24), np.uint8)
        mask[4:9, 5:12] = 255
        doc.mask_layer.pixels[:] = mask
        _PROJECTS.append(project_bytes(doc))
    return _PROJECTS


@st.composite
def catalog_texts(draw) -> str:
    from studio.core.catalog import BUILTIN_CATALOG

    text = BUILTIN_CATALOG.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, max(0, len(text) - 1)))
        op = draw(st.sampled_from(["delete", "insert", "dup"]))
        if op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 40)) :]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=12)) + text[i:]
        else:
            j = min(len(text), i + draw(st.integers(1, 200)))
            text = text[:j] + text[i:j] + text[j:]
    return text


def catalog_parser(text: str) -> None:
    from studio.core.catalog import parse_catalog

    try:
        entries = parse_catalog(text)
    except BadInput:
        return
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
