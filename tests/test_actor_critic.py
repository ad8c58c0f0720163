"""The paper's actor-critic: one update against a hand computation, separate sample, predict,
recurrent state, checkpoints (round trip, corrupt, malicious)."""
import math
import os
import pickle

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from agents.actor_critic import ActorCritic
from agents.io import CheckpointError, safe_torch_load

OBS = spaces.Box(0.0, 1e3, (1,), np.float32)


def make_agent(act_dim=1, **kwargs):
    return ActorCritic(None, observation_space=OBS, action_space=spaces.Box(-1, 1, (act_dim,), np.float32),
                       device="cpu", **kwargs)


class ToyActor(nn.Module):
    """pi(s) = tanh(w s + b): no recurrence, so its gradient is easy to write down by hand."""

    def __init__(self, w: float, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[w]]))
        self.b = nn.Parameter(torch.tensor([b]))

    def forward(self, obs, state):
        return torch.tanh(obs @ self.w.T + self.b), state

    def initial_state(self, batch=1):
        return torch.zeros(1, batch, 1), torch.zeros(1, batch, 1)


# toy critic weights: Q(s, a) = w2 . tanh(W1 [s, a] + b1) + b2, with 3 hidden units
W1 = np.array([[0.5, -1.0], [0.2, 0.7], [-0.3, 0.4]])
B1 = np.array([0.1, -0.2, 0.05])
W2 = np.array([0.8, -0.5, 1.2])
B2 = 0.3
ACTOR_W, ACTOR_B = 0.6, -0.1


def toy_agent(m_phi=2, m_theta=2, gamma=0.9, separate_sample=True):
    agent = make_agent(m_phi=m_phi, m_theta=m_theta, gamma=gamma, separate_sample=separate_sample,
                       critic_hidden=3, noise_std=0.0)
    with torch.no_grad():
        lin1, lin2 = agent.critic.net[0], agent.critic.net[2]
        lin1.weight.copy_(torch.tensor(W1)); lin1.bias.copy_(torch.tensor(B1))
        lin2.weight.copy_(torch.tensor(W2[None])); lin2.bias.copy_(torch.tensor([B2]))
    agent.actor = ToyActor(ACTOR_W, ACTOR_B)
    agent.actor_optimizer = torch.optim.Adam(agent.actor.parameters())
    return agent


def q_and_grads(s, a):
    """Q, dQ/d(W1, b1, W2, b2) and dQ/da by hand."""
    x = np.array([s, a])
    h = np.tanh(W1 @ x + B1)
    dpre = W2 * (1 - h ** 2)
    return (W2 @ h + B2, {"W1": np.outer(dpre, x), "b1": dpre, "W2": h[None], "b2": np.array([1.0])},
            dpre @ W1[:, 1])


def pi(s):
    return np.tanh(ACTOR_W * s + ACTOR_B)


S_T, A_T, R, S_I_NEXT, S_J_NEXT = 2.0, 0.3, 0.25, 1.5, 1.9


def expected_actor_grad(s_actor, m_theta):
    a = pi(s_actor)
    _, _, dq_da = q_and_grads(s_actor, a)
    dpi = (1 - a ** 2) * np.array([s_actor, 1.0])  # d pi / d(w, b)
    return -dpi * dq_da / m_theta  # descent direction of Eq. 9's ascent, averaged over m_theta


def grads_of(agent):
    lin1, lin2 = agent.critic.net[0], agent.critic.net[2]
    critic = {"W1": lin1.weight.grad, "b1": lin1.bias.grad, "W2": lin2.weight.grad, "b2": lin2.bias.grad}
    actor = np.array([agent.actor.w.grad.item(), agent.actor.b.grad.item()])
    return {k: v.numpy() for k, v in critic.items()}, actor


