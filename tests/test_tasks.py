"""Tasks: the offline tasks, the torchvision tasks on tiny files in the real on-disk formats,
user tasks from tensors, and the data errors of issue 5 (missing, corrupt, bad --data-root)."""
from __future__ import annotations

from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import helpers_data as hd
from envs import DatasetUnavailableError, Task, make_task
from envs.tasks import digits, regression2d

# ----------------------------------------------------------------------------- offline tasks


def test_digits_split_scaling_and_model():
    task = digits()
    assert task.x_train.shape == (1437, 1, 8, 8) and task.x_test.shape == (360, 1, 8, 8)
    assert task.x_train.dtype == torch.float32 and task.y_train.dtype == torch.int64
    assert 0.0 <= task.x_train.min() and task.x_train.max() <= 1.0
    assert set(task.y_train.unique().tolist()) == set(range(10))
    assert task.batch_size == 50 and task.classification
    # the split is fixed (seed 0): building it twice gives the same tensors
    assert torch.equal(task.x_test, digits().x_test)
    model = task.model_factory()
    assert model(task.x_train[:3]).shape == (3, 10)


def test_regression2d_is_a_noisy_two_weight_regression():
    task = regression2d()
    assert task.x_train.shape == (1000, 2) and task.y_train.shape == (1000, 1)
    assert not task.classification and task.loss_fn is F.mse_loss
    w_star = torch.tensor(task.meta["w_star"])
    residual = task.y_train - task.x_train @ w_star.unsqueeze(1)
    assert 0.8 < residual.std() < 1.2  # noise 1.0 around the true weights
    assert sum(p.numel() for p in task.model_factory().parameters()) == 2


def test_make_task_unknown_name_and_passthrough():
    with pytest.raises(ValueError, match="unknown task 'nope'.*digits"):
        make_task("nope")
    task = regression2d(n_train=20, n_test=5)
    assert make_task(task) is task


# ----------------------------------------------------------------------------- user tasks


def _user_task(n_train=64, n_test=16, n_in=5, n_classes=3, batch_size=16):
    g = torch.Generator().manual_seed(1)

    def mlp():
        return nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, n_classes))

    return Task.from_tensors(torch.randn(n_train, n_in, generator=g),
                             torch.randint(0, n_classes, (n_train,), generator=g),
                             torch.randn(n_test, n_in, generator=g),
                             torch.randint(0, n_classes, (n_test,), generator=g),
                             model_factory=mlp, loss_fn=F.cross_entropy, batch_size=batch_size,
                             name="user-mlp")


def test_from_tensors_infers_classification_and_validates():
    task = _user_task()
    assert task.classification and task.name == "user-mlp" and task.batch_size == 16
    x = torch.randn(10, 2)
    reg = Task.from_tensors(x, torch.randn(10, 1), x, torch.randn(10, 1),
                            model_factory=lambda: nn.Linear(2, 1), loss_fn=F.mse_loss, batch_size=4)
    assert not reg.classification
    # numpy inputs are accepted too
    np_task = Task.from_tensors(np.zeros((6, 2), np.float32), np.zeros(6, np.int64),
                                np.zeros((3, 2), np.float32), np.zeros(3, np.int64),
                                model_factory=lambda: nn.Linear(2, 2), batch_size=100)
    assert isinstance(np_task.x_train, torch.Tensor) and np_task.batch_size == 6  # capped at N
    with pytest.raises(ValueError, match="differ in length"):
        Task.from_tensors(x, torch.zeros(9, dtype=torch.long), x, torch.zeros(10, dtype=torch.long),
                          model_factory=lambda: nn.Linear(2, 2))
    with pytest.raises(ValueError, match="empty"):
        Task.from_tensors(x[:0], torch.zeros(0), x, torch.zeros(10), model_factory=lambda: nn.Linear(2, 1))
    with pytest.raises(ValueError, match="batch_size"):
        Task.from_tensors(x, torch.zeros(10), x, torch.zeros(10), model_factory=lambda: nn.Linear(2, 1),
                          batch_size=0)


