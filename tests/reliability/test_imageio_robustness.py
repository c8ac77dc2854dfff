"""The image loader never lets a decoder's own exception type through: Pillow plugins raise
TypeError, KeyError, ZeroDivisionError... on damaged files (the fuzzer found a TIFF whose
second page has no size). Each becomes one clear BadInput."""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps, PngImagePlugin

from studio.core.errors import BadInput
from studio.core.imageio import load_image, load_mask

from .corpus import BAD, assert_one_clear_line


@pytest.mark.parametrize(
    "exc", [TypeError("Missing dimensions"), KeyError(256), ZeroDivisionError()]
)
def test_any_decoder_exception_is_bad_input(monkeypatch, exc):
    def broken(self):
        raise exc

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", broken)
    with pytest.raises(BadInput) as info:
        load_image(BAD / "one_pixel.png")
    assert "one_pixel.png" in info.value.message
    assert_one_clear_line(info.value.message)
    with pytest.raises(BadInput):
        load_mask(BAD / "one_pixel.png")


def test_broken_later_tiff_page_uses_the_first():
    with pytest.raises(TypeError):
        _ = Image.open(BAD / "bad_second_page.tiff").n_frames  # what Pillow does
    arr = load_image(BAD / "bad_second_page.tiff")
    assert arr.shape == (48, 64, 3)
    assert load_mask(BAD / "bad_second_page.tiff").shape == (48, 64)


def test_mask_with_broken_exif_is_still_a_mask(monkeypatch):
    def broken(im, *a, **k):
        raise ValueError("bad EXIF")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    assert load_mask(BAD / "gray16.png").shape == (48, 64)


def test_mask_conversion_error_is_bad_input(monkeypatch):
    def broken(self, *a, **k):
        raise OSError("decoder error -2")

    monkeypatch.setattr(Image.Image, "convert", broken)
    with pytest.raises(BadInput) as info:
        load_mask(BAD / "gray16.png")
    assert_one_clear_line(info.value.message)
