"""Train a learning-rate controller: the paper's actor-critic, an episodic policy search, or SB3
DDPG/TD3, on LearningRateEnv.

    python train_controller.py                      # the recommended preset (policy search) on the task suite's train families
    python train_controller.py --agent td3 --steps 20000 --task digits,regression2d
    python train_controller.py --resume runs/actor-critic-digits-seed0 --steps 20000
    python train_controller.py --seeds 0-4 --jobs 2 --out runs/five      # five controllers, OUT/seed-K
    python train_controller.py --seeds 0-4 --backend ray --ray-address auto   # as Ray tasks on a cluster

Writes a run directory (``--out``, default ``runs/<agent>-<task>-seed<seed>``):
``controller.pt`` (actor-critic, policy-search) or ``controller.zip`` (SB3), ``settings.json`` (agent, preset,
env_kwargs, agent_kwargs, train), ``tb/`` (TensorBoard, SB3 layout: ``rollout/ep_rew_mean``,
``env/lr``, ``env/batch_loss``, ...) and ``summary.json``. Load a run with
``agents.checkpoint.load_controller(DIR)``.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Sequence

from agents.registry import AGENT_TYPES
from envs.suite import TRAINING_TASK
from lrrl.cli import command_name
from lrrl.config import AGENT_KEYS, SELECTION_SEED


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


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else _finite_float(text)


def preset_budget(name: str) -> str:
    """A preset's default training budget in words, derived from the preset itself (so ``--help``
    cannot drift from it): ``"5760 steps of 25 updates each (12 generations of 480 steps)"``."""
    from lrrl.config import TrainSettings

    settings = TrainSettings.from_preset(name)
    updates = int(settings.env_kwargs.get("updates_per_step", 1))
    text = f"{settings.steps} steps" + (f" of {updates} updates each" if updates > 1 else "")
    generation = settings.generation_steps
    if generation is not None:
        text += f" ({settings.steps // generation} generations of {generation} steps)"
    return text


def preset_budgets() -> str:
    """Every preset's :func:`preset_budget`, ``name: budget`` joined by ``"; "``."""
    from lrrl.presets import PRESETS

    return "; ".join(f"{name}: {preset_budget(name)}" for name in sorted(PRESETS))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults only (``None`` means: the preset's value)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def add_env_arguments(group) -> None:
    """One flag per env setting that has one (:func:`envs.config.flag_settings`: ``--lr-min`` for
    ``lr_min``, ...), its type, choices and help taken from the setting's definition."""
    from envs.config import flag_settings

    types = {"positive_int": _positive_int, "float": _finite_float, "str": str, "list": str}
    for name, f in flag_settings().items():
        kind, meta = f.metadata["flag"], f.metadata
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=meta["help"])
        elif kind == "choice":
            group.add_argument(flag, choices=meta["choices"], default=None, help=meta["help"])
        else:
            group.add_argument(flag, type=types[kind], default=None, help=meta["help"])


