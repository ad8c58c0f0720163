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
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.actor_critic import ActorCritic, RunningMeanStd

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


def ref_q_tensor(sd: dict, obs: np.ndarray, action: torch.Tensor) -> torch.Tensor:
    """Q(s, a) of the default critic from its state dict: Linear, tanh, Linear."""
    x = torch.cat([torch.as_tensor(np.asarray(obs, np.float32)).reshape(1, -1), action.reshape(1, -1)], -1)
    hid = torch.tanh(F.linear(x, sd["net.0.weight"], sd["net.0.bias"]))
    return F.linear(hid, sd["net.2.weight"], sd["net.2.bias"]).reshape(())


@torch.no_grad()
def ref_q(sd: dict, obs: np.ndarray, action: torch.Tensor) -> float:
    return ref_q_tensor(sd, obs, action).item()


def to_env_action(unit: np.ndarray) -> np.ndarray:
    return ACT_LOW + (unit + 1.0) * 0.5 * (ACT_HIGH - ACT_LOW)


def check_transition(ref: RefActor, call: dict, critic_after: dict, s_t, h_t, noise, step: dict,
                     gamma: float, warmup_unit: torch.Tensor | None = None):
    """One transition against the reference: action, states, reward, flags, LSTM state, TD error,
    ``q`` and ``q_actor``. ``h_t`` is ``(h, c)`` of shape ``(layers, 1, hidden)``; returns the
    state after the step. ``warmup_unit``: the uniform action of a ``learning_starts`` step (the
    actor still runs, for its state; the actor's update is skipped: ``q_actor`` is nan)."""
    actor = ref.load(call["actor"])
    a_mean, h_next = actor(s_t, h_t)
    unit = (a_mean[0] + noise).clamp(-1.0, 1.0).numpy() if warmup_unit is None else warmup_unit.numpy()
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
    if warmup_unit is not None:
        assert np.isnan(call["out"]["q_actor"])
    else:
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
    """Check every recorded transition of a single-env ``learn``; returns the noise draws. The
    generator gives, per step, the noise (if ``noise_std > 0``), then in the first
    ``learning_starts`` steps a uniform action in ``[-1, 1]``."""
    steps = env_steps(env)
    assert len(calls) == len(steps) == agent.num_timesteps
    ref = RefActor(env.observation_space.shape[0], 1, agent.hidden_size, agent.num_layers)
    gen = torch.Generator().manual_seed(seed)
    h, noises = None, []
    for t, (call, (s_t, step, start)) in enumerate(zip(calls, steps)):
        if start:
            h = ref.zeros(1)  # line 27: a new episode restarts the LSTM
        noise = agent.noise_std * torch.randn((1,), generator=gen) if agent.noise_std > 0 else torch.zeros(1)
        noises.append(float(noise))
        warmup = 2 * torch.rand((1,), generator=gen) - 1 if t < agent.learning_starts else None
        critic_after = calls[t + 1]["critic"] if t + 1 < len(calls) else agent.critic.state_dict()
        h = check_transition(ref, call, critic_after, s_t, h, noise, step, agent.gamma, warmup)
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
    assert agent._episode_num == 3 and len(agent.ep_info_buffer) == 3
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
    mean, unclipped steps only), has std ``noise_std``: within 25% over 160 steps (its standard
    error is about 6%; ten times the setting fails by far)."""
    agent, env, calls = run_single(160, seed=2, noise_std=0.05)
    ref = RefActor(2, 1, agent.hidden_size, agent.num_layers)
    h, implied = None, []
    for call, (s_t, _, start) in zip(calls, env_steps(env)):
        if start:
            h = ref.zeros(1)
        mean, h = ref.load(call["actor"])(s_t, h)
        if abs(call["action_unit"][0]) < 1.0:
            implied.append(call["action_unit"][0] - mean.item())
    assert len(implied) > 140
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
    agent.learn(2)  # by default the step count restarts (SB3's reset_num_timesteps=True); no re-seeding
    assert agent.num_timesteps == 2 and len(calls) == 7
    assert [e["seed"] for e in env.log if e["kind"] == "reset"] == [6, None, None]


def test_learn_warm_up_takes_uniform_actions_and_trains_the_critic_only():
    """``learning_starts=3``: the first 3 actions are ``2 U(0, 1) - 1`` from the agent's generator
    (after that step's noise draw), the actor's weights do not move in them, the critic's do."""
    agent, env, calls = run_single(6, seed=8, learning_starts=3)
    reference_single(agent, env, calls, seed=8)
    for t in range(1, 4):  # the snapshots before steps 2..4: after 1..3 warm-up steps
        assert all(torch.equal(calls[0]["actor"][k], calls[t]["actor"][k]) for k in calls[0]["actor"])
        assert any(not torch.equal(calls[t - 1]["critic"][k], calls[t]["critic"][k]) for k in calls[0]["critic"])
    assert any(not torch.equal(calls[3]["actor"][k], calls[4]["actor"][k]) for k in calls[0]["actor"])


class Capture(KVWriter):
    """An SB3 logger output that keeps what ``learn`` dumps."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.rows.append({**key_values, "step": step})


def test_learn_logs_episode_and_update_statistics():
    """With ``log_interval=1`` one dump per finished episode: the window's mean squared TD error
    over 2 (the critic's loss), mean Q, the Monitor's mean episode return and length so far."""
    env = TinyEnv(k=3, terminate=(1,))
    agent = ActorCritic(env, seed=9, device="cpu")
    out = Capture()
    agent.set_logger(Logger(folder=None, output_formats=[out]))
    calls = record_train_steps(agent)
    agent.learn(8, log_interval=1)  # episodes end after steps 3, 5, 8
    assert [r["step"] for r in out.rows] == [3, 5, 8]
    windows, returns, lengths = [(0, 3), (3, 5), (5, 8)], [], []
    for row, (a, b) in zip(out.rows, windows):
        deltas = [c["out"]["delta"] for c in calls[a:b]]
        assert row["train/critic_loss"] == pytest.approx(np.mean(np.square(deltas)) / 2, rel=1e-6)
        assert row["train/q"] == pytest.approx(np.mean([c["out"]["q"] for c in calls[a:b]]), rel=1e-6)
        assert row["train/actor_q"] == pytest.approx(np.mean([c["out"]["q_actor"] for c in calls[a:b]]), rel=1e-6)
        returns.append(sum(c["reward"] for c in calls[a:b]))
        lengths.append(b - a)
        assert row["rollout/ep_rew_mean"] == pytest.approx(np.mean(returns), rel=1e-5)
        assert row["rollout/ep_len_mean"] == pytest.approx(np.mean(lengths))
        assert row["time/episodes"] == len(returns) and row["time/total_timesteps"] == b
        assert row["train/n_updates"] == b and row["time/fps"] >= 0


def test_predict_carries_the_lstm_state_like_the_loop():
    """``predict`` with the state it returned: the reference actor's (h, c) carried over a sequence."""
    agent = ActorCritic(TinyEnv(), seed=10, device="cpu")
    ref = RefActor(2, 1, agent.hidden_size, agent.num_layers).load(agent.actor.state_dict())
    h, state = ref.zeros(1), None
    for t, obs in enumerate(np.array([[0.3, 0.7], [1.1, -0.4], [-0.6, 0.2], [2.0, 1.0]], np.float32)):
        action, state = agent.predict(obs, state, episode_start=np.array([t == 0]))
        a, h = ref(obs, h)
        np.testing.assert_allclose(action, to_env_action(a[0].numpy()), **TOL)
        for got, want in zip(state, h):
            np.testing.assert_allclose(got, want.numpy(), **TOL)


# --------------------------------------------------------------------------- N parallel envs
@pytest.mark.parametrize("learning_starts", [0, 4])
def test_learn_parallel_passes_algorithm_1_transitions(learning_starts):
    """A ``DummyVecEnv`` of two tiny envs whose episodes end at different steps (env 0: 3 steps,
    its second episode terminated after 2; env 1: 2 steps, truncated): per step, one batched actor
    step with N noise draws, then N single-env updates; each env's LSTM restarts when its episode
    ends. With ``learning_starts=4`` the first 2 vector steps take uniform actions (drawn after
    the step's noise) and skip the actor's update."""
    envs = [TinyEnv(k=3, terminate=(1,)), TinyEnv(k=2, terminate=(), offset=0.4)]
    vec = DummyVecEnv([lambda e=e: e for e in envs])
    agent = ActorCritic(vec, seed=7, device="cpu", noise_std=0.15, learning_starts=learning_starts)
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
        warmup = 2 * torch.rand((2, 1), generator=gen) - 1 if 2 * t < learning_starts else None
        actor = ref.load(calls[2 * t]["actor"])  # one batched actor step, with the weights before the N updates
        s_t = np.stack([per_env[i][t][0] for i in range(2)])
        for i in range(2):
            if per_env[i][t][2]:  # episode start: zero that env's state
                h[0][:, i].zero_()
                h[1][:, i].zero_()
        a_mean, h_next = actor(s_t, h)
        for i in range(2):
            call, (_, step, _) = calls[2 * t + i], per_env[i][t]
            unit = (a_mean[i] + noise[i]).clamp(-1.0, 1.0).numpy() if warmup is None else warmup[i].numpy()
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
            assert bool(np.isnan(call["out"]["q_actor"])) is (2 * t + i < learning_starts)
        h = (h_next[0].clone(), h_next[1].clone())
    ends = [(s["terminated"], s["truncated"]) for p in per_env for _, s, _ in p if s["terminated"] or s["truncated"]]
    assert (True, False) in ends and (False, True) in ends
    assert agent._episode_num == len(ends)


# --------------------------------------------------------------------------- what the loop relies on
@pytest.mark.parametrize("kwargs, match", [
    ({"gamma": 1.01}, "gamma"), ({"gamma": -0.01}, "gamma"), ({"learning_starts": -1}, "learning_starts"),
    ({"m_phi": 0}, "m_phi"), ({"m_theta": 0}, "m_theta"), ({"noise_std": -1e-3}, "noise_std"),
    ({"noise_std": float("inf")}, "noise_std"), ({"noise_std": float("nan")}, "noise_std"),
    ({"target_tau": 0.0}, "target_tau"), ({"target_tau": 1.01}, "target_tau"),
])
def test_bad_hyperparameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActorCritic(TinyEnv(), device="cpu", **kwargs)


def test_boundary_hyperparameters_are_accepted():
    for kwargs in ({"gamma": 0.0}, {"gamma": 1.0}, {"noise_std": 0.0}, {"target_tau": 1.0},
                   {"m_phi": 1, "m_theta": 1, "learning_starts": 0}):
        ActorCritic(TinyEnv(), device="cpu", **kwargs)
    with pytest.raises(ValueError, match="give an env"):
        ActorCritic(None, device="cpu", observation_space=TinyEnv.observation_space)
    with pytest.raises(ValueError, match="needs an env"):
        ActorCritic(None, device="cpu", observation_space=TinyEnv.observation_space,
                    action_space=TinyEnv.action_space).learn(1)


def test_running_mean_std_matches_numpy_and_clips():
    """The observation normaliser: parallel-Welford updates over uneven batches equal the mean and
    (population) variance of all the data (up to its prior count 1e-4); the output is clipped."""
    rng = np.random.default_rng(0)
    batches = [rng.normal([3.0, -1.0], [2.0, 0.5], size=(n, 2)) for n in (1, 5, 17)]
    rms = RunningMeanStd(2)
    for b in batches:
        rms.update(torch.as_tensor(b))
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-4)
    assert rms.count.item() == pytest.approx(23, abs=1e-3)
    x = torch.tensor([[4.0, -1.2], [3.0 + 1e4, -1.0 - 1e4]])
    z = rms(x)
    expected = (x[0].double() - rms.mean) / torch.sqrt(rms.var + 1e-8)
    torch.testing.assert_close(z[0], expected.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z[1], torch.tensor([10.0, -10.0]))


def test_twin_critics_fit_the_same_target_from_their_minimum():
    """``twin_critics``: the TD target bootstraps from the smaller of the two critics at
    ``(s_i^{t+1}, pi(s_i^{t+1}, h_{t+1}))``; the twin's gradient is that of
    ``(target - Q2(s_t, a_t))**2 / 2``, averaged over ``m_phi``."""
    agent = ActorCritic(TinyEnv(), seed=11, device="cpu", twin_critics=True, m_phi=2)
    _, h1 = agent.actor(torch.tensor([[0.3, 0.7]]), agent.actor.initial_state(1))  # a carried state
    s, a, r, s_i, s_j = [0.3, 0.7], [0.2], 0.5, [1.1, -0.4], [0.9, 0.1]
    c1, c2 = copy.deepcopy(agent.critic.state_dict()), copy.deepcopy(agent.critic2.state_dict())
    a_next, _ = RefActor(2, 1, agent.hidden_size, agent.num_layers).load(agent.actor.state_dict())(s_i, h1)
    q_next = [ref_q(c, s_i, a_next) for c in (c1, c2)]
    assert abs(q_next[0] - q_next[1]) > 1e-3  # the minimum matters
    target = r + agent.gamma * min(q_next)
    out = agent.train_step(s, a, r, s_i, s_j, False, h1)
    assert out["delta"] == pytest.approx(target - ref_q(c1, s, torch.tensor(a)), rel=1e-5, abs=1e-6)
    params = {k: v.clone().requires_grad_(True) for k, v in c2.items()}
    (0.5 * (target - ref_q_tensor(params, s, torch.tensor(a))) ** 2 / 2).backward()
    for name, p in agent.critic2.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-5, atol=1e-7)
