"""The Ray backend of the one sweep (issue 15), on a local Ray of 2 CPUs started once for the module.

Skipped, with the reason, when Ray (the optional ``ray`` extra) is not installed; ``.ci/run``
installs it, so these run in CI. The tests that need no Ray are in tests/test_backends.py.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed (the optional extra: pip install -e ".[ray]"; '
                                        '.ci/run installs it)')

import evaluate  # noqa: E402
from lrrl import protocol  # noqa: E402
from lrrl.config import EvaluationSettings  # noqa: E402
from lrrl.ray_backend import RayPool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--task", "regression2d", "--updates", "10", "--seeds", "2", "--eval-every", "5",
         "--baselines", "sgd,vsgd", "--grid", "paper", "--episodes", "0"]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray with 2 CPUs for the whole module; its workers see ``LRRL_TEST_DIE_ONCE`` (the
    marker file of tests/user_tasks/dies_once.py), the test process does not."""
    marker = tmp_path_factory.mktemp("ray") / "worker-died"
    # Ray workers do not inherit the test's sys.path: tests/ (user_tasks) and the project on PYTHONPATH
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"LRRL_TEST_DIE_ONCE": str(marker), "PYTHONPATH": path}})
    yield marker
    ray.shutdown()


def _table(text: str) -> list[str]:
    """The summary table's rows without the last column (wall time)."""
    return [line.rsplit("|", 2)[0] for line in text.splitlines() if line.startswith("| ")]