def test_from_tensors_refuses_model_data_loss_mismatches_clearly():
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match=r"do not fit the data \(x_train \(10, 5\)"):
        Task.from_tensors(x, y, x, y, model_factory=lambda: nn.Linear(4, 3))  # wrong input width
    with pytest.raises(ValueError, match="do not fit"):  # float targets of the wrong shape for CE
        Task.from_tensors(x, torch.randn(10), x, torch.randn(10), model_factory=lambda: nn.Linear(5, 3),
                          loss_fn=F.cross_entropy)
    with pytest.raises(ValueError, match="scalar"):
        Task.from_tensors(x, y, x, y, model_factory=lambda: nn.Linear(5, 3),
                          loss_fn=lambda out, t: F.cross_entropy(out, t, reduction="none"))
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    Task.from_tensors(x, y, x, y, model_factory=lambda: nn.Linear(5, 3))  # the check's init...
    assert torch.equal(torch.rand(2), expected)  # ...leaves the global RNG alone


def test_user_task_passes_both_env_checkers():
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from envs import LearningRateEnv

    for per_group in (False, True):
        env = LearningRateEnv(task=_user_task(), device="cpu", episode_length=5, per_group=per_group)
        assert env.action_space.shape == ((2,) if per_group else (1,))
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
        obs, _ = env.reset(seed=0)
        for _ in range(5):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert truncated and not terminated


# ----------------------------------------------------------------------------- MNIST family


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_loads_tiny_idx_files_through_torchvision(tmp_path, name, folder):
    written = hd.write_mnist(tmp_path, folder=folder, n_train=60, n_test=20)
    task = make_task(name, data_root=tmp_path, download=False)
    assert task.name == name and task.batch_size == 50
    assert task.x_train.shape == (60, 1, 28, 28) and task.x_test.shape == (20, 1, 28, 28)
    expected = torch.from_numpy(written["x_train"]).float().div(255.0).unsqueeze(1)
    torch.testing.assert_close(task.x_train, expected, rtol=0, atol=0)
    assert task.y_train.tolist() == written["y_train"].tolist()
    assert task.y_test.tolist() == written["y_test"].tolist()
    assert task.y_train.dtype == torch.int64
    assert task.model_factory()(task.x_train[:2]).shape == (2, 10)  # the paper's CNN fits


def test_cifar10_loads_tiny_pickles_through_torchvision(tmp_path, monkeypatch):
    written = hd.write_cifar10(tmp_path, n_per_batch=8, n_test=10)
    hd.trust_tiny_cifar10(monkeypatch, tmp_path)
    task = make_task("cifar10", data_root=tmp_path, download=False)
    assert task.x_train.shape == (40, 3, 32, 32) and task.x_test.shape == (10, 3, 32, 32)
    raw = torch.from_numpy(written["x_train"]).float().div(255.0).reshape(40, 3, 32, 32)
    mean = raw.mean(dim=0, keepdim=True)
    torch.testing.assert_close(task.x_train, raw - mean)  # per-pixel training mean subtracted
    raw_test = torch.from_numpy(written["x_test"]).float().div(255.0).reshape(10, 3, 32, 32)
    torch.testing.assert_close(task.x_test, raw_test - mean)  # the *training* mean
    assert task.y_train.tolist() == written["y_train"].tolist()
    assert task.model_factory()(task.x_train[:2]).shape == (2, 10)


def test_cifar10_md5_protection_stays_on_for_real_loading(tmp_path):
    """Without the test's checksum table, torchvision refuses the tiny files (they are not the
    genuine ones) and the error says so and what to do."""
    hd.write_cifar10(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="corrupt") as err:
        make_task("cifar10", data_root=tmp_path, download=False)
    assert "--data-root" in str(err.value) and "download again" in str(err.value)


# ----------------------------------------------------------------------------- data errors


