"""The project's import graph: no cycles (also none hidden by imports inside functions), and
every module of ``envs/`` and ``agents/`` imports on its own.

(a) Every project module (``envs/``, ``agents/``, ``benchmarks/``, ``lrrl/`` if present,
``train_controller.py``, ``evaluate.py``) is parsed with ``ast``; each ``import``/``from ... import``
anywhere in it (module level, functions, methods) that names a project module is an edge. A
package's ``__init__`` is a node of its own: ``from agents import X`` is an edge to ``agents``
(and to ``agents.X`` if that is a submodule); ``import agents.io`` is an edge to ``agents.io`` only.
(b) Each module of ``envs/`` and ``agents/`` is imported with none of the project's modules loaded
before it (one interpreter; the project's entries of ``sys.modules`` are dropped between modules,
third-party ones kept, so it is fast).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agents", "lrrl", "benchmarks", "tools")
SCRIPTS = ("train_controller.py", "evaluate.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            for path in sorted((ROOT / package).rglob("*.py")):
                modules[_module_name(path)] = path
    for script in SCRIPTS:
        if (ROOT / script).is_file():
            modules[_module_name(ROOT / script)] = ROOT / script
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):  # every import, also inside functions and methods
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                          else node.module)
                targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != module:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` (iterative depth-first search)."""
    white, grey, black = 0, 1, 2
    colour = {node: white for node in graph}
    for root in sorted(graph):
        if colour[root] != white:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = grey
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = black
                stack.pop()
                path.pop()
            elif colour[child] == grey:
                return path[path.index(child):] + [child]
            elif colour[child] == white:
                colour[child] = grey
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # the training command line imports its library only inside functions (fast --help): they count
    assert "lrrl.training" in graph["lrrl.train_cli"]
    assert graph["train_controller"] == {"lrrl.train_cli"}
    assert "agents.callbacks" in graph["lrrl.training"]
    assert "agents.io" in graph["agents.checkpoint"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_project_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_agents_io_imports_nothing_from_the_project():
    assert import_graph()["agents.io"] == set()


_IMPORT_EACH = r"""
import importlib, json, sys, traceback, warnings
warnings.simplefilter("ignore")
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("envs", "agents")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""


def test_each_envs_and_agents_module_imports_alone():
    names = sorted(m for m in project_modules() if m.split(".")[0] in ("envs", "agents"))
    assert "agents.callbacks" in names and "envs.learning_rate_env" in names
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{name}:\n{tb}" for name, tb in failures.items())
