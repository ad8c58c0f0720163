"""The report of an evaluation: Markdown tables, ``results.md``, ``summary.csv``, ``curves.csv``
and ``results.json`` (everything, including every run's curves).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from lrrl.stats import COLLAPSE_FRACTION
from agents.io import atomic_write_bytes
from lrrl.sweep import fmt_param, write_json


def updates_per_run(results: dict) -> int:
    """Primary updates per run of a ``results.json`` (``steps`` in files written before 0.3)."""
    return int(results["updates"] if "updates" in results else results["steps"])


def _pm(m: float, s: float, pct: bool = False) -> str:
    if not math.isfinite(m):
        return "—"
    if pct:
        return f"{100 * m:.1f} ± {100 * s:.1f}"
    return f"{m:.2e} ± {s:.1e}"


def param_text(row: dict) -> str:
    p = row["param"]
    if p is None:
        return ""
    if isinstance(p, list):
        return f"{row['param_name']}=(" + ", ".join(fmt_param(v) for v in p) + ")"
    return f"{row['param_name']}={fmt_param(p)}" if row["param_name"] != "lr" else fmt_param(p)


def markdown_table(rows: list[dict], classification: bool) -> str:
    head = ["method", "protocol", "lr / tuned", "final train loss", "final test loss"]
    if classification:
        head.append("test acc. %")
    head += ["median train loss", "collapsed", "diverged", "s / run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        bad = r["diverged"] + r["errors"]
        cells = [r["method"], r["protocol"], param_text(r),
                 _pm(r["train_loss_mean"], r["train_loss_std"]), _pm(r["test_loss_mean"], r["test_loss_std"])]
        if classification:
            cells.append(_pm(r["test_accuracy_mean"], r["test_accuracy_std"], pct=True))
        median = r.get("train_loss_median", math.nan)
        cells += [f"{median:.2e}" if math.isfinite(median) else "diverged",
                  f"{r.get('collapsed', 0)}/{r['seeds']}",
                  f"{bad}/{r['seeds']}" + (" (error)" if r["errors"] else ""), f"{r['wall_time']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(rows: list[dict]) -> str:
    """Final full training loss of every seed of every row (``diverged`` for a diverged seed)."""
    seeds = sorted({s for r in rows for s in r.get("seed_list", [])})
    lines = ["| method | " + " | ".join(str(s) for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for r in rows:
        values = dict(zip(r.get("seed_list", []), r.get("train_loss_per_seed", [])))
        cells = [("diverged" if values.get(s) is None else f"{values[s]:.2e}") if s in values else ""
                 for s in seeds]
        lines.append(f"| {r['method']} ({r['protocol']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(grids: dict[str, dict[Any, float]]) -> str:
    lines = ["| method | parameter | mean final train loss |", "|---|---|---|"]
    for name, means in grids.items():
        best = min(means, key=lambda p: means[p])
        for p in sorted(means, key=lambda q: (q if not isinstance(q, tuple) else q)):
            v = means[p]
            ptxt = "(" + ", ".join(fmt_param(x) for x in p) + ")" if isinstance(p, tuple) else fmt_param(p)
            vtxt = f"{v:.3e}" if math.isfinite(v) else "diverged"
            lines.append(f"| {name} | {ptxt}{' **(best)**' if p == best else ''} | {vtxt} |")
    return "\n".join(lines)


def policy_evaluation_table(rows: list[dict]) -> str:
    """The controllers' RL returns (``Results.policy_evaluation``) as a Markdown table."""
    lines = ["| controller | episodes | episode length | return |", "|---|---|---|---|"]
    for r in rows:
        ret = r.get("error") or f"{r['return_mean']:.4g} ± {r['return_std']:.2g}"
        lines.append(f"| {r['method']} | {r['episodes']} | {r.get('episode_length', '')} | {ret} |")
    return "\n".join(lines)


def write_report(results, figures: list[str], out: Path, command: str) -> str:
    """Write ``results.md``, ``summary.csv``, ``curves.csv`` and ``results.json`` of ``results`` (an
    :class:`lrrl.protocol.Results`) into ``out``; return the Markdown text. ``command`` is the command line that produced ``results``."""
    st, rows, records = results.settings, results.rows, results.records
    parts = [f"# Evaluation on `{st.task}`", "",
             f"{st.updates} updates per run, seeds {st.seeds} (held-out evaluation seeds), full train/test "
             f"loss every {st.eval_every} updates. Mean ± std over seeds of the final full-set losses. "
             f"Grid baselines are tuned by mean final training loss on these same seeds (the paper's "
             f"protocol, which favours the baselines). A diverged seed counts as infinite loss in "
             f"the grid search; the 'diverged' column counts diverged seeds of the reported setting.",
             "", f"Command: `{command}`  ", f"Runs: {len(records)} ({results.resumed} resumed from "
             f"{out / 'runs'}), wall time {results.wall_time:.0f} s.", ""]
    parts += [f"- {n}" for n in results.notes] + ([""] if results.notes else [])
    parts += ["## Summary", "", markdown_table(rows, results.classification), "",
              f"'collapsed': diverged, or final training loss >= {COLLAPSE_FRACTION} x the initial one.", "",
              "## Final training loss per seed", "", per_seed_table(rows), ""]
    errors = [m for r in rows for m in r["messages"]]
    if errors:
        parts += ["Errors: " + "; ".join(sorted(set(errors))), ""]
    if results.grids:
        parts += ["## Grid searches", "", grid_table(results.grids), ""]
    if results.policy_evaluation:
        parts += ["## Policy evaluation (RL return, SB3 evaluate_policy)", "",
                  policy_evaluation_table(results.policy_evaluation), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    text = "\n".join(parts)
    atomic_write_bytes(out / "results.md", text.encode())  # atomic, and never through a symlink

    cols = ["method", "protocol", "param_name", "param", "seeds", "diverged", "errors",
            "train_loss_mean", "train_loss_std", "test_loss_mean", "test_loss_std",
            "test_accuracy_mean", "test_accuracy_std", "wall_time"]
    f = io.StringIO(newline="")  # CSV text, written atomically below
    w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "param": json.dumps(r["param"])})
    atomic_write_bytes(out / "summary.csv", f.getvalue().encode())
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["run", "family", "label", "param", "seed", "status", "step", "train_loss", "test_loss",
                "test_accuracy"])
    for key, rec in sorted(records.items()):
        c, sp = rec.get("curves") or {}, rec["spec"]
        for i, step in enumerate(c.get("eval_steps", [])):
            acc = c["test_accuracy"][i] if i < len(c.get("test_accuracy", [])) else ""
            w.writerow([key, sp["family"], sp["label"], json.dumps(sp["param"]), sp["seed"], rec["status"],
                        step, c["train_loss"][i], c["test_loss"][i], acc])
    atomic_write_bytes(out / "curves.csv", f.getvalue().encode())
    write_json(out / "results.json", {
        "task": st.task, "updates": st.updates, "seeds": st.seeds, "command": command,
        "classification": results.classification, "notes": results.notes, "summary": rows,
        "grids": {k: {json.dumps(p): v for p, v in g.items()} for k, g in results.grids.items()},
        "policy_evaluation": results.policy_evaluation, "figures": figures,
        "wall_time": results.wall_time, "resumed": results.resumed, "runs": records})
    return text
