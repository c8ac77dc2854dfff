"""Pose templates shipped in resources/poses/ load, fit the canvas and render."""

import numpy as np
import pytest

from studio.core.errors import BadInput
from studio.core.pose_templates import load_template, template_names


def test_the_shipped_templates_are_listed():
    names = template_names()
    assert {"standing", "arms-raised", "walking", "two-people"} <= set(names)


@pytest.mark.parametrize("size", [(512, 768), (1024, 1024), (768, 512)])
def test_every_template_fits_inside_the_canvas(size):
    w, h = size
    for name in template_names():
        pose = load_template(name, w, h)
        assert (pose.width, pose.height) == (w, h)
        assert pose.people
        for person in pose.people:
            pts = [(x, y) for x, y, c in person.body if c > 0]
            assert len(pts) == 18
            xs, ys = zip(*pts, strict=True)
            assert min(xs) >= 0 and max(xs) <= w and min(ys) >= 0 and max(ys) <= h
        img = pose.render()
        assert img.shape == (h, w, 3) and np.count_nonzero(img) > 0


def test_two_people_has_two_and_a_square_canvas_keeps_proportions():
    pose = load_template("two-people", 1000, 1000)
    assert len(pose.people) == 2
    (x0, _, _), (x1, _, _) = pose.people[0].body[1], pose.people[1].body[1]  # necks
    assert x0 < 500 < x1


def test_unknown_template_is_one_clear_message():
    with pytest.raises(BadInput, match="no pose template 'dancing'"):
        load_template("dancing", 512, 512)
