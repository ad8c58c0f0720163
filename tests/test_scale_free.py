"""The scale-free controller interface: the trust action, the relative observations and the
safety net (envs/control.py), in the env and through ControllerScheduler in a plain loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.scheduler import ControllerScheduler
from envs.control import ControlState
from envs.learning_rate_env import LearningRateEnv

SCALE_FREE = dict(action="trust", features=["step_fraction", "grad_ratio", "loss_trend"], relative_loss=True,
                  lr_min=1e-3, lr_max=10.0, step_cap_min=1e-3, step_cap_max=1.0, log_observations=True)


def test_trust_action_is_in_units_of_the_model():
    c = ControlState(**{**SCALE_FREE, "features": []}, episode_length=10)
    c.start(2.0, grad_norm=4.0, weight_norm=8.0)  # the first step's scale ||w0|| / ||g0|| = 2
    rate = c.decide(np.array([1.0, 1.0]))  # the largest rate (10 x 2) and cap (1.0 x ||w||)
    assert rate[0] == pytest.approx(20.0)
    assert c.step_cap == pytest.approx(1.0)
    # each update: min(rate, cap * ||w_t|| / ||g_t||): no step longer than cap * ||w_t||
    assert c.update_rate(rate, grad_norm=5.0, weight_norm=3.0)[0] == pytest.approx(3.0 / 5.0)
    assert c.update_rate(rate, grad_norm=1e-6, weight_norm=3.0)[0] == pytest.approx(20.0)


@pytest.mark.parametrize("k", [1e-3, 7.0, 1e4])
def test_observation_and_steps_do_not_change_when_loss_and_gradient_are_rescaled(k):
    """A loss multiplied by k (its gradients too) gives the same observations and the same
    steps lr * ||g||: nothing the controller sees or does depends on the problem's units."""
    runs = []
    for scale in (1.0, k):
        c = ControlState(**SCALE_FREE, episode_length=100, updates_per_step=1, safety_net=True)
        obs = [c.start(3.0 * scale, grad_norm=2.0 * scale, weight_norm=5.0)]
        steps = []
        for loss, g in ((2.5, 1.5), (1.0, 0.7), (0.4, 0.2)):
            lr = c.decide(np.array([0.3, -0.2]))
            steps.append(c.update_rate(lr, g * scale, 5.0)[0] * g * scale)
            c.advance(lr, 1)
            obs.append(c.observe(loss * scale, grad_norm=g * scale))
        runs.append((np.array(obs), np.array(steps)))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-9)


def test_safety_net_halves_later_rates_when_the_loss_climbs_back_and_ignores_noise_near_zero():
    c = ControlState(action="absolute", lr_min=1e-3, lr_max=1.0, safety_net=True, episode_length=100)
    c.start(2.0)
    a = np.array([1.0])
    for loss in (1.0, 0.1, 0.01, 0.001, 0.004, 0.0005):  # progress, and mini-batch noise near zero
        c.observe(loss)
        assert c.decide(a)[0] == pytest.approx(1.0)
    c.observe(5.0)  # back above the untrained network's loss: a collapse or a blow-up
    assert c.decide(a)[0] == pytest.approx(0.5)
    c.observe(float("nan"))
    assert c.decide(a)[0] == pytest.approx(0.25)
    state = c.state_dict()
    restored = ControlState(action="absolute", lr_min=1e-3, lr_max=1.0, safety_net=True, episode_length=100)
    restored.load_state_dict(state)
    assert restored.decide(a)[0] == pytest.approx(0.25)
    # a network that learned half-way, then died at chance level (just below the first loss: dead
    # ReLUs): half its progress lost fires the net, though the loss never exceeds the first
    dead = ControlState(action="absolute", lr_min=1e-3, lr_max=1.0, safety_net=True, episode_length=100)
    dead.start(2.32)
    for loss in (2.6, 2.0, 1.4, 1.05, 1.05):  # noise above the first loss, then progress: no firing
        dead.observe(loss)
        assert dead.decide(a)[0] == pytest.approx(1.0)
    dead.observe(2.30)  # (the fast average takes two decisions to get there)
    dead.observe(2.30)
    assert dead.decide(a)[0] == pytest.approx(0.5)
    off = ControlState(action="absolute", lr_min=1e-3, lr_max=1.0, episode_length=100)
    off.start(2.0)
    for loss in (1.0, 0.01, 5.0, float("nan")):
        off.observe(loss)
    assert off.decide(a)[0] == pytest.approx(1.0)


class _Largest:
    """A controller that always asks for the largest rate (and cap, with ``size=2``)."""

    def __init__(self, env_kwargs: dict, size: int = 1) -> None:
        self.env_kwargs, self.size = env_kwargs, size

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.ones(self.size, np.float32), None


