"""Textual-inversion embeddings applied the A1111 way (studio.engine.diffusion.sd.textual_inversion
through prompts.prompt_kwargs), on the tiny SD1 and SDXL pipelines with tiny embedding files
in the embeddings folder Studio scans: the named embedding's vectors are the text encoder's
input rows at its token positions, weights apply to them, SDXL's clip_l/clip_g go to the two
encoders, nothing stays in the cached pipeline, mismatched files are skipped with a note, and
the image's metadata says ``TI hashes`` as A1111 does.

The tiny text encoders are 32 (SD) and 16/16 (SDXL) wide, so the files here are that wide;
real files are 768 / 1024 / 768+1280 and take the same path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core.metadata import format_parameters, parse_parameters
from studio.engine.diffusion.families import recognise_pipe
from studio.engine.diffusion.sd.prompts import emphasis, prompt_kwargs, tokenize_chunks
from studio.engine.jobs.events import Finished, Progress
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner


def a1111_pt(path: Path, vectors: int = 2, width: int = 32, seed: int = 0) -> torch.Tensor:
    """The dict A1111's textual_inversion.py saves; returns the vectors."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(vectors, width, generator=g) * 2.0
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": torch.nn.Parameter(v.clone())},
        "name": path.stem,
        "step": 1500,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return v


def emb_params(path: Path, vectors: int = 1, width: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(vectors, width, generator=g) * 2.0
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": v.clone()}, path)
    return v


def sdxl_st(path: Path, vectors: int = 2, wl: int = 16, wg: int = 16, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    lv, gv = torch.randn(vectors, wl, generator=g) * 2, torch.randn(vectors, wg, generator=g) * 2
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"clip_l": lv.clone(), "clip_g": gv.clone()}, path)
    return lv, gv


@pytest.fixture
def emb_dir(tmp_path, monkeypatch) -> Path:
    """The portable models folder's embeddings/ (one of the folders Studio scans), empty."""
    home, portable = tmp_path / "home", tmp_path / "portable"
    (portable / "embeddings").mkdir(parents=True)
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)
    monkeypatch.setattr("studio.core.paths.portable_models_dir", lambda: portable)
    return portable / "embeddings"


def _load(folder):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd(tiny_models):
    return _load(tiny_models.sd)


@pytest.fixture(scope="module")
def fresh_sd(tiny_models):
    """A second copy no embedding is ever loaded into: the reference for "nothing leaked"."""
    return _load(tiny_models.sd)


@pytest.fixture(scope="module")
def xl(tiny_models):
    return _load(tiny_models.sdxl)


@pytest.fixture(scope="module")
def fresh_xl(tiny_models):
    return _load(tiny_models.sdxl)


class InputRows:
    """Records the token-embedding rows (the text encoder's input) of every encode."""

    def __init__(self, encoder) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        emb = next(m for m in encoder.modules() if type(m).__name__ == "CLIPTextEmbeddings")
        self.handle = emb.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, out):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        self.seen.append((ids.clone(), module.token_embedding(ids).detach().clone()))

    def close(self):
        self.handle.remove()


def _kw(pipe, prompt, negative=None, notes=None):
    return prompt_kwargs(
        pipe,
        recognise_pipe(pipe),
        prompt,
        negative,
        notify=notes.append if notes is not None else None,
    )


