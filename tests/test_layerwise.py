"""LayerStack: N stacked copies of a plain layer stack, layer by layer, equal each copy's own
forward and gradient; anything it does not implement is refused (the caller keeps vmap)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state

from envs.layerwise import LayerStack, LayerStackUnsupported

N = 3


def models_and_params(factory):
    torch.manual_seed(0)
    models = [factory() for _ in range(N)]
    params, _ = stack_module_state(models)
    return models, {k: v.detach() for k, v in params.items()}


CASES = {
    "digits-like": (lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5), nn.ReLU(), nn.Linear(5, 3)), (1, 8, 8)),
    "groups-stride-dilation-avgpool-no-bias": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, bias=False), nn.Tanh(),
        nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.AvgPool2d(2, ceil_mode=True), nn.GELU(), nn.Flatten(),
        nn.Linear(6 * 3 * 3, 3, bias=False)), (2, 9, 9)),
    "pool-first-then-conv-output": (lambda: nn.Sequential(
        nn.MaxPool2d(2), nn.Conv2d(1, 2, 3, padding=1), nn.Sigmoid()), (1, 6, 6)),
    "nested-sequential-mlp": (lambda: nn.Sequential(
        nn.Sequential(nn.Linear(5, 7), nn.LeakyReLU(0.1)), nn.Sequential(nn.Linear(7, 4)), nn.ELU()), (5,)),
    "bare-linear": (lambda: nn.Linear(2, 1, bias=False), (2,)),
}


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_and_gradients_equal_each_models_own(case, channels_last):
    factory, shape = CASES[case]
    models, params = models_and_params(factory)
    stack = LayerStack(models[0], channels_last=channels_last)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 5, *shape, generator=g)
    shared = torch.randn(7, *shape, generator=g)

    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    out = stack.forward(leaves, x)
    assert out.shape[:2] == (N, 5)
    out.square().sum().backward()
    with torch.no_grad():
        got_shared = stack.forward(params, shared, shared=True)
    for i, m in enumerate(models):
        own = m(x[i])
        torch.testing.assert_close(out[i], own, rtol=1e-5, atol=1e-6)
        own.square().sum().backward()
        for k, p in m.named_parameters():
            torch.testing.assert_close(leaves[k].grad[i], p.grad, rtol=1e-4, atol=1e-6, msg=f"{case} {k}")
        torch.testing.assert_close(got_shared[i], m(shared).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory, why", [
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), "Dropout"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "buffers"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")), "string padding"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding_mode="reflect")), "padding mode"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.MaxPool2d(2)), "after Flatten"),
    (lambda: nn.Sequential(nn.Flatten(0)), "Flatten"),
    (lambda: nn.ModuleDict({"a": nn.Linear(2, 2)}), "container"),
], ids=["dropout", "buffers", "same-padding", "reflect", "pool-after-flatten", "flatten-dim0", "moduledict"])
def test_unsupported_models_are_refused_with_the_reason(factory, why):
    with pytest.raises(LayerStackUnsupported, match=why):
        LayerStack(factory(), channels_last=True)


def test_linear_on_an_image_is_refused_at_the_first_forward():
    models, params = models_and_params(lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(4, 3)))
    stack = LayerStack(models[0], channels_last=True)
    with pytest.raises(LayerStackUnsupported, match="only after Flatten"):
        stack.forward(params, torch.randn(N, 2, 1, 6, 6))


def test_cross_entropy_gradient_of_the_summed_losses_is_each_runs_own():
    """The batched trainer differentiates the sum of the runs' losses: each run's gradient is that
    of its own loss because no weight is shared."""
    factory, shape = CASES["digits-like"]
    models, params = models_and_params(factory)
    stack = LayerStack(models[0], channels_last=True)
    x, y = torch.randn(N, 6, *shape), torch.randint(0, 3, (N, 6))
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    losses = torch.stack([F.cross_entropy(o, t) for o, t in zip(stack.forward(leaves, x), y)])
    grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
    for i, m in enumerate(models):
        F.cross_entropy(m(x[i]), y[i]).backward()
        for g, (k, p) in zip(grads, m.named_parameters()):
            torch.testing.assert_close(g[i], p.grad, rtol=1e-4, atol=1e-7, msg=k)
