"""The task suite: families, the split, seed ranges, the suite env and its ids, the score."""
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.suite import (FAMILIES, INSTANCE_SEEDS, SUITE_ENV_IDS, TEST_FAMILIES, TRAIN_FAMILIES, SuiteEnv,
                        SuiteError, make_instance, scoring_seeds, seed_range, split_families, task_spec)
from envs.tasks import make_task
from lrrl import suite as S

REPO = Path(__file__).resolve().parents[1]

#: a good constant SGD rate per family: tuned SGD's rate on instance 1000 in the recorded reference
#: (docs/suite/reference.json; the same instance and seed as here, so the first updates of a run
#: that did not diverge), and the most updates a test run takes (the instance's horizon if shorter)
GOOD_SGD = {"linear-regression": 0.05, "teacher-student": 0.5, "mlp-classification": 1.0, "digits-cnn": 0.3,
            "diabetes-mlp": 1.0, "tabular-mlp": 1.0, "cnn1d-signals": 0.5, "gru-text": 3.0,
            "attention-tokens": 0.7, "norm-residual-mlp": 1.0}
TEST_UPDATES = 500


# --------------------------------------------------------------------------- families and the split
def test_families_and_split_cover_the_kinds():
    assert len(FAMILIES) >= 10 and len(TEST_FAMILIES) >= 4
    assert set(TRAIN_FAMILIES).isdisjoint(TEST_FAMILIES)
    assert set(TRAIN_FAMILIES) | set(TEST_FAMILIES) == set(FAMILIES)
    assert split_families("train") == TRAIN_FAMILIES and split_families("test") == TEST_FAMILIES
    assert set(GOOD_SGD) == set(FAMILIES)
    # whole architectures are held out: no test family's model kind trains in a train family
    kinds = {n: make_instance(n, 1000).meta["model"]["kind"] for n in FAMILIES}
    for n in TEST_FAMILIES:
        model = make_instance(n, 1000).meta["model"]
        held_out = kinds[n] not in {kinds[t] for t in TRAIN_FAMILIES} or model.get("norm") or model.get("residual")
        assert held_out, n


def test_seed_ranges_are_disjoint():
    ranges = [set(seed_range(name)) for name in INSTANCE_SEEDS]
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert a.isdisjoint(b)
    assert scoring_seeds(3) == [1000, 1001, 1002]
    assert min(seed_range("scoring")) == 1000  # evaluate.py's held-out seeds start there too


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_builds_is_deterministic_and_varies(name):
    task = make_instance(name, 1000)
    assert task.name == f"{name}@1000" and task.meta["family"] == name
    assert 300 <= task.meta["horizon"] <= 3000 and 8 <= task.batch_size <= 256
    json.dumps(task.meta)  # cards and reports record it
    n_params = sum(p.numel() for p in task.model_factory().parameters())
    assert n_params <= 20_000 and len(task.x_train) <= 3000
    make_instance.cache_clear()
    again = make_instance(name, 1000)
    assert torch.equal(task.x_train, again.x_train) and torch.equal(task.y_train, again.y_train)
    assert torch.equal(task.x_test, again.x_test) and again.meta == task.meta
    # a family is a distribution, not one point: other seeds draw other instances
    metas = {json.dumps(make_instance(name, s).meta["params"], sort_keys=True) for s in range(1000, 1006)}
    assert len(metas) > 1
    # an instance is a task name the sweep's worker processes rebuild, and it pickles
    assert make_task(task_spec(name, 1000)).meta == task.meta
    pickle.loads(pickle.dumps(task))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_trains_well_below_its_initial_loss_with_sgd(name):
    from agents.baselines import ConstantLR, run_episode
    from envs.learning_rate_env import LearningRateEnv

    task = make_instance(name, 1000)
    updates = min(task.meta["horizon"], TEST_UPDATES)
    env = LearningRateEnv(task=task, action="raw", lr_min=1e-8, lr_max=10.0, episode_length=updates,
                          eval_every=updates, seed=1000)
    res = run_episode(env, ConstantLR(GOOD_SGD[name]), 1000)
    assert not res.diverged
    assert res.train_loss[-1] < 0.7 * res.train_loss[0], (res.train_loss[0], res.train_loss[-1])


