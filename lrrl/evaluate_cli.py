"""Evaluate trained learning-rate controllers against tuned optimizers: tables and figures.

    python evaluate.py [CHECKPOINT ...] --task digits --updates 1000 --seeds 5 --baselines all \\
        --out results/digits --jobs 2

A command line over :mod:`lrrl`: the baselines and their grids are
:mod:`lrrl.methods`, the tuning protocol :func:`lrrl.protocol.evaluate_methods`, the
sweep (one file per finished run in ``OUT/runs``, so a rerun resumes an interrupted sweep)
:mod:`lrrl.sweep`, the tables :mod:`lrrl.report`, the figures
:mod:`lrrl.plots`. Seeds are held out: ``--seeds 5`` means 1000..1004, never the seeds
controllers are trained on. Checkpoints (run directories of train_controller.py, or their
checkpoint files) are loaded with :func:`agents.checkpoint.load_controller` and run in an env with
their own observation/action settings; their RL return is also measured with SB3's
``evaluate_policy`` (``--episodes``).

Outputs in ``--out``: ``results.md`` (tables, also printed), ``summary.csv``, ``curves.csv``,
``results.json`` (everything), PNG figures, and ``runs/*.json``.

``--suite test`` (or ``train``) scores controllers and baselines on every family of that split
of the task suite (:mod:`envs.suite`, :mod:`lrrl.suite`): per instance the ratio of the final
training (and test) loss to SGD tuned on that instance, aggregated as the geometric mean (a
collapse scores 100), the IQM with bootstrap confidence intervals and performance profiles
(rliable); ``OUT/suite.md`` and ``suite.json``, each instance's own report under
``OUT/instances/FAMILY@SEED/``:

    python evaluate.py [CHECKPOINT ...] --suite test --instances 3 --out results/suite-test --jobs 2

Runs execute in this process, in ``--jobs`` local worker processes, or as Ray tasks on a cluster
(``--backend ray --ray-address auto``; the ``ray`` extra); the run directory is the same either
way, so a sweep interrupted on one resumes on the other.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

from lrrl.cli import command_name

from lrrl.config import DEFAULT_BATCH, HELD_OUT_SEED_START, EvaluationSettings, parse_seeds
from lrrl.methods import ALIASES, BASELINES
from lrrl.sweep import add_backend_arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("evaluate.py"), description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Baselines: " + ", ".join(BASELINES) + "; aliases: " + ", ".join(ALIASES))
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                   help="trained controllers: run directories of train_controller.py or the "
                        "checkpoint file (controller.pt / controller.zip) inside them, or "
                        "pretrained:NAME for a controller shipped with the package (sgd, adam)")
    p.add_argument("--task", default="digits",
                   help="evaluation task: digits (default, offline), regression2d (offline, adds "
                        "the paper's Figures 4 and 5), mnist, fashion-mnist, cifar10, or a user task "
                        "'package.module:function' (a function returning an envs.Task, e.g. "
                        "benchmarks.transfer:wine_task); a controller trained on another task is "
                        "labelled '(trained on TASK)'")
    p.add_argument("--updates", "--steps", dest="updates", type=int, default=1000,
                   help="primary updates (mini-batches) per run (--steps is its old name)")
    p.add_argument("--seeds", default="5",
                   help=f"a count N (held-out seeds {HELD_OUT_SEED_START}..{HELD_OUT_SEED_START}+N-1) "
                        f"or a comma-separated list of seeds (one explicit seed: '7,')")
    p.add_argument("--baselines", default="all",
                   help="comma-separated baseline names or aliases (all, lrfree, none), see below")
    p.add_argument("--grid", choices=("paper", "fine", "both"), default="both",
                   help="report the paper's decade grid, the fine grid around its best, or both")
    p.add_argument("--out", default=None, help="output directory (default results/evaluate-TASK)")
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel worker processes for independent runs (1 thread each; --backend local)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                   help="runs of one optimizer and env setting trained side by side in one batched vector env "
                        "(envs.LearningRateVectorEnv; 1: one run at a time; the same runs to float rounding)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="device of the primary model")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/CIFAR-10 files")
    p.add_argument("--eval-every", type=int, default=20,
                   help="measure full train/test loss every K updates (curve resolution)")
    p.add_argument("--divergence-factor", type=float, default=100.0,
                   help="a run counts as diverged when a mini-batch loss exceeds this multiple of its "
                        "first one (or is not finite); the env's default, generous because small "
                        "noisy batches such as regression2d's vary tenfold")
    p.add_argument("--episodes", type=int, default=3,
                   help="episodes for the RL policy evaluation of each checkpoint (0: skip)")
    g = p.add_argument_group("the task suite (envs.suite; lrrl.suite)")
    g.add_argument("--suite", choices=("train", "test"), default=None,
                   help="score on every family of this split of the task suite instead of one --task: "
                        "each instance on its own horizon, every ratio relative to SGD tuned on that "
                        "instance; writes OUT/suite.md and suite.json (--task, --updates, --seeds, --grid, "
                        "--eval-every, --episodes and --divergence-factor do not apply; --baselines all, the "
                        "default, means random,sgd,adam,clipped,lrfree there)")
    g.add_argument("--instances", type=int, default=3,
                   help="--suite: scoring instances per family (instance seeds 1000, 1001, ...)")
    g.add_argument("--families", default=None,
                   help="--suite: comma-separated subset of the split's families (default: all)")
    add_backend_arguments(p)
    return p


def suite_main(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """``--suite``: :func:`lrrl.suite.run_suite` over a split; prints the aggregate report."""
    from envs.tasks import DatasetUnavailableError
    from lrrl.protocol import check_controllers, load_controllers
    from lrrl.suite import SUITE_BASELINES, SuiteSettings, instance_settings, run_suite
    from lrrl.sweep import backend_from_args

    try:
        given = [flag for flag, value, default in (("--task", args.task, "digits"), ("--updates", args.updates, 1000),
                                                   ("--seeds", args.seeds, "5"), ("--grid", args.grid, "both"),
                                                   ("--eval-every", args.eval_every, 20), ("--episodes", args.episodes, 3),
                                                   ("--divergence-factor", args.divergence_factor, 100.0))
                 if value != default]
        if given:
            raise ValueError(f"{given[0]} does not apply with --suite (each instance has its own task, horizon "
                             f"and seed; use --families and --instances)")
        families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
        baselines = ",".join(SUITE_BASELINES) if args.baselines == "all" else args.baselines
        settings = SuiteSettings(split=args.suite, families=families, instances=args.instances, baselines=baselines,
                                 jobs=args.jobs, batch=args.batch,
                                 device="cpu" if args.device == "auto" else args.device).validate()
        from envs.suite import make_instance, scoring_seeds

        for family_name in settings.families:  # every instance builds (offline) before any run starts
            for seed in scoring_seeds(settings.instances):
                make_instance(family_name, seed)
        controllers = load_controllers(args.checkpoints, "suite", settings.device)
        # each controller's env, built once on the first instance before any run
        check_controllers(instance_settings(settings, settings.families[0], scoring_seeds(1)[0]), controllers)
        backend = backend_from_args(args)
    except (ValueError, DatasetUnavailableError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return _run_and_report(parser, args.out or f"results/suite-{settings.split}", "instances", argv, backend,
                           lambda out, command: run_suite(settings, controllers, out, command=command,
                                                          backend=backend))


def _run_and_report(parser: argparse.ArgumentParser, out_arg: str, kept_in: str, argv: Sequence[str] | None,
                    backend, run) -> int:
    """Run ``run(out, command) -> (results, text)`` into ``out_arg`` and print the report; a name the
    file system cannot hold is one line (exit 2) before any run, a failing disk or run directory
    one line (exit 1) saying that the finished runs in ``OUT/kept_in`` resume."""
    import torch

    from agents.rundir import RunDirError, check_path, describe_os_error, remove_temp_files

    try:
        out = check_path(out_arg)
    except RunDirError as exc:
        backend.close()
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    words = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        torch.set_num_threads(1)
        _, text = run(out, "python evaluate.py " + " ".join(shlex.quote(a) for a in words))
        print(text)
        return 0
    except RunDirError as exc:
        message = str(exc)
    except OSError as exc:  # a full disk, a read-only file system, ...: one line, no traceback
        message = describe_os_error(exc, out)
    finally:
        backend.close()
    if out.is_dir():
        remove_temp_files(out, recursive_into=(kept_in,))
        message += f"; finished runs are kept in {out / kept_in}, rerun the command to resume"
    parser.exit(1, f"{parser.prog}: error: {message}\n")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.suite is not None:
        return suite_main(args, parser, argv)
    from envs.tasks import DatasetUnavailableError, make_task
    from lrrl.protocol import check_controllers, load_controllers, run_evaluation
    from lrrl.sweep import backend_from_args

    try:
        settings = EvaluationSettings(
            task=args.task, updates=args.updates, seeds=parse_seeds(args.seeds), baselines=[args.baselines],
            grid=args.grid, jobs=args.jobs, device=args.device, data_root=args.data_root,
            eval_every=args.eval_every, divergence_factor=args.divergence_factor, episodes=args.episodes,
            batch=args.batch).validate()
        make_task(settings.task, data_root=settings.data_root)  # its files exist (no work before this)
        controllers = load_controllers(args.checkpoints, settings.task, settings.device)
        check_controllers(settings, controllers)  # each controller's env, built once before any run
        if not settings.baselines and not controllers:
            raise ValueError("nothing to evaluate: give checkpoints and/or --baselines")
        backend = backend_from_args(args)  # Ray connects here: before anything is written
    except (ValueError, DatasetUnavailableError) as exc:  # bad input: one line, exit status 2
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return _run_and_report(parser, args.out or f"results/evaluate-{settings.task}", "runs", argv, backend,
                           lambda out, command: run_evaluation(settings, controllers, out, command=command,
                                                               backend=backend))
