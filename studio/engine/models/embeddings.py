"""Textual-inversion embeddings: recognising the files, and finding the ones a prompt names.

Textual inversion (Gal et al., "An Image is Worth One Word: Personalizing Text-to-Image
Generation using Textual Inversion", ICLR 2023) learns a few token vectors of the text
encoder's input embedding; the file holds only those vectors. The formats in use:

- AUTOMATIC1111 (A1111) ``.pt``: a pickled dict ``{"string_to_param": {"*": (n, d)},
  "string_to_token": ..., "name": ..., "step": ...}``;
- A1111 / kohya ``.safetensors``: ``{"emb_params": (n, d)}``;
- SDXL embeddings: ``{"clip_l": (n, 768), "clip_g": (n, 1280)}`` (one set of vectors per text
  encoder);
- diffusers ``learned_embeds.bin``/``.safetensors``: one tensor, ``{"<token>": (d,) or (n, d)}``.

The width ``d`` is the text encoder's: 768 is SD 1.x (CLIP ViT-L/14), 1024 SD 2.x (OpenCLIP
ViT-H/14); ``n`` is the number of prompt tokens the embedding takes. Files are read through
:func:`studio.engine.models.identify.read_tensors` (a .safetensors header, or a pickle through
the restricted unpickler: nothing in the file runs, no tensor data is read).

A1111 semantics for prompts: the file stem is the trigger word; an embedding applies wherever
its name appears in the prompt as a word (case-insensitive, as A1111 matches CLIP's lowercased
tokens), also written ``<name>`` as diffusers' concept tokens are. :func:`embeddings_in_prompt`
returns those files. Applying them to a pipeline's text encoders is
:mod:`studio.engine.diffusion.sd.textual_inversion`. Torch-free at import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.engine.models.folders import EMBEDDING_SUFFIXES
from studio.engine.models.identify import classify_embedding, describe_embedding

__all__ = [
    "EMBEDDING_SUFFIXES",
    "Embedding",
    "all_embeddings",
    "classify_embedding",
    "embedding_vectors",
    "embeddings_in_prompt",
    "list_embeddings",
    "read_embedding",
    "spell_triggers",
    "trigger_pattern",
]


@dataclass(frozen=True)
class Embedding:
    """A textual-inversion file. ``token``: its trigger word (the file stem). ``base``: sd1,
    sd2, sdxl or None (an unusual width). ``vectors``: tokens it takes in a prompt.
    ``layout``: a1111-pt, emb_params, sdxl or diffusers."""

    path: Path
    token: str
    base: str | None
    vectors: int
    layout: str

    @property
    def prompt_token(self) -> str:
        """The token to load it under (``load_textual_inversion(..., token=)``) and to write in
        the prompt (:func:`spell_triggers`): the stem in lower case, spaces as "_". CLIP's
        tokenizer lowercases the prompt before it looks for added tokens, so a token with
        capitals would never match."""
        return re.sub(r"\s+", "_", self.token.lower())

    @property
    def description(self) -> str:
        return describe_embedding(self.base, self.vectors)


def read_embedding(path: str | Path) -> Embedding:
    """The embedding in ``path``; BadInput if it is not one (or unreadable)."""
    from studio.core.errors import BadInput
    from studio.engine.models.identify import read_tensors

    path = Path(path)
    tensors, _fmt, _meta = read_tensors(path)
    found = classify_embedding(tensors)
    if found is None:
        raise BadInput(f"{path.name} is not a textual-inversion embedding")
    base, vectors, layout = found
    return Embedding(path, path.stem, base, vectors, layout)


def all_embeddings() -> list[Embedding]:
    """Every embedding file Studio knows (imported, then dropped into every root's
    ``embeddings`` folders), in that order, including several with the same trigger word (the
    diffusion engine picks the first that fits the model, as A1111 keeps only the embeddings
    that fit the loaded checkpoint). Unreadable files and files that are not embeddings are
    skipped. Read from disk on every call."""
    from studio.core.errors import StudioError
    from studio.engine.models.scan import local_models

    out: list[Embedding] = []
    for m in local_models("embedding"):
        if not m.path.is_file():
            continue
        try:
            out.append(read_embedding(m.path))
        except StudioError:
            continue
    return out


def list_embeddings(base: str | None = None) -> list[Embedding]:
    """Embeddings Studio knows (:func:`all_embeddings`), one per trigger word (the first found
    wins, as for LoRAs); with ``base``, only those for that family."""
    out: dict[str, Embedding] = {}
    for emb in all_embeddings():
        if emb.token.lower() in out:
            continue
        if base is None or emb.base == base:
            out[emb.token.lower()] = emb
    return list(out.values())


def trigger_pattern(token: str) -> re.Pattern[str]:
    """Where ``token`` (a trigger word) stands in a prompt: as a word, not glued to letters,
    digits, "_" or "-" on either side ("(name:1.2)", "name," and "name." match; "names" and
    "my-name" do not), or as ``<name>`` (the brackets are part of the match). Any case."""
    t = re.escape(token)
    return re.compile(rf"<{t}>|(?<![\w-]){t}(?![\w-])", re.IGNORECASE)


def embeddings_in_prompt(
    prompt: str, base: str | None = None, available: list[Embedding] | None = None
) -> list[Embedding]:
    """The embeddings whose trigger word (file stem) appears as a word in ``prompt``, in the
    order of their first appearance; with ``base``, only those made for that family (A1111
    skips the others too). ``available`` defaults to :func:`list_embeddings`."""
    if not prompt:
        return []
    pool = list_embeddings(base) if available is None else available
    hits: list[tuple[int, Embedding]] = []
    for emb in pool:
        if base is not None and emb.base != base:
            continue
        m = trigger_pattern(emb.token).search(prompt)
        if m is not None:
            hits.append((m.start(), emb))
    return [e for _, e in sorted(hits, key=lambda h: h[0])]


def spell_triggers(prompt: str, embeddings: list[Embedding]) -> str:
    """``prompt`` with every trigger word of ``embeddings`` (any case, as A1111 matches them)
    written as its :attr:`Embedding.prompt_token`, the token it was loaded under
    (``EasyNegative``/``easynegative`` -> ``easynegative``; ``bad hands`` -> ``bad_hands``)."""
    for emb in embeddings:
        prompt = trigger_pattern(emb.token).sub(lambda _m, t=emb.prompt_token: t, prompt)
    return prompt


def embedding_vectors(emb: Embedding) -> dict[str, Any]:
    """The vectors of ``emb`` as CPU tensors: ``{"clip_l": (n, 768 or 1024)}``, and for SDXL
    also ``{"clip_g": (n, 1280)}`` (the second text encoder's). Read with safetensors or
    ``torch.load(weights_only=True)``: nothing in the file runs. For diffusers'
    ``pipe.load_textual_inversion(vectors, token=emb.prompt_token, text_encoder=...,
    tokenizer=...)``."""
    import torch

    if emb.path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        data = load_file(str(emb.path), device="cpu")
    else:
        data = torch.load(emb.path, map_location="cpu", weights_only=True)
    if emb.layout == "sdxl":
        return {k: data[k].detach() for k in ("clip_l", "clip_g") if k in data}
    if emb.layout == "a1111-pt":
        vectors = next(iter(data["string_to_param"].values()))
    elif emb.layout == "emb_params":
        vectors = data["emb_params"]
    else:
        vectors = next(iter(data.values()))
    vectors = vectors.detach()
    return {"clip_l": vectors[None] if vectors.ndim == 1 else vectors}
