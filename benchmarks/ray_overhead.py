"""Ray's overhead: one evaluation command with the local process pool and with a local Ray.

    python benchmarks/ray_overhead.py                    # digits, SGD grids, 300 updates, 3 seeds, 2 repeats
    python benchmarks/ray_overhead.py --updates 1000 --seeds 10 --baselines all   # the README's command

Each repeat runs ``evaluate.py --task T --updates N --seeds S --baselines B --grid G --episodes 0``
twice, each in a fresh process and a fresh output directory, the two in alternating order:
``--backend local --jobs J`` and ``--backend ray`` (a local Ray started by the command with this
machine's cores, one CPU per task, so as many tasks at once as ``--jobs`` processes on a J-core
machine). It prints, per repeat and backend, the command's wall time, the sweep's own wall time
(``results.json``: from the first run submitted to the last one written, Ray's start-up and
shut-down excluded) and the number of runs, then Ray minus local: the command's difference, the
sweep's difference, Ray's overhead per run (sweep difference / runs; runs go ``--batch`` at a time
side by side, so per run means per run of the sweep, not per Ray task) and Ray's fixed start-up
and shut-down (command difference - sweep difference). The two backends' tables must be the same
(method, protocol, parameter, mean final training loss); the script says so or fails.
JSON goes to ``results/bench/ray_overhead.json``. Needs the ``ray`` extra.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS_DIR, fail, machine_info, write_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/ray_overhead.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default="digits")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--seeds", default="3", help="evaluate.py --seeds")
    p.add_argument("--baselines", default="sgd")
    p.add_argument("--grid", default="both", choices=("paper", "fine", "both"))
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2, help="local worker processes (and a local Ray's CPUs per task: 1)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=str(RESULTS_DIR / "ray_overhead.json"))
    return p


def evaluate_command(args: argparse.Namespace, backend: str, out: Path) -> list[str]:
    words = ["evaluate.py", "--task", args.task, "--updates", str(args.updates), "--seeds", args.seeds,
             "--baselines", args.baselines, "--grid", args.grid, "--eval-every", str(args.eval_every),
             "--episodes", "0", "--out", str(out), "--backend", backend]
    return words + (["--jobs", str(args.jobs)] if backend == "local" else [])


def run_once(args: argparse.Namespace, backend: str, out: Path) -> dict:
    words = evaluate_command(args, backend, out)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / words[0]), *words[1:]], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        fail(f"{backend}: evaluate.py exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    results = json.loads((out / "results.json").read_text())
    errors = [r["key"] for r in results["runs"].values() if r["status"] == "error"]
    if errors:
        fail(f"{backend}: {len(errors)} runs ended in an error, e.g. {errors[0]}")
    table = [(r["method"], r["protocol"], json.dumps(r["param"]), r["train_loss_mean"]) for r in results["summary"]]
    return {"backend": backend, "command_s": wall, "sweep_s": results["wall_time"], "runs": len(results["runs"]),
            "table": table}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.jobs < 1 or args.updates < 1:
        fail("--repeats, --jobs and --updates must be >= 1")
    try:
        import ray  # noqa: F401
    except ImportError:
        fail('this benchmark needs Ray: pip install -e ".[ray]"')
    rows = []
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        for rep in range(args.repeats):
            order = ("local", "ray") if rep % 2 == 0 else ("ray", "local")
            for backend in order:
                row = {"repeat": rep, **run_once(args, backend, Path(tmp) / f"{backend}-{rep}")}
                rows.append(row)
                print(f"repeat {rep} {backend:5s}: command {row['command_s']:6.1f} s, sweep {row['sweep_s']:6.1f} s, "
                      f"{row['runs']} runs", flush=True)
    tables = {json.dumps(r["table"]) for r in rows}
    if len(tables) != 1:
        fail("the local and the Ray tables differ: " + " / ".join(sorted(tables))[:1000])
    per_repeat = []
    for rep in range(args.repeats):
        local, on_ray = (next(r for r in rows if r["repeat"] == rep and r["backend"] == b) for b in ("local", "ray"))
        command_diff, sweep_diff = on_ray["command_s"] - local["command_s"], on_ray["sweep_s"] - local["sweep_s"]
        per_repeat.append({"repeat": rep, "runs": local["runs"], "command_local_s": local["command_s"],
                           "command_ray_s": on_ray["command_s"], "command_diff_s": command_diff,
                           "sweep_local_s": local["sweep_s"], "sweep_ray_s": on_ray["sweep_s"],
                           "sweep_diff_s": sweep_diff, "overhead_per_run_s": sweep_diff / local["runs"],
                           "startup_shutdown_s": command_diff - sweep_diff})
    command = "python " + " ".join(evaluate_command(args, "local|ray", Path("DIR")))
    print(f"\n{command}  (local: --jobs {args.jobs}; ray: a local Ray, 1 CPU per task)")
    print("| repeat | runs | command, local | command, Ray | sweep, local | sweep, Ray | Ray overhead per run | "
          "Ray start-up + shut-down |")
    print("|---|---|---|---|---|---|---|---|")
    for r in per_repeat:
        print(f"| {r['repeat']} | {r['runs']} | {r['command_local_s']:.1f} s | {r['command_ray_s']:.1f} s | "
              f"{r['sweep_local_s']:.1f} s | {r['sweep_ray_s']:.1f} s | {r['overhead_per_run_s']:+.2f} s | "
              f"{r['startup_shutdown_s']:+.1f} s |")
    print(f"median Ray overhead per run {statistics.median(r['overhead_per_run_s'] for r in per_repeat):+.2f} s; "
          f"median start-up + shut-down {statistics.median(r['startup_shutdown_s'] for r in per_repeat):+.1f} s; "
          f"the two backends' tables are the same")
    path = write_json(args.json, {"command": command, "settings": vars(args), "machine": machine_info(),
                                  "runs": [{k: v for k, v in r.items() if k != "table"} for r in rows],
                                  "per_repeat": per_repeat})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
