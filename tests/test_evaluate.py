"""evaluate.py: grid selection, divergence, outputs (tables, CSV, JSON, PNGs), errors, resume."""
import csv
import json
import math
import os

import numpy as np
import pytest

import evaluate
from lrrl import methods, protocol
from lrrl.config import parse_seeds
from lrrl.protocol import select_best


def _rec(param, seed, loss, status="ok"):
    return {"key": f"x_{param}_{seed}", "spec": {"param": param, "seed": seed}, "status": status,
            "final": {"train_loss": loss if status == "ok" else None}}


def test_select_best_lowest_mean_and_divergence_is_infinite():
    records = [_rec(0.1, 0, 0.5), _rec(0.1, 1, 0.3),      # mean 0.4
               _rec(0.3, 0, 0.2), _rec(0.3, 1, 0.5),      # mean 0.35  <- best
               _rec(1.0, 0, 0.01), _rec(1.0, 1, None, "diverged")]  # one seed diverged -> inf
    best, value, means = select_best(records)
    assert best == 0.3 and value == pytest.approx(0.35)
    assert means[0.1] == pytest.approx(0.4)
    assert means[1.0] == math.inf
    # all diverged: still an answer, and it is infinite
    best, value, _ = select_best([_rec(1.0, 0, None, "diverged"), _rec(2.0, 0, None, "error")])
    assert value == math.inf


def test_parse_seeds_and_baselines():
    assert parse_seeds("3") == [1000, 1001, 1002]
    assert parse_seeds("5,7, 5") == [5, 7]
    for bad in ("", " ", "0", "a,b", ","):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    assert methods.parse_baselines("sgd,lrfree") == ["sgd", *methods.LRFREE]
    assert set(methods.parse_baselines("all")) == set(methods.BASELINES)
    with pytest.raises(ValueError, match="unknown baseline 'sgdd'"):
        methods.parse_baselines("sgd,sgdd")


