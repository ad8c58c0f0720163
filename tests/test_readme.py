"""README.md is a README: short, with a table of contents whose links resolve, links to files that
exist, no history in its headings, and every command in it run (by this file at a tiny budget, by
another test named here, or by .ci/run)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HEADINGS = re.findall(r"^(#{1,4}) (.+)$", re.sub(r"```.*?```", "", README, flags=re.S), re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_and_has_a_table_of_contents():
    assert len(README.splitlines()) <= 350
    assert "## Contents" in README
    anchors = {_anchor(text) for _, text in HEADINGS}
    toc = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    targets = re.findall(r"\]\(#([^)]+)\)", toc)
    assert len(targets) >= 6
    for target in targets:
        assert target in anchors, f"the table of contents links to #{target}, which is no heading"


def test_no_issue_numbers_or_commit_hashes_in_headings():
    for _, text in HEADINGS:
        assert not re.search(r"\bissues? \d+", text, re.I), text
        assert not re.search(r"\b[0-9a-f]{7,40}\b", text), text


def test_relative_links_point_at_files_that_exist():
    for target in re.findall(r"\]\((?!https?:|#)([^)#\s]+)", README):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def commands() -> list[list[str]]:
    """Every shell command of the README's ``bash`` blocks, as argument lists (comments dropped,
    ``&&`` chains split)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.extend(shlex.split(part) for part in line.split("&&"))
    return found


def test_the_scheduler_example_runs_as_written(tmp_path, monkeypatch):
    """The README's scheduler example, executed exactly (a shipped controller, no training), without
    a warning; the scheduler then holds the rate it set."""
    import warnings

    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "ControllerScheduler" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    scheduler, optimizer = namespace["scheduler"], namespace["optimizer"]
    assert scheduler.last_epoch == 500
    assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0] > 0
