"""Learning curves of trained controllers: validation return against training experience.

    python benchmarks/learning_curve.py runs/rec-seed0 runs/rec-seed1 runs/rec-seed2 runs/rec-seed3 runs/rec-seed4

Reads each run's TensorBoard log (``eval/mean_reward``: the deterministic return of the current
policy on the validation primary seed(s), 500 by default, logged by checkpoint selection) and
prints, per run, the return and the validation loss it implies against training episodes and
primary updates; with ``--figure`` it also plots them. With the ``digits-capped`` preset's reward
(log-ratio on a fixed probe batch) a return ``R`` means the probe loss fell from its initial
value ``L0`` to ``L0 * exp(-R)``; digits starts at ``L0 ~ 2.3``.

This is how the default training budget of the ``digits-capped`` preset was chosen (README,
"Results"): the budget where the curves flatten.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def read_curve(run_dir: Path) -> dict:
    """``{"steps": [...], "episodes": [...], "updates": [...], "return": [...]}`` of one run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = json.loads((run_dir / "settings.json").read_text())
    env = settings["env_kwargs"]
    decisions = math.ceil(env["episode_length"] / env.get("updates_per_step", 1))
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    if "eval/mean_reward" not in acc.Tags()["scalars"]:
        raise SystemExit(f"{run_dir}: no eval/mean_reward in its TensorBoard log (train it with --select-best)")
    events = acc.Scalars("eval/mean_reward")
    steps = [e.step for e in events]
    # episodes end early on collapse, so the step count / decisions is a lower bound on episodes
    # only when every episode ran to its end; episode counts come from time/episodes when logged
    return {"run": str(run_dir), "steps": steps, "return": [e.value for e in events],
            "updates": [s * env.get("updates_per_step", 1) for s in steps],
            "full_episodes": [s / decisions for s in steps]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/learning_curve.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories of train_controller.py")
    p.add_argument("--initial-loss", type=float, default=2.3,
                   help="the probe loss at the start, to turn a return into a loss")
    p.add_argument("--figure", default=None, help="write a PNG of the curves here")
    p.add_argument("--out", default=None, help="write the curves as JSON here")
    args = p.parse_args(argv)
    curves = [read_curve(Path(r)) for r in args.runs]
    for c in curves:
        print(f"\n{c['run']}: validation return (implied probe loss) against training")
        print("| env steps | primary updates | episodes of full length | return | probe loss |\n|---|---|---|---|---|")
        for s, u, e, r in zip(c["steps"], c["updates"], c["full_episodes"], c["return"]):
            print(f"| {s} | {u} | {e:.0f} | {r:.2f} | {args.initial_loss * math.exp(-r):.2e} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(curves, indent=1))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for c in curves:
            ax.plot([u / 1e3 for u in c["updates"]], [args.initial_loss * math.exp(-r) for r in c["return"]],
                    marker="o", ms=3, label=Path(c["run"]).name)
        ax.set_yscale("log")
        ax.set_xlabel("primary updates of training (thousands)")
        ax.set_ylabel("validation probe loss after 1,000 updates")
        ax.set_title("controller learning curves (validation seed)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=110)
        print(f"\nwrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