@pytest.mark.parametrize("name,folder,files", [
    ("mnist", "MNIST/raw", hd.MNIST_FILES),
    ("fashion-mnist", "FashionMNIST/raw", hd.MNIST_FILES),
    ("cifar10", "cifar-10-batches-py", hd.CIFAR_FILES),
])
def test_missing_dataset_without_download_names_files_and_flag(tmp_path, name, folder, files):
    with pytest.raises(DatasetUnavailableError) as err:
        make_task(name, data_root=tmp_path, download=False)
    msg = str(err.value)
    assert "--data-root" in msg and folder in msg and "disabled" in msg
    for f in files:
        assert f in msg


def test_partly_missing_mnist_names_only_the_missing_file(tmp_path):
    hd.write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetUnavailableError, match="t10k-labels-idx1-ubyte") as err:
        make_task("mnist", data_root=tmp_path, download=False)
    assert "train-images-idx3-ubyte" not in str(err.value)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_failed_download_gives_clear_error(tmp_path, monkeypatch, name):
    """download=True with no network: the (monkeypatched) download fails like a URLError would."""
    import torchvision.datasets.cifar
    import torchvision.datasets.mnist

    def no_network(*args, **kwargs):
        raise URLError("no network in this test")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    with pytest.raises(DatasetUnavailableError) as err:
        make_task(name, data_root=tmp_path, download=True)
    msg = str(err.value)
    assert "Downloading failed" in msg and "--data-root" in msg and "missing files" in msg


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_mnist_file_is_reported(tmp_path, monkeypatch, damage, download):
    import torchvision.datasets.mnist

    def no_network(*args, **kwargs):
        raise URLError("no network in this test")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    hd.write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    if damage == "truncate":
        hd.truncate(path, 0.5)
    elif damage == "garbage":
        path.write_bytes(b"<html>404 not found</html>" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(DatasetUnavailableError) as err:
        make_task("mnist", data_root=tmp_path, download=download)
    msg = str(err.value)
    assert "corrupt" in msg and str(tmp_path / "MNIST" / "raw") in msg
    assert "delete them and download again" in msg and "--data-root" in msg
    assert "Downloading" not in msg  # the files were there: no download was tried or needed


def test_mnist_with_mismatched_labels_is_reported(tmp_path):
    """Images and labels of different lengths (e.g. files from two downloads) are a data error."""
    hd.write_mnist(tmp_path, n_train=60)
    hd.write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(59, np.uint8))
    with pytest.raises(DatasetUnavailableError, match="(?s)60 images.*59 labels.*download again"):
        make_task("mnist", data_root=tmp_path, download=False)


def test_mnist_with_wrong_image_size_is_reported(tmp_path):
    hd.write_mnist(tmp_path, image_size=8)
    with pytest.raises(DatasetUnavailableError, match=r"(?s)\(8, 8\).*\(28, 28\)"):
        make_task("mnist", data_root=tmp_path, download=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cifar_pickle_is_reported(tmp_path, monkeypatch, damage):
    hd.write_cifar10(tmp_path)
    hd.trust_tiny_cifar10(monkeypatch, tmp_path)  # the md5s of the intact files are expected
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if damage == "truncate":
        hd.truncate(path, 0.5)
    else:
        path.write_bytes(b"\x80\x04garbage" * 100)
    with pytest.raises(DatasetUnavailableError) as err:
        make_task("cifar10", data_root=tmp_path, download=False)
    msg = str(err.value)
    assert "corrupt" in msg and "cifar-10-batches-py" in msg and "download again" in msg


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_data_root_is_reported(tmp_path, kind):
    root = tmp_path / "does-not-exist"
    if kind == "file":
        root.write_text("not a directory")
    for name, folder in [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py")]:
        with pytest.raises(DatasetUnavailableError) as err:
            make_task(name, data_root=root, download=False)
        msg = str(err.value)
        assert str(root) in msg and "--data-root" in msg and "does not exist" in msg and folder in msg


def test_data_errors_reach_the_env_and_gym_make(tmp_path):
    import gymnasium as gym

    import envs  # noqa: F401  (registration)

    with pytest.raises(DatasetUnavailableError, match="--data-root"):
        gym.make("envs:LearningRate-MNIST-v0", data_root=str(tmp_path), download=False)
