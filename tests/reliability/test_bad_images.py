"""Every file of the bad-input corpus through the image loader: valid oddities come out
normalised (upright, 8-bit, RGB/RGBA), everything else is one clear BadInput."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from studio.core.errors import BadInput
from studio.core.imageio import load_image, load_mask

from .corpus import BAD, REFUSED_IMAGES, VALID_IMAGES, all_files, assert_one_clear_line


def test_corpus_is_big_enough():
    assert len(all_files()) >= 25


@pytest.mark.parametrize("name,shape", sorted(VALID_IMAGES.items()))
def test_valid_oddities_load_normalised(name, shape):
    arr = load_image(BAD / name)
    assert arr.dtype == np.uint8
    assert arr.shape == shape
    assert arr.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("name", REFUSED_IMAGES)
def test_broken_files_refused_with_one_line(name):
    with pytest.raises(BadInput) as info:
        load_image(BAD / name)
    assert name in info.value.message
    assert_one_clear_line(info.value.message)


def test_exif_rotation_is_applied_not_just_the_size():
    """The stored image is a left-to-right red gradient; orientation 6 turns it clockwise, so
    upright the red gradient runs top to bottom."""
    arr = load_image(BAD / "exif_rotated.jpg").astype(int)
    top, bottom = arr[2, :, 0].mean(), arr[-3, :, 0].mean()
    left, right = arr[:, 2, 0].mean(), arr[:, -3, 0].mean()
    assert abs(bottom - top) > 150  # varies along y now
    assert abs(right - left) < 60


def test_sixteen_bit_is_scaled_not_clipped():
    arr = load_image(BAD / "gray16.png")
    assert arr[0, 0, 0] < 10 and arr[-1, -1, 0] > 245
    assert len(np.unique(arr[..., 0])) > 100  # a gradient survives, not 0/255 clipping


def test_palette_transparency_keeps_alpha():
    arr = load_image(BAD / "palette_transparency.png")
    assert arr.shape[2] == 4 and (arr[..., 3] == 0).any() and (arr[..., 3] == 255).any()


def test_missing_and_folder_and_unreadable(tmp_path, monkeypatch):
    with pytest.raises(BadInput, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(BadInput, match="folder"):
        load_image(tmp_path)
    p = tmp_path / "locked.png"
    shutil.copy(BAD / "one_pixel.png", p)
    # Running as root ignores chmod 000, so make the read itself fail as it would for a user.
    from pathlib import Path

    real = Path.read_bytes

    def deny(self):
        if self == p:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(BadInput, match="permission denied"):
        load_image(p)


def test_mask_from_alpha_and_size_check(tmp_path):
    from PIL import Image

    im = Image.new("RGBA", (8, 6), (0, 0, 0, 0))
    im.putpixel((2, 3), (0, 0, 0, 255))
    im.save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png", size=(8, 6))
    assert m.shape == (6, 8) and m[3, 2] == 255 and m.sum() == 255
    with pytest.raises(BadInput, match="mask is 8x6"):
        load_mask(tmp_path / "m.png", size=(16, 6))
