"""A1111 prompt conditioning on the tiny models (studio.engine.diffusion.sd.prompts): weights,
75-token chunks beyond 77 tokens, BREAK, negative padding, SDXL's two encoders and pooled
embedding, clip skip; and that ``(word:1.0)`` gives exactly the pixels of ``word``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.engine.diffusion.families import family, recognise_pipe
from studio.engine.diffusion.sd.prompts import (
    CHUNK,
    emphasis,
    prompt_kwargs,
    tokenize_chunks,
)
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner

# 40 distinct words: far more than 77 tokens with the tiny byte-level tokenizer.
LONG = " ".join(f"w{i}x" for i in range(40))


@pytest.fixture(scope="module")
def pipes(tiny_models):
    from diffusers import DiffusionPipeline

    sd = DiffusionPipeline.from_pretrained(tiny_models.sd, local_files_only=True)
    xl = DiffusionPipeline.from_pretrained(tiny_models.sdxl, local_files_only=True)
    return sd, xl


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


def _image(runner, model, **kw) -> np.ndarray:
    base = dict(model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=3)
    base.update(preview="off", **kw)
    final = runner.run(GenerateRequest(**base))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    return final.images[0]


def test_chunks_are_77_tokens_with_bos_eos_and_pad(pipes):
    tok = pipes[0].tokenizer
    (one,) = tokenize_chunks(tok, "a cat")
    plain = tok("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert one.tokens == plain  # exactly diffusers' own tokenization for a short prompt
    many = tokenize_chunks(tok, LONG)
    assert len(many) >= 2 and all(len(c.tokens) == CHUNK + 2 for c in many)
    assert [c.tokens[0] for c in many] == [tok.bos_token_id] * len(many)
    assert len(tokenize_chunks(tok, "a cat BREAK a dog")) == 2
    weighted = tokenize_chunks(tok, "(cat:1.5)")[0]
    assert set(weighted.multipliers[1:-1]) >= {1.5, 1.0}


def test_emphasis_scales_tokens_and_restores_the_mean():
    z = torch.randn(1, 77, 8) + 0.5
    m = torch.ones(77)
    assert emphasis(z, m) is z  # all weights 1: untouched
    m[3] = 1.5
    w = emphasis(z, m)
    assert torch.allclose(w.mean(), z.mean(), atol=1e-6)
    ratio = z.mean() / (z * m.reshape(1, -1, 1)).mean()
    assert torch.allclose(w[0, 3], z[0, 3] * 1.5 * ratio, atol=1e-5)


def test_sd1_embeddings_match_diffusers_for_plain_prompts(pipes):
    sd = pipes[0]
    fam = recognise_pipe(sd)
    ours = prompt_kwargs(sd, fam, "a cat", "blurry")
    ref, neg = sd.encode_prompt("a cat", "cpu", 1, True, negative_prompt="blurry")
    assert torch.equal(ours["prompt_embeds"], ref) and torch.equal(
        ours["negative_prompt_embeds"], neg
    )
    # clip skip 2 (A1111): the penultimate layer + the final norm (diffusers' own clip_skip
    # path reads text_encoder.text_model, which transformers 5's CLIPTextModel no longer has).
    ours2 = prompt_kwargs(sd, fam, "a cat", "", clip_skip=2)
    ids = sd.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        hidden = sd.text_encoder(ids.input_ids, output_hidden_states=True).hidden_states[-2]
        ref2 = sd.text_encoder.final_layer_norm(hidden)
    assert torch.allclose(ours2["prompt_embeds"], ref2, atol=1e-6)
    assert not torch.allclose(ours2["prompt_embeds"], ref)


def test_long_prompts_and_negatives_are_chunked_and_padded_alike(pipes):
    sd = pipes[0]
    fam = recognise_pipe(sd)
    kw = prompt_kwargs(sd, fam, LONG, "blurry")
    n = kw["prompt_embeds"].shape[1]
    assert n % 77 == 0 and n >= 154
    assert kw["negative_prompt_embeds"].shape == kw["prompt_embeds"].shape
    kw2 = prompt_kwargs(sd, fam, "a cat", LONG)  # the negative is the long one
    assert kw2["prompt_embeds"].shape == kw2["negative_prompt_embeds"].shape


def test_sdxl_two_encoders_and_pooled_from_the_first_chunk(pipes):
    xl = pipes[1]
    fam = recognise_pipe(xl)
    assert fam is family("sdxl")
    ours = prompt_kwargs(xl, fam, "a cat", "blurry")
    ref = xl.encode_prompt("a cat", device="cpu", negative_prompt="blurry")
    assert torch.equal(ours["prompt_embeds"], ref[0])
    assert torch.equal(ours["negative_prompt_embeds"], ref[1])
    assert torch.equal(ours["pooled_prompt_embeds"], ref[2])
    long = prompt_kwargs(xl, fam, "a cat, " + LONG, "")
    assert long["prompt_embeds"].shape[1] >= 154
    first = prompt_kwargs(xl, fam, "a cat, " + LONG.split(" w")[0], "")
    assert long["pooled_prompt_embeds"].shape == first["pooled_prompt_embeds"].shape
    # An empty negative on SDXL is zeros, as diffusers' force_zeros_for_empty_prompt does.
    assert not long["negative_prompt_embeds"].any()


def test_weight_one_gives_exactly_the_pixels_of_the_plain_word(runner, tiny_models):
    for model in (tiny_models.sd, tiny_models.sdxl):
        plain = _image(runner, model, prompt="a cat")
        assert np.array_equal(_image(runner, model, prompt="a (cat:1.0)"), plain)
        assert not np.array_equal(_image(runner, model, prompt="a (cat:1.6)"), plain)


def test_text_after_77_tokens_changes_the_image(runner, tiny_models):
    """Failed before: diffusers truncated at 77 tokens, so the tail had no effect."""
    a = _image(runner, tiny_models.sd, prompt=LONG + " red")
    b = _image(runner, tiny_models.sd, prompt=LONG + " blue")
    assert not np.array_equal(a, b)


def test_clip_skip_changes_the_image_and_is_in_the_metadata(runner, tiny_models):
    final = runner.run(
        GenerateRequest(
            model=str(tiny_models.sd), prompt="a cat", steps=2, width=64, height=64,
            preview="off", clip_skip=2,
        )
    )  # fmt: skip
    assert isinstance(final, Finished)
    assert final.metadata[0]["clip_skip"] == 2
    assert not np.array_equal(final.images[0], _image(runner, tiny_models.sd, seed=0))
