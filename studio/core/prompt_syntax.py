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
mean-restoring normalisation, see ``studio.engine.diffusion.sd.prompts``).

Extra networks (A1111 ``modules/extra_networks.py``, ``re_extra_net = <(\\w+):([^>]+)>``):
``<lora:name>`` or ``<lora:name:weight>`` (also ``lyco``) are taken out of the text before it
is parsed.

Prompt editing and alternation (A1111 ``prompt_parser.get_learned_conditioning_prompt_schedules``,
:func:`prompt_schedule`): ``[from:to:when]``, ``[to:when]``, ``[from::when]`` (``when`` a step
number, or with a "." a fraction of the steps) and ``[a|b|...]`` (one per step, in turn) make a
list of (last step, text) pairs. Composable prompts (A1111 ``get_multicond_prompt_list``,
:func:`split_and`): ``a cat :1.2 AND a dog :0.8`` is sub-prompts with weights (Liu et al. 2022).
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


# -- prompt editing / alternation (A1111 prompt_parser.py) ----------------------------------------
#
# A1111 parses with this lark grammar (``schedule_parser``) and Studio has no lark, so the
# parser below is a hand-written recursive descent for the same language. It gives A1111's
# results on A1111's doctests and on randomly generated prompts (compared with A1111's
# function run under lark), except where lark's Earley parser resolves an ambiguity between a
# construct and stray brackets around it the other way (runs of unbalanced "[", ":" and ")"
# next to a ``[..:N]``: this parser takes the construct):
#
#   !start: (prompt | /[][():]/+)*
#   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
#   !emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
#   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
#   alternate: "[" prompt ("|" [prompt])+ "]"
#   WHITESPACE: /\s+/
#   plain: /([^\\\[\]():|]|\\.)+/
#   %import common.SIGNED_NUMBER -> NUMBER
#
# Emphasis, plain text, whitespace and stray brackets come out as written; only ``scheduled``
# and ``alternate`` change the text. A "|" outside an alternation, or a lone trailing
# backslash, is no sentence of the grammar: A1111 then keeps the whole prompt as it is.

_RE_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))\s*\]")
_SPECIAL = set("\\[]():|")


class _NoParse(Exception):
    pass


@dataclass
class _Scheduled:
    before: list | None
    after: list
    number: str
    when: int = 0


@dataclass
class _Alternate:
    options: list


