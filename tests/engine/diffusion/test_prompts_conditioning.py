"""What ``prompt_kwargs`` hands the pipeline and what a :class:`PromptPlan` resolves to, on the
tiny SD and SDXL pipelines, checked against diffusers' own ``encode_prompt`` (the encoding
A1111's matches for one unweighted chunk) and A1111's rules written out here:

- the pooled embedding of SDXL is the first chunk's (``FrozenCLIPEmbedderWithCustomWordsBase
  .forward`` returns ``zs[0].pooled``), and an empty negative on SDXL is zeros, pooled too
  (diffusers' ``force_zeros_for_empty_prompt``); SD1 encodes the empty negative as text;
- ``reconstruct_cond_batch``: model call k takes the first schedule entry with
  k <= end_at_step, the first entry when none is;
- families whose text encoder isn't CLIP get the raw text.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from studio.core.errors import BadInput
from studio.core.prompt_syntax import prompt_schedule
from studio.engine.diffusion.families import family, recognise_pipe
from studio.engine.diffusion.sd.prompts import (
    Chunk,
    Conditioning,
    PromptPlan,
    ResolvedPlan,
    emphasis,
    encode_chunk,
    hidden_state_index,
    prompt_kwargs,
)
from studio.engine.diffusion.shared.lora import prompt_loras

# 40 distinct words: far more than 77 tokens with the tiny byte-level tokenizer.
LONG = " ".join(f"w{i}x" for i in range(40))


@pytest.fixture(scope="module")
def pipes(tiny_models):
    from diffusers import DiffusionPipeline

    sd = DiffusionPipeline.from_pretrained(tiny_models.sd, local_files_only=True)
    xl = DiffusionPipeline.from_pretrained(tiny_models.sdxl, local_files_only=True)
    return SimpleNamespace(sd=sd, xl=xl)


def sd_ref(sd, text: str) -> torch.Tensor:
    """diffusers' SD1 encoding of ``text`` (1, 77, D)."""
    with torch.no_grad():
        return sd.encode_prompt(text, "cpu", 1, False)[0]


def sd_ref_skip2(sd, text: str) -> torch.Tensor:
    """A1111's clip skip 2 on SD1: hidden state -2, then the final layer norm."""
    ids = sd.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = sd.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        return sd.text_encoder.final_layer_norm(hidden)


