"""The capped action (a rate and a step-length cap) and the gradient-norm baselines (issue 16):
the env, the scheduler and the baselines against plain PyTorch loops with gradient clipping."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents.baselines import ClippedSGD, GradNormRule, run_episode
from envs.control import ControlState, grad_norm
from envs.learning_rate_env import LearningRateEnv

CPU = {"device": "cpu"}
CAPPED = {"action": "capped", "lr_min": 1e-2, "lr_max": 10.0, "step_cap_min": 1e-2, "step_cap_max": 10.0}


def unit(x: float, low: float, high: float) -> float:
    """The action in [-1, 1] that maps log-uniformly onto ``x`` in ``[low, high]``."""
    return 2.0 * math.log(x / low) / math.log(high / low) - 1.0


def capped_action(rate: float, cap: float) -> np.ndarray:
    return np.array([unit(rate, 1e-2, 10.0), unit(cap, 1e-2, 10.0)], np.float32)


def test_control_state_maps_a_rate_and_a_cap_and_caps_each_update():
    state = ControlState(**CAPPED)
    assert state.action_space.shape == (2,) and state.needs_grad_norm
    lr = state.decide(capped_action(2.0, 0.5))
    assert lr == pytest.approx([2.0], rel=1e-5) and state.step_cap == pytest.approx(0.5, rel=1e-5)
    assert state.update_rate(lr, 0.1) == pytest.approx([2.0], rel=1e-5)  # short step: the rate binds
    assert state.update_rate(lr, 4.0) == pytest.approx([0.125], rel=1e-5)  # long step: the cap binds
    assert state.update_rate(lr, 0.0) == pytest.approx([2.0], rel=1e-5)  # no gradient: no cap
    assert state.update_rate(lr, float("nan")) == pytest.approx([2.0], rel=1e-5)
    # the cap survives a state_dict round trip; a new episode has none
    copy = ControlState(**CAPPED)
    copy.load_state_dict(state.state_dict())
    assert copy.step_cap == state.step_cap
    state.start(1.0)
    assert state.step_cap == math.inf
    # other modes never cap
    plain = ControlState()
    assert not plain.needs_grad_norm and plain.update_rate(np.array([0.3]), 100.0) == [0.3]


def test_capped_action_refuses_per_group_and_bad_cap_ranges():
    with pytest.raises(ValueError, match="per_group"):
        ControlState(2, action="capped")
    with pytest.raises(ValueError, match="per_group"):
        LearningRateEnv("digits", action="capped", per_group=True, device="cpu")
    with pytest.raises(ValueError, match="step_cap_min"):
        ControlState(action="capped", step_cap_min=1.0, step_cap_max=0.5)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        ControlState(action="capped").validate_action([0.1])


@pytest.mark.parametrize("updates_per_step", [1, 3])
def test_capped_env_equals_sgd_with_gradient_clipping_in_a_plain_loop(updates_per_step):
    """Every update of a decision uses min(rate, cap / ||g||) with its own gradient: exactly
    torch's clip_grad_norm_(max_norm = cap / rate) followed by SGD at the rate."""
    rate, cap = 2.0, 0.3
    env = LearningRateEnv("digits", episode_length=12, updates_per_step=updates_per_step, **CAPPED, **CPU)
    env.reset(seed=3)
    tr = env.trainer
    drawn = []
    original = tr.next_batch

    def spy():
        idx = original()
        drawn.append(idx.clone())
        return idx

    tr.next_batch = spy
    model = tr.task.model_factory()
    model.load_state_dict({k: v.clone() for k, v in tr.model.state_dict().items()})
    opt = torch.optim.SGD(model.parameters(), lr=rate)
    clipped_updates, done = 0, False
    while not done:
        used = [env.current_batch.clone()]
        drawn.clear()
        _, _, terminated, truncated, info = env.step(capped_action(rate, cap))
        used += drawn[:-1]  # the last draw is the next observation's batch
        effective = []
        for idx in used:
            opt.zero_grad()
            F.cross_entropy(model(tr.x_train[idx]), tr.y_train[idx]).backward()
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cap / rate))
            clipped_updates += norm > cap / rate
            effective.append(min(rate, cap / norm))
            opt.step()
        assert info["rate"] == pytest.approx(rate, rel=1e-5) and info["step_cap"] == pytest.approx(cap, rel=1e-5)
        assert info["lr"] == pytest.approx(np.mean(effective), rel=1e-4)
        assert not terminated
        done = truncated
    assert clipped_updates > 0, "the cap should bind on some updates (else this tests nothing)"
    for a, b in zip(model.parameters(), tr.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_clipped_sgd_and_grad_norm_rule_policies():
    env = LearningRateEnv("digits", episode_length=30, eval_every=30, action="raw", lr_min=1e-8, lr_max=10.0,
                          **CPU)
    # ClippedSGD = clip_grad_norm_ + SGD, checked against a plain loop on the env's batches
    env.reset(seed=5)
    tr = env.trainer
    model = tr.task.model_factory()
    model.load_state_dict({k: v.clone() for k, v in tr.model.state_dict().items()})
    policy = ClippedSGD(1.5, 0.2)
    policy.reset(env)
    opt = torch.optim.SGD(model.parameters(), lr=1.5)
    obs, info = None, {}
    for _ in range(10):
        idx = env.current_batch.clone()
        env.step(np.array([policy(obs, info, env)]))
        opt.zero_grad()
        F.cross_entropy(model(tr.x_train[idx]), tr.y_train[idx]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.2)
        opt.step()
    for a, b in zip(model.parameters(), tr.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # GradNormRule: a geometric ramp capped at step_cap / ||g_t||, from the gradient in .grad
    rule = GradNormRule(0.5, 2.0, 0.4)
    env.reset(seed=5)
    rule.reset(env)
    first = rule(None, {}, env)
    assert first == pytest.approx(min(0.5, 0.4 / float(grad_norm(env.trainer.parameters()))))
    result = run_episode(env, GradNormRule(0.5, 2.0, 0.4), seed=5)
    norms_bound = [lr <= 2.0 + 1e-12 for lr in result.lr]
    assert result.steps == 30 and all(norms_bound)
    assert result.train_loss[-1] < result.train_loss[0]


def test_evaluate_tunes_clipped_sgd_and_fits_the_grad_norm_rule(tmp_path, capsys):
    """The clipped-SGD grid (decade pairs, then the fine grid around the best pair), the rule
    fitted on training seeds only, and the median / collapse / per-seed reporting."""
    import json

    import evaluate
    from lrrl import methods

    out = tmp_path / "out"
    assert evaluate.main(["--task", "regression2d", "--steps", "15", "--seeds", "2", "--eval-every", "5",
                          "--baselines", "sgd,clipped,gradnorm", "--grid", "both", "--episodes", "0",
                          "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    decade = {tuple(r["spec"]["param"]) for r in runs.values() if r["spec"]["family"] == "clipped"
              and r["spec"]["param"][0] in methods.CLIP_RATES and r["spec"]["param"][1] in methods.CLIP_NORMS}
    assert len(decade) == len(methods.CLIP_RATES) * len(methods.CLIP_NORMS)
    best_decade = min(data["grids"]["SGD, clipped (decade grid: lr, max_norm)"].items(),
                      key=lambda kv: math.inf if kv[1] is None else kv[1])[0]
    lr0, c0 = json.loads(best_decade)
    fine = {tuple(r["spec"]["param"]) for r in runs.values() if r["spec"]["family"] == "clipped"} - decade
    assert fine and all(any(math.isclose(lr, lr0 * m, rel_tol=0.01) for m in (1.0,) + methods.FINE_MULTIPLIERS)
                        for lr, _ in fine)
    row = [r for r in data["summary"] if r["method"] == "SGD, clipped"][0]
    means = {k: (math.inf if v is None else v) for k, v in data["grids"]["SGD, clipped (lr, max_norm)"].items()}
    assert json.dumps(row["param"]) == min(means, key=means.get)
    # the rule is fitted on training seeds 0 and 1 only, then run on the held-out seeds
    fit_seeds = {r["spec"]["seed"] for r in runs.values() if r["spec"]["family"] == "gradnorm-fit"}
    assert fit_seeds == set(methods.GRAD_NORM_RULE_FIT_SEEDS)
    rule = [r for r in data["summary"] if r["method"] == "Gradient-norm rule"][0]
    assert rule["seed_list"] == [1000, 1001] and len(rule["train_loss_per_seed"]) == 2
    assert rule["train_loss_median"] == pytest.approx(float(np.median(rule["train_loss_per_seed"])))
    assert "median train loss" in text and "collapsed" in text and "Final training loss per seed" in text


def test_collapse_counts_diverged_and_chance_level_runs():
    from lrrl.stats import collapsed

    ok = {"status": "ok", "final": {"train_loss": 0.1}, "curves": {"train_loss": [2.3, 0.1]}}
    dead = {"status": "ok", "final": {"train_loss": 2.2}, "curves": {"train_loss": [2.3, 2.2]}}
    diverged = {"status": "diverged", "final": {"train_loss": None}, "curves": {}}
    assert [collapsed(r) for r in (ok, dead, diverged)] == [False, True, True]