def _plain(text: str, i: int) -> int:
    """End of the run of plain characters (and backslash escapes) from ``i``."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 < n and text[i + 1] != "\n":  # lark's "." does not match a newline
                i += 2
                continue
            return i
        if c in _SPECIAL:
            return i
        i += 1
    return i


def _prompt(text: str, i: int) -> tuple[list, int]:
    """``prompt``: as many items as there are from ``i``; stops at a character that ends it."""
    items: list = []
    while i < len(text):
        j = _plain(text, i)
        if j > i:
            items.append(text[i:j])
            i = j
            continue
        if text[i] in "[(":
            node = _bracket(text, i)
            if node is None:
                break
            items.append(node[0])
            i = node[1]
            continue
        break
    return items, i


def _bracket(text: str, i: int) -> tuple[object, int] | None:
    """``emphasized`` / ``scheduled`` / ``alternate`` starting at ``text[i]`` ("[" or "("), or
    None when none of them parses there."""
    n = len(text)
    first, j = _prompt(text, i + 1)
    c = text[j] if j < n else ""
    if text[i] == "(":
        if c == ")":
            return ["(", first, ")"], j + 1
        if c == ":":
            second, k = _prompt(text, j + 1)
            if k < n and text[k] == ")":
                return ["(", first, ":", second, ")"], k + 1
        return None
    if c == "]":
        return ["[", first, "]"], j + 1
    if c == "|":
        options = [first]
        while j < n and text[j] == "|":
            part, j = _prompt(text, j + 1)
            options.append(part)
        if j < n and text[j] == "]":
            return _Alternate(options), j + 1
        return None
    if c == ":":
        m = _RE_NUMBER.match(text, j + 1)
        if m:
            return _Scheduled(None, first, m.group(1)), m.end()
        second, k = _prompt(text, j + 1)
        if k < n and text[k] == ":":
            m = _RE_NUMBER.match(text, k + 1)
            if m:
                return _Scheduled(first, second, m.group(1)), m.end()
    return None


def _parse_schedule(text: str) -> list:
    """``start``: the tree of ``text``; raises _NoParse where lark would fail."""
    items: list = []
    i = 0
    while i < len(text):
        j = _plain(text, i)
        if j > i:
            items.append(text[i:j])
            i = j
            continue
        c = text[i]
        if c in "[(":
            node = _bracket(text, i)
            if node is not None:
                items.append(node[0])
                i = node[1]
                continue
        if c in "[]():":  # /[][():]/+: a stray bracket or colon is text
            items.append(c)
            i += 1
            continue
        raise _NoParse  # "|" outside an alternation, a lone backslash
    return items


def _walk(tree, visit) -> None:
    if isinstance(tree, list):
        for child in tree:
            _walk(child, visit)
    elif isinstance(tree, _Scheduled):
        visit(tree)
        _walk(tree.before, visit)
        _walk(tree.after, visit)
    elif isinstance(tree, _Alternate):
        visit(tree)
        for option in tree.options:
            _walk(option, visit)


def _render(tree, step: int) -> str:
    if tree is None:
        return ""
    if isinstance(tree, str):
        return tree
    if isinstance(tree, list):
        return "".join(_render(child, step) for child in tree)
    if isinstance(tree, _Scheduled):
        return _render(tree.before, step) if step <= tree.when else _render(tree.after, step)
    return _render(tree.options[(step - 1) % len(tree.options)], step)


def has_schedule(prompt: str) -> bool:
    """Whether ``prompt`` has prompt editing or alternation that A1111 would apply."""
    try:
        tree = _parse_schedule(prompt)
    except _NoParse:
        return False
    found: list = []
    _walk(tree, found.append)
    return bool(found)


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """A1111's ``get_learned_conditioning_prompt_schedules([prompt], steps)[0]`` (no hires
    pass, ``use_old_scheduling`` off): [(end_at_step, text)], in order; step s (1-based, as
    A1111 numbers the schedule) has the text of the first pair with s <= end_at_step.

    ``[a:b:when]`` is "a" up to step ``when`` and "b" after; ``when`` with a "." is a fraction
    of ``steps`` (int(when * steps)), without one a step number; either is capped at
    ``steps``; ``[a|b]`` is a at odd steps, b at even ones.

    >>> prompt_schedule("a [b:c:0.5] d", 10)
    [(5, 'a b d'), (10, 'a c d')]
    """
    try:
        tree = _parse_schedule(prompt)
    except _NoParse:
        return [(steps, prompt)]
    ends = {steps}

    def collect(node) -> None:
        if isinstance(node, _Scheduled):
            v = float(node.number)
            v = v * steps if "." in node.number else v
            node.when = min(steps, int(v))
            if node.when >= 1:
                ends.add(node.when)
        else:
            ends.update(range(1, steps + 1))

    _walk(tree, collect)
    return [(t, _render(tree, t)) for t in sorted(ends)]


_RE_AND = re.compile(r"\bAND\b")
_RE_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """A1111's ``get_multicond_prompt_list`` for one prompt: the sub-prompts between ``AND``
    (a word of its own, upper case), each with the weight of a trailing ``:number`` (1.0
    without; the number and the whitespace around it are taken off the text).

    >>> split_and("a cat :1.2 AND a dog :0.8")
    [('a cat', 1.2), (' a dog', 0.8)]
    """
    out = []
    for sub in _RE_AND.split(prompt):
        m = _RE_WEIGHT.search(sub)
        text, weight = m.groups() if m is not None else (sub, None)
        out.append((text, float(weight) if weight is not None else 1.0))
    return out
