"""tools/mutation.py: each named mutant applies exactly once to the current source (the
mutation runs themselves take minutes and are not part of the suite; see docs/mutation.md)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tools/ is not an installed package
from tools.mutation import NAMED, TESTS, Edit, apply_edit  # noqa: E402


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


def test_annotation_only_mutants_are_told_apart():
    from tools.mutation import annotation_only

    src = ("from __future__ import annotations\n\n"
           "def f(x: int | None = 1) -> int | str:\n    y: int | None = x\n    return x | 2\n")
    assert annotation_only(src, src.replace("x: int | None", "x: int - None"))
    assert annotation_only(src, src.replace("-> int | str", "-> int // str"))
    assert annotation_only(src, src.replace("y: int | None", "y: int ^ None"))
    assert not annotation_only(src, src.replace("x | 2", "x - 2"))
    assert not annotation_only(src, src.replace("= 1)", "= 2)"))  # a default value is not an annotation
    plain = src.replace("from __future__ import annotations\n", "")  # annotations evaluated: not equivalent
    assert not annotation_only(plain, plain.replace("int | str", "int - str"))