def _plain_loop(safety_net: bool, steps: int = 200) -> tuple[float, float]:
    """A linear regression trained through ControllerScheduler in a plain loop, by a controller
    that sets the rate 0.2, about twice the largest stable one for these inputs: plain SGD at that
    rate blows up."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen) * torch.linspace(0.2, 3.0, 8)
    y = x @ torch.randn(8, 1, generator=gen)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"action": "absolute", "lr_min": 1e-3, "lr_max": 0.2, "episode_length": steps,
              "safety_net": safety_net}
    scheduler = ControllerScheduler(_Largest(kwargs), optimizer, total_steps=steps)
    loss_fn = torch.nn.MSELoss()
    with torch.no_grad():
        first = float(loss_fn(model(x), y))
    for t in range(steps):
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        scheduler.step(loss)
        optimizer.step()
    with torch.no_grad():
        return first, float(loss_fn(model(x), y)), scheduler.get_last_lr()[0]


def test_safety_net_rescues_a_run_the_controller_would_blow_up():
    first, unprotected, _ = _plain_loop(safety_net=False)
    assert not unprotected < first  # the provoked blow-up (inf or NaN)
    first, protected, lr = _plain_loop(safety_net=True)
    assert math.isfinite(protected) and protected < 1e-3 * first
    assert lr < 0.2  # it backed off


def test_env_runs_the_scale_free_settings_and_reports_the_trust_decision():
    env = LearningRateEnv(task="regression2d", episode_length=20, updates_per_step=5, safety_net=True,
                          device="cpu", **SCALE_FREE)
    obs, _ = env.reset(seed=3)
    assert obs[0] == 0.0  # log10(first loss / first loss)
    assert env.observation_space.contains(obs)
    first_scale = env.control.trust_scale
    assert first_scale > 0 and math.isfinite(first_scale)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0], np.float32))
        done = terminated or truncated
        assert env.observation_space.contains(obs)
        assert info["rate"] == pytest.approx(math.sqrt(1e-3 * 10.0) * first_scale)
    assert not terminated


def test_linear_anneal_decays_rate_and_cap_to_zero_over_the_horizon():
    """``anneal="linear"``: the same action gives a rate and a cap times the fraction of the
    horizon left at each block's middle; ``none`` leaves them alone; past the horizon the factor
    is the last update's."""
    kwargs = dict(**{**SCALE_FREE, "features": []}, episode_length=100, updates_per_step=25)
    plain, annealed = ControlState(**kwargs), ControlState(**kwargs, anneal="linear")
    expected = (0.875, 0.625, 0.375, 0.125, 0.005)
    for c in (plain, annealed):
        c.start(2.0, grad_norm=4.0, weight_norm=8.0)
    for factor in expected:
        rates = [c.decide(np.array([0.2, -0.5])) for c in (plain, annealed)]
        assert annealed.anneal_factor() == pytest.approx(factor)
        assert rates[1][0] == pytest.approx(factor * rates[0][0])
        assert annealed.step_cap == pytest.approx(factor * plain.step_cap)
        for c, rate in zip((plain, annealed), rates):
            c.advance(rate, 25)
    # a shortened last block: its middle
    short = ControlState(**kwargs, anneal="linear")
    short.start(2.0, grad_norm=4.0, weight_norm=8.0)
    short.advance(short.decide(np.zeros(2)), 90)
    assert short.block_length() == 10 and short.anneal_factor() == pytest.approx(0.05)


def test_anneal_is_refused_with_the_relative_action_and_unknown_names():
    with pytest.raises(ValueError, match="relative"):
        ControlState(action="relative", anneal="linear")
    with pytest.raises(ValueError, match="anneal must be one of"):
        ControlState(action="trust", anneal="cosine")


def test_env_and_scheduler_apply_the_same_anneal():
    """The env and ControllerScheduler share ControlState: a constant action gives the same
    decaying rates in both, ending near zero."""
    kwargs = dict(**SCALE_FREE, episode_length=20, updates_per_step=5, anneal="linear")
    env = LearningRateEnv(task="regression2d", device="cpu", **kwargs)
    env.reset(seed=0)
    env_rates, done = [], False
    while not done:
        _, _, terminated, truncated, info = env.step(np.array([1.0, 1.0], np.float32))
        env_rates.append(info["rate"] / env.control.trust_scale)
        done = terminated or truncated
    np.testing.assert_allclose(env_rates, [10.0 * f for f in (0.875, 0.625, 0.375, 0.125)], rtol=1e-6)

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = ControllerScheduler(_Largest(kwargs, size=2), optimizer,
                                    total_steps=20)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    loop_rates = []
    for t in range(20):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        scheduler.step(loss)
        if t % 5 == 0:
            loop_rates.append(scheduler.control.lr[0] / scheduler.control.trust_scale)
        optimizer.step()
    np.testing.assert_allclose(loop_rates, env_rates, rtol=1e-6)