def xl_ref(xl, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' SDXL (embeds, pooled) of ``text``."""
    with torch.no_grad():
        e, _n, p, _np = xl.encode_prompt(text, device="cpu", do_classifier_free_guidance=False)
    return e, p


def a1111_text_at(prompt: str, steps: int, call: int) -> str:
    schedule = prompt_schedule(prompt, steps)
    for end, text in schedule:
        if call <= end:
            return text
    return schedule[0][1]


# -- prompt_kwargs ----------------------------------------------------------------------------------
def test_sdxl_pooled_embedding_comes_from_the_first_chunk(pipes):
    xl = pipes.xl
    kw = prompt_kwargs(xl, recognise_pipe(xl), "a cat BREAK " + LONG, "blurry")
    embeds, pooled = xl_ref(xl, "a cat")
    assert kw["prompt_embeds"].shape[1] >= 3 * 77
    assert torch.equal(kw["prompt_embeds"][:, :77], embeds)  # the first chunk is "a cat" alone
    assert torch.equal(kw["pooled_prompt_embeds"], pooled)
    assert torch.equal(kw["negative_pooled_prompt_embeds"], xl_ref(xl, "blurry")[1])


def test_sdxl_empty_negative_is_zeros_pooled_too(pipes):
    xl = pipes.xl
    kw = prompt_kwargs(xl, recognise_pipe(xl), "a cat", "")
    assert kw["negative_prompt_embeds"].shape == kw["prompt_embeds"].shape
    assert not kw["negative_prompt_embeds"].any()
    assert kw["negative_pooled_prompt_embeds"].shape == kw["pooled_prompt_embeds"].shape
    assert not kw["negative_pooled_prompt_embeds"].any()
    assert kw["pooled_prompt_embeds"].any()


def test_sd1_empty_negative_is_the_encoding_of_empty_text(pipes):
    sd = pipes.sd
    kw = prompt_kwargs(sd, recognise_pipe(sd), "a cat", "")
    _pos, neg = sd.encode_prompt("a cat", "cpu", 1, True, negative_prompt=None)
    assert torch.equal(kw["negative_prompt_embeds"], neg) and neg.any()
    assert "pooled_prompt_embeds" not in kw


@pytest.mark.parametrize("name", ["flux1", "sd3", "qwen"])
def test_families_without_clip_weighting_get_the_raw_text(name):
    pipe = SimpleNamespace(studio_ti_hashes="old: 123", studio_conditioning=object())
    kw = prompt_kwargs(pipe, family(name), "a (cat:1.2) [b:c:3]", "")
    assert kw == {"prompt": "a (cat:1.2) [b:c:3]", "negative_prompt": None}
    assert prompt_kwargs(pipe, family(name), "a", "blurry")["negative_prompt"] == "blurry"
    # nothing of an earlier job is left for the metadata or the denoising loop
    assert pipe.studio_ti_hashes is None and pipe.studio_conditioning is None


def test_a_pipeline_without_a_tokenizer_gets_the_raw_text(pipes):
    sd = pipes.sd
    pipe = SimpleNamespace(text_encoder=sd.text_encoder, tokenizer=None, config={})
    kw = prompt_kwargs(pipe, family("sd1"), "a (cat:1.2)", "")
    assert kw == {"prompt": "a (cat:1.2)", "negative_prompt": None}
    kw = prompt_kwargs(pipe, family("sd1"), "a", "ugly")
    assert kw == {"prompt": "a", "negative_prompt": "ugly"}
    bare = SimpleNamespace(text_encoder=sd.text_encoder, config={})  # no tokenizer attribute
    assert prompt_kwargs(bare, family("sd1"), "a", "")["prompt"] == "a"


class OffloadedEncoder(torch.nn.Module):
    """A text encoder as sequential CPU offload leaves it: it reports the meta device (where
    its weights wait) while its hooks run it on the pipeline's execution device."""

    def __init__(self, encoder):
        super().__init__()
        self.inner = encoder
        self.config = encoder.config
        self.seen: list[torch.device] = []

    @property
    def device(self):
        return torch.device("meta")

    @property
    def dtype(self):
        return self.inner.dtype

    def forward(self, ids, **kw):
        self.seen.append(ids.device)
        with torch.device(ids.device):
            return self.inner(ids, **kw)


def test_ids_go_to_the_pipelines_execution_device_under_offload(pipes):
    sd = pipes.sd
    enc = OffloadedEncoder(sd.text_encoder)
    pipe = SimpleNamespace(
        text_encoder=enc, tokenizer=sd.tokenizer, config={}, _execution_device=torch.device("cpu")
    )
    # torch's default device is another one here, so a tensor made without naming the
    # execution device would land elsewhere
    with torch.device("meta"):
        kw = prompt_kwargs(pipe, family("sd1"), "a cat", "blurry")
    assert torch.equal(kw["prompt_embeds"], sd_ref(sd, "a cat"))
    assert torch.equal(kw["negative_prompt_embeds"], sd_ref(sd, "blurry"))


def test_a_trailing_weight_of_one_is_the_plain_prompt(pipes):
    sd = pipes.sd
    kw = prompt_kwargs(sd, recognise_pipe(sd), "a cat :1", "")
    assert torch.equal(kw["prompt_embeds"], sd_ref(sd, "a cat"))
    assert sd.studio_conditioning is None


@pytest.mark.parametrize("prompt", ["a cat AND a dog", "a cat :1.5"])
def test_composed_prompts_return_the_embeddings_of_the_text_as_written(pipes, prompt):
    """For callers that don't run the denoising loop's plan (the docstring's promise)."""
    sd = pipes.sd
    kw = prompt_kwargs(sd, recognise_pipe(sd), prompt, "")
    assert torch.equal(kw["prompt_embeds"], sd_ref(sd, prompt))


@pytest.mark.parametrize(
    "prompt, negative, planned",
    [
        ("a cat", "blurry", False),
        ("a (cat:1.3), [dog]", "", False),
        ("a [cat:dog:3]", "", True),
        ("a [cat|dog]", "", True),
        ("a cat", "[ugly:blurry:0.5]", True),
        ("a cat AND a dog", "", True),
        ("a cat :1.5", "", True),
    ],
)
def test_a_plan_is_left_only_for_prompts_that_edit_or_compose(pipes, prompt, negative, planned):
    sd = pipes.sd
    prompt_kwargs(sd, recognise_pipe(sd), prompt, negative)
    assert isinstance(sd.studio_conditioning, PromptPlan) == planned


# -- PromptPlan -------------------------------------------------------------------------------------
def test_plan_conditions_each_call_on_a1111s_text(pipes):
    sd = pipes.sd
    prompt, negative = "a [b:c:0.5] d", "[x:y:3]"
    prompt_kwargs(sd, recognise_pipe(sd), prompt, negative)
    plan = sd.studio_conditioning.resolve(10)
    assert sd.studio_conditioning.resolve(10) is plan  # encoded once per step count
    assert plan.varies and not plan.composed
    for k in range(10):
        neg, pos = plan.at(k)
        ((cond, weight),) = pos
        assert weight == 1.0
        assert torch.equal(cond.embeds, sd_ref(sd, a1111_text_at(prompt, 10, k))), k
        assert torch.equal(neg.embeds, sd_ref(sd, a1111_text_at(negative, 10, k))), k
        assert cond.pooled is None


def test_plan_keeps_clip_skip(pipes):
    sd = pipes.sd
    prompt_kwargs(sd, recognise_pipe(sd), "a [b:c:2] d", "", clip_skip=2)
    plan = sd.studio_conditioning.resolve(4)
    for k, text in enumerate(["a b d", "a b d", "a b d", "a c d"]):
        _neg, ((cond, _w),) = plan.at(k)
        assert torch.allclose(cond.embeds, sd_ref_skip2(sd, text), atol=1e-6), k
        assert not torch.allclose(cond.embeds, sd_ref(sd, text), atol=1e-4)


def test_sd1_plan_encodes_an_empty_negative_as_empty_text(pipes):
    sd = pipes.sd
    prompt_kwargs(sd, recognise_pipe(sd), "a [b:c:1] d", "")
    neg, _pos = sd.studio_conditioning.resolve(3).at(0)
    assert torch.equal(neg.embeds, sd_ref(sd, ""))


def test_plan_composes_and_sub_prompts_with_their_weights(pipes):
    sd = pipes.sd
    prompt_kwargs(sd, recognise_pipe(sd), "a cat :1.2 AND a dog :0.8", "blurry")
    plan = sd.studio_conditioning.resolve(3)
    assert plan.composed and not plan.varies
    neg, pos = plan.at(1)
    assert [w for _c, w in pos] == [1.2, 0.8]
    assert torch.equal(pos[0][0].embeds, sd_ref(sd, "a cat"))
    assert torch.equal(pos[1][0].embeds, sd_ref(sd, "a dog"))
    assert torch.equal(neg.embeds, sd_ref(sd, "blurry"))


def test_sdxl_plan_pools_each_text_and_zeros_an_empty_negative(pipes):
    xl = pipes.xl
    prompt_kwargs(xl, recognise_pipe(xl), "a [cat:dog:1]", "")
    plan = xl.studio_conditioning.resolve(3)
    for k, text in enumerate(["a cat", "a cat", "a dog"]):
        neg, ((cond, _w),) = plan.at(k)
        embeds, pooled = xl_ref(xl, text)
        assert torch.equal(cond.embeds, embeds) and torch.equal(cond.pooled, pooled), k
        assert neg.embeds.shape == embeds.shape and not neg.embeds.any()
        assert neg.pooled.shape == pooled.shape and not neg.pooled.any()


def test_sdxl_plan_with_a_negative_encodes_it(pipes):
    xl = pipes.xl
    prompt_kwargs(xl, recognise_pipe(xl), "a [cat:dog:1]", "blurry")
    neg, _pos = xl.studio_conditioning.resolve(3).at(0)
    embeds, pooled = xl_ref(xl, "blurry")
    assert torch.equal(neg.embeds, embeds) and torch.equal(neg.pooled, pooled)


# -- ResolvedPlan -----------------------------------------------------------------------------------
def _conds(n: int) -> list[Conditioning]:
    return [Conditioning(torch.full((1, 77, 4), float(i)), None) for i in range(n)]


def test_each_call_takes_the_first_entry_that_ends_at_or_after_it():
    plan = ResolvedPlan(_conds(4), [(9, 0)], [([(2, 1), (5, 2), (7, 3)], 1.0)])
    got = [int(plan.at(k)[1][0][0].embeds[0, 0, 0]) for k in range(10)]
    # calls past the last entry's end (A1111: target_index stays 0) take the first entry
    assert got == [1, 1, 1, 2, 2, 2, 3, 3, 1, 1]
    assert int(plan.at(4)[0].embeds[0, 0, 0]) == 0


@pytest.mark.parametrize(
    "negative, positive, composed, varies",
    [
        ([(9, 0)], [([(9, 1)], 1.0)], False, False),
        ([(9, 0)], [([(9, 1)], 0.5)], True, False),
        ([(9, 0)], [([(9, 1)], 1.0), ([(9, 2)], 1.0)], True, False),
        ([(4, 0), (9, 3)], [([(9, 1)], 1.0)], False, True),
        ([(9, 0)], [([(4, 1), (9, 2)], 1.0)], False, True),
        ([(9, 0)], [([(9, 1)], 1.0), ([(4, 2), (9, 3)], 2.0)], True, True),
        ([(4, 0), (9, 0)], [([(4, 1), (9, 1)], 1.0)], False, False),
    ],
)
def test_composed_and_varies(negative, positive, composed, varies):
    plan = ResolvedPlan(_conds(4), negative, positive)
    assert plan.composed == composed and plan.varies == varies


# -- emphasis and clip skip edges -------------------------------------------------------------------
def test_emphasis_on_a_chunk_whose_mean_becomes_zero_keeps_the_plain_weights():
    # tokens 0 and 1 cancel once token 1 is weighted by 2: the mean can't be restored (0/0)
    z = torch.tensor([[[2.0, 2.0], [-0.5, -0.5], [-0.5, -0.5]]])
    m = torch.tensor([1.0, 2.0, 2.0])
    out = emphasis(z, m)
    assert torch.isfinite(out).all()
    assert torch.equal(out, torch.tensor([[[2.0, 2.0], [-1.0, -1.0], [-1.0, -1.0]]]))


def test_emphasis_keeps_the_dtype():
    z = (torch.randn(1, 5, 3) + 1).to(torch.float16)
    out = emphasis(z, torch.tensor([1.0, 1.2, 1.0, 0.8, 1.0]))
    assert out.dtype == torch.float16


@pytest.mark.parametrize("skip", [0, None, 1])
def test_clip_skip_unset_or_zero_is_the_last_layer(pipes, skip):
    assert hidden_state_index(pipes.sd.text_encoder, family("sd1"), skip) is None


@pytest.mark.parametrize("skip", [2, 3])
def test_clip_skip_applies_to_openai_clip_only(skip):
    openai = SimpleNamespace(config=SimpleNamespace(hidden_act="quick_gelu"))  # SD1's ViT-L
    openclip = SimpleNamespace(config=SimpleNamespace(hidden_act="gelu"))  # SD2's ViT-H
    assert hidden_state_index(openai, family("sd1"), skip) == -skip
    assert hidden_state_index(openclip, family("sd2"), skip) is None
    for enc in (openai, openclip):  # SDXL: the penultimate layer whatever the setting
        assert hidden_state_index(enc, family("sdxl"), skip) == -2
        assert hidden_state_index(enc, family("sdxl"), 1) == -2


def test_an_encoder_without_a_config_is_skipped_like_openai_clip():
    class Bare:  # a wrapped encoder that doesn't expose a transformers config
        pass

    assert hidden_state_index(Bare(), family("sd1"), 2) == -2
    assert hidden_state_index(SimpleNamespace(config=SimpleNamespace()), family("sd1"), 3) == -3


def test_encode_chunk_without_a_direct_final_norm_uses_the_text_models(pipes):
    """Older transformers' CLIPTextModel keeps the norm under ``text_model``."""
    sd = pipes.sd
    inner = sd.text_encoder

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = inner.config
            self.text_model = SimpleNamespace(final_layer_norm=inner.final_layer_norm)

        def forward(self, ids, **kw):
            return inner(ids, **kw)

    ids = sd.tokenizer("a cat", padding="max_length", max_length=77).input_ids
    z, pooled = encode_chunk(Wrapped(), Chunk(ids, [1.0] * 77), family("sd1"), 2, "cpu")
    assert torch.allclose(z, sd_ref_skip2(sd, "a cat"), atol=1e-6) and pooled is None


def test_sd2s_openclip_gives_its_last_layer_at_any_clip_skip(pipes):
    """A1111's ``FrozenOpenCLIPEmbedderWithCustomWords`` doesn't read the clip skip setting."""
    sd = pipes.sd
    inner = sd.text_encoder

    class OpenClip(torch.nn.Module):  # the tiny encoder, configured as OpenCLIP (GELU)
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(hidden_act="gelu")

        def forward(self, ids, **kw):
            return inner(ids, **kw)

    ids = sd.tokenizer("a cat", padding="max_length", max_length=77).input_ids
    z, _pooled = encode_chunk(OpenClip(), Chunk(ids, [1.0] * 77), family("sd2"), 2, "cpu")
    assert torch.equal(z, sd_ref(sd, "a cat"))


# -- <lora:...> tags --------------------------------------------------------------------------------
def _lora_file(studio_home, name: str):
    folder = studio_home / "models" / "lora"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    path.write_bytes(b"")
    return path


def test_prompt_lora_tags_are_taken_out_and_resolved(studio_home):
    from studio.engine.jobs.requests import LoraSpec

    detail = _lora_file(studio_home, "detail")
    style = _lora_file(studio_home, "style")
    clean, specs = prompt_loras("a cat, <lora:detail:0.7> <lora:style>")
    assert clean == "a cat"
    assert [(s.name, s.weight) for s in specs] == [("detail", 0.7), ("style", 1.0)]
    assert {str(s.path) for s in specs} == {str(detail), str(style)}
    # a LoRA passed explicitly is not applied a second time by its tag
    explicit = (LoraSpec(str(detail), 0.3),)
    clean, specs = prompt_loras("a <lora:detail:0.7> <lora:detail:1> cat", explicit)
    assert clean == "a cat" and specs == explicit


def test_a_lora_tagged_twice_is_applied_once_with_the_first_weight(studio_home):
    _lora_file(studio_home, "detail")
    clean, specs = prompt_loras("<lora:detail:0.4> a cat <lora:detail:0.9>")
    assert clean == "a cat" and [(s.name, s.weight) for s in specs] == [("detail", 0.4)]


def test_a_prompt_without_lora_tags_is_left_as_it_is(studio_home):
    from studio.engine.jobs.requests import LoraSpec

    explicit = [LoraSpec("/x/y.safetensors", 0.5)]
    assert prompt_loras("a, cat", explicit) == ("a, cat", tuple(explicit))
    assert prompt_loras(None) == (None, ())


def test_a_missing_lora_tag_names_it_and_says_where_to_put_it(studio_home):
    with pytest.raises(BadInput) as e:
        prompt_loras("a cat <lora:nowhere:1>")
    msg = str(e.value)
    assert "'nowhere'" in msg and "not installed" in msg and "loras folder" in msg
    assert "studio models import" in msg and "\n" not in msg


# -- textual-inversion embeddings named in the prompt ----------------------------------------------
@pytest.fixture
def emb_dir(tmp_path, monkeypatch):
    """The portable models folder's embeddings/ (one of the folders Studio scans), empty."""
    home, portable = tmp_path / "home", tmp_path / "portable"
    (portable / "embeddings").mkdir(parents=True)
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)
    monkeypatch.setattr("studio.core.paths.portable_models_dir", lambda: portable)
    return portable / "embeddings"