# --------------------------------------------------------------------------- bad input
def test_unknown_family_split_range_and_seed_are_one_clear_error():
    with pytest.raises(SuiteError, match="unknown task family 'nope'; choose from linear-regression"):
        make_instance("nope", 1)
    with pytest.raises(SuiteError, match="unknown split 'val'; choose train or test"):
        split_families("val")
    with pytest.raises(SuiteError, match="unknown seed range"):
        SuiteEnv(seeds="holdout")
    with pytest.raises(SuiteError, match="instance seed must be an integer"):
        make_instance("gru-text", -1)
    with pytest.raises(SuiteError, match="'gru-text' belongs to the test split, not train"):
        gym.make("envs:LearningRate-Suite-v0", families=["gru-text"])
    with pytest.raises(ValueError, match="no attribute 'gru-text@x'"):
        make_task("envs.suite:gru-text@x")


def test_non_serialisable_settings_are_one_clear_error():
    with pytest.raises(SuiteError, match="must be JSON-serialisable"):
        SuiteEnv(optimizer_kwargs={"betas": object()})
    with pytest.raises(SuiteError, match="do not pass task="):
        SuiteEnv(task="digits")
    with pytest.raises(SuiteError, match="per_group"):
        SuiteEnv(per_group=True)
    for env_id, kwargs in SUITE_ENV_IDS.items():
        assert json.loads(gym.spec(env_id).to_json())["kwargs"] == kwargs


# --------------------------------------------------------------------------- the env and its ids
def test_suite_env_draws_split_instances_from_its_seed_range():
    env = gym.make("envs:LearningRate-Suite-v0")
    seen = set()
    for s in range(12):
        _, info = env.reset(seed=s)
        fam, seed = info["instance"].split("@")
        assert fam in TRAIN_FAMILIES and int(seed) in seed_range("train")
        assert info["primary_seed"] in seed_range("train")
        seen.add(fam)
    assert len(seen) > 2
    test_env = gym.make("envs:LearningRate-Suite-Test-v0")
    _, info = test_env.reset(seed=0)
    fam, seed = info["instance"].split("@")
    assert fam in TEST_FAMILIES and int(seed) in seed_range("scoring")
    _, info = test_env.reset(options={"family": "gru-text", "instance": 1001})
    assert info["instance"] == "gru-text@1001" and info["primary_seed"] == 1001
    with pytest.raises(SuiteError, match="not one of this env's families"):
        test_env.reset(options={"family": "digits-cnn"})


def test_suite_env_is_deterministic_per_seed_and_steps():
    def rollout():
        env = gym.make("envs:LearningRate-Suite-v0")
        obs, info = env.reset(seed=5)
        out = [info["instance"], obs.tolist()]
        for _ in range(5):
            obs, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
            out += [obs.tolist(), reward, info["family"]]
        return out

    assert rollout() == rollout()


def test_episode_is_the_instance_horizon_unless_fixed():
    env = SuiteEnv(split="train", families=["linear-regression"], seed=3)
    _, info = env.reset()
    horizon = make_instance("linear-regression", int(info["instance"].split("@")[1])).meta["horizon"]
    assert env.current.episode_length == horizon
    fixed = SuiteEnv(split="train", families=["linear-regression"], episode_length=7, seed=3)
    fixed.reset()
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = fixed.step(np.zeros(1, np.float32))
        steps += 1
        assert not terminated
    assert steps == 7


