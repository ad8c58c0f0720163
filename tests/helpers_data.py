"""Writers of tiny dataset files in the real on-disk formats, for tests.

- MNIST / Fashion-MNIST: the four IDX ("ubyte") files under ``<root>/MNIST/raw/`` (or
  ``<root>/FashionMNIST/raw/``), uncompressed, exactly where torchvision's ``MNIST(root,
  download=False)`` reads them. torchvision 0.29 checks only that the raw files exist (their md5s
  are those of the ``.gz`` downloads, checked at download time), so the tiny files load through
  the unmodified loader.
- CIFAR-10: pickled dicts ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` under
  ``<root>/cifar-10-batches-py/``, with the real keys (``data``: uint8 ``(N, 3072)`` in
  channel-major order, ``labels``: list of ints; ``label_names``). torchvision's ``CIFAR10``
  refuses any file whose md5 differs from the genuine download's, and a tiny file cannot have
  the genuine md5. :func:`trust_tiny_cifar10` therefore points the loader's checksum table
  (``CIFAR10.train_list`` / ``test_list`` / ``meta``) at the md5s of the files written here,
  via pytest's ``monkeypatch`` (undone after the test). Everything else - the integrity check
  itself, the unpickling, the reshaping - is torchvision's real code, and the project code in
  ``envs/tasks.py`` is untouched: real data keeps the real md5 protection (which also means
  a corrupt or tampered CIFAR pickle is refused before it is unpickled).
"""
from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
               "test_batch", "batches.meta")
CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file: magic ``0x0000 08 <ndim>``, big-endian int32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20,
                seed: int = 0, image_size: int = 28) -> dict[str, np.ndarray]:
    """Write tiny MNIST-format IDX files under ``root/folder/raw``; return the arrays written
    (``x_train`` ``(n, 28, 28)`` uint8, ``y_train`` ``(n,)`` uint8, ``x_test``, ``y_test``)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, image_size, image_size), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, image_size, image_size), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, key in zip(MNIST_FILES, ("x_train", "y_train", "x_test", "y_test")):
        write_idx(raw / name, arrays[key])
    return arrays


def write_cifar10(root: Path, n_per_batch: int = 8, n_test: int = 10,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Write tiny CIFAR-10 python-format batches under ``root/cifar-10-batches-py``; return the
    arrays written: ``x_train`` ``(5 * n_per_batch, 3072)`` uint8, ``y_train``, ``x_test``, ``y_test``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch).tolist()
        _pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                             "labels": y, "data": x,
                                             "filenames": [f"img{j}.png" for j in range(n_per_batch)]})
        xs.append(x)
        ys.extend(y)
    x_test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test).tolist()
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y_test,
                                    "data": x_test, "filenames": [f"t{j}.png" for j in range(n_test)]})
    _pickle(folder / "batches.meta", {"num_cases_per_batch": n_per_batch,
                                      "label_names": CIFAR_LABELS, "num_vis": 3072})
    return {"x_train": np.concatenate(xs), "y_train": np.array(ys),
            "x_test": x_test, "y_test": np.array(y_test)}


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def trust_tiny_cifar10(monkeypatch, root: Path) -> None:
    """Make torchvision's CIFAR10 expect the md5s of the files now under ``root`` (see module doc)."""
    from torchvision.datasets import CIFAR10

    folder = Path(root) / "cifar-10-batches-py"
    monkeypatch.setattr(CIFAR10, "train_list",
                        [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": md5(folder / "batches.meta")})


def truncate(path: Path, keep_fraction: float = 0.5) -> None:
    """Cut a file short, as an interrupted download would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep_fraction)])