def _embedding(path, vectors: int, width: int):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(vectors)
    save_file({"emb_params": torch.randn(vectors, width, generator=g) * 2.0}, path)
    return path


def test_an_embedding_in_the_prompt_encodes_as_diffusers_loads_it(pipes, tiny_models, emb_dir):
    import hashlib

    from diffusers import DiffusionPipeline

    sd = pipes.sd
    path = _embedding(emb_dir / "shiny.safetensors", 2, 32)
    notes = []
    kw = prompt_kwargs(sd, recognise_pipe(sd), "a shiny cat", "blurry shiny", notify=notes.append)
    # the peer: diffusers' own loader on a fresh pipeline, which spells "shiny" as its 2 tokens
    ref = DiffusionPipeline.from_pretrained(tiny_models.sd, local_files_only=True)
    ref.load_textual_inversion(str(path), token="shiny")
    pos, neg = ref.encode_prompt("a shiny cat", "cpu", 1, True, negative_prompt="blurry shiny")
    assert torch.equal(kw["prompt_embeds"], pos) and torch.equal(kw["negative_prompt_embeds"], neg)
    assert not torch.equal(pos, sd_ref(sd, "a shiny cat"))
    assert notes == []
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert sd.studio_ti_hashes == f"shiny: {digest}"  # A1111's "TI hashes" value


