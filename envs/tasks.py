"""Tasks: the data, model and loss of a primary training problem.

A :class:`Task` bundles train/test tensors, a model factory and a loss. The named tasks are

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (offline, the default),
- ``mnist`` / ``fashion-mnist``: torchvision loaders and the paper's CNN,
- ``cifar10``: torchvision loader, per-pixel mean subtracted, the paper's CIFAR CNN,
- ``regression2d``: a random two-weight linear regression (paper Section 4.3).

Researchers bring their own problem with :meth:`Task.from_tensors`.
Data stays as CPU tensors here; :class:`envs.primary.PrimaryTrainer` moves it to the
training device once.
"""
from __future__ import annotations

import functools
import numbers
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says what to do."""


@dataclass
class Task:
    """A primary training problem.

    Attributes:
        name: short identifier, used in logs and tables.
        x_train, y_train, x_test, y_test: CPU tensors; ``x_*`` shaped ``(N, ...)`` as the
            model expects, ``y_*`` class indices (``int64``) or regression targets.
        model_factory: builds a freshly initialised model (called under a fixed seed).
        loss_fn: mean-reduced loss ``loss_fn(model(x), y) -> scalar``.
        batch_size: mini-batch size of one primary step.
        classification: whether accuracy is meaningful (argmax over the model's outputs).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    model_factory: Callable[[], nn.Module]
    loss_fn: LossFn = F.cross_entropy
    batch_size: int = 50
    classification: bool = True
    meta: dict = field(default_factory=dict)

    def __getstate__(self) -> dict:
        # the functions are pickled by reference: wrap them so that one that cannot be (a lambda,
        # a nested function) fails with what to do instead of pickle's bare attribute error
        state = self.__dict__.copy()
        for key in ("model_factory", "loss_fn"):
            state[key] = _PicklableFunction(state[key], key, self.name)
        return state

    def __setstate__(self, state: dict) -> None:
        for key in ("model_factory", "loss_fn"):
            if isinstance(state[key], _PicklableFunction):  # a deepcopy keeps the wrapper
                state[key] = state[key].function
        self.__dict__.update(state)

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError(f"task {self.name!r}: inputs and labels differ in length")
        if len(self.x_train) == 0 or len(self.x_test) == 0:
            raise ValueError(f"task {self.name!r}: empty train or test set")
        if not 1 <= self.batch_size:
            raise ValueError(f"task {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        self.batch_size = min(self.batch_size, len(self.x_train))

    @classmethod
    def from_tensors(
        cls,
        x_train: Tensor,
        y_train: Tensor,
        x_test: Tensor,
        y_test: Tensor,
        model_factory: Callable[[], nn.Module],
        loss_fn: LossFn = F.cross_entropy,
        batch_size: int = 50,
        name: str = "custom",
        classification: bool | None = None,
    ) -> "Task":
        """Build a task from your own tensors, model factory and loss.

        ``classification`` defaults to ``True`` when the labels are integer tensors.
        Everything that would otherwise fail deep inside the first training step is checked
        here, each as a ``ValueError`` (``TypeError`` for a wrong ``batch_size`` type) that says
        what to fix: ``batch_size`` is an integer; train and test inputs (and labels) have the
        same per-example shapes; one forward pass on two training and two test examples gives a
        scalar loss that has a gradient with respect to the model's parameters; and for
        classification every label (train and test) is a valid index of the model's outputs.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"task {name!r}: batch_size must be an integer, got "
                            f"{type(batch_size).__name__} {batch_size!r}")
        batch_size = int(batch_size)
        tensors = [torch.as_tensor(t) for t in (x_train, y_train, x_test, y_test)]
        xtr, ytr, xte, yte = tensors
        if xtr.ndim == 0 or xte.ndim == 0 or ytr.ndim == 0 or yte.ndim == 0:
            raise ValueError(f"task {name!r}: inputs and labels must have a first (example) dimension")
        if tuple(xtr.shape[1:]) != tuple(xte.shape[1:]):
            raise ValueError(f"task {name!r}: train and test inputs differ in shape per example: "
                             f"x_train {tuple(xtr.shape)}, x_test {tuple(xte.shape)}")
        if tuple(ytr.shape[1:]) != tuple(yte.shape[1:]):
            raise ValueError(f"task {name!r}: train and test labels differ in shape per example: "
                             f"y_train {tuple(ytr.shape)}, y_test {tuple(yte.shape)}")
        if torch.is_floating_point(ytr) != torch.is_floating_point(yte):
            raise ValueError(f"task {name!r}: y_train is {ytr.dtype} but y_test is {yte.dtype}; "
                             f"use the same kind (class indices or real targets) for both")
        if classification is None:
            classification = not torch.is_floating_point(ytr)
        task = cls(name, *tensors, model_factory=model_factory, loss_fn=loss_fn,
                   batch_size=batch_size, classification=classification)
        try:
            with torch.random.fork_rng(devices=[]):  # leave the global RNG alone
                model = model_factory()
                out_train = model(task.x_train[:2])
                with torch.no_grad():
                    out_test = model(task.x_test[:2])
        except Exception as exc:
            raise ValueError(f"task {name!r}: the model and loss do not fit the data (x_train "
                             f"{tuple(task.x_train.shape)} {task.x_train.dtype}, x_test "
                             f"{tuple(task.x_test.shape)}; the model fails): {exc}") from exc
        if classification and not torch.is_floating_point(task.y_train) and torch.is_tensor(out_train):
            if out_train.ndim != 2:
                raise ValueError(f"task {name!r}: a classification model must output (batch, classes) "
                                 f"scores, got shape {tuple(out_train.shape)}")
            n_classes = out_train.shape[1]
            for split, y in (("y_train", task.y_train), ("y_test", task.y_test)):
                lo, hi = int(y.min()), int(y.max())
                if lo < 0 or hi >= n_classes:
                    raise ValueError(f"task {name!r}: {split} holds labels in [{lo}, {hi}] but the model "
                                     f"outputs {n_classes} classes (labels must be in [0, {n_classes - 1}])")
        try:
            loss = loss_fn(out_train, task.y_train[:2])
            with torch.no_grad():
                loss_fn(out_test, task.y_test[:2])
        except Exception as exc:
            raise ValueError(f"task {name!r}: the model and loss do not fit the data "
                             f"(x_train {tuple(task.x_train.shape)} {task.x_train.dtype}, y_train "
                             f"{tuple(task.y_train.shape)} {task.y_train.dtype}): {exc}") from exc
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise ValueError(f"task {name!r}: loss_fn must return a scalar (mean-reduced) tensor, "
                             f"got {getattr(loss, 'shape', type(loss).__name__)}")
        if not torch.is_floating_point(loss) or not loss.requires_grad or loss.grad_fn is None:
            raise ValueError(f"task {name!r}: the loss has no gradient with respect to the model's "
                             f"parameters (detached, computed without autograd, or no trainable "
                             f"parameters), so no learning rate can change it")
        return task


class _PicklableFunction:
    """A task's model factory or loss on its way into a copy or a pickle.

    ``copy.deepcopy`` shares functions (this wrapper too); ``pickle`` stores them by their import
    path, which a lambda or a function defined inside another function does not have: then the
    error says so, and how to fix it."""

    def __init__(self, function: Callable, role: str, task_name: str) -> None:
        self.function, self.role, self.task_name = function, role, task_name

    def __deepcopy__(self, memo: dict) -> "_PicklableFunction":
        return self

    def __reduce__(self):
        try:
            pickle.dumps(self.function)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise pickle.PicklingError(
                f"task {self.task_name!r} cannot be pickled: its {self.role} {self.function!r} is not "
                f"importable by name ({exc}). Pickling is what multiprocessing (AsyncVectorEnv with "
                f"spawn/forkserver, SubprocVecEnv) and saving an env need. Fix: define the {self.role} "
                f"with `def` at the top level of a module (functools.partial of such a function works "
                f"too), not as a lambda or inside another function.") from exc
        return _identity, (self.function,)


def _identity(x):
    return x


# --------------------------------------------------------------------------- models
def digits_cnn() -> nn.Module:
    """conv3x3x16-ReLU-maxpool2-conv3x3x32-ReLU-maxpool2-fc64-ReLU-fc10 on 1x8x8 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def mnist_cnn() -> nn.Module:
    """The paper's (TensorFlow tutorial's) MNIST CNN on 1x28x28 inputs:
    conv5x5x32-pool-conv5x5x64-pool-fc1024-fc10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10),
    )


def cifar10_cnn() -> nn.Module:
    """The paper's (TensorFlow tutorial's) CIFAR-10 CNN on 3x32x32 inputs: two conv5x5x64
    layers each followed by max-pooling, fully connected 384 and 192, linear output."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 384), nn.ReLU(), nn.Linear(384, 192), nn.ReLU(),
        nn.Linear(192, 10),
    )


