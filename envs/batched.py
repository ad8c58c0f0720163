"""Batched primary training: N independent primary runs in one forward/backward per step.

:class:`BatchedPrimaryTrainer` is :class:`~envs.primary.PrimaryTrainer` for ``N`` networks at
once, for :class:`~envs.vector_env.LearningRateVectorEnv`. Network ``i`` has its own initial
weights ``w0`` (drawn from ``seeds[i]`` exactly as ``PrimaryTrainer(seed=seeds[i])`` draws them),
its own batch order (its own generator, the same index sequence), its own learning rate(s) and
its own optimizer state. The weights of all N networks are stacked (``torch.func.
stack_module_state``) and all N losses and gradients are computed in one call, one kernel per
layer for all N networks (a convolution becomes a grouped convolution, a linear layer a batched
matmul), in one of two ways:

- on the CPU, for a plain ``nn.Sequential`` of the common layers, by
  :class:`~envs.layerwise.LayerStack`: layer by layer, convolutions in channels-last layout, the
  gradients from one backward pass of the summed losses. Measured on digits, 16 runs: 1.5x
  faster per step than ``vmap`` with one or two threads
  (``benchmarks/memory_format.py``);
- otherwise (any other functional model, and on CUDA, where no GPU was at hand to measure the
  layer stack against it) by one ``vmap`` of ``grad_and_value`` over ``functional_call``.

Both are checked at construction against each network's own forward/backward. The optimizer
step is applied to the stacked tensors with the update formulas of ``torch.optim.SGD`` (plain,
momentum, Nesterov, dampening, weight decay) and ``torch.optim.Adam`` / ``AdamW`` (bias
correction, eps outside the square root, L2 or decoupled weight decay), in torch's order of
operations.

Models that ``torch.func`` cannot batch (BatchNorm in training mode, dropout, data-dependent
control flow, ...) and optimizers without a batched form here raise :class:`UnbatchableError`
from the constructor, with the reason; the vector env then falls back to N single envs.

The data, the train/validation split and the per-run bookkeeping (batch order, ``w0`` draws)
are those of ``PrimaryTrainer``: a template ``PrimaryTrainer`` provides the data on the device,
and each run's batch stream borrows ``PrimaryTrainer``'s own methods, so the index sequences
and initial weights are identical by construction.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from envs.layerwise import LayerStack, LayerStackUnsupported
from envs.primary import OPTIMIZERS, PrimaryTrainer
from envs.trainer_list import RunBatches

#: optimizers with a batched form: name (OPTIMIZERS key or torch.optim class, lower case) -> kind
BATCHED_OPTIMIZERS = {"sgd": "sgd", "momentum": "sgd", "nesterov": "sgd", "adam": "adam",
                      "adamw": "adam"}
# hyper-parameters of torch.optim.SGD / Adam / AdamW whose values the batched step implements;
# implementation switches (foreach, fused, ...) do not change the result; anything else
# (maximize, amsgrad, capturable, unknown future options) at a non-default value falls back
_SGD_KEYS = {"lr", "momentum", "dampening", "weight_decay", "nesterov"}
_ADAM_KEYS = {"lr", "betas", "eps", "weight_decay", "decoupled_weight_decay"}
_IGNORED_KEYS = {"foreach", "fused", "differentiable"}


class UnbatchableError(RuntimeError):
    """The model or optimizer has no batched form here; the message says why."""


class _Stream:
    """One run's batch order and ``w0`` draws. Its methods are ``PrimaryTrainer``'s own
    (borrowed, not copied), so every index sequence equals ``PrimaryTrainer(seed=...)``'s."""

    next_batch = PrimaryTrainer.next_batch
    validation_batch = PrimaryTrainer.validation_batch
    probe_batch = PrimaryTrainer.probe_batch
    _fresh_model = PrimaryTrainer._fresh_model
    _init_seed = staticmethod(PrimaryTrainer._init_seed)

    def __init__(self, template: PrimaryTrainer) -> None:
        self.task, self.device, self.batch_size = template.task, template.device, template.batch_size
        self.x_train, self.x_val = template.x_train, template.x_val
        self._probe = None

    def seed(self, seed: int) -> nn.Module:
        """As ``PrimaryTrainer.seed``: restart the batch order, return the model with the new ``w0``."""
        self._seed = int(seed)
        self._w0_draws = 0
        self._batch_gen = torch.Generator(device=self.device).manual_seed(self._seed)
        self._perm = torch.empty(0, dtype=torch.long, device=self.device)
        self._pos = 0
        return self._fresh_model(self._seed)

    def fresh_w0(self) -> nn.Module:
        """As ``PrimaryTrainer.reset(new_w0=True)``: the next ``w0`` draw of this seed."""
        self._w0_draws += 1
        return self._fresh_model(self._seed)


