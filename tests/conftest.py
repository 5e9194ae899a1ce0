"""Shared pytest fixtures, and helpers the test modules import (``from conftest import run``)."""

import os
import tempfile
from pathlib import Path

import pytest

from fake_data import write_cifar10, write_mnist

REPO = Path(__file__).resolve().parents[1]
# --jit_compile auto remembers its measurements in the user's cache directory: tests (and the
# programs they start, which inherit the environment) keep theirs apart.
os.environ.setdefault("BNN_CACHE_DIR", tempfile.mkdtemp(prefix="bnn-test-cache-"))
# A tiny binary MLP (784-100-70-10) for tiny_networks.tiny_network: sizes that are not
# multiples of 64, so packed words have padding bits.
MLP = dict(data_set="MNIST", conv=[], fc=[100, 70])


def run(argv, data_dir, run_dir):
    """``run_bnn.py ARGV --data_dir DATA_DIR --run_dir RUN_DIR`` in this process; its exit status."""
    import run_bnn

    return run_bnn.main([*argv, "--data_dir", str(data_dir), "--run_dir", str(run_dir)])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny MNIST (200 training, 50 test images) shared by the tests of one module that train
    on it; a module that needs other data defines its own ``data_dir``."""
    folder = tmp_path_factory.mktemp("data")
    write_mnist(folder, n_train=200, n_test=50, seed=0)
    return folder


@pytest.fixture
def tiny_data_dir(tmp_path):
    """A data directory holding a tiny MNIST and a tiny CIFAR-10, as download_data.py leaves them.

    Layout::

        mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   200 train / 50 test images
        cifar10/cifar-10-python.tar.gz
        cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
                                                                 5 x 20 train / 20 test images

    Pass it as ``data_dir`` to ``data.load_data.load_data`` (or ``--data_dir``). Images are
    learnable (one bright square per class); the written uint8 arrays are in
    ``tests/fake_data.py`` via ``write_mnist`` / ``write_cifar10`` if a test needs them.
    """
    write_mnist(tmp_path, n_train=200, n_test=50, seed=0)
    write_cifar10(tmp_path, n_per_batch=20, n_test=20, seed=0)
    return tmp_path
