"""Where a sweep's runs execute (lrrl.sweep backends), without Ray: the local pool, the
flags' errors, and ``--backend ray`` when the extra is not installed (tests/test_ray_backend.py
runs the Ray backend itself)."""
import importlib.util
import os

import pytest

import evaluate
from lrrl.sweep import RAY_MISSING, BackendError, LocalPool, make_backend

SMALL = ["--task", "regression2d", "--updates", "4", "--seeds", "1", "--eval-every", "2",
         "--baselines", "sgd", "--grid", "paper", "--episodes", "0"]


def _fails_with(args, capsys, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        evaluate.main([*SMALL, "--out", str(out), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written
    return err


def test_backend_ray_without_ray_installed_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    err = _fails_with(["--backend", "ray"], capsys, tmp_path)
    assert err.strip() == f"evaluate.py: error: {RAY_MISSING}"
    assert 'pip install -e ".[ray]"' in err


@pytest.mark.parametrize("args,message", [
    (["--ray-address", "auto"], "--ray-address needs --backend ray"),
    (["--gpus-per-run", "0.5"], "--gpus-per-run needs --backend ray"),
    (["--cpus-per-run", "2"], "--cpus-per-run needs --backend ray"),
    (["--backend", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be a number > 0"),
    (["--backend", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be a number >= 0"),
    (["--backend", "ray", "--max-retries", "-1"], "--max-retries must be >= 0"),
])
def test_backend_flag_errors_are_one_line(args, message, capsys, tmp_path):
    assert message in _fails_with(args, capsys, tmp_path)


def test_evaluate_help_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, evaluate; evaluate.build_parser(); print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.stdout.strip() == "False", done.stderr


def _square_or_raise(x):
    if x == 3:
        raise ValueError("three")
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_pool_yields_every_result_and_every_exception(jobs):
    with make_backend("local", jobs=jobs) as pool:
        assert isinstance(pool, LocalPool) and pool.parallelism == jobs
        got = {i: (r, exc) for i, r, exc in pool.imap_unordered(_square_or_raise, [(x,) for x in range(5)])}
    assert {i: r for i, (r, exc) in got.items() if exc is None} == {0: 0, 1: 1, 2: 4, 4: 16}
    assert isinstance(got[3][1], ValueError) and str(got[3][1]) == "three"


def test_unknown_backend_is_refused():
    with pytest.raises(BackendError, match="--backend must be one of local, ray"):
        make_backend("dask")


TRAIN = ["--preset", "actor-critic-relative", "--task", "regression2d", "--steps", "6", "--episode-length", "6",
         "--checkpoint-every", "0", "--no-progress"]


def test_train_controller_seeds_fan_out_into_one_run_directory_per_seed(tmp_path, capsys):
    import json

    import train_controller

    out = tmp_path / "five"
    assert train_controller.main([*TRAIN, "--seeds", "0,2-3", "--jobs", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed-0", "seed-2", "seed-3"]
    summaries = {k: json.loads((out / f"seed-{k}" / "summary.json").read_text()) for k in (0, 2, 3)}
    assert [s["seed"] for s in summaries.values()] == [0, 2, 3]
    # each is the run a single --seed gives (in a worker process or not)
    assert train_controller.main([*TRAIN, "--seed", "2", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert one["final_train_loss"] == summaries[2]["final_train_loss"] and one["mean_lr"] == summaries[2]["mean_lr"]
    capsys.readouterr()
    # a run directory that already holds a run is refused before any seed starts
    with pytest.raises(SystemExit) as exc:
        train_controller.main([*TRAIN, "--seeds", "3-4", "--out", str(out)])
    assert exc.value.code == 1 and "already holds a run" in capsys.readouterr().err
    assert not (out / "seed-4").exists()


@pytest.mark.parametrize("args,message", [
    (["--seeds", "0-2", "--seed", "1"], "--seeds trains fresh runs"),
    (["--seeds", "2-0"], "a range A-B needs A <= B"),
    (["--seeds", "0-x"], "expected a count"),
    (["--backend", "ray"], "train several seeds (--seeds)"),
    (["--jobs", "2"], "train several seeds (--seeds)"),
])
def test_train_controller_seeds_errors_are_one_line(args, message, tmp_path, capsys):
    import train_controller

    with pytest.raises(SystemExit) as exc:
        train_controller.main([*TRAIN, *args, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o").exists()
