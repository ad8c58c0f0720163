"""The task suite: families of small primary training problems, split into ``train`` and ``test``.

A *family* is a generator ``seed -> Task``: one kind of problem (an architecture on a kind of
data, with its loss), and an *instance* is the :class:`~envs.tasks.Task` one instance seed gives:
the data (subset, noise, input scale), the model (width, depth, activation, normalisation,
initialisation scale), the loss, the batch size and the horizon (``task.meta["horizon"]``,
primary updates per run) are all drawn from the seed, so a family is a distribution, not one
point. Everything is offline (scikit-learn's bundled data sets, synthetic generators, text that
ships with Python) and small, so the whole suite is practical on two CPU cores: models of
hundreds to a few thousand parameters, hundreds to a few thousand examples, horizons of 300 to
1,000 updates (mostly the low end).

The split is by *kind*: whole architectures and data kinds are held out, not just seeds.

==========================  =====  ==========================================================
family                      split  what it is
==========================  =====  ==========================================================
``linear-regression``       train  linear model, anisotropic Gaussian inputs (the paper's
                                   regression2d generalised: 2-16 inputs, condition number
                                   up to 100), MSE
``teacher-student``         train  MLP student of a random tanh teacher, MSE or Huber
``mlp-classification``      train  MLP on ``make_classification`` (2-5 classes, label noise)
``digits-cnn``              train  2-D ReLU CNN, up to the digits task's own, on a subset of
                                   scikit-learn's 8x8 digits
``diabetes-mlp``            train  MLP regression on scikit-learn's diabetes, MSE or Huber
``tabular-mlp``             train  MLP on iris, wine or breast cancer (scikit-learn), label noise
``cnn1d-signals``           test   1-D CNN classifying noisy synthetic waveforms
``gru-text``                test   GRU or LSTM predicting the next character of Python's own
                                   standard-library source text
``attention-tokens``        test   one self-attention layer: the most frequent token of a
                                   random sequence
``norm-residual-mlp``       test   residual MLP with BatchNorm or LayerNorm on 2-D
                                   moons/circles lifted to 8-16 inputs
==========================  =====  ==========================================================

Held out by the test split: 1-D convolutions, recurrence, attention, normalisation layers and
residual connections (architectures), and time series, text, token sequences and
moons/circles (data kinds). Nothing in ``test`` may be used to train or select a controller.

Instance seeds come from disjoint ranges (:data:`INSTANCE_SEEDS`), the project's seed ranges
generalised: ``train`` 0-499 (training controllers), ``selection`` 500-999 (choosing a
checkpoint), ``scoring`` 1000-1999 (reported scores; the held-out evaluation seeds of
evaluate.py start at 1000 too). By convention an instance is run from the primary seed equal to
its instance seed (``w0`` and the batch order), so ``(family, seed)`` names one run exactly.

An instance is addressable by name wherever a task name is accepted: ``envs.suite:FAMILY@SEED``
(e.g. ``python evaluate.py --task envs.suite:gru-text@1000``) is a user task in the sense of
:func:`envs.tasks.make_task` (``package.module:function``; this module resolves ``FAMILY@SEED``
as a function of no arguments), which is also how the sweep's worker processes rebuild it.

:class:`SuiteEnv` is the environment over a split (``LearningRate-Suite-v0``: a training
instance at every ``reset``; ``LearningRate-Suite-Test-v0``: scoring instances of the test
families; one id per family, :data:`SUITE_ENV_IDS`).
"""
from __future__ import annotations

import functools
import json
import math
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.tasks import DatasetUnavailableError, Task

SPLITS = ("train", "test")
#: instance seed ranges (half-open): training, checkpoint selection, scoring; disjoint
INSTANCE_SEEDS = {"train": (0, 500), "selection": (500, 1000), "scoring": (1000, 2000)}
#: primary updates per run an instance may draw (mostly the low end: the suite must stay cheap)
HORIZONS = (300, 300, 500, 500, 800, 1000)


class SuiteError(ValueError):
    """An unknown family, split or seed range, or settings the suite cannot use; one line."""


# --------------------------------------------------------------------------- models
class MLP(nn.Module):
    """``n_in -> widths... -> n_out``: Linear, optional BatchNorm/LayerNorm, activation per hidden
    layer; with ``residual=True`` every hidden layer after the first adds its input (same width)."""

    def __init__(self, n_in: int, n_out: int, widths: Sequence[int], act: str = "tanh",
                 norm: str | None = None, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.act = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}[act]()
        dims = [n_in, *widths]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        norms = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
        self.norms = nn.ModuleList(norms[norm](w) if norm else nn.Identity() for w in widths)
        self.head = nn.Linear(dims[-1], n_out)

    def forward(self, x: Tensor) -> Tensor:
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            h = self.act(norm(layer(x)))
            x = x + h if self.residual and i > 0 else h
        return self.head(x)


