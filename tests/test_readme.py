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


# every command of the README, and who runs it
_BY_CI = {"python3", ".", "pip"}                 # .ci/run: the venv and the install step, as written
_TRAIN_TINY = {  # appended to each training command: the same command at a tiny budget (last flag wins)
    "policy-search": ["--steps", "8", "--episode-length", "10", "--population", "4", "--episodes-per-candidate", "1",
                      "--eval-seed", "500"],
    "actor-critic": ["--steps", "40", "--episode-length", "40"],
    "sb3": ["--steps", "45", "--episode-length", "40", "--learning-starts", "40", "--batch-size", "16"],
    "resume": ["--steps", "16"],
}
_EVALUATE_TINY = {"task": ["--updates", "20", "--seeds", "1", "--episodes", "0"],
                  "suite": ["--instances", "1", "--families", "attention-tokens", "--baselines", "sgd"]}


def _words(line: str) -> list[str] | None:
    try:
        return shlex.split(line)
    except ValueError:  # a line of a here-document, not a command
        return None


def _tiny(argv: list[str]) -> list[str]:
    """The README command ``argv`` (after ``python SCRIPT``) at a tiny budget."""
    if argv[1] == "evaluate.py":
        return argv[2:] + _EVALUATE_TINY["suite" if "--suite" in argv else "task"]
    agent = argv[argv.index("--agent") + 1] if "--agent" in argv else None
    kind = ("resume" if "--resume" in argv else "sb3" if agent in ("td3", "ddpg")
            else "actor-critic" if agent == "actor-critic" or "paper" in argv else "policy-search")
    common = ["--no-progress"] + ([] if kind == "resume" else ["--checkpoint-every", "0"])
    return argv[2:] + _TRAIN_TINY[kind] + common


def test_every_readme_command_is_run(tmp_path, monkeypatch):
    """Each ``python train_controller.py`` / ``python evaluate.py`` command of the README runs, in the
    README's order and folder layout, at a tiny budget; every other command is run by .ci/run (the
    install step, the tests) or by tests/test_rl_zoo.py (rl-zoo3)."""
    import evaluate
    import train_controller

    scripts = {"train_controller.py": train_controller.main, "evaluate.py": evaluate.main}
    zoo_test = (ROOT / "tests" / "test_rl_zoo.py").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    monkeypatch.chdir(tmp_path)
    ran = 0
    for argv in commands():
        if argv[:2] == ["python", "-m"] and argv[2] == "pytest":
            assert "python -m pytest -q\n" in ci
        elif argv[:2] == ["python", "-m"] and argv[2].startswith("rl_zoo3."):
            assert f'"rl_zoo3.{{module}}"' in zoo_test and argv[2].split(".")[1] in zoo_test
            assert argv[2] == "rl_zoo3.enjoy" or "lrrl.hyperparams.td3" in argv
            assert '"lrrl.hyperparams.td3"' in zoo_test and 'package="lrrl"' in zoo_test
        elif argv[0] in _BY_CI:
            assert argv[0] != "pip" or argv in [_words(line) for line in ci.splitlines()], argv
        else:
            assert argv[0] == "python" and argv[1] in scripts, f"no test runs the README command {argv}"
            assert scripts[argv[1]](_tiny(argv)) == 0, argv
            ran += 1
    assert ran >= 8
    assert (tmp_path / "runs" / "mine" / "controller.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "five").iterdir()) == [f"seed-{k}" for k in range(5)]
