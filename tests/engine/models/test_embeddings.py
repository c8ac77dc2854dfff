"""Textual-inversion embeddings: each file layout recognised from its tensor names and shapes
(without unpickling code), the family from the vector width, the embeddings/ folders scanned
(portable, A1111 beside models/, ComfyUI inside it), import, and the prompt's trigger words."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from studio_model_files import write_sparse_safetensors

from studio.core.errors import BadInput
from studio.engine.models import (
    embeddings_in_prompt,
    identify_file,
    import_file,
    list_embeddings,
    list_models,
    read_embedding,
    resolve,
    spell_triggers,
)


def a1111_pt(path: Path, vectors: int = 2, width: int = 768) -> Path:
    """The dict A1111's textual_inversion.py saves (``Embedding.save``)."""
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": torch.nn.Parameter(torch.randn(vectors, width))},
        "name": path.stem,
        "step": 1500,
        "sd_checkpoint": "abcdef12",
        "sd_checkpoint_name": "v1-5-pruned-emaonly",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def sdxl_st(path: Path, vectors: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"clip_l": torch.randn(vectors, 768), "clip_g": torch.randn(vectors, 1280)}, path)
    return path


def emb_params(path: Path, vectors: int = 4, width: int = 768) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.randn(vectors, width)}, path)
    return path


@pytest.fixture
def roots(tmp_path, monkeypatch):
    home, portable, webui = tmp_path / "home", tmp_path / "portable", tmp_path / "webui"
    for p in (home, portable / "embeddings", webui / "models"):
        p.mkdir(parents=True)
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("STUDIO_MODEL_PATHS", str(webui / "models"))  # A1111's models/ folder
    monkeypatch.setattr("studio.core.paths.portable_models_dir", lambda: portable)
    return type("Roots", (), {"home": home, "portable": portable, "webui": webui})


def test_each_layout_with_its_family_and_vector_count(tmp_path):
    cases = [
        (a1111_pt(tmp_path / "a.pt", 2, 768), "sd1", 2, "a1111-pt"),
        (a1111_pt(tmp_path / "b.pt", 5, 1024), "sd2", 5, "a1111-pt"),
        (emb_params(tmp_path / "c.safetensors", 4, 768), "sd1", 4, "emb_params"),
        (emb_params(tmp_path / "d.safetensors", 1, 1024), "sd2", 1, "emb_params"),
        (sdxl_st(tmp_path / "e.safetensors", 3), "sdxl", 3, "sdxl"),
    ]
    diffusers = tmp_path / "learned_embeds.bin"
    torch.save({"<cat-toy>": torch.randn(768)}, diffusers)
    cases.append((diffusers, "sd1", 1, "diffusers"))
    for path, base, vectors, layout in cases:
        found = identify_file(path)
        assert (found.kind, found.base, found.details["vectors"]) == ("embedding", base, vectors)
        assert found.details["layout"] == layout and found.details["token"] == path.stem
        emb = read_embedding(path)
        assert (emb.base, emb.vectors, emb.layout, emb.token) == (base, vectors, layout, path.stem)
    assert "SD 1.x (2 vectors)" in identify_file(tmp_path / "a.pt").description


def test_an_embedding_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"string_to_param": {"*": Evil()}, "name": "evil"}, f)
    with pytest.raises(BadInput, match="Refused evil.pt"):
        identify_file(path)
    assert not marker.exists()