def test_ray_sweep_gives_the_local_table_and_the_run_directories_are_interchangeable(local_ray, tmp_path, capsys):
    assert evaluate.main([*SMALL, "--out", str(tmp_path / "local")]) == 0
    local = capsys.readouterr().out
    assert evaluate.main([*SMALL, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    on_ray = capsys.readouterr().out
    assert "(0 resumed" in on_ray and "| SGD | decade grid (paper) | 0.1 |" in on_ray
    assert _table(on_ray) == _table(local) and len(_table(local)) >= 4
    assert ray.is_initialized()  # the test's Ray was used, and left running for the next tests
    runs = sorted((tmp_path / "ray" / "runs").glob("*.json"))
    assert len(runs) == 12
    # the run files (written by the driver) are the local backend's: a sweep stopped on a
    # cluster resumes on a laptop, and the other way round
    for path in runs:
        a, b = json.loads(path.read_text()), json.loads((tmp_path / "local" / "runs" / path.name).read_text())
        assert a["common"] == b["common"] and a["spec"] == b["spec"] and a["status"] == b["status"]
    for name in ("sgd_0.01_s1001.json", "vsgd_s1000.json"):
        os.remove(tmp_path / "ray" / "runs" / name)
    assert evaluate.main([*SMALL, "--out", str(tmp_path / "ray")]) == 0  # resumed locally
    resumed_locally = capsys.readouterr().out
    assert "(10 resumed" in resumed_locally and _table(resumed_locally) == _table(local)
    os.remove(tmp_path / "local" / "runs" / "sgd_1_s1000.json")
    assert evaluate.main([*SMALL, "--out", str(tmp_path / "local"), "--backend", "ray"]) == 0  # and on Ray
    resumed_on_ray = capsys.readouterr().out
    assert "(11 resumed" in resumed_on_ray and _table(resumed_on_ray) == _table(local)


def _evaluate(out, backend, task="user_tasks.dies_once:make", batch=16):
    settings = EvaluationSettings(task=task, updates=10, seeds=[1000, 1001], eval_every=5, baselines=["sgd,vsgd"],
                                  grid="paper", episodes=0, batch=batch).validate()
    out.mkdir(parents=True, exist_ok=True)
    return protocol.evaluate_methods(settings, [], out, progress=False, backend=backend)


def test_a_worker_killed_mid_sweep_is_retried_and_the_sweep_completes(local_ray, tmp_path):
    marker = local_ray
    assert not marker.exists()
    pool = RayPool(max_retries=2)
    assert pool.parallelism == 2
    results = _evaluate(tmp_path / "ray", pool)  # the first task to build the task kills its worker
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a Ray worker died (SIGKILL)
    assert len(results.records) == 12
    assert all(r["status"] == "ok" for r in results.records.values()), \
        [r["message"] for r in results.records.values() if r["status"] != "ok"]
    assert len(list((tmp_path / "ray" / "runs").glob("*.json"))) == 12
    local = _evaluate(tmp_path / "local", None)  # the same runs, no worker dies here
    assert [(r["method"], r["param"]) for r in results.rows] == [(r["method"], r["param"]) for r in local.rows]
    assert [r["train_loss_mean"] for r in results.rows] == pytest.approx([r["train_loss_mean"] for r in local.rows])


def test_a_worker_that_dies_with_no_retries_left_is_an_error_row_not_a_crash(local_ray, tmp_path):
    local_ray.unlink(missing_ok=True)  # the next build kills its worker again
    pool = RayPool(max_retries=0)
    task = "user_tasks.dies_once:make_again"  # (the workers cached the task of the test above)
    results = _evaluate(tmp_path / "out", pool, task=task, batch=1)  # one run per task: one run is lost
    assert local_ray.exists()
    errors = [r for r in results.records.values() if r["status"] == "error"]
    assert len(errors) == 1 and errors[0]["message"].startswith("worker failed:")
    assert sum(r["status"] == "ok" for r in results.records.values()) == 11
    # the lost run is not written: a rerun (here locally) runs it again and resumes the others
    assert not (tmp_path / "out" / "runs" / f"{errors[0]['key']}.json").exists()
    again = _evaluate(tmp_path / "out", None, task=task)
    assert again.resumed == 11 and all(r["status"] == "ok" for r in again.records.values())


def test_a_task_that_raises_is_not_retried(local_ray, tmp_path):
    pool = RayPool(max_retries=3)
    items = [(str(tmp_path / f"count-{i}"), i) for i in range(3)]
    got = {i: (result, exc) for i, result, exc in pool.imap_unordered(_count_and_maybe_raise, items)}
    assert got[0] == (0, None) and got[2] == (4, None)
    assert isinstance(got[1][1], ValueError) and "odd" in str(got[1][1])
    assert (tmp_path / "count-1").read_text() == "x"  # ran once: exceptions are never retried


def _count_and_maybe_raise(path: str, i: int) -> int:
    with open(path, "a") as f:
        f.write("x")
    if i % 2:
        raise ValueError(f"{i} is odd")
    return 2 * i


def test_a_resource_request_the_cluster_cannot_meet_is_one_line(local_ray):
    from lrrl.sweep import BackendError

    with pytest.raises(BackendError, match=r"--gpus-per-run 0.5: the Ray cluster has 0 GPUs"):
        RayPool(gpus_per_run=0.5)
    with pytest.raises(BackendError, match=r"--cpus-per-run 4: the Ray cluster has 2 CPUs"):
        RayPool(cpus_per_run=4)


def test_an_unreachable_address_is_one_line_within_a_timeout_and_nothing_is_written(tmp_path):
    out = tmp_path / "o"
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *SMALL, "--out", str(out),
                           "--backend", "ray", "--ray-address", "127.0.0.1:9"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ray-address 127.0.0.1:9" in lines[0] and "Traceback" not in done.stderr
    assert not out.exists()


def test_controller_seeds_as_ray_tasks_are_the_local_controllers(local_ray, tmp_path):
    from lrrl import training
    from lrrl.config import TrainSettings

    settings = TrainSettings.from_preset("actor-critic-relative", task="regression2d", steps=6, checkpoint_every=0,
                                         env={"episode_length": 6})
    on_ray = training.train_seeds(settings, [0, 1], [tmp_path / "r0", tmp_path / "r1"], backend=RayPool())
    inline = training.train_seeds(settings, [0, 1], [tmp_path / "l0", tmp_path / "l1"])
    assert [r["seed"] for r in on_ray] == [0, 1] and all("error" not in r for r in on_ray)
    assert [r["final_train_loss"] for r in on_ray] == [r["final_train_loss"] for r in inline]
    assert all((tmp_path / d / "controller.pt").is_file() for d in ("r0", "r1"))


def test_ray_overhead_benchmark_tiny(tmp_path, capsys):
    """benchmarks/ray_overhead.py at a tiny size: both backends ran, the same table, finite figures."""
    sys.path.insert(0, str(ROOT))  # benchmarks/ is not an installed package
    from benchmarks import ray_overhead

    out = tmp_path / "ro.json"
    assert ray_overhead.main(["--task", "regression2d", "--updates", "2", "--eval-every", "1", "--seeds", "1",
                              "--baselines", "sgd", "--grid", "paper", "--jobs", "1", "--repeats", "1",
                              "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "the two backends' tables are the same" in printed and "Ray overhead per run" in printed
    data = json.loads(out.read_text())
    assert sorted(r["backend"] for r in data["runs"]) == ["local", "ray"]
    (rep,) = data["per_repeat"]
    assert rep["runs"] == 5 and all(rep[k] > 0 for k in ("command_local_s", "command_ray_s", "sweep_local_s",
                                                         "sweep_ray_s"))
