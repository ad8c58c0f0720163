"""Peer comparison: DACBench's SGD benchmark next to ``LearningRateEnv`` on the same model and data.

Both environments train the paper's MNIST CNN (``envs.tasks.mnist_cnn``) on the same random
tensors of MNIST's shape (``n_train`` x 1x28x28, float32 in [0, 1), labels 0..9), batch 50,
with a constant learning rate. DACBench's ``SGDEnv`` always optimises with ``torch.optim.AdamW``
(whatever its instance says), so our env runs with ``optimizer="adamw"`` here too. DACBench runs
in mini-batch mode (``epoch_mode=False``: one update per step); its data comes from torchvision
datasets on disk, so this script hands it the random tensors through ``TensorDataset``s split and
batched exactly as its own ``random_torchvision_loader`` does (a train/validation
``random_split`` at its default ratio 0.8, shuffled ``DataLoader``s, test loader batch 64).

Reported for each env: steps per second (median over repeats) and whether it passes
``gymnasium.utils.env_checker.check_env`` and ``stable_baselines3.common.env_checker.check_env``
(with the first line of the error when not).

Note what a DACBench step does besides the update: its observation includes a validation loss,
computed every step on 10% of the validation split (all of it at epoch end) -- so its step cost
grows with the dataset; at MNIST's real size (the default ``--n-train 60000``) that is 24
extra forward passes of 50 examples per step.

DACBench is optional (``pip install -e '.[bench]'``). Install it where it cannot disturb the main
environment, e.g. ``python -m venv --system-site-packages /tmp/dacvenv && /tmp/dacvenv/bin/pip
install dacbench``, and pass ``--dacbench-python /tmp/dacvenv/bin/python`` (or set
``LRRL_DACBENCH_PYTHON``): that side then runs in a subprocess with that interpreter. Without
DACBench, the script says so and reports our env's side only.

Run:  python benchmarks/peer_dacbench.py --dacbench-python /tmp/dacvenv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, fail, machine_info, summary, write_json

LR = 1e-3  # constant AdamW learning rate of both envs
INSTALL_HINT = ("pip install dacbench (e.g. in a separate venv: python -m venv --system-site-packages "
                "/tmp/dacvenv && /tmp/dacvenv/bin/pip install dacbench; then pass "
                "--dacbench-python /tmp/dacvenv/bin/python)")


def random_mnist(n_train: int, n_test: int, seed: int = 0):
    """Random tensors of MNIST's shape and dtype: (x_train, y_train, x_test, y_test)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n_train, 1, 28, 28), generator=g), torch.randint(0, 10, (n_train,), generator=g),
            torch.rand((n_test, 1, 28, 28), generator=g), torch.randint(0, 10, (n_test,), generator=g))


def run_checkers(make_env) -> dict:
    """Run gymnasium's and SB3's env checkers on fresh envs; ``{"gymnasium": {...}, "sb3": {...}}``."""
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    out = {}
    for name, check in (("gymnasium", lambda e: gym_check(e, skip_render_check=True)),
                        ("sb3", lambda e: sb3_check(e, warn=True))):
        env = make_env()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                check(env)
                result = {"passed": True, "error": None}
            except Exception as exc:  # a checker failure is a result here, not a crash
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                result = {"passed": False, "error": f"{type(exc).__name__}: {msg}"[:300]}
        result["warnings"] = sorted({re.sub(r"\x1b\[[0-9;]*m", "", str(w.message)).splitlines()[0][:200]
                                     for w in caught})
        out[name] = result
        if hasattr(env, "close"):
            env.close()
    return out