def test_one_update_matches_hand_computation():
    agent = toy_agent(m_phi=2, m_theta=2, gamma=0.9)
    state = agent.actor.initial_state(1)
    out = agent.train_step([S_T], [A_T], R, [S_I_NEXT], [S_J_NEXT], False, state)

    q, dq, _ = q_and_grads(S_T, A_T)
    q_next, _, _ = q_and_grads(S_I_NEXT, pi(S_I_NEXT))
    delta = R + 0.9 * q_next - q                             # Eq. 7
    assert out["delta"] == pytest.approx(delta, rel=1e-5)
    critic_grads, actor_grad = grads_of(agent)
    for name, g in dq.items():                              # Eq. 8, averaged over m_phi = 2
        np.testing.assert_allclose(critic_grads[name], -delta * g / 2, rtol=1e-5, atol=1e-7)
    # Eq. 9 on s_j^{t+1}, averaged over m_theta = 2
    np.testing.assert_allclose(actor_grad, expected_actor_grad(S_J_NEXT, 2), rtol=1e-5)

    # the second step completes both windows: one Adam step each, gradients cleared
    before = [p.detach().clone() for p in agent.critic.parameters()]
    agent.train_step([S_T], [A_T], R, [S_I_NEXT], [S_J_NEXT], False, state)
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is None for p in agent.actor.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.critic.parameters()))


def test_no_bootstrap_on_termination():
    agent = toy_agent(m_phi=1, m_theta=1)
    out = agent.train_step([S_T], [A_T], R, [S_I_NEXT], [S_J_NEXT], True, agent.actor.initial_state(1))
    q, _, _ = q_and_grads(S_T, A_T)
    assert out["delta"] == pytest.approx(R - q, rel=1e-5)


def test_separate_sample_flag_changes_the_actor_state():
    grads = {}
    for flag in (True, False):
        agent = toy_agent(separate_sample=flag)
        agent.train_step([S_T], [A_T], R, [S_I_NEXT], [S_J_NEXT], False, agent.actor.initial_state(1))
        grads[flag] = grads_of(agent)
    np.testing.assert_allclose(grads[True][1], expected_actor_grad(S_J_NEXT, 2), rtol=1e-5)
    np.testing.assert_allclose(grads[False][1], expected_actor_grad(S_I_NEXT, 2), rtol=1e-5)
    assert not np.allclose(grads[True][1], grads[False][1])
    for name in grads[True][0]:  # the critic's update does not depend on the flag
        np.testing.assert_allclose(grads[True][0][name], grads[False][0][name])


def test_lstm_actor_gradient_is_chain_rule_of_eq9():
    """With the real LSTM actor: the accumulated gradient equals -d pi/d theta * dQ/da."""
    agent = make_agent(m_theta=3, noise_std=0.0, seed=3)
    state = agent.actor.initial_state(1)
    state = agent.actor(torch.tensor([[0.7]]), state)[1]  # some carried-over hidden state
    agent.train_step([1.0], [0.2], 0.1, [0.9], [1.3], False, state)
    params = dict(agent.actor.named_parameters())
    s_j = torch.tensor([[1.3]])
    a_j = torch.func.functional_call(agent.actor, params, (s_j, state))[0]
    a_leaf = a_j.detach().requires_grad_(True)
    dq_da = torch.autograd.grad(agent.critic(s_j, a_leaf).sum(), a_leaf)[0]
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(agent.actor, p, (s_j, state))[0])(params)
    for name, p in agent.actor.named_parameters():
        expected = -(dq_da.reshape(-1, *([1] * p.dim())) * jac[name][0]).sum(0) / 3
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)


def test_predict_is_deterministic_and_noise_is_not():
    agent = make_agent(seed=1)
    a1, _ = agent.predict(np.array([2.0], np.float32))
    a2, _ = agent.predict(np.array([2.0], np.float32))
    assert a1.shape == (1,) and np.array_equal(a1, a2)
    noisy = [agent.predict(np.array([2.0], np.float32), deterministic=False)[0] for _ in range(3)]
    assert not all(np.array_equal(noisy[0], n) for n in noisy[1:])
    assert all(-1 <= n[0] <= 1 for n in noisy)