# --------------------------------------------------------------------------- a fake controller
class _ConstantModel:
    """A stand-in model: constant absolute action."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        shape = (obs.shape[0], 1) if obs.ndim == 2 else (1,)
        return np.full(shape, 0.6, dtype=np.float32), state


def FakeController(name="fake-ctrl", task="digits", features=("lr",)):  # noqa: N802
    """A real agents.checkpoint.Controller around a stand-in model: constant absolute action."""
    from agents.checkpoint import Controller

    env_kwargs = {"action": "absolute", "lr_min": 1e-3, "lr_max": 1.0, "features": list(features),
                  "reward": "next-batch", "episode_length": 15, "optimizer": "sgd"}
    return Controller(name, "actor-critic", _ConstantModel(),
                      {"agent": "actor-critic", "train": {"task": task}, "env_kwargs": env_kwargs})


def evaluate_with_library(out, controllers=(), **settings):
    """The library path evaluate.py takes: settings, the tuning protocol, figures, report."""
    from lrrl.config import EvaluationSettings
    from lrrl.plots import write_figures
    from lrrl.report import write_report

    st = EvaluationSettings(**settings).validate()
    entries = [protocol.controller_entry(str(out.parent / f"{c.name}.pt"), c, st.task) for c in controllers]
    out.mkdir(parents=True, exist_ok=True)
    results = protocol.evaluate_methods(st, entries, out, progress=False)
    figures = write_figures(results.rows, results.records, results.common, st.seeds, out, st.task)
    return write_report(results, figures, out, "evaluate_with_library(...)")


def _run(args, capsys):
    assert evaluate.main(args) == 0
    return capsys.readouterr().out


def test_regression2d_outputs_every_table_and_figure(tmp_path):
    out = tmp_path / "out"
    text = evaluate_with_library(out, [FakeController()], task="regression2d", updates=20, seeds=[1000, 1001],
                                 eval_every=5, baselines=["sgd,vsgd,cosine,feature"], episodes=2)
    # the returned table is the saved one; the controller trained on digits is labelled as such
    assert text == (out / "results.md").read_text()
def test_resume_skips_finished_runs_and_jobs_give_the_same_runs(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--task", "regression2d", "--steps", "10", "--seeds", "2", "--eval-every", "5",
            "--baselines", "sgd,vsgd", "--grid", "paper", "--episodes", "0", "--out", str(out)]
    first = _run(args, capsys)
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 12 and "(0 resumed" in first
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    removed = out / "runs" / "vsgd_s1001.json"
    before = json.loads(removed.read_text())
    os.remove(removed)  # as if the sweep had been killed before this run finished
    second = _run([*args, "--jobs", "2"], capsys)  # the missing run is redone in a worker process
    assert "(11 resumed" in second
    assert all(f.stat().st_mtime_ns == mtimes[f] for f in files if f != removed)
    after = json.loads(removed.read_text())
    assert after["curves"] == before["curves"]  # deterministic, in or out of a worker
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert "| SGD | decade grid (paper) | 0.1 |" in first
    for row in summary:  # the same numbers as the first time (wall time aside)
        assert f"| {row['method']} | {row['protocol']} |" in first
        line = [l for l in second.splitlines() if l.startswith(f"| {row['method']} | {row['protocol']} |")][0]
        assert line.rsplit("|", 2)[0] in first
    # a different setting (more steps) is not mistaken for a finished run
    third = _run([*args[:2], "--steps", "12", *args[4:]], capsys)
    assert "(0 resumed" in third


@pytest.mark.parametrize("args,message", [
    (["--baselines", "sgd,nope"], "unknown baseline 'nope'"),
    (["--seeds", ""], "--seeds is empty"),
    (["--seeds", "0"], "need at least one seed"),
    (["--task", "imagenet"], "unknown task 'imagenet'"),
    (["--task", "mnist", "--data-root", "/nonexistent/dir"], "does not exist"),
    (["/nonexistent/ckpt.pt"], "checkpoint '/nonexistent/ckpt.pt' does not exist"),
    (["--baselines", "none"], "nothing to evaluate"),
])
def test_clear_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.main([*args, "--out", str(tmp_path / "o"), "--steps", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "controller.pt"
    bad.write_bytes(b"\x00garbage, not a checkpoint")
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(bad), "--out", str(tmp_path / "o"), "--steps", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and "Traceback" not in err


def test_real_checkpoint_from_train_controller(tmp_path, capsys):
    """End to end: train_controller.py writes a tiny actor-critic run (with a validation-loss
    feature), evaluate.py loads it through agents.checkpoint and runs it beside a baseline."""
    train_controller = pytest.importorskip("train_controller")
    pytest.importorskip("agents.checkpoint")
    run = tmp_path / "ctrl"
    # (the actor-critic-relative preset: the actor-critic with a rate in [1e-5, 1]; the default is now a policy search)
    assert train_controller.main(["--preset", "actor-critic-relative", "--task", "regression2d", "--steps", "20", "--episode-length", "10",
                                  "--features", "lr,val_loss", "--out", str(run), "--no-progress",
                                  "--checkpoint-every", "0"]) == 0
    capsys.readouterr()
    out = tmp_path / "eval"
    text = _run([str(run), "--task", "regression2d", "--steps", "10", "--seeds", "1",
                 "--baselines", "vsgd", "--episodes", "1", "--eval-every", "5", "--out", str(out)], capsys)
    data = json.loads((out / "results.json").read_text())
    ctrl_rows = [r for r in data["summary"] if r["protocol"] == "controller"]
    assert len(ctrl_rows) == 1 and ctrl_rows[0]["method"] == "ctrl"  # trained on the same task
    assert ctrl_rows[0]["errors"] == 0  # an untrained controller may diverge, but never errors
    rec = data["runs"][ctrl_rows[0]["keys"][0]]
    assert rec["status"] in ("ok", "diverged") and len(rec["curves"]["lr"]) >= 1
    assert all(1e-5 * (1 - 1e-6) <= lr <= 1.0 * (1 + 1e-6) for lr in rec["curves"]["lr"])
    # its val_loss feature needs a validation split: every method trains without those examples
    assert "examples held out" in text
    assert all(r["common"]["validation_size"] > 0 for r in data["runs"].values())
    assert math.isfinite(data["policy_evaluation"][0]["return_mean"])


def test_shared_validation_split_is_sized_as_the_env_sizes_it():
    """Every method holds out the validation split a val_loss controller's env held out on the
    evaluation's task: one validation batch, at most a quarter of a small training set."""
    from types import SimpleNamespace

    from envs.learning_rate_env import LearningRateEnv
    from envs.suite import make_instance

    def entry(size):
        return SimpleNamespace(controller=SimpleNamespace(validation_size=size))

    iris = make_instance("tabular-mlp", 1)  # 113 training examples
    env = LearningRateEnv(task=iris, features=["val_loss"], device="cpu")
    assert protocol.shared_validation_size([entry(200), entry(0)], iris) == len(env.trainer.x_val) == 28
    assert protocol.shared_validation_size([entry(0)], iris) == 0
    assert protocol.shared_validation_size([entry(50)], make_instance("tabular-mlp", 0)) == 50


