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
3. each chunk is encoded separately. Clip skip follows A1111's embedders
   (``sd_hijack_clip`` / ``sd_hijack_open_clip``): on SD1's OpenAI CLIP
   (``FrozenCLIPEmbedderWithCustomWords``) clip skip N takes hidden state -N, then the final
   layer norm; SD2's OpenCLIP (``FrozenOpenCLIPEmbedderWithCustomWords``) always gives its
   model's layer, whatever the setting; SDXL's two encoders always give the penultimate layer
   without the norm (``FrozenCLIPEmbedderForSDXLWithCustomWords``: ``layer_idx`` 11 of CLIP-L;
   OpenCLIP-G "penultimate"), so "Clip skip 2" on SDXL changes nothing (see
   :func:`hidden_state_index`);
4. emphasis ("Original"): z <- z * m per token, then z <- z * mean(z_before) / mean(z_after),
   so weights change the direction of the conditioning, not its overall scale;
5. the chunks are concatenated along the token axis (77 k tokens); prompt and negative prompt
   are padded with empty chunks to the same count; SDXL concatenates its two encoders along
   the feature axis and takes the pooled embedding from the first chunk of ``text_encoder_2``.

With no weights and one chunk this is exactly diffusers' own encoding, so ``(word:1.0)`` and
``word`` give identical pixels (tested).

Prompt editing ``[from:to:when]``, alternation ``[a|b]`` and composable ``AND`` (A1111
``prompt_parser``; the text side is ``studio.core.prompt_syntax.prompt_schedule`` /
``split_and``): when the prompt uses them, :func:`prompt_kwargs` leaves a
:class:`PromptPlan` on the pipeline (``pipe.studio_conditioning``) that the denoising loop
(``sampling.denoise``) resolves for the job's step count: every text of the schedules is
encoded as above (all padded to the same number of chunks) and model call k (0-based, as
A1111's ``CFGDenoiser.step`` counts) is conditioned on the first entry with k <= its last
step (``reconstruct_cond_batch``). ``AND`` combines the predictions as Liu et al. 2022
(composable diffusion) and A1111's ``combine_denoised`` do: uncond + g sum_i w_i (cond_i -
uncond).

Textual-inversion embeddings the prompt names (``easynegative``, ``(easynegative:1.2)``,
``<name>``) are loaded for the encoding and unloaded after it
(:mod:`studio.engine.diffusion.sd.textual_inversion`): before the parse each trigger word becomes
a private added token, and in step 1 that token stands for all ``n`` of the embedding's
vectors, which carry the piece's multiplier and never straddle two chunks (A1111's
``PromptChunkFix``: an embedding that doesn't fit starts a new chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from studio.core.prompt_syntax import (
    has_schedule,
    is_break,
    parse_attention,
    prompt_schedule,
    split_and,
)
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


def takes_clip_skip(encoder) -> bool:
    """Whether A1111 applies "Clip skip" to this text encoder: only to OpenAI's CLIP ViT-L of
    SD1 (``FrozenCLIPEmbedderWithCustomWords``), not to SD2's OpenCLIP ViT-H
    (``FrozenOpenCLIPEmbedderWithCustomWords.encode_with_transformers`` ignores it). In
    diffusers both are CLIPTextModel; OpenAI's CLIP is the one with QuickGELU activations."""
    config = getattr(encoder, "config", None)
    return getattr(config, "hidden_act", "quick_gelu") == "quick_gelu"


def hidden_state_index(encoder, family: Family, clip_skip: int) -> int | None:
    """Which of ``hidden_states`` conditions the model, as A1111 chooses it (see the module
    docstring): -2 for the penultimate-layer families (SDXL) whatever ``clip_skip``; None
    (the encoder's last layer with its final norm) at clip skip 1 and on encoders A1111
    doesn't skip (SD2); else -clip_skip (then the final norm)."""
    if family.clip_hidden == "penultimate":
        return -2
    skip = max(1, int(clip_skip or 1))
    if skip == 1 or not takes_clip_skip(encoder):
        return None
    return -skip