def linear_regression_2d() -> nn.Module:
    """Two weights, no bias: the loss surface is a 2-D quadratic (Figure 4's contours)."""
    return nn.Linear(2, 1, bias=False)


# --------------------------------------------------------------------------- tasks
def digits(test_fraction: float = 0.2, split_seed: int = 0) -> Task:
    """scikit-learn's 1,797 8x8 digits, pixels/16, a fixed 80/20 split (seed 0), batch 50."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=split_seed)
    return Task("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                model_factory=digits_cnn, batch_size=50)


def regression2d(n_train: int = 1000, n_test: int = 1000, noise: float = 1.0,
                 task_seed: int = 0, batch_size: int = 10) -> Task:
    """A random two-weight linear regression ``y = x . w* + noise`` with anisotropic inputs,
    so the loss contours are ellipses and the gradients of small batches disagree."""
    g = torch.Generator().manual_seed(task_seed)
    w_star = 2.0 * torch.randn(2, generator=g)
    scale = torch.tensor([1.0, 0.3])

    def sample(n: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, 2, generator=g) * scale
        y = x @ w_star + noise * torch.randn(n, generator=g)
        return x, y.unsqueeze(1)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return Task("regression2d", x_train, y_train, x_test, y_test,
                model_factory=linear_regression_2d, loss_fn=F.mse_loss,
                batch_size=batch_size, classification=False,
                meta={"w_star": w_star.tolist(), "input_scale": scale.tolist()})


_TORCHVISION = {
    # task name: (torchvision class name, folder it keeps its raw files in, files it needs)
    "mnist": ("MNIST", "MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw",
                      ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "cifar10": ("CIFAR10", "cifar-10-batches-py",
                ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"]),
}


#: shape of one example as torchvision returns it (``ds.data[i]``), to catch wrong files early
_EXAMPLE_SHAPE = {"mnist": (28, 28), "fashion-mnist": (28, 28), "cifar10": (32, 32, 3)}


def default_data_root() -> Path:
    """``$LRRL_DATA`` if set, else ``~/.cache/lrrl/data``."""
    return Path(os.environ.get("LRRL_DATA", Path.home() / ".cache" / "lrrl" / "data"))


def _load_torchvision(name: str, data_root: str | os.PathLike | None, download: bool):
    import torchvision

    cls_name, folder, needed = _TORCHVISION[name]
    root = Path(data_root) if data_root is not None else default_data_root()
    if data_root is not None and not root.is_dir():
        raise DatasetUnavailableError(
            f"--data-root {root} does not exist or is not a directory. Point --data-root at the "
            f"folder that contains {folder}/ (files: {', '.join(needed)}).")
    cls = getattr(torchvision.datasets, cls_name)
    splits = []
    for train in (True, False):
        try:
            splits.append(cls(str(root), train=train, download=download))
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
            missing = [f for f in needed if not (root / folder / f).exists()]
            where = (f"put the dataset files in <DIR>/{folder}/ and pass --data-root <DIR> "
                     f"(data_root=<DIR> in Python)")
            if missing:
                problem = (f"missing files under {root / folder}: {', '.join(missing)}. "
                           f"Downloading {'failed' if download else 'is disabled'}. "
                           f"Either allow network access (download=True), or {where}")
            else:  # all files present: torchvision could not read or verify them
                problem = (f"the files under {root / folder} could not be read or failed their "
                           f"checksum (half-downloaded or corrupt?): {exc}. Fix: delete them and "
                           f"download again (needs network), or {where}")
            raise DatasetUnavailableError(f"{name}: {problem}.") from exc
    for ds, split in zip(splits, ("train", "test")):
        # torchvision reads files whatever their sizes; a mismatch would only surface later as a
        # shape error deep inside the model, so say here which files are wrong and what to do.
        shape, n_labels = tuple(ds.data.shape[1:]), len(ds.targets)
        problem = (f"{len(ds.data)} images but {n_labels} labels" if len(ds.data) != n_labels
                   else f"examples of shape {shape}, expected {_EXAMPLE_SHAPE[name]}"
                   if shape != _EXAMPLE_SHAPE[name] else "")
        if problem:
            raise DatasetUnavailableError(
                f"{name}: the {split} files under {root / folder} hold {problem}: they are not "
                f"(intact) {name} files. Delete them and download again, or point --data-root "
                f"<DIR> at a folder whose {folder}/ holds the real files.")
    return splits


def _mnist_like(name: str, data_root, download: bool) -> Task:
    train, test = _load_torchvision(name, data_root, download)

    def tensors(ds):
        x = ds.data.to(torch.float32).div_(255.0).unsqueeze(1)
        return x, ds.targets.to(torch.int64)

    return Task(name, *tensors(train), *tensors(test), model_factory=mnist_cnn, batch_size=50)


def mnist(data_root=None, download: bool = True) -> Task:
    """MNIST, pixels in [0, 1], the paper's CNN, batch 50."""
    return _mnist_like("mnist", data_root, download)