def test_an_embedding_in_an_edited_prompt_is_applied_at_every_step(pipes, tiny_models, emb_dir):
    from diffusers import DiffusionPipeline

    sd = pipes.sd
    path = _embedding(emb_dir / "shiny.safetensors", 3, 32)
    prompt_kwargs(sd, recognise_pipe(sd), "a [cat:shiny dog:2]", "")
    plan = sd.studio_conditioning.resolve(4)
    ref = DiffusionPipeline.from_pretrained(tiny_models.sd, local_files_only=True)
    ref.load_textual_inversion(str(path), token="shiny")
    for k, text in enumerate(["a cat", "a cat", "a cat", "a shiny dog"]):
        _neg, ((cond, _w),) = plan.at(k)
        assert torch.equal(cond.embeds, ref.encode_prompt(text, "cpu", 1, False)[0]), k


def test_an_embedding_for_another_model_is_skipped_with_a_note(pipes, emb_dir):
    sd = pipes.sd
    _embedding(emb_dir / "wide.safetensors", 1, 768)  # an SD1.x file on a 32-wide encoder
    notes = []
    kw = prompt_kwargs(sd, recognise_pipe(sd), "a wide cat", "", notify=notes.append)
    assert len(notes) == 1 and "wide" in notes[0] and "plain text" in notes[0]
    assert torch.equal(kw["prompt_embeds"], sd_ref(sd, "a wide cat"))
    assert sd.studio_ti_hashes is None