def encode_chunk(encoder, chunk: Chunk, family: Family, clip_skip: int, device):
    """One 77-token chunk through ``encoder``: (hidden states (1, 77, D), pooled or None)."""
    ids = torch.tensor([chunk.tokens], dtype=torch.long, device=device)
    out = encoder(ids, output_hidden_states=True)
    index = hidden_state_index(encoder, family, clip_skip)
    if index is None:
        z = out[0]
    elif family.clip_hidden == "penultimate":
        z = out.hidden_states[index]
    else:
        z = _final_norm(encoder)(out.hidden_states[index])
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
    those applied (None when none). ``pipe.studio_conditioning`` is set to a
    :class:`PromptPlan` when the prompt edits itself per step or composes with ``AND`` (the
    embeddings returned are then those of the text as written, for callers that don't run
    ``sampling.denoise``), else None."""
    from studio.engine.diffusion.sd.textual_inversion import textual_inversions

    pipe.studio_ti_hashes = None
    pipe.studio_conditioning = None
    if not family.prompt_weighting:
        return {"prompt": prompt, "negative_prompt": negative or None}
    encoders = [(n, getattr(pipe, n, None)) for n in family.text_encoders]
    encoders = [(n, e) for n, e in encoders if e is not None and _tokenizer_for(pipe, n)]
    if not encoders:
        return {"prompt": prompt, "negative_prompt": negative or None}
    zero_negative = not negative and bool(pipe.config.get("force_zeros_for_empty_prompt", False))
    parts = split_and(prompt)
    if len(parts) == 1 and parts[0][1] == 1.0:
        prompt = parts[0][0]  # A1111 encodes the text without a trailing ":1"
    texts = [prompt, negative or ""]
    with textual_inversions(pipe, family, encoders, texts, notify) as ti:
        out = _encode(pipe, family, encoders, texts, clip_skip, zero_negative, ti)
    pipe.studio_ti_hashes = ti.ti_hashes()
    plain = len(parts) == 1 and parts[0][1] == 1.0 and not has_schedule(parts[0][0])
    if not (plain and not has_schedule(negative or "")):
        pipe.studio_conditioning = PromptPlan(
            pipe, family, encoders, parts, negative or "", clip_skip, zero_negative
        )
    return out


def _encode_texts(pipe, family: Family, encoders, texts, clip_skip, ti) -> list[tuple]:
    """Each of ``texts`` as (embeds (1, 77 k, D), pooled or None), all with the same number
    of chunks k (shorter ones padded with empty chunks, as A1111 pads cond and uncond)."""
    per_text: list[list[list[Chunk]]] = [[] for _ in texts]  # text -> encoder -> chunks
    for name, _enc in encoders:
        tok = _tokenizer_for(pipe, name)
        for i, text in enumerate(texts):
            per_text[i].append(tokenize_chunks(tok, ti.spell(text, name), ti.expansions(name)))
    n_chunks = max(len(c) for text in per_text for c in text)
    # Where the encoders run: under sequential offload their weights sit on the meta device.
    device = getattr(pipe, "_execution_device", None) or encoders[0][1].device
    results = []
    with torch.inference_mode():
        for i in range(len(texts)):
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
            results.append((torch.cat(parts, dim=-1), pool))
    return results


def _encode(pipe, family: Family, encoders, texts, clip_skip, zero_negative, ti) -> dict:
    (embeds, pooled), (neg_embeds, neg_pooled) = _encode_texts(
        pipe, family, encoders, texts, clip_skip, ti
    )
    dtype = encoders[-1][1].dtype
    out = {"prompt_embeds": embeds.to(dtype)}
    out["negative_prompt_embeds"] = (
        torch.zeros_like(out["prompt_embeds"]) if zero_negative else neg_embeds.to(dtype)
    )
    if family.pooled_from is not None and pooled is not None:
        out["pooled_prompt_embeds"] = pooled.to(dtype)
        out["negative_pooled_prompt_embeds"] = (
            torch.zeros_like(pooled).to(dtype) if zero_negative else neg_pooled.to(dtype)
        )
    return out


@dataclass
class Conditioning:
    """One encoded text: (1, 77 k, D) embeddings and the pooled (1, P) embedding or None."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None