def _size(pipe, enc="text_encoder"):
    tok = getattr(pipe, enc.replace("text_encoder", "tokenizer"))
    return len(tok), getattr(pipe, enc).get_input_embeddings().weight.shape[0]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_named_embedding_is_the_input_rows_at_its_positions(sd, fresh_sd, emb_dir):
    before = _kw(sd, "a mystyle cat")  # not installed yet: "mystyle" is plain text
    size = _size(sd)
    vectors = a1111_pt(emb_dir / "MyStyle.pt", vectors=2)
    rows = InputRows(sd.text_encoder)
    try:
        ours = _kw(sd, "a MyStyle cat")
    finally:
        rows.close()
    assert not torch.equal(ours["prompt_embeds"], before["prompt_embeds"])
    ids, table = rows.seen[0]  # the prompt's chunk (then the negative's)
    added = (ids[0] >= size[1]).nonzero().flatten().tolist()
    assert added == [2, 3]  # BOS, "a", the two vectors, then "cat"
    assert torch.equal(table[0, 2:4], vectors)
    assert sd.studio_ti_hashes.startswith("MyStyle: ")
    # exactly what diffusers' own textual inversion gives for the same prompt
    fresh_sd.load_textual_inversion(vectors, token="mystyle")
    try:
        # (encode_prompt spells "mystyle" as "mystyle mystyle_1" itself: maybe_convert_prompt)
        expected, _ = fresh_sd.encode_prompt("a mystyle cat", "cpu", 1, False)
    finally:
        fresh_sd.unload_textual_inversion("mystyle")
        fresh_sd.unload_textual_inversion("mystyle_1")
    assert torch.allclose(ours["prompt_embeds"], expected, atol=1e-6)
    # nothing stays: the tokenizer and table are back to their size, and the same prompt
    # without the file encodes exactly as before
    assert _size(sd) == size
    (emb_dir / "MyStyle.pt").unlink()
    assert _same(_kw(sd, "a mystyle cat"), before)
    assert sd.studio_ti_hashes is None


def test_a_job_without_the_word_encodes_exactly_as_a_fresh_pipeline(sd, fresh_sd, emb_dir):
    a1111_pt(emb_dir / "easynegative.pt", vectors=3, seed=5)
    emb_params(emb_dir / "mytoy.safetensors", vectors=1)
    first = _kw(sd, "a <mytoy> on a table", "(easynegative:1.2), blurry")
    assert sd.studio_ti_hashes.startswith("mytoy: ") and ", easynegative: " in sd.studio_ti_hashes
    for prompt, negative in (("a cat", "blurry"), ("a toy on a table", "")):
        assert _same(_kw(sd, prompt, negative), _kw(fresh_sd, prompt, negative))
    assert _size(sd) == _size(fresh_sd)
    # and the embeddings apply again, identically, in a later job
    assert _same(_kw(sd, "a <mytoy> on a table", "(easynegative:1.2), blurry"), first)


def test_weights_apply_to_the_embedding_tokens(sd, emb_dir):
    a1111_pt(emb_dir / "mystyle.pt", vectors=2)
    plain = _kw(sd, "mystyle cat", "easynegative")["prompt_embeds"]
    weighted = _kw(sd, "(mystyle:1.5) cat")["prompt_embeds"]
    m = torch.ones(77)
    m[1:3] = 1.5  # the two vectors after BOS
    assert torch.allclose(weighted, emphasis(plain, m), atol=1e-6)
    assert not torch.allclose(weighted, plain)
    # in the negative prompt too
    neg_plain = _kw(sd, "a cat", "mystyle")["negative_prompt_embeds"]
    neg_weighted = _kw(sd, "a cat", "(mystyle:1.2)")["negative_prompt_embeds"]
    assert not torch.allclose(neg_plain, neg_weighted)


def test_an_embedding_never_straddles_two_chunks(sd):
    tok = sd.tokenizer
    x = tok("x", add_special_tokens=False).input_ids[0]
    chunks = tokenize_chunks(tok, "y " * 74 + "x", {x: [900, 901, 902]})
    assert len(chunks) == 2
    assert 900 not in chunks[0].tokens and chunks[1].tokens[1:4] == [900, 901, 902]
    (one,) = tokenize_chunks(tok, "y " * 72 + "(x:1.3)", {x: [900, 901, 902]})
    assert one.tokens[73:76] == [900, 901, 902] and one.multipliers[73:76] == [1.3] * 3


def test_sdxl_embedding_loads_clip_l_and_clip_g_into_the_two_encoders(xl, fresh_xl, emb_dir):
    before = _kw(xl, "a xlstyle cat")
    sizes = (_size(xl), _size(xl, "text_encoder_2"))
    lv, gv = sdxl_st(emb_dir / "xlstyle.safetensors", vectors=2)
    r1, r2 = InputRows(xl.text_encoder), InputRows(xl.text_encoder_2)
    try:
        ours = _kw(xl, "a xlstyle cat")
    finally:
        r1.close()
        r2.close()
    for rows, vectors, (_n, width) in ((r1, lv, sizes[0]), (r2, gv, sizes[1])):
        ids, table = rows.seen[0]
        assert (ids[0] >= width).nonzero().flatten().tolist() == [2, 3]
        assert torch.equal(table[0, 2:4], vectors)
    assert not torch.equal(ours["prompt_embeds"], before["prompt_embeds"])
    assert not torch.equal(ours["pooled_prompt_embeds"], before["pooled_prompt_embeds"])
    assert (_size(xl), _size(xl, "text_encoder_2")) == sizes
    assert _same(_kw(xl, "a cat", "blurry"), _kw(fresh_xl, "a cat", "blurry"))


