"""Studio's 75-token chunking (``prompts.tokenize_chunks``) against AUTOMATIC1111's, transcribed
below from the webui source, on the tiny CLIP tokenizer (every single character, alone, is one
token; "," is its own token ",</w>").

The oracle is A1111's ``modules/prompt_parser.py`` (``re_attention``, ``re_break``,
``parse_prompt_attention``) and ``modules/sd_hijack_clip.py``
(``FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`` with ``opts.comma_padding_backtrack =
20`` and emphasis on; ``next_chunk``, ``empty_chunk``; the pad replacement of
``process_tokens``), written out here without textual-inversion embeddings. Studio's parser and
chunker are never called to make an expected value.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from studio.engine.diffusion.sd.prompts import tokenize_chunks
from studio.engine.fixtures.tiny_models import write_tokenizer

# -- A1111 modules/prompt_parser.py ---------------------------------------------------------------
re_attention = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)

re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text):
    res = []
    round_brackets = []
    square_brackets = []

    round_bracket_multiplier = 1.1
    square_bracket_multiplier = 1 / 1.1

    def multiply_range(start_position, multiplier):
        for p in range(start_position, len(res)):
            res[p][1] *= multiplier

    for m in re_attention.finditer(text):
        text = m.group(0)
        weight = m.group(1)

        if text.startswith("\\"):
            res.append([text[1:], 1.0])
        elif text == "(":
            round_brackets.append(len(res))
        elif text == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif text == ")" and round_brackets:
            multiply_range(round_brackets.pop(), round_bracket_multiplier)
        elif text == "]" and square_brackets:
            multiply_range(square_brackets.pop(), square_bracket_multiplier)
        else:
            parts = re.split(re_break, text)
            for i, part in enumerate(parts):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])

    for pos in round_brackets:
        multiply_range(pos, round_bracket_multiplier)

    for pos in square_brackets:
        multiply_range(pos, square_bracket_multiplier)

    if len(res) == 0:
        res = [["", 1.0]]

    # merge runs of identical weights
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1

    return res


# -- A1111 modules/sd_hijack_clip.py --------------------------------------------------------------
class PromptChunk:
    def __init__(self):
        self.tokens = []
        self.multipliers = []


class A1111Chunker:
    """FrozenCLIPEmbedderWithCustomWords' tokenize_line, no embeddings (embedding_db empty)."""

    def __init__(self, tokenizer, comma_padding_backtrack: int = 20):
        self.tokenizer = tokenizer
        self.chunk_length = 75
        self.comma_token = tokenizer.get_vocab().get(",</w>", None)
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.id_pad = self.id_end
        self.comma_padding_backtrack = comma_padding_backtrack

    def tokenize(self, texts):
        return self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]

    def empty_chunk(self):
        chunk = PromptChunk()
        chunk.tokens = [self.id_start] + [self.id_end] * (self.chunk_length + 1)
        chunk.multipliers = [1.0] * (self.chunk_length + 2)
        return chunk

    def tokenize_line(self, line):
        parsed = parse_prompt_attention(line)
        tokenized = self.tokenize([text for text, _ in parsed])

        chunks = []
        chunk = PromptChunk()
        token_count = 0
        last_comma = -1

        def next_chunk(is_last=False):
            nonlocal token_count
            nonlocal last_comma
            nonlocal chunk

            if is_last:
                token_count += len(chunk.tokens)
            else:
                token_count += self.chunk_length

            to_add = self.chunk_length - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add

            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]

            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue

            position = 0
            while position < len(tokens):
                token = tokens[position]

                if token == self.comma_token:
                    last_comma = len(chunk.tokens)

                # this is when we are at the end of allotted 75 tokens for the current chunk,
                # and the current token is not a comma. opts.comma_padding_backtrack is a
                # setting that specifies that if there is a comma nearby, the text after the
                # comma should be moved out of this chunk and into the next.
                elif (
                    self.comma_padding_backtrack != 0
                    and len(chunk.tokens) == self.chunk_length
                    and last_comma != -1
                    and len(chunk.tokens) - last_comma <= self.comma_padding_backtrack
                ):
                    break_location = last_comma + 1

                    reloc_tokens = chunk.tokens[break_location:]
                    reloc_mults = chunk.multipliers[break_location:]

                    chunk.tokens = chunk.tokens[:break_location]
                    chunk.multipliers = chunk.multipliers[:break_location]

                    next_chunk()
                    chunk.tokens = reloc_tokens
                    chunk.multipliers = reloc_mults

                if len(chunk.tokens) == self.chunk_length:
                    next_chunk()

                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1

        if chunk.tokens or not chunks:
            next_chunk(is_last=True)

        return chunks, token_count

    def process_tokens(self, remade_tokens):
        """The id list the encoder sees (SD2: positions after the first EOS become pad)."""
        tokens = list(remade_tokens)
        if self.id_end != self.id_pad:
            index = tokens.index(self.id_end)
            tokens[index + 1 :] = [self.id_pad] * (len(tokens) - index - 1)
        return tokens

    def get_target_prompt_token_count(self, token_count):
        return math.ceil(max(token_count, 1) / self.chunk_length) * self.chunk_length


