"""ControllerScheduler: a plain PyTorch loop driven by a controller reproduces the env exactly."""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import torch

from agents import ActorCritic, ControllerScheduler
from agents.checkpoint import Controller
from envs.learning_rate_env import LearningRateEnv
from envs.primary import build_optimizer, layer_groups


def tiny_controller(env_kwargs: dict, obs_dim: int, act_dim: int = 1, seed: int = 0) -> Controller:
    """A randomly initialised paper actor-critic, its head scaled up so that its actions (and so
    the rates) vary with the observation instead of sitting near 0."""
    from gymnasium import spaces

    from envs.control import ControlState

    kw = {k: v for k, v in env_kwargs.items() if k not in ("optimizer", "per_group", "validation_batch_size")}
    box = ControlState(1 if kw.get("action") == "capped" else act_dim, **kw)
    assert box.observation_space.shape == (obs_dim,)
    agent = ActorCritic(None, seed=seed, device="cpu", observation_space=box.observation_space,
                        action_space=box.action_space if isinstance(box.action_space, spaces.Box) else None)
    with torch.no_grad():
        agent.actor.head.weight.mul_(8.0)
        agent.actor.head.bias.fill_(0.1)
    return Controller("tiny", "actor-critic", agent, {"env_kwargs": dict(env_kwargs)})


def run_env(env_kwargs: dict, seed: int, episode_length: int):
    """The controller in the env: per-update rates, the batches the env drew, final weights."""
    env = LearningRateEnv("digits", seed=seed, device="cpu", episode_length=episode_length, **env_kwargs)
    batches: list[torch.Tensor] = []
    draw = env.trainer.next_batch

    def recording_next_batch():
        idx = draw()
        batches.append(idx.clone())
        return idx

    env.trainer.next_batch = recording_next_batch
    obs, _ = env.reset(seed=seed)
    ctrl = tiny_controller(env_kwargs, env.observation_space.shape[0], env.action_space.shape[0])
    w0 = {k: v.clone() for k, v in env.trainer.w0.items()}
    rates, state, start, done = [], None, True, False
    while not done:
        action, state = ctrl.predict(obs, state=state, episode_start=np.array([start]))
        start = False
        t_before = env.control.t
        obs, _, terminated, truncated, info = env.step(action)
        assert not terminated, "pick settings that do not diverge"
        rates += [np.atleast_1d(info["lr"]).tolist()] * (info["step"] - t_before)
        done = truncated
    weights = [p.detach().clone() for p in env.trainer.model.parameters()]
    return ctrl, env, batches, w0, rates, weights


def run_loop(ctrl, env, batches, w0, n_updates, optimizer_name, per_group, val_batch=None):
    """A plain PyTorch loop over the env's batches, rates set by ControllerScheduler."""
    trainer = env.trainer
    model = trainer.task.model_factory()
    if trainer.channels_last:  # the env's layout (the CPU default for CNNs): the same arithmetic, bit for bit
        model = model.to(memory_format=torch.channels_last)
    model.load_state_dict(w0)
    groups = layer_groups(model) if per_group else [list(model.parameters())]
    optimizer = build_optimizer(optimizer_name, [{"params": g} for g in groups], lr=0.5)
    scheduler = ControllerScheduler(ctrl, optimizer, total_steps=n_updates)
    loss_fn, x, y = trainer.loss_fn, trainer.x_train, trainer.y_train
    rates = []
    for idx in batches[:n_updates]:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        val_loss = None
        if val_batch:
            with torch.no_grad():
                val_loss = loss_fn(model(trainer.x_val[:val_batch]), trainer.y_val[:val_batch])
        scheduler.step(loss, val_loss=val_loss)
        optimizer.step()
        rates.append(scheduler.get_last_lr())
    return rates, [p.detach().clone() for p in model.parameters()], scheduler


CASES = {
    "paper-default": dict(env={}, steps=30),
    "features-relative-k3": dict(env={"action": "relative", "updates_per_step": 3, "log_observations": True,
                                      "features": ["step_fraction", "loss_ema", "loss_var", "grad_norm",
                                                   "val_loss"],
                                      "validation_batch_size": 40, "initial_lr": 0.05},
                                 steps=31, val_batch=40),  # 31: the last block is shortened to 1
    # a rate and a step-length cap: every update's rate depends on its own gradient's norm
    "capped": dict(env={"action": "capped", "features": ["step_fraction", "grad_norm"], "log_observations": True,
                        "lr_min": 1e-2, "lr_max": 10.0, "step_cap_min": 1e-2, "step_cap_max": 10.0}, steps=30),
    "per-group-momentum": dict(env={"per_group": True, "optimizer": "momentum", "features": ["lr"],
                                    "lr_min": 1e-4, "lr_max": 0.3}, steps=25),
}


