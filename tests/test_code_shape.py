"""The shape of the library's code: no function body longer than 80 lines (its docstring not
counted) in envs/, agents/ and lrrl/, measured with ``ast``."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agents", "lrrl")
MAX_BODY_LINES = 80


def function_lengths() -> dict[str, int]:
    """``module:qualified.name`` -> lines from the first statement after the docstring to the end."""
    lengths = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            stack = [(tree, "")]
            while stack:
                node, prefix = stack.pop()
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        name = f"{prefix}{child.name}"
                        stack.append((child, name + "."))
                        if isinstance(child, ast.ClassDef):
                            continue
                        body = child.body
                        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                                and isinstance(body[0].value.value, str) and len(body) > 1):
                            body = body[1:]
                        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                        lengths[f"{module}:{name}"] = child.end_lineno - body[0].lineno + 1
    return lengths


def test_no_function_body_is_longer_than_80_lines():
    lengths = function_lengths()
    assert lengths, "no functions found"
    long = {name: n for name, n in lengths.items() if n > MAX_BODY_LINES}
    assert not long, f"function bodies over {MAX_BODY_LINES} lines: {sorted(long.items(), key=lambda x: -x[1])}"


if __name__ == "__main__":  # the longest ones, for a look
    for name, n in sorted(function_lengths().items(), key=lambda x: -x[1])[:10]:
        print(n, name)