def time_steps(env, action, n_steps: int, repeats: int) -> dict:
    """Steps per second of ``n_steps`` constant-action steps, ``repeats`` times (reset between)."""
    rates = []
    for _ in range(repeats):
        env.reset(seed=0)
        env.step(action)  # warm-up step (DACBench's first step only does a forward/backward)
        start = time.perf_counter()
        for _ in range(n_steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        rates.append(n_steps / (time.perf_counter() - start))
    return summary(rates)


# ----------------------------------------------------------------------------- our side
def ours(args) -> dict:
    from envs import LearningRateEnv, Task
    from envs.tasks import mnist_cnn

    task = Task.from_tensors(*random_mnist(args.n_train, args.n_test), model_factory=mnist_cnn,
                             batch_size=50, name="random-mnist")

    def make_env():
        return LearningRateEnv(task, optimizer="adamw", episode_length=10**6, device="cpu")

    env = make_env()
    action = env.lr_to_unit(LR).astype(np.float32).reshape(env.action_space.shape)
    return {"env": "envs.LearningRateEnv (optimizer=adamw)",
            "steps_per_second": time_steps(env, action, args.steps, args.repeats),
            "checkers": run_checkers(make_env) if not args.no_check else None}


# ----------------------------------------------------------------------------- DACBench side
def dacbench_side(args) -> dict:
    import dacbench
    import dacbench.envs.sgd as dac_sgd
    from dacbench.benchmarks import SGDBenchmark
    from dacbench.envs import SGDInstance
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset, random_split

    from envs.tasks import mnist_cnn

    x_train, y_train, x_test, y_test = random_mnist(args.n_train, args.n_test)

    def tensor_loaders(seed, dataset_path, name, batch_size, fraction_of_dataset,
                       train_validation_ratio, dataset_config=None, **kwargs):
        # DACBench's random_torchvision_loader, with TensorDatasets instead of torchvision files
        train_dataset, test = TensorDataset(x_train, y_train), TensorDataset(x_test, y_test)
        train_size = int(len(train_dataset) * train_validation_ratio)
        train_size -= train_size % batch_size
        train, val = random_split(train_dataset, [train_size, len(train_dataset) - train_size])
        return (train_dataset, test), (DataLoader(train, batch_size=batch_size, drop_last=True, shuffle=True),
                                       DataLoader(val, batch_size=batch_size, shuffle=True),
                                       DataLoader(test, batch_size=64))

    dac_sgd.random_torchvision_loader = tensor_loaders  # the name SGDEnv.reset looks up

    def make_env():
        bench = SGDBenchmark()
        cfg = bench.config
        cfg.epoch_mode = False                 # mini-batch mode: one update per step
        cfg.cutoff = 10**6                     # no truncation inside the timed steps
        cfg.device = "cpu"
        # our model outputs logits; DACBench's default NLLLoss expects log-probabilities
        cfg.loss_function = lambda **kw: nn.CrossEntropyLoss(reduction="none", **kw)
        cfg.instance_set = {0: SGDInstance(model=mnist_cnn, optimizer_type="AdamW", optimizer_params={},
                                           dataset_path="", dataset_name="MNIST", batch_size=50,
                                           fraction_of_dataset=1.0, train_validation_ratio=0.8, seed=0)}
        return bench.get_environment()

    env = make_env()
    action = np.array([LR, 0.9], dtype=np.float32)  # learning rate, beta1 (AdamW's default)
    return {"env": f"dacbench {dacbench.__version__} SGDEnv (mini-batch mode, AdamW)",
            "steps_per_second": time_steps(env, action, args.steps, args.repeats),
            "checkers": run_checkers(make_env) if not args.no_check else None}


def dacbench_via(python: str, args) -> dict:
    """Run the DACBench side in another interpreter (e.g. a venv that has dacbench)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dacbench.json"
        cmd = [python, str(Path(__file__).resolve()), "--side", "dacbench", "--json", str(out),
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--n-train", str(args.n_train),
               "--n-test", str(args.n_test), "--threads", str(args.threads)] + (["--no-check"] if args.no_check else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:  # no such interpreter, not executable, ...
            return {"available": False, "reason": f"--dacbench-python {python} cannot run: {exc}"}
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"available": False, "reason": f"{python} failed: " + " | ".join(tail)}
        return json.loads(out.read_text())["dacbench"]


def describe(name: str, res: dict) -> None:
    sps = res["steps_per_second"]
    print(f"{name:<48} {sps['median']:8.2f} steps/s  (min {sps['min']:.2f}, max {sps['max']:.2f})")
    for checker, r in (res.get("checkers") or {}).items():
        verdict = "passes" if r["passed"] else f"FAILS: {r['error']}"
        print(f"    {checker} check_env: {verdict}")
        for w in r["warnings"][:3]:
            print(f"        warning: {w}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per env (default 3)")
    parser.add_argument("--n-train", type=int, default=60_000,
                        help="random training examples (default 60000, MNIST's size; DACBench's step "
                             "cost grows with it)")
    parser.add_argument("--n-test", type=int, default=10_000, help="random test examples (default 10000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-check", action="store_true", help="skip the env checkers")
    parser.add_argument("--dacbench-python", default=os.environ.get("LRRL_DACBENCH_PYTHON"),
                        help="a Python interpreter that has dacbench installed (default: this one if it "
                             "has dacbench, else $LRRL_DACBENCH_PYTHON)")
    parser.add_argument("--side", choices=("both", "ours", "dacbench"), default="both",
                        help="which env(s) to measure (default both)")
    parser.add_argument("--json", default=str(RESULTS_DIR / "peer_dacbench.json"),
                        help="where to write the results (default results/bench/peer_dacbench.json)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.threads < 1 or args.n_train < 500 or args.n_test < 1:
        fail("need --steps, --repeats, --threads >= 1, --n-train >= 500 and --n-test >= 1")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*Pyro4.*")

    payload = {"benchmark": "peer_dacbench", "lr": LR, "model": "envs.tasks.mnist_cnn",
               "data": f"random {args.n_train}x1x28x28 train, {args.n_test} test, batch 50",
               "machine": machine_info()}
    if args.side in ("both", "ours"):
        payload["ours"] = ours(args)
    if args.side in ("both", "dacbench"):
        try:
            import dacbench  # noqa: F401
            have_here = True
        except ImportError:
            have_here = False
        if have_here:
            payload["dacbench"] = {"available": True, **dacbench_side(args)}
        elif args.dacbench_python:
            payload["dacbench"] = dacbench_via(args.dacbench_python, args)
        else:
            payload["dacbench"] = {"available": False,
                                   "reason": f"dacbench is not installed in {sys.executable}; {INSTALL_HINT}"}
        payload["dacbench"].setdefault("available", True)

    print(f"model mnist_cnn, {payload['data']}, constant lr {LR} (AdamW in both)")
    if "ours" in payload:
        describe(payload["ours"]["env"], payload["ours"])
    if "dacbench" in payload:
        if payload["dacbench"]["available"]:
            describe(payload["dacbench"]["env"], payload["dacbench"])
            if "ours" in payload:
                ratio = payload["ours"]["steps_per_second"]["median"] / payload["dacbench"]["steps_per_second"]["median"]
                payload["throughput_ratio_ours_over_dacbench"] = ratio
                print(f"throughput: ours / DACBench = {ratio:.2f}x")
        else:
            print(f"DACBench side not measured: {payload['dacbench']['reason']}")
    path = write_json(args.json, payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