def regression2d_one_ulp_off():
    """``regression2d`` with every training input moved by one float32 ulp, up or down (a fixed
    pattern): a perturbation of the size float rounding makes (a user task for the sweep below)."""
    import torch

    from envs.tasks import regression2d

    task = regression2d()  # a fresh task: make_task's is cached per process, and others use it
    up = torch.rand(task.x_train.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    x = task.x_train
    task.x_train = torch.where(up, torch.nextafter(x, torch.tensor(math.inf)), torch.nextafter(x, torch.tensor(-math.inf)))
    return task


#: float32 rounding happens in each of an update's operations (forward, backward, update), not only
#: in its inputs: a batched run may differ from a single one by this multiple of the change one ulp
#: in the inputs makes
ROUNDING_MARGIN = 30


def test_batched_sweep_gives_the_table_of_one_run_at_a_time(tmp_path):
    """Runs side by side in one vector env (--batch) are the same runs: same grid picks,
    same final losses to float rounding, same statuses; vSGD (not batchable) and Adagrad (no batched
    form) still run alone in the batched sweep.

    "To float rounding": relative 1e-4, or, for a run at the edge of stability (where a CPU's
    other rounding is amplified), ``ROUNDING_MARGIN`` times what moving the inputs by one ulp does
    to that run, measured here by a third sweep (so the check holds on any CPU; a stable run moves
    by about 1e-7 and keeps 1e-4)."""
    kw = dict(updates=20, seeds=[1000, 1001], eval_every=5, episodes=0,
              baselines=["sgd,adam,adagrad,cosine,hd,clipped,gradnorm,feature,vsgd"])
    evaluate_with_library(tmp_path / "one", batch=1, task="regression2d", **kw)
    evaluate_with_library(tmp_path / "side", batch=16, jobs=1, task="regression2d", **kw)
    evaluate_with_library(tmp_path / "ulp", batch=1, task="test_evaluate:regression2d_one_ulp_off", **kw)
    one, side, ulp = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "side", "ulp"))
    assert set(one["runs"]) == set(side["runs"])
    widened = []
    for key, rec in one["runs"].items():
        other = side["runs"][key]
        assert other["status"] == rec["status"], key
        for name in ("train_loss", "test_loss"):
            a, b = rec["final"][name], other["final"][name]
            assert (a is None) == (b is None), (key, name)
            if a is None:
                continue
            moved = (ulp["runs"].get(key) or {}).get("final", {}).get(name)
            sensitivity = abs(moved - a) / abs(a) if moved is not None and a else 0.0
            rel = max(1e-4, ROUNDING_MARGIN * sensitivity)
            widened += [key] if rel > 1e-4 else []
            assert b == pytest.approx(a, rel=rel), (key, name, rel)
        assert other["curves"]["eval_steps"] == rec["curves"]["eval_steps"]
    assert len(set(widened)) < len(one["runs"]) / 20  # the stable runs (nearly all) keep 1e-4
    assert [(r["method"], r["protocol"], r["param"]) for r in one["summary"]] == \
           [(r["method"], r["protocol"], r["param"]) for r in side["summary"]]
    # the batched sweep really ran runs side by side: their wall times are shared equally
    walls = {}
    for rec in side["runs"].values():
        walls.setdefault(round(rec["wall_time"], 9), []).append(rec["spec"]["family"])
    assert max(len(v) for v in walls.values()) >= 5