def _add_run_arguments(g) -> None:
    """What to train, where, how long, and how it is checkpointed and shown."""
    from lrrl.presets import PRESETS

    g.add_argument("--agent", choices=tuple(AGENT_TYPES), default=None,
                   help="controller to train (default: the preset's; on --resume, the run's own)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="recommended",
                   help="env + agent configuration; the flags below override single values")
    g.add_argument("--task", default=None,
                   help="task name, or a comma-separated list (e.g. digits,regression2d) for "
                        "round-robin episodes across tasks, or suite-train: a fresh instance of the "
                        "task suite's train families every episode (default: the preset's, else digits)")
    g.add_argument("--steps", type=_positive_int, default=None,
                   help=f"total env steps to train for (default: the preset's: {preset_budgets()}); "
                        f"a policy search needs at least one generation; with --resume, "
                        f"the total including the steps already done")
    g.add_argument("--seed", type=_nonneg_int, default=None, help="seed of the agent and the env (default 0)")
    g.add_argument("--seeds", default=None,
                   help="train one controller per seed, e.g. 0-4, 0,3,7 or a count K (seeds 0..K-1), each into "
                        "its own run directory (--out OUT: OUT/seed-K; default runs/<agent>-<task>-seed<K>), "
                        "as tasks of --backend (local: --jobs processes; ray: Ray tasks)")
    g.add_argument("--jobs", type=_positive_int, default=1,
                   help="--seeds with --backend local: controllers trained at once in worker processes")
    g.add_argument("--num-envs", type=_positive_int, default=None,
                   help="primary runs trained in parallel in one batched env (envs.LearningRateVectorEnv; "
                        "default 1): N parallel episodes. The agent makes as many updates per transition "
                        "as with one env (SB3: N gradient steps per vector step); the policy search runs "
                        "a generation's candidates N at a time (instead of --workers processes)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="device of the primary model and the agent (small nets: cpu is fastest)")
    g.add_argument("--threads", type=_nonneg_int, default=None,
                   help="torch CPU threads (0: torch's default, all cores). Default: 1, fastest for these "
                        "small nets one env per process; with --num-envs > 1, 0 (one process then trains "
                        "all N networks, and its batched step uses every core)")
    g.add_argument("--out", default=None,
                   help="run directory (default runs/<agent>-<task>-seed<seed>; with --resume, the "
                        "resumed run's directory)")
    g.add_argument("--data-root", default=None, help="directory holding datasets (mnist, cifar10)")
    g.add_argument("--checkpoint-every", type=_nonneg_int, default=1000,
                   help="write an atomic checkpoint every N env steps (0: only at the end)")
    g.add_argument("--resume", default=None,
                   help="continue a run: its directory or checkpoint file (settings come from it; "
                        "a user task 'module:function' must be named again with --task). A resume accepts "
                        + ", ".join("--" + d.replace("_", "-") for d in RESUME_FLAGS if d != "resume")
                        + "; any other flag is refused")
    g.add_argument("--overwrite", action="store_true",
                   help="start a fresh run in an --out directory that already holds one, deleting its "
                        "checkpoint, settings, summary and TensorBoard logs")
    g.add_argument("--log-every", type=_positive_int, default=1,
                   help="log env/lr and env/batch_loss to TensorBoard every N steps")
    g.add_argument("--no-progress", action="store_true", help="no progress bar and no progress lines")
    g.add_argument("--progress-every", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="when stdout is not a terminal (a log file, CI, a cluster job): print one progress "
                        "line (steps done/total, elapsed time, best episode return so far) every SECONDS")


def _add_agent_arguments(a) -> None:
    """The agents' hyperparameters and the training-only settings (each flag's dest is a key of
    :data:`lrrl.config.AGENT_KEYS`, or a training setting)."""
    a.add_argument("--gamma", type=_finite_float, default=None, help="discount factor (all agents)")
    a.add_argument("--noise-std", "--noise", dest="noise_std", type=_finite_float, default=None,
                   help="std of Gaussian exploration noise in the actor's action units: [-1, 1], or the "
                        "rate itself with --actor-output linear (actor-critic, ddpg, td3; --noise is its old name)")
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
    a.add_argument("--actor-output", choices=("tanh", "linear"), default=None,
                   help="actor-critic: tanh (an action in [-1, 1] mapped onto the env's action box) or "
                        "linear (the paper's: the actor's output is the action itself, e.g. the rate with "
                        "--action raw, clipped to [lr-min, lr-max])")
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
                   help=f"validation primary seed for --select-best (repeatable; default {SELECTION_SEED}: "
                        "neither a training seed nor an evaluate.py test seed 1000+)")
    a.add_argument("--population", type=_positive_int, default=None,
                   help="policy-search: candidate controllers per generation (even)")
    a.add_argument("--elite-fraction", type=_finite_float, default=None,
                   help="policy-search: fraction of each generation the search distribution is fitted to")
    a.add_argument("--init-std", type=_finite_float, default=None,
                   help="policy-search: initial std of the policy parameters")
    a.add_argument("--episodes-per-candidate", type=_positive_int, default=None,
                   help="policy-search: episodes (problems, on --task suite-train) each candidate runs per "
                        "generation, scored by its rank in each and -1 for a collapse")
    a.add_argument("--workers", type=_positive_int, default=None,
                   help="policy-search: processes that run a generation's episodes side by side "
                        "(default: the machine's cores, at most the population)")
    a.add_argument("--learning-rate", "--agent-lr", dest="learning_rate", type=_finite_float, default=None,
                   help="ddpg/td3: the agent's Adam learning rate (--agent-lr is its old name)")
    a.add_argument("--learning-starts", type=_nonneg_int, default=None,
                   help="ddpg/td3: random-action steps before learning")
    a.add_argument("--batch-size", type=_positive_int, default=None, help="ddpg/td3: replay minibatch")
    a.add_argument("--buffer-size", type=_positive_int, default=None, help="ddpg/td3: replay buffer size")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("train_controller.py"), usage="%(prog)s [options]   (--help lists them)",
        description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter)
    from lrrl.sweep import add_backend_arguments

    _add_run_arguments(p.add_argument_group("run"))
    add_backend_arguments(p)
    add_env_arguments(p.add_argument_group("environment (override the preset)"))
    _add_agent_arguments(p.add_argument_group("agent hyperparameters (override the preset)"))
    return p


