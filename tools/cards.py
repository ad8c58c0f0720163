"""A benchmark card per registered id (docs/cards/<id>.md), generated from recorded results.

Two stages, one script:

1. ``measure``: for each id whose data is present, with the id's default keyword arguments, on
   the held-out primary seeds (default 1000, 1001, 1002, as evaluate.py's), record

   - the cost of one env step (median wall and CPU time of ``env.step``, one torch thread),
   - the return and the final full training loss of a uniformly random policy,
   - the same for every constant action of a grid (the best constant action is the one with the
     best mean return over these seeds: an upper bound for any constant action),
   - tuned baselines: SGD at the constant rate with the lowest mean final training loss (same
     grid), and Adam at the best rate of the paper's decade grid {1e-4, ..., 1e-1} (the env with
     ``optimizer="adam"``).

   Results go to ``docs/cards/recorded/<id>.json``; an id whose data is absent records why.
2. ``render``: writes ``docs/cards/<id>.md`` for every registered id from those files alone.

Usage (the cards in docs/cards were made with exactly this)::

    python tools/cards.py measure --seeds 3
    python tools/cards.py render

``python tools/cards.py all`` does both. MNIST, Fashion-MNIST and CIFAR-10 are measured
wherever their files are under ``--data-root`` (never downloaded unless ``--download``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402
from benchmarks.common import machine_info, timed, write_json  # noqa: E402
from lrrl.config import held_out_seeds  # noqa: E402

CARDS_DIR = Path(__file__).resolve().parent.parent / "docs" / "cards"
#: absolute actions of the constant-action grid: rates 1e-5 .. 1 in half-decade steps
CONSTANT_ACTIONS = tuple(float(a) for a in np.linspace(-1.0, 1.0, 11))
ADAM_RATES = (1e-4, 1e-3, 1e-2, 1e-1)
TIMED_STEPS = 100
#: where named datasets come from (set by --data-root / --download)
DATA = {"data_root": None, "download": False}


def _make(env_id: str, **kwargs) -> envs.LearningRateEnv:
    # the registered id with its defaults; eval_every = episode_length adds the full training loss
    # at the episode's end to info (it does not change the dynamics)
    env = gym.make(env_id, device="cpu", disable_env_checker=True, **DATA, **kwargs)
    inner = env.unwrapped
    inner.eval_every = inner.episode_length
    return env


def run_episode(env, seed: int, policy) -> dict:
    """One episode from ``reset(seed=seed)``; ``policy(step) -> action``."""
    env.reset(seed=seed)
    total, steps, info, terminated, truncated = 0.0, 0, {}, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(policy(steps))
        total += reward
        steps += 1
    final = info.get("eval", {}).get("train_loss") if truncated else None
    return {"return": total, "steps": steps, "diverged": bool(terminated), "final_train_loss": final}


def _summary(runs: list[dict]) -> dict:
    returns = [r["return"] for r in runs]
    losses = [r["final_train_loss"] for r in runs]
    finished = [x for x in losses if x is not None and math.isfinite(x)]
    return {"runs": runs, "mean_return": statistics.fmean(returns),
            "std_return": statistics.pstdev(returns),
            "mean_final_train_loss": statistics.fmean(finished) if len(finished) == len(losses) else None,
            "std_final_train_loss": statistics.pstdev(finished) if len(finished) == len(losses) else None,
            "diverged": sum(r["diverged"] for r in runs)}


def measure_cost(env_id: str, seed: int) -> dict:
    env = _make(env_id)
    env.unwrapped.eval_every = 0  # the step alone
    env.reset(seed=seed)
    action = np.zeros(env.action_space.shape, np.float32)
    walls, cpus = [], []
    for i in range(TIMED_STEPS + 10):
        box = []
        wall, cpu = timed(lambda: box.append(env.step(action)))
        if box[0][2] or box[0][3]:
            env.reset()
        if i >= 10:  # warm-up first
            walls.append(wall)
            cpus.append(cpu)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"wall_ms_median": 1e3 * statistics.median(walls), "cpu_ms_median": 1e3 * statistics.median(cpus),
            "steps_timed": TIMED_STEPS, "load_average_1min": load}


def measure(env_id: str, seeds: list[int]) -> dict:
    torch.set_num_threads(1)
    env = _make(env_id)
    inner = env.unwrapped
    record = {"id": env_id, "status": "measured", "seeds": seeds, "machine": machine_info(),
              "task": inner.trainer.task.name, "kwargs": gym.spec(env_id).kwargs,
              "episode_length": inner.episode_length, "decisions": inner.max_episode_steps,
              "batch_size": inner.trainer.batch_size, "n_train": len(inner.trainer.x_train),
              "n_test": len(inner.trainer.x_test),
              "n_parameters": sum(p.numel() for p in inner.trainer.parameters())}
    t0 = time.perf_counter()
    record["cost_per_step"] = measure_cost(env_id, seeds[0])

    def random_policy(seed):
        space = gym.spaces.Box(env.action_space.low, env.action_space.high, dtype=np.float32)
        space.seed(seed)
        return lambda step: space.sample()

    record["random"] = _summary([run_episode(env, s, random_policy(s)) for s in seeds])
    constants = {}
    for a in CONSTANT_ACTIONS:
        action = np.full(env.action_space.shape, a, np.float32)
        constants[f"{a:+.1f}"] = {"action": a, "lr": float(inner.unit_to_lr(a)),
                                  **_summary([run_episode(env, s, lambda step: action) for s in seeds])}
    record["constant"] = constants
    adam_env = _make(env_id, optimizer="adam")
    adam = {}
    for lr in ADAM_RATES:
        action = inner.lr_to_unit(lr).astype(np.float32).reshape(env.action_space.shape)
        adam[f"{lr:g}"] = {"lr": lr, **_summary([run_episode(adam_env, s, lambda step: action) for s in seeds])}
    record["adam"] = adam
    record["wall_time_s"] = time.perf_counter() - t0
    return record


def _absent(env_id: str, error: Exception) -> dict:
    return {"id": env_id, "status": "data absent", "task": gym.spec(env_id).kwargs["task"],
            "kwargs": gym.spec(env_id).kwargs, "message": str(error), "machine": machine_info()}


# ----------------------------------------------------------------------------- cards
def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.{digits}e}"


def _pm(mean, std):
    return "diverged in some seed" if mean is None else f"{_fmt(mean)} ± {_fmt(std, 2)}"


def _best(entries: dict, key: str, lower: bool) -> tuple[str, dict] | None:
    ok = [(k, v) for k, v in entries.items() if v[key] is not None]
    if not ok:
        return None
    return (min if lower else max)(ok, key=lambda kv: kv[1][key])


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def render_card(env_id: str, record: dict | None) -> str:
    spec = gym.spec(env_id)
    # spaces and defaults do not need the data: the controller's interface under default kwargs
    from envs.control import ControlState
    control = ControlState(1)
    lines = [f"# Benchmark card: `{env_id}`", "",
             f"Generated by `python tools/cards.py render` from `docs/cards/recorded/{env_id}.json` "
             f"(written by `python tools/cards.py measure --seeds 3`). Do not edit by hand.", "",
             "| | |", "|---|---|",
             f"| task | `{spec.kwargs['task']}`: {_first_paragraph(envs.tasks.TASKS[spec.kwargs['task']].__doc__)} |",
             f"| make | `gymnasium.make(\"envs:{env_id}\")` (registered kwargs `{json.dumps(spec.kwargs)}`) |",
             f"| action space | `{control.action_space}`: log-uniform rate `lr = 1e-5 * 1e5 ** ((a + 1) / 2)` in [1e-5, 1] |",
             f"| observation space | `{control.observation_space}`: the mini-batch loss `f(w_t; x_i)` |",
             "| reward | same-batch loss decrement `f(w_t; x_i) - f(w_{t+1}; x_i)` (the paper's); "
             "divergence ends the episode (`terminated`) with -10 |",
             f"| episode | {control.episode_length} primary updates (SGD), truncated; "
             f"{-(-control.episode_length // control.updates_per_step)} decisions per episode "
             f"(`spec.max_episode_steps`) |"]
    if record is None:
        lines += ["", "## Reference figures: not measured yet", "",
                  "No recorded results: the measurement did not finish on the machine these cards were "
                  "made on. Missing: cost per step, model size, and the returns and final training "
                  "losses of the random policy, the best constant action and the tuned baselines. "
                  f"`python tools/cards.py measure --ids {env_id} --seeds 3` records them and "
                  "`render` fills this card."]
        return "\n".join(lines) + "\n"
    if record.get("status") != "measured":
        why = record["message"].rstrip(".")
        lines += ["", "## Reference figures: missing", "",
                  f"The data of this task is absent on the machine these cards were made on ({why}).",
                  "Missing: cost per step, model size, and the returns and final training losses of the "
                  "random policy, the best constant action and the tuned baselines. With the dataset "
                  "files under `--data-root DIR`, `python tools/cards.py measure --ids "
                  f"{env_id} --data-root DIR` records them and `render` fills this card."]
        return "\n".join(lines) + "\n"
    r = record
    cost = r["cost_per_step"]
    lines += [f"| primary model | {r['n_parameters']:,} parameters; batch {r['batch_size']}, "
              f"{r['n_train']:,} training / {r['n_test']:,} test examples |",
              f"| cost per step | {cost['wall_ms_median']:.2f} ms wall, {cost['cpu_ms_median']:.2f} ms CPU "
              f"(median of {cost['steps_timed']} steps, 1 torch thread, CPU; 1-min load average "
              f"{_fmt(cost['load_average_1min'], 2)} on {r['machine']['cpu_count']} cores, a shared machine) |",
              "", "## Reference returns and final losses", "",
              f"Held-out primary seeds {', '.join(map(str, r['seeds']))} (`reset(seed=s)`), one episode "
              f"each under the default kwargs; mean ± standard deviation over the seeds. Return: the "
              f"episode's summed reward. Final loss: the full training-set loss after the episode's "
              f"{r['episode_length']} updates (`n/a`: some seed diverged).", "",
              "| policy | return | final train loss | diverged |", "|---|---|---|---|"]
    rnd = r["random"]
    lines.append(f"| uniformly random action | {_pm(rnd['mean_return'], rnd['std_return'])} | "
                 f"{_pm(rnd['mean_final_train_loss'], rnd['std_final_train_loss'])} | {rnd['diverged']}/{len(r['seeds'])} |")
    key, best = _best(r["constant"], "mean_return", lower=False)
    lines.append(f"| best constant action (by return): a = {best['action']:+.1f}, lr {_fmt(best['lr'])} | "
                 f"{_pm(best['mean_return'], best['std_return'])} | "
                 f"{_pm(best['mean_final_train_loss'], best['std_final_train_loss'])} | {best['diverged']}/{len(r['seeds'])} |")
    tuned = _best(r["constant"], "mean_final_train_loss", lower=True)
    if tuned:
        _, t = tuned
        lines.append(f"| tuned SGD (constant rate with the lowest final loss): lr {_fmt(t['lr'])} | "
                     f"{_pm(t['mean_return'], t['std_return'])} | "
                     f"{_pm(t['mean_final_train_loss'], t['std_final_train_loss'])} | {t['diverged']}/{len(r['seeds'])} |")
    adam = _best(r["adam"], "mean_final_train_loss", lower=True)
    if adam:
        _, t = adam
        lines.append(f"| tuned Adam (decade grid 1e-4..1e-1, `optimizer=\"adam\"`): lr {_fmt(t['lr'])} | "
                     f"{_pm(t['mean_return'], t['std_return'])} | "
                     f"{_pm(t['mean_final_train_loss'], t['std_final_train_loss'])} | {t['diverged']}/{len(r['seeds'])} |")
    lines += ["", "Every constant action of the grid (SGD):", "",
              "| action | lr | return | final train loss | diverged |", "|---|---|---|---|---|"]
    for v in r["constant"].values():
        lines.append(f"| {v['action']:+.1f} | {_fmt(v['lr'])} | {_pm(v['mean_return'], v['std_return'])} | "
                     f"{_pm(v['mean_final_train_loss'], v['std_final_train_loss'])} | {v['diverged']}/{len(r['seeds'])} |")
    lines += ["", f"Measured {r['machine']['time']} with torch {r['machine']['torch']}, "
              f"Python {r['machine']['python']}; the measurement took {r['wall_time_s']:.0f} s.",
              "The constant-action and tuned rows are chosen on the same seeds they report "
              "(upper bounds for their families); trained controllers are compared on these seeds "
              "by `evaluate.py` (README, Results)."]
    return "\n".join(lines) + "\n"


def load_record(env_id: str, folder: Path = CARDS_DIR) -> dict | None:
    """The recorded results of ``env_id`` (``None`` if never measured)."""
    path = folder / "recorded" / f"{env_id}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["measure", "render", "all"])
    parser.add_argument("--ids", default=",".join(envs.ENV_IDS), help="comma-separated ids (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="held-out seeds 1000, 1001, ...")
    parser.add_argument("--data-root", default=None, help="folder with the torchvision datasets")
    parser.add_argument("--download", action="store_true", help="allow downloading the datasets")
    parser.add_argument("--out", default=str(CARDS_DIR), help="cards folder (recorded results in OUT/recorded)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    DATA.update(data_root=args.data_root, download=args.download)
    ids = [i for i in args.ids.split(",") if i]
    if args.stage in ("measure", "all"):
        seeds = held_out_seeds(args.seeds)
        for env_id in ids:
            task = gym.spec(env_id).kwargs["task"]
            try:
                envs.make_task(task, data_root=args.data_root, download=args.download)
            except envs.DatasetUnavailableError as exc:
                record = _absent(env_id, exc)
            else:
                record = measure(env_id, seeds)
            write_json(out / "recorded" / f"{env_id}.json", record)
            print(f"{env_id}: {record['status']}", flush=True)
            if args.stage == "all":  # card by card, so that a long run leaves finished cards behind
                (out / f"{env_id}.md").write_text(render_card(env_id, record))
    if args.stage in ("render", "all"):
        for env_id in envs.ENV_IDS:
            (out / f"{env_id}.md").write_text(render_card(env_id, load_record(env_id, out)))
            print(f"wrote {out / f'{env_id}.md'}")


if __name__ == "__main__":
    main()
