"""``ActorCritic.learn`` (Algorithm 1's loop) on a tiny deterministic env: every transition the loop
hands to ``train_step`` is recorded and checked against an independent re-run of the loop.

The reference (:func:`reference_single` / :func:`reference_parallel`) re-implements what Algorithm 1
says the loop passes on, with its own LSTM, linear head, tanh and critic built from the weights the
agent held at each step (snapshots taken just before each ``train_step``, so the reference follows the
agent's learning without re-implementing the update itself, which ``tests/test_actor_critic.py``
checks against hand-computed numbers):

- the action ``clip(pi_theta_t(s_t, h_t) + noise_std * N(0, 1), -1, 1)``, the noise drawn from a
  generator seeded like the agent's (``torch.Generator().manual_seed(seed)``), mapped to the env's box;
- ``s_t``: the env's reset observation at an episode start, otherwise the previous step's observation;
- the critic's next state ``s_i^{t+1}`` = ``info["critic_next_obs"]`` (same batch ``x_i``), the actor's
  ``s_j^{t+1}`` = the observation ``step`` returns (batch ``x_j``), as the env gave them;
- the LSTM state passed on is the one AFTER consuming ``s_t``; it is carried into step ``t + 1`` and
  restarts from zeros at every episode start (terminated or truncated: the paper's line 27);
- the TD error ``r + gamma * (1 - terminated) * Q(s_i^{t+1}, pi(s_i^{t+1}, h_{t+1})) - Q(s_t, a_t)``:
  a truncated step (the env's reset frequency ``e``) bootstraps, a terminated one does not;
- the actor's ``q_actor = Q_{phi_{t+1}}(s_j^{t+1}, pi_theta_t(s_j^{t+1}, h_{t+1}))`` (the critic has
  already taken its step when the actor's term is computed).

The tests use the default actor (tanh head in ``[-1, 1]``) and read its weights by name (``lstm.*``,
``head.*``; the critic's ``net.0.*``, ``net.2.*``).
"""
from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.actor_critic import ActorCritic

