"""PrimaryTrainer: batches, updates, evaluation, resets, optimizers by name, devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from envs import OPTIMIZERS, PrimaryTrainer, build_optimizer, resolve_device
from envs.primary import layer_groups


def state(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_update_is_one_sgd_step_at_the_given_rate():
    tr = PrimaryTrainer("regression2d", device="cpu", seed=0)
    idx = tr.next_batch()
    w = tr.model.weight.detach().clone()
    x, y = tr.x_train[idx], tr.y_train[idx]
    loss = tr.loss_and_grad(idx)
    # the gradient of mean squared error, written out
    residual = x @ w.T - y
    grad = 2.0 * (residual * x).mean(dim=0, keepdim=True)
    assert loss.item() == pytest.approx(residual.pow(2).mean().item(), rel=1e-6)
    torch.testing.assert_close(tr.model.weight.grad, grad)
    tr.update(0.3)
    torch.testing.assert_close(tr.model.weight.detach(), w - 0.3 * grad)
    assert tr.batch_loss(idx).item() == pytest.approx(F.mse_loss(x @ (w - 0.3 * grad).T, y).item(), rel=1e-6)


def test_next_batch_covers_each_epoch_and_is_seeded():
    a, b, c = (PrimaryTrainer("regression2d", device="cpu", seed=s) for s in (3, 3, 4))
    epoch = torch.cat([a.next_batch() for _ in range(100)])
    assert sorted(epoch.tolist()) == list(range(1000))
    assert torch.equal(epoch, torch.cat([b.next_batch() for _ in range(100)]))
    assert not torch.equal(epoch, torch.cat([c.next_batch() for _ in range(100)]))
    # a batch never straddles two epochs: the tail that does not fill a batch is dropped
    d = PrimaryTrainer("digits", device="cpu", seed=0)  # 1437 examples, batch 50
    batches = [d.next_batch() for _ in range(29)]
    assert all(len(i) == 50 for i in batches) and len(set(torch.cat(batches[:28]).tolist())) == 1400


def test_reset_restores_w0_and_fresh_optimizer_state():
    tr = PrimaryTrainer("digits", optimizer="momentum", device="cpu", seed=1)
    w0 = state(tr)
    for _ in range(3):
        tr.loss_and_grad(tr.next_batch())
        tr.update(0.1)
    assert tr.optimizer.state  # momentum buffers exist
    tr.reset()
    assert all(torch.equal(w0[k], v) for k, v in state(tr).items())
    assert not tr.optimizer.state
    tr.reset(new_w0=True)
    assert not torch.equal(state(tr)["0.weight"], w0["0.weight"])
    tr.seed(1)  # re-seeding gives the first w0 again
    assert all(torch.equal(w0[k], v) for k, v in state(tr).items())


def test_model_construction_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PrimaryTrainer("digits", device="cpu", seed=5).reset(new_w0=True)
    assert torch.equal(torch.rand(3), expected)


def test_evaluate_matches_a_direct_computation():
    tr = PrimaryTrainer("digits", device="cpu", seed=0, validation_size=100)
    res = tr.evaluate(("train", "test", "val"), chunk=128)
    with torch.no_grad():
        for split, (x, y) in {"train": (tr.x_train, tr.y_train), "test": (tr.x_test, tr.y_test),
                              "val": (tr.x_val, tr.y_val)}.items():
            out = tr.model(x)
            assert res[f"{split}_loss"] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
            assert res[f"{split}_accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item())
    assert set(res) == {f"{s}_{m}" for s in ("train", "test", "val") for m in ("loss", "accuracy")}


def test_validation_split_is_held_out_of_training():
    tr = PrimaryTrainer("regression2d", device="cpu", validation_size=200)
    assert len(tr.x_val) == 200 and len(tr.x_train) == 800
    train_rows = {tuple(r) for r in tr.x_train.tolist()}
    assert not any(tuple(r) in train_rows for r in tr.x_val.tolist())
    assert torch.equal(tr.validation_batch(50), torch.arange(50))
    rotating = tr.validation_batch(50, rotating=True)
    assert len(set(rotating.tolist())) == 50 and max(rotating.tolist()) < 200
    with pytest.raises(ValueError, match="validation_size"):
        PrimaryTrainer("regression2d", device="cpu", validation_size=1000)
    with pytest.raises(ValueError, match="no validation split"):
        PrimaryTrainer("regression2d", device="cpu").validation_batch(5)


def test_per_group_groups_and_set_lr():
    tr = PrimaryTrainer("digits", device="cpu", per_group=True)
    assert tr.n_groups == 4 == len(layer_groups(tr.model))
    tr.set_lr([0.1, 0.2, 0.3, 0.4])
    assert [g["lr"] for g in tr.optimizer.param_groups] == [0.1, 0.2, 0.3, 0.4]
    tr.set_lr(0.05)
    assert [g["lr"] for g in tr.optimizer.param_groups] == [0.05] * 4
    for rate in (np.float32(0.25), np.float64(0.25), torch.tensor(0.25)):  # numeric scalars of any kind
        tr.set_lr(rate)
        assert [g["lr"] for g in tr.optimizer.param_groups] == [0.25] * 4
    with pytest.raises(ValueError, match="3 learning rates for 4"):
        tr.set_lr([0.1, 0.2, 0.3])


@pytest.mark.parametrize("name", list(OPTIMIZERS) + ["Adamax", "ASGD", "nadam"])
def test_every_named_optimizer_builds_and_steps(name):
    tr = PrimaryTrainer("regression2d", optimizer=name, device="cpu")
    w = state(tr)["weight"]
    tr.loss_and_grad(tr.next_batch())
    tr.update(0.01)
    assert not torch.equal(state(tr)["weight"], w) or name.startswith(("prodigy", "dadapt"))
    assert tr.optimizer.param_groups[0]["lr"] == 0.01


def test_unknown_optimizer_and_devices():
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        build_optimizer("nope", [{"params": [torch.zeros(1, requires_grad=True)]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("Optimizer", [{"params": [torch.zeros(1, requires_grad=True)]}], lr=0.1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["schedulefree-sgd", "schedulefree-adamw"])
def test_schedule_free_batch_loss_is_measured_where_the_gradient_is(name):
    """batch_loss and loss_and_grad see the same weights, so that the env's before/after losses
    compare one sequence of iterates; evaluate() uses the averaged (eval-mode) point."""
    tr = PrimaryTrainer("regression2d", optimizer=name, device="cpu", seed=0)
    for _ in range(20):
        tr.loss_and_grad(tr.next_batch())
        tr.update(0.5 if name.endswith("sgd") else 0.05)
    idx = tr.next_batch()
    assert tr.batch_loss(idx).item() == tr.loss_and_grad(idx).item()
    # the averaged point differs from the gradient point after training, and evaluate uses it
    train_point = tr.evaluate(("train",))  # computed in eval mode
    with torch.no_grad():
        at_y = F.mse_loss(tr.model(tr.x_train), tr.y_train).item()
    assert train_point["train_loss"] != pytest.approx(at_y, rel=1e-6)


class ViewsItsConvolution(torch.nn.Module):
    """``.view`` of a convolution's output: fails in channels-last layout."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Linear(2 * 8 * 8, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(h.shape[0], -1))


