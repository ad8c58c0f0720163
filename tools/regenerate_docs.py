"""Regenerate docs/results-*.md, the results tables of README.md and docs/results.md, and the
figures from recorded evaluation results, so that every number in them comes from one recorded
run of the current code.

Recorded results live in ``docs/recorded/NAME/results.json.gz``: evaluate.py's ``results.json``
(summary rows, grids, notes, the command that produced it, and the runs of the reported rows
for the figures). Record a finished sweep, then regenerate:

    python evaluate.py ... --out results/eval-digits            # the README's command
    python tools/regenerate_docs.py --record results/eval-digits digits
    python tools/regenerate_docs.py                        # docs/results-*.md, the tables of the pages
    python tools/regenerate_docs.py --figures              # ... and docs/figures/NAME_*.png
    python tools/regenerate_docs.py --check                # exit 1 if anything is stale

In the pages that show results (``PAGES``: README.md and docs/results.md) each generated table sits
between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``; everything between the
markers is replaced.

A reported setting is marked ``†`` (at the edge of stability) when its own seeds, or those of
the next larger setting of its grid, have mixed outcomes: some fail (diverge, or end at 100 times
the best seed's loss or more) while others train. There, whether a seed trains or collapses flips
with tiny floating-point differences, so the number (and a grid pick next to it) can differ on
another machine (docs/reproducibility.md). The recording keeps every run's final loss for this.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECORDED = Path("docs/recorded")
#: the pages whose generated tables are replaced (those that exist)
PAGES = (Path("README.md"), Path("docs/results.md"))
BEGIN = "<!-- generated: {name} -->"
END = "<!-- end generated: {name} -->"
BLOCK = re.compile(r"<!-- generated: (?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- end generated: (?P=name) -->",
                   re.S)


# --------------------------------------------------------------------------- recorded files
def load_recorded(directory: Path) -> dict:
    """``directory/results.json.gz`` (or ``results.json``) -> the results dict."""
    gz, plain = directory / "results.json.gz", directory / "results.json"
    if gz.is_file():
        with gzip.open(gz, "rt") as f:
            return json.load(f)
    if plain.is_file():
        return json.loads(plain.read_text())
    raise FileNotFoundError(f"no results.json(.gz) in {directory}")


def record(results_dir: Path, name: str, root: Path = ROOT) -> Path:
    """Copy evaluate.py's ``results_dir/results.json`` into ``docs/recorded/NAME/results.json.gz``,
    keeping only the runs of the reported rows (the grid searches keep their means)."""
    results = json.loads((results_dir / "results.json").read_text())
    keep = {k for row in results["summary"] for k in row["keys"]}
    runs = results.get("runs", {})
    # every run's final loss (the grid searches' seeds too), for the stability flags
    results["finals"] = {k: {"family": r["spec"]["family"], "param": r["spec"]["param"], "seed": r["spec"]["seed"],
                             "status": r["status"], "train_loss": (r.get("final") or {}).get("train_loss")}
                         for k, r in runs.items()}
    results["runs"] = {k: v for k, v in runs.items() if k in keep}
    target = root / RECORDED / name / "results.json.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(target, "wb", mtime=0) as f:  # mtime 0: the same results, the same bytes
        f.write(json.dumps(results, sort_keys=True).encode())
    return target


# --------------------------------------------------------------------------- rendering
def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _pm(m, s, pct: bool = False) -> str:
    if m is None or not math.isfinite(m):
        return "—"
    if pct:
        return f"{100 * m:.1f} ± {100 * s:.1f}"
    return f"{m:.2e} ± {s:.1e}"


def _param(row: dict) -> str:
    p = row.get("param")
    if p is None:
        return ""
    if isinstance(p, list):
        return "(" + ", ".join(_fmt(v) for v in p) + ")"
    return _fmt(p)


FAIL_FACTOR = 100.0  # a seed ending at this many times the median of its setting's seeds failed


def _seed_finals(results: dict, family: str, param) -> list[float]:
    """Final train losses of one setting over its seeds (``inf`` for a diverged/failed seed)."""
    out = []
    for r in (results.get("finals") or {}).values():
        if r["family"] == family and _same(r["param"], param):
            ok = r["status"] == "ok" and r["train_loss"] is not None
            out.append(float(r["train_loss"]) if ok else math.inf)
    return out


def _same(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return list(a or []) == list(b or [])
    return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)), 1e-300)


def _mixed(values: list[float]) -> bool:
    """Some seeds fail (diverge, or end at FAIL_FACTOR times the best seed's loss or more) while
    others train: the setting is at the edge of stability."""
    finite = [v for v in values if math.isfinite(v)]
    if len(values) < 2 or not finite:
        return False
    best = min(finite)
    failed = [v for v in values if not math.isfinite(v) or (best > 0 and v >= FAIL_FACTOR * best)]
    return 0 < len(failed) < len(values)


def edge_of_stability(row: dict, results: dict) -> str | None:
    """Why a reported setting is at the edge of stability, or None: its own seeds, or the seeds
    of the next larger setting of its grid, have mixed outcomes (some fail, some train)."""
    keys = row.get("keys") or []
    finals = results.get("finals") or {}
    if not keys or keys[0] not in finals:
        return None
    family = finals[keys[0]]["family"]
    param = row.get("param")
    if _mixed(_seed_finals(results, family, param)):
        return "its own seeds: some fail, some train"
    if isinstance(param, (int, float)):
        larger = sorted({float(r["param"]) for r in finals.values() if r["family"] == family
                         and isinstance(r["param"], (int, float)) and float(r["param"]) > float(param) * (1 + 1e-9)})
        if larger and _mixed(_seed_finals(results, family, larger[0])):
            return f"the next setting {_fmt(larger[0])}: some seeds fail, some train"
    return None


def summary_table(results: dict) -> str:
    """The README table of one recorded evaluation."""
    classification = results.get("classification", True)
    head = ["method", "tuning", "final train loss", "final test loss"] + (["test acc. %"] if classification else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    edges = []
    for row in results["summary"]:
        tuning = row["protocol"]
        if _param(row):
            tuning += f": {row['param_name'] + ' ' if row['param_name'] not in ('lr', '') else ''}{_param(row)}"
        edge = edge_of_stability(row, results)
        if edge:
            tuning += " †"
            edges.append(f"{row['method']} ({row['protocol']}) {_param(row)}: {edge}")
        bad = row["diverged"] + row["errors"]
        train = _pm(row["train_loss_mean"], row["train_loss_std"])
        if bad:
            train = f"diverged on {bad}/{row['seeds']}" + (f"; others {train}" if bad < row["seeds"] else "")
        cells = [row["method"], tuning, train, _pm(row["test_loss_mean"], row["test_loss_std"])]
        if classification:
            cells.append(_pm(row["test_accuracy_mean"], row["test_accuracy_std"], pct=True))
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if edges:
        text += ("\n\n† at the edge of stability (" + "; ".join(edges) + "): whether a seed trains or "
                 "collapses there flips with the CPU's floating-point kernels, so this number (and a grid "
                 "pick next to it) can differ on another machine; see docs/reproducibility.md.")
    return text


def readme_block(name: str, results: dict) -> str:
    from lrrl.report import updates_per_run

    seeds = results["seeds"]
    return (f"Generated by `python tools/regenerate_docs.py` from `{RECORDED / name}`, recorded with:\n"
            f"`{results.get('command', 'evaluate.py (command not recorded)')}`\n"
            f"({updates_per_run(results)} updates, seeds {seeds[0]}-{seeds[-1]}).\n\n"
            f"{summary_table(results)}\n")


def results_page(name: str, results: dict) -> str:
    """docs/results-NAME.md: everything evaluate.py reports, from the recorded results."""
    from lrrl.report import grid_table, markdown_table, policy_evaluation_table, updates_per_run

    seeds = results["seeds"]
    grids = {k: {(tuple(json.loads(p)) if isinstance(json.loads(p), list) else json.loads(p)):
                 (math.inf if v is None else v) for p, v in g.items()} for k, g in results.get("grids", {}).items()}
    parts = [f"# Evaluation on `{results['task']}`", "",
             f"{updates_per_run(results)} updates per run, seeds {seeds} (held-out evaluation seeds). Mean ± std "
             f"over seeds of the final full-set losses. Grid baselines are tuned by mean final training "
             f"loss on these same seeds (the paper's protocol, which favours the baselines).", "",
             f"Generated by `python tools/regenerate_docs.py` from `{RECORDED / name}`; recorded with "
             f"`{results.get('command', 'evaluate.py')}`.", ""]
    parts += [f"- {n}" for n in results.get("notes", [])] + ([""] if results.get("notes") else [])
    rows = [{**r, **{k: (math.nan if r.get(k) is None else r[k]) for k in r if k.endswith(("_mean", "_std"))},
             "wall_time": math.nan if r.get("wall_time") is None else r["wall_time"],
             # JSON has no infinity: a median of null is a diverged majority
             "train_loss_median": math.inf if r.get("train_loss_median") is None else r["train_loss_median"]}
            for r in results["summary"]]
    parts += ["## Summary", "", markdown_table(rows, results.get("classification", True)), ""]
    if grids:
        parts += ["## Grid searches", "", grid_table(grids), ""]
    rl = results.get("policy_evaluation") or []
    if rl:
        parts += ["## Policy evaluation (RL return, SB3 evaluate_policy)", "", policy_evaluation_table(rl), ""]
    figures = results.get("figures") or []
    if figures:
        parts += ["## Figures", ""] + [f"![{f}](figures/{name}_{f})" for f in figures] + [""]
    return "\n".join(parts)


def write_figures(name: str, results: dict, root: Path) -> list[Path]:
    """docs/figures/NAME_*.png from the recorded runs (evaluate.py's own plotting)."""
    import tempfile

    from lrrl.plots import write_figures as draw

    runs = results.get("runs") or {}
    if not runs:
        return []
    first = next(iter(runs.values()))
    common = first["common"]
    rows = results["summary"]
    with tempfile.TemporaryDirectory() as tmp:
        figures = draw(rows, runs, common, results["seeds"], Path(tmp), results["task"])
        written = []
        for fig in figures:
            target = root / "docs" / "figures" / f"{name}_{fig}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((Path(tmp) / fig).read_bytes())
            written.append(target)
    return written


# --------------------------------------------------------------------------- pages
def replace_blocks(readme: str, blocks: dict[str, str]) -> str:
    def sub(match: re.Match) -> str:
        name = match["name"]
        if name not in blocks:
            return match.group(0)
        return f"{BEGIN.format(name=name)}\n{blocks[name]}{END.format(name=name)}"

    return BLOCK.sub(sub, readme)


def readme_names(readme: str) -> list[str]:
    """The names of the generated tables in one page's text."""
    return [m["name"] for m in BLOCK.finditer(readme)]


def pages(root: Path) -> list[Path]:
    """The pages under ``root`` that show generated tables."""
    return [root / page for page in PAGES if (root / page).is_file()]


def page_names(root: Path) -> list[str]:
    """The names of the generated tables over every page."""
    return [name for page in pages(root) for name in readme_names(page.read_text())]


def regenerate(root: Path = ROOT, figures: bool = False) -> dict[Path, str]:
    """The regenerated text of every generated file: ``{path: text}`` (nothing is written)."""
    outputs: dict[Path, str] = {}
    blocks = {}
    recorded = sorted(p for p in (root / RECORDED).glob("*") if p.is_dir()) if (root / RECORDED).is_dir() else []
    for directory in recorded:
        name = directory.name
        results = load_recorded(directory)
        blocks[name] = readme_block(name, results)
        outputs[root / "docs" / f"results-{name}.md"] = results_page(name, results)
        if figures:
            write_figures(name, results, root)
    for page in pages(root):
        outputs[page] = replace_blocks(page.read_text(), blocks)
    return outputs


def unrecorded(root: Path = ROOT) -> list[str]:
    """Generated tables between markers that have no recording yet (left as they are)."""
    recorded = root / RECORDED
    return [n for n in page_names(root) if not (recorded / n).is_dir()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--record", nargs=2, metavar=("RESULTS_DIR", "NAME"),
                   help="first copy evaluate.py's RESULTS_DIR/results.json into docs/recorded/NAME")
    p.add_argument("--figures", action="store_true", help="also redraw docs/figures/NAME_*.png")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    p.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    root = Path(args.root)
    if args.record:
        print(f"recorded {record(Path(args.record[0]), args.record[1], root)}")
    try:
        outputs = regenerate(root, figures=args.figures and not args.check)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
        p.exit(1, f"regenerate_docs.py: error: {exc}\n")
    stale = [path for path, text in outputs.items() if not path.is_file() or path.read_text() != text]
    for name in unrecorded(root):
        print(f"not recorded yet: table {name!r} (record it with --record RESULTS_DIR {name})")
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(root)}")
        return 1 if stale else 0
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