#: what a ``--resume`` accepts: where and how long the run goes on; everything else is the run's own
#: (``--agent``, ``--num-envs`` and ``--task`` only when they name the run's own values)
RESUME_FLAGS = ("resume", "steps", "out", "task", "device", "data_root", "checkpoint_every", "overwrite",
                "log_every", "no_progress", "progress_every", "threads", "agent", "num_envs")
#: backend flags that only matter when several seeds train as tasks of a backend (``--seeds``)
SEEDS_ONLY_FLAGS = ("backend", "jobs", "ray_address", "cpus_per_run", "gpus_per_run", "max_retries")


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, str]:
    """The flags given on the command line ``argv`` (not left at their default): dest -> the
    flag as written in ``--help``."""
    import copy

    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    names = vars(probe.parse_args(list(argv)))
    return {a.dest: a.option_strings[0] if a.option_strings else a.dest
            for a in parser._actions if a.dest in names}


def check_flag_combinations(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Refuse flags that would be silently ignored: a ``--resume`` takes only :data:`RESUME_FLAGS`
    (the rest are the run's own settings), backend flags need ``--seeds``. ``parser.error``."""
    given = given_flags(parser, argv)
    if "resume" in given:
        refused = [flag for dest, flag in given.items() if dest not in RESUME_FLAGS]
        if refused:
            flag_of = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
            accepted = ", ".join(flag_of[d] for d in RESUME_FLAGS if d != "resume")
            parser.error(f"--resume continues a run with the settings it was trained with, so "
                         f"{', '.join(refused)} cannot change; a resume accepts {accepted} "
                         f"(--task, --agent and --num-envs only with the run's own values; start a "
                         f"fresh run with --out to change the others)")
    if "seeds" not in given:
        ignored = [flag for dest, flag in given.items() if dest in SEEDS_ONLY_FLAGS and dest not in ("backend", "jobs")]
        if ignored:
            parser.error(f"{', '.join(ignored)} only apply to several seeds trained as tasks of a backend "
                         f"(--seeds); one run trains in this process")


# --------------------------------------------------------------------------- configuration
#: every agent hyperparameter flag (its dest is the key in lrrl.config.AGENT_KEYS)
AGENT_FLAGS = tuple(dict.fromkeys(k for keys in AGENT_KEYS.values() for k in keys))


def settings_from_args(args: argparse.Namespace):
    """Preset + flags -> :class:`lrrl.config.TrainSettings` (``ValueError`` naming a flag)."""
    from lrrl.config import TrainSettings

    from envs.config import flag_settings

    env = {}
    for name, f in flag_settings().items():
        value = getattr(args, name)
        if value is not None and f.metadata["flag"] == "list":  # comma-separated; 'none': empty
            value = [] if value.lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]
        env[name] = value
    agent_overrides = {k: getattr(args, k) for k in AGENT_FLAGS}
    return TrainSettings.from_preset(
        args.preset, agent=args.agent, env=env, agent_overrides=agent_overrides,
        task=args.task, steps=args.steps, seed=args.seed,
        num_envs=args.num_envs, device=args.device, data_root=args.data_root,
        checkpoint_every=args.checkpoint_every, workers=args.workers, select_best=args.select_best,
        eval_seeds=args.eval_seed, collapse_termination=args.collapse_termination,
        finite_horizon=args.finite_horizon)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(argv)
    check_flag_combinations(parser, argv)
    import torch

    from agents.rundir import RunDirError, describe_os_error
    from envs.primary import resolve_device
    from lrrl import training
    from lrrl.config import SettingsError

    threads = training.default_threads(args.threads, args.num_envs)
    if threads:
        torch.set_num_threads(threads)
    if args.seeds is not None:
        return _train_seeds(parser, args)
    if args.backend != "local" or args.jobs != 1:
        parser.error("--backend and --jobs train several seeds (--seeds); one run trains in this process")
    out = args.out
    try:
        resolve_device(args.device)
        if args.resume is not None:
            from agents.checkpoint import resolve_run
            from agents.io import CheckpointError

            try:
                _, run_dir, recorded = resolve_run(args.resume)
            except CheckpointError as exc:
                raise SettingsError(f"--resume: {exc}") from None
            out = args.out or run_dir
            if args.agent is not None and args.agent != recorded["agent"]:  # they are the run's own
                raise SettingsError(f"--resume: the run was trained with --agent {recorded['agent']}, "
                                    f"not {args.agent}")
            if args.num_envs is not None and args.num_envs != recorded["train"].get("num_envs", 1):
                raise SettingsError(f"--resume: the run was trained with --num-envs "
                                    f"{recorded['train'].get('num_envs', 1)}")
            run = functools.partial(training.resume, args.resume, steps=args.steps, out=args.out, task=args.task,
                                    device=args.device, data_root=args.data_root,
                                    checkpoint_every=args.checkpoint_every)
        else:
            settings = settings_from_args(args)
            out = args.out or str(training.default_run_dir(settings))
            run = functools.partial(training.train, settings, out)
            generation = settings.generation_steps
            if generation is not None and TRAINING_TASK in settings.tasks:
                # suite instances have their own horizons: a generation's length is known as it runs
                print(f"note: the policy search runs whole generations of at most {generation} steps "
                      f"(each suite instance has its own horizon): --steps {settings.steps} trains at "
                      f"least {settings.steps // generation} generation(s)", file=sys.stderr)
            elif generation is not None and settings.steps % generation:
                print(f"note: the policy search runs whole generations of {generation} steps: --steps "
                      f"{settings.steps} trains {settings.steps // generation * generation} steps "
                      f"({settings.steps // generation} generations)", file=sys.stderr)
    except ValueError as exc:  # bad flags or settings: one line, exit status 2, nothing written
        parser.error(str(exc))
    try:
        summary = run(overwrite=args.overwrite, progress=not args.no_progress, log_every=args.log_every,
                      progress_every=args.progress_every)
    except SettingsError as exc:
        parser.error(str(exc))
    except training.TrainingInterrupted as exc:
        print(f"\n{exc}; continue with:\n  python train_controller.py --resume {exc.out}", file=sys.stderr)
        return 130
    except RunDirError as exc:
        return _fail(parser, str(exc), out)
    except OSError as exc:  # a full disk, a read-only file system, ...: one line, no traceback
        return _fail(parser, describe_os_error(exc, out or "the run directory"), out)
    _print_summary(summary)
    return 0


def _train_seeds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--seeds``: one controller per seed, each a task of the backend (lrrl.training.train_seeds)."""
    from tqdm.auto import tqdm

    from agents.rundir import RunDirError, describe_os_error
    from lrrl import training
    from lrrl.config import parse_seeds
    from lrrl.sweep import backend_from_args

    if args.resume is not None or args.seed is not None:
        parser.error("--seeds trains fresh runs: not with --resume or --seed (resume each run with --resume OUT/seed-K)")
    try:
        seeds = parse_seeds(args.seeds, count_start=0)
        settings = settings_from_args(args)
        outs = training.seed_run_dirs(settings, seeds, args.out)
        backend = backend_from_args(args)  # Ray connects here: before anything is written
    except ValueError as exc:  # bad flags, settings or backend: one line, exit status 2, nothing written
        parser.error(str(exc))
    bar = tqdm(desc=f"{settings.agent} on {settings.task}, {len(seeds)} seeds", unit="run", disable=args.no_progress)
    try:
        with backend:
            results = training.train_seeds(settings, seeds, outs, backend=backend, overwrite=args.overwrite, bar=bar)
    except RunDirError as exc:
        return _fail(parser, str(exc), None)
    except OSError as exc:  # a full disk, a read-only file system, ...: one line, no traceback
        return _fail(parser, describe_os_error(exc, args.out or "the run directories"), None)
    finally:
        bar.close()
    failed = [r for r in results if "error" in r]
    for r in results:
        if "error" not in r:
            _print_summary(r)
    for r in failed:
        print(f"{parser.prog}: error: seed {r['seed']} ({r['out']}): {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def _fail(parser: argparse.ArgumentParser, message: str, out) -> int:
    from pathlib import Path

    from agents.checkpoint import CHECKPOINT_NAMES

    kept = [Path(out) / name for name in sorted(set(CHECKPOINT_NAMES.values()))] if out else []
    try:
        kept = [p for p in kept if p.is_file()]
    except OSError:  # an --out the file system cannot even look up
        kept = []
    if kept:
        message += f"; the last good checkpoint {kept[0]} is kept"
    parser.exit(1, f"{parser.prog}: error: {message}\n")
    return 1


def _print_summary(summary: dict) -> None:
    """The run in a few lines; the last two are the saved controller's own result on the
    validation seed and constant SGD's on the same seed (the last training episode is an
    exploration episode, labelled as such)."""
    fmt = lambda v: "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    out = summary["out"]

    def result(r: dict) -> str:
        if r.get("error"):
            return f"could not be measured ({r['error']})"
        if r.get("diverged"):
            return "diverged"
        return (f"final train loss {fmt(r.get('final_train_loss'))}, test loss {fmt(r.get('final_test_loss'))}, "
                f"test accuracy {fmt(r.get('final_test_accuracy'))}")

    last = summary.get("last_training_episode") or {}
    sgd = summary.get("sgd_reference") or {}
    mine = {k: summary.get(k) for k in ("final_train_loss", "final_test_loss", "final_test_accuracy", "diverged")}
    if summary.get("controller_error"):
        mine["error"] = summary["controller_error"]
    print(f"\n{summary['agent']} on {summary['task']} (seed {summary['seed']}): {summary['steps_total']} steps "
          f"({summary['steps_this_run']} this run, {summary['episodes_this_run']} episodes) "
          f"in {summary['wall_time_s']:.1f} s\n"
          f"  last training episode (exploration, not the saved controller): final train loss "
          f"{fmt(last.get('final_train_loss'))}, mean lr {fmt(last.get('mean_lr'))}, diverged {fmt(last.get('diverged'))}\n"
          f"  mean lr over training {fmt(summary['mean_lr'])}\n"
          f"  saved {summary['checkpoint']}, {out}/settings.json, {out}/summary.json, TensorBoard: {out}/tb\n"
          f"  saved controller on validation seed {summary.get('validation_seed')}: {result(mine)}, "
          f"mean lr {fmt(summary.get('controller_mean_lr'))}\n"
          f"  constant SGD at lr {fmt(sgd.get('lr'))}, same seed: {result(sgd)}")