# -- mixed precision and a missing second encoder ------------------------------------------------
def test_sdxl_embeddings_come_in_the_second_encoders_dtype(tiny_models):
    """diffusers casts SDXL's prompt embeddings to ``text_encoder_2``'s dtype."""
    from diffusers import DiffusionPipeline

    xl = DiffusionPipeline.from_pretrained(tiny_models.sdxl, local_files_only=True)
    xl.text_encoder_2.to(torch.bfloat16)
    with torch.no_grad():
        ref = xl.encode_prompt("a cat", device="cpu", negative_prompt="blurry")
    kw = prompt_kwargs(xl, recognise_pipe(xl), "a cat", "blurry")
    for key, want in zip(
        ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds"], ref, strict=False
    ):
        assert kw[key].dtype == want.dtype == torch.bfloat16, key
    prompt_kwargs(xl, recognise_pipe(xl), "a [cat:dog:1]", "")
    neg, ((cond, _w),) = xl.studio_conditioning.resolve(3).at(0)
    assert cond.embeds.dtype == neg.embeds.dtype == cond.pooled.dtype == torch.bfloat16


def test_sdxl_without_its_second_encoder_encodes_with_the_first_alone(pipes):
    xl = pipes.xl
    pipe = SimpleNamespace(
        text_encoder=xl.text_encoder, tokenizer=xl.tokenizer, config=dict(xl.config)
    )
    width = xl.text_encoder.config.hidden_size
    kw = prompt_kwargs(pipe, family("sdxl"), "a cat", "blurry")
    assert "pooled_prompt_embeds" not in kw
    # CLIP-L's part of SDXL's embedding (the first ``width`` features)
    assert torch.equal(kw["prompt_embeds"], xl_ref(xl, "a cat")[0][..., :width])
    prompt_kwargs(pipe, family("sdxl"), "a [cat:dog:1]", "")
    neg, ((cond, _w),) = pipe.studio_conditioning.resolve(3).at(0)
    assert cond.pooled is None and neg.pooled is None and not neg.embeds.any()


def test_an_edited_prompt_naming_an_embedding_for_another_model_reads_it_as_text(pipes, emb_dir):
    sd = pipes.sd
    _embedding(emb_dir / "wide.safetensors", 1, 768)
    prompt_kwargs(sd, recognise_pipe(sd), "a [wide:cat:1]", "")
    _neg, ((cond, _w),) = sd.studio_conditioning.resolve(3).at(0)
    assert torch.equal(cond.embeds, sd_ref(sd, "a wide"))
