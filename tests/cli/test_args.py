"""One set of shared argument groups (studio/cli/args.py): the same option has the
same default and help in every command that takes it, and the model-dependent defaults
(steps, guidance, scheduler) and the random seed resolve the same way in generate and
inpaint."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from studio.cli import args as shared
from studio.cli import build_parser

SHARED = ("--prompt", "--negative", "--steps", "--guidance", "--seed", "--scheduler",
          "--preview", "--preview-of", "--preview-dir", "--device", "--dtype")  # fmt: skip


def _actions(*path: str) -> dict[str, argparse.Action]:
    """option string -> argparse action of the (sub)command ``path``."""
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {opt: a for a in parser._actions for opt in a.option_strings}


COMMANDS = {
    "generate": ("generate",),
    "inpaint": ("inpaint",),
    "upscale": ("upscale",),
    "control pose": ("control", "pose"),
}


def test_shared_options_have_one_default_everywhere():
    seen: dict[str, tuple] = {}
    users: dict[str, list[str]] = {}
    for label, path in COMMANDS.items():
        for opt, action in _actions(*path).items():
            if opt not in SHARED or opt == "--prompt":  # --prompt: required in generate only
                continue
            key = (action.default, action.type, action.choices)
            users.setdefault(opt, []).append(label)
            assert seen.setdefault(opt, key) == key, f"{opt} differs in {label}"
    assert users["--seed"] == ["generate", "inpaint"]
    assert users["--steps"] == ["generate", "inpaint"]
    assert set(users["--device"]) == set(COMMANDS)
    assert set(users["--dtype"]) == {"generate", "inpaint", "upscale"}
    # The drift this guards against: inpaint once had --seed 0 and --steps 20.
    assert seen["--seed"][0] is None and seen["--steps"][0] is None
    assert seen["--preview"][0] is None


def _ns(**kw) -> argparse.Namespace:
    base = dict(steps=None, guidance=None, seed=None, scheduler=None, preview=None, preview_dir=None)  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def test_resolve_sampling_uses_the_model_then_the_fallbacks():
    turbo = shared.resolve_sampling(_ns(), "sd-turbo")
    assert (turbo["steps"], turbo["guidance"], turbo["scheduler"]) == (1, 0.0, "Euler")
    plain = shared.resolve_sampling(_ns(), None)
    assert (plain["steps"], plain["guidance"], plain["scheduler"]) == (20, 7.0, None)
    given = shared.resolve_sampling(_ns(steps=3, guidance=2.5, seed=9, scheduler="euler_a"), "sd-turbo")  # fmt: skip
    assert given == {"steps": 3, "guidance": 2.5, "seed": 9, "scheduler": "Euler a"}
    seeds = {shared.resolve_sampling(_ns(), None)["seed"] for _ in range(8)}
    assert len(seeds) > 1 and all(0 <= s < 2**32 for s in seeds)


def test_resolve_preview():
    assert shared.resolve_preview(_ns()) == "off"
    assert shared.resolve_preview(_ns(preview_dir="d")) == "latent"
    assert shared.resolve_preview(_ns(preview="taesd")) == "taesd"


@pytest.mark.parametrize("command", ["generate", "inpaint"])
def test_generate_and_inpaint_resolve_the_same_defaults(command, tmp_path):
    """Same model, no options: the same steps/guidance/scheduler, and a random seed."""
    from studio.cli import generate_cmd, inpaint_cmd
    from studio.core.imageio import save_image

    image, mask = tmp_path / "i.png", tmp_path / "m.png"
    save_image(image, np.full((64, 64, 3), 90, np.uint8))
    save_image(mask, np.full((64, 64), 255, np.uint8))
    out = str(tmp_path / "o.png")
    parser = build_parser()
    requests = []
    for _ in range(3):
        if command == "generate":
            a = parser.parse_args(["generate", "--model", "sd-turbo", "--prompt", "x", "--out", out])  # fmt: skip
            requests.append(generate_cmd.build_request(a)[0])
        else:
            a = parser.parse_args(["inpaint", "--image", str(image), "--mask", str(mask), "--method", "sd-turbo", "--prompt", "x", "--out", out])  # fmt: skip
            requests.append(inpaint_cmd.build_request(a, np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)))  # fmt: skip
    r = requests[0]
    assert (r.steps, r.guidance, r.scheduler, r.preview) == (1, 0.0, "Euler", "off")
    assert len({q.seed for q in requests}) > 1  # random, not 0