class CNN2d(nn.Module):
    """conv3x3(c1)-ReLU-maxpool2-conv3x3(c2)-ReLU-maxpool2-linear on ``1 x 8 x 8`` images, with a
    ReLU hidden layer of ``hidden`` units before the last linear layer if ``hidden > 0``."""

    def __init__(self, c1: int, c2: int, n_out: int = 10, hidden: int = 0) -> None:
        super().__init__()
        head = ([nn.Linear(c2 * 4, hidden), nn.ReLU(), nn.Linear(hidden, n_out)] if hidden
                else [nn.Linear(c2 * 4, n_out)])
        self.net = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), *head)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN1d(nn.Module):
    """conv5(c)-ReLU-maxpool2-conv5(c)-ReLU-global average pool-linear on ``1 x L`` signals."""

    def __init__(self, channels: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                                  nn.Conv1d(channels, channels, 5, padding=2), nn.ReLU())
        self.head = nn.Linear(channels, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x).mean(dim=2))


class CharRNN(nn.Module):
    """Embedding-GRU/LSTM-linear: the next token's scores from the last step, ``(B, T) -> (B, V)``."""

    def __init__(self, vocab: int, embed: int, hidden: int, cell: str = "gru") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out[:, -1])


class TinyAttention(nn.Module):
    """Token + position embeddings, one single-head self-attention layer with a residual
    connection and LayerNorm, mean pooling, linear: ``(B, T) -> (B, n_out)``."""

    def __init__(self, vocab: int, length: int, dim: int, n_out: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.1 * torch.randn(length, dim))
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_out)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) + self.pos
        att = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) * self.scale, dim=-1)
        h = self.norm(h + att @ self.v(h))
        return self.head(h.mean(dim=1))


_MODELS = {"mlp": MLP, "cnn2d": CNN2d, "cnn1d": CNN1d, "rnn": CharRNN, "attention": TinyAttention}


def build_model(kind: str, init_scale: float = 1.0, **kwargs) -> nn.Module:
    """A freshly initialised model of ``kind`` (:data:`_MODELS`) with PyTorch's default
    initialisation, every weight matrix/kernel (not biases, norms or embeddings' scale)
    multiplied by ``init_scale``. Top-level, so ``functools.partial(build_model, ...)`` pickles."""
    model = _MODELS[kind](**kwargs)
    if init_scale != 1.0:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                    module.weight.mul_(init_scale)
    return model


