"""AUTOMATIC1111 prompt syntax, parsed without torch: attention weights, ``BREAK`` and
``<lora:name:weight>`` tags.

Attention (A1111 ``modules/prompt_parser.py``, ``parse_prompt_attention``):

- ``(text)`` multiplies the attention of ``text`` by 1.1, ``[text]`` divides it by 1.1;
  brackets nest and multiply (``((a))`` = 1.21);
- ``(text:1.5)`` sets the multiplier to 1.5 (it multiplies whatever encloses it);
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters;
- an unclosed ``(`` or ``[`` applies to the rest of the prompt; a stray ``)`` or ``]`` is text;
- ``BREAK`` (upper case, a word of its own) ends the current 75-token chunk;
- adjacent pieces with equal weights are merged.

The engine weights the CLIP embeddings per token with these multipliers (and A1111's
mean-restoring normalisation, see ``studio.engine.diffusion.prompts``).

Extra networks (A1111 ``modules/extra_networks.py``, ``re_extra_net = <(\\w+):([^>]+)>``):
``<lora:name>`` or ``<lora:name:weight>`` (also ``lyco``) are taken out of the text before it
is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND = 1.1
SQUARE = 1 / 1.1
BREAK = "BREAK"

# A1111 prompt_parser.re_attention, alternative for alternative.
_RE_ATTENTION = re.compile(
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
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_RE_LORA = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """``text`` as [(piece, weight)] following A1111's ``parse_prompt_attention`` exactly; a
    ``BREAK`` is the piece ``("BREAK", -1.0)``.

    >>> parse_attention("a (b:1.5) [c] \\\\(d\\\\)")
    [('a ', 1.0), ('b', 1.5), (' ', 1.0), ('c', 0.9090909090909091), (' (d)', 1.0)]
    """
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _RE_ATTENTION.finditer(text):
        piece = m.group(0)
        weight = m.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(res))
        elif piece == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            try:
                factor = float(weight)
            except ValueError:  # e.g. "(a:1.2.3)": A1111 would raise; keep it literal
                res.append([piece, 1.0])
                continue
            multiply_range(round_brackets.pop(), factor)
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE)
        else:
            for i, part in enumerate(_RE_BREAK.split(piece)):
                if i > 0:
                    res.append([BREAK, -1.0])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, ROUND)
    for pos in square_brackets:
        multiply_range(pos, SQUARE)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return [(str(t), float(w)) for t, w in res]


def is_break(piece: tuple[str, float]) -> bool:
    return piece[0] == BREAK and piece[1] == -1.0


def plain_text(text: str) -> str:
    """The prompt with the syntax removed (weights dropped, BREAK as a comma): for display and
    for families whose text encoders don't take weights."""
    parts = []
    for piece in parse_attention(text):
        parts.append(", " if is_break(piece) else piece[0])
    return re.sub(r"\s+", " ", "".join(parts)).strip()


@dataclass(frozen=True)
class LoraTag:
    """One ``<lora:name:weight>`` tag of a prompt."""

    name: str
    weight: float = 1.0


def extract_loras(prompt: str) -> tuple[str, list[LoraTag]]:
    """Take ``<lora:name[:weight]>`` tags out of ``prompt``: (the prompt without them, the tags
    in order). A weight that isn't a number counts as 1.0 (A1111 does the same)."""
    tags = []
    for m in _RE_LORA.finditer(prompt):
        try:
            weight = float(m.group(3)) if m.group(3) not in (None, "") else 1.0
        except ValueError:
            weight = 1.0
        tags.append(LoraTag(m.group(2).strip(), weight))
    clean = _RE_LORA.sub("", prompt)
    clean = re.sub(r"\s*,(\s*,)+", ",", clean)  # ", ," left where a tag was
    clean = re.sub(r"[ \t]+", " ", clean).strip().strip(",").strip()
    return clean, tags
