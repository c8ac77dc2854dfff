"""Mutation testing's bookkeeping: every module whose bugs a user would not notice at once has
a target for tools/mutation.sh, the targets name files that exist, and docs/testing.md
records for each target a score of at least 90 % caught, with every mutant left listed
as equivalent and its reason."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tools" / "mutation" / "targets"
DOC = ROOT / "docs" / "testing.md"

# The modules whose bugs a user would not notice at once: prompts and prompt syntax, samplers and schedules, masks
# and paste-back, downloads and verification, atomic saves and autosave, the memory planner,
# metadata.
GUARDED = {
    "studio/core/prompt_syntax.py",
    "studio/engine/diffusion/sd/prompts.py",
    "studio/core/sampler_names.py",
    "studio/engine/diffusion/sd/schedulers.py",
    "studio/core/masks.py",
    "studio/engine/models/download.py",
    "studio/core/atomic.py",
    "studio/core/recovery.py",
    "studio/engine/diffusion/shared/memory.py",
    "studio/core/metadata.py",
}


def _targets() -> dict[str, dict]:
    return {p.stem: tomllib.loads(p.read_text("utf-8")) for p in sorted(TARGETS.glob("*.toml"))}


def test_every_guarded_module_is_a_mutation_target():
    mutated = {m for t in _targets().values() for m in t["modules"]}
    assert GUARDED <= mutated, f"no mutation target for {sorted(GUARDED - mutated)}"


@pytest.mark.parametrize("name", sorted(_targets()))
def test_target_names_existing_modules_and_tests(name):
    target = _targets()[name]
    assert target["modules"] and target["tests"]
    for rel in target["modules"] + target["tests"]:
        assert (ROOT / rel).is_file(), f"{name}.toml: {rel} does not exist"
    for rel in target["modules"]:
        assert rel.startswith("studio/") and rel.endswith(".py")


def _rows() -> dict[str, list[int]]:
    """docs/testing.md's score table: {target: [mutants, killed, timeout, survived, no tests]}."""
    rows = {}
    for line in DOC.read_text("utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[2].isdigit():
            rows[cells[0]] = [int(c) for c in cells[2:7]]
    return rows


def test_testing_doc_scores_every_target_at_90_percent():
    rows = _rows()
    assert set(rows) == set(_targets()), "docs/testing.md's table and the targets differ"
    for name, (mutants, killed, timeout, survived, no_tests) in rows.items():
        assert killed + timeout + survived + no_tests == mutants, f"{name}: the row does not add up"
        assert (killed + timeout) / mutants >= 0.90, f"{name}: under 90 % caught"


def test_testing_doc_lists_every_mutant_left():
    """Each mutant left is listed: as equivalent with its reason, or, until someone has looked
    at it, under "Not yet classified" (a target with such a list is not done)."""
    text = DOC.read_text("utf-8")
    for name, (_, _, _, survived, no_tests) in _rows().items():
        section = re.search(rf"^## {re.escape(name)} .*?(?=^## |\Z)", text, re.M | re.S)
        assert section, f"docs/testing.md has no section for {name}"
        reasoned = re.findall(r"^- `([^`]+)`: .+ — .+$", section.group(0), re.M)
        pending = re.findall(r"^- `([^`]+)` \(\w[\w ]*\)$", section.group(0), re.M)
        listed = reasoned + pending
        assert len(listed) == len(set(listed)) == survived + no_tests, (
            f"{name}: {survived + no_tests} mutants left, {len(listed)} listed"
        )
        if pending:
            assert "Not yet classified" in section.group(0), name


def test_mutation_tool_writes_the_target_into_a_scratch_copy(tmp_path):
    sys.path.insert(0, str(ROOT / "tools" / "mutation"))
    try:
        import run
    finally:
        sys.path.pop(0)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    target = run.load_target("masks")
    run.configure(tmp_path, target)
    config = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert config["only_mutate"] == target["modules"]
    assert config["pytest_add_cli_args_test_selection"] == target["tests"]
    with pytest.raises(SystemExit, match="no mutation target"):
        run.load_target("no-such-target")