# -- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    folder = Path(tmp_path_factory.mktemp("tok")) / "tokenizer"
    write_tokenizer(folder)
    tok = CLIPTokenizer.from_pretrained(folder)
    return tok


WORDS = list("bcdefghijklmnopqrsuvwxyz0123456789")  # one token each with the tiny tokenizer


def words(n: int, start: int = 0) -> list[str]:
    return [WORDS[(start + i) % len(WORDS)] for i in range(n)]


def prompt_with_comma_at(position: int, total: int) -> str:
    """``total`` one-token words, a comma right after the word at token index ``position - 1``
    (the comma is then token number ``position``, 0-based)."""
    ws = words(total)
    ws[position - 1] = ws[position - 1] + ","
    return " ".join(ws)


def oracle(tokenizer, text: str) -> list[tuple[list[int], list[float]]]:
    a = A1111Chunker(tokenizer)
    chunks, _count = a.tokenize_line(text)
    return [(a.process_tokens(c.tokens), c.multipliers) for c in chunks]


def studio(tokenizer, text: str) -> list[tuple[list[int], list[float]]]:
    return [(c.tokens, c.multipliers) for c in tokenize_chunks(tokenizer, text)]


def content(tokenizer, chunk_tokens: list[int]) -> list[int]:
    """The prompt tokens of a 77-token chunk (no BOS, no EOS/pad)."""
    body = chunk_tokens[1:-1]
    while body and body[-1] in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        body.pop()
    return body


def assert_same(tokenizer, text: str) -> None:
    want, got = oracle(tokenizer, text), studio(tokenizer, text)
    assert [len(t) for t, _ in got] == [77] * len(got)
    boundaries = [len(content(tokenizer, t)) for t, _ in want]
    assert [len(content(tokenizer, t)) for t, _ in got] == boundaries, text
    assert [t for t, _ in got] == [t for t, _ in want], text
    for (_, gm), (_, wm) in zip(got, want, strict=True):
        assert gm == pytest.approx(wm, rel=1e-12), text


# -- the tokenizer does what these prompts assume ------------------------------------------------
def test_every_word_is_one_token(tokenizer):
    ids = tokenizer(" ".join(WORDS), add_special_tokens=False).input_ids
    assert len(ids) == len(WORDS)
    comma = tokenizer.get_vocab()[",</w>"]
    assert tokenizer("b, c", add_special_tokens=False).input_ids[1] == comma


# -- commas around the chunk boundary ------------------------------------------------------------
@pytest.mark.parametrize(
    "position, total",
    [(p, t) for t in (74, 75, 76, 80, 95, 150) for p in range(50, 80) if p < t],
)
def test_comma_near_the_boundary(tokenizer, position, total):
    assert_same(tokenizer, prompt_with_comma_at(position, total))


def test_comma_exactly_20_back_moves_the_tail(tokenizer):
    """The chunk reaches 75 tokens with the last comma at index 55: 75 - 55 = 20 <= 20, so the
    chunk ends after the comma (56 tokens) and the 19 tokens after it open the next one."""
    text = prompt_with_comma_at(55, 90)
    a = oracle(tokenizer, text)
    assert [len(content(tokenizer, t)) for t, _ in a] == [56, 90 + 1 - 56]
    assert_same(tokenizer, text)


def test_comma_21_back_does_not(tokenizer):
    """Last comma at index 54: 75 - 54 = 21 > 20, the chunk is cut at 75."""
    text = prompt_with_comma_at(54, 90)
    a = oracle(tokenizer, text)
    assert [len(content(tokenizer, t)) for t, _ in a] == [75, 91 - 75]
    assert_same(tokenizer, text)