def test_sdxl_pooled_embedding_is_read_at_the_end_of_text_with_legacy_configs(
    tiny_models, xl, emb_dir
):
    """Real SD/SDXL text encoder configs say ``eos_token_id: 2``; transformers then pools at the
    largest token id, which an added token outranks. Failed before: the pooled embedding was
    read at the embedding's position."""
    sdxl_st(emb_dir / "xlstyle.safetensors")
    legacy = _load(tiny_models.sdxl)
    flags = [m for e in (legacy.text_encoder, legacy.text_encoder_2) for m in e.modules()]
    flags = [m for m in flags if hasattr(m, "eos_token_id")]
    assert flags
    for m in flags:
        m.eos_token_id = 2
    assert _same(_kw(legacy, "a cat"), _kw(xl, "a cat"))  # same pooling without added tokens
    ours = _kw(legacy, "a xlstyle cat")["pooled_prompt_embeds"]
    assert torch.allclose(ours, _kw(xl, "a xlstyle cat")["pooled_prompt_embeds"], atol=1e-6)
    assert all(m.eos_token_id == 2 for m in flags)  # put back after the encoding


def test_mismatched_embeddings_are_skipped_with_a_note(sd, xl, emb_dir):
    a1111_pt(emb_dir / "wide.pt", width=48)  # not the SD text encoder's 32
    sdxl_st(emb_dir / "xlonly.safetensors")  # two parts: not for SD 1.x
    a1111_pt(emb_dir / "sdonly.pt", width=16)  # one part: not for SDXL, even at 16 wide
    plain_sd = _kw(sd, "a wide xlonly cat")  # notes for both, the words stay text
    for pipe, prompt, names in (
        (sd, "a wide xlonly cat", ("wide", "xlonly")),
        (xl, "sdonly", ("sdonly",)),
    ):
        size = _size(pipe)
        notes: list[str] = []
        out = _kw(pipe, prompt, notes=notes)
        assert len(notes) == len(names)
        for name, note in zip(names, notes, strict=True):
            assert note.startswith(f"Embedding {name} skipped") and "plain text" in note
        assert pipe.studio_ti_hashes is None and _size(pipe) == size
        assert out.keys() >= {"prompt_embeds"}
    _kw(sd, "wide", notes=(notes := []))
    assert "48-wide" in notes[0] and "take 32" in notes[0]
    cut = emb_dir / "cut.safetensors"  # a whole header, cut-off data: found, then unreadable
    emb_params(cut, vectors=4)
    cut.write_bytes(cut.read_bytes()[:-64])
    _kw(sd, "a cut cat", notes=(notes := []))
    assert notes[0].startswith("Embedding cut skipped") and "cannot be read" in notes[0]
    assert sd.studio_ti_hashes is None
    # skipped means plain text: the same embeds as with no such file at all
    for name in ("wide.pt", "xlonly.safetensors"):
        (emb_dir / name).unlink()
    assert _same(_kw(sd, "a wide xlonly cat"), plain_sd)
    # the next job with a fitting embedding works
    a1111_pt(emb_dir / "good.pt")
    _kw(sd, "good", notes=(notes := []))
    assert not notes and sd.studio_ti_hashes.startswith("good: ")


def test_a_compatible_file_wins_over_one_of_the_same_name_for_another_model(sd, emb_dir):
    (emb_dir / "xl").mkdir()
    sdxl_st(emb_dir / "xl" / "style.safetensors")
    vectors = a1111_pt(emb_dir / "style.pt", vectors=1)
    rows = InputRows(sd.text_encoder)
    try:
        _kw(sd, "style", notes=(notes := []))
    finally:
        rows.close()
    assert not notes
    assert torch.equal(rows.seen[0][1][0, 1], vectors[0])