def test_validation_reward_runs_on_the_smallest_instances():
    """The default validation split is one validation batch, at most a quarter of the training set:
    iris holds 113 training examples, fewer than the batch of 200, and still keeps 85 to train on.
    A split that would hold out the whole training set is one clear error."""
    env = SuiteEnv(split="train", families=["tabular-mlp"], seeds=[1], reward="validation", seed=0)
    _, info = env.reset()
    assert info["instance"] == "tabular-mlp@1" and env.current.trainer.task.meta["params"]["data"] == "iris"
    assert len(env.current.trainer.x_val) == 28 and len(env.current.trainer.x_train) == 113 - 28
    _, reward, terminated, _, info = env.step(np.zeros(1, np.float32))
    assert np.isfinite(reward) and not terminated
    assert info["loss_before"] != info["loss_after"]
    with pytest.raises(ValueError, match="holds out the whole training set"):
        SuiteEnv(split="train", families=["tabular-mlp"], seeds=[1], reward="validation", validation_size=113)


@pytest.mark.parametrize("env_id", ["LearningRate-Suite-v0", "LearningRate-Suite-Test-v0",
                                    "LearningRate-Suite-GruText-v0"])
def test_env_checkers_pass(env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(f"envs:{env_id}")
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)


def test_every_family_has_an_id_and_make_vec_works():
    ids = {kw["families"][0] for kw in SUITE_ENV_IDS.values() if "families" in kw}
    assert ids == set(FAMILIES) and set(SUITE_ENV_IDS) <= set(gym.registry)
    vec = gym.make_vec("LearningRate-Suite-v0", num_envs=2)
    obs, infos = vec.reset(seed=0)
    assert obs.shape == (2, 1) and len(set(infos["instance"])) == 2
    obs, *_ = vec.step(np.zeros((2, 1), np.float32))
    assert obs.shape == (2, 1)
    vec.close()


# --------------------------------------------------------------------------- the score
def _record(final, initial=1.0, status="ok", test=None):
    return {"status": status, "final": {"train_loss": final, "test_loss": final if test is None else test},
            "curves": {"train_loss": [initial, final]}}


def test_ratio_scores_collapse_and_divergence_as_the_failed_ratio():
    ref = _record(0.01)
    assert S.ratio(_record(0.02), ref) == pytest.approx(2.0)
    assert S.ratio(_record(0.005, test=0.03), ref, "test_loss") == pytest.approx(3.0)
    assert S.ratio(_record(None, status="diverged"), ref) == S.FAILED_RATIO == 100.0
    assert S.ratio(_record(0.95), ref) == 100.0  # ended at chance level: collapsed
    assert S.ratio(_record(0.5, initial=10.0), ref) == 50.0
    assert S.ratio(_record(0.8, initial=10.0), _record(0.001)) == 100.0  # capped at the failed ratio
    assert math.isnan(S.ratio(_record(0.1), _record(None, status="diverged")))


def test_geometric_mean_and_aggregate_on_hand_made_numbers():
    assert S.geometric_mean([1.0, 100.0]) == pytest.approx(10.0)
    assert S.geometric_mean([0.5, 2.0, 4.0, 0.25]) == pytest.approx(1.0)
    scores = {"good": np.full((3, 2), 0.5), "flaky": np.array([[1.0, 100.0], [1.0, 1.0], [1.0, 1.0]])}
    agg = S.aggregate(scores, reps=200)
    assert agg["good"]["geometric_mean"] == pytest.approx(0.5) and agg["good"]["collapsed"] == 0
    assert agg["good"]["iqm"] == pytest.approx(0.5) and agg["good"]["iqm_ci"] == pytest.approx([0.5, 0.5])
    assert agg["good"]["profile"]["0.5"][0] == 1.0 and agg["good"]["profile"]["0.1"][0] == 0.0
    assert agg["flaky"]["geometric_mean"] == pytest.approx(100 ** (1 / 6))
    assert agg["flaky"]["collapsed"] == 1 and agg["flaky"]["n"] == 6
    assert agg["flaky"]["iqm"] == pytest.approx(1.0)  # one failure in six: outside the interquartile range
    assert agg["flaky"]["profile"]["1"][0] == pytest.approx(5 / 6)