@pytest.mark.parametrize("case", list(CASES))
def test_scheduler_reproduces_env_rates_and_weights(case):
    spec = CASES[case]
    env_kwargs, steps = dict(spec["env"]), spec["steps"]
    ctrl, env, batches, w0, env_rates, env_weights = run_env(env_kwargs, seed=7, episode_length=steps)
    assert len(env_rates) == steps
    per_group = env_kwargs.get("per_group", False)
    if env_kwargs.get("action") == "capped":
        assert len({tuple(r) for r in env_rates}) > 10, "the cap should make every update's rate differ"
    rates, weights, scheduler = run_loop(ctrl, env, batches, w0, steps, env_kwargs.get("optimizer", "sgd"),
                                         per_group, spec.get("val_batch"))
    expected = [r if per_group else r * len(rates[0]) for r in env_rates]
    assert rates == expected  # exact: the same float64 rates, update by update
    assert len({tuple(r) for r in rates}) > 3, "the controller should vary the rate"
    if per_group:
        assert any(len(set(r)) > 1 for r in rates), "per-group rates should differ between groups"
    for a, b in zip(weights, env_weights):
        assert torch.equal(a, b)
    assert scheduler.last_epoch == steps


def test_capped_controller_holds_its_rate_and_caps_every_update_of_a_block():
    """updates_per_step 3: the loop's weights equal the env's, the cap applied per update."""
    env_kwargs = {"action": "capped", "updates_per_step": 3, "features": ["grad_norm"], "log_observations": True,
                  "lr_min": 0.1, "lr_max": 10.0, "step_cap_min": 1e-2, "step_cap_max": 1.0}
    ctrl, env, batches, w0, _, env_weights = run_env(env_kwargs, seed=4, episode_length=16)
    rates, weights, _ = run_loop(ctrl, env, batches, w0, 16, "sgd", False)
    assert len({tuple(r) for r in rates}) > 8
    for a, b in zip(weights, env_weights):
        assert torch.equal(a, b)


def _feed(scheduler, losses):
    out = []
    for loss in losses:
        scheduler.step(loss)
        out.append(scheduler.get_last_lr())
    return out


def test_state_dict_round_trip_resumes_the_same_rates():
    env_kwargs = {"action": "relative", "features": ["step_fraction", "loss_ema"], "updates_per_step": 2}
    ctrl = tiny_controller(env_kwargs, obs_dim=4)
    losses = [2.3 * 0.97 ** i + 0.05 * np.sin(i) for i in range(24)]

    def fresh():
        param = torch.nn.Parameter(torch.zeros(3))
        return ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1), total_steps=30)

    straight = _feed(fresh(), losses)
    first = fresh()
    head = _feed(first, losses[:11])  # mid-block: 11 is odd with updates_per_step=2
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = fresh()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.get_last_lr() == head[-1]
    assert head + _feed(resumed, losses[11:]) == straight
    # without the saved state the sequence differs (the LSTM state and counters matter)
    assert _feed(fresh(), losses[11:]) != straight[11:]


def test_tensor_and_float_losses_give_the_same_rates():
    ctrl = tiny_controller({}, obs_dim=1)
    losses = [2.0, 1.5, 1.75, 0.875, 1.125]  # exact in float32
    param = torch.nn.Parameter(torch.zeros(2))
    as_float = _feed(ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1)), losses)
    as_tensor = _feed(ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1)),
                      [torch.tensor(v, requires_grad=True) * 1.0 for v in losses])
    assert as_float == as_tensor


def test_single_rate_controller_sets_every_group_and_per_group_count_must_match():
    layers = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)]
    optimizer = torch.optim.SGD([{"params": layer.parameters()} for layer in layers], lr=0.1)
    scheduler = ControllerScheduler(tiny_controller({}, obs_dim=1), optimizer)
    scheduler.step(1.0)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[0] == lrs[1] and lrs != [0.1, 0.1] and scheduler.get_last_lr() == lrs

    per_group = tiny_controller({"per_group": True}, obs_dim=1, act_dim=3)
    with pytest.raises(ValueError, match="3 learning rates.*2 param groups"):
        ControllerScheduler(per_group, optimizer)


