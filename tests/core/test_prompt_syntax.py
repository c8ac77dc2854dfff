"""A1111 prompt syntax (studio.core.prompt_syntax): the doctest cases of A1111's
modules/prompt_parser.py parse_prompt_attention, BREAK, escapes, and <lora:...> tags."""

from __future__ import annotations

import pytest

from studio.core.prompt_syntax import (
    LoraTag,
    extract_loras,
    is_break,
    parse_attention,
    plain_text,
)

# (input, expected) from the docstring of A1111's parse_prompt_attention.
A1111_CASES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize("text, expected", A1111_CASES)
def test_a1111_doctests(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_weights_square_brackets_escapes_and_break():
    assert parse_attention("(word:1.0)") == parse_attention("word") == [("word", 1.0)]
    assert parse_attention("[x]") == [("x", pytest.approx(1 / 1.1))]
    assert parse_attention("(a (b:2))") == [("a ", pytest.approx(1.1)), ("b", pytest.approx(2.2))]
    assert parse_attention("a) b]") == [("a) b]", 1.0)]  # stray closers are text
    assert parse_attention("a\\\\b") == [("a\\b", 1.0)]
    pieces = parse_attention("cat BREAK dog")
    assert pieces == [("cat", 1.0), ("BREAK", -1.0), ("dog", 1.0)] and is_break(pieces[1])
    assert parse_attention("BREAKfast") == [("BREAKfast", 1.0)]  # only the whole word
    assert parse_attention("") == [("", 1.0)]
    assert plain_text("a (b:1.5) BREAK [c]") == "a b, c"


def test_lora_tags_are_extracted_and_stripped():
    clean, tags = extract_loras("a cat, <lora:detail:0.6>, <lora:style>, <lyco:x:bad> outside")
    assert clean == "a cat, outside"
    assert tags == [LoraTag("detail", 0.6), LoraTag("style", 1.0), LoraTag("x", 1.0)]
    assert extract_loras("no tags (here:1.2)") == ("no tags (here:1.2)", [])


def test_unclosed_square_brackets_weaken_the_rest():
    assert parse_attention("a [b") == [("a ", 1.0), ("b", pytest.approx(1 / 1.1))]
    assert parse_attention("a [b [c") == [
        ("a ", 1.0),
        ("b ", pytest.approx(1 / 1.1)),
        ("c", pytest.approx(1 / 1.1**2)),
    ]


def test_equal_weights_merge_after_a_different_one():
    assert parse_attention("a (b)(c)") == [("a ", 1.0), ("bc", pytest.approx(1.1))]


def test_a_weight_that_is_no_number_stays_text():
    # A1111 fails on "(a:1.2.3)"; Studio keeps ":1.2.3)" as text, so the "(" is unclosed and
    # weights the rest of the prompt like any unclosed "("
    assert parse_attention("x (a:1.2.3) b") == [("x ", 1.0), ("a:1.2.3) b", pytest.approx(1.1))]


def test_only_an_unweighted_break_ends_a_chunk():
    # A1111's tokenizer starts a new chunk only for ("BREAK", -1): a BREAK inside "()" gets
    # weight -1.1 and is read as a word; a negative weight on other text is no BREAK either
    pieces = parse_attention("(a BREAK b)")
    assert pieces == [
        ("a", pytest.approx(1.1)),
        ("BREAK", pytest.approx(-1.1)),
        ("b", pytest.approx(1.1)),
    ]
    assert not is_break(pieces[1])
    assert parse_attention("(x:-1)") == [("x", -1.0)] and not is_break(("x", -1.0))
    assert plain_text("(x:-1)") == "x"


def test_plain_text_collapses_whitespace():
    assert plain_text("a  (b)\n\t c") == "a b c"


def test_tags_at_the_ends_leave_no_stray_commas():
    clean, tags = extract_loras("<lora:a:0.5>, a cat, <lora:b>")
    assert clean == "a cat"
    assert tags == [LoraTag("a", 0.5), LoraTag("b", 1.0)]
    assert extract_loras("a photo of Malcolm X, <lora:x:1>") == (
        "a photo of Malcolm X",
        [LoraTag("x", 1.0)],
    )