def test_accuracy_table_on_hand_made_numbers():
    """Mean test accuracy over the classification instances only, a collapsed run included."""
    from types import SimpleNamespace

    def inst(fam, ref, ctrl, collapsed=False):
        return {"family": fam, "methods": {S.REFERENCE: {"test_accuracy": ref},
                                           "ctrl": {"test_accuracy": ctrl, "collapsed": collapsed}}}

    results = SimpleNamespace(methods=[S.REFERENCE, "ctrl"], instances=[
        inst("a", 0.8, 0.9), inst("a", 0.6, 0.1, collapsed=True), inst("b", 1.0, 0.5), inst("reg", None, None)])
    table = S.accuracy_table(results).splitlines()
    assert table[0] == "| method | all classification instances | a | b |"
    assert table[2] == f"| {S.REFERENCE} | 80.0% | 70.0% | 100.0% |"
    assert table[3] == "| ctrl | 50.0% | 50.0% | 50.0% |"
    assert S.accuracy_table(SimpleNamespace(methods=["ctrl"], instances=[inst("reg", None, None)])) == ""


def test_suite_baselines_always_include_the_reference():
    names, random = S.parse_suite_baselines("random,adam")
    assert random and names[0] == "sgd" and "adam" in names
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        S.parse_suite_baselines("nope")


# --------------------------------------------------------------------------- evaluate.py --suite
def _evaluate(*args, cwd):
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(REPO / "evaluate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_evaluate_suite_writes_the_aggregate_table(tmp_path):
    out = tmp_path / "suite"
    done = _evaluate("--suite", "train", "--families", "linear-regression", "--instances", "1",
                     "--baselines", "random,sgd", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| SGD tuned | 1 | 1 |" in done.stdout and "| Random policy |" in done.stdout
    test_families = done.stdout.split("## Geometric-mean ratio (test loss) per family")[1]
    assert "| SGD tuned | 1 |" in test_families.split("##")[0]
    record = json.loads((out / "suite.json").read_text())
    assert record["aggregate_train"]["SGD tuned"]["geometric_mean"] == pytest.approx(1.0)
    assert (out / "instances" / "linear-regression@1000" / "results.md").is_file()  # the per-task report stays


def test_evaluate_suite_bad_input_is_one_line(tmp_path):
    for args, message in ((["--suite", "test", "--families", "digits-cnn"], "belongs to the train split"),
                          (["--suite", "test", "--families", "nope"], "unknown task family 'nope'"),
                          (["--suite", "test", "--task", "digits-x"], "--task does not apply with --suite")):
        done = _evaluate(*args, "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_sample_instances_for_training():
    draws = S.sample_instances("train", 60, seed=0, replace=False)
    assert len(set(draws)) == 60 and {f for f, _ in draws} == set(TRAIN_FAMILIES)
    counts = [sum(f == name for f, _ in draws) for name in TRAIN_FAMILIES]
    assert max(counts) - min(counts) <= 1  # without replacement: families equally often
    assert all(s in seed_range("train") for _, s in draws)
    assert S.sample_instances("train", 5, seed=1) == S.sample_instances("train", 5, seed=1)
    assert all(s in seed_range("selection") for _, s in S.sample_instances("test", 5, 0, seeds="selection"))
    with pytest.raises(SuiteError, match="belongs to the test split"):
        S.sample_instances("train", 1, 0, families=["gru-text"])
    task = S.with_batch_size(make_instance("digits-cnn", 3), 16)
    assert task.batch_size == 16 and task.meta["batch_size"] == 16 and task.name == "digits-cnn@3/b16"


def test_a_family_that_cannot_be_built_offline_is_one_clear_error(monkeypatch):
    """Without the standard library's source (a stripped Python), gru-text says so."""
    import inspect

    from envs import suite
    from envs.tasks import DatasetUnavailableError

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    suite.stdlib_text.cache_clear()
    try:
        with pytest.raises(DatasetUnavailableError, match="gru-text needs the source or docstrings"):
            suite.stdlib_text("string")
    finally:
        suite.stdlib_text.cache_clear()