def test_lstm_state_is_carried_and_reset_at_episode_start():
    agent = make_agent(act_dim=3, seed=2)
    obs = np.array([[2.0], [0.5]], np.float32)  # two envs
    fresh, state = agent.predict(obs)
    assert fresh.shape == (2, 3) and state[0].shape == (2, 2, 20)
    carried, state2 = agent.predict(obs, state=state, episode_start=np.array([False, False]))
    assert not np.allclose(carried, fresh)  # the same observation, a different history
    mixed, _ = agent.predict(obs, state=state2, episode_start=np.array([True, False]))
    np.testing.assert_array_equal(mixed[0], fresh[0])  # env 0 restarted
    assert not np.allclose(mixed[1], fresh[1])
    # a single observation (obs_dim,) gives a single action
    single, _ = agent.predict(obs[0])
    np.testing.assert_array_equal(single, fresh[0])


def test_raw_action_box_is_rescaled():
    agent = ActorCritic(None, observation_space=OBS, action_space=spaces.Box(1e-4, 1.0, (1,), np.float32),
                        device="cpu")
    a, _ = agent.predict(np.array([1.0], np.float32))
    assert 1e-4 <= a[0] <= 1.0


@pytest.fixture(scope="module")
def tiny_env():
    from envs import LearningRateEnv

    return LearningRateEnv("digits", episode_length=6, device="cpu", seed=0)


@pytest.mark.parametrize("extras", [{}, {"target_tau": 0.05, "normalize_obs": True, "m_phi": 2}])
def test_learn_save_load_round_trip(tmp_path, tiny_env, extras):
    agent = ActorCritic(tiny_env, seed=0, device="cpu", **extras)
    agent.learn(14)
    assert agent.num_timesteps == 14
    agent.save(tmp_path / "c.pt")
    loaded = ActorCritic.load(tmp_path / "c.pt", device="cpu")
    assert loaded.num_timesteps == 14 and loaded.hyper == agent.hyper
    obs_seq = np.array([[2.3], [2.1], [1.7], [1.2]], np.float32)
    s1 = s2 = None
    for i, obs in enumerate(obs_seq):
        a1, s1 = agent.predict(obs, s1, episode_start=np.array([i == 0]))
        a2, s2 = loaded.predict(obs, s2, episode_start=np.array([i == 0]))
        np.testing.assert_array_equal(a1, a2)
    if extras.get("normalize_obs"):
        assert loaded.obs_rms.count.item() > 1 and torch.equal(loaded.obs_rms.mean, agent.obs_rms.mean)
    for o1, o2 in zip(agent.actor_optimizer.state_dict()["state"].values(),
                      loaded.actor_optimizer.state_dict()["state"].values()):
        torch.testing.assert_close(o1["exp_avg"], o2["exp_avg"])
    # and training continues from the checkpoint
    loaded.set_env(tiny_env)
    loaded.learn(3, reset_num_timesteps=False)
    assert loaded.num_timesteps == 17


