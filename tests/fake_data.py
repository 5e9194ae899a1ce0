"""Tiny MNIST and CIFAR-10 data sets in the official file formats, for tests.

The files are laid out exactly as ``data/download_data.py`` leaves them, so
``data.load_data.load_data(name, data_dir)`` reads them. Images are learnable: each class
draws a bright square at its own place over dim noise, so a tiny network can fit them.

Usage::

    from fake_data import write_mnist, write_cifar10
    raw = write_mnist(tmp_path, n_train=100, n_test=20, seed=0)
"""

import gzip
import io
import pickle
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

MNIST_SUBDIR = "mnist"
CIFAR10_SUBDIR = "cifar10"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BATCHES_DIR = "cifar-10-batches-py"
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck"]


class RawData(NamedTuple):
    """What was written: uint8 images NHWC, int64 labels, in file order."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_images(n, height, width, channels, seed):
    """``n`` uint8 images (n, height, width, channels) with labels, both in 0..255 / 0..9.

    Labels cycle through 0..9 (shuffled); class ``k`` gets a 255-valued square at a position
    of its own over noise in 0..60, and pixel (0, 0) of every image is 0.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = rng.integers(0, 61, size=(n, height, width, channels), dtype=np.uint8)
    side = height // 4
    for k in range(10):
        row, col = divmod(k, 4)
        r0, c0 = 1 + row * side, 1 + col * (width // 4 - 1)
        x[labels == k, r0:r0 + side - 1, c0:c0 + side - 1, :] = 255
    x[:, 0, 0, :] = 0
    return x, labels


def idx_bytes(array):
    """The idx encoding (uncompressed) of a uint8 array: magic 0x0800 + ndim, big-endian dims."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def write_idx(path, array):
    """Write ``array`` (uint8) as a gzip'd idx file at ``path``; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(array))
    return path


def write_mnist(data_dir, n_train=200, n_test=50, seed=0):
    """Write ``<data_dir>/mnist/`` with the four official gzip'd idx files.

    Returns
    -------
    RawData
        Images (n, 28, 28, 1) uint8 and labels as written.
    """
    x_train, y_train = make_images(n_train, 28, 28, 1, seed)
    x_test, y_test = make_images(n_test, 28, 28, 1, seed + 1)
    folder = Path(data_dir) / MNIST_SUBDIR
    write_idx(folder / "train-images-idx3-ubyte.gz", x_train[..., 0])
    write_idx(folder / "train-labels-idx1-ubyte.gz", y_train)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", x_test[..., 0])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test)
    return RawData(x_train, y_train, x_test, y_test)


def cifar_rows(images):
    """NHWC uint8 images (n, 32, 32, 3) as CIFAR rows (n, 3072): R, G, B planes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


def cifar_batch_bytes(rows, labels, batch_label="training batch 1 of 5"):
    """A pickled batch dict with bytes keys, as the official files unpickle with
    ``encoding='bytes'``."""
    batch = {b"batch_label": batch_label.encode(), b"labels": [int(v) for v in labels],
             b"data": np.asarray(rows, dtype=np.uint8)}
    return pickle.dumps(batch, protocol=2)


def cifar_archive_bytes(members):
    """A ``.tar.gz`` holding ``{name: bytes}`` under ``cifar-10-batches-py/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{CIFAR10_BATCHES_DIR}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def write_cifar10(data_dir, n_per_batch=20, n_test=None, seed=0, extract=True):
    """Write ``<data_dir>/cifar10/cifar-10-python.tar.gz`` and, if ``extract``, its
    ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.

    Returns
    -------
    RawData
        Images (n, 32, 32, 3) uint8 NHWC and labels as written (train: 5 * n_per_batch).
    """
    n_test = n_per_batch if n_test is None else n_test
    x_train, y_train = make_images(5 * n_per_batch, 32, 32, 3, seed)
    x_test, y_test = make_images(n_test, 32, 32, 3, seed + 1)
    members = {}
    for i in range(5):
        part = slice(i * n_per_batch, (i + 1) * n_per_batch)
        members[f"data_batch_{i + 1}"] = cifar_batch_bytes(
            cifar_rows(x_train[part]), y_train[part], f"training batch {i + 1} of 5")
    members["test_batch"] = cifar_batch_bytes(cifar_rows(x_test), y_test, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps(
        {b"num_cases_per_batch": n_per_batch, b"label_names": LABEL_NAMES, b"num_vis": 3072},
        protocol=2)
    folder = Path(data_dir) / CIFAR10_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CIFAR10_ARCHIVE).write_bytes(cifar_archive_bytes(members))
    if extract:
        (folder / CIFAR10_BATCHES_DIR).mkdir(exist_ok=True)
        for name, payload in members.items():
            (folder / CIFAR10_BATCHES_DIR / name).write_bytes(payload)
    return RawData(x_train, y_train, x_test, y_test)