def fashion_mnist(data_root=None, download: bool = True) -> Task:
    """Fashion-MNIST, pixels in [0, 1], the paper's MNIST CNN, batch 50."""
    return _mnist_like("fashion-mnist", data_root, download)


def cifar10(data_root=None, download: bool = True) -> Task:
    """CIFAR-10, pixels in [0, 1] minus the per-pixel training mean, the paper's CNN, batch 50."""
    train, test = _load_torchvision("cifar10", data_root, download)

    def tensors(ds):
        x = torch.as_tensor(ds.data, dtype=torch.float32).div_(255.0).permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)

    x_train, y_train = tensors(train)
    x_test, y_test = tensors(test)
    mean = x_train.mean(dim=0, keepdim=True)
    return Task("cifar10", x_train - mean, y_train, x_test - mean, y_test,
                model_factory=cifar10_cnn, batch_size=50)


TASKS: dict[str, Callable[..., Task]] = {
    "digits": digits,
    "regression2d": regression2d,
    "mnist": mnist,
    "fashion-mnist": fashion_mnist,
    "cifar10": cifar10,
}
#: tasks that need no files and no network
OFFLINE_TASKS = ("digits", "regression2d")


@functools.lru_cache(maxsize=8)
def _cached(name: str, data_root: str | None, download: bool) -> Task:
    builder = TASKS[name]
    if name in OFFLINE_TASKS:
        return builder()
    return builder(data_root=data_root, download=download)


