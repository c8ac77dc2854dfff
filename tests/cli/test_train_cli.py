"""``studio train lora`` in-process through studio.cli.main: the LoRA on stdout, the loss log,
sample previews, one-line refusals with exit 2 (no images, unreadable image, bad values) and 3
(missing model), Ctrl+C -> checkpoint + exit 130, then --resume."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the tiny model's ops are too small to split (see
    tests/engine/training/conftest.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "subject"
    folder.mkdir()
    for i, (w, h) in enumerate(((64, 64), (48, 64), (32, 40))):
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.stack([(xx * 5 + 30 * i) % 256, (yy * 5) % 256, xx * 0 + 100], -1)
        Image.fromarray(a.astype(np.uint8)).save(folder / f"img{i}.png")
    (folder / "img0.txt").write_text("sks on a table")
    return folder


def train(tiny_models, images, out: Path, *extra: str) -> list[str]:
    return [
        "train", "lora", "--model", str(tiny_models.sd), "--images", str(images),
        "--trigger", "sks", "--steps", "3", "--rank", "4", "--lr", "1e-2",
        "--resolution", "64", "--out", str(out), *extra,
    ]  # fmt: skip


def test_train_writes_the_lora_log_and_previews(tiny_models, images, tmp_path, capsys):
    out = tmp_path / "sks.safetensors"
    log = tmp_path / "loss.csv"
    prev = tmp_path / "prev"
    args = train(tiny_models, images, out, "--log", str(log), "--preview-dir", str(prev),
                 "--sample-every", "1", "--sample-steps", "2")  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out.resolve())
    assert "step 3/3: loss" in captured.err and "ETA" in captured.err
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert sorted(p.name for p in prev.iterdir()) == [
        "step_001.png",
        "step_002.png",
        "step_003.png",
    ]
    from studio.engine.training import read_lora_metadata

    meta = read_lora_metadata(out)
    assert meta["studio_trigger"] == "sks" and meta["studio_images"] == "3"
    # the LoRA goes straight into `studio generate --lora`
    img = tmp_path / "gen.png"
    gen = ["generate", "--model", str(tiny_models.sd), "--prompt", "sks", "--steps", "2",
           "--size", "64x64", "--seed", "1", "--lora", f"{out}:1.0", "--out", str(img)]  # fmt: skip
    assert main(gen) == 0 and img.is_file()


@pytest.mark.parametrize("case", ["empty", "missing", "unreadable", "steps", "out"])
def test_bad_input_is_one_line_and_exit_2(case, tiny_models, images, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    folder = images
    extra: list[str] = []
    if case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "missing":
        folder = tmp_path / "nowhere"
    elif case == "unreadable":
        (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    elif case == "steps":
        extra = ["--steps", "0"]
    elif case == "out":
        out = tmp_path / "x.png"
    args = train(tiny_models, folder, out)
    if extra:
        args[args.index("--steps") + 1] = extra[1]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("studio: error: "), err
    assert "Traceback" not in err[0]
    words = {
        "empty": "no images found",
        "missing": "no such folder",
        "unreadable": "broken.jpg",
        "steps": "--steps",
        "out": ".safetensors",
    }[case]
    assert words in err[0]
    assert not out.exists()


def test_missing_model_is_exit_3(images, tmp_path, capsys):
    args = ["train", "lora", "--model", str(tmp_path / "no-model"), "--images", str(images),
            "--trigger", "sks", "--out", str(tmp_path / "x.safetensors")]  # fmt: skip
    assert main(args) == 3
    assert capsys.readouterr().err.startswith("studio: error: ")


def test_train_without_a_kind_is_usage_exit_2(capsys):
    assert main(["train"]) == 2
    assert "studio train lora" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_finishes(
    tiny_models, images, tmp_path, capsys, monkeypatch
):
    from studio.engine.training import trainer

    out = tmp_path / "c.safetensors"
    args = train(tiny_models, images, out, "--checkpoint-every", "0")
    args[args.index("--steps") + 1] = "4"
    real_line = trainer.LoraTrainer._line

    def line(self, step, *rest):
        if step == 2 and not self.req.resume:
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl+C, during step 2's report
        return real_line(self, step, *rest)

    monkeypatch.setattr(trainer.LoraTrainer, "_line", line)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "cancelled at step 2" in err and "--resume" in err
    assert not out.exists()
    assert (tmp_path / ".c.training" / "checkpoints" / "step-000002").is_dir()
    assert main([*args, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "Resuming from step 2" in captured.err and "step 4/4" in captured.err
    assert captured.out.strip() == str(out.resolve())
