"""Prompt conditioning the AUTOMATIC1111 way: attention weights, 75-token chunks and clip skip,
encoded with the pipeline's own CLIP text encoders and handed to diffusers as
``prompt_embeds`` (diffusers itself truncates at 77 tokens and reads ``(word:1.2)`` as text).

Following A1111 ``modules/sd_hijack_clip.py`` (``FrozenCLIPEmbedderWithCustomWords``):

1. the prompt is parsed (``studio.core.prompt_syntax.parse_attention``) and every piece is
   tokenized without BOS/EOS; tokens go into chunks of 75, each token with its piece's
   multiplier. A chunk that fills up within 20 tokens after a comma moves the text after the
   comma to the next chunk (``comma_padding_backtrack``); ``BREAK`` starts a new chunk;
2. each chunk is padded to 75 with EOS, framed as BOS + 75 + EOS = 77 tokens, and positions
   after the first EOS become the tokenizer's pad token (OpenCLIP's ``!`` for SD2/SDXL-G);
3. each chunk is encoded separately; clip skip N takes hidden state -N (then the final layer
   norm) for SD1/SD2, or -(N+1) without the norm for SDXL's penultimate-layer encoders;
4. emphasis ("Original"): z <- z * m per token, then z <- z * mean(z_before) / mean(z_after),
   so weights change the direction of the conditioning, not its overall scale;
5. the chunks are concatenated along the token axis (77 k tokens); prompt and negative prompt
   are padded with empty chunks to the same count; SDXL concatenates its two encoders along
   the feature axis and takes the pooled embedding from the first chunk of ``text_encoder_2``.

With no weights and one chunk this is exactly diffusers' own encoding, so ``(word:1.0)`` and
``word`` give identical pixels (tested).

Textual-inversion embeddings the prompt names (``easynegative``, ``(easynegative:1.2)``,
``<name>``) are loaded for the encoding and unloaded after it
(:mod:`studio.engine.diffusion.textual_inversion`): before the parse each trigger word becomes
a private added token, and in step 1 that token stands for all ``n`` of the embedding's
vectors, which carry the piece's multiplier and never straddle two chunks (A1111's
``PromptChunkFix``: an embedding that doesn't fit starts a new chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studio.core.prompt_syntax import is_break, parse_attention
from studio.engine.diffusion.families import Family

CHUNK = 75
COMMA_BACKTRACK = 20  # A1111 opts.comma_padding_backtrack


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


def _ids(tokenizer) -> tuple[int, int, int, int | None]:
    vocab = tokenizer.get_vocab()
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return bos, eos, pad, vocab.get(",</w>")


def tokenize_chunks(
    tokenizer, text: str, embeddings: dict[int, list[int]] | None = None
) -> list[Chunk]:
    """A1111's ``tokenize_line``: the prompt as chunks of 75 (token, multiplier) pairs, each
    framed to 77 with BOS/EOS and padded (see the module docstring). ``embeddings``: {token id
    of a loaded textual inversion: the ids of all its vectors}."""
    embeddings = embeddings or {}
    bos, eos, pad, comma = _ids(tokenizer)
    pieces = parse_attention(text)
    tokenized = tokenizer([p[0] for p in pieces], truncation=False, add_special_tokens=False)[
        "input_ids"
    ]
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1

    def next_chunk() -> None:
        nonlocal chunk, last_comma
        to_add = CHUNK - len(chunk.tokens)
        chunk.tokens += [eos] * to_add
        chunk.multipliers += [1.0] * to_add
        chunk.tokens = [bos, *chunk.tokens, eos]
        chunk.multipliers = [1.0, *chunk.multipliers, 1.0]
        first_end = chunk.tokens.index(eos)
        chunk.tokens[first_end + 1 :] = [pad] * (len(chunk.tokens) - first_end - 1)
        last_comma = -1
        chunks.append(chunk)
        chunk = Chunk()

    for tokens, piece in zip(tokenized, pieces, strict=True):
        if is_break(piece):
            next_chunk()
            continue
        weight = piece[1]
        for token in tokens:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (
                len(chunk.tokens) == CHUNK
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK
            ):
                cut = last_comma + 1
                moved_t, moved_m = chunk.tokens[cut:], chunk.multipliers[cut:]
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                next_chunk()
                chunk.tokens, chunk.multipliers = moved_t, moved_m
            if len(chunk.tokens) == CHUNK:
                next_chunk()
            vectors = embeddings.get(token)
            if vectors is not None:
                if len(chunk.tokens) + len(vectors) > CHUNK:
                    next_chunk()
                chunk.tokens += vectors
                chunk.multipliers += [weight] * len(vectors)
                continue
            chunk.tokens.append(token)
            chunk.multipliers.append(weight)
    if chunk.tokens or not chunks:
        next_chunk()
    return chunks


def empty_chunk(tokenizer) -> Chunk:
    return tokenize_chunks(tokenizer, "")[0]


def emphasis(z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis: scale each token's embedding by its multiplier, then
    restore the mean of the whole chunk."""
    if bool((multipliers == 1.0).all()):
        return z
    zf = z.float()
    original_mean = zf.mean()
    zf = zf * multipliers.to(zf.device, zf.dtype).reshape(1, -1, 1)
    new_mean = zf.mean()
    if new_mean != 0:  # 0/0 would be NaN (a final layer norm without bias can give mean 0)
        zf = zf * (original_mean / new_mean)
    return zf.to(z.dtype)


def _final_norm(encoder):
    norm = getattr(encoder, "final_layer_norm", None)
    if norm is None:
        norm = encoder.text_model.final_layer_norm
    return norm