def test_other_files_are_not_embeddings(tmp_path):
    save_file({"weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "conv.safetensors")
    with pytest.raises(BadInput, match="not a textual-inversion embedding"):
        read_embedding(tmp_path / "conv.safetensors")
    save_file({"w": torch.zeros(5, 500)}, tmp_path / "odd.safetensors")  # lone tensor, odd width
    with pytest.raises(BadInput, match="not a textual-inversion embedding"):
        read_embedding(tmp_path / "odd.safetensors")
    # an SD-sized header of zeros (sparse) is still read without loading anything
    write_sparse_safetensors(tmp_path / "big.safetensors", {"emb_params": (75, 1024)})
    assert read_embedding(tmp_path / "big.safetensors").vectors == 75


def test_folders_scanned_listed_and_resolved(roots):
    port = a1111_pt(roots.portable / "embeddings" / "EasyNegative.pt")
    a1111 = sdxl_st(roots.webui / "embeddings" / "xl-style.safetensors")  # beside models/
    comfy = emb_params(roots.webui / "models" / "embeddings" / "sub" / "badhand.safetensors")
    (roots.portable / "embeddings" / "README.md").write_text("not a model")
    (roots.portable / "embeddings" / "preview.png").write_bytes(b"\x89PNG")
    choices = {c.path: c for c in list_models("embedding")}
    assert set(choices) == {port, a1111, comfy}
    assert choices[a1111].base == "sdxl" and choices[port].base == "sd1"
    assert "3 vectors" in choices[a1111].label
    assert resolve("EasyNegative", "embedding") == port
    names = {e.token: e.base for e in list_embeddings()}
    assert names == {"EasyNegative": "sd1", "xl-style": "sdxl", "badhand": "sd1"}
    assert [e.token for e in list_embeddings("sdxl")] == ["xl-style"]
    # an embedding is not a checkpoint: the other kinds' lists do not show it
    assert not list_models("checkpoint") and not list_models("lora")


def test_import_files_it_under_embeddings(roots, tmp_path):
    src = sdxl_st(tmp_path / "src" / "my-face.safetensors")
    rec = import_file(src)
    assert (rec.kind, rec.base) == ("embedding", "sdxl")
    assert Path(rec.path).parent == roots.home / "models" / "embeddings"
    [choice] = [c for c in list_models("embedding") if c.source == "imported"]
    assert choice.path == Path(rec.path)
    assert [e.token for e in embeddings_in_prompt("photo of my-face", "sdxl")] == ["my-face"]


def test_trigger_words_follow_a1111(roots):
    e1 = a1111_pt(roots.portable / "embeddings" / "EasyNegative.pt")
    e2 = emb_params(roots.portable / "embeddings" / "bad_hands-5.safetensors")
    sdxl_st(roots.portable / "embeddings" / "neg.safetensors")
    found = embeddings_in_prompt("(easynegative:1.2), bad_hands-5, blurry", "sd1")
    assert [e.path for e in found] == [e1, e2]  # in prompt order, any case
    assert embeddings_in_prompt("EasyNegatives, xbad_hands-5, bad_hands-50", "sd1") == []
    assert embeddings_in_prompt("neg, blurry", "sd1") == []  # an SDXL embedding: skipped
    assert [e.token for e in embeddings_in_prompt("neg, blurry", "sdxl")] == ["neg"]
    assert [e.token for e in embeddings_in_prompt("neg EasyNegative")] == ["neg", "EasyNegative"]
    assert embeddings_in_prompt("", "sd1") == []
    assert spell_triggers("(EasyNegative:1.2), EASYNEGATIVE.", found) == (
        "(easynegative:1.2), easynegative."
    )
    spaced = emb_params(roots.portable / "embeddings" / "Bad Hands.safetensors")
    [hit] = embeddings_in_prompt("a hand, (bad hands:0.8)", "sd1")
    assert hit.path == spaced and hit.prompt_token == "bad_hands"
    assert spell_triggers("(Bad Hands:0.8)", [hit]) == "(bad_hands:0.8)"


def test_vectors_load_into_a_pipeline_with_diffusers_load_textual_inversion(tiny_models, roots):
    """The tiny SD's text encoder is 32 wide, so the files here are too (base None); the path
    is the one the diffusion engine takes for a real 768-wide SD1 embedding."""
    from diffusers import StableDiffusionPipeline

    from studio.engine.models import embedding_vectors

    folder = roots.portable / "embeddings"
    a = a1111_pt(folder / "MyStyle.pt", vectors=2, width=32)
    emb_params(folder / "mytoy.safetensors", vectors=1, width=32)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_models.sd, safety_checker=None)
    found = embeddings_in_prompt("a mystyle photo of a mytoy")
    assert [e.token for e in found] == ["MyStyle", "mytoy"]
    for e in found:
        [vectors] = embedding_vectors(e).values()
        pipe.load_textual_inversion(vectors, token=e.prompt_token)
    prompt = pipe.maybe_convert_prompt(
        spell_triggers("a mystyle photo of a mytoy", found), pipe.tokenizer
    )
    assert prompt == "a mystyle mystyle_1 photo of a mytoy"
    ids = pipe.tokenizer(prompt).input_ids
    new = pipe.tokenizer.convert_tokens_to_ids(["mystyle", "mystyle_1", "mytoy"])
    assert all(i in ids for i in new)
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[new[0]], torch.load(a)["string_to_param"]["*"][0].detach())


def test_angle_bracket_triggers_and_every_file_of_a_name(roots):
    """``<name>`` (diffusers' concept-token spelling) names the embedding too, brackets and
    all; all_embeddings keeps every file of a name (the engine picks the one that fits the
    model), list_embeddings one per name."""
    from studio.engine.models.embeddings import all_embeddings, trigger_pattern

    toy = emb_params(roots.portable / "embeddings" / "cat-toy.safetensors")
    twin = sdxl_st(roots.portable / "embeddings" / "xl" / "cat-toy.safetensors")
    [hit] = embeddings_in_prompt("a <cat-toy> backpack", "sd1")
    assert hit.path == toy
    assert spell_triggers("a <Cat-Toy> backpack, cat-toy", [hit]) == "a cat-toy backpack, cat-toy"
    assert trigger_pattern("cat-toy").search("<cat-toys>") is None
    assert sorted(e.path for e in all_embeddings()) == sorted([toy, twin])
    assert len(list_embeddings()) == 1  # one per trigger word
    assert [e.path for e in list_embeddings("sdxl")] == [twin]
