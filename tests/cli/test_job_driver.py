"""The CLI's one job driver (studio.cli.jobs): one progress line whatever the command, notes
on lines of their own, previews that never overwrite one another, and the terminal event
turned into the command's exit."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from studio.cli.jobs import ProgressLine, execute, run_job
from studio.core.errors import JobCancelled, ModelError
from studio.core.imageio import load_image
from studio.engine.jobs import Cancelled, Failed, Finished, Preview, Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Runner:
    """Replays a fixed event stream, as Runner.run would emit it."""

    def __init__(self, events, final):
        self.events, self.final, self.cancelled = events, final, False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def run(self, request, emit):
        for event in self.events:
            emit(event)
        return self.final


def test_piped_plain_line_is_written_at_every_tenth_and_the_end(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    line = ProgressLine("train")
    for step in range(1, 101):
        line.step(step, 100)
    lines = err.getvalue().splitlines()
    # Tenths 0.01..0.09 share bucket 0, then one line per tenth up to 100/100: 11 lines.
    assert len(lines) == 11
    assert lines[0] == "train [" + "-" * 24 + "] 1/100"
    assert lines[4] == "train [" + "#" * 9 + "-" * 15 + "] 40/100"  # int(24 * 0.4) = 9
    assert lines[-1] == "train [" + "#" * 24 + "] 100/100"


def test_piped_line_without_plain_writes_nothing(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    line = ProgressLine("generate", plain=False)
    line.step(1, 4)
    line.note("Loaded tiny: all on the GPU")
    line.step(4, 4)
    assert err.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", _Terminal())
    line.note("Loaded tiny: all on the GPU")
    assert sys.stderr.getvalue() == "studio: Loaded tiny: all on the GPU\n"


def test_terminal_line_redraws_in_place_and_ends_with_a_newline(monkeypatch):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    line = ProgressLine("upscale")
    line.step(1, 4, "tile 1/4")
    line.step(2, 4, "tile 2/4")  # within 0.1 s of the first: not redrawn
    line.step(4, 4, "tile 4/4")  # the end is always drawn
    out = err.getvalue()
    assert out.count("\r") == 2 and out.endswith("tile 4/4\x1b[K\n")
    assert "tile 2/4" not in out


def test_a_note_on_a_terminal_starts_on_a_fresh_line(monkeypatch):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    line = ProgressLine("train")
    line.step(1, 10)
    line.note("Out of memory with 4 images at once; one by one")
    assert err.getvalue().endswith(
        "1/10\x1b[K\nstudio: Out of memory with 4 images at once; one by one\n"
    )


@pytest.mark.parametrize("quiet, stream", [(True, "terminal"), (False, None)])
def test_quiet_or_no_stderr_writes_nothing(monkeypatch, quiet, stream):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err if stream else None)
    line = ProgressLine("upscale", quiet=quiet)
    line.step(1, 2)
    line.note("a note")
    line.step(2, 2)
    line.end()
    assert err.getvalue() == ""


def test_run_job_tells_notes_from_steps_and_numbers_previews(monkeypatch, tmp_path):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    rgb = np.zeros((8, 8, 3), np.uint8)
    events = [
        Progress(1, 0, 3, "Preparing 2 images"),
        Progress(1, 1, 3, "step 1/3: loss 0.5000"),
        Preview(1, image=rgb, step=1, total=3),
        Progress(1, 1, 3, "Saved a checkpoint"),  # the step did not move: a note
        Preview(1, image=rgb + 10, step=2, total=3),
        Preview(1, image=rgb + 20, step=1, total=3),  # a second pass counting from 1 again
        Progress(1, 3, 3, "step 3/3: loss 0.2500"),
    ]
    final = Finished(1)
    runner = _Runner(events, final)
    got = run_job(object(), runner=runner, line=ProgressLine("train"), preview_dir=tmp_path)
    assert got is final
    assert err.getvalue().splitlines() == [
        "studio: Preparing 2 images",
        "train [" + "#" * 8 + "-" * 16 + "] step 1/3: loss 0.5000",  # int(24 / 3) = 8
        "studio: Saved a checkpoint",
        "train [" + "#" * 24 + "] step 3/3: loss 0.2500",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_001.png", "step_002.png", "step_003.png"]  # fmt: skip
    assert load_image(tmp_path / "step_003.png")[0, 0, 0] == 20


def test_execute_raises_what_the_job_ended_with():
    failed = Failed(1, message="the model is missing", exit_code=3)
    with pytest.raises(ModelError, match="the model is missing") as e:
        execute(object(), runner=_Runner([], failed))
    assert e.value.exit_code == 3
    with pytest.raises(JobCancelled):
        execute(object(), runner=_Runner([], Cancelled(1)))


def test_every_cli_job_goes_through_the_one_driver():
    """No command runs a job handler, the Runner or a download/import by itself: each job is
    a request given to ``cli.jobs.run_job`` / ``execute`` (one progress line, Ctrl+C, exit)."""
    import re
    from pathlib import Path

    import studio.cli

    direct = re.compile(
        r"\brunner\.run\(|\bRunner\(\)\.run\(|download\.download\(|import_file\("
        r"|\brun_(generate|inpaint|upscale|preprocess|train_lora|download|import)\("
    )
    hits = []
    for path in Path(studio.cli.__file__).parent.glob("*.py"):
        if path.name == "jobs.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if direct.search(code) and not code.lstrip().startswith("def "):
                hits.append(f"{path.name}:{n}: {line.strip()}")
    assert hits == []
    # the check sees such a call
    assert direct.search("path = download.download(e, token=token)")