def _optimizer_config(name: str, kwargs: dict) -> tuple[str, dict]:
    """(kind, hyper-parameters) of a batched optimizer, or :class:`UnbatchableError`."""
    key = name.lower()
    if key not in BATCHED_OPTIMIZERS:
        raise UnbatchableError(f"optimizer {name!r} has no batched form (batched: "
                               f"{', '.join(BATCHED_OPTIMIZERS)})")
    module_name, cls_name, defaults = OPTIMIZERS[key]
    cls = getattr(torch.optim, cls_name)
    # the class's own defaults, so that the batched step uses exactly what torch would
    try:
        hp = dict(cls([torch.zeros(1, requires_grad=True)], lr=1e-3, **{**defaults, **kwargs}).defaults)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer {name!r} refuses optimizer_kwargs {kwargs}: {exc}") from exc
    kind = BATCHED_OPTIMIZERS[key]
    known = _SGD_KEYS if kind == "sgd" else _ADAM_KEYS
    for k, v in hp.items():
        if k in known or k in _IGNORED_KEYS or not v:  # unknown options at their off value are fine
            continue
        raise UnbatchableError(f"optimizer {name!r} with {k}={v!r} has no batched form")
    return kind, hp


def _relative_error(got: Tensor, want: Tensor) -> float:
    """``|got - want| / |want|`` in L2 norm (absolute below a norm of 1e-6)."""
    return float(torch.linalg.vector_norm(got - want) / max(float(torch.linalg.vector_norm(want)), 1e-6))


def _vmap_functions(base: nn.Module, loss_fn):
    """The batched forward/backward as ``vmap`` over ``functional_call`` of ``base`` (a model on
    the meta device): any functional model, one kernel per layer for all N runs."""
    from torch.func import functional_call, grad_and_value, vmap

    def loss(p, b, x, y):
        return loss_fn(functional_call(base, (p, b), (x,)), y)

    def output(p, b, x):
        return functional_call(base, (p, b), (x,))

    def loss_and_other(p, b, x, y, x2, y2):
        # the loss to differentiate, and (as auxiliary output) another batch's at the same weights
        return loss(p, b, x, y), loss(p, b, x2, y2).detach()

    return (vmap(grad_and_value(loss)), vmap(grad_and_value(loss_and_other, has_aux=True)), vmap(loss),
            vmap(output, in_dims=(0, 0, None)))


def _layer_stack_functions(stack: LayerStack, loss_fn):
    """The same four functions as :func:`_vmap_functions`, computed by ``stack`` layer by layer;
    gradients from one backward pass of the sum of the runs' losses (the runs share no weight)."""
    from torch.func import vmap

    per_run_loss = vmap(loss_fn)

    def grad_and_loss(p, b, x, y):
        leaves = {k: v.detach().requires_grad_() for k, v in p.items()}
        with torch.enable_grad():
            losses = per_run_loss(stack.forward(leaves, x), y)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), losses.detach()

    def grad_and_loss_and_other(p, b, x, y, x2, y2):
        grads, losses = grad_and_loss(p, b, x, y)
        with torch.no_grad():
            return grads, (losses, per_run_loss(stack.forward(p, x2), y2))

    def loss(p, b, x, y):
        return per_run_loss(stack.forward(p, x), y)

    def output(p, b, x):
        return stack.forward(p, x, shared=True)

    return grad_and_loss, grad_and_loss_and_other, loss, output


