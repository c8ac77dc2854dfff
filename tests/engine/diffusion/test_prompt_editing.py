"""Prompt editing ``[from:to:when]``, alternation ``[a|b]`` and composable ``AND`` on the tiny
SD and SDXL models, spied at the UNet: which embedding conditions each model call.

What each call must get is worked out here from A1111's rules, transcribed:
``CFGDenoiser.forward`` counts model calls from 0 (``self.step``) and picks, per prompt, the
first schedule entry whose ``end_at_step`` is >= that count (``reconstruct_cond_batch``, the
first entry when none is); ``processing.setup_conds`` builds the schedules for twice the steps
for ``second_order`` samplers; ``combine_denoised`` makes uncond + sum_i w_i g (cond_i -
uncond) (Liu et al. 2022). The schedules themselves are A1111's
(``tests/core/test_prompt_schedules.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.errors import BadInput
from studio.core.prompt_syntax import prompt_schedule
from studio.engine.diffusion.families import recognise_pipe
from studio.engine.diffusion.sd.prompts import Conditioning, ResolvedPlan, prompt_kwargs
from studio.engine.diffusion.sd.sampling import ConditioningStepper
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


@pytest.fixture(scope="module")
def pipes(tiny_models):
    from diffusers import DiffusionPipeline

    sd = DiffusionPipeline.from_pretrained(tiny_models.sd, local_files_only=True)
    xl = DiffusionPipeline.from_pretrained(tiny_models.sdxl, local_files_only=True)
    return {"sd": sd, "sdxl": xl}


@pytest.fixture
def spy(monkeypatch):
    """Every UNet call: (encoder_hidden_states, added text_embeds or None), cloned."""
    import diffusers

    calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    real = diffusers.UNet2DConditionModel.forward

    def forward(self, sample, timestep, encoder_hidden_states=None, *args, **kw):
        pooled = (kw.get("added_cond_kwargs") or {}).get("text_embeds")
        calls.append(
            (encoder_hidden_states.clone(), pooled.clone() if pooled is not None else None)
        )
        return real(self, sample, timestep, encoder_hidden_states, *args, **kw)

    monkeypatch.setattr(diffusers.UNet2DConditionModel, "forward", forward)
    return calls


def a1111_text_at(prompt: str, steps: int, call: int) -> str:
    """The text A1111 conditions model call ``call`` (0-based) on."""
    schedule = prompt_schedule(prompt, steps)
    for end, text in schedule:
        if call <= end:
            return text
    return schedule[0][1]


def _run(runner, model, **kw) -> Finished:
    base = dict(model=str(model), prompt="a cat", steps=10, width=64, height=64, seed=3)
    base.update(preview="off", scheduler="Euler")
    base.update(kw)
    final = runner.run(GenerateRequest(**base))
    assert isinstance(final, Finished), getattr(final, "message", final)
    return final


def _embeds(pipe, text: str, negative: str = "") -> dict:
    return prompt_kwargs(pipe, recognise_pipe(pipe), text, negative)


@pytest.mark.parametrize("model", ["sd", "sdxl"])
def test_prompt_editing_switches_the_conditioning_at_a1111s_call(
    runner, tiny_models, pipes, spy, model
):
    prompt = "a [b:c:0.5] d"
    _run(runner, getattr(tiny_models, model), prompt=prompt, negative_prompt="[x:y:3]")
    assert len(spy) == 10
    texts = [a1111_text_at(prompt, 10, k) for k in range(10)]
    assert texts == ["a b d"] * 6 + ["a c d"] * 4  # calls 0-5 (steps 1-6) and 6-9
    for k, (hidden, pooled) in enumerate(spy):
        want = _embeds(pipes[model], texts[k], a1111_text_at("[x:y:3]", 10, k))
        assert torch.equal(hidden[1], want["prompt_embeds"][0]), k  # the [uncond; cond] batch
        assert torch.equal(hidden[0], want["negative_prompt_embeds"][0]), k
        if model == "sdxl":  # the pooled embedding follows the text too
            assert torch.equal(pooled[1], want["pooled_prompt_embeds"][0]), k
            assert torch.equal(pooled[0], want["negative_pooled_prompt_embeds"][0]), k


def test_alternation_alternates_per_call(runner, tiny_models, pipes, spy):
    prompt = "a [cat|dog]"
    _run(runner, tiny_models.sd, prompt=prompt, steps=6)
    cat, dog = (_embeds(pipes["sd"], t)["prompt_embeds"][0] for t in ("a cat", "a dog"))
    got = [
        "cat" if torch.equal(h[1], cat) else "dog" if torch.equal(h[1], dog) else "?"
        for h, _ in spy
    ]
    want = [a1111_text_at(prompt, 6, k).split()[-1] for k in range(6)]
    assert want == ["cat", "cat", "dog", "cat", "dog", "cat"]  # A1111 counts calls from 0
    assert got == want


def test_second_order_samplers_count_every_model_call(runner, tiny_models, pipes, spy):
    """Heun: 5 steps are 9 model calls; A1111 schedules for 2 x 5 = 10 steps."""
    prompt = "a [b:c:0.5] d"
    _run(runner, tiny_models.sd, prompt=prompt, steps=5, scheduler="Heun")
    assert len(spy) == 9
    b, c = (_embeds(pipes["sd"], t)["prompt_embeds"][0] for t in ("a b d", "a c d"))
    got = ["b" if torch.equal(h[1], b) else "c" if torch.equal(h[1], c) else "?" for h, _ in spy]
    assert got == [a1111_text_at(prompt, 10, k).split()[1] for k in range(9)]
    assert got == ["b"] * 6 + ["c"] * 3


@pytest.mark.parametrize("model", ["sd", "sdxl"])
def test_and_with_one_sub_prompt_is_the_plain_prompt(runner, tiny_models, model):
    plain = _run(runner, getattr(tiny_models, model), prompt="a cat", steps=3).images[0]
    one = _run(runner, getattr(tiny_models, model), prompt="a cat :1", steps=3).images[0]
    assert np.array_equal(one, plain)
    both = _run(runner, getattr(tiny_models, model), prompt="a cat AND a dog", steps=3).images[0]
    assert not np.array_equal(both, plain)


def test_and_evaluates_every_sub_prompt_in_one_batch(runner, tiny_models, pipes, spy):
    _run(runner, tiny_models.sd, prompt="a cat :1.2 AND a dog :0.8", steps=2)
    neg = _embeds(pipes["sd"], "")["negative_prompt_embeds"][0]
    cat, dog = (_embeds(pipes["sd"], t)["prompt_embeds"][0] for t in ("a cat", " a dog"))
    assert len(spy) == 2
    for hidden, _ in spy:
        assert hidden.shape[0] == 3  # [uncond; cat; dog]
        assert torch.equal(hidden[0], neg) and torch.equal(hidden[1], cat)
        assert torch.equal(hidden[2], dog)


def test_composed_prediction_is_composable_diffusion():
    """uncond + g sum_i w_i (cond_i - uncond) after the pipeline's guidance, with the
    pipeline's [uncond; cond] batch layout kept (one image, CFG on)."""
    torch.manual_seed(0)
    d = 8
    conds = [Conditioning(torch.randn(1, 4, d), None) for _ in range(3)]  # neg, a, b
    plan = ResolvedPlan(conds, [(10, 0)], [([(10, 1)], 1.5), ([(10, 2)], -0.5)])

    class Pipe:
        controlnet = None
        _callback_tensor_inputs = ("latents", "prompt_embeds")

    stepper = ConditioningStepper(Pipe(), plan, per_iteration=1, images=1)
    w = torch.randn(d)

    def unet(x, t, e, **kw):  # any function of the conditioning
        return ((x * 0 + (e @ w).mean(dim=1)[:, None, None, None]),)

    x = torch.randn(2, 4, 2, 2)
    (out,) = stepper._composed(unet, 0, x, torch.tensor(5), torch.zeros(2, 4, d))
    u, a, b = ((c.embeds[0] @ w).mean() for c in conds)
    g = 7.0
    guided = out[0] + g * (out[1] - out[0])  # what the pipeline does with it
    want = u + g * (1.5 * (a - u) + -0.5 * (b - u))
    assert torch.allclose(guided, torch.full_like(guided, float(want)), atol=1e-5)
    assert torch.equal(out[0], torch.full_like(out[0], float(u)))


def test_and_with_controlnet_is_refused_in_one_line():
    conds = [Conditioning(torch.zeros(1, 4, 8), None)] * 3
    plan = ResolvedPlan(conds, [(10, 0)], [([(10, 1)], 1.0), ([(10, 2)], 1.0)])

    class Pipe:
        controlnet = object()

    with pytest.raises(BadInput, match="ControlNet"):
        ConditioningStepper(Pipe(), plan, per_iteration=1, images=1)


def test_batches_of_images_get_the_switched_conditioning(runner, tiny_models, pipes, spy):
    _run(runner, tiny_models.sd, prompt="a [b:c:0.5] d", steps=4, count=2)
    b, c = (_embeds(pipes["sd"], t)["prompt_embeds"][0] for t in ("a b d", "a c d"))
    assert len(spy) == 4 and all(h.shape[0] == 4 for h, _ in spy)  # 2 uncond + 2 cond
    for k, (hidden, _) in enumerate(spy):
        want = b if a1111_text_at("a [b:c:0.5] d", 4, k) == "a b d" else c
        assert torch.equal(hidden[2], want) and torch.equal(hidden[3], want), k
