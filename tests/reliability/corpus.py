"""The bad-input corpus (tests/data/bad/, made by make_bad_files.py) and what each file must
do: images that are odd but valid load normalised; everything else is refused in one line."""

from __future__ import annotations

from pathlib import Path

BAD = Path(__file__).resolve().parent.parent / "data" / "bad"

# name -> (height, width, channels) of the normalised array
VALID_IMAGES = {
    "animated.gif": (48, 64, 3),
    "animated.png": (48, 64, 3),
    "bad_second_page.tiff": (48, 64, 3),  # a broken later page: the first one is used
    "cmyk.jpg": (48, 64, 3),
    "exif_rotated.jpg": (64, 48, 3),  # stored landscape, EXIF says rotate: comes out upright
    "float32.tiff": (48, 64, 3),
    "gray16.png": (48, 64, 3),
    "grayscale_alpha.png": (48, 64, 4),
    "one_pixel.png": (1, 1, 3),
    "palette_transparency.png": (48, 64, 4),
    "png_named.jpg": (48, 64, 3),
}

REFUSED_IMAGES = [
    "empty.png",
    "truncated.png",
    "truncated_header.png",
    "truncated.jpg",
    "not_an_image.png",
    "random_bytes.jpg",
    "html_as.webp",
    "bomb_30000x30000.png",
    "huge_20000x100.png",
    "zero_height.png",
    "corrupt_idat.png",
    "fake.safetensors",
    "malicious.pth",
    "text.pth",
    "corrupt.studio",
]

BAD_MODELS = [
    "fake.safetensors",
    "truncated.safetensors",
    "malicious.pth",
    "malicious.ckpt",
    "text.pth",
]
BAD_PROJECTS = [
    "corrupt.studio",
    "not_a_zip.studio",
    "newer_version.studio",
    "missing_layers.studio",
    "huge_canvas.studio",
    "oversized_canvas.studio",
    "encrypted_layer.studio",
    "unknown_compression.studio",
]
# Projects the app does not refuse yet (owner: studio/core/document.py); their tests are
# strict xfails. "Unsafe" ones are not even run through the app: opening them would allocate
# tens of GB (numpy's lazy zeros are touched once the canvas paints).
PROJECT_BUGS: dict[
    str, str
] = {}  # all fixed: huge/oversized canvas, encrypted, unknown compression
UNSAFE_IN_APP = {"oversized_canvas.studio"}
PWNED_MARKER = Path("/tmp/studio-pwned-by-pickle")


def all_files() -> list[Path]:
    return sorted(p for p in BAD.iterdir() if p.suffix != ".py")


def assert_one_clear_line(text: str) -> None:
    """A user-facing error: exactly one non-empty line, no traceback."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    assert "Traceback" not in text and 'File "' not in text, text
