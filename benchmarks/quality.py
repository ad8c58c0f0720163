"""Quality against cost: final training loss of every method in an ``evaluate.py`` output,
against what it cost to get there, as a table, a JSON file and a PNG plot.

    python benchmarks/quality.py results/evaluate-digits runs/rec-actor-critic runs/rec-td3 ...

Cost is counted two ways:

- ``updates``: primary updates spent, machine-independent. A grid-tuned baseline pays for every
  candidate on every seed (the tuning); a learning-rate-free optimizer or an untuned rule for its
  own runs; a controller for its training (``steps x updates_per_step`` from its run directory)
  plus its runs.
- ``wall_s``: the same in seconds, from the wall times recorded by ``evaluate.py`` (mean seconds
  per run) and ``train_controller.py`` (``summary.json``). These depend on the machine and on
  whatever else ran beside the measurement; the update count does not.

The quality figures themselves are ``evaluate.py``'s (mean final full-train loss over seeds).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402


def _controller_costs(run_dirs: list[Path]) -> dict[str, dict]:
    """Training cost of each controller run directory, keyed by its evaluate.py label (dir name)."""
    costs = {}
    for run in run_dirs:
        settings = json.loads((run / "settings.json").read_text())
        summary_path = run / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        k = int(settings.get("env_kwargs", {}).get("updates_per_step", 1))
        steps = int(summary.get("steps_total", settings.get("train", {}).get("steps", 0)))
        costs[run.name] = {"train_updates": steps * k, "train_wall_s": summary.get("wall_time_s")}
    return costs


def collect(eval_dir: Path, run_dirs: list[Path]) -> list[dict]:
    """One row per method of ``eval_dir/results.json``: loss, spread and cost."""
    results = json.loads((eval_dir / "results.json").read_text())
    from lrrl.report import updates_per_run

    steps, n_seeds = updates_per_run(results), len(results["seeds"])
    grids = results.get("grids", {})
    train = _controller_costs(run_dirs)
    rows = []
    for s in results["summary"]:
        method, protocol = s["method"], s["protocol"]
        label = f"{method} ({protocol})" if protocol != "controller" else method
        # the grid this row was picked from: a decade-grid row from its decade grid, any other from
        # the largest grid of its method (a fine grid contains the decade grid it refines)
        mine = [g for name, g in grids.items() if name.startswith(method + " (")]
        if "decade" in protocol:
            mine = [g for name, g in grids.items() if name.startswith(method + " (") and "decade" in name]
        candidates = max((len(g) for g in mine), default=1)
        updates = candidates * n_seeds * steps
        wall = (s["wall_time"] or 0.0) * candidates * n_seeds
        base = method.split(" (trained on")[0]
        if protocol == "controller" and base in train:
            updates += train[base]["train_updates"]
            wall += train[base]["train_wall_s"] or 0.0
        rows.append({"method": label, "train_loss_mean": s["train_loss_mean"],
                     "train_loss_std": s["train_loss_std"], "updates": updates, "wall_s": wall,
                     "tuning_candidates": candidates})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key, xlabel in ((axes[0], "updates", "primary updates spent (tuning + training + runs)"),
                            (axes[1], "wall_s", "wall time spent, s (as recorded)")):
        for i, r in enumerate(rows):
            y = r["train_loss_mean"]
            if y is None or not math.isfinite(y) or not r[key]:
                continue
            marker = "*" if "controller" in r["method"] or "(" not in r["method"] else "o"
            ax.errorbar(r[key], y, yerr=r["train_loss_std"] or 0.0, fmt=marker, ms=8,
                        color=plt.cm.tab20(i % 20), label=r["method"], capsize=3)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel(xlabel), ax.set_ylabel("final training loss (mean ± std over seeds)")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path, help="an evaluate.py --out directory (holds results.json)")
    p.add_argument("runs", type=Path, nargs="*",
                   help="the controllers' train_controller.py run directories (for training cost)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write quality.json and quality.png (default: EVAL_DIR)")
    args = p.parse_args(argv)
    if not (args.eval_dir / "results.json").is_file():
        p.error(f"{args.eval_dir} holds no results.json: run evaluate.py --out {args.eval_dir} first")
    missing = [str(r) for r in args.runs if not (r / "settings.json").is_file()]
    if missing:
        p.error(f"not train_controller.py run directories (no settings.json): {', '.join(missing)}")
    out = args.out or args.eval_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(collect(args.eval_dir, args.runs), key=lambda r: r["updates"])
    print(f"{'method':58s} {'final train loss':>22s} {'updates':>12s} {'wall s':>9s}")
    for r in rows:
        loss = f"{r['train_loss_mean']:.3g} ± {r['train_loss_std']:.2g}" \
            if r["train_loss_mean"] is not None and math.isfinite(r["train_loss_mean"]) else "diverged"
        print(f"{r['method'][:58]:58s} {loss:>22s} {r['updates']:>12,d} {r['wall_s']:>9.0f}")
    write_json(out / "quality.json", {"benchmark": "quality", "eval_dir": str(args.eval_dir), "rows": rows})
    plot(rows, out / "quality.png", f"final loss against cost ({args.eval_dir.name})")
    print(f"wrote {out / 'quality.json'} and {out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