def encode_chunk(encoder, chunk: Chunk, family: Family, clip_skip: int, device):
    """One 77-token chunk through ``encoder``: (hidden states (1, 77, D), pooled or None)."""
    ids = torch.tensor([chunk.tokens], dtype=torch.long, device=device)
    out = encoder(ids, output_hidden_states=True)
    skip = max(1, int(clip_skip or 1))
    if family.clip_hidden == "penultimate":
        z = out.hidden_states[-(skip + 1)]
    elif skip == 1:
        z = out[0]
    else:
        z = _final_norm(encoder)(out.hidden_states[-skip])
    pooled = out[0] if out[0].ndim == 2 else None  # CLIPTextModelWithProjection.text_embeds
    mult = torch.tensor(chunk.multipliers, device=z.device)
    return emphasis(z, mult), pooled


def _tokenizer_for(pipe, encoder_name: str):
    return getattr(pipe, encoder_name.replace("text_encoder", "tokenizer"), None)


def prompt_kwargs(
    pipe,
    family: Family,
    prompt: str,
    negative: str | None,
    clip_skip: int = 1,
    notify: Callable[[str], None] | None = None,
) -> dict:
    """The pipeline keyword arguments for ``prompt``/``negative`` (see the module docstring):
    ``prompt_embeds`` and ``negative_prompt_embeds`` (plus the pooled pair for families with
    ``pooled_from``), or the raw strings for families without ``prompt_weighting``.
    Textual-inversion embeddings named in either text are applied; ``notify`` gets a note for
    each one skipped, and ``pipe.studio_ti_hashes`` is set to A1111's ``TI hashes`` value of
    those applied (None when none)."""
    from studio.engine.diffusion.textual_inversion import textual_inversions

    pipe.studio_ti_hashes = None
    if not family.prompt_weighting:
        return {"prompt": prompt, "negative_prompt": negative or None}
    encoders = [(n, getattr(pipe, n, None)) for n in family.text_encoders]
    encoders = [(n, e) for n, e in encoders if e is not None and _tokenizer_for(pipe, n)]
    if not encoders:
        return {"prompt": prompt, "negative_prompt": negative or None}
    zero_negative = not negative and bool(pipe.config.get("force_zeros_for_empty_prompt", False))
    texts = [prompt, negative or ""]
    with textual_inversions(pipe, family, encoders, texts, notify) as ti:
        out = _encode(pipe, family, encoders, texts, clip_skip, zero_negative, ti)
    pipe.studio_ti_hashes = ti.ti_hashes()
    return out


def _encode(pipe, family: Family, encoders, texts, clip_skip, zero_negative, ti) -> dict:
    per_text: list[list[list[Chunk]]] = [[], []]  # text -> encoder -> chunks
    for name, _enc in encoders:
        tok = _tokenizer_for(pipe, name)
        for i, text in enumerate(texts):
            per_text[i].append(tokenize_chunks(tok, ti.spell(text, name), ti.expansions(name)))
    n_chunks = max(len(c) for text in per_text for c in text)
    # Where the encoders run: under sequential offload their weights sit on the meta device.
    device = getattr(pipe, "_execution_device", None) or encoders[0][1].device
    embeds, pooled = [], []
    with torch.inference_mode():
        for i in range(2):
            parts, pool = [], None
            for (name, enc), chunks in zip(encoders, per_text[i], strict=True):
                tok = _tokenizer_for(pipe, name)
                chunks = chunks + [empty_chunk(tok)] * (n_chunks - len(chunks))
                zs = []
                for k, chunk in enumerate(chunks):
                    z, p = encode_chunk(enc, chunk, family, clip_skip, device)
                    zs.append(z)
                    if k == 0 and name == family.pooled_from:
                        pool = p
                parts.append(torch.cat(zs, dim=1))
            embeds.append(torch.cat(parts, dim=-1))
            pooled.append(pool)
    dtype = encoders[-1][1].dtype
    out = {"prompt_embeds": embeds[0].to(dtype)}
    out["negative_prompt_embeds"] = (
        torch.zeros_like(out["prompt_embeds"]) if zero_negative else embeds[1].to(dtype)
    )
    if family.pooled_from is not None and pooled[0] is not None:
        out["pooled_prompt_embeds"] = pooled[0].to(dtype)
        out["negative_pooled_prompt_embeds"] = (
            torch.zeros_like(pooled[0]).to(dtype) if zero_negative else pooled[1].to(dtype)
        )
    return out


def prompt_loras(prompt: str, explicit=()) -> tuple[str, tuple]:
    """Resolve the ``<lora:name:weight>`` tags of ``prompt`` (A1111's extra-network syntax) by
    name through the model folders and imports (``studio.engine.models.find_lora``): (the
    prompt without the tags, ``explicit`` + one LoraSpec per tag whose file isn't already in
    ``explicit``). BadInput in one line for a name that isn't installed."""
    from studio.core.errors import BadInput
    from studio.core.prompt_syntax import extract_loras
    from studio.engine.jobs.requests import LoraSpec
    from studio.engine.models import find_lora

    clean, tags = extract_loras(prompt or "")
    if not tags:
        return prompt, tuple(explicit)
    specs = list(explicit)
    have = {str(Path(s.path).expanduser().resolve()) for s in specs}
    for tag in tags:
        path = find_lora(tag.name)
        if path is None:
            raise BadInput(
                f"LoRA {tag.name!r} (from <lora:{tag.name}:...> in the prompt) is not installed: "
                "put it in the models' loras folder or import it (studio models import FILE)"
            )
        key = str(Path(path).resolve())
        if key not in have:
            have.add(key)
            specs.append(LoraSpec(str(path), float(tag.weight)))
    return clean, tuple(specs)