def huber_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean Huber loss with ``delta = 1`` (top-level so that a task using it pickles)."""
    return F.huber_loss(prediction, target, delta=1.0)


LOSSES = {"mse": F.mse_loss, "huber": huber_loss, "cross-entropy": F.cross_entropy}


# --------------------------------------------------------------------------- helpers
def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[Tensor, Tensor]:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    return (torch.tensor((x_train - mean) / std, dtype=torch.float32),
            torch.tensor((x_test - mean) / std, dtype=torch.float32))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _split(rng: np.random.Generator, n: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    return perm[n_test:], perm[:n_test]


def _flip_labels(rng: np.random.Generator, y: np.ndarray, fraction: float, n_classes: int) -> np.ndarray:
    """``fraction`` of the labels replaced by uniformly random classes (training labels only)."""
    y = y.copy()
    flip = rng.random(len(y)) < fraction
    y[flip] = rng.integers(n_classes, size=int(flip.sum()))
    return y


def _mlp_params(rng: np.random.Generator, widths=(16, 32, 64), depths=(1, 2, 3), acts=("tanh", "relu")) -> dict:
    depth = int(_pick(rng, depths))
    return {"widths": tuple(int(_pick(rng, widths)) for _ in range(depth)), "act": str(_pick(rng, acts))}


# --------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    """One task family: ``build(rng) -> (task fields, parameters)`` behind :meth:`instance`.

    Attributes:
        name: the family's name (lower case, dashes).
        split: ``"train"`` or ``"test"``.
        kind: one line: architecture, data, loss (shown in cards and tables).
        build: ``build(rng) -> dict`` of :class:`~envs.tasks.Task` fields (``x_train``, ...,
            ``model_factory``, ``loss_fn``, ``batch_size``, ``classification``) and ``params``, the
            instance's drawn parameters (JSON-serialisable), from a seeded numpy generator.
    """

    name: str
    split: str
    kind: str
    build: Callable[[np.random.Generator], dict]

    def instance(self, seed: int) -> Task:
        """The instance of ``seed`` (see :func:`make_instance`, which caches it)."""
        return make_instance(self.name, seed)


def _linear_regression(rng: np.random.Generator) -> dict:
    d = int(rng.integers(2, 17))
    cond = _log_uniform(rng, 1.0, 100.0)
    scale = _log_uniform(rng, 0.3, 3.0) * np.geomspace(1.0, 1.0 / math.sqrt(cond), d)
    w_star = 2.0 * rng.standard_normal(d)
    noise = float(rng.uniform(0.1, 1.0))
    n_train = int(_pick(rng, (500, 1000, 2000)))

    def sample(n):
        x = rng.standard_normal((n, d)) * scale
        return x, x @ w_star + noise * rng.standard_normal(n)

    (xtr, ytr), (xte, yte) = sample(n_train), sample(500)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"x_train": as_t(xtr), "y_train": as_t(ytr).unsqueeze(1), "x_test": as_t(xte),
            "y_test": as_t(yte).unsqueeze(1), "classification": False, "loss": "mse",
            "model": {"kind": "mlp", "n_in": d, "n_out": 1, "widths": ()},
            "batch_size": int(_pick(rng, (8, 16, 32, 64))),
            "params": {"inputs": d, "condition_number": round(cond, 2), "input_scale": round(float(scale[0]), 3),
                       "noise": round(noise, 3), "n_train": n_train}}


def _teacher_student(rng: np.random.Generator) -> dict:
    d = int(rng.integers(5, 21))
    in_scale = _log_uniform(rng, 0.5, 2.0)
    w1, w2 = rng.standard_normal((d, 32)) / math.sqrt(d), rng.standard_normal(32) / math.sqrt(32)
    n_train = int(_pick(rng, (500, 1000, 2000)))
    noise = float(rng.uniform(0.0, 0.2))
    x = rng.standard_normal((n_train + 500, d))
    y = np.tanh(x @ w1 * 2.0) @ w2
    y = (y - y.mean()) / (y.std() + 1e-8) + noise * rng.standard_normal(len(y))
    x = x * in_scale
    mlp, loss = _mlp_params(rng), str(_pick(rng, ("mse", "huber")))
    init_scale = _log_uniform(rng, 0.7, 1.5)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"x_train": as_t(x[500:]), "y_train": as_t(y[500:]).unsqueeze(1), "x_test": as_t(x[:500]),
            "y_test": as_t(y[:500]).unsqueeze(1), "classification": False, "loss": loss,
            "model": {"kind": "mlp", "n_in": d, "n_out": 1, **mlp, "init_scale": init_scale},
            "batch_size": int(_pick(rng, (16, 32, 64, 128))),
            "params": {"inputs": d, "input_scale": round(in_scale, 3), "noise": round(noise, 3), "n_train": n_train,
                       **mlp, "loss": loss, "init_scale": round(init_scale, 3)}}


def _mlp_classification(rng: np.random.Generator) -> dict:
    from sklearn.datasets import make_classification

    n_features, n_classes = int(rng.integers(10, 31)), int(rng.integers(2, 6))
    n_train = int(_pick(rng, (600, 1000, 2000)))
    sep, flip = float(rng.uniform(0.7, 1.5)), float(rng.uniform(0.0, 0.1))
    x, y = make_classification(n_samples=n_train + 500, n_features=n_features, n_informative=n_features // 2,
                               n_classes=n_classes, n_clusters_per_class=2, class_sep=sep, flip_y=flip,
                               random_state=int(rng.integers(2**31)))
    in_scale = _log_uniform(rng, 0.3, 3.0)
    xtr, xte = _standardise(x[500:], x[:500])
    mlp = _mlp_params(rng)
    return {"x_train": xtr * in_scale, "y_train": torch.tensor(y[500:]), "x_test": xte * in_scale,
            "y_test": torch.tensor(y[:500]), "classification": True, "loss": "cross-entropy",
            "model": {"kind": "mlp", "n_in": n_features, "n_out": n_classes, **mlp},
            "batch_size": int(_pick(rng, (16, 32, 64, 128))),
            "params": {"features": n_features, "classes": n_classes, "class_sep": round(sep, 3),
                       "label_noise": round(flip, 3), "input_scale": round(in_scale, 3), "n_train": n_train, **mlp}}


def _digits_cnn(rng: np.random.Generator) -> dict:
    from sklearn.datasets import load_digits

    data = load_digits()
    n_train = int(_pick(rng, (500, 800, 1200)))
    train, test = _split(rng, len(data.target), 400)
    train = train[:n_train]
    in_scale = _log_uniform(rng, 0.5, 2.0)
    x = torch.tensor(data.images / 16.0 * in_scale, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    # up to the library's own digits CNN (16, 32 channels, a hidden layer of 64): wider and
    # deeper ReLU networks are the ones that large steps kill
    c1, c2, hidden = (int(v) for v in _pick(rng, ((4, 8, 0), (8, 16, 0), (8, 16, 32), (16, 32, 64))))
    init_scale = _log_uniform(rng, 0.7, 1.5)
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
            "classification": True, "loss": "cross-entropy",
            "model": {"kind": "cnn2d", "c1": c1, "c2": c2, "hidden": hidden, "n_out": 10, "init_scale": init_scale},
            "batch_size": int(_pick(rng, (32, 50, 64))),
            "params": {"n_train": n_train, "input_scale": round(in_scale, 3), "channels": [c1, c2], "hidden": hidden,
                       "init_scale": round(init_scale, 3)}}


def _diabetes_mlp(rng: np.random.Generator) -> dict:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    train, test = _split(rng, len(y), 100)
    xtr, xte = _standardise(x[train], x[test])
    y = (y - y[train].mean()) / y[train].std()
    mlp, loss = _mlp_params(rng, depths=(1, 2)), str(_pick(rng, ("mse", "huber")))
    return {"x_train": xtr, "y_train": torch.tensor(y[train], dtype=torch.float32).unsqueeze(1),
            "x_test": xte, "y_test": torch.tensor(y[test], dtype=torch.float32).unsqueeze(1),
            "classification": False, "loss": loss,
            "model": {"kind": "mlp", "n_in": 10, "n_out": 1, **mlp},
            "batch_size": int(_pick(rng, (16, 32, 64))),
            "params": {"n_train": len(train), **mlp, "loss": loss}}


def _tabular_mlp(rng: np.random.Generator) -> dict:
    import sklearn.datasets as D

    name = str(_pick(rng, ("iris", "wine", "breast_cancer")))
    x, y = getattr(D, f"load_{name}")(return_X_y=True)
    n_classes = int(y.max()) + 1
    train, test = _split(rng, len(y), len(y) // 4)
    xtr, xte = _standardise(x[train], x[test])
    flip = float(rng.uniform(0.0, 0.1))
    mlp = _mlp_params(rng, depths=(1, 2))
    return {"x_train": xtr, "y_train": torch.tensor(_flip_labels(rng, y[train], flip, n_classes)),
            "x_test": xte, "y_test": torch.tensor(y[test]), "classification": True, "loss": "cross-entropy",
            "model": {"kind": "mlp", "n_in": x.shape[1], "n_out": n_classes, **mlp},
            "batch_size": int(_pick(rng, (16, 32, 64))),
            "params": {"data": name, "n_train": len(train), "label_noise": round(flip, 3), **mlp}}


def _cnn1d_signals(rng: np.random.Generator) -> dict:
    n_classes, length = int(rng.integers(3, 6)), int(_pick(rng, (32, 48)))
    n_train = int(_pick(rng, (600, 1000, 2000)))
    noise = float(rng.uniform(0.3, 1.0))
    freqs = rng.uniform(1.0, 8.0, size=n_classes)
    shapes = rng.integers(0, 3, size=n_classes)  # sine, square, sawtooth

    def sample(n):
        y = rng.integers(n_classes, size=n)
        t = np.arange(length)[None, :] / length
        phase = rng.uniform(0, 1, size=(n, 1))
        cycle = (freqs[y][:, None] * t + phase) % 1.0
        wave = np.where(shapes[y][:, None] == 0, np.sin(2 * np.pi * cycle),
                        np.where(shapes[y][:, None] == 1, np.sign(cycle - 0.5), 2 * cycle - 1))
        amp = rng.uniform(0.5, 1.5, size=(n, 1))
        x = amp * wave + noise * rng.standard_normal((n, length))
        return torch.tensor(x, dtype=torch.float32).unsqueeze(1), torch.tensor(y)

    (xtr, ytr), (xte, yte) = sample(n_train), sample(500)
    channels = int(_pick(rng, (4, 8, 12)))
    init_scale = _log_uniform(rng, 0.7, 1.5)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "classification": True,
            "loss": "cross-entropy",
            "model": {"kind": "cnn1d", "channels": channels, "n_out": n_classes, "init_scale": init_scale},
            "batch_size": int(_pick(rng, (16, 32, 64))),
            "params": {"classes": n_classes, "length": length, "noise": round(noise, 3), "n_train": n_train,
                       "channels": channels, "init_scale": round(init_scale, 3)}}


#: standard-library modules whose source text the ``gru-text`` family reads
TEXT_MODULES = ("textwrap", "string", "json.decoder", "argparse", "random", "collections", "inspect", "csv")
TEXT_VOCAB = 32  # the 31 most frequent characters of the text, and one for all others


@functools.lru_cache(maxsize=8)
def stdlib_text(module_name: str) -> str:
    """The source text of a standard-library module (its docstrings if the source is absent);
    :class:`~envs.tasks.DatasetUnavailableError` if neither is there."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        docs = [inspect.getdoc(module) or ""] + [inspect.getdoc(v) or "" for v in vars(module).values()
                                                  if callable(v)]
        text = "\n".join(d for d in docs if d)
        if len(text) < 5000:
            raise DatasetUnavailableError(
                f"gru-text needs the source or docstrings of the standard-library module {module_name!r}, "
                f"which this Python does not ship (stripped install or python -OO)") from None
        return text


