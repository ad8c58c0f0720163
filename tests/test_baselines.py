"""Baselines: equivalence with a plain PyTorch loop, and vSGD / SGD-HD against hand computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrrl.sweep import make_spec, run_spec
from agents.baselines import (ConstantLR, ControllerPolicy, FeatureController, HypergradientSGD, VSGD,
                              finite_difference_curvature, run_episode)
from envs.learning_rate_env import LearningRateEnv
from envs.tasks import make_task


def plain_pytorch_final_loss(optimizer_cls, lr: float, seed: int, steps: int) -> float:
    """The digits task trained by a plain loop written here: same w0, same batch order as the
    trainer by construction (its documented seeding), but no env, no PrimaryTrainer."""
    task = make_task("digits")
    n = len(task.x_train)
    # PrimaryTrainer keeps the training set in a fixed permuted order (seed 12345)
    split = torch.randperm(n, generator=torch.Generator().manual_seed(12345))
    x, y = task.x_train[split], task.y_train[split]
    torch.manual_seed((seed * 1_000_003) % (2**63))  # w0 of seed `seed`
    model = task.model_factory()
    opt = optimizer_cls(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)  # epoch-wise shuffling from the seed
    perm, pos, b = torch.empty(0, dtype=torch.long), 0, task.batch_size
    for _ in range(steps):
        if pos + b > len(perm):
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + b]
        pos += b
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


COMMON = {"task": "digits", "steps": 40, "eval_every": 20, "device": "cpu", "data_root": None,
          "validation_size": 0, "trace": False, "divergence_factor": 100.0}


@pytest.mark.parametrize("name,cls,lr", [("sgd", torch.optim.SGD, 0.3), ("adam", torch.optim.Adam, 3e-3)])
def test_runner_matches_plain_pytorch_loop(name, cls, lr):
    # 40 batches of 50 cross an epoch boundary (1437 examples): the reshuffle is checked too
    spec = make_spec(name, 7, lr, optimizer=name)
    rec = run_spec(spec, COMMON)
    assert rec["status"] == "ok", rec.get("message")
    expected = plain_pytorch_final_loss(cls, lr, seed=7, steps=40)
    assert rec["final"]["train_loss"] == pytest.approx(expected, rel=1e-5)
    # a different seed gives a different result (the comparison is not vacuous)
    other = run_spec(make_spec(name, 8, lr, optimizer=name), COMMON)
    assert abs(other["final"]["train_loss"] - expected) > 1e-4


# --------------------------------------------------------------------------- hand computations
def regression_env(**kw) -> LearningRateEnv:
    kw = {"episode_length": 5, **kw}
    return LearningRateEnv(task="regression2d", action="raw", lr_min=1e-8, lr_max=10.0,
                           device="cpu", **kw)


def batch_grad_and_hessian(env: LearningRateEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form for mean squared error of a 2-weight linear model on the current batch:
    g = 2/B X^T (X w - y), H = 2/B X^T X (float64)."""
    tr = env.trainer
    idx = env.current_batch
    x, y = tr.x_train[idx].double(), tr.y_train[idx].double().reshape(-1)
    w = tr.model.weight.detach().double().reshape(-1)
    b = len(idx)
    return 2.0 / b * x.T @ (x @ w - y), 2.0 / b * x.T @ x


def test_finite_difference_curvature_restores_weights_and_grad():
    env = regression_env()
    env.reset(seed=4)
    w_before = env.trainer.model.weight.detach().clone()
    g_before = env.trainer.flat_grad().clone()
    g, h = finite_difference_curvature(env)
    assert torch.equal(env.trainer.model.weight.detach(), w_before)
    assert torch.equal(env.trainer.flat_grad(), g_before)
    assert torch.equal(g, g_before)
    g_hand, hess = batch_grad_and_hessian(env)
    u = g_hand / g_hand.norm()
    assert h == pytest.approx(float((hess @ u).norm()), rel=1e-2)


