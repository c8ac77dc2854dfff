"""A1111 prompt syntax on the flow families: ``<lora:>`` tags applied (the same pixels as
the LoRA given explicitly), weights and BREAK taken out with the words kept, prompt editing
read at its last step (A1111's ``[from:to:when]`` is "to" after ``when``), each said in the
job's note."""

from __future__ import annotations

import re

import numpy as np
from flow_requests import flow_request

from studio.engine.diffusion.flow.generate import run_flow_generate
from studio.engine.diffusion.flow.prompt import flow_prompt
from studio.engine.jobs.events import Progress
from studio.engine.jobs.requests import LoraSpec


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


def test_weights_and_break_are_removed_and_the_words_kept():
    p = flow_prompt("a (red:1.3) car, [rusty] BREAK at ((night))", "(blurry:1.4)", (), 20)
    assert _words(p.prompt) == ["a", "red", "car", "rusty", "at", "night"]
    assert not re.search(r"[()\[\]]|BREAK|1\.3", p.prompt)
    assert p.negative == "blurry"
    assert "weights" in p.note("FLUX.1") and "FLUX.1" in p.note("FLUX.1")


def test_prompt_editing_uses_the_prompt_of_the_last_step():
    p = flow_prompt("a [dog:cat:0.5] on a sofa", "", (), 20)
    assert p.prompt == "a cat on a sofa"
    assert "prompt editing" in p.note("Z-Image")


def test_a_plain_prompt_has_no_note():
    p = flow_prompt("a lighthouse at dusk, oil painting", "", (), 20)
    assert p.prompt == "a lighthouse at dusk, oil painting" and p.note("FLUX.1") == ""


def test_a_lora_tag_runs_the_lora(flow_models, job, studio_home):
    from studio.engine.fixtures.tiny_flow_models import build_tiny_flow_lora

    folder = studio_home / "models" / "loras"
    folder.mkdir(parents=True)
    lora = build_tiny_flow_lora(flow_models.flux1, folder / "ink.safetensors")
    base = dict(seed=1, prompt="a cat")
    explicit = run_flow_generate(
        job().ctx, flow_request(flow_models.flux1, **base, loras=(LoraSpec(str(lora), 0.8),))
    )
    tagged_job = job()
    tagged = run_flow_generate(
        tagged_job.ctx,
        flow_request(flow_models.flux1, **{**base, "prompt": "a cat <lora:ink:0.8>"}),
    )
    plain = run_flow_generate(job().ctx, flow_request(flow_models.flux1, **base))
    assert np.array_equal(tagged.images[0], explicit.images[0])
    assert not np.array_equal(tagged.images[0], plain.images[0])
    assert tagged.metadata[0]["lora_hashes"].startswith("ink: ")
    notes = [e.message for e in tagged_job.events if isinstance(e, Progress) and e.message]
    assert not notes  # a tag is syntax Studio applies: nothing to warn about
