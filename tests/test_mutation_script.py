"""benchmarks/mutation.py: each named mutant applies exactly once to the current source (the
mutation runs themselves take minutes and are not part of the suite; see docs/mutation.md)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is not an installed package
from benchmarks.mutation import NAMED, TESTS, Edit, apply_edit  # noqa: E402


@pytest.mark.parametrize("edit", NAMED, ids=[e.name for e in NAMED])
def test_named_mutant_applies_exactly_once(edit):
    source = (ROOT / edit.path).read_text()
    mutated = apply_edit(source, edit)
    assert mutated != source and edit.path in TESTS
    compile(mutated, edit.path, "exec")  # a mutant that does not compile would be a false kill


def test_issue_17_mutants_are_all_there():
    assert {e.name.split("-")[0] for e in NAMED} >= {"1", "2", "3", "4", "5"}


def test_an_edit_that_does_not_apply_is_an_error():
    with pytest.raises(ValueError, match="occurs 0 times"):
        apply_edit("a = 1\n", Edit("x", "agents/actor_critic.py", "b = 2", "b = 3", ""))
    with pytest.raises(ValueError, match="occurs 2 times"):
        apply_edit("a = 1\na = 1\n", Edit("x", "agents/actor_critic.py", "a = 1", "a = 2", ""))