def test_comma_as_the_75th_token_and_the_76th(tokenizer):
    for position in (74, 75):  # the comma itself fills the chunk / opens the next
        assert_same(tokenizer, prompt_with_comma_at(position, 100))


def test_two_commas_the_last_one_counts(tokenizer):
    ws = words(120)
    ws[50] += ","  # token 51
    ws[60] += ","  # token 62: 75 - 62 = 13 back
    text = " ".join(ws)
    a = oracle(tokenizer, text)
    assert len(content(tokenizer, a[0][0])) == 63
    assert_same(tokenizer, text)


def test_backtrack_in_the_second_and_third_chunk(tokenizer):
    ws = words(230)
    for i in (60, 140, 200):
        ws[i] += ","
    assert_same(tokenizer, " ".join(ws))


# -- BREAK -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "b c BREAK d e",
        "BREAK b c",
        "b c BREAK",
        "b BREAK BREAK c",
        "b, BREAK c",
        "b,BREAK c",  # not a word of its own: no break
        "bBREAK c",
        "b break c",  # lower case is text
        " ".join(words(75)) + " BREAK " + " ".join(words(5)),  # BREAK right at 75
        " ".join(words(74)) + ", BREAK " + " ".join(words(5)),
        " ".join(words(60)) + ", " + " ".join(words(10)) + " BREAK " + " ".join(words(20)),
        "(b BREAK c:1.3) d",
        "[b c] BREAK (d:0.5)",
    ],
)
def test_break(tokenizer, text):
    assert_same(tokenizer, text)


def test_break_starts_a_new_chunk(tokenizer):
    a = oracle(tokenizer, "b c BREAK d e")
    assert [len(content(tokenizer, t)) for t, _ in a] == [2, 2]
    assert_same(tokenizer, "b c BREAK d e")


# -- weights travel with their tokens ------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        " ".join(words(50)) + " (" + " ".join(words(10)) + ", " + " ".join(words(20)) + ":1.3)",
        " ".join(words(60)) + ", [" + " ".join(words(30)) + "]",
        " ".join(words(56)) + ", ((" + " ".join(words(25)) + "))",
        "(" + " ".join(words(70)) + ":0.7), " + " ".join(words(20)),
        " ".join(words(40)) + " (b:1.2) (c:1.2) d, (e:1.5) " + " ".join(words(40)),
        "(unbalanced " + " ".join(words(80)),
        r"\(literal\) " + " ".join(words(78)),
    ],
)
def test_weights_near_the_boundary(tokenizer, text):
    assert_same(tokenizer, text)


def test_weighted_tail_keeps_its_weight_when_moved(tokenizer):
    text = " ".join(words(58)) + ", (" + " ".join(words(30)) + ":1.5)"
    a = oracle(tokenizer, text)
    first, second = a[0], a[1]
    assert len(content(tokenizer, first[0])) == 59  # cut after the comma (index 58, 17 back)
    assert set(second[1][1:31]) == {1.5}
    assert_same(tokenizer, text)


# -- edge cases and a random sweep ----------------------------------------------------------------
@pytest.mark.parametrize("text", ["", " ", ",", ", , ,", "BREAK", " ".join(words(75))])
def test_edges(tokenizer, text):
    assert_same(tokenizer, text)


def _random_prompt(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(1, 200)):
        r = rng.random()
        if r < 0.15:
            parts.append(",")
        elif r < 0.18:
            parts.append("BREAK")
        elif r < 0.22:
            w = " ".join(words(rng.randint(1, 8), rng.randint(0, 30)))
            parts.append(rng.choice([f"({w}:{rng.choice([0.5, 1.2, 1.5])})", f"[{w}]", f"(({w}))"]))
        else:
            parts.append(rng.choice(WORDS))
    return " ".join(parts).replace(" ,", ",")


@pytest.mark.parametrize("seed", range(40))
def test_random_prompts(tokenizer, seed):
    rng = random.Random(seed)
    for _ in range(10):
        assert_same(tokenizer, _random_prompt(rng))


def test_empty_chunk_is_a1111s(tokenizer):
    from studio.engine.diffusion.sd.prompts import empty_chunk

    a = A1111Chunker(tokenizer)
    want = a.empty_chunk()
    got = empty_chunk(tokenizer)
    assert got.tokens == a.process_tokens(want.tokens) and got.multipliers == want.multipliers


