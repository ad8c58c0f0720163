"""Train a learning-rate controller: the paper's actor-critic, an episodic policy search, or SB3
DDPG/TD3, on LearningRateEnv.

    python train_controller.py                      # the paper's agent on digits, a few minutes on CPU
    python train_controller.py --agent td3 --steps 20000 --task digits,regression2d
    python train_controller.py --resume runs/actor-critic-digits-seed0 --steps 20000

Writes a run directory (``--out``, default ``runs/<agent>-<task>-seed<seed>``):
``controller.pt`` (actor-critic, policy-search) or ``controller.zip`` (SB3), ``settings.json`` (agent, preset,
env_kwargs, agent_kwargs, train), ``tb/`` (TensorBoard, SB3 layout: ``rollout/ep_rew_mean``,
``env/lr``, ``env/batch_loss``, ...) and ``summary.json``. Load a run with
``agents.checkpoint.load_controller(DIR)``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Sequence

AGENTS = ("actor-critic", "policy-search", "ddpg", "td3")
DEFAULT_STEPS = 10_000


# --------------------------------------------------------------------------- arguments
def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``, with a one-line message otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else _finite_float(text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults only (``None`` means: the preset's value)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from agents.presets import PRESETS

    p = argparse.ArgumentParser(
        prog="train_controller.py", usage="%(prog)s [options]   (--help lists them)",
        description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--agent", choices=AGENTS, default=None,
                   help="controller to train (default: the preset's; on --resume, the run's own)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="recommended",
                   help="env + agent configuration; the flags below override single values")
    g.add_argument("--task", default=None,
                   help="task name, or a comma-separated list (e.g. digits,regression2d) for "
                        "round-robin episodes across tasks (default digits)")
    g.add_argument("--steps", type=_positive_int, default=None,
                   help=f"total env steps to train for (default: the preset's, else {DEFAULT_STEPS}; "
                        f"recommended: 800 steps of 25 updates each); with --resume, "
                        f"the total including the steps already done")
    g.add_argument("--seed", type=_nonneg_int, default=None, help="seed of the agent and the env (default 0)")
    g.add_argument("--num-envs", type=_positive_int, default=None,
                   help="primary runs trained in parallel in one batched env (envs.LearningRateVectorEnv; "
                        "ddpg/td3 only; default 1). Gradient steps per env step scale with it, so "
                        "the agent makes as many updates per transition as with one env")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="device of the primary model and the agent (small nets: cpu is fastest)")
    g.add_argument("--threads", type=_nonneg_int, default=1,
                   help="torch CPU threads (0: torch's default); 1 is fastest for these small nets")
    g.add_argument("--out", default=None,
                   help="run directory (default runs/<agent>-<task>-seed<seed>; with --resume, the "
                        "resumed run's directory)")
    g.add_argument("--data-root", default=None, help="directory holding datasets (mnist, cifar10)")
    g.add_argument("--checkpoint-every", type=_nonneg_int, default=1000,
                   help="write an atomic checkpoint every N env steps (0: only at the end)")
    g.add_argument("--resume", default=None,
                   help="continue a run: its directory or checkpoint file (settings come from it; "
                        "a user task 'module:function' must be named again with --task)")
    g.add_argument("--overwrite", action="store_true",
                   help="start a fresh run in an --out directory that already holds one, deleting its "
                        "checkpoint, settings, summary and TensorBoard logs")
    g.add_argument("--log-every", type=_positive_int, default=1,
                   help="log env/lr and env/batch_loss to TensorBoard every N steps")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = p.add_argument_group("environment (override the preset)")
    e.add_argument("--episode-length", type=_positive_int, default=None,
                   help="steps per episode (the paper's reset frequency e)")
    e.add_argument("--reward", choices=("same-batch", "next-batch", "validation", "probe"), default=None,
                   help="reward batch: the update's own (paper), the next, a held-out validation batch, or a fixed probe batch of training examples")
    e.add_argument("--reward-transform", choices=("raw", "log-ratio"), default=None,
                   help="loss decrement, or decrement of log loss")
    e.add_argument("--action", choices=("absolute", "relative", "raw", "capped"), default=None,
                   help="absolute log-lr, relative multiplicative change, the raw rate, or capped: "
                        "a log-lr and a log step-length cap, each update using min(lr, cap / ||g||)")
    e.add_argument("--step-cap-min", type=_finite_float, default=None,
                   help="--action capped: smallest step-length cap")
    e.add_argument("--step-cap-max", type=_finite_float, default=None,
                   help="--action capped: largest step-length cap")
    e.add_argument("--features", default=None,
                   help="comma-separated extra state features (lr, step_fraction, loss_ema, "
                        "loss_var, val_loss, grad_norm); 'none' for the loss only")
    e.add_argument("--lr-min", type=_finite_float, default=None, help="smallest learning rate")
    e.add_argument("--lr-max", type=_finite_float, default=None, help="largest learning rate")
    e.add_argument("--optimizer", default=None, help="primary optimizer (sgd, momentum, adam, ...)")
    e.add_argument("--per-group", action=argparse.BooleanOptionalAction, default=None,
                   help="one learning rate per layer (a vector action)")
    e.add_argument("--updates-per-step", type=_positive_int, default=None,
                   help="primary updates per env step: the chosen rate is held for k updates")
    e.add_argument("--log-observations", action=argparse.BooleanOptionalAction, default=None,
                   help="loss-like observation entries as log10")
    e.add_argument("--fresh-w0", action=argparse.BooleanOptionalAction, default=None,
                   help="re-draw the primary model's initial weights every episode")
    e.add_argument("--initial-lr", type=_finite_float, default=None,
                   help="starting rate of --action relative (default: geometric mean of the range)")
    e.add_argument("--relative-factor", type=_finite_float, default=None,
                   help="--action relative: the rate changes by at most this factor per decision")

    a = p.add_argument_group("agent hyperparameters (override the preset)")
    a.add_argument("--gamma", type=_finite_float, default=None, help="discount factor (all agents)")
    a.add_argument("--noise", type=_finite_float, default=None,
                   help="std of Gaussian exploration noise in [-1, 1] action units (all agents)")
    a.add_argument("--m-phi", type=_positive_int, default=None,
                   help="actor-critic: steps averaged per critic update")
    a.add_argument("--m-theta", type=_positive_int, default=None,
                   help="actor-critic: steps averaged per actor update")
    a.add_argument("--actor-lr", type=_finite_float, default=None, help="actor-critic: actor Adam lr")
    a.add_argument("--critic-lr", type=_finite_float, default=None, help="actor-critic: critic Adam lr")
    a.add_argument("--separate-sample", action=argparse.BooleanOptionalAction, default=None,
                   help="actor-critic: actor update on the next batch's state (the paper's choice)")
    a.add_argument("--target-tau", type=_optional_float, default=None,
                   help="actor-critic: Polyak rate of target networks ('none': no targets, the paper)")
    a.add_argument("--normalize-obs", action=argparse.BooleanOptionalAction, default=None,
                   help="actor-critic: running mean/std normalisation of observations")
    a.add_argument("--reward-scale", type=_finite_float, default=None,
                   help="actor-critic: multiply rewards by this")
    a.add_argument("--twin-critics", action=argparse.BooleanOptionalAction, default=None,
                   help="actor-critic: two critics, TD target from their minimum (TD3-style)")
    a.add_argument("--select-best", type=_nonneg_int, default=None, metavar="N",
                   help="every N episodes (policy-search: generations) run one deterministic episode on the "
                        "validation seed(s) (--eval-seed) and save the actor with the best return "
                        "as the checkpoint, not the last one (0: off)")
    a.add_argument("--collapse-termination", action=argparse.BooleanOptionalAction, default=None,
                   help="training only: end an episode as diverged (penalty) when the loss climbs "
                        "back to chance level (agents.wrappers.CollapseTermination)")
    a.add_argument("--finite-horizon", action=argparse.BooleanOptionalAction, default=None,
                   help="training only: the episode's end is terminal, no bootstrapping past it "
                        "(agents.wrappers.FiniteHorizon; needs step_fraction among the features)")
    a.add_argument("--eval-seed", type=_nonneg_int, action="append", default=None,
                   help="validation primary seed for --select-best (repeatable; default 500: "
                        "neither a training seed nor an evaluate.py test seed 1000+)")
    a.add_argument("--population", type=_positive_int, default=None,
                   help="policy-search: candidate controllers per generation (even)")
    a.add_argument("--elite-fraction", type=_finite_float, default=None,
                   help="policy-search: fraction of each generation the search distribution is fitted to")
    a.add_argument("--init-std", type=_finite_float, default=None,
                   help="policy-search: initial std of the policy parameters")
    a.add_argument("--workers", type=_positive_int, default=None,
                   help="policy-search: processes that run a generation's episodes side by side "
                        "(default: the machine's cores, at most the population)")
    a.add_argument("--agent-lr", type=_finite_float, default=None, help="ddpg/td3: Adam learning rate")
    a.add_argument("--learning-starts", type=_nonneg_int, default=None,
                   help="ddpg/td3: random-action steps before learning")
    a.add_argument("--batch-size", type=_positive_int, default=None, help="ddpg/td3: replay minibatch")
    a.add_argument("--buffer-size", type=_positive_int, default=None, help="ddpg/td3: replay buffer size")
    return p


# --------------------------------------------------------------------------- configuration
def _configure(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """Preset + flags -> settings dict (keys agent, preset, env_kwargs, agent_kwargs, train)."""
    from agents.presets import get_preset
    from agents.sb3 import SB3_HYPERPARAMS

    preset = get_preset(args.preset)
    env_kwargs = preset["env"]
    for flag, key in [("episode_length", "episode_length"), ("reward", "reward"),
                      ("reward_transform", "reward_transform"), ("action", "action"),
                      ("lr_min", "lr_min"), ("lr_max", "lr_max"), ("optimizer", "optimizer"),
                      ("per_group", "per_group"), ("updates_per_step", "updates_per_step"),
                      ("log_observations", "log_observations"), ("fresh_w0", "fresh_w0"),
                      ("initial_lr", "initial_lr"), ("relative_factor", "relative_factor"),
                      ("step_cap_min", "step_cap_min"), ("step_cap_max", "step_cap_max")]:
        if getattr(args, flag) is not None:
            env_kwargs[key] = getattr(args, flag)
    if args.features is not None:
        env_kwargs["features"] = [] if args.features.lower() == "none" else \
            [f.strip() for f in args.features.split(",") if f.strip()]
    agent = args.agent or preset.get("algo", "actor-critic")
    only = {"actor-critic": ["m_phi", "m_theta", "actor_lr", "critic_lr", "separate_sample", "target_tau",
                             "normalize_obs", "reward_scale", "twin_critics"],
            "policy-search": ["population", "elite_fraction", "init_std", "workers"],
            "sb3": ["agent_lr", "learning_starts", "batch_size", "buffer_size"]}
    family = agent if agent in only else "sb3"
    wrong = [f for name, flags in only.items() if name != family for f in flags if getattr(args, f) is not None]
    if agent == "policy-search":  # an episodic search has no discount and no action noise
        wrong += [f for f in ("gamma", "noise") if getattr(args, f) is not None]
    if wrong:
        parser.error(f"--{wrong[0].replace('_', '-')} does not apply to --agent {agent}")
    shared = preset["agent"]
    if args.gamma is not None:
        shared["gamma"] = args.gamma
    if args.noise is not None:
        shared["noise_std"] = args.noise
    num_envs = args.num_envs or 1
    if num_envs > 1 and agent in ("actor-critic", "policy-search"):
        parser.error(f"--num-envs > 1 works with --agent ddpg or td3; {agent} learns from one episode "
                     f"at a time (use --num-envs 1; policy-search runs episodes side by side with --workers)")
    if agent == "policy-search":
        agent_kwargs = dict(preset.get("policy_search", {}))
        for flag in ("population", "elite_fraction", "init_std"):
            if getattr(args, flag) is not None:
                agent_kwargs[flag] = getattr(args, flag)
    elif agent == "actor-critic":
        agent_kwargs = shared
        for flag in ("m_phi", "m_theta", "actor_lr", "critic_lr", "separate_sample",
                     "normalize_obs", "reward_scale", "twin_critics"):
            if getattr(args, flag) is not None:
                agent_kwargs[flag] = getattr(args, flag)
        if args.target_tau is not None:
            agent_kwargs["target_tau"] = args.target_tau
    else:
        agent_kwargs = {**SB3_HYPERPARAMS, **preset.get("sb3", {})}
        agent_kwargs["gamma"] = shared["gamma"]
        agent_kwargs["action_noise_std"] = shared["noise_std"]
        for flag, key in [("agent_lr", "learning_rate"), ("learning_starts", "learning_starts"),
                          ("batch_size", "batch_size"), ("buffer_size", "buffer_size")]:
            if getattr(args, flag) is not None:
                agent_kwargs[key] = getattr(args, flag)
        # SB3 counts one train_freq step per vector step (num_envs transitions): as many gradient
        # steps per transition as with one env
        agent_kwargs["gradient_steps"] = int(agent_kwargs["gradient_steps"]) * num_envs
    task = args.task or "digits"
    seed = 0 if args.seed is None else args.seed
    return {"agent": agent, "preset": args.preset, "env_kwargs": env_kwargs, "agent_kwargs": agent_kwargs,
            "train": {"task": task, "steps": args.steps or preset.get("train", {}).get("steps", DEFAULT_STEPS),
                      "seed": seed, "num_envs": args.num_envs or 1,
                      "device": args.device, "data_root": args.data_root,
                      "checkpoint_every": args.checkpoint_every,
                      "workers": args.workers,
                      # checkpoint selection: flag, else the preset's "train" section
                      "select_best": (args.select_best if args.select_best is not None else
                                      preset.get("train", {}).get("select_best", 0)),
                      "eval_seeds": args.eval_seed or preset.get("train", {}).get("eval_seeds", [500]),
                      "collapse_termination": bool(
                          args.collapse_termination if args.collapse_termination is not None
                          else preset.get("train", {}).get("collapse_termination", False)),
                      "finite_horizon": bool(
                          args.finite_horizon if args.finite_horizon is not None
                          else preset.get("train", {}).get("finite_horizon", False))}}


def _parse_tasks(text: str, parser: argparse.ArgumentParser) -> list[str]:
    from envs.tasks import TASKS

    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks:
        parser.error("--task: give a task name")
    unknown = [t for t in tasks if t not in TASKS and ":" not in t]  # "pkg.module:function": a user task
    if unknown:
        parser.error(f"--task: unknown task {unknown[0]!r}; choose from {', '.join(TASKS)} "
                     f"(or a comma-separated list of them)")
    return tasks


def make_training_env(settings: dict):
    """The env of a run: one LearningRateEnv per task (round-robin episodes if several).

    The full train/test loss is evaluated at each episode's end (``eval_every=episode_length``)
    so the summary can report the final primary loss; this is a training-time setting only.
    """
    from envs.learning_rate_env import LearningRateEnv

    env_kwargs = dict(settings["env_kwargs"])
    train = settings["train"]
    tasks = train["task"].split(",")
    num_envs = int(train.get("num_envs", 1))
    if num_envs > 1:
        # N primary runs in one batched env, seeds seed..seed+N-1, as an SB3 VecEnv
        if len(tasks) > 1:
            raise ValueError("--num-envs > 1 trains on one task; several tasks are not supported yet")
        from agents.vec_env import make_sb3_vec_env

        return make_sb3_vec_env(tasks[0], num_envs=num_envs, seed=train["seed"], device=train["device"],
                                data_root=train["data_root"], eval_every=env_kwargs["episode_length"],
                                collapse={} if train.get("collapse_termination") else None,
                                finite_horizon=bool(train.get("finite_horizon")), **env_kwargs)
    envs = [LearningRateEnv(task=t, seed=train["seed"], device=train["device"], data_root=train["data_root"],
                            eval_every=env_kwargs["episode_length"], **env_kwargs) for t in tasks]
    if train.get("collapse_termination"):
        from agents.wrappers import CollapseTermination

        envs = [CollapseTermination(e) for e in envs]
    if train.get("finite_horizon"):
        from agents.wrappers import FiniteHorizon

        envs = [FiniteHorizon(e) for e in envs]
    return envs[0] if len(envs) == 1 else RoundRobinEnv(envs)


def _round_robin_class():
    import gymnasium as gym

    class RoundRobin(gym.Env):
        """Episodes cycle through several envs with identical spaces (multi-task training)."""

        metadata = {"render_modes": []}

        def __init__(self, envs: list) -> None:
            super().__init__()
            first = envs[0]
            for other in envs[1:]:
                if other.observation_space != first.observation_space or \
                        other.action_space != first.action_space:
                    raise ValueError(
                        f"tasks {first.unwrapped.trainer.task.name!r} and "
                        f"{other.unwrapped.trainer.task.name!r} have different "
                        f"observation/action spaces (e.g. per_group with different layer counts); "
                        f"they cannot share one controller")
            self.envs, self.index = envs, -1
            self.observation_space, self.action_space = first.observation_space, first.action_space

        @property
        def current(self):
            return self.envs[max(self.index, 0)]

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            self.index = (self.index + 1) % len(self.envs)
            obs, info = self.envs[self.index].reset(seed=seed, options=options)
            info["task"] = self.envs[self.index].unwrapped.trainer.task.name
            return obs, info

        def step(self, action):
            obs, reward, terminated, truncated, info = self.envs[self.index].step(action)
            info["task"] = self.envs[self.index].unwrapped.trainer.task.name
            return obs, reward, terminated, truncated, info

    return RoundRobin


def RoundRobinEnv(envs: list):  # noqa: N802 - a factory that reads like a class
    """Round-robin env over ``envs`` (built lazily so ``--help`` does not import gymnasium)."""
    return _round_robin_class()(envs)


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agents.rundir import RunDirError, describe_os_error, remove_temp_files

    state: dict = {}
    try:
        return _main(args, parser, state)
    except RunDirError as exc:
        message = str(exc)
    except OSError as exc:  # a full disk, a read-only file system, ...: one line, no traceback
        message = describe_os_error(exc, state.get("out", args.out or "the run directory"))
    finally:
        if state.get("lock") is not None:
            state["lock"].release()
    if state.get("out") is not None:
        remove_temp_files(state["out"])
    if state.get("checkpoint") is not None and state["checkpoint"].is_file():
        message += f"; the last good checkpoint {state['checkpoint']} is kept"
    parser.exit(1, f"{parser.prog}: error: {message}\n")
    return 1


def _check_resume_task(args: argparse.Namespace, settings: dict, parser: argparse.ArgumentParser) -> None:
    """A run directory is data, never code: a user task (``module:function``) recorded in its
    settings.json is imported only when the user names the same task again with ``--task``."""
    from agents.settings_schema import user_tasks

    recorded = settings["train"]["task"]
    given = None if args.task is None else ",".join(t.strip() for t in args.task.split(",") if t.strip())
    if given is not None and given != ",".join(t.strip() for t in recorded.split(",")):
        parser.error(f"--resume: the run was trained on --task {recorded}, not {given}")
    users = user_tasks(settings)
    if users and given is None:
        parser.error(f"--resume: the run's settings.json names the user task {users[0]!r}, which would "
                     f"import and run code named by a file; a resumed run never does that by itself. "
                     f"If you trust that code, name it again: --task {recorded}")


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser, state: dict) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from agents.actor_critic import ActorCritic
    from agents.policy_search import PolicySearch
    from agents.callbacks import EnvInfoCallback, PeriodicCheckpoint, SelectBestCallback, TqdmCallback
    from agents.checkpoint import CHECKPOINT_NAMES, resolve_run
    from agents.io import CheckpointError, atomic_write_json, box_to_json, remove_stale_temp_files
    from agents.sb3 import load_sb3_safely, make_sb3_agent, save_sb3_atomic
    from agents.rundir import (DirectoryLock, RunDirError, clear_run_files, existing_run_files,
                               prepare_directory)
    from envs.primary import resolve_device
    from envs.tasks import DatasetUnavailableError

    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(f"--device: {exc}")

    # ---- settings: fresh from preset + flags, or from the run being resumed
    resume_ckpt = None
    if args.resume is not None:
        try:
            resume_ckpt, run_dir, settings = resolve_run(args.resume)
        except CheckpointError as exc:
            parser.error(f"--resume: {exc}")
        if args.agent is not None and args.agent != settings["agent"]:
            parser.error(f"--resume: the run was trained with --agent {settings['agent']}, not {args.agent}")
        _check_resume_task(args, settings, parser)
        out = Path(args.out) if args.out else run_dir
        if args.steps is not None:
            settings["train"]["steps"] = args.steps
        if args.num_envs is not None and args.num_envs != settings["train"].get("num_envs", 1):
            parser.error(f"--resume: the run was trained with --num-envs {settings['train'].get('num_envs', 1)}")
        settings["train"]["device"] = args.device
        settings["train"]["checkpoint_every"] = args.checkpoint_every
        if args.data_root is not None:
            settings["train"]["data_root"] = args.data_root
    else:
        settings = _configure(args, parser)
        _parse_tasks(settings["train"]["task"], parser)
        out = Path(args.out) if args.out else Path("runs") / (
            f"{settings['agent']}-{settings['train']['task'].replace(',', '+')}-seed{settings['train']['seed']}")
    # ---- the output directory: a directory (not a file, not below one), no run replaced silently
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is an existing file, not a directory; choose another --out")
    below = next((p for p in out.parents if p.exists()), None)
    if below is not None and not below.is_dir():
        raise RunDirError(f"--out {out}: lies below {below}, which is a file, not a directory")
    fresh_into_other = resume_ckpt is None or out.resolve() != run_dir.resolve()
    previous = existing_run_files(out) if fresh_into_other and out.is_dir() else []
    if previous and not args.overwrite:
        raise RunDirError(f"--out {out} already holds a run ({', '.join(previous)}): continue it with "
                          f"--resume {out}, or replace it with --overwrite")
    if settings["train"]["data_root"] is not None and not Path(settings["train"]["data_root"]).is_dir():
        parser.error(f"--data-root: {settings['train']['data_root']!r} is not a directory")
    agent_name, train = settings["agent"], settings["train"]
    ckpt_path = out / CHECKPOINT_NAMES[agent_name]

    # ---- env and agent
    try:
        env = make_training_env(settings)
    except DatasetUnavailableError as exc:
        parser.error(f"--task: {exc}")
    except (ValueError, TypeError) as exc:
        parser.error(f"bad environment settings: {exc}")
    settings["spaces"] = {"observation": box_to_json(env.observation_space),
                          "action": box_to_json(env.action_space)}
    try:
        if agent_name in ("actor-critic", "policy-search"):
            cls = ActorCritic if agent_name == "actor-critic" else PolicySearch
            extra = {}
            if agent_name == "policy-search":  # side-by-side episodes: each worker builds the run's env
                import functools
                import os

                workers = train.get("workers") or min(os.cpu_count() or 1,
                                                      settings["agent_kwargs"].get("population", 12))
                extra = {"workers": workers,
                         "env_factory": functools.partial(make_training_env, settings) if workers > 1 else None}
            if resume_ckpt is not None:
                model = cls.load(resume_ckpt, env=env, device=train["device"], **extra)
            else:
                model = cls(env, **settings["agent_kwargs"], seed=train["seed"], device=train["device"], **extra)
            save = lambda m: m.save(ckpt_path)  # noqa: E731
        else:
            if resume_ckpt is not None:
                model = load_sb3_safely(resume_ckpt, settings, env=env, device=train["device"])
            else:
                model = make_sb3_agent(agent_name, env, seed=train["seed"], device=train["device"],
                                       **settings["agent_kwargs"])
            save = lambda m: save_sb3_atomic(m, ckpt_path)  # noqa: E731
    except CheckpointError as exc:
        parser.error(f"--resume: {exc}")
    except (ValueError, TypeError) as exc:
        parser.error(f"bad agent settings: {exc}")

    prepare_directory(out)
    state["out"] = out
    state["lock"] = DirectoryLock(out, purpose="training").acquire()  # released by main()
    state["checkpoint"] = ckpt_path
    if previous:  # --overwrite: nothing of the old run may mix with the new one
        clear_run_files(out)
    remove_stale_temp_files(out, (ckpt_path.name, "settings.json", "summary.json"))
    atomic_write_json(out / "settings.json", settings)  # first, so a killed run can be resumed
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(str(out / "tb"), ["tensorboard"]))
    done_before = int(model.num_timesteps)
    remaining = max(0, train["steps"] - done_before)
    if resume_ckpt is not None and int(getattr(model, "interrupted_episode_steps", 0) or 0) > 0:
        # the checkpoint was written mid-episode (a kill or an interrupt): that episode ended there,
        # the resumed run starts a fresh one, so the counter matches an uninterrupted run's
        model._episode_num += 1
        model.interrupted_episode_steps = 0
    info_cb = EnvInfoCallback(log_every=args.log_every)
    checkpointer = PeriodicCheckpoint(train["checkpoint_every"], save)
    callbacks = [info_cb, checkpointer]
    if not args.no_progress:
        callbacks.append(TqdmCallback(total=train["steps"], desc=f"{agent_name} on {train['task']}"))

    # ---- checkpoint selection: a deterministic episode on validation seed(s) of the first task
    selector = None
    if train.get("select_best", 0) > 0:
        from envs.learning_rate_env import LearningRateEnv

        eval_kwargs = {**settings["env_kwargs"], "fresh_w0": False}
        eval_env = LearningRateEnv(task=train["task"].split(",")[0], device=train["device"],
                                   data_root=train["data_root"], **eval_kwargs)
        selector = SelectBestCallback(eval_env, int(train["select_best"]),
                                      tuple(int(s) for s in train.get("eval_seeds", [500])))
        callbacks.append(selector)

    # ---- train
    start = time.time()
    try:
        if remaining > 0:
            model.learn(remaining, callback=callbacks, log_interval=1,
                        reset_num_timesteps=resume_ckpt is None, progress_bar=False)
    except KeyboardInterrupt:
        checkpointer.save(model)
        print(f"\ninterrupted at step {model.num_timesteps}; checkpoint saved, continue with:\n"
              f"  python train_controller.py --resume {out}", file=sys.stderr)
        return 130
    wall = time.time() - start
    checkpointer.save(model)

    # ---- summary
    last = info_cb.last_episode or {}
    summary = {
        "agent": agent_name, "task": train["task"], "seed": train["seed"], "out": str(out),
        "steps_total": int(model.num_timesteps), "steps_this_run": int(model.num_timesteps) - done_before,
        "resumed_from_step": done_before if resume_ckpt is not None else None,
        "episodes_this_run": info_cb.episodes,
        "final_train_loss": last.get("final_train_loss"),
        "final_test_loss": last.get("final_test_loss"),
        "final_test_accuracy": last.get("final_test_accuracy"),
        "final_batch_loss": last.get("final_batch_loss"),
        "last_episode_diverged": last.get("diverged"),
        "last_episode_mean_lr": last.get("mean_lr"),
        "mean_lr": info_cb.mean_lr,
        "best_eval_return": selector.best_return if selector is not None else None,
        "best_eval_timestep": selector.best_timestep if selector is not None else None,
        "wall_time_s": round(wall, 2),
        "checkpoint": str(ckpt_path),
    }
    atomic_write_json(out / "summary.json", summary)
    fmt = lambda v: "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    print(f"\n{agent_name} on {train['task']} (seed {train['seed']}): {summary['steps_total']} steps "
          f"({summary['steps_this_run']} this run, {summary['episodes_this_run']} episodes) "
          f"in {wall:.1f} s\n"
          f"  last episode: final train loss {fmt(summary['final_train_loss'])}, "
          f"test loss {fmt(summary['final_test_loss'])}, final batch loss {fmt(summary['final_batch_loss'])}, "
          f"mean lr {fmt(summary['last_episode_mean_lr'])}, diverged {fmt(summary['last_episode_diverged'])}\n"
          f"  mean lr over training {fmt(summary['mean_lr'])}\n"
          f"  saved {ckpt_path}, {out / 'settings.json'}, {out / 'summary.json'}, TensorBoard: {out / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