def _gru_text(rng: np.random.Generator) -> dict:
    module = str(_pick(rng, TEXT_MODULES))
    text = stdlib_text(module).lower()
    chars, counts = np.unique(np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8), return_counts=True)
    top = chars[np.argsort(-counts)][:TEXT_VOCAB - 1]
    lut = np.full(256, TEXT_VOCAB - 1, dtype=np.int64)
    lut[top] = np.arange(len(top))
    ids = lut[np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)]
    context = int(_pick(rng, (8, 12)))
    n_train = int(_pick(rng, (1000, 2000, 3000)))
    cut = int(0.8 * len(ids))  # train windows from the first 80% of the text, test from the rest

    def windows(lo, hi, n):
        starts = rng.integers(lo, hi - context - 1, size=n)
        idx = starts[:, None] + np.arange(context + 1)[None, :]
        w = torch.tensor(ids[idx])
        return w[:, :-1].contiguous(), w[:, -1].contiguous()

    (xtr, ytr), (xte, yte) = windows(0, cut, n_train), windows(cut, len(ids), 500)
    cell, hidden = str(_pick(rng, ("gru", "lstm"))), int(_pick(rng, (16, 24, 32)))
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "classification": True,
            "loss": "cross-entropy",
            "model": {"kind": "rnn", "vocab": TEXT_VOCAB, "embed": 12, "hidden": hidden, "cell": cell},
            "batch_size": int(_pick(rng, (16, 32, 64))),
            "params": {"module": module, "context": context, "n_train": n_train, "cell": cell, "hidden": hidden}}