# -- textual-inversion embeddings (A1111's PromptChunkFix) ---------------------------------------
class A1111EmbeddingChunker(A1111Chunker):
    """tokenize_line with an embedding database: ``embeddings`` maps a one-token trigger word
    to its vectors. A1111 writes ``[0] * vectors`` and records a ``PromptChunkFix(offset,
    embedding)`` that later swaps the vectors in at those positions; here the swap puts the
    vectors' token ids there, which is what Studio's chunks hold. ``id_pad``: the tokenizer's
    pad (OpenCLIP's "!" for SD2 and SDXL's second encoder, ``FrozenOpenCLIPEmbedderWithCustomWords
    .id_pad = 0``)."""

    def __init__(self, tokenizer, embeddings, id_pad=None):
        super().__init__(tokenizer)
        self.embeddings = embeddings
        if id_pad is not None:
            self.id_pad = id_pad

    def tokenize_line(self, line):
        parsed = parse_prompt_attention(line)
        tokenized = self.tokenize([text for text, _ in parsed])
        chunks = []
        chunk = PromptChunk()
        chunk.fixes = []
        last_comma = -1

        def next_chunk():
            nonlocal last_comma, chunk
            to_add = self.chunk_length - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()
            chunk.fixes = []

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (
                    len(chunk.tokens) == self.chunk_length
                    and last_comma != -1
                    and len(chunk.tokens) - last_comma <= self.comma_padding_backtrack
                ):
                    break_location = last_comma + 1
                    reloc_tokens = chunk.tokens[break_location:]
                    reloc_mults = chunk.multipliers[break_location:]
                    reloc_fixes = [
                        (o - break_location, e) for o, e in chunk.fixes if o >= break_location
                    ]
                    chunk.fixes = [(o, e) for o, e in chunk.fixes if o < break_location]
                    chunk.tokens = chunk.tokens[:break_location]
                    chunk.multipliers = chunk.multipliers[:break_location]
                    next_chunk()
                    chunk.tokens = reloc_tokens
                    chunk.multipliers = reloc_mults
                    chunk.fixes = reloc_fixes
                if len(chunk.tokens) == self.chunk_length:
                    next_chunk()
                embedding = self.embeddings.get(token)  # find_embedding_at_position
                if embedding is None:
                    chunk.tokens.append(token)
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                emb_len = len(embedding)
                if len(chunk.tokens) + emb_len > self.chunk_length:
                    next_chunk()
                chunk.fixes.append((len(chunk.tokens), embedding))
                chunk.tokens += [0] * emb_len
                chunk.multipliers += [weight] * emb_len
                position += 1
        if chunk.tokens or not chunks:
            next_chunk()
        out = []
        for c in chunks:
            tokens = list(c.tokens)
            for offset, vectors in c.fixes:  # the fix's offset is counted without the BOS
                tokens[1 + offset : 1 + offset + len(vectors)] = vectors
            out.append((self.process_tokens(tokens), c.multipliers))
        return out


VECTOR_IDS = list(range(600, 700))  # ids of added rows, past the tiny vocabulary


def embedding_db(tokenizer, sizes):
    """{token id of the one-character trigger word (none of WORDS): ids of its ``n`` vectors}."""
    db, start = {}, 0
    for word, n in sizes.items():
        (tid,) = tokenizer(word, add_special_tokens=False).input_ids
        db[tid] = VECTOR_IDS[start : start + n]
        start += n
    return db


def assert_same_with(tokenizer, text, db, id_pad=None):
    want = A1111EmbeddingChunker(tokenizer, db, id_pad).tokenize_line(text)
    got = [(c.tokens, c.multipliers) for c in tokenize_chunks(tokenizer, text, db)]
    assert [t for t, _ in got] == [t for t, _ in want], text
    for (_, gm), (_, wm) in zip(got, want, strict=True):
        assert gm == pytest.approx(wm, rel=1e-12), text


def test_an_embedding_takes_all_its_vectors_with_the_weight_around_it(tokenizer):
    db = embedding_db(tokenizer, {"a": 3})
    (chunk,) = tokenize_chunks(tokenizer, "b (a:1.5) c", db)
    b, c = (tokenizer(w, add_special_tokens=False).input_ids[0] for w in "bc")
    assert chunk.tokens[1:6] == [b, 600, 601, 602, c]
    assert chunk.multipliers[1:6] == pytest.approx([1.0, 1.5, 1.5, 1.5, 1.0])
    assert_same_with(tokenizer, "b (a:1.5) c", db)


