"""``--vae`` / ``--clip-skip`` on ``studio generate`` and ``studio inpaint`` (they reach the
requests' ``vae`` and ``clip_skip`` and the engine), and a flow model (tiny FLUX.1) from the
CLI end to end, with ``studio info`` naming its family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio.cli import build_parser, main
from studio.core.imageio import load_image
from studio.core.metadata import read_metadata


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> Path:
    from studio.engine.fixtures.tiny_flow_models import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("flow") / "tiny-flux1")


def _gen(model, out: Path, *extra: str) -> list[str]:
    return ["generate", "--model", str(model), "--prompt", "a cat", "--steps", "2", "--size", "64x64", "--seed", "5", "--out", str(out), *extra]  # fmt: skip


def test_generate_flags_map_to_the_request(tiny_models, tmp_path):
    from studio.cli.generate_cmd import build_request

    out = tmp_path / "a.png"
    args = build_parser("generate").parse_args(
        _gen(tiny_models.sd, out, "--vae", str(tiny_models.sd), "--clip-skip", "2")
    )
    request, _ = build_request(args)
    assert request.vae == str(tiny_models.sd) and request.clip_skip == 2
    plain, _ = build_request(build_parser("generate").parse_args(_gen(tiny_models.sd, out)))
    assert plain.vae is None and plain.clip_skip == 1


def test_inpaint_flags_map_to_the_request(tiny_models):
    from studio.cli.inpaint_cmd import build_request

    argv = ["inpaint", "--image", "i.png", "--mask", "m.png", "--method", str(tiny_models.sd_inpaint), "--vae", "some-vae", "--clip-skip", "3", "--out", "o.png"]  # fmt: skip
    args = build_parser("inpaint").parse_args(argv)
    img = np.zeros((64, 64, 3), np.uint8)
    request = build_request(args, img, np.zeros((64, 64), np.uint8))
    assert request.vae == "some-vae" and request.clip_skip == 3


def test_clip_skip_reaches_the_model_and_is_recorded(tiny_models, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(_gen(tiny_models.sd, a)) == 0
    assert main(_gen(tiny_models.sd, b, "--clip-skip", "2")) == 0
    assert not np.array_equal(load_image(a), load_image(b))  # another CLIP layer conditions it
    assert read_metadata(b)["request"]["clip_skip"] == 2


def test_bad_clip_skip_is_one_line_exit_2(tiny_models, tmp_path, capsys):
    assert main(_gen(tiny_models.sd, tmp_path / "a.png", "--clip-skip", "0")) == 2
    err = capsys.readouterr().err
    assert "clip skip 0" in err and "Traceback" not in err


def test_missing_vae_fails_in_one_line(tiny_models, tmp_path, capsys):
    rc = main(_gen(tiny_models.sd, tmp_path / "a.png", "--vae", str(tmp_path / "no-such-vae")))
    err = capsys.readouterr().err
    assert rc != 0 and "no-such-vae" in err and "Traceback" not in err


def test_flux_from_the_cli_end_to_end_and_info_shows_the_family(tiny_flux, tmp_path, capsys):
    out = tmp_path / "o.png"
    argv = ["generate", "--model", str(tiny_flux), "--prompt", "x", "--steps", "2", "--size", "64x64", "--device", "cpu", "--dtype", "float32", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    img = load_image(out)
    assert img.shape == (64, 64, 3) and img.std() > 0
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "flux1" and "Family: flux1" in info["parameters"]
    assert info["sampler"] == "Euler (flow matching)"
