"""Clip skip per family as A1111 applies it, spied at the text encoder's hidden states.

A1111 (transcribed, ``modules/sd_hijack_clip.py`` / ``sd_hijack_open_clip.py``):

- SD1, ``FrozenCLIPEmbedderWithCustomWords.encode_with_transformers``: clip skip N > 1 takes
  ``hidden_states[-N]`` and applies ``final_layer_norm``; N = 1 is ``last_hidden_state``;
- SD2, ``FrozenOpenCLIPEmbedderWithCustomWords.encode_with_transformers``: the model's own
  layer (``encode_with_transformer``), the setting is not read;
- SDXL, ``FrozenCLIPEmbedderForSDXLWithCustomWords`` (CLIP-L: ``hidden_states[layer_idx]``,
  layer_idx 11 of 12 = the penultimate) and the OpenCLIP-G embedder ("penultimate"), both
  without the final norm and whatever the setting (``sdxl_clip_l_skip`` is off by default).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPTextModelOutput

from studio.engine.diffusion.families import family
from studio.engine.diffusion.sd.prompts import Chunk, encode_chunk, hidden_state_index

LAYERS = 12
NORM = 1000.0  # the fake final norm adds this: a value >= 1000 says the norm was applied


class FakeEncoder(torch.nn.Module):
    """hidden_states[i] is filled with i; last_hidden_state = final_layer_norm(the last)."""

    def __init__(self, hidden_act: str, projection: bool = False):
        super().__init__()
        self.config = SimpleNamespace(hidden_act=hidden_act)
        self.projection = projection

        class Norm(torch.nn.Module):
            def forward(self, x):
                return x + NORM

        self.final_layer_norm = Norm()

    def forward(self, ids, output_hidden_states=True):
        hs = tuple(torch.full((1, ids.shape[1], 4), float(i)) for i in range(LAYERS + 1))
        last = self.final_layer_norm(hs[-1])
        if self.projection:  # CLIPTextModelWithProjection: out[0] is text_embeds (2-D)
            return CLIPTextModelOutput(
                text_embeds=torch.zeros(1, 4), last_hidden_state=last, hidden_states=hs
            )
        return BaseModelOutputWithPooling(last_hidden_state=last, hidden_states=hs)


def _layer(encoder: FakeEncoder, name: str, skip: int) -> float:
    """The value of the embedding ``encode_chunk`` returns: which layer it was, normed or not."""
    z, _pooled = encode_chunk(encoder, Chunk([0] * 77, [1.0] * 77), family(name), skip, "cpu")
    return float(z[0, 0, 0])


@pytest.mark.parametrize("skip", [1, 2, 3])
def test_sd1_takes_hidden_state_minus_n_then_the_final_norm(skip):
    enc = FakeEncoder("quick_gelu")  # OpenAI CLIP ViT-L (SD1)
    layer = _layer(enc, "sd1", skip)
    assert layer == LAYERS + 1 - skip + NORM  # hidden_states[-skip] (13 entries), normed
    assert hidden_state_index(enc, family("sd1"), skip) == (None if skip == 1 else -skip)


@pytest.mark.parametrize("skip", [1, 2, 3])
def test_sd2_ignores_clip_skip(skip):
    enc = FakeEncoder("gelu")  # OpenCLIP ViT-H (SD2)
    assert _layer(enc, "sd2", skip) == LAYERS + NORM  # its last layer, whatever the setting
    assert hidden_state_index(enc, family("sd2"), skip) is None


@pytest.mark.parametrize("skip", [1, 2, 3])
def test_sdxl_is_always_the_penultimate_layer_without_the_norm(skip):
    clip_l, clip_g = FakeEncoder("quick_gelu"), FakeEncoder("gelu", projection=True)
    for enc in (clip_l, clip_g):
        assert _layer(enc, "sdxl", skip) == LAYERS - 1  # hidden_states[-2], never [-3]
        assert hidden_state_index(enc, family("sdxl"), skip) == -2


def test_clip_skip_2_on_sdxl_gives_the_pixels_of_clip_skip_1(tiny_models):
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import GenerateRequest
    from studio.engine.jobs.runner import Runner

    runner = Runner()

    def image(model, skip):
        request = GenerateRequest(
            model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=3,
            preview="off", clip_skip=skip,
        )  # fmt: skip
        final = runner.run(request)
        assert isinstance(final, Finished), getattr(final, "message", final)
        return final.images[0]

    assert np.array_equal(image(tiny_models.sdxl, 2), image(tiny_models.sdxl, 1))
    assert not np.array_equal(image(tiny_models.sd, 2), image(tiny_models.sd, 1))