def conv_task(model_factory):
    from envs import Task

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 8, 8, generator=g), torch.randint(0, 10, (60,), generator=g)
    return Task.from_tensors(x[:40], y[:40], x[40:], y[40:], batch_size=10, model_factory=model_factory)


def test_convolutional_models_train_channels_last_on_the_cpu_with_the_same_results():
    """digits' CNN is kept channels-last (faster pooling on the CPU); its losses, gradients and
    updates equal the default layout's to float rounding."""
    tr = PrimaryTrainer("digits", device="cpu", seed=2)
    assert tr.channels_last and tr.model[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert not PrimaryTrainer("regression2d", device="cpu").channels_last  # no convolution
    ref = PrimaryTrainer("digits", device="cpu", seed=2)
    ref.model = ref.model.to(memory_format=torch.contiguous_format)
    ref.reset()
    assert not ref.model[3].weight.is_contiguous(memory_format=torch.channels_last)
    for _ in range(5):
        idx = tr.next_batch()
        assert torch.equal(idx, ref.next_batch())
        torch.testing.assert_close(tr.loss_and_grad(idx), ref.loss_and_grad(idx), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tr.flat_grad(), ref.flat_grad(), rtol=1e-4, atol=1e-6)
        tr.update(0.1), ref.update(0.1)
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(tr.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    got, want = tr.evaluate(), ref.evaluate()
    assert got == pytest.approx(want, rel=1e-5)
    tr.reset(new_w0=True)  # a fresh w0 is loaded into the channels-last model
    assert tr.model[3].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_model_that_cannot_run_channels_last_keeps_the_default_layout():
    tr = PrimaryTrainer(conv_task(ViewsItsConvolution), device="cpu")
    assert tr.channels_last is False
    tr.loss_and_grad(tr.next_batch())  # and trains
    tr.update(0.1)


def test_the_layout_check_leaves_batchnorm_statistics_alone():
    factory = lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                                          torch.nn.Linear(2 * 6 * 6, 10))
    tr = PrimaryTrainer(conv_task(factory), device="cpu")
    assert tr.channels_last
    assert torch.equal(tr.model[1].running_mean, torch.zeros(2)) and int(tr.model[1].num_batches_tracked) == 0
