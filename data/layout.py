"""Where MNIST and CIFAR-10 come from and how they lie on disk: the one home of that layout.

``download_data.py`` writes this layout, ``load_data.py`` reads it and ``bnn`` asks it for names,
image shapes and class counts. It imports only the standard library, so importing it (as
``bnn.config`` does) loads no numpy, requests or pooch.

Layout under the data directory (default: this ``data/`` folder, or ``$BNN_DATA_DIR``)::

    mnist/train-images-idx3-ubyte.gz   mnist/train-labels-idx1-ubyte.gz
    mnist/t10k-images-idx3-ubyte.gz    mnist/t10k-labels-idx1-ubyte.gz
    cifar10/cifar-10-python.tar.gz
    cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}

A mirror (``--mirror BASE_URL`` or ``$BNN_DATA_MIRROR``) serves the same relative paths:
``BASE_URL/mnist/<file>`` and ``BASE_URL/cifar10/cifar-10-python.tar.gz``.
"""

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "BNN_DATA_DIR"
MIRROR_ENV = "BNN_DATA_MIRROR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent

NUM_CLASSES = 10
#: Shape of one image as the loader returns it (height, width, channels), by data set.
IMAGE_SHAPES = {"MNIST": (28, 28, 1), "cifar-10": (32, 32, 3)}


@dataclass(frozen=True)
class DataSetSpec:
    """Where a data set comes from and where it lives under the data directory.

    Attributes
    ----------
    name : str
        Canonical spelling, as accepted by ``--data_set`` (case-insensitively).
    subdir : str
        Folder under the data directory (and under a mirror) holding the downloaded files.
    md5s : dict of str to str
        The registry: published md5 of each downloaded file, by file name.
    official_urls : tuple of str
        Base URLs tried in order when no mirror is given; a file's URL is ``base + name``.
    archive : str or None
        The downloaded file that is unpacked, or None if nothing is.
    extract_dir : str or None
        Folder the archive unpacks to (inside ``subdir``), or None if nothing is extracted.
    extracted_files : tuple of str
        Files that must exist in ``extract_dir`` after extraction.
    """

    name: str
    subdir: str
    md5s: dict
    official_urls: tuple
    archive: str = None
    extract_dir: str = None
    extracted_files: tuple = ()


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BATCHES_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

DATA_SETS = {
    "MNIST": DataSetSpec(
        name="MNIST",
        subdir="mnist",
        md5s={
            MNIST_FILES["train_images"]: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            MNIST_FILES["train_labels"]: "d53e105ee54ea40749a09fcbcd1e9432",
            MNIST_FILES["test_images"]: "9fb629c4189551a2d022fa330f9573f3",
            MNIST_FILES["test_labels"]: "ec29112dd5afa0611ce80d1b7f02629c",
        },
        # yann.lecun.com often refuses downloads; it is only a fallback.
        official_urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                       "http://yann.lecun.com/exdb/mnist/"),
    ),
    "cifar-10": DataSetSpec(
        name="cifar-10",
        subdir="cifar10",
        md5s={CIFAR10_ARCHIVE: "c58f30108f718f92721af3b95e74349a"},
        official_urls=("https://www.cs.toronto.edu/~kriz/",),
        archive=CIFAR10_ARCHIVE,
        extract_dir=CIFAR10_BATCHES_DIR,
        extracted_files=CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH, "batches.meta"),
    ),
}


def canonical_data_set(data_set):
    """The canonical name (``'MNIST'`` or ``'cifar-10'``) of ``data_set``, any case.

    Raises
    ------
    ValueError
        If ``data_set`` is not a known data set; the message names the valid choices.
    """
    key = str(data_set).strip().lower()
    for name in DATA_SETS:
        if key in (name.lower(), name.lower().replace("-", "")):
            return name
    raise ValueError(f"unknown data set {data_set!r}: choose one of {', '.join(DATA_SETS)}")


def resolve_data_dir(data_dir=None):
    """The data directory: ``data_dir`` if given, else ``$BNN_DATA_DIR``, else this folder."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser().resolve()


def data_set_dir(data_set, data_dir=None):
    """The folder holding ``data_set``'s files, e.g. ``<data_dir>/mnist``."""
    return resolve_data_dir(data_dir) / DATA_SETS[canonical_data_set(data_set)].subdir


def download_command(data_set, data_dir=None):
    """The shell command (run from the repository root) that downloads ``data_set``."""
    command = f"python data/download_data.py --data_set {canonical_data_set(data_set)}"
    if data_dir is not None and resolve_data_dir(data_dir) != resolve_data_dir():
        command += f" --data_dir {resolve_data_dir(data_dir)}"
    return command