class BatchedPrimaryTrainer(RunBatches):
    """N independent primary runs of one task, trained with one batched call per step.

    Args:
        template: a ``PrimaryTrainer`` whose task, data (on its device), validation split,
            optimizer name/kwargs and ``per_group`` setting all N runs share.
        seeds: the N runs' seeds (``w0`` and batch order, as ``PrimaryTrainer(seed=...)``).
        layerwise: compute with :class:`~envs.layerwise.LayerStack` (one call per layer, no
            vmap) where the model is a plain stack of its layers: ``None`` (default) on the CPU
            only, ``True`` on any device, ``False`` never. It is checked like the vmap path and
            falls back to it; ``layer_stack`` says which one runs.

    Per-run operations take the run index ``i``; batched ones take index tensors of shape
    ``(N, B)`` (row ``i``: run ``i``'s batch) and, optionally, ``envs``, the runs to compute
    (default all); losses come back as a tensor of shape ``(len(envs),)`` on the device.

    Raises:
        UnbatchableError: the model or the optimizer has no batched form (the message says why).
    """

    def __init__(self, template: PrimaryTrainer, seeds: Sequence[int], layerwise: bool | None = None) -> None:
        from torch.func import stack_module_state

        if len(seeds) < 1:
            raise ValueError("need at least one seed")
        self.template = template
        self.num_envs = n = len(seeds)
        self.device = template.device
        self.loss_fn = template.loss_fn
        self.classification = template.task.classification
        self.kind, self.hp = _optimizer_config(template.optimizer_name, template.optimizer_kwargs)

        model = template.model
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                raise UnbatchableError(f"{type(module).__name__} in training mode updates running "
                                       f"statistics in place, which torch.func cannot batch")
        named = list(model.named_parameters())
        if not all(p.requires_grad for _, p in named):
            raise UnbatchableError("the model has frozen parameters (requires_grad=False)")
        self.names = [k for k, _ in named]
        # parameter -> optimizer group: PrimaryTrainer's layer_groups order with per_group
        group_of, g = {}, 0
        by_id = {id(p): k for k, p in named}
        for module in model.modules():
            params = [p for p in module.parameters(recurse=False) if p.requires_grad]
            for p in params:
                group_of.setdefault(by_id[id(p)], g if template.per_group else 0)
            g += bool(params)
        self.group_of = [group_of[k] for k in self.names]
        self.n_groups = template.n_groups
        self.buffer_names = [k for k, _ in model.named_buffers()]

        self.streams = [_Stream(template) for _ in range(n)]
        models = [s.seed(seed).to(self.device) for s, seed in zip(self.streams, seeds)]
        params, buffers = stack_module_state(models)
        self.params = {k: params[k].detach().clone() for k in self.names}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.w0 = {k: v.clone() for k, v in {**self.params, **self.buffers}.items()}
        self.grads = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.base = copy.deepcopy(models[0]).to("meta")
        self._new_state(range(n))
        self.layer_stack: LayerStack | None = None
        if layerwise or (layerwise is None and self.device.type == "cpu"):
            try:
                stack = LayerStack(models[0], channels_last=bool(template.channels_last))
                self._use_functions(*_layer_stack_functions(stack, self.loss_fn))
                self._check(models)
                self.layer_stack = stack
            except (LayerStackUnsupported, UnbatchableError):  # not a plain stack: vmap batches it
                pass
        if self.layer_stack is None:
            self._use_functions(*_vmap_functions(self.base, self.loss_fn))
            self._check(models)

    def _use_functions(self, grad_and_loss, grad_and_loss_and_other, loss, output) -> None:
        self._grad_and_loss, self._grad_and_loss_and_other = grad_and_loss, grad_and_loss_and_other
        self._loss, self._output = loss, output

    # the batched functions are closures (not picklable): a pickled trainer carries its state and
    # rebuilds them, so a vector env can be pickled, deep-copied and sent to a worker
    _FUNCTIONS = ("_grad_and_loss", "_grad_and_loss_and_other", "_loss", "_output")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._FUNCTIONS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.layer_stack is not None:
            self._use_functions(*_layer_stack_functions(self.layer_stack, self.loss_fn))
        else:
            self._use_functions(*_vmap_functions(self.base, self.loss_fn))

    # ------------------------------------------------------------------ set-up
    def _check(self, models: list[nn.Module]) -> None:
        """One batched forward/backward on a training batch against each model's own: any
        torch.func failure, or a mismatch, is an :class:`UnbatchableError`."""
        k = min(2, self.num_envs)
        idx = torch.arange(min(self.template.batch_size, len(self.template.x_train)),
                           device=self.device).expand(k, -1)
        envs = torch.arange(k, device=self.device)
        try:
            with torch.random.fork_rng(devices=[]):
                losses = self.loss_and_grad(idx, envs=envs)
        except Exception as exc:  # torch.func raises many error types; all mean "cannot batch"
            raise UnbatchableError(f"torch.func cannot batch this model: "
                                   f"{type(exc).__name__}: {exc}".strip()) from exc
        x, y = self.template.x_train[idx[0]], self.template.y_train[idx[0]]
        for i in range(k):
            # the reference is what the single env computes: the same model in its layout
            m = models[i].to(memory_format=torch.channels_last) if self.template.channels_last else models[i]
            m.zero_grad(set_to_none=True)
            ref = self.loss_fn(m(x), y)
            ref.backward()
            # The losses must agree to rounding; the gradients to 5 % in norm per tensor, not
            # element by element: a max-pooling window whose two largest inputs are equal to float
            # rounding sends its gradient to either (both are valid subgradients), and one such
            # window moved the MNIST CNN's convolution gradients by 0.9 % in norm (NCHW float32
            # against float64), which an element-wise check mistook for an unbatchable model.
            # Randomness and data-dependent control flow change the loss itself.
            ok = torch.allclose(losses[i], ref.detach(), rtol=1e-4, atol=1e-6) and all(
                _relative_error(self.grads[n][i], p.grad if p.grad is not None else torch.zeros_like(p)) <= 0.05
                for n, p in m.named_parameters())
            if not ok:
                raise UnbatchableError("the batched forward/backward of this model differs from "
                                       "its own (randomness or data-dependent behaviour?)")
        self.grads = {k2: torch.zeros_like(v) for k2, v in self.params.items()}

    def _new_state(self, envs) -> None:
        """Fresh optimizer state for runs ``envs`` (as a new ``torch.optim`` optimizer)."""
        n = self.num_envs
        if not hasattr(self, "opt_state"):
            self.steps = np.zeros(n, dtype=np.int64)        # Adam's step counter per run
            self.has_buf = np.zeros(n, dtype=bool)          # SGD momentum buffer exists
            if self.kind == "adam":
                self.opt_state = {k: (torch.zeros_like(v), torch.zeros_like(v))
                                  for k, v in self.params.items()}
            elif self.hp["momentum"]:
                self.opt_state = {k: torch.zeros_like(v) for k, v in self.params.items()}
            else:
                self.opt_state = {}
        envs = list(envs)
        self.steps[envs] = 0
        self.has_buf[envs] = False
        for state in self.opt_state.values():
            for t in (state if isinstance(state, tuple) else (state,)):
                t[envs] = 0

    def seed(self, i: int, seed: int) -> None:
        """Run ``i``: ``w0`` drawn from ``seed``, batch order restarted, weights at ``w0``."""
        model = self.streams[i].seed(seed).to(self.device)
        self._set_w0(i, model)

    def reset(self, i: int, new_w0: bool = False) -> None:
        """Run ``i``: weights back to ``w0`` (a fresh draw first with ``new_w0``), fresh optimizer
        state; its batch order continues."""
        if new_w0:
            self._set_w0(i, self.streams[i].fresh_w0().to(self.device))
        else:
            self._load_w0(i)

    def _set_w0(self, i: int, model: nn.Module) -> None:
        state = model.state_dict()
        for k in self.w0:
            self.w0[k][i] = state[k].detach()
        self._load_w0(i)

    @torch.no_grad()
    def _load_w0(self, i: int) -> None:
        for k, v in self.params.items():
            v[i] = self.w0[k][i]
        for k, v in self.buffers.items():
            v[i] = self.w0[k][i]
        self._new_state([i])

    def state_dict(self, i: int) -> dict[str, Tensor]:
        """Run ``i``'s model weights, keyed as its ``state_dict()``."""
        return {k: v[i].clone() for k, v in {**self.params, **self.buffers}.items()}

    # ------------------------------------------------------------------ data
    # (next_batch, validation_batch, probe_batch: RunBatches, from each run's stream)
    def _data(self, split: str):
        t = self.template
        return (t.x_train, t.y_train) if split == "train" else (t.x_val, t.y_val)

    def _select(self, envs: Tensor | None):
        if envs is None:
            return self.params, self.buffers
        return ({k: v[envs] for k, v in self.params.items()},
                {k: v[envs] for k, v in self.buffers.items()})

    # ------------------------------------------------------------------ training
    def loss_and_grad(self, idx: Tensor, envs: Tensor | None = None,
                      other: tuple[Tensor, str] | None = None):
        """Losses of runs ``envs`` (default all) on their batches ``idx`` (one row per run);
        their gradients are kept for the next :meth:`update`. With ``other=(idx2, split)`` also
        the losses on batches ``idx2`` of ``split`` at the same weights, in the same batched
        call (returns both)."""
        params, buffers = self._select(envs)
        x, y = self.template.x_train[idx], self.template.y_train[idx]
        if other is None:
            grads, losses = self._grad_and_loss(params, buffers, x, y)
        else:
            x2, y2 = self._data(other[1])
            grads, (losses, others) = self._grad_and_loss_and_other(
                params, buffers, x, y, x2[other[0]], y2[other[0]])
        for k, g in grads.items():
            if envs is None:
                self.grads[k] = g
            else:
                self.grads[k][envs] = g
        return losses.detach() if other is None else (losses.detach(), others)

    @torch.no_grad()
    def batch_loss(self, idx: Tensor, split: str = "train", envs: Tensor | None = None) -> Tensor:
        """Losses of the current weights of runs ``envs`` on batches ``idx`` of ``split``."""
        params, buffers = self._select(envs)
        x, y = self._data(split)
        return self._loss(params, buffers, x[idx], y[idx])

    @torch.no_grad()
    def grad_norm(self, envs: Tensor | None = None) -> Tensor:
        """L2 norm of each run's gradient (as :func:`envs.control.grad_norm`)."""
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in self.grads.values()])
        norms = torch.linalg.vector_norm(norms, dim=0)
        return norms if envs is None else norms[envs]

    @torch.no_grad()
    def weight_norm(self, envs: Tensor | None = None) -> Tensor:
        """L2 norm of each run's weights (as :func:`envs.control.weight_norm`)."""
        norms = torch.stack([torch.linalg.vector_norm(p.flatten(1), dim=1) for p in self.params.values()])
        norms = torch.linalg.vector_norm(norms, dim=0)
        return norms if envs is None else norms[envs]

    @torch.no_grad()
    def update(self, lr: np.ndarray, active: np.ndarray | None = None) -> None:
        """One optimizer step of every run with its gradient, at rates ``lr`` (shape
        ``(N, n_groups)``); runs where ``active`` is False are left untouched."""
        n = self.num_envs
        lr = np.asarray(lr, dtype=np.float64).reshape(n, self.n_groups)
        active_np = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        all_active = bool(active_np.all())
        mask = torch.as_tensor(active_np, device=self.device)
        if self.kind == "adam":
            self.steps[active_np] += 1
        for k, gi in zip(self.names, self.group_of):
            p, g = self.params[k], self.grads[k]
            shape = (n,) + (1,) * (p.dim() - 1)
            m = mask.view(shape)
            rate = lr[:, gi]
            if self.kind == "sgd":
                direction, rate_t = self._sgd(k, p, g, m, shape), self._tensor(rate, shape, p.dtype)
                if all_active:  # in place, as torch's param.add_(g, alpha=-lr): bit for bit, no temporaries
                    p.addcmul_(rate_t, direction, value=-1)
                else:
                    self.params[k] = torch.where(m, torch.addcmul(p, rate_t, direction, value=-1), p)
            else:
                new = self._adam(k, p, g, rate, m, shape)
                self.params[k] = new if all_active else torch.where(m, new, p)
        if self.kind == "sgd" and self.hp["momentum"]:
            self.has_buf |= active_np

    def _tensor(self, values: np.ndarray, shape, dtype) -> Tensor:
        return torch.as_tensor(values, dtype=dtype, device=self.device).view(shape)

    def _sgd(self, k, p, g, m, shape) -> Tensor:
        """The step direction of torch.optim.sgd._single_tensor_sgd, per run (the gradient with
        weight decay and momentum); :meth:`update` applies it at each run's rate."""
        hp = self.hp
        if hp["weight_decay"] != 0:
            g = g.add(p, alpha=hp["weight_decay"])
        if hp["momentum"] != 0:
            buf = self.opt_state[k]
            first = torch.as_tensor(~self.has_buf, device=self.device).view(shape)
            new_buf = torch.where(first, g, buf.mul(hp["momentum"]).add(g, alpha=1 - hp["dampening"]))
            self.opt_state[k] = torch.where(m, new_buf, buf)
            g = g.add(new_buf, alpha=hp["momentum"]) if hp["nesterov"] else new_buf
        return g

    def _adam(self, k, p, g, rate, m, shape) -> Tensor:
        # torch.optim.adam._single_tensor_adam (amsgrad off), per run
        hp = self.hp
        beta1, beta2 = hp["betas"]
        wd = hp["weight_decay"]
        exp_avg, exp_avg_sq = self.opt_state[k]
        if wd != 0:
            if hp.get("decoupled_weight_decay", False) or self.template.optimizer_name.lower() == "adamw":
                p = p * self._tensor(1 - rate * wd, shape, p.dtype)
            else:
                g = g.add(p, alpha=wd)
        new_avg = exp_avg.lerp(g, 1 - beta1)
        new_sq = exp_avg_sq.mul(beta2).addcmul(g, g, value=1 - beta2)
        self.opt_state[k] = (torch.where(m, new_avg, exp_avg), torch.where(m, new_sq, exp_avg_sq))
        step = np.maximum(self.steps, 1).astype(np.float64)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        step_size = rate / bias_correction1
        denom = (new_sq.sqrt() / self._tensor(bias_correction2_sqrt, shape, p.dtype)).add(hp["eps"])
        return p - self._tensor(step_size, shape, p.dtype) * (new_avg / denom)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, envs: Sequence[int], splits: Sequence[str] = ("train", "test"),
                 chunk: int = 256) -> list[dict[str, float]]:
        """``PrimaryTrainer.evaluate`` for each run in ``envs``: full-dataset losses/accuracies."""
        t = self.template
        envs = list(envs)
        if not envs:
            return []
        if t.channels_last:
            # Convolutional models on the CPU: one run at a time, its weights copied into one
            # channels-last model and evaluated as PrimaryTrainer.evaluate does (the same numbers
            # as a single env). Measured on digits, 16 runs (benchmarks/memory_format.py): 1.6x
            # faster than one LayerStack call per chunk and 2.3x than one vmapped call with one
            # torch thread, 1.3x and 1.6x with two (grouped convolutions over the large evaluation
            # chunks are slow on this CPU); as fast as 16 single evaluations.
            model = self._eval_model()
            tensors = [*model.named_parameters(), *model.named_buffers()]
            stacked = {**self.params, **self.buffers}
            per_run = []
            for i in envs:
                for k, tensor in tensors:
                    tensor.copy_(stacked[k][i])
                per_run.append(t.evaluation_tensors(model, splits, chunk))
            results = {key: torch.stack([r[key] for r in per_run]) for key in per_run[0]}
        else:
            results = self._evaluate_batched(torch.as_tensor(envs, dtype=torch.long, device=self.device),
                                             splits, chunk)
        values = torch.stack(list(results.values()), dim=1).tolist()  # one synchronisation
        return [dict(zip(results, row)) for row in values]

    def _evaluate_batched(self, sel: Tensor, splits: Sequence[str], chunk: int) -> dict[str, Tensor]:
        """:meth:`evaluate` of runs ``sel`` with one batched call per chunk, values ``(len(sel),)``."""
        t = self.template
        params, buffers = self._select(sel)
        data = {"train": (t.x_train, t.y_train), "test": (t.x_test, t.y_test), "val": (t.x_val, t.y_val)}
        loss = torch.func.vmap(self.loss_fn, in_dims=(0, None))
        results = {}
        for split in splits:
            x, y = data[split]
            total = torch.zeros(len(sel), device=self.device)
            correct = torch.zeros(len(sel), device=self.device)
            for start in range(0, len(x), chunk):
                out = self._output(params, buffers, x[start:start + chunk])
                yb = y[start:start + chunk]
                total += loss(out, yb) * len(yb)
                if self.classification:
                    correct += (out.argmax(dim=2) == yb).sum(dim=1)
            n = max(len(x), 1)
            results[f"{split}_loss"] = total / n
            if self.classification:
                results[f"{split}_accuracy"] = correct / n
        return results

    def _eval_model(self) -> nn.Module:
        """A private channels-last copy of the model, whose weights :meth:`evaluate` overwrites."""
        if getattr(self, "_eval_copy", None) is None:
            self._eval_copy = copy.deepcopy(self.template.model)
        return self._eval_copy

    # ------------------------------------------------------------------ per-run state, flat (read-only)
    def _flat(self, tensors: dict[str, Tensor], envs: Tensor | None) -> Tensor:
        rows = [tensors[k] if envs is None else tensors[k][envs] for k in self.names]
        return torch.cat([t.detach().flatten(1) for t in rows], dim=1)

    @torch.no_grad()
    def flat_params(self, envs: Tensor | None = None) -> Tensor:
        """Runs ``envs``' (default all) weights, one flat row per run in ``model.parameters()``
        order (as ``torch.cat`` of a single model's flattened parameters), shape ``(len(envs), P)``."""
        return self._flat(self.params, envs).clone()

    @torch.no_grad()
    def flat_grads(self, envs: Tensor | None = None) -> Tensor:
        """Runs ``envs``' pending batch gradients (the next :meth:`update`'s), one flat row per run
        (as ``PrimaryTrainer.flat_grad``), shape ``(len(envs), P)``."""
        return self._flat(self.grads, envs).clone()

    def full_grads(self, envs: Tensor | None = None) -> Tensor:
        """Gradients of the full training-set loss at runs ``envs``' current weights, one flat row
        per run, shape ``(len(envs), P)``; the pending batch gradients are left untouched."""
        from torch.func import functional_call, grad, vmap

        base, t = self.base, self.template
        x, y = t.x_train, t.y_train

        def loss(p, b):
            return self.loss_fn(functional_call(base, (p, b), (x,)), y)

        params, buffers = self._select(envs)
        return self._flat(vmap(grad(loss))(params, buffers), None).detach()