def _attention_tokens(rng: np.random.Generator) -> dict:
    vocab, length = int(rng.integers(4, 9)), int(_pick(rng, (8, 12, 16)))
    n_train = int(_pick(rng, (1000, 2000)))

    def sample(n):
        # a skewed draw per sequence makes the most frequent token learnable but not trivial
        p = rng.dirichlet(np.full(vocab, 0.7), size=n)
        x = np.stack([rng.choice(vocab, size=length, p=pi) for pi in p])
        counts = np.stack([np.bincount(row, minlength=vocab) for row in x])
        return torch.tensor(x), torch.tensor(counts.argmax(1))

    (xtr, ytr), (xte, yte) = sample(n_train), sample(500)
    dim = int(_pick(rng, (8, 16, 24)))
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "classification": True,
            "loss": "cross-entropy",
            "model": {"kind": "attention", "vocab": vocab, "length": length, "dim": dim, "n_out": vocab},
            "batch_size": int(_pick(rng, (32, 64))),
            "params": {"vocab": vocab, "length": length, "n_train": n_train, "dim": dim}}


def _norm_residual_mlp(rng: np.random.Generator) -> dict:
    from sklearn.datasets import make_circles, make_moons

    data = str(_pick(rng, ("moons", "circles")))
    n_train, noise = int(_pick(rng, (600, 1000, 2000))), float(rng.uniform(0.05, 0.25))
    maker = make_moons if data == "moons" else make_circles
    kw = {} if data == "moons" else {"factor": 0.5}
    x, y = maker(n_samples=n_train + 500, noise=noise, random_state=int(rng.integers(2**31)), **kw)
    d = int(rng.integers(8, 17))
    x = np.tanh(x @ rng.standard_normal((2, d)))  # a nonlinear lift to d inputs
    in_scale = _log_uniform(rng, 0.3, 3.0)
    xtr, xte = _standardise(x[500:], x[:500])
    norm, depth, width = str(_pick(rng, ("batch", "layer"))), int(rng.integers(2, 5)), int(_pick(rng, (16, 32)))
    act = str(_pick(rng, ("relu", "gelu")))
    return {"x_train": xtr * in_scale, "y_train": torch.tensor(y[500:]), "x_test": xte * in_scale,
            "y_test": torch.tensor(y[:500]), "classification": True, "loss": "cross-entropy",
            "model": {"kind": "mlp", "n_in": d, "n_out": 2, "widths": (width,) * depth, "act": act, "norm": norm,
                      "residual": True},
            "batch_size": int(_pick(rng, (32, 64, 128))),
            "params": {"data": data, "noise": round(noise, 3), "inputs": d, "input_scale": round(in_scale, 3),
                       "n_train": n_train, "norm": norm, "depth": depth, "width": width, "act": act}}