def test_corrupt_and_truncated_checkpoints_are_clear_errors(tmp_path):
    agent = make_agent()
    agent.save(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(2000))
    for name in ("truncated.pt", "garbage.pt", "missing.pt"):
        with pytest.raises(CheckpointError, match=name):
            ActorCritic.load(tmp_path / name)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an actor-critic checkpoint"):
        ActorCritic.load(tmp_path / "other.pt")


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_malicious_pickle_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if how == "torch":
        torch.save({"format": "lrrl-actor-critic/1", "actor": Evil(marker)}, path)
    else:  # protocol 2 is what torch.load's unpickler parses; newer protocols are refused earlier
        path.write_bytes(pickle.dumps({"x": Evil(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load .*posix.system"):
        safe_torch_load(path)
    path.write_bytes(pickle.dumps({"x": Evil(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match="evil.pt"):
        safe_torch_load(path)
    with pytest.raises(CheckpointError):
        ActorCritic.load(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- actor_output="linear"
RATE_BOX = spaces.Box(1e-5, 1.0, (1,), np.float32)  # LearningRateEnv(action="raw"): the rate itself


def rate_agent(bias, **kwargs):
    """A linear-output agent whose actor outputs exactly ``bias`` (head weights zeroed)."""
    agent = ActorCritic(None, observation_space=OBS, action_space=RATE_BOX, device="cpu",
                        actor_output="linear", **kwargs)
    with torch.no_grad():
        agent.actor.head.weight.zero_()
        agent.actor.head.bias.fill_(bias)
    return agent


def test_linear_actor_output_is_the_rate_itself():
    """The paper's a = pi(s): no tanh and no rescaling, only clipping to [lr_min, lr_max]; the
    tanh default maps the same head output affinely from [-1, 1] onto the box."""
    obs = np.array([2.3], np.float32)
    assert rate_agent(0.3).predict(obs)[0][0] == pytest.approx(0.3, abs=1e-7)
    assert rate_agent(5.0).predict(obs)[0][0] == pytest.approx(1.0)      # clipped to lr_max
    assert rate_agent(-0.4).predict(obs)[0][0] == pytest.approx(1e-5)    # clipped to lr_min
    tanh_agent = ActorCritic(None, observation_space=OBS, action_space=RATE_BOX, device="cpu")
    with torch.no_grad():
        tanh_agent.actor.head.weight.zero_()
        tanh_agent.actor.head.bias.fill_(0.3)
    expected = 1e-5 + (math.tanh(0.3) + 1) / 2 * (1.0 - 1e-5)
    assert tanh_agent.predict(obs)[0][0] == pytest.approx(expected, rel=1e-6)


def test_linear_actor_noise_is_in_rate_units():
    agent = rate_agent(0.5, noise_std=0.01)
    state = agent.actor.initial_state(1)
    rates = np.array([agent._act(np.array([1.0], np.float32), state, explore=True)[0][0]
                      for _ in range(2000)])
    assert rates.mean() == pytest.approx(0.5, abs=2e-3)
    assert rates.std() == pytest.approx(0.01, rel=0.1)


def test_linear_actor_update_sees_the_unclipped_output():
    """Below lr_min the actor's output is clipped for the env, but its update evaluates Q at the
    unclipped output, so a critic that prefers larger rates still moves it up (clipping inside
    the gradient path would leave it stuck at the bound with a zero gradient)."""
    agent = rate_agent(-0.5, critic_hidden=1, noise_std=0.0, actor_lr=0.01)
    with torch.no_grad():  # Q(s, a) = tanh(a): increasing in the rate
        lin1, lin2 = agent.critic.net[0], agent.critic.net[2]
        lin1.weight.copy_(torch.tensor([[0.0, 1.0]])); lin1.bias.zero_()
        lin2.weight.fill_(1.0); lin2.bias.zero_()
    state = agent.actor.initial_state(1)
    action, next_state = agent._act(np.array([1.0], np.float32), state, explore=False)
    assert action[0] == pytest.approx(1e-5)
    before = agent.actor.head.bias.item()
    agent.train_step(np.array([1.0]), action, 0.0, np.array([1.0]), np.array([1.0]), False, next_state)
    assert agent.actor.head.bias.item() > before + 1e-3


def test_actor_output_is_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match="actor_output"):
        make_agent(actor_output="sigmoid")
    with pytest.raises(ValueError, match="finite bounds"):
        ActorCritic(None, observation_space=OBS, action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
                    device="cpu", actor_output="linear")
    agent = rate_agent(0.25)
    agent.save(tmp_path / "c.pt")
    loaded = ActorCritic.load(tmp_path / "c.pt", device="cpu")
    assert loaded.actor_output == "linear" and loaded.actor.output == "linear"
    assert loaded.predict(np.array([1.0], np.float32))[0][0] == pytest.approx(0.25, abs=1e-7)
