"""``ControllerScheduler``: a trained learning-rate controller as a
``torch.optim.lr_scheduler.LRScheduler``, for any PyTorch training loop and any
``torch.optim.Optimizer``.

    from agents import ControllerScheduler

    scheduler = ControllerScheduler.from_pretrained("sgd", optimizer, total_steps=1000)
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        scheduler.step(loss)      # the controller sets this update's rate from this batch's loss
        optimizer.step()

or, the torch habit (and what ``SequentialLR``, ``ChainedScheduler`` and Lightning call)::

        scheduler.observe(loss)   # anywhere after the forward pass
        optimizer.step()
        scheduler.step()          # the rate of the next update

What the controller sees and how its action becomes a rate is
:class:`envs.control.ControlState`, the same object :class:`~envs.LearningRateEnv` uses, built
from the controller's own training settings (``env_kwargs``): so a loop driven by this scheduler
reproduces the env's rates and weights exactly (``tests/test_scheduler.py``).
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from agents.checkpoint import Controller, load_controller
from envs.config import ControlConfig
from envs.control import ControlState, grad_norm, weight_norm

#: ``ControlState`` arguments the scheduler sets itself (not from the controller's env settings)
_OWN_CONTROL_ARGS = ("n_groups", "episode_length")
#: the entries of :meth:`ControllerScheduler.state_dict`: torch's counters, then the controller's
_TORCH_STATE_KEYS = ("last_epoch", "_step_count", "base_lrs", "_last_lr")
_OWN_STATE_KEYS = ("calls", "next_decision", "started", "total_steps", "control", "rnn_state")


def _control_kwargs(kwargs: dict) -> dict:
    """The entries of a controller's env settings that :class:`ControlState` takes (its config
    group, :class:`envs.config.ControlConfig`)."""
    accepted = {f.name for f in dataclasses.fields(ControlConfig)} - set(_OWN_CONTROL_ARGS)
    return {k: v for k, v in kwargs.items() if k in accepted}


class ControllerScheduler(LRScheduler):
    """Let a trained controller set the learning rate of ``optimizer``, one mini-batch at a time.

    A ``torch.optim.lr_scheduler.LRScheduler``: ``step()``, ``last_epoch``, ``get_last_lr()``,
    ``state_dict()``/``load_state_dict()`` behave as torch's, so it composes in ``SequentialLR``
    (e.g. a ``LinearLR`` warm-up before the controller) and ``ChainedScheduler``, and Lightning
    accepts it from ``configure_optimizers``. What torch's schedulers do not have is the input: the
    controller decides from the mini-batch loss, given by :meth:`observe` (or by ``step(loss)``).

    **Where to call it.** The controller chooses update ``t``'s rate from the loss
    ``f(w_t; x_t)`` of the batch that update uses (Xu et al. 2017; :class:`~envs.LearningRateEnv`).
    The exact equivalent of the env is therefore::

        loss.backward(); scheduler.step(loss); optimizer.step()

    ``step(loss)`` is ``observe(loss)`` followed by ``step()``. The torch placement::

        scheduler.observe(loss); ...; optimizer.step(); scheduler.step()

    (and ``scheduler.step(loss)`` after ``optimizer.step()``, the ``ReduceLROnPlateau`` habit) gives
    the same rates, each used one update later: the rate chosen from batch ``t``'s loss is used by
    update ``t + 1``, a lag of one batch like every torch scheduler; the very first update uses
    the optimizer's own rate. ``step()`` at a decision with no loss observed since the last one is
    a clear error (the rate is not silently held).

    **Lightning.** Return ``{"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}``
    from ``configure_optimizers`` and call ``self.lr_schedulers().observe(loss)`` in
    ``training_step``. With automatic optimization Lightning runs, per batch: ``training_step``,
    ``zero_grad``, ``backward``, ``on_before_optimizer_step`` (and gradient clipping, in place),
    the parameter update, then ``scheduler.step()``, before the next batch's ``zero_grad``. So at
    ``step()`` ``.grad`` holds the gradient of the update just made (clipped, if clipping is on):
    this is the torch placement, with its lag of one batch. The env's own order in Lightning:
    call ``self.lr_schedulers().step()`` in ``on_before_optimizer_step`` (after backward, before
    the update) and override ``lr_scheduler_step`` to do nothing (``tests/test_lightning.py``).

    **The gradient** (``grad_norm`` feature, ``action="capped"``) is read from the parameters'
    ``.grad`` when ``step`` decides, so ``step`` must come after ``backward`` and before the next
    ``optimizer.zero_grad()`` (no gradient at all there is a clear error). A controller trained
    with ``action="capped"`` (a rate and a step-length cap) sets every update's rate to
    ``min(rate, step_cap / ||g||)`` from the gradient in ``.grad`` at ``step`` time (one norm per
    call, also inside an ``updates_per_step`` block), as the env does: exact with ``step(loss)``
    before ``optimizer.step()``; in the torch placement (and so in Lightning) the cap of update
    ``t + 1`` comes from the norm of gradient ``t``.

    Args:
        controller: a trained controller: a run directory of ``train_controller.py`` or its
            checkpoint file (loaded with :func:`agents.checkpoint.load_controller`), the name of a
            shipped one as ``"pretrained:NAME"`` (or use :meth:`from_pretrained`), a loaded
            :class:`~agents.checkpoint.Controller`, or any object with SB3's
            ``predict(obs, state, episode_start, deterministic)`` (then pass ``env_kwargs``).
        optimizer: any ``torch.optim.Optimizer``. Its param groups' ``"lr"`` are overwritten.
            A per-group controller (trained with ``per_group=True``) needs exactly as many param
            groups as it has outputs; a single-rate controller sets the same rate in every group.
        total_steps: the number of optimizer updates this controller will drive
            (``step_fraction``'s denominator, where the env's episode would end, and where a
            controller trained with ``anneal="linear"`` has decayed its steps to zero). Default: the
            controller's training ``episode_length``. Beyond it, ``step_fraction`` stays at 1 and
            the anneal at its last update's factor.
        env_kwargs: the controller's ``LearningRateEnv`` settings; default
            ``controller.env_kwargs(include_reward=True)`` for a :class:`~agents.checkpoint.Controller`.
            Entries given here override the controller's.
        deterministic: use the controller's deterministic action (no exploration noise).
        device: device to load a controller from a path onto.

    Features: ``val_loss`` needs ``observe(loss, val_loss=...)``. With ``updates_per_step = k > 1``
    the controller decides every ``k``-th ``step`` and the rate is held in between (the other
    calls' losses are not observed, as in the env). Divergence does not stop anything here: the
    loss observation is capped at ``obs_max`` as in the env.
    """

    def __init__(self, controller: Any, optimizer: torch.optim.Optimizer, total_steps: int | None = None,
                 env_kwargs: dict | None = None, deterministic: bool = True, device: str = "cpu") -> None:
        if isinstance(controller, (str, os.PathLike)):
            controller = load_controller(controller, device=device)
        if not hasattr(controller, "predict"):
            raise TypeError(f"controller must have a predict(obs, state, episode_start, deterministic) "
                            f"method (a trained controller), got {type(controller).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not optimizer.param_groups:
            raise ValueError("the optimizer has no parameter groups, so there is no learning rate to set; "
                             "build it with the model's parameters")
        self.controller, self.deterministic = controller, bool(deterministic)
        # the controller's training settings (Controller.env_kwargs: the one place that rebuilds them)
        # (another object with ``predict`` may carry a plain ``env_kwargs`` dict of its own)
        recorded = (controller.env_kwargs(include_reward=True) if isinstance(controller, Controller)
                    else dict(getattr(controller, "env_kwargs", None) or {}))
        kwargs = {**recorded, **(env_kwargs or {})}
        episode_length = int(kwargs.get("episode_length", 200))
        self.total_steps = int(total_steps) if total_steps is not None else episode_length
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")

        model = getattr(controller, "model", controller)
        act_space = getattr(model, "action_space", None)
        if kwargs.get("action") in ("capped", "trust"):  # (rate, step-length cap): one rate for all groups
            n_out = 1
        else:
            n_out = int(np.prod(act_space.shape)) if act_space is not None else (
                len(optimizer.param_groups) if kwargs.get("per_group") else 1)
        n_groups = len(optimizer.param_groups)
        if n_out != 1 and n_out != n_groups:
            raise ValueError(
                f"this controller sets {n_out} learning rates (one per parameter group: it was trained "
                f"with per_group=True on a model with {n_out} layers) but the optimizer has {n_groups} "
                f"param groups; build the optimizer with one group per layer in the same order "
                f"(e.g. envs.primary.layer_groups(model)), or use a single-rate controller")
        self.n_rates = n_out
        self.control = ControlState(n_out, episode_length=self.total_steps,
                                    **_control_kwargs(kwargs))
        obs_space = getattr(model, "observation_space", None)
        if obs_space is not None and obs_space.shape != self.control.observation_space.shape:
            raise ValueError(f"the controller expects observations of shape {obs_space.shape}, but its "
                             f"env_kwargs give {self.control.observation_space.shape}: pass the "
                             f"env_kwargs it was trained with")
        self._warn_optimizer(kwargs.get("optimizer"), optimizer)

        self._calls = 0        # updates driven so far (= step() calls, with the exact placement)
        self._next_decision = 0  # call index of the next decision (updates_per_step > 1 holds)
        self._rnn_state: Any = None
        self._started = False
        self._pending: tuple | None = None  # (loss, val_loss) given to observe() and not yet used
        # torch's LRScheduler: base_lrs, last_epoch (0 after this), the optimizer.step() tracking;
        # its initial step (_initial_step below) leaves the optimizer's own rates in place
        super().__init__(optimizer)

    @classmethod
    def from_pretrained(cls, name: str, optimizer: torch.optim.Optimizer, total_steps: int | None = None,
                        **kwargs: Any) -> "ControllerScheduler":
        """A scheduler driven by a controller shipped with the package, by name
        (:data:`agents.pretrained.PRETRAINED`: ``"sgd"``, ``"adam"``; each has a ``CARD.md``
        saying what it was trained on and how it measured). Other arguments as the constructor's."""
        from agents.pretrained import PREFIX, pretrained_path

        pretrained_path(name)  # an unknown name: one clear error listing the shipped ones
        name = name if name.startswith(PREFIX) else PREFIX + name
        return cls(name, optimizer, total_steps=total_steps, **kwargs)

    def _warn_optimizer(self, trained_with: str | None, optimizer: torch.optim.Optimizer) -> None:
        """Warn when the optimizer differs from the one the controller was trained for (a rate
        for SGD is not a rate for Adam); it still runs."""
        if not trained_with:
            return
        from envs.primary import OPTIMIZERS

        entry = OPTIMIZERS.get(str(trained_with).lower())
        expected = entry[1] if entry else str(trained_with)
        actual = type(optimizer).__name__
        if expected.lower() != actual.lower():
            warnings.warn(f"this controller was trained to set the learning rate of {trained_with!r} "
                          f"({expected}), not {actual}: its rates may not suit this optimizer",
                          stacklevel=3)

    # ------------------------------------------------------------------ the input: the loss
    def observe(self, loss: torch.Tensor | float, val_loss: torch.Tensor | float | None = None) -> None:
        """Give the controller this mini-batch's mean ``loss`` (a 0-d or one-element tensor, or a
        float; a tensor is detached, so the graph is not kept) and, for a controller with the
        ``val_loss`` feature, a validation loss. The next :meth:`step` decides from it (a later
        ``observe`` before that replaces it). No host-device synchronisation happens here."""
        _check_scalar("loss", loss)
        _check_scalar("val_loss", val_loss)
        if "val_loss" in self.control.features and val_loss is None:
            raise ValueError("this controller observes the validation loss (feature 'val_loss'): "
                             "call observe(loss, val_loss=...) (or step(loss, val_loss=...))")
        self._pending = (_detached(loss), _detached(val_loss))

    # ------------------------------------------------------------------ the torch scheduler API
    def step(self, loss: torch.Tensor | float | None = None,
             val_loss: torch.Tensor | float | None = None) -> None:
        """Set the optimizer's rate(s) for the next ``optimizer.step()``: ``last_epoch += 1``.

        ``step(loss)`` (optionally ``val_loss=``) is :meth:`observe` then ``step()``; ``step()``
        decides from the loss last given to :meth:`observe`. An ``int`` argument is torch's
        deprecated ``step(epoch)`` (``SequentialLR`` of torch before 2.9 calls ``step(0)`` at its
        milestone): ``last_epoch`` becomes it and the controller decides from the observed loss;
        so give a loss as a float or a tensor."""
        epoch = None
        if type(loss) is int:  # (not a bool, not a float: torch's epoch)
            epoch, loss = loss, None
        if loss is not None:
            self.observe(loss, val_loss)
        elif val_loss is not None:
            raise ValueError("step(val_loss=...) needs the loss too: step(loss, val_loss=...)")
        self._step_count += 1
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        self._get_lr_called_within_step = True
        try:
            values = self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        self._apply(values)

    def get_lr(self) -> list[float]:
        """The controller's next rate(s), one per param group; called by :meth:`step` (and by
        ``SequentialLR`` at its milestone). Outside a step it only returns :meth:`get_last_lr`
        (a decision consumes the observed loss, so it happens once per step)."""
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=2)
            return self.get_last_lr()
        control = self.control
        pending, self._pending = self._pending, None
        if self._calls < self._next_decision:  # inside an updates_per_step block: hold the rate
            self._calls += 1
            if control.needs_grad_norm:  # (the held rate, capped by this update's gradient)
                return self._rates(control.update_rate(control.lr, *_to_floats(self._norm_tensors())))
            return self._rates(control.lr)
        if pending is None:
            raise RuntimeError("ControllerScheduler.step(): no loss observed since the last decision; call "
                               "scheduler.observe(loss) each batch (e.g. in training_step), or step(loss)")
        loss, val_loss = pending
        needs_gnorm = control.observes_grad_norm or control.needs_grad_norm
        norms = self._norm_tensors() if needs_gnorm else []  # ||g_t||, and ||w_t|| for trust
        numbers = _to_floats([loss, *norms] + ([val_loss] if val_loss is not None else []))
        gnorm = numbers[1] if needs_gnorm else None
        wnorm = numbers[2] if len(norms) == 2 else None
        vloss = numbers[-1] if val_loss is not None else None

        start = not self._started  # (SB3 controllers keep no recurrent state: a flag, not state is None)
        self._started = True
        feature_gnorm = gnorm if control.observes_grad_norm or control.needs_weight_norm else None
        if start:
            obs = control.start(numbers[0], val_loss=vloss or 0.0, grad_norm=feature_gnorm or 0.0,
                                weight_norm=wnorm)
        else:
            obs = control.observe(numbers[0], val_loss=vloss, grad_norm=feature_gnorm)
        action, self._rnn_state = self.controller.predict(
            obs, state=self._rnn_state, episode_start=np.array([start]), deterministic=self.deterministic)
        lr = control.decide(np.asarray(action, dtype=np.float64).reshape(-1))
        # the rate is held for a block of updates (the env's updates_per_step, shortened at the
        # episode's end; after total_steps, full blocks)
        block = control.block_length() if control.t < self.total_steps else control.updates_per_step
        control.advance(lr, block)
        self._next_decision = self._calls + block
        self._calls += 1
        return self._rates(control.update_rate(lr, gnorm, wnorm))

    def _initial_step(self) -> None:
        """torch's construction step: the counters start (``last_epoch`` 0) and the optimizer keeps
        its own rates until the controller's first decision."""
        self._step_count = 1
        self.last_epoch += 1
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _grad_norm_tensor(self) -> torch.Tensor:
        params = self._params()
        if not any(p.grad is not None for p in params):
            raise RuntimeError("this controller reads the gradient norm (feature 'grad_norm' or a capped "
                               "action) from .grad at step(), but no parameter has a gradient: call "
                               "step() after loss.backward() and before optimizer.zero_grad()")
        return grad_norm(params)

    def _norm_tensors(self) -> list[torch.Tensor]:
        """This update's ``||g_t||`` and, when the action needs it (``trust``), ``||w_t||`` of the
        optimizer's parameters, as tensors: read together in one synchronisation."""
        norms = [self._grad_norm_tensor()]
        if self.control.needs_weight_norm:
            norms.append(weight_norm(self._params()))
        return norms

    def _rates(self, lr: np.ndarray) -> list[float]:
        """The controller's rate(s) -> one rate per param group."""
        return lr.tolist() if self.n_rates > 1 else [float(lr[0])] * len(self.optimizer.param_groups)

    def _apply(self, rates: list[float]) -> None:
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate
        self._last_lr = list(rates)

    def get_last_lr(self) -> list[float]:
        """The rate of each param group as last set by :meth:`step` (before the first decision:
        the optimizer's own rates)."""
        return list(self._last_lr)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume the rate sequence: torch's counters (``last_epoch``,
        ``_step_count``, ``base_lrs``, ``_last_lr``), the observation state, the controller's
        recurrent (LSTM) state and its own counters (tensors and plain numbers; ``torch.save``-able
        and loadable with ``weights_only=True``). The controller itself is not included, nor a
        loss given to :meth:`observe` that no ``step`` has used yet."""
        rnn = self._rnn_state
        return {
            "last_epoch": self.last_epoch, "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs), "_last_lr": list(self._last_lr),
            "calls": self._calls, "next_decision": self._next_decision, "started": self._started,
            "total_steps": self.total_steps, "control": self.control.state_dict(),
            "rnn_state": None if rnn is None else [torch.as_tensor(np.asarray(s)) for s in rnn],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict` (and re-apply its last rates to the optimizer)."""
        state = state_dict
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict takes the dict ControllerScheduler.state_dict() returned, "
                            f"got {type(state).__name__}")
        if "last_lr" in state and "_last_lr" not in state:  # (the format before torch's counters)
            state = {**state, "_last_lr": state["last_lr"], "last_epoch": state.get("calls", 0)}
        missing = [k for k in ("_last_lr", "last_epoch", *_OWN_STATE_KEYS) if k not in state]
        if missing:
            raise ValueError(f"not a ControllerScheduler state_dict: it lacks {', '.join(missing)} "
                             f"(it has {', '.join(map(str, state)) or 'nothing'}); pass what "
                             f"ControllerScheduler.state_dict() returned")
        if int(state["total_steps"]) != self.total_steps:
            raise ValueError(f"the state was saved with total_steps={state['total_steps']}, this "
                             f"scheduler has {self.total_steps}")
        self.control.load_state_dict(state["control"])
        self._calls, self._next_decision = int(state["calls"]), int(state["next_decision"])
        self._started = bool(state["started"])
        rnn = state["rnn_state"]
        self._rnn_state = None if rnn is None else tuple(np.asarray(s) for s in rnn)
        self._last_lr = [float(v) for v in state["_last_lr"]]
        self.last_epoch = int(state["last_epoch"])
        self._step_count = int(state.get("_step_count", self._step_count))
        if "base_lrs" in state:
            self.base_lrs = list(state["base_lrs"])
        self._pending = None
        if self._calls:
            for group, rate in zip(self.optimizer.param_groups, self._last_lr):
                group["lr"] = rate

    def __repr__(self) -> str:
        name = getattr(self.controller, "name", type(self.controller).__name__)
        return (f"ControllerScheduler(controller={name!r}, optimizer={type(self.optimizer).__name__}, "
                f"total_steps={self.total_steps}, rates={self.n_rates})")


def _detached(value: Any) -> Any:
    return value.detach() if torch.is_tensor(value) else value


def _check_scalar(what: str, value: Any) -> None:
    """``observe``'s loss arguments are one number each: a 0-d (or one-element) tensor or a float."""
    if value is None:
        return
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"observe({what}=...) (or step) takes the mini-batch's mean loss, a single number; got a "
                             f"tensor of shape {tuple(value.shape)} ({value.numel()} elements): reduce it "
                             f"first (e.g. loss.mean())")
        return
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"observe({what}=...) (or step) takes a float or a one-element tensor, got {type(value).__name__}")


def _to_floats(values: list) -> list[float]:
    """Tensors and numbers -> Python floats, with one host-device synchronisation."""
    tensors = [v for v in values if torch.is_tensor(v)]
    if not tensors:
        return [float(v) for v in values]
    if len(values) == 1:
        return [values[0].detach().item()]
    device = tensors[0].device
    return torch.stack([v.detach().reshape(()).to(device, torch.float64) if torch.is_tensor(v)
                        else torch.tensor(float(v), dtype=torch.float64, device=device)
                        for v in values]).tolist()


__all__ = ["ControllerScheduler"]
