"""Comments and docstrings say what the code does and why, never how it came to be: no
tracker numbers ("issue 13"), no history ("kept for callers written before ...")."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("studio", "tests", "benchmarks", "installer", "tools")
HISTORY = re.compile(r"\bissues? #?\d+|\bkept for callers\b|\bas it used to\b", re.IGNORECASE)


def _texts(path: Path):
    """(line, text) of every comment and every string literal (docstrings included)."""
    source = path.read_text(encoding="utf-8")
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            yield tok.start[0], tok.string


def test_no_comment_tells_the_history_of_the_code():
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve() or "data" in path.relative_to(ROOT).parts[:2]:
                continue
            for line, text in _texts(path):
                if HISTORY.search(text):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {HISTORY.search(text)[0]}")
    assert not found, "history in comments:\n" + "\n".join(found)