def make_task(task: str | Task, data_root: str | os.PathLike | None = None,
              download: bool = True) -> Task:
    """Return a :class:`Task` by name (cached per process), or ``task`` itself if it is one.

    A name ``"package.module:function"`` imports ``function`` and calls it with no arguments: a
    user task (e.g. built with :meth:`Task.from_tensors`), usable wherever a task name is
    (``evaluate.py --task mypkg.tasks:wine``, ``LearningRateEnv(task=...)``)."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str) and ":" in task:
        return user_task(task)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)} "
                         f"(or 'package.module:function' returning a Task)")
    return _cached(task, None if data_root is None else str(data_root), download)


@functools.lru_cache(maxsize=8)
def user_task(spec: str) -> Task:
    """``"package.module:function"`` -> ``function()``, which must return a :class:`Task`
    (cached per process). Errors are ``ValueError`` with what to fix."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"task {spec!r}: expected 'package.module:function'")
    if not all(part.isidentifier() for part in module_name.split(".")):
        # a path or a relative import ("../x", ".x") is not a module name; the attribute is any name
        # the module answers (envs.suite resolves "FAMILY@SEED" through its module __getattr__)
        raise ValueError(f"task {spec!r}: expected 'package.module:function' (dotted Python names, "
                         f"no paths or relative imports)")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"task {spec!r}: cannot import {attr!r} from {module_name!r} ({exc})") from None
    task = builder()
    if not isinstance(task, Task):
        raise ValueError(f"task {spec!r}: {attr}() returned {type(task).__name__}, not an envs.Task "
                         f"(build one with Task.from_tensors)")
    return task
