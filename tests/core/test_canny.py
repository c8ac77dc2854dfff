import cv2
import numpy as np
import pytest

from studio.core.canny import canny, scribble_from_layer, to_gray
from studio.core.errors import BadInput
from studio.core.imageio import load_image


@pytest.mark.parametrize("low,high", [(50, 150), (100, 200), (10, 40)])
def test_matches_cv2_canny(photos, low, high):
    rgb = load_image(photos.astronaut, "RGB")
    expected = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)
    out = canny(rgb, low, high)
    assert out.shape == (*rgb.shape[:2], 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], expected)
    assert np.array_equal(out[..., 0], out[..., 2])
    assert set(np.unique(out)) <= {0, 255}
    assert expected.any()


def test_thresholds_change_edge_count(photos):
    rgb = load_image(photos.coffee, "RGB")
    loose = (canny(rgb, 20, 60)[..., 0] > 0).sum()
    strict = (canny(rgb, 200, 400)[..., 0] > 0).sum()
    assert loose > strict * 1.5


def test_swapped_thresholds_and_blur(photos):
    rgb = load_image(photos.chelsea, "RGB")
    assert np.array_equal(canny(rgb, 200, 100), canny(rgb, 100, 200))
    blurred = canny(rgb, 100, 200, blur=5)
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    assert np.array_equal(blurred[..., 0], cv2.Canny(gray, 100, 200))
    assert (blurred > 0).sum() < (canny(rgb, 100, 200) > 0).sum()


def test_rgba_outline_is_an_edge():
    img = np.zeros((64, 64, 4), np.uint8)
    img[16:48, 16:48] = (200, 200, 200, 255)
    edges = canny(img, 50, 100)[..., 0]
    assert edges[16:48, 15:18].any() and not edges[30:34, 30:34].any()
    assert to_gray(img)[0, 0] == 0


def test_bad_input():
    with pytest.raises(BadInput):
        canny(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(BadInput):
        canny(np.zeros((8, 8, 3), np.uint8), -1, 10)


def test_scribble_from_layer():
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[10, 5:25] = (255, 255, 255, 255)  # a white stroke
    layer[20, 5:25] = (0, 0, 0, 255)  # a black stroke counts too
    layer[25, 5:25] = (255, 255, 255, 10)  # nearly erased
    out = scribble_from_layer(layer)
    assert out.shape == (32, 32, 3)
    assert (out[10, 5:25] == 255).all() and (out[20, 5:25] == 255).all()
    assert out[25].max() == 0 and out[0].max() == 0
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[2] = 200
    assert (scribble_from_layer(rgb)[2] == 255).all() and scribble_from_layer(rgb)[3].max() == 0