#: every family, in table order (train families first)
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("linear-regression", "train", "linear model, anisotropic Gaussian inputs, MSE", _linear_regression),
    Family("teacher-student", "train", "MLP student of a random tanh teacher, MSE or Huber", _teacher_student),
    Family("mlp-classification", "train", "MLP on make_classification, cross-entropy, label noise",
           _mlp_classification),
    Family("digits-cnn", "train", "2-D ReLU CNN on a subset of 8x8 digits, cross-entropy", _digits_cnn),
    Family("diabetes-mlp", "train", "MLP regression on diabetes, MSE or Huber", _diabetes_mlp),
    Family("tabular-mlp", "train", "MLP on iris / wine / breast cancer, cross-entropy, label noise", _tabular_mlp),
    Family("cnn1d-signals", "test", "1-D CNN on noisy synthetic waveforms, cross-entropy", _cnn1d_signals),
    Family("gru-text", "test", "GRU/LSTM next character of standard-library source, cross-entropy", _gru_text),
    Family("attention-tokens", "test", "one self-attention layer, most frequent token, cross-entropy",
           _attention_tokens),
    Family("norm-residual-mlp", "test", "residual MLP with BatchNorm/LayerNorm on moons/circles, cross-entropy",
           _norm_residual_mlp),
)}
TRAIN_FAMILIES = tuple(n for n, f in FAMILIES.items() if f.split == "train")
TEST_FAMILIES = tuple(n for n, f in FAMILIES.items() if f.split == "test")


