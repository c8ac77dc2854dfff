"""Textual-inversion embeddings named in a job's prompt, applied the AUTOMATIC1111 way.

Textual inversion (Gal et al., ICLR 2023) learns ``n`` vectors of the text encoder's input
embedding; a prompt uses them by naming the embedding (the file stem, see
:mod:`studio.engine.models.embeddings`). As in A1111 ``modules/sd_hijack_clip.py`` and
``modules/textual_inversion/textual_inversion.py``:

- the name is replaced by the embedding's ``n`` vectors, which take ``n`` of a chunk's 75
  token positions and get the multiplier of the text around them, so ``(easynegative:1.2)``
  weights the embedding too; an embedding never straddles two chunks (when it doesn't fit in
  the current chunk, a new one starts);
- an embedding made for another model (its vectors' width differs from the text encoder's:
  an SD 1.x file, 768 wide, on SD 2.x's 1024; an SD 1.x file on SDXL, which needs a ``clip_l``
  and a ``clip_g`` part) is skipped with a note naming it, and its name stays plain text;
- SDXL embeddings load ``clip_l`` into ``text_encoder``/``tokenizer`` and ``clip_g`` into
  ``text_encoder_2``/``tokenizer_2``;
- the image's parameters say ``TI hashes: "name: <first 12 hex digits of the file's
  SHA-256>"`` (A1111's ``Embedding.shorthash``; Civitai links resources by it).

The vectors go in with diffusers' ``load_textual_inversion`` (a new row of the token embedding
per vector, under a private token ``<studio-ti-K-E>``) for the one job, and come out with
``unload_textual_inversion`` when the prompt is encoded, so the cached pipeline is never left
with another job's tokens: a prompt that doesn't name an embedding encodes exactly as on a
fresh pipeline. diffusers' methods are called on a hook-free loader object (:data:`_LOADER`)
because on a pipeline they re-install CPU offload on whichever pipeline they were called on,
at ``text_encoder.device`` (the CPU, under offload); model offload needs nothing (its hook
moves the whole text encoder, new rows included), sequential offload is lifted from the text
encoders while rows are added or removed and put back with the same execution device, and with
group offload embeddings are skipped with a note.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers.loaders import TextualInversionLoaderMixin

from studio.engine.diffusion.families import Family
from studio.engine.models.embeddings import (
    Embedding,
    all_embeddings,
    embedding_vectors,
    trigger_pattern,
)

log = logging.getLogger(__name__)

PREFIX = "<studio-ti-"
MAX_VECTORS = 75  # one chunk: A1111 cannot place a longer embedding either
# The part of an embedding file each text encoder takes.
_PART = {"text_encoder": "clip_l", "text_encoder_2": "clip_g"}


class _Loader(TextualInversionLoaderMixin):
    """diffusers' load/unload_textual_inversion without a pipeline's components: nothing for
    them to detach and re-attach (see the module docstring)."""

    hf_device_map = None
    components: dict = {}


_LOADER = _Loader()


@dataclass
class TISession:
    """The embeddings of one prompt encoding: which were applied, and per text encoder the
    private token written for each trigger word and the token ids it stands for."""

    used: list[Embedding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _spell: list[tuple[object, dict[str, str]]] = field(default_factory=list)
    _ids: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def spell(self, text: str, encoder: str) -> str:
        """``text`` with every applied embedding's trigger word replaced by its private token
        for ``encoder``."""
        for pattern, tokens in self._spell:
            text = pattern.sub(lambda _m, t=tokens[encoder]: t, text)
        return text

    def expansions(self, encoder: str) -> dict[int, list[int]]:
        """{private token id: the ids of all the embedding's vectors} for ``encoder``."""
        return self._ids.get(encoder, {})

    def ti_hashes(self) -> str | None:
        """A1111's ``TI hashes`` value ("name: shorthash, ..."), None when none was used."""
        if not self.used:
            return None
        parts = []
        for emb in self.used:
            name = emb.token.replace(":", "").replace(",", "")
            parts.append(f"{name}: {short_hash(emb.path)}")
        return ", ".join(parts)


_HASHES: dict[tuple[str, int, int], str] = {}


def short_hash(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256 (A1111 ``Embedding.shorthash``)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()[:12]
    return _HASHES[key]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _width(encoder) -> int:
    return int(encoder.get_input_embeddings().weight.shape[-1])


def _parts(emb: Embedding, encoders: list[tuple[str, object]], family: Family):
    """({encoder name: (n, d) vectors}, None) when ``emb`` fits these text encoders, else
    (None, the reason it doesn't)."""
    try:
        vectors = embedding_vectors(emb)
    except Exception as e:  # noqa: BLE001 - a broken file is skipped with its reason
        return None, f"cannot be read ({_first_line(e)})"
    names = [n for n, _ in encoders]
    wanted = {n: _PART.get(n) for n in names}
    if len(names) == 1 and "clip_g" not in vectors:
        wanted = {names[0]: "clip_l"}  # one CLIP encoder (SD 1.x/2.x): the file's one tensor
    if set(wanted.values()) != set(vectors) or None in wanted.values():
        have = " + ".join(str(tuple(v.shape)[-1]) for v in vectors.values())
        need = " + ".join(str(_width(e)) for _, e in encoders)
        return None, f"{have}-wide vectors; {family.label} models take {need}"
    parts = {}
    for name, enc in encoders:
        v = vectors[wanted[name]].float()
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[-1] != _width(enc):
            return None, f"{v.shape[-1]}-wide vectors; {family.label} models take {_width(enc)}"
        if not torch.isfinite(v).all():
            return None, "its vectors contain NaN or infinite values"
        parts[name] = v
    counts = {v.shape[0] for v in parts.values()}
    if len(counts) != 1:
        return None, "its clip_l and clip_g parts have different vector counts"
    if counts.pop() > MAX_VECTORS:
        return None, f"it takes more than {MAX_VECTORS} tokens"
    return parts, None


def _find(texts: list[str]) -> list[list[Embedding]]:
    """The trigger words in ``texts`` (first appearance order), each with every installed
    embedding of that name (candidates in the order Studio finds them)."""
    pool = all_embeddings()
    hits: dict[str, tuple[tuple[int, int], list[Embedding]]] = {}
    for emb in pool:
        key = emb.token.lower()
        pattern = trigger_pattern(emb.token)
        for i, text in enumerate(texts):
            m = pattern.search(text or "")
            if m is not None:
                at = (i, m.start())
                if key in hits:
                    hits[key] = (min(hits[key][0], at), [*hits[key][1], emb])
                else:
                    hits[key] = (at, [emb])
                break
    return [c for _, c in sorted(hits.values(), key=lambda h: h[0])]


def sequential_device(module):
    """The execution device of accelerate's sequential CPU offload on ``module`` (its layers'
    ``AlignDevicesHook(offload=True)``), None when it isn't offloaded that way."""
    from accelerate.hooks import AlignDevicesHook

    for m in module.modules():
        hook = getattr(m, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            if isinstance(h, AlignDevicesHook) and h.offload:
                return h.execution_device
    return None


@contextlib.contextmanager
def _rows_editable(encoders: list[tuple[str, object]]) -> Iterator[None]:
    """Lift sequential CPU offload (weights on the meta device, moved in layer by layer) from
    the text encoders while rows are added or removed, then put it back as diffusers'
    ``enable_sequential_cpu_offload`` applies it, with the same execution device."""
    lifted = []
    for _name, enc in encoders:
        device = sequential_device(enc)
        if device is not None:
            from accelerate.hooks import remove_hook_from_module

            lifted.append((enc, device))
            remove_hook_from_module(enc, recurse=True)
    try:
        with torch.inference_mode(False), torch.no_grad():
            yield
    finally:
        if lifted:
            from accelerate import cpu_offload

            for enc, device in lifted:
                cpu_offload(enc, device, offload_buffers=len(enc._parameters) > 0)


def _group_offloaded(encoders) -> bool:
    try:
        from diffusers.hooks.group_offloading import _is_group_offload_enabled
    except ImportError:  # pragma: no cover - older diffusers
        return False
    return any(_is_group_offload_enabled(e) for _, e in encoders)


def _unload(encoders, tokenizers, sizes) -> None:
    """Remove every private token (and its rows) from each tokenizer/encoder pair, back to the
    sizes before the job."""
    with _rows_editable(encoders):
        for (name, enc), tok in zip(encoders, tokenizers, strict=True):
            ours = [t for t in tok.get_added_vocab() if t.startswith(PREFIX)]
            if ours:
                _LOADER.unload_textual_inversion(ours, tokenizer=tok, text_encoder=enc)
            rows, n_tok = sizes[name]
            if enc.get_input_embeddings().weight.shape[0] != rows:
                enc.resize_token_embeddings(rows)  # a shared tokenizer or a half-done load
            enc.config.vocab_size = rows
            if len(tok) != n_tok:
                log.warning(
                    "tokenizer of %s has %d tokens after unloading, not %d", name, len(tok), n_tok
                )


@contextlib.contextmanager
def textual_inversions(
    pipe,
    family: Family,
    encoders: list[tuple[str, object]],
    texts: list[str],
    notify: Callable[[str], None] | None = None,
) -> Iterator[TISession]:
    """Load the embeddings that ``texts`` name into the pipeline's tokenizers and text
    encoders (``encoders``: the family's (name, module) pairs), yield the :class:`TISession`
    to tokenize with, and unload them afterwards whatever happens. Embeddings that don't fit
    are skipped with a note through ``notify`` (and the log); words that only look like an
    embedding name (no such file) are left alone."""
    session = TISession()
    groups = _find(texts) if any(texts) else []
    if not groups:
        yield session
        return

    def note(msg: str) -> None:
        session.notes.append(msg)
        log.warning(msg)
        if notify is not None:
            notify(msg)

    if _group_offloaded(encoders):
        names = ", ".join(g[0].token for g in groups)
        note(
            f"Textual-inversion embeddings skipped ({names}): not supported with group offload; "
            "their names are read as plain text"
        )
        yield session
        return
    chosen: list[tuple[Embedding, dict]] = []
    for candidates in groups:
        reasons = []
        for emb in candidates:
            parts, why = _parts(emb, encoders, family)
            if parts is not None:
                chosen.append((emb, parts))
                break
            reasons.append(f"{emb.path.name}: {why}")
        else:
            note(
                f"Embedding {candidates[0].token} skipped ({'; '.join(reasons)}); "
                "its name is read as plain text"
            )
    if not chosen:
        yield session
        return
    tokenizers = [getattr(pipe, n.replace("text_encoder", "tokenizer")) for n, _ in encoders]
    sizes = {
        n: (int(e.get_input_embeddings().weight.shape[0]), len(t))
        for (n, e), t in zip(encoders, tokenizers, strict=True)
    }
    legacy = _true_eos(encoders, tokenizers)
    try:
        with _rows_editable(encoders):
            for k, (emb, parts) in enumerate(chosen):
                tokens: dict[str, str] = {}
                try:
                    for j, ((name, enc), tok) in enumerate(zip(encoders, tokenizers, strict=True)):
                        token = f"{PREFIX}{k}-{j}>"
                        vectors = parts[name]
                        _LOADER.load_textual_inversion(
                            vectors, token=token, tokenizer=tok, text_encoder=enc
                        )
                        n = vectors.shape[0]
                        names = [token] + [f"{token}_{i}" for i in range(1, n)]
                        ids = tok.convert_tokens_to_ids(names)
                        session._ids.setdefault(name, {})[ids[0]] = list(ids)
                        tokens[name] = token
                except Exception as e:  # noqa: BLE001 - skip it, the others still apply
                    # Rows it got are removed with the others after the job; its token is
                    # never written into the prompt.
                    note(
                        f"Embedding {emb.token} skipped: cannot be loaded ({_first_line(e)}); "
                        "its name is read as plain text"
                    )
                    continue
                session.used.append(emb)
                session._spell.append((trigger_pattern(emb.token), tokens))
        yield session
    finally:
        for module, eos in legacy:
            module.eos_token_id = eos
        _unload(encoders, tokenizers, sizes)


def _true_eos(encoders, tokenizers) -> list[tuple[object, int]]:
    """Point CLIP's pooled output at the real end-of-text token while embeddings are loaded;
    returns what to restore. The shipped SD/SDXL text encoder configs say ``eos_token_id: 2``
    (from before transformers PR #24773), and then transformers pools at the largest token id,
    which an added token outranks: SDXL's pooled embedding would be read at the embedding's
    position instead of the end of text. With the real id it is read at the first end-of-text
    token, the position the largest id had before any token was added (A1111 pools there
    too), so prompts without embeddings are unaffected."""
    changed = []
    for (_name, enc), tok in zip(encoders, tokenizers, strict=True):
        eos = tok.eos_token_id
        for module in enc.modules():
            old = getattr(module, "eos_token_id", None)
            if old == 2 and eos is not None and eos != 2:
                changed.append((module, old))
                module.eos_token_id = eos
    return changed


def ti_metadata(meta: dict, pipe) -> dict:
    """Add the ``TI hashes`` of the embeddings the last prompt encoding on ``pipe`` applied
    (``prompts.prompt_kwargs`` records them) to an image's metadata dict."""
    hashes = getattr(pipe, "studio_ti_hashes", None)
    if hashes:
        meta["ti_hashes"] = hashes
    return meta
