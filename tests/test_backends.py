"""Where a sweep's runs execute (experiments.sweep backends), without Ray: the local pool, the
flags' errors, and ``--backend ray`` when the extra is not installed (tests/test_ray_backend.py
runs the Ray backend itself)."""
import importlib.util
import os

import pytest

import evaluate
from experiments.sweep import RAY_MISSING, BackendError, LocalPool, make_backend

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