def test_per_group_scheduler_writes_each_groups_rate():
    layers = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)]
    optimizer = torch.optim.SGD([{"params": layer.parameters()} for layer in layers], lr=0.1)
    ctrl = tiny_controller({"per_group": True, "features": ["lr"]}, obs_dim=4, act_dim=3, seed=1)
    scheduler = ControllerScheduler(ctrl, optimizer)
    scheduler.step(1.3)
    lrs = [g["lr"] for g in optimizer.param_groups]
    obs = scheduler.control.start(1.3)  # what the controller saw first
    action, _ = ctrl.predict(obs, state=None, episode_start=np.array([True]))
    assert lrs == pytest.approx(scheduler.control.unit_to_lr(action).tolist(), rel=1e-12)
    assert len(set(lrs)) == 3


def test_errors_and_warnings_are_clear():
    param = torch.nn.Parameter(torch.zeros(2))
    ctrl = tiny_controller({"features": ["val_loss"], "optimizer": "sgd"}, obs_dim=2)
    scheduler = ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1))
    with pytest.raises(ValueError, match="val_loss"):
        scheduler.step(1.0)
    scheduler.step(1.0, val_loss=torch.tensor(1.2))
    with pytest.warns(UserWarning, match="trained to set the learning rate of 'sgd'"):
        ControllerScheduler(ctrl, torch.optim.Adam([param]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1, momentum=0.9))  # SGD class: no warning
    with pytest.raises(ValueError, match="observations of shape"):
        ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1), env_kwargs={"features": []})
    with pytest.raises(TypeError, match="predict"):
        ControllerScheduler(object(), torch.optim.SGD([param], lr=0.1))


def test_step_after_optimizer_step_lags_by_one_batch():
    """The ReduceLROnPlateau placement: the same rates, each used one update later."""
    ctrl = tiny_controller({}, obs_dim=1)
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)

    def train(after: bool):
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        scheduler = ControllerScheduler(ctrl, optimizer, total_steps=8)
        used = []
        for i in range(8):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[8 * i:8 * i + 8]), y[8 * i:8 * i + 8])
            loss.backward()
            if not after:
                scheduler.step(loss)
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if after:
                scheduler.step(loss)
        return used

    before, after = train(False), train(True)
    assert after[0] == 0.01  # the first update uses the optimizer's own rate
    assert after[1] == before[0]  # same first decision (same first batch, same weights)


def test_stateless_controller_starts_the_episode_once():
    """SB3 controllers (DDPG/TD3) return state None: only the first call is an episode start."""

    class Recorder:
        env_kwargs = {"features": ["step_fraction"]}

        def __init__(self):
            self.calls = []

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            self.calls.append((obs.copy(), bool(episode_start[0])))
            return np.array([0.0], np.float32), None

    rec = Recorder()
    param = torch.nn.Parameter(torch.zeros(1))
    scheduler = ControllerScheduler(rec, torch.optim.SGD([param], lr=0.1), total_steps=4)
    _feed(scheduler, [1.0, 0.5, 0.25])
    assert [start for _, start in rec.calls] == [True, False, False]
    assert [float(obs[1]) for obs, _ in rec.calls] == [0.0, 0.25, 0.5]  # step_fraction t / total_steps
    assert scheduler.get_last_lr() == pytest.approx([1e-5 ** 0.5])  # action 0: the log-middle of [1e-5, 1]


# --------------------------------------------------------------------------- the torch scheduler API
def _losses(n: int) -> list[float]:
    return [2.3 * 0.95 ** i + 0.1 * np.sin(3 * i) for i in range(n)]


def _sgd(lr: float = 0.1, groups: int = 1) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(groups)], lr=lr)


