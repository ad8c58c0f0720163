"""Mutation testing of the training loop (``agents/actor_critic.py``) and the env's step
(``envs/step_core.py``): how many deliberate breaks the relevant tests catch.

Two kinds of mutants, each applied to a temporary copy of the repository (the working tree is never
modified; the copy is the git-tracked and untracked-but-not-ignored files, without byte code):

- ``named``: explicit source edits (old snippet -> new snippet, each asserted to occur exactly once
  in the current source, so this fails loudly when the code changes): the five breaks of
  ``ActorCritic.learn`` of issue 17 and similar ones (a VecEnv's episode ends, the env's same-batch state).
- ``tool``: the mutants of `cosmic-ray <https://github.com/sixty-north/cosmic-ray>`_ (its operators
  with no arguments, as ``cosmic-ray init`` enumerates them with an empty operator configuration),
  applied one at a time with ``cosmic_ray.mutating.mutate_code``; all of them, or a seeded random
  sample of ``--sample N`` per file.

For each mutant the file's tests (``TESTS``) run in a fresh ``python -m pytest -x -q`` in the copy,
with a timeout (``--timeout-factor`` times the unmutated run, at least 60 s): a failing run kills the
mutant, a passing run lets it survive, a run past the timeout is a ``timeout`` (counted as killed
by mutation tools, shown separately here). A tool mutant that only changes type annotations is an
equivalent mutant (both files have ``from __future__ import annotations``): it is counted as such and
not run. The mutation runs are not part of the test suite (they
take minutes); ``tests/test_mutation_script.py`` only checks that the named edits apply.

Needs ``pip install -e .[mutation]`` (cosmic-ray) for ``tool``; ``named`` needs nothing extra.

Run:  python tools/mutation.py named
      python tools/mutation.py tool --sample 40 --seed 0 [--files agents/actor_critic.py]
      python tools/mutation.py tool --list            (count the mutants, run nothing)
      python tools/mutation.py tool --sample 40 --seed 0 --rerun earlier.json   (its survivors only)
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENT = "agents/actor_critic.py"
ENV = "envs/step_core.py"  # the env's reset and step (LearningRateEnv is its N = 1 view)

# the tests run against each file's mutants (the env's slowest checks, a fresh interpreter and
# the torchvision-format readers, are left out: they do not exercise ``step``'s logic)
TESTS = {
    AGENT: ["tests/test_actor_critic_learn.py", "tests/test_actor_critic.py"],  # the fast loop tests first
    ENV: ["tests/test_env.py", "-k", "not fresh_interpreter and not torchvision_tasks_from_tiny_files"],
}


@dataclass(frozen=True)
class Edit:
    name: str
    path: str
    old: str
    new: str
    what: str


NAMED: list[Edit] = [
    # --- the five breaks of issue 17
    Edit("1-swap-next-states", AGENT,
         'infos[i].get("critic_next_obs", last_obs[i]), last_obs[i], terminated[i]',
         'last_obs[i], infos[i].get("critic_next_obs", last_obs[i]), terminated[i]',
         "learn: the critic bootstraps from s_j^{t+1}, the actor uses s_i^{t+1}"),
    Edit("2-td-target-fresh-lstm", AGENT,
         "next_action, _ = actor(critic_next_obs, state)",
         "next_action, _ = actor(critic_next_obs, actor.initial_state(critic_next_obs.shape[0]))",
         "_td_target: pi(s_i^{t+1}) ignores the actor's carried LSTM state"),
    Edit("3-bootstrap-at-reset", AGENT,
         "last_obs[i], terminated[i],",
         "last_obs[i], False,",
         "learn: the step that ends an episode by termination bootstraps (no cut at the boundary)"),
    Edit("4-lstm-state-before-step", AGENT,
         "(next_state[0][:, i:i + 1], next_state[1][:, i:i + 1])",
         "(state[0][:, i:i + 1], state[1][:, i:i + 1])",
         "learn: train_step gets the LSTM state from before s_t instead of after it"),
    Edit("5-noise-10x", AGENT,
         "if explore and self.noise_std > 0:\n            a = a + self.noise_std *",
         "if explore and self.noise_std > 0:\n            a = a + 10 * self.noise_std *",
         "_unit_actions: exploration noise ten times noise_std"),
    # --- similar breaks
    Edit("3b-no-lstm-restart", AGENT,
         "next_state[0][:, i].zero_()  # line 27: w <- w0, and that episode's LSTM restarts\n"
         "                next_state[1][:, i].zero_()",
         "pass",
         "learn: an episode's LSTM state is carried across its boundary"),
    Edit("3c-no-bootstrap-on-truncation", AGENT,
         "[info], [obs], [bool(term)]",
         "[info], [obs], [bool(term or trunc)]",
         "learn: a truncated step (the reset frequency e) does not bootstrap"),
    Edit("4b-carried-state-not-advanced", AGENT,
         "obs, state = episodes.next_obs(new_obs, dones), next_state",
         "obs, state = episodes.next_obs(new_obs, dones), state",
         "learn: the LSTM state carried into step t+1 is the one from before step t"),
    Edit("p3-parallel-bootstrap-at-reset", AGENT,
         'terminated = [bool(dones[i]) and not infos[i].get("TimeLimit.truncated", False)',
         "terminated = [False",
         "learn on a VecEnv: terminated steps bootstrap"),
    Edit("e1-critic-obs-from-next-batch", ENV,
         "critic_obs[0] = control.squash_loss(loss_after)",
         "critic_obs[0] = control.squash_loss(next_obs_loss)",
         "env: info['critic_next_obs'] measured on the next batch x_j instead of x_i"),
]


def apply_edit(source: str, edit: Edit) -> str:
    """``source`` with ``edit`` applied; raises ``ValueError`` unless ``edit.old`` occurs exactly once."""
    count = source.count(edit.old)
    if count != 1:
        raise ValueError(f"mutant {edit.name}: {edit.old!r} occurs {count} times in {edit.path} (expected once)")
    return source.replace(edit.old, edit.new)


# --------------------------------------------------------------------------- the copy and the runs
def copy_repo(dest: Path) -> Path:
    """The git-tracked and untracked-but-not-ignored files of the repository, into ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _child_env(copy: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    return env


def run_tests(copy: Path, tests: list[str], timeout: float | None) -> tuple[str, float, str]:
    """``("passed" | "failed" | "timeout", seconds, last lines of output)``."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_child_env(copy), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    tail = "\n".join(lines[-3:])
    return ("passed" if proc.returncode == 0 else "failed"), time.perf_counter() - start, tail


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line.split(" - ")[0]
    return output.splitlines()[-1] if output else ""


OUTCOME = {"failed": "killed", "passed": "SURVIVED", "timeout": "timeout"}


class Runner:
    """Mutants of one file in one repository copy: baseline run first, the file restored after each."""

    def __init__(self, copy: Path, path: str, timeout_factor: float, tests: list[str] | None = None) -> None:
        self.copy, self.path = copy, path
        self.file = copy / path
        self.original = self.file.read_text()
        self.tests = tests or TESTS[path]
        status, seconds, tail = run_tests(copy, self.tests, None)
        if status != "passed":
            raise SystemExit(f"the unmutated tests of {path} do not pass:\n{tail}")
        self.baseline = seconds
        self.timeout = max(60.0, timeout_factor * seconds)
        print(f"# {path}: tests {' '.join(self.tests)}: baseline {seconds:.1f} s, timeout {self.timeout:.0f} s",
              flush=True)

    def run(self, mutated: str) -> tuple[str, float, str]:
        try:
            self.file.write_text(mutated)
            status, seconds, tail = run_tests(self.copy, self.tests, self.timeout)
        finally:
            self.file.write_text(self.original)
        return OUTCOME[status], seconds, first_failure(tail) if status == "failed" else ""


# --------------------------------------------------------------------------- named mutants
def run_named(args) -> int:
    edits = [e for e in NAMED if not args.only or e.name in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="lrrl-mutants-") as tmp:
        copy = copy_repo(Path(tmp))
        for path in sorted({e.path for e in edits}):
            runner = Runner(copy, path, args.timeout_factor, args.tests)
            for edit in (e for e in edits if e.path == path):
                outcome, seconds, why = runner.run(apply_edit(runner.original, edit))
                results.append({"name": edit.name, "path": path, "outcome": outcome, "seconds": seconds,
                                "first_failure": why, "what": edit.what})
                print(f"{edit.name:36s} {outcome:9s} {seconds:5.1f} s  {why}", flush=True)
    killed = sum(r["outcome"] != "SURVIVED" for r in results)
    print(f"named mutants: {killed}/{len(results)} killed")
    _write_json(args.json, {"kind": "named", "results": results})
    return 0 if killed == len(results) else 1


# --------------------------------------------------------------------------- the tool's mutants
def tool_mutants(path: Path) -> list[tuple[str, int, int, str]]:
    """cosmic-ray's mutants of ``path``: ``(operator name, occurrence, line, description)``, in
    the order of ``cosmic-ray init`` (operators with arguments are not used, as with an empty
    operator configuration)."""
    import cosmic_ray.plugins
    from cosmic_ray.ast import ast_nodes, get_ast_from_path

    module_ast = get_ast_from_path(path)
    out = []
    for name in cosmic_ray.plugins.operator_names():
        operator_class = cosmic_ray.plugins.get_operator(name)
        if operator_class.arguments():
            continue
        operator = operator_class()
        positions = [(node, start) for node in ast_nodes(module_ast)
                     for start, _ in operator.mutation_positions(node)]
        for occurrence, (node, start) in enumerate(positions):
            out.append((name, occurrence, start[0], node.get_code().strip()[:60]))
    return out


def _without_annotations(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
        elif isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    return ast.dump(tree)


def annotation_only(original: str, mutated: str) -> bool:
    """The mutant changes type annotations only: an equivalent mutant in a module with
    ``from __future__ import annotations`` (annotations are never evaluated; neither file reads
    them at run time)."""
    return "from __future__ import annotations" in original and \
        _without_annotations(original) == _without_annotations(mutated)


def run_tool(args) -> int:
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    summary, results = {}, []
    with tempfile.TemporaryDirectory(prefix="lrrl-mutants-") as tmp:
        copy = None if args.list else copy_repo(Path(tmp))
        for path in args.files:
            mutants = tool_mutants(ROOT / path)
            chosen = mutants if not args.sample or args.sample >= len(mutants) else \
                sorted(random.Random(f"{args.seed}:{path}").sample(mutants, args.sample),
                       key=lambda m: (m[2], m[0], m[1]))
            print(f"# {path}: {len(mutants)} cosmic-ray mutants, running {len(chosen)}"
                  f"{' (seeded sample, seed ' + str(args.seed) + ')' if len(chosen) < len(mutants) else ''}",
                  flush=True)
            earlier = {}
            if args.rerun:  # keep the earlier run's kills: added tests cannot revive a killed mutant
                earlier = {(r["operator"], r["occurrence"]): r
                           for r in json.loads(Path(args.rerun).read_text())["results"] if r["path"] == path}
                missing = [m for m in chosen if (m[0], m[1]) not in earlier]
                if missing:
                    raise SystemExit(f"--rerun {args.rerun}: {len(missing)} of the chosen mutants are not in it")
                print(f"# re-running the {sum(r['outcome'] == 'SURVIVED' for r in earlier.values())} survivors of "
                      f"{args.rerun}; the others keep its outcome", flush=True)
            if args.list:
                summary[path] = {"mutants": len(mutants)}
                continue
            runner = Runner(copy, path, args.timeout_factor, args.tests)
            counts = {"killed": 0, "SURVIVED": 0, "timeout": 0, "equivalent": 0, "incompetent": 0}
            for name, occurrence, line, code in chosen:
                mutated = mutate_code(runner.original, get_operator(name)(), occurrence)
                before = earlier.get((name, occurrence))
                if before is not None and before["outcome"] != "SURVIVED":
                    why = before["first_failure"]
                    outcome, seconds = before["outcome"], 0.0
                    why = why if why.startswith("(earlier run)") else "(earlier run) " + why
                elif mutated is None or mutated == runner.original:
                    outcome, seconds, why = "incompetent", 0.0, "no change"
                elif annotation_only(runner.original, mutated):
                    outcome, seconds, why = "equivalent", 0.0, "annotation only"
                elif before is not None and args.keep_survivors:
                    outcome, seconds, why = before["outcome"], 0.0, "(earlier run)"
                else:
                    outcome, seconds, why = runner.run(mutated)
                counts[outcome] += 1
                results.append({"path": path, "operator": name, "occurrence": occurrence, "line": line,
                                "code": code, "outcome": outcome, "seconds": seconds, "first_failure": why})
                print(f"{path}:{line:<4d} {name:60s} #{occurrence:<3d} {outcome:9s} {seconds:5.1f} s  {code!r}",
                      flush=True)
            ran = counts["killed"] + counts["SURVIVED"] + counts["timeout"]
            summary[path] = {"mutants": len(mutants), "sampled": len(chosen), **counts,
                             "survival_rate": counts["SURVIVED"] / ran if ran else float("nan"),
                             "survival_rate_with_equivalent": (counts["SURVIVED"] + counts["equivalent"])
                             / (ran + counts["equivalent"]) if ran + counts["equivalent"] else float("nan"),
                             "tests": runner.tests}
    for path, s in summary.items():
        if "sampled" in s:
            print(f"{path}: {s['sampled']} of {s['mutants']} mutants: killed {s['killed']}, "
                  f"survived {s['SURVIVED']}, timeout {s['timeout']}, equivalent (annotation only, not run) "
                  f"{s['equivalent']}, incompetent {s['incompetent']}; survival rate {100 * s['survival_rate']:.0f}% "
                  f"of the non-equivalent ({100 * s['survival_rate_with_equivalent']:.0f}% counting the "
                  f"annotation-only ones as survivors)")
        else:
            print(f"{path}: {s['mutants']} mutants")
    _write_json(args.json, {"kind": "tool", "tool": "cosmic-ray", "seed": args.seed, "sample": args.sample,
                            "summary": summary, "results": results})
    return 0


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    named = sub.add_parser("named", help="the explicit mutants (issue 17's five and similar ones)")
    named.add_argument("--only", nargs="*", help="names of the mutants to run (default: all)")
    tool = sub.add_parser("tool", help="cosmic-ray's mutants")
    tool.add_argument("--files", nargs="+", default=[AGENT, ENV], choices=[AGENT, ENV])
    tool.add_argument("--sample", type=int, default=0, help="a seeded random sample of N mutants per file (0: all)")
    tool.add_argument("--seed", type=int, default=0)
    tool.add_argument("--list", action="store_true", help="count the mutants only")
    tool.add_argument("--rerun", help="the --json of an earlier run with the same --seed/--sample: run its "
                                      "survivors only, keep its other outcomes")
    tool.add_argument("--keep-survivors", action="store_true",
                      help="with --rerun: re-classify only (annotation-only survivors as equivalent), run nothing")
    for p in (named, tool):
        p.add_argument("--tests", nargs="+", help="pytest arguments instead of the file's TESTS")
        p.add_argument("--timeout-factor", type=float, default=3.0)
        p.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    return run_named(args) if args.kind == "named" else run_tool(args)


if __name__ == "__main__":
    sys.exit(main())