def test_words_that_only_look_like_an_embedding_are_left_alone(sd, fresh_sd, emb_dir):
    a1111_pt(emb_dir / "mystyle.pt")
    (emb_dir / "broken.pt").write_bytes(b"not a pickle")  # unreadable: not an embedding
    for prompt in ("mystyles, my-mystyle, mystyle_2", "a broken cat", "a cat"):
        assert _same(_kw(sd, prompt), _kw(fresh_sd, prompt))
        assert sd.studio_ti_hashes is None


def test_model_offload_keeps_its_hooks_and_the_embedding_applies(tiny_models, sd, emb_dir):
    """Model CPU offload (accelerate's CpuOffload hook moves the whole text encoder, new rows
    included) is left as it is: diffusers' own load_textual_inversion would re-install it at
    ``text_encoder.device``. Run with the CPU as the execution device (no GPU here)."""
    from accelerate.hooks import CpuOffload

    a1111_pt(emb_dir / "mystyle.pt")
    pipe = _load(tiny_models.sd)
    pipe.enable_model_cpu_offload(device="cpu")
    hook = pipe.text_encoder._hf_hook
    assert isinstance(hook, CpuOffload)
    ours = _kw(pipe, "a mystyle cat")
    assert pipe.text_encoder._hf_hook is hook and pipe._offload_device == torch.device("cpu:0")
    expected = _kw(sd, "a mystyle cat")["prompt_embeds"]
    assert torch.allclose(ours["prompt_embeds"], expected, atol=1e-6)
    assert _same(_kw(pipe, "a cat"), _kw(sd, "a cat")) and _size(pipe) == _size(sd)


def _request(tiny_models, **kw):
    base = dict(model=str(tiny_models.sd), prompt="a cat", steps=2, width=64, height=64, seed=3)
    base.update(preview="off", **kw)
    return GenerateRequest(**base)


def test_a_job_applies_it_and_records_ti_hashes(tiny_models, emb_dir):
    runner = Runner()
    path = emb_dir / "easyneg.pt"
    a1111_pt(path, vectors=3, seed=7)
    a1111_pt(emb_dir / "wrongbase.pt", width=48)
    events: list = []
    final = runner.run(
        _request(tiny_models, negative_prompt="(easyneg:1.2), wrongbase"), events.append
    )
    assert isinstance(final, Finished), getattr(final, "detail", final)
    meta = final.metadata[0]
    short = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert meta["ti_hashes"] == f"easyneg: {short}"
    text = format_parameters(meta)
    assert f'TI hashes: "easyneg: {short}"' in text
    assert parse_parameters(text)["ti_hashes"] == f"easyneg: {short}"
    notes = [e.message for e in events if isinstance(e, Progress) and "skipped" in e.message]
    assert len(notes) == 1 and notes[0].startswith("Embedding wrongbase skipped")
    # without the file the word is text: another image; the cached pipeline then gives
    # exactly the pixels of a fresh one
    path.unlink()
    again = runner.run(_request(tiny_models, negative_prompt="(easyneg:1.2), wrongbase"))
    assert isinstance(again, Finished) and "ti_hashes" not in again.metadata[0]
    assert not np.array_equal(again.images[0], final.images[0])
    fresh = Runner().run(_request(tiny_models, negative_prompt="(easyneg:1.2), wrongbase"))
    assert np.array_equal(again.images[0], fresh.images[0])


def test_inpainting_applies_it_and_records_ti_hashes(tiny_models, emb_dir):
    from studio.engine.jobs.requests import InpaintRequest

    path = emb_dir / "easyneg.pt"
    a1111_pt(path, vectors=2)
    short = f"easyneg: {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    runner = Runner()
    common = dict(model=str(tiny_models.sd_inpaint), prompt="a cat", steps=2, seed=1)
    common.update(preview="off", negative_prompt="easyneg")
    requests = (
        InpaintRequest(image=img, mask=mask, method="diffusion", padding=8, **common),
        GenerateRequest(init_image=img, mask=mask, width=64, height=64, **common),
    )
    for request in requests:
        final = runner.run(request)
        assert isinstance(final, Finished), getattr(final, "detail", final)
        assert final.metadata[0]["ti_hashes"] == short