def family(name: str) -> Family:
    """The family called ``name``; :class:`SuiteError` listing the families otherwise."""
    if name not in FAMILIES:
        raise SuiteError(f"unknown task family {name!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[name]


def split_families(split: str) -> tuple[str, ...]:
    """The families of ``split`` (``train`` or ``test``); :class:`SuiteError` otherwise."""
    if split not in SPLITS:
        raise SuiteError(f"unknown split {split!r}; choose train or test")
    return TRAIN_FAMILIES if split == "train" else TEST_FAMILIES


#: the task name under which ``train_controller.py --task`` trains on the suite: every episode a
#: fresh instance of a ``train`` family from the ``train`` seed range (:class:`SuiteEnv`), at the
#: instance's own horizon and batch size; checkpoint selection runs on the ``selection`` seeds
TRAINING_TASK = "suite-train"
#: the instance the training summary reports the saved controller on (a ``selection`` seed)
SUMMARY_INSTANCE = ("digits-cnn", 500)


def training_env(seeds: str = "train", **env_kwargs) -> "SuiteEnv":
    """The :class:`SuiteEnv` of :data:`TRAINING_TASK` runs: the ``train`` split on the seed range
    ``seeds``, every instance at its own horizon (an ``episode_length`` given is ignored)."""
    env_kwargs.pop("episode_length", None)
    return SuiteEnv(split="train", seeds=seeds, **env_kwargs)


def seed_range(name: str) -> range:
    """The instance seeds of a range of :data:`INSTANCE_SEEDS` (``train``, ``selection``, ``scoring``)."""
    if name not in INSTANCE_SEEDS:
        raise SuiteError(f"unknown seed range {name!r}; choose from {', '.join(INSTANCE_SEEDS)}")
    return range(*INSTANCE_SEEDS[name])


def scoring_seeds(n: int) -> list[int]:
    """The first ``n`` scoring instance seeds (1000, 1001, ...): the instances every report uses."""
    return list(seed_range("scoring"))[:n]


def instance_name(family_name: str, seed: int) -> str:
    """``FAMILY@SEED``, the instance's task name."""
    return f"{family_name}@{int(seed)}"


def task_spec(family_name: str, seed: int) -> str:
    """The instance as a task name :func:`envs.tasks.make_task` accepts: ``envs.suite:FAMILY@SEED``."""
    family(family_name)
    return f"{__name__}:{instance_name(family_name, seed)}"


@functools.lru_cache(maxsize=64)
def make_instance(family_name: str, seed: int) -> Task:
    """The instance ``seed`` of a family: a :class:`~envs.tasks.Task` named ``FAMILY@SEED`` whose
    ``meta`` holds ``family``, ``split``, ``seed``, ``horizon`` (primary updates per run) and
    ``params`` (what was drawn). Deterministic: the same ``(family, seed)`` gives the same data,
    model architecture and settings in every process (cached per process). The model's initial
    weights are not part of the instance: they come from the primary seed of the run."""
    fam = family(family_name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise SuiteError(f"instance seed must be an integer in [0, 2**32), got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(fam.name.encode())]))
    horizon = int(_pick(rng, HORIZONS))
    fields = fam.build(rng)
    model = fields.pop("model")
    spec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.items()}
    task = Task(instance_name(fam.name, seed), fields["x_train"], fields["y_train"], fields["x_test"],
                fields["y_test"], model_factory=functools.partial(build_model, **model),
                loss_fn=LOSSES[fields["loss"]], batch_size=fields["batch_size"],
                classification=fields["classification"],
                meta={"family": fam.name, "split": fam.split, "seed": int(seed), "horizon": horizon,
                      "batch_size": fields["batch_size"], "loss": fields["loss"], "model": spec,
                      "params": fields["params"]})
    return task


def __getattr__(name: str) -> Callable[[], Task]:
    """``FAMILY@SEED`` -> a function of no arguments returning that instance, so that
    ``envs.suite:FAMILY@SEED`` works as a user task name (:func:`envs.tasks.make_task`)."""
    family_name, at, seed = name.partition("@")
    if not at or family_name not in FAMILIES or not seed.isdigit():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (instances are "
                             f"FAMILY@SEED with FAMILY one of {', '.join(FAMILIES)})")
    return functools.partial(make_instance, family_name, int(seed))


# --------------------------------------------------------------------------- the env
def _json_or_error(what: str, value) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{what} must be JSON-serialisable (a registered env's spec is, so that "
                         f"gymnasium, SB3 and rl-zoo3 can record and rebuild it): {exc}") from None


class SuiteEnv(gym.Env):
    """Learning-rate control on a task suite: every episode is a fresh instance of a task family.

    ## Description
    Each ``reset`` draws a family (uniformly among ``families``), an instance seed and a primary
    seed (both uniformly from the seed range ``seeds``), and starts an episode of
    :class:`~envs.learning_rate_env.LearningRateEnv` on that instance (``w0`` and the batch order
    from the primary seed). ``step`` is that env's step: the protocol, rewards, divergence rule
    and ``info`` keys are :class:`LearningRateEnv`'s, with ``info["family"]`` and
    ``info["instance"]`` (``FAMILY@SEED``) added. The env keeps the last few instances' inner
    envs (building one takes milliseconds to a few tenths of a second).

    ## Action Space / Observation Space
    Those of :class:`LearningRateEnv` with the given keyword arguments; they do not depend on the
    instance (checked at every new instance). ``per_group=True`` is refused: the number of
    layers, and so the action's size, differs between instances.

    ## Episode End
    Truncation after the instance's horizon (``task.meta["horizon"]``, 300 to 1,000 primary
    updates) unless ``episode_length`` fixes one for all; termination on divergence.

    ## Arguments
    split: ``"train"`` or ``"test"``: which families (:func:`split_families`).
    families: a subset of the split's families (names, list or comma-separated), default all;
        a family of the other split is an error (train on ``train``, score on ``test``).
    seeds: instance seed range: ``"train"``, ``"selection"`` or ``"scoring"`` (default: ``train`` for
        the train split, ``scoring`` for the test split), or a list of instance seeds.
    episode_length: primary updates per episode, or ``None`` (default) for each instance's horizon.
    seed: seed of the first ``reset()`` without one (``None``: random, recorded in ``info["seed"]``).
    render_mode: as :class:`LearningRateEnv`'s.
    **env_kwargs: every other :class:`LearningRateEnv` argument (``action``, ``features``,
        ``reward``, ``optimizer``, ...), the same for all instances; they must be
        JSON-serialisable (``task`` is not allowed: the suite chooses it).

    ``reset(options={"family": F, "instance": S})`` starts a given instance (either key alone:
    the other is drawn); the primary seed is then ``S`` (the suite's run convention) unless
    ``options["primary_seed"]`` gives one. Errors (unknown family, split or seed range, a family
    of the other split, a non-serialisable argument) are one-line :class:`SuiteError` s
    (a ``ValueError``).
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}
    _CACHE = 8

    def __init__(self, split: str = "train", families: Sequence[str] | str | None = None,
                 seeds: str | Sequence[int] | None = None, episode_length: int | None = None,
                 seed: int | None = None, render_mode: str | None = None, **env_kwargs) -> None:
        super().__init__()
        allowed = split_families(split)
        if isinstance(families, str):
            families = [f.strip() for f in families.split(",") if f.strip()]
        families = list(allowed if families is None else families)
        if not families:
            raise SuiteError("families is empty")
        for name in families:
            fam = family(name)
            if fam.split != split:
                raise SuiteError(f"family {name!r} belongs to the {fam.split} split, not {split}")
        if seeds is None:
            seeds = "train" if split == "train" else "scoring"
        if isinstance(seeds, str):
            seed_list = seed_range(seeds)
        else:
            seed_list = [int(s) for s in seeds]
            if not seed_list:
                raise SuiteError("seeds is empty")
        if "task" in env_kwargs:
            raise SuiteError("SuiteEnv draws its tasks itself; do not pass task= (use families= and seeds=)")
        if env_kwargs.get("per_group"):
            raise SuiteError("per_group=True cannot be used on the suite: the number of layers, and so the "
                             "action's size, differs between instances")
        if episode_length is not None and (isinstance(episode_length, bool) or not isinstance(episode_length, int)
                                           or episode_length < 1):
            raise SuiteError(f"episode_length must be an integer >= 1 or None, got {episode_length!r}")
        _json_or_error("the suite env's keyword arguments",
                       {"split": split, "families": families, "seeds": seeds if isinstance(seeds, str) else seed_list,
                        "episode_length": episode_length, **env_kwargs})
        self.split, self.families, self.seeds = split, families, seed_list
        self.episode_length, self.default_seed, self.render_mode = episode_length, seed, render_mode
        self.env_kwargs = dict(env_kwargs)
        self._envs: dict[str, gym.Env] = {}
        self._rng = np.random.default_rng(seed)
        self._seeded = False
        self.current: gym.Env | None = None
        probe = self._inner(families[0], seed_list[0])
        self.observation_space, self.action_space = probe.observation_space, probe.action_space

    def _inner(self, family_name: str, instance_seed: int):
        from envs.learning_rate_env import LearningRateEnv

        key = instance_name(family_name, instance_seed)
        if key in self._envs:
            self._envs[key] = self._envs.pop(key)  # most recently used last
            return self._envs[key]
        task = make_instance(family_name, instance_seed)
        length = self.episode_length or task.meta["horizon"]
        env = LearningRateEnv(task=task, episode_length=length, render_mode=self.render_mode, **self.env_kwargs)
        if hasattr(self, "observation_space") and (env.observation_space != self.observation_space
                                                   or env.action_space != self.action_space):
            raise SuiteError(f"instance {key} has other observation/action spaces than the suite's first "
                             f"instance; use settings whose spaces do not depend on the model")
        self._envs[key] = env
        while len(self._envs) > self._CACHE:
            self._envs.pop(next(iter(self._envs))).close()
        return env

    @property
    def instance(self) -> str | None:
        """``FAMILY@SEED`` of the running episode (``None`` before the first reset)."""
        return None if self.current is None else self.current.trainer.task.name

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and not self._seeded:
            seed = self.default_seed if self.default_seed is not None else \
                int(np.random.SeedSequence().generate_state(1)[0])
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._seeded = True
        options = dict(options or {})
        fam = options.pop("family", None)
        if fam is None:
            fam = self.families[int(self._rng.integers(len(self.families)))]
        elif fam not in self.families:
            raise SuiteError(f"options['family'] {fam!r} is not one of this env's families: {', '.join(self.families)}")
        given = options.pop("instance", None)
        instance = int(self.seeds[int(self._rng.integers(len(self.seeds)))]) if given is None else int(given)
        primary = options.pop("primary_seed", None)
        if primary is None:
            primary = instance if given is not None else int(self.seeds[int(self._rng.integers(len(self.seeds)))])
        self.current = self._inner(fam, instance)
        obs, info = self.current.reset(seed=int(primary), options=options or None)
        info.update(family=fam, instance=instance_name(fam, instance), primary_seed=int(primary), seed=seed)
        return obs, info

    def step(self, action):
        if self.current is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, terminated, truncated, info = self.current.step(action)
        info["family"] = self.current.trainer.task.meta["family"]
        info["instance"] = self.current.trainer.task.name
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.current is None:
            return None
        return self.current.render()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self.current = None


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


#: registered ids of the suite -> their ``SuiteEnv`` keyword arguments (registered by ``envs``)
SUITE_ENV_IDS: dict[str, dict] = {
    "LearningRate-Suite-v0": {"split": "train"},
    "LearningRate-Suite-Test-v0": {"split": "test"},
    **{f"LearningRate-Suite-{_camel(n)}-v0": {"split": f.split, "families": [n]} for n, f in FAMILIES.items()},
}