def test_vsgd_matches_hand_computation():
    env = regression_env()
    obs, info = env.reset(seed=5)
    pol = VSGD(c=2.0, tau0=10.0)
    pol.reset(env)
    g0, hess0 = batch_grad_and_hessian(env)
    lr0 = pol(obs, info, env)
    h0 = pol.last_h  # the policy's finite-difference measurement; checked against ||H u|| here
    assert h0 == pytest.approx(float((hess0 @ (g0 / g0.norm())).norm()), rel=1e-2)
    # slow start: gbar = g0, vbar = C |g0|^2, hbar = C h0 -> lr0 = 1 / (C^2 h0)
    assert lr0 == pytest.approx(1.0 / (4.0 * h0), rel=1e-9)
    assert pol.tau == pytest.approx((1 - 0.5) * 10.0 + 1.0)
    w0 = env.trainer.model.weight.detach().double().reshape(-1).clone()
    obs, _, _, _, info = env.step([lr0])
    # the update used the ORIGINAL gradient (the finite difference left .grad as it was)
    w1 = env.trainer.model.weight.detach().double().reshape(-1)
    assert torch.allclose(w1, w0 - lr0 * g0, rtol=1e-5, atol=1e-6)
    # second step: tau-weighted running averages
    g1, hess1 = batch_grad_and_hessian(env)
    tau = pol.tau
    lr1 = pol(obs, info, env)
    h1 = pol.last_h
    assert h1 == pytest.approx(float((hess1 @ (g1 / g1.norm())).norm()), rel=1e-2)
    k = 1.0 / tau
    gbar = (1 - k) * g0 + k * g1
    vbar = (1 - k) * 2.0 * float(g0 @ g0) + k * float(g1 @ g1)
    hbar = (1 - k) * 2.0 * h0 + k * h1
    expected = float(gbar @ gbar) / (hbar * vbar)
    assert lr1 == pytest.approx(expected, rel=1e-4)
    assert pol.tau == pytest.approx((1 - float(gbar @ gbar) / vbar) * tau + 1, rel=1e-6)


def test_sgd_hd_matches_hand_computation():
    env = regression_env()
    obs, info = env.reset(seed=6)
    pol = HypergradientSGD(beta=0.005, lr0=0.02)
    pol.reset(env)
    g0, _ = batch_grad_and_hessian(env)
    assert pol(obs, info, env) == 0.02  # lr_0 = lr0: no previous gradient yet
    obs, _, _, _, info = env.step([0.02])
    g1, _ = batch_grad_and_hessian(env)
    lr1 = pol(obs, info, env)
    assert lr1 == pytest.approx(0.02 + 0.005 * float(g1 @ g0), rel=1e-5)
    assert lr1 != pytest.approx(0.02)
    obs, _, _, _, info = env.step([lr1])
    g2, _ = batch_grad_and_hessian(env)
    assert pol(obs, info, env) == pytest.approx(lr1 + 0.005 * float(g2 @ g1), rel=1e-5)


def test_feature_controller_log_linear_rule():
    env = regression_env(eval_every=0, episode_length=45)
    pol = FeatureController(theta=(0.3, 0.0, 0.0), lr0=0.01, every=20)
    res = run_episode(env, pol, seed=1)
    lrs = np.array(res.lr)
    assert np.allclose(lrs[:20], 0.01)                        # constant until the first decision
    assert np.allclose(lrs[20:40], 0.01 * math.exp(0.3))      # log lr += theta0
    assert np.allclose(lrs[40:], 0.01 * math.exp(0.6))
    big = FeatureController(theta=(5.0, 0.0, 0.0), lr0=0.01, every=20)
    res = run_episode(env, big, seed=1)
    assert res.lr[20] == pytest.approx(0.02)                  # clipped at a factor 2 per decision


class _RecurrentStub:
    """Predict with a counter as recurrent state: checks the state is carried and reset."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        assert deterministic
        count = 0 if state is None or episode_start[0] else state
        return np.array([-1.0 + 0.1 * count], dtype=np.float32), count + 1


def test_controller_policy_carries_state():
    env = LearningRateEnv(task="regression2d", episode_length=3, device="cpu", lr_min=1e-3, lr_max=1.0)
    pol = ControllerPolicy(_RecurrentStub(), name="stub")
    res = run_episode(env, pol, seed=0)
    expected = [float(env.unit_to_lr(-1.0 + 0.1 * i)) for i in range(3)]
    assert res.lr == pytest.approx(expected, rel=1e-5)
    res2 = run_episode(env, pol, seed=0)  # a new episode restarts the recurrent state
    assert res2.lr == pytest.approx(expected, rel=1e-5)


def test_curves_have_one_entry_per_update_with_blocks_of_updates():
    """With updates_per_step=k a decision's rate is held for k updates: the lr curve still has one
    entry per update, and trace entries carry the update count at which they were measured."""
    env = regression_env(eval_every=10, episode_length=20, updates_per_step=5)
    res = run_episode(env, ConstantLR(0.01), seed=1, trace=True)
    assert res.steps == 20 and len(res.lr) == 20 and np.allclose(res.lr, 0.01)
    assert res.trace_steps == [0, 5, 10, 15] and len(res.disagreement) == 4
    assert res.eval_steps == [0, 10, 20]
