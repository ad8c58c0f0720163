"""``agents.callbacks.SelectBestCallback``: one checkpoint selection for every agent.

Each agent is trained twice from the same seed: once with a hand-written reference that evaluates
the deterministic policy after every episode (every generation for the policy search) and at the
end, and once with the selection callback. The callback must pick what the reference says
(every ``eval_freq``-th point and the end, first best kept), leave exactly those parameters in
place, and not change the training itself.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.actor_critic import ActorCritic
from agents.callbacks import SelectBestCallback, deterministic_return
from agents.policy_search import PolicySearch
from agents.sb3 import make_sb3_agent
from envs.learning_rate_env import LearningRateEnv

EPISODE = 5
SEEDS = (500, 501)


def _env():
    return LearningRateEnv("regression2d", episode_length=EPISODE, device="cpu")


def _policy(model) -> dict:
    return copy.deepcopy({k: v for k, v in model.get_parameters().items() if "optimizer" not in k})


class Reference(BaseCallback):
    """Evaluates after every finished episode (every generation with ``by_generation``) and at
    the end: ``points`` = [(timestep, return, parameters)]."""

    def __init__(self, eval_env, by_generation: bool) -> None:
        super().__init__()
        self.eval_env, self.by_generation, self.points = eval_env, by_generation, []

    def _record(self) -> None:
        self.points.append((int(self.model.num_timesteps), deterministic_return(self.model, self.eval_env, SEEDS),
                            _policy(self.model)))

    def _on_step(self) -> bool:
        if not self.by_generation and np.any(self.locals["dones"]):
            self._record()
        return True

    def _on_rollout_end(self) -> None:
        if self.by_generation:
            self._record()

    def _on_training_end(self) -> None:
        self._record()


def _expected(points, eval_freq):
    *regular, last = points
    chosen = [p for i, p in enumerate(regular, start=1) if i % eval_freq == 0]
    if not chosen or chosen[-1][0] != last[0]:
        chosen.append(last)
    best = chosen[0]
    for point in chosen[1:]:
        if point[1] > best[1]:
            best = point
    return best


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(torch.as_tensor(a[name][key]), torch.as_tensor(b[name][key])), (name, key)


AGENTS = {
    "actor-critic": (lambda: ActorCritic(_env(), learning_starts=3, seed=1, device="cpu"), 30, False),
    "policy-search": (lambda: PolicySearch(_env(), population=4, seed=1), 4 * EPISODE * 5, True),
    "td3": (lambda: make_sb3_agent("td3", _env(), seed=1, device="cpu", learning_starts=5, batch_size=8,
                                   net_arch=[8]), 25, False),
}


@pytest.mark.parametrize("agent", sorted(AGENTS))
@pytest.mark.parametrize("eval_freq", [1, 2])
def test_select_best_callback_matches_a_hand_written_reference(agent, eval_freq):
    make, steps, by_generation = AGENTS[agent]
    reference_model = make()
    reference = Reference(_env(), by_generation)
    reference_model.learn(steps, callback=[reference])
    expected = _expected(reference.points, eval_freq)

    model = make()
    selector = SelectBestCallback(_env(), eval_freq, SEEDS)
    model.learn(steps, callback=[selector])
    assert model.num_timesteps == reference_model.num_timesteps
    assert selector.best_timestep == expected[0]
    assert selector.best_return == expected[1]
    _assert_same(_policy(model), expected[2])
    assert deterministic_return(model, _env(), SEEDS) == expected[1]
    # the selection changed nothing else: the critics (or the search's std) trained alike
    if agent == "actor-critic":
        for p, q in zip(model.critic.parameters(), reference_model.critic.parameters()):
            assert torch.equal(p, q)
    elif agent == "policy-search":
        assert np.array_equal(model.std, reference_model.std) and model.generation == reference_model.generation


def test_set_parameters_checks_names():
    agent = ActorCritic(_env(), seed=0, device="cpu")
    params = agent.get_parameters()
    assert set(params) == {"actor", "obs_rms"}
    with pytest.raises(ValueError):
        agent.set_parameters({"actor": params["actor"]})  # exact_match: obs_rms missing
    agent.set_parameters({"actor": params["actor"]}, exact_match=False)
    with pytest.raises(ValueError):
        agent.set_parameters({"critic": {}}, exact_match=False)
    search = PolicySearch(_env(), population=4, seed=0)
    search.set_parameters({"search": {"mean": torch.ones(search.mean.size, dtype=torch.float64)}})
    assert np.array_equal(search.mean, np.ones(search.mean.size))


class _FixedRate:
    """A deterministic 'policy' that always asks for the same action."""

    def __init__(self, action: float) -> None:
        self.action = np.array([action], dtype=np.float32)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return self.action, None


def test_a_failed_selection_episode_costs_the_failure_cost():
    """With ``failure_cost`` (suite training selects this way) an episode that ends diverged costs
    that much more, so a policy that fails on one selection problem never outranks one that
    fails on none, whatever its mean return; without it the return alone counts."""
    def env():
        return LearningRateEnv("regression2d", episode_length=20, device="cpu", action="raw",
                               lr_min=1e-5, lr_max=1e4, divergence_factor=10.0)

    safe, reckless = _FixedRate(0.05), _FixedRate(1e4)
    plain = deterministic_return(reckless, env(), SEEDS)
    charged = deterministic_return(reckless, env(), SEEDS, failure_cost=1000.0)
    assert charged == pytest.approx(plain - 1000.0)  # both selection episodes diverged
    assert deterministic_return(safe, env(), SEEDS, failure_cost=1000.0) == deterministic_return(safe, env(), SEEDS)
