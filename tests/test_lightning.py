"""ControllerScheduler returned from a Lightning ``configure_optimizers`` (``interval: "step"``):
Lightning accepts it, steps it once per batch after the parameter update with this batch's
gradient still in ``.grad``, and the rates equal a plain loop's in the torch placement.

Skipped, with the reason, when Lightning (the optional ``lightning`` extra) is not installed."""
from __future__ import annotations

import warnings

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason='Lightning is not installed (the optional extra: '
                                                     'pip install -e ".[lightning]")')

from agents import ControllerScheduler  # noqa: E402
from envs.control import grad_norm  # noqa: E402
from tests.test_scheduler import tiny_controller  # noqa: E402

N_BATCHES, BATCH = 12, 8
# the loss, its running mean and the gradient norm: the step-time gradient matters
FEATURES = {"features": ["loss_ema", "grad_norm"], "lr_min": 1e-3, "lr_max": 0.5}


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_BATCHES * BATCH, 5, generator=g)
    return x, x @ torch.randn(5, 1, generator=g) + 0.1 * torch.randn(N_BATCHES * BATCH, 1, generator=g)


def _model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


class RecordingScheduler(ControllerScheduler):
    """Records, at each step(), the gradient norm it reads and that it was called."""

    def __init__(self, *args, events: list, **kwargs):
        self.events, self.step_norms, self.caps = events, [], []
        super().__init__(*args, **kwargs)

    def step(self, *args, **kwargs):
        self.events.append("scheduler.step")
        self.step_norms.append(float(grad_norm(self._params())))
        super().step(*args, **kwargs)
        self.caps.append(self.control.step_cap)


class Module(pl.LightningModule):
    def __init__(self, env_kwargs: dict):
        super().__init__()
        self.net, self.env_kwargs = _model(), env_kwargs
        self.events: list[str] = []
        self.update_norms: list[float] = []  # ||g_t|| just before update t
        self.rates: list[float] = []  # the rate update t uses

    def training_step(self, batch, batch_idx):
        self.events.append("training_step")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.lr_schedulers().observe(loss)
        return loss

    def on_before_zero_grad(self, optimizer):
        self.events.append("zero_grad")

    def on_after_backward(self):
        self.events.append("backward")

    def on_before_optimizer_step(self, optimizer):
        self.events.append("optimizer.step")
        self.update_norms.append(float(grad_norm(list(self.parameters()))))
        self.rates.append(optimizer.param_groups[0]["lr"])

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        scheduler = RecordingScheduler(tiny_controller(self.env_kwargs, obs_dim=3), optimizer,
                                       total_steps=N_BATCHES, events=self.events)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _fit(env_kwargs: dict) -> Module:
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    module = Module(env_kwargs)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(num_workers|does not have many workers|GPU available).*")
        trainer.fit(module, loader)
    return module


def _plain_loop(env_kwargs: dict, exact: bool = False) -> list[float]:
    """The rates of a plain loop. The torch placement (``exact=False``): observe, backward,
    optimizer.step(), scheduler.step(). The env's order (``exact=True``): backward,
    scheduler.step(loss), optimizer.step()."""
    x, y = _data()
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = ControllerScheduler(tiny_controller(env_kwargs, obs_dim=3), optimizer, total_steps=N_BATCHES)
    rates = []
    for i in range(N_BATCHES):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[i * BATCH:(i + 1) * BATCH]), y[i * BATCH:(i + 1) * BATCH])
        if not exact:
            scheduler.observe(loss)
        loss.backward()
        if exact:
            scheduler.step(loss)
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if not exact:
            scheduler.step()
    return rates


def test_lightning_steps_the_scheduler_after_the_update_with_the_gradient_in_grad():
    module = _fit(FEATURES)
    per_batch = ["training_step", "zero_grad", "backward", "optimizer.step", "scheduler.step"]
    assert module.events == per_batch * N_BATCHES
    # at step() .grad holds the gradient of the update just made (not zeroed, not the next one)
    scheduler = module.lr_schedulers()
    assert scheduler.step_norms == module.update_norms and len(set(module.update_norms)) == N_BATCHES
    assert scheduler.last_epoch == N_BATCHES
    # the first update uses the optimizer's own rate, then the controller's: the torch placement
    assert module.rates[0] == 0.05 and len(set(module.rates[1:])) > 5
    assert module.rates == _plain_loop(FEATURES)


def test_lightning_with_a_capped_controller_caps_with_the_previous_gradient():
    """A capped controller in Lightning: update t + 1's rate is capped by ||g_t|| (the gradient in
    .grad when Lightning calls step()), exactly as the plain loop in the torch placement."""
    capped = {"action": "capped", "features": ["loss_ema", "grad_norm"], "lr_min": 1e-2, "lr_max": 1.0,
              "step_cap_min": 1e-3, "step_cap_max": 0.05}
    module = _fit(capped)
    assert module.rates == _plain_loop(capped) and len(set(module.rates)) > 5
    caps, norms = module.lr_schedulers().caps, module.update_norms
    limits = [cap / norm for cap, norm in zip(caps, norms)]  # step t's cap over ||g_t||
    assert all(rate <= limit for rate, limit in zip(module.rates[1:], limits))
    assert sum(rate == limit for rate, limit in zip(module.rates[1:], limits)) >= 3  # and it binds


class ExactModule(Module):
    """The env's order in Lightning: the scheduler steps in ``on_before_optimizer_step`` (after
    backward, with this batch's gradient, before the update), and Lightning's own call is off."""

    def on_before_optimizer_step(self, optimizer):
        self.lr_schedulers().step()
        super().on_before_optimizer_step(optimizer)

    def lr_scheduler_step(self, scheduler, metric):
        pass  # stepped above


def test_lightning_in_the_envs_order_caps_with_each_updates_own_gradient():
    capped = {"action": "capped", "features": ["loss_ema", "grad_norm"], "lr_min": 1e-2, "lr_max": 1.0,
              "step_cap_min": 1e-3, "step_cap_max": 0.05}
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    module = ExactModule(capped)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(num_workers|does not have many workers|GPU available).*")
        trainer.fit(module, loader)
    assert module.events == ["training_step", "zero_grad", "backward", "scheduler.step", "optimizer.step"] * N_BATCHES
    assert module.rates == _plain_loop(capped, exact=True) and len(set(module.rates)) > 5
    caps, norms = module.lr_schedulers().caps, module.update_norms
    assert all(rate <= cap / norm for rate, cap, norm in zip(module.rates, caps, norms))  # its own gradient