@pytest.mark.parametrize("before", [69, 70, 71, 72, 73, 74, 75])
def test_an_embedding_that_does_not_fit_starts_the_next_chunk(tokenizer, before):
    """5 vectors after ``before`` words: they fit up to 70 words, else all 5 open chunk 2."""
    db = embedding_db(tokenizer, {"a": 5})
    text = " ".join(words(before)) + " a " + " ".join(words(4))
    chunks = A1111EmbeddingChunker(tokenizer, db).tokenize_line(text)
    first = content(tokenizer, chunks[0][0])
    assert (600 in first) == (before <= 70)
    assert_same_with(tokenizer, text, db)


@pytest.mark.parametrize(
    "text",
    [
        " ".join(words(60)) + ", a " + " ".join(words(20)),  # moved with the comma's tail
        " ".join(words(56)) + ", (a:1.3) t " + " ".join(words(30)),
        " ".join(words(74)) + " a",
        " ".join(words(75)) + " a",
        "a " * 30,
        "t BREAK a, " + " ".join(words(73)) + " t",
        " ".join(words(50)) + ", " + "a " * 8,
        "a, " * 20 + "t " * 30,
    ],
)
def test_embeddings_near_the_boundary(tokenizer, text):
    assert_same_with(tokenizer, text, embedding_db(tokenizer, {"a": 4, "t": 9}))


def test_a_whole_chunk_embedding(tokenizer):
    db = embedding_db(tokenizer, {"a": 75})
    assert_same_with(tokenizer, "b a c", db)
    assert [
        len(content(tokenizer, t))
        for t, _ in A1111EmbeddingChunker(tokenizer, db).tokenize_line("b a c")
    ] == [1, 75, 1]


@pytest.mark.parametrize("seed", range(12))
def test_random_prompts_with_embeddings(tokenizer, seed):
    rng = random.Random(1000 + seed)
    db = embedding_db(tokenizer, {"a": rng.randint(1, 12), "t": rng.randint(1, 40), "@": 1})
    for _ in range(8):
        text = _random_prompt(rng)
        text = " ".join(
            rng.choice(["a", "t", "@", w]) if rng.random() < 0.1 else w for w in text.split(" ")
        )
        assert_same_with(tokenizer, text, db)


# -- a pad token other than EOS (OpenCLIP) --------------------------------------------------------
@pytest.fixture(scope="module")
def bang_pad_tokenizer(tmp_path_factory):
    """The tiny tokenizer padding with "!" as OpenCLIP's does (SD2, SDXL's second encoder)."""
    from transformers import CLIPTokenizer

    folder = Path(tmp_path_factory.mktemp("tok-bang")) / "tokenizer"
    write_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder, pad_token="!")


def test_after_the_first_eos_every_position_is_the_pad_token(bang_pad_tokenizer):
    tok = bang_pad_tokenizer
    bang = tok.get_vocab()["!"]
    assert tok.pad_token_id == bang != tok.eos_token_id
    (chunk,) = tokenize_chunks(tok, "b c")
    # what the tokenizer itself gives with padding to 77, as diffusers feeds OpenCLIP
    assert chunk.tokens == tok("b c", padding="max_length", max_length=77).input_ids
    assert (
        chunk.tokens[:5]
        == [
            tok.bos_token_id,
            *tok("b c", add_special_tokens=False).input_ids,
            tok.eos_token_id,
            bang,
        ][:5]
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "b c",
        " ".join(words(74)),
        " ".join(words(75)),
        " ".join(words(60)) + ", " + " ".join(words(30)),
        "b BREAK c",
        "b a c " + " ".join(words(70)),
    ],
)
def test_pad_token_chunks_match_a1111_openclip(bang_pad_tokenizer, text):
    tok = bang_pad_tokenizer
    assert_same_with(tok, text, embedding_db(tok, {"a": 6}), id_pad=tok.pad_token_id)


def test_a_tokenizer_without_a_pad_token_pads_with_eos(tmp_path):
    from transformers import CLIPTokenizer

    write_tokenizer(tmp_path / "tok")
    tok = CLIPTokenizer.from_pretrained(tmp_path / "tok")
    tok.pad_token = None
    assert tok.pad_token_id is None
    (chunk,) = tokenize_chunks(tok, "b c")
    assert chunk.tokens[3:] == [tok.eos_token_id] * 74