ACT_LOW, ACT_HIGH = 0.0, 2.0  # a non-[-1, 1] box: the loop must map actor units to env actions
TOL = dict(rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the tiny env
class TinyEnv(gym.Env):
    """Deterministic; its observations depend on the step, the episode and the action taken.

    ``info["critic_next_obs"]`` (the "same-batch" next state) differs from the returned observation
    (the "next batch") by a fixed offset, so that swapping them is visible. Episode ``n`` lasts
    ``k`` steps and is truncated, except the episodes in ``terminate``, which end one step earlier
    with ``terminated=True``. Every reset and step is logged in ``self.log``.
    """

    observation_space = spaces.Box(-50.0, 50.0, (2,), np.float32)
    action_space = spaces.Box(ACT_LOW, ACT_HIGH, (1,), np.float32)

    def __init__(self, k: int = 3, terminate: tuple[int, ...] = (1,), offset: float = 0.0) -> None:
        self.k, self.terminate, self.offset = k, set(terminate), offset
        self.episode, self.t = -1, 0
        self.log: list[dict] = []

    def _obs(self, a: float) -> np.ndarray:
        return np.array([0.3 * self.t + 0.2 * self.episode + 0.5 * a + self.offset,
                         0.7 - 0.25 * self.t + 0.1 * self.episode], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        obs = self._obs(0.0)
        self.log.append({"kind": "reset", "seed": seed, "obs": obs.copy()})
        return obs, {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        self.t += 1
        obs = self._obs(a)
        critic_obs = obs + np.array([1.5, -0.8], np.float32)
        reward = 1.0 - 0.4 * a + 0.1 * self.t + 0.05 * self.episode
        terminated = self.episode in self.terminate and self.t == self.k - 1
        truncated = not terminated and self.t >= self.k
        self.log.append({"kind": "step", "action": np.array(action, np.float32).copy(), "obs": obs.copy(),
                         "critic_obs": critic_obs.copy(), "reward": reward, "terminated": terminated,
                         "truncated": truncated})
        return obs, reward, terminated, truncated, {"critic_next_obs": critic_obs}


# --------------------------------------------------------------------------- recording
def record_train_steps(agent: ActorCritic) -> list[dict]:
    """Wrap ``agent.train_step``: each call's arguments (copied: the parallel loop zeroes its LSTM
    state in place afterwards), the networks' weights before it, and its output."""
    calls: list[dict] = []
    original = agent.train_step

    def recording(obs, action_unit, reward, critic_next_obs, actor_next_obs, terminated, state):
        calls.append({
            "obs": np.array(obs, np.float32).copy(), "action_unit": np.array(action_unit, np.float32).copy(),
            "reward": float(reward), "critic_next_obs": np.array(critic_next_obs, np.float32).copy(),
            "actor_next_obs": np.array(actor_next_obs, np.float32).copy(), "terminated": terminated,
            "state": (state[0].detach().clone(), state[1].detach().clone()),
            "actor": copy.deepcopy(agent.actor.state_dict()),
            "critic": copy.deepcopy(agent.critic.state_dict()),
        })
        out = original(obs, action_unit, reward, critic_next_obs, actor_next_obs, terminated, state)
        calls[-1]["out"] = out
        return out

    agent.train_step = recording
    return calls


# --------------------------------------------------------------------------- the reference
class RefActor:
    """pi_theta(s, h) from a state dict of the default actor: LSTM, linear head, tanh."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        self.lstm = torch.nn.LSTM(obs_dim, hidden, num_layers=layers)
        self.hidden, self.layers = hidden, layers

    def load(self, sd: dict) -> "RefActor":
        self.lstm.load_state_dict({k[len("lstm."):]: v for k, v in sd.items() if k.startswith("lstm.")})
        self.head_w, self.head_b = sd["head.weight"], sd["head.bias"]
        return self

    def zeros(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(self.layers, batch, self.hidden), torch.zeros(self.layers, batch, self.hidden))

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, h):
        x = torch.as_tensor(np.asarray(obs, np.float32)).reshape(1, -1, self.lstm.input_size)
        out, h = self.lstm(x, h)
        return torch.tanh(F.linear(out[0], self.head_w, self.head_b)), h


@torch.no_grad()
def ref_q(sd: dict, obs: np.ndarray, action: torch.Tensor) -> float:
    x = torch.cat([torch.as_tensor(np.asarray(obs, np.float32)).reshape(1, -1), action.reshape(1, -1)], -1)
    hid = torch.tanh(F.linear(x, sd["net.0.weight"], sd["net.0.bias"]))
    return F.linear(hid, sd["net.2.weight"], sd["net.2.bias"]).item()


def to_env_action(unit: np.ndarray) -> np.ndarray:
    return ACT_LOW + (unit + 1.0) * 0.5 * (ACT_HIGH - ACT_LOW)


def check_transition(ref: RefActor, call: dict, critic_after: dict, s_t, h_t, noise, step: dict,
                     gamma: float):
    """One transition against the reference: action, states, reward, flags, LSTM state, TD error,
    ``q`` and ``q_actor``. ``h_t`` is ``(h, c)`` of shape ``(layers, 1, hidden)``."""
    actor = ref.load(call["actor"])
    a_mean, h_next = actor(s_t, h_t)
    unit = (a_mean[0] + noise).clamp(-1.0, 1.0).numpy()
    np.testing.assert_allclose(call["obs"], s_t, **TOL)
    np.testing.assert_allclose(call["action_unit"], unit, **TOL)
    np.testing.assert_allclose(step["action"], to_env_action(unit), **TOL)  # what the env received
    np.testing.assert_allclose(call["critic_next_obs"], step["critic_obs"], **TOL)  # s_i^{t+1}
    np.testing.assert_allclose(call["actor_next_obs"], step["obs"], **TOL)  # s_j^{t+1}
    assert call["reward"] == pytest.approx(step["reward"], rel=1e-6)
    assert bool(call["terminated"]) is step["terminated"]
    for got, want in zip(call["state"], h_next):  # the state after consuming s_t
        torch.testing.assert_close(got, want, **TOL)
    # Eq. 7 with the carried state, no bootstrap on terminated only
    a_next, _ = actor(step["critic_obs"], h_next)
    q_next = ref_q(call["critic"], step["critic_obs"], a_next)
    q = ref_q(call["critic"], s_t, torch.as_tensor(unit))
    target = step["reward"] + gamma * (0.0 if step["terminated"] else 1.0) * q_next
    assert call["out"]["q"] == pytest.approx(q, rel=1e-5, abs=1e-6)
    assert call["out"]["delta"] == pytest.approx(target - q, rel=1e-5, abs=1e-6)
    # Eq. 9's objective on s_j^{t+1} with the carried state, after the critic's step
    a_j, _ = actor(step["obs"], h_next)
    assert call["out"]["q_actor"] == pytest.approx(ref_q(critic_after, step["obs"], a_j), rel=1e-5, abs=1e-6)
    return h_next


def env_steps(env: TinyEnv) -> list[tuple[np.ndarray, dict]]:
    """``(s_t, step)`` pairs from the env's log: ``s_t`` is the reset observation at an episode
    start, otherwise the previous step's observation; plus whether ``s_t`` starts an episode."""
    out, current, start = [], None, False
    for entry in env.log:
        if entry["kind"] == "reset":
            current, start = entry["obs"], True
        else:
            out.append((current, entry, start))
            current, start = entry["obs"], False
    return out


def reference_single(agent: ActorCritic, env: TinyEnv, calls: list[dict], seed: int) -> list[float]:
    """Check every recorded transition of a single-env ``learn``; returns the noise draws."""
    steps = env_steps(env)
    assert len(calls) == len(steps) == agent.num_timesteps
    ref = RefActor(env.observation_space.shape[0], 1, agent.hidden_size, agent.num_layers)
    gen = torch.Generator().manual_seed(seed)
    h, noises = None, []
    for t, (call, (s_t, step, start)) in enumerate(zip(calls, steps)):
        if start:
            h = ref.zeros(1)  # line 27: a new episode restarts the LSTM
        noise = agent.noise_std * torch.randn((1,), generator=gen)
        noises.append(float(noise))
        critic_after = calls[t + 1]["critic"] if t + 1 < len(calls) else agent.critic.state_dict()
        h = check_transition(ref, call, critic_after, s_t, h, noise, step, agent.gamma)
    return noises


def run_single(total: int, seed: int = 0, **kwargs) -> tuple[ActorCritic, TinyEnv, list[dict]]:
    env = TinyEnv(k=3, terminate=(1,))
    agent = ActorCritic(env, seed=seed, device="cpu", **kwargs)
    calls = record_train_steps(agent)
    agent.learn(total)
    return agent, env, calls


# --------------------------------------------------------------------------- single env
def test_learn_passes_algorithm_1_transitions():
    """Episodes: truncated after 3 steps, the second terminated after 2; 10 steps span 4 episodes,
    so a truncated and a terminated boundary are both crossed."""
    agent, env, calls = run_single(10, seed=5, noise_std=0.2)
    # the episode ends the loop saw: truncated (bootstrap), terminated (no bootstrap), truncated
    ends = [(s["terminated"], s["truncated"]) for _, s, _ in env_steps(env) if s["terminated"] or s["truncated"]]
    assert ends == [(False, True), (True, False), (False, True)]
    assert [e["seed"] for e in env.log if e["kind"] == "reset"] == [5, None, None, None]
    reference_single(agent, env, calls, seed=5)
    # the agent learns as it goes: the weights the actor acts with change from step to step
    first, last = calls[0]["actor"], calls[-1]["actor"]
    assert any(not torch.equal(first[k], last[k]) for k in first)
    assert any(not torch.equal(calls[0]["critic"][k], calls[1]["critic"][k]) for k in calls[0]["critic"])


def test_learn_first_step_uses_the_initial_weights_and_a_fresh_lstm():
    env = TinyEnv()
    agent = ActorCritic(env, seed=1, device="cpu")
    initial = copy.deepcopy(agent.actor.state_dict()), copy.deepcopy(agent.critic.state_dict())
    calls = record_train_steps(agent)
    agent.learn(2)
    for got, want in zip((calls[0]["actor"], calls[0]["critic"]), initial):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    ref = RefActor(2, 1, agent.hidden_size, agent.num_layers).load(initial[0])
    _, h1 = ref(env.log[0]["obs"], ref.zeros(1))
    for got, want in zip(calls[0]["state"], h1):
        torch.testing.assert_close(got, want, **TOL)


def test_learn_noise_has_its_set_std():
    """The exploration noise, read off the recorded actions (action minus the reference actor's
    mean, unclipped steps only), has std ``noise_std``: within 25% over 240 steps (its standard
    error is about 5%)."""
    agent, env, calls = run_single(240, seed=2, noise_std=0.05)
    ref = RefActor(2, 1, agent.hidden_size, agent.num_layers)
    h, implied = None, []
    for call, (s_t, _, start) in zip(calls, env_steps(env)):
        if start:
            h = ref.zeros(1)
        mean, h = ref.load(call["actor"])(s_t, h)
        if abs(call["action_unit"][0]) < 1.0:
            implied.append(call["action_unit"][0] - mean.item())
    assert len(implied) > 200
    assert np.std(implied) == pytest.approx(0.05, rel=0.25)
    assert abs(np.mean(implied)) < 0.05 * 4 / np.sqrt(len(implied))  # zero-mean (4 standard errors)


def test_learn_without_noise_acts_with_the_actor_mean():
    agent, env, calls = run_single(5, seed=3, noise_std=0.0)
    noises = reference_single(agent, env, calls, seed=3)
    assert noises == [0.0] * 5


def test_learn_separate_sample_off_gives_the_actor_the_critic_state():
    """``separate_sample=False``: the loop passes the same transitions; the actor's term is on
    ``s_i^{t+1}`` (``q_actor`` then equals ``Q_{phi_{t+1}}(s_i^{t+1}, pi(s_i^{t+1}, h_{t+1}))``)."""
    agent, env, calls = run_single(4, seed=4, separate_sample=False)
    ref = RefActor(2, 1, agent.hidden_size, agent.num_layers)
    h = None
    for t, (call, (s_t, step, start)) in enumerate(zip(calls, env_steps(env))):
        if start:
            h = ref.zeros(1)
        np.testing.assert_allclose(call["critic_next_obs"], step["critic_obs"], **TOL)
        np.testing.assert_allclose(call["actor_next_obs"], step["obs"], **TOL)
        actor = ref.load(call["actor"])
        _, h = actor(s_t, h)
        a_i, _ = actor(step["critic_obs"], h)
        critic_after = calls[t + 1]["critic"] if t + 1 < len(calls) else agent.critic.state_dict()
        assert call["out"]["q_actor"] == pytest.approx(ref_q(critic_after, step["critic_obs"], a_i), rel=1e-5,
                                                        abs=1e-6)


def test_learn_resumes_without_reseeding_and_restarts_the_lstm():
    """A second ``learn(reset_num_timesteps=False)`` starts a fresh episode (reset without seed)
    with a fresh LSTM state, and the noise stream continues."""
    env = TinyEnv(k=4, terminate=())
    agent = ActorCritic(env, seed=6, device="cpu")
    calls = record_train_steps(agent)
    agent.learn(2)
    agent.learn(3, reset_num_timesteps=False)
    assert agent.num_timesteps == 5
    assert [e["seed"] for e in env.log if e["kind"] == "reset"] == [6, None]
    # the env log has an interrupted episode: the second learn() resets mid-episode
    reference_single(agent, env, calls, seed=6)


# --------------------------------------------------------------------------- N parallel envs
def test_learn_parallel_passes_algorithm_1_transitions():
    """A ``DummyVecEnv`` of two tiny envs whose episodes end at different steps (env 0: 3 steps,
    its second episode terminated after 2; env 1: 2 steps, truncated): per step, one batched actor
    step with N noise draws, then N single-env updates; each env's LSTM restarts when its episode
    ends."""
    envs = [TinyEnv(k=3, terminate=(1,)), TinyEnv(k=2, terminate=(), offset=0.4)]
    vec = DummyVecEnv([lambda e=e: e for e in envs])
    agent = ActorCritic(vec, seed=7, device="cpu", noise_std=0.15)
    calls = record_train_steps(agent)
    agent.learn(12)  # 6 vector steps
    assert agent.num_timesteps == 12 and len(calls) == 12
    for i, env in enumerate(envs):
        resets = [e["seed"] for e in env.log if e["kind"] == "reset"]
        assert resets[0] == 7 + i and all(s is None for s in resets[1:])
    per_env = [env_steps(env) for env in envs]
    assert all(len(p) == 6 for p in per_env)
    ref = RefActor(2, 1, agent.hidden_size, agent.num_layers)
    gen = torch.Generator().manual_seed(7)
    h = ref.zeros(2)
    for t in range(6):
        noise = agent.noise_std * torch.randn((2, 1), generator=gen)
        actor = ref.load(calls[2 * t]["actor"])  # one batched actor step, with the weights before the N updates
        s_t = np.stack([per_env[i][t][0] for i in range(2)])
        for i in range(2):
            if per_env[i][t][2]:  # episode start: zero that env's state
                h[0][:, i].zero_()
                h[1][:, i].zero_()
        a_mean, h_next = actor(s_t, h)
        for i in range(2):
            call, (_, step, _) = calls[2 * t + i], per_env[i][t]
            unit = (a_mean[i] + noise[i]).clamp(-1.0, 1.0).numpy()
            np.testing.assert_allclose(call["obs"], s_t[i], **TOL)
            np.testing.assert_allclose(call["action_unit"], unit, **TOL)
            np.testing.assert_allclose(step["action"], to_env_action(unit), **TOL)
            np.testing.assert_allclose(call["critic_next_obs"], step["critic_obs"], **TOL)
            np.testing.assert_allclose(call["actor_next_obs"], step["obs"], **TOL)  # the terminal obs
            assert call["reward"] == pytest.approx(step["reward"], rel=1e-6)
            assert bool(call["terminated"]) is step["terminated"]
            h_i = (h_next[0][:, i:i + 1], h_next[1][:, i:i + 1])
            for got, want in zip(call["state"], h_i):
                torch.testing.assert_close(got, want, **TOL)
            # Eq. 7 with the weights of this update (the N updates run one after another)
            actor_i = RefActor(2, 1, agent.hidden_size, agent.num_layers).load(call["actor"])
            a_next, _ = actor_i(step["critic_obs"], h_i)
            q_next = ref_q(call["critic"], step["critic_obs"], a_next)
            q = ref_q(call["critic"], s_t[i], torch.as_tensor(unit))
            target = step["reward"] + agent.gamma * (0.0 if step["terminated"] else 1.0) * q_next
            assert call["out"]["delta"] == pytest.approx(target - q, rel=1e-5, abs=1e-6)
        h = (h_next[0].clone(), h_next[1].clone())
    ends = [(s["terminated"], s["truncated"]) for p in per_env for _, s, _ in p if s["terminated"] or s["truncated"]]
    assert (True, False) in ends and (False, True) in ends