def test_is_a_torch_scheduler_with_torch_counters():
    from torch.optim.lr_scheduler import LRScheduler

    optimizer = _sgd(0.25)
    scheduler = ControllerScheduler(tiny_controller({}, obs_dim=1), optimizer, total_steps=10)
    assert isinstance(scheduler, LRScheduler)
    assert scheduler.last_epoch == 0 and scheduler.get_last_lr() == [0.25] and scheduler.base_lrs == [0.25]
    assert optimizer.param_groups[0]["lr"] == 0.25  # construction keeps the optimizer's own rate
    scheduler.observe(torch.tensor(2.0))
    scheduler.step()  # no argument: decides from the observed loss
    assert scheduler.last_epoch == 1 and scheduler.get_last_lr() != [0.25]
    assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0]
    state = scheduler.state_dict()
    assert {"last_epoch", "_step_count", "base_lrs", "_last_lr"} <= set(state)
    assert state["last_epoch"] == 1 and "optimizer" not in state and "controller" not in state


def test_step_without_an_observed_loss_is_a_clear_error():
    scheduler = ControllerScheduler(tiny_controller({}, obs_dim=1), _sgd(), total_steps=10)
    with pytest.raises(RuntimeError, match=r"no loss observed.*observe\(loss\)"):
        scheduler.step()
    scheduler.step(1.0)
    with pytest.raises(RuntimeError, match="no loss observed"):  # each decision needs its own loss
        scheduler.step()


def test_observe_then_step_gives_the_rates_of_step_loss():
    ctrl = tiny_controller({"action": "relative", "features": ["step_fraction", "loss_ema"],
                            "updates_per_step": 2}, obs_dim=4)
    losses = _losses(15)
    by_step = _feed(ControllerScheduler(ctrl, _sgd(), total_steps=15), losses)
    scheduler = ControllerScheduler(ctrl, _sgd(), total_steps=15)
    by_observe = []
    for loss in losses:
        scheduler.observe(loss)
        scheduler.step()
        by_observe.append(scheduler.get_last_lr())
    assert by_observe == by_step and len({tuple(r) for r in by_step}) > 3


def test_observe_and_step_take_a_loss_that_requires_grad():
    """The graph is not kept (the loss is detached), and the rates equal those of plain floats."""
    ctrl = tiny_controller({"features": ["val_loss"]}, obs_dim=2)
    losses = [2.0, 1.5, 1.75, 0.875]  # exact in float32
    as_float = ControllerScheduler(ctrl, _sgd(), total_steps=8)
    as_graph = ControllerScheduler(ctrl, _sgd(), total_steps=8)
    w = torch.ones((), requires_grad=True)
    for i, value in enumerate(losses):
        as_float.step(value, val_loss=value / 2)
        loss = w * value
        if i % 2:
            as_graph.observe(loss, val_loss=loss / 2)
            assert not as_graph._pending[0].requires_grad and not as_graph._pending[1].requires_grad
            as_graph.step()
        else:
            as_graph.step(loss, val_loss=loss / 2)
        assert as_graph.get_last_lr() == as_float.get_last_lr()


def test_load_state_dict_of_something_else_is_a_clear_error():
    scheduler = ControllerScheduler(tiny_controller({}, obs_dim=1), _sgd(), total_steps=10)
    with pytest.raises(ValueError, match="not a ControllerScheduler state_dict: it lacks .*total_steps"):
        scheduler.load_state_dict({})
    linear = torch.optim.lr_scheduler.LinearLR(_sgd(), total_iters=3)
    with pytest.raises(ValueError, match="not a ControllerScheduler state_dict"):
        scheduler.load_state_dict(linear.state_dict())
    with pytest.raises(TypeError, match="takes the dict"):
        scheduler.load_state_dict(None)


def test_state_dict_of_the_format_without_torch_counters_still_loads():
    ctrl = tiny_controller({}, obs_dim=1)
    scheduler = ControllerScheduler(ctrl, _sgd(), total_steps=10)
    _feed(scheduler, [2.0, 1.5, 1.2])
    old = {k: v for k, v in scheduler.state_dict().items() if k not in ("last_epoch", "_step_count", "base_lrs")}
    old["last_lr"] = old.pop("_last_lr")
    resumed = ControllerScheduler(ctrl, _sgd(), total_steps=10)
    resumed.load_state_dict(old)
    assert resumed.last_epoch == 3 and resumed.get_last_lr() == scheduler.get_last_lr()
    assert _feed(resumed, [1.0, 0.9]) == _feed(scheduler, [1.0, 0.9])


