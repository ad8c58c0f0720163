"""An example user task: scikit-learn's bundled wine data (offline), a small MLP.

Registered as an id in the README's "Your own task as a registered id" and in
tests/test_gym_conventions.py::test_register_your_own_task_as_an_id.
"""
import torch
import torch.nn.functional as F
from torch import nn

import envs


def wine_mlp() -> nn.Module:
    # a module-level function, not a lambda: the task pickles (vector envs, copies)
    return nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))


def make() -> envs.Task:
    from sklearn.datasets import load_wine

    data = load_wine()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:140], order[140:]
    return envs.Task.from_tensors(x[train], y[train], x[test], y[test], model_factory=wine_mlp,
                                  loss_fn=F.cross_entropy, batch_size=20, name="wine")
