"""Primary training: the one place that trains the primary model.

:class:`PrimaryTrainer` owns the model, the data (on the training device, once), the
optimizer and the loss. It offers the few operations that the environment, the baselines
and ``evaluate.py`` are built from:

- :meth:`~PrimaryTrainer.next_batch`: indices of the next mini-batch (seeded, epoch-shuffled);
- :meth:`~PrimaryTrainer.loss_and_grad`: loss of the current weights on a batch, with its
  gradient left in ``.grad`` for the next update;
- :meth:`~PrimaryTrainer.update`: one optimizer step at learning rate ``lr``;
- :meth:`~PrimaryTrainer.batch_loss`: loss of the current weights on a batch, no gradient;
- :meth:`~PrimaryTrainer.evaluate`: full train/test loss and accuracy;
- :meth:`~PrimaryTrainer.reset`: weights back to ``w0`` (or a fresh ``w0``) and a fresh optimizer.

Losses are returned as 0-d tensors on the device, so callers decide when to synchronise.

On the CPU a model with 2-D convolutions is kept in ``torch.channels_last`` memory format
(:func:`channels_last_on_cpu`): the same weights and the same arithmetic up to float rounding,
but CPU max-pooling in the default NCHW layout is several times slower than in channels-last,
and it dominated the digits CNN's evaluation. Measured with one torch thread
(``python benchmarks/memory_format.py``, figures in README "Many runs in one batched step").
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from envs.tasks import Task, make_task

#: optimizer names accepted besides any ``torch.optim`` class name (case-insensitive)
OPTIMIZERS = {
    "sgd": ("torch.optim", "SGD", {}),
    "momentum": ("torch.optim", "SGD", {"momentum": 0.9}),
    "nesterov": ("torch.optim", "SGD", {"momentum": 0.9, "nesterov": True}),
    "adam": ("torch.optim", "Adam", {}),
    "adamw": ("torch.optim", "AdamW", {}),
    "adagrad": ("torch.optim", "Adagrad", {}),
    "rmsprop": ("torch.optim", "RMSprop", {}),
    # learning-rate-free optimizers (the ``lrfree`` extra); their lr is a multiplier, 1.0 by default.
    # Prodigy and D-Adaptation scale it by an adapted step d that starts at d0 = 1e-6, so their
    # steps at lr = 1e6 are only about 1 (tests/test_env.py's divergence test uses 1e12 for them)
    "schedulefree-sgd": ("schedulefree", "SGDScheduleFree", {}),
    "schedulefree-adamw": ("schedulefree", "AdamWScheduleFree", {}),
    "prodigy": ("prodigyopt", "Prodigy", {}),
    # momentum 0.9: how D-Adaptation's authors run DAdaptSGD (its own default, 0, sat at chance
    # level on digits); optimizer_kwargs={"momentum": 0} restores the package default
    "dadapt-sgd": ("dadaptation", "DAdaptSGD", {"momentum": 0.9}),
    "dadapt-adam": ("dadaptation", "DAdaptAdam", {}),
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda (or cuda:N) or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; use cpu, cuda (or cuda:N) or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available; "
                         "use --device cpu (or auto)")
    return device


def build_optimizer(name: str, param_groups: list[dict], lr: float, **kwargs) -> torch.optim.Optimizer:
    """Build a primary optimizer by name: one of :data:`OPTIMIZERS` or any ``torch.optim`` class."""
    import importlib

    key = name.lower()
    if key in OPTIMIZERS:
        module_name, cls_name, defaults = OPTIMIZERS[key]
    else:
        matches = [n for n in dir(torch.optim) if n.lower() == key
                   and isinstance(getattr(torch.optim, n), type)
                   and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
                   and getattr(torch.optim, n) is not torch.optim.Optimizer]  # not the base class
        if not matches:
            raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)} "
                             f"or a torch.optim class name")
        module_name, cls_name, defaults = "torch.optim", matches[0], {}
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        raise ValueError(f"optimizer {name!r} needs the package {module_name!r}: "
                         f"pip install -e '.[lrfree]'") from exc
    if getattr(cls, "__name__", "") == "SparseAdam":
        raise ValueError(f"optimizer {name!r} (SparseAdam) needs sparse gradients (nn.Embedding(sparse=True)); "
                         f"the tasks' models have dense ones: use adam, adamw, sgd, ...")
    if needs_closure(cls):
        raise ValueError(f"optimizer {name!r} ({cls.__name__}) needs a closure that re-evaluates the loss "
                         f"in step(closure); the environment makes one plain step per mini-batch, so "
                         f"use an optimizer whose step() works without one (sgd, momentum, adam, ...)")
    return cls(param_groups, lr=lr, **{**defaults, **kwargs})


def needs_closure(cls: type) -> bool:
    """Whether ``cls.step`` requires a ``closure`` argument (e.g. ``torch.optim.LBFGS``)."""
    import inspect

    try:
        params = inspect.signature(cls.step).parameters
    except (TypeError, ValueError):
        return False
    closure = params.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def channels_last_on_cpu(model: nn.Module, x: Tensor, device: torch.device) -> bool:
    """Whether to keep ``model`` in ``torch.channels_last`` memory format: on the CPU, for a model
    with 4-D (2-D convolution) weights whose channels-last forward on ``x`` runs and matches its
    default forward. The check runs on copies, so a model with state that a forward changes
    (BatchNorm's running statistics) is left as it was; a model that cannot run channels-last
    (e.g. it ``.view``s a convolution's output) keeps the default layout. On CUDA the default
    layout is kept: no GPU here to measure whether channels-last pays there."""
    import copy

    if device.type != "cpu" or x.dim() != 4 or not any(p.dim() == 4 for p in model.parameters()):
        return False
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            ref = copy.deepcopy(model)(x)
            torch.manual_seed(0)
            out = copy.deepcopy(model).to(memory_format=torch.channels_last)(x)
        return bool(torch.allclose(ref, out, rtol=1e-4, atol=1e-5))
    except Exception:  # any failure means: keep the default layout
        return False


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters grouped by the module that owns them directly (one group per layer)."""
    groups = []
    for module in model.modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            groups.append(params)
    return groups


class PrimaryTrainer:
    """Model, data, optimizer and loss of one primary training run.

    Args:
        task: a :class:`~envs.tasks.Task` or a task name.
        optimizer: primary optimizer name (``sgd``, ``momentum``, ``adam``, ...), see
            :func:`build_optimizer`. Its learning rate is set on every :meth:`update`.
        optimizer_kwargs: extra keyword arguments for the optimizer (e.g. ``momentum=0.5``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: seeds both the initial weights ``w0`` and the batch order.
        per_group: one optimizer parameter group per layer (for per-group rates) instead of one.
        validation_size: number of training examples held out as a validation split
            (never used for updates); 0 for none.
        data_root, download: passed to :func:`~envs.tasks.make_task` for named tasks.
    """

    def __init__(self, task: Task | str = "digits", optimizer: str = "sgd",
                 optimizer_kwargs: dict | None = None, device: str | torch.device = "auto",
                 seed: int = 0, per_group: bool = False, validation_size: int = 0,
                 data_root=None, download: bool = True) -> None:
        self.task = make_task(task, data_root=data_root, download=download)
        self.device = resolve_device(device)
        self.optimizer_name = optimizer
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.per_group = per_group
        # Data lives on the device once; batches are index_select-ed from it.
        n_train = len(self.task.x_train)
        if not 0 <= validation_size < n_train:
            raise ValueError(f"validation_size must be in [0, {n_train}), got {validation_size}")
        split = torch.randperm(n_train, generator=torch.Generator().manual_seed(12345))
        val_idx, train_idx = split[:validation_size], split[validation_size:]
        to = dict(device=self.device)
        self.x_train = self.task.x_train[train_idx].to(**to)
        self.y_train = self.task.y_train[train_idx].to(**to)
        self.x_val = self.task.x_train[val_idx].to(**to)
        self.y_val = self.task.y_train[val_idx].to(**to)
        self.x_test = self.task.x_test.to(**to)
        self.y_test = self.task.y_test.to(**to)
        self.batch_size = self.task.batch_size
        self.loss_fn = self.task.loss_fn
        self._probe: Tensor | None = None  # fixed probe batch, see probe_batch
        self.model: nn.Module
        self.channels_last: bool | None = None  # decided once, on the first model (see seed)
        self.seed(seed)

    # ------------------------------------------------------------------ set-up
    def seed(self, seed: int) -> None:
        """Draw ``w0`` from ``seed``, restart the batch order from ``seed``, reset to ``w0``."""
        self._seed = int(seed)
        self._w0_draws = 0
        self._batch_gen = torch.Generator(device=self.device).manual_seed(self._seed)
        self._perm = torch.empty(0, dtype=torch.long, device=self.device)
        self._pos = 0
        self.model = self._fresh_model(self._seed).to(self.device)
        if self.channels_last is None:
            self.channels_last = channels_last_on_cpu(self.model, self.x_train[:self.batch_size], self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.w0 = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.reset()

    @staticmethod
    def _init_seed(seed: int, draw: int) -> int:
        return (seed * 1_000_003 + draw) % (2**63)

    def _fresh_model(self, seed: int) -> nn.Module:
        # fork_rng keeps the caller's global RNG untouched by model construction
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._init_seed(seed, self._w0_draws))
            return self.task.model_factory()

    def reset(self, new_w0: bool = False) -> None:
        """Restore the weights to ``w0`` (or draw a fresh ``w0`` first) and restart the optimizer.

        The batch order continues: each episode sees new batches.
        """
        if new_w0:
            self._w0_draws += 1
            fresh = self._fresh_model(self._seed)
            self.w0 = {k: v.detach().clone().to(self.device) for k, v in fresh.state_dict().items()}
        self.model.load_state_dict(self.w0)
        self.model.train()
        groups = layer_groups(self.model) if self.per_group else [list(self.model.parameters())]
        self.optimizer = build_optimizer(self.optimizer_name, [{"params": g} for g in groups],
                                         lr=1e-3, **self.optimizer_kwargs)
        self._train_mode()

    @property
    def n_groups(self) -> int:
        """Number of optimizer parameter groups (1 unless ``per_group``)."""
        return len(self.optimizer.param_groups)

    # ------------------------------------------------------------------ data
    def next_batch(self) -> Tensor:
        """Indices of the next training mini-batch: epoch-wise shuffling from the seeded generator."""
        if self._pos + self.batch_size > len(self._perm):
            self._perm = torch.randperm(len(self.x_train), generator=self._batch_gen,
                                        device=self.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def validation_batch(self, size: int, rotating: bool = False) -> Tensor:
        """Indices into the validation split: the first ``size`` (fixed) or a random subset."""
        n = len(self.x_val)
        if n == 0:
            raise ValueError("this trainer has no validation split (validation_size=0)")
        if not rotating or size >= n:
            return torch.arange(min(size, n), device=self.device)
        return torch.randperm(n, generator=self._batch_gen, device=self.device)[:size]

    def probe_batch(self, size: int, rotating: bool = False) -> Tensor:
        """Indices of a probe batch of TRAINING examples: a fixed random subset (the same for
        every seed, drawn once and kept on the device) or a fresh one from the batch generator."""
        n = len(self.x_train)
        if rotating:
            return torch.randperm(n, generator=self._batch_gen, device=self.device)[:size]
        if self._probe is None or len(self._probe) != min(size, n):
            self._probe = torch.randperm(n, generator=torch.Generator().manual_seed(777))[
                :min(size, n)].to(self.device)
        return self._probe

    # ------------------------------------------------------------------ training
    def loss_and_grad(self, idx: Tensor) -> Tensor:
        """Loss of the current weights on training batch ``idx``; leaves the gradient in ``.grad``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self.x_train[idx]), self.y_train[idx])
        loss.backward()
        return loss.detach()

    def update(self, lr: float | Sequence[float]) -> None:
        """One optimizer step with the gradient in ``.grad`` at learning rate ``lr``
        (a float, or one rate per parameter group)."""
        self.set_lr(lr)
        self.optimizer.step()

    def set_lr(self, lr: float | Sequence[float]) -> None:
        groups = self.optimizer.param_groups
        # any scalar (python, numpy, 0-d tensor) means one rate for all groups
        rates = [float(lr)] * len(groups) if np.ndim(lr) == 0 else [float(r) for r in lr]
        if len(rates) != len(groups):
            raise ValueError(f"got {len(rates)} learning rates for {len(groups)} parameter groups")
        for group, rate in zip(groups, rates):
            group["lr"] = rate

    @torch.no_grad()
    def batch_loss(self, idx: Tensor, split: str = "train") -> Tensor:
        """Loss of the current weights on batch ``idx`` of ``split`` (``train`` or ``val``).

        Measured at the same point as :meth:`loss_and_grad` (for schedule-free optimizers the
        gradient point, not the averaged one), so that a before/after pair of losses compares
        one sequence of weights; :meth:`evaluate` uses the averaged point."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_val, self.y_val)
        return self.loss_fn(self.model(x[idx]), y[idx])

    def grads(self) -> list[Tensor]:
        """The gradients currently in ``.grad`` (zeros for parameters without one)."""
        return [p.grad if p.grad is not None else torch.zeros_like(p)
                for p in self.model.parameters()]

    def flat_grad(self) -> Tensor:
        """The current gradient as one flat vector."""
        return torch.cat([g.reshape(-1) for g in self.grads()])

    def parameters(self) -> Iterable[nn.Parameter]:
        return self.model.parameters()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, splits: Sequence[str] = ("train", "test"), chunk: int = 256) -> dict[str, float]:
        """Full-dataset mean loss (and accuracy for classification) per split, as Python floats:
        keys ``train_loss``, ``train_accuracy``, ``test_loss``, ...; ``val`` is available too.
        ``chunk``: examples per forward pass; 256 keeps the activations cache-sized (on the MNIST CNN
        it is faster than 2048 and peaks ~300 MiB lower, see benchmarks/memory.py)."""
        with self._eval_weights():
            results = self.evaluation_tensors(self.model, splits, chunk)
        values = torch.stack(list(results.values())).tolist()  # one synchronisation
        return dict(zip(results, values))

    def evaluation_tensors(self, model: nn.Module, splits: Sequence[str] = ("train", "test"),
                           chunk: int = 256) -> dict[str, Tensor]:
        """:meth:`evaluate` of ``model`` (this trainer's, or another with its data and loss, as the
        batched trainer evaluates its runs) as 0-d tensors on the device, no synchronisation."""
        data = {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test),
                "val": (self.x_val, self.y_val)}
        results = {}
        for split in splits:
            x, y = data[split]
            total, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
            for start in range(0, len(x), chunk):
                out = model(x[start:start + chunk])
                yb = y[start:start + chunk]
                total += self.loss_fn(out, yb) * len(yb)
                if self.task.classification:
                    correct += (out.argmax(dim=1) == yb).sum()
            n = max(len(x), 1)
            results[f"{split}_loss"] = total / n
            if self.task.classification:
                results[f"{split}_accuracy"] = correct / n
        return results

    # ------------------------------------------------------------------ copies and pickles
    def __getstate__(self) -> dict:
        """State for ``copy.deepcopy`` and ``pickle``, with the pending gradient.

        torch copies and pickles a parameter without its ``.grad``, but ``.grad`` holds the
        gradient the next :meth:`update` applies (:meth:`loss_and_grad` left it there), so a copy
        made between the two would apply no update. The gradients travel beside the parameters
        (the optimizer's state, keyed by the same parameters, travels with it as usual)."""
        state = self.__dict__.copy()
        state["_pending_grads"] = [p.grad for p in self.model.parameters()]
        return state

    def __setstate__(self, state: dict) -> None:
        grads = state.pop("_pending_grads")
        self.__dict__.update(state)
        for param, grad in zip(self.model.parameters(), grads):
            param.grad = grad

    # ------------------------------------------------------------------ schedule-free support
    def _train_mode(self) -> None:
        if hasattr(self.optimizer, "train"):
            self.optimizer.train()

    @contextlib.contextmanager
    def _eval_weights(self):
        """Schedule-free optimizers evaluate at their averaged point: switch them to eval mode."""
        if hasattr(self.optimizer, "eval"):
            self.optimizer.eval()
            try:
                yield
            finally:
                self.optimizer.train()
        else:
            yield