def test_grad_norm_controller_without_a_gradient_is_a_clear_error():
    ctrl = tiny_controller({"features": ["grad_norm"]}, obs_dim=2)
    param = torch.nn.Parameter(torch.ones(2))
    scheduler = ControllerScheduler(ctrl, torch.optim.SGD([param], lr=0.1), total_steps=5)
    with pytest.raises(RuntimeError, match=r"before optimizer.zero_grad\(\)"):
        scheduler.step(1.0)
    (param ** 2).sum().backward()
    scheduler.step(1.0)


def test_warm_up_in_sequential_lr_then_the_controller():
    """LinearLR for 4 updates, then the controller, which decides from the loss observed at the
    milestone on, exactly as a scheduler of its own fed the same losses."""
    from torch.optim.lr_scheduler import LinearLR, SequentialLR

    ctrl = tiny_controller({"features": ["step_fraction", "loss_ema"]}, obs_dim=3)
    losses = _losses(12)
    optimizer = _sgd(0.2)
    warm = LinearLR(optimizer, start_factor=0.1, total_iters=4)
    controller = ControllerScheduler(ctrl, optimizer, total_steps=9)
    seq = SequentialLR(optimizer, [warm, controller], milestones=[4])
    used = []
    for loss in losses:
        used.append(optimizer.param_groups[0]["lr"])  # the rate this update uses
        controller.observe(loss)  # every batch (the warm-up batches' losses are simply replaced)
        optimizer.step()
        seq.step()
    assert used[:4] == pytest.approx([0.02, 0.065, 0.11, 0.155])  # the warm-up
    alone = _feed(ControllerScheduler(ctrl, _sgd(0.2), total_steps=9), losses[3:11])
    assert used[4:] == [r[0] for r in alone]  # decided from losses 3, 4, ...: the lag of one batch
    assert len(set(used[4:])) > 3 and seq.get_last_lr() == controller.get_last_lr()
    # the sequence's state_dict holds the controller's and round-trips
    buffer = io.BytesIO()
    torch.save(seq.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["_schedulers"][1]["calls"] == 9  # decisions from losses 3..11
    # a fresh sequence resumed from it continues with the rates the first one goes on to give
    resumed_opt = _sgd(0.2)
    resumed_ctrl = ControllerScheduler(ctrl, resumed_opt, total_steps=9)
    resumed = SequentialLR(resumed_opt, [LinearLR(resumed_opt, start_factor=0.1, total_iters=4), resumed_ctrl],
                           milestones=[4])
    resumed.load_state_dict(state)
    more = _losses(15)[12:]
    for loss in more:
        controller.observe(loss)
        resumed_ctrl.observe(loss)
        optimizer.step()
        resumed_opt.step()
        seq.step()
        resumed.step()
        assert resumed.get_last_lr() == seq.get_last_lr() and resumed.last_epoch == seq.last_epoch


def test_chained_scheduler_scales_the_controllers_rate():
    from torch.optim.lr_scheduler import ChainedScheduler, MultiplicativeLR

    ctrl = tiny_controller({"action": "relative", "features": ["loss_ema"]}, obs_dim=3)
    losses = _losses(10)
    optimizer = _sgd(0.2)
    controller = ControllerScheduler(ctrl, optimizer, total_steps=10)
    chain = ChainedScheduler([controller, MultiplicativeLR(optimizer, lambda epoch: 0.5)])
    got = []
    for loss in losses:
        controller.observe(loss)
        optimizer.step()
        chain.step()
        got.append(optimizer.param_groups[0]["lr"])
    alone = _feed(ControllerScheduler(ctrl, _sgd(0.2), total_steps=10), losses)
    assert got == [0.5 * r[0] for r in alone]  # (the controller's own state is not the group's rate)


def test_an_int_is_torchs_deprecated_epoch_as_older_sequential_lr_passes_it():
    """SequentialLR before torch 2.9 calls step(0) at its milestone; newer ones _update_lr(0)."""
    ctrl = tiny_controller({"features": ["loss_ema"]}, obs_dim=2)
    old, new = (ControllerScheduler(ctrl, _sgd(), total_steps=10) for _ in range(2))
    for s in (old, new):
        s.observe(1.7)
    if not hasattr(new, "_update_lr"):
        pytest.skip("this torch's SequentialLR calls step(0) itself (no _update_lr)")
    old.step(0)
    new._update_lr(0)
    assert old.last_epoch == new.last_epoch == 0 and old.get_last_lr() == new.get_last_lr() != [0.1]
    assert _feed(old, [1.5, 1.2]) == _feed(new, [1.5, 1.2])