@dataclass
class ResolvedPlan:
    """A :class:`PromptPlan` for one step count: the encoded texts and, per model call, which
    of them condition the negative half and each ``AND`` sub-prompt (with its weight)."""

    encoded: list[Conditioning]
    negative: list[tuple[int, int]]  # [(end_at_step, index into encoded)]
    positive: list[tuple[list[tuple[int, int]], float]]  # sub-prompts: (schedule, weight)

    @staticmethod
    def _pick(schedule: list[tuple[int, int]], call: int) -> int:
        # A1111 reconstruct_cond_batch: the first entry with call <= end_at_step, else the
        # first (its target_index default)
        for end, index in schedule:
            if call <= end:
                return index
        return schedule[0][1]

    def at(self, call: int) -> tuple[Conditioning, list[tuple[Conditioning, float]]]:
        """(negative, [(sub-prompt, weight)]) for model call ``call`` (0-based)."""
        neg = self.encoded[self._pick(self.negative, call)]
        pos = [(self.encoded[self._pick(s, call)], w) for s, w in self.positive]
        return neg, pos

    @property
    def composed(self) -> bool:
        """Whether predictions must be combined (``AND``, or a weight other than 1)."""
        return len(self.positive) != 1 or self.positive[0][1] != 1.0

    @property
    def varies(self) -> bool:
        """Whether the conditioning changes during the job."""
        schedules = [self.negative, *(s for s, _w in self.positive)]
        return any(len({i for _e, i in s}) > 1 for s in schedules)


class PromptPlan:
    """The conditioning of a prompt that edits itself per step or composes with ``AND``:
    encoded when the step count is known (:meth:`resolve`, cached per count)."""

    def __init__(self, pipe, family, encoders, parts, negative, clip_skip, zero_negative):
        self.pipe, self.family, self.encoders = pipe, family, encoders
        self.parts = list(parts)  # [(text, weight)] from split_and
        self.negative = negative
        self.clip_skip, self.zero_negative = clip_skip, zero_negative
        self._cache: dict[int, ResolvedPlan] = {}

    def schedules(self, steps: int) -> tuple[list, list]:
        """(negative schedule, [(sub-prompt schedule, weight)]) of texts for ``steps``."""
        neg = prompt_schedule(self.negative, steps)
        pos = [(prompt_schedule(text, steps), w) for text, w in self.parts]
        return neg, pos

    def resolve(self, steps: int) -> ResolvedPlan:
        """Encode every text the schedules for ``steps`` (A1111's total steps) use."""
        if steps in self._cache:
            return self._cache[steps]
        from studio.engine.diffusion.sd.textual_inversion import textual_inversions

        neg, pos = self.schedules(steps)
        texts: list[str] = []

        def index(text: str) -> int:
            if text not in texts:
                texts.append(text)
            return texts.index(text)

        neg_ids = [(end, index(t)) for end, t in neg]
        pos_ids = [([(end, index(t)) for end, t in sched], w) for sched, w in pos]
        pipe, encoders = self.pipe, self.encoders
        # the notes about skipped embeddings were given when the prompt was first encoded
        with textual_inversions(pipe, self.family, encoders, texts, None) as ti:
            results = _encode_texts(pipe, self.family, encoders, texts, self.clip_skip, ti)
        dtype = encoders[-1][1].dtype
        encoded = [
            Conditioning(e.to(dtype), p.to(dtype) if p is not None else None) for e, p in results
        ]
        if self.zero_negative:  # an empty negative on SDXL: zeros (force_zeros_for_empty_prompt)
            c = encoded[neg_ids[0][1]]
            pooled = torch.zeros_like(c.pooled) if c.pooled is not None else None
            encoded.append(Conditioning(torch.zeros_like(c.embeds), pooled))
            neg_ids = [(end, len(encoded) - 1) for end, _i in neg_ids]
        plan = ResolvedPlan(encoded, neg_ids, pos_ids)
        self._cache[steps] = plan
        return plan
