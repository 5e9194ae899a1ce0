"""Load MNIST or CIFAR-10, as left by ``download_data.py``, into float arrays in [-1, 1].

Only numpy and the standard library are used (no TensorFlow), and the CIFAR-10 pickles are
read with an unpickler that can build numpy arrays and nothing else. Record counts are read
from the files, so subsets of the official files load as well as the full ones.

Example (from the repository root)::

    from data.load_data import load_data
    d = load_data("MNIST")          # d.x_train: float32 (n, 28, 28, 1); d.y_train: int64 (n,)
"""

import codecs
import gzip
import pickle
import zlib
from typing import NamedTuple

import numpy as np

from .layout import (CIFAR10_BATCHES_DIR, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES,
                     MNIST_FILES, NUM_CLASSES, canonical_data_set, data_set_dir, download_command)

_IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803 / 0x0801: uint8, 3 or 1 dims
_CIFAR_ROW = 3 * 32 * 32


class DataError(Exception):
    """A data set that is missing, corrupt or asked for wrongly; the message says what to do.

    ``path`` and ``reason`` name the damaged file and what is wrong with it (None otherwise).
    """

    def __init__(self, message, path=None, reason=None):
        super().__init__(message)
        self.path, self.reason = path, reason


class Dataset(NamedTuple):
    """Train / validation / test split of a data set.

    Images are float32 NHWC, ``pixel / 127.5 - 1`` in [-1, 1]; labels are int64 in 0..9.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(data_set, data_dir=None, val_fraction=0.1, seed=0):
    """Load ``data_set`` and split a validation set off its training files.

    Parameters
    ----------
    data_set : str
        ``'MNIST'`` or ``'cifar-10'`` (any case).
    data_dir : str or Path or None
        Data directory holding ``mnist/`` or ``cifar10/`` (default: ``$BNN_DATA_DIR``, else
        the ``data/`` folder of this repository).
    val_fraction : float
        Fraction of the training files held out for validation, in [0, 1); 0 gives empty
        validation arrays of the right shape.
    seed : int
        Seed of the random choice of validation images.

    Returns
    -------
    Dataset
        ``x_*`` : float32 array, shape (n, 28, 28, 1) for MNIST or (n, 32, 32, 3) for CIFAR-10,
        values ``pixel / 127.5 - 1`` (0 -> -1, 255 -> 1).
        ``y_*`` : int64 array, shape (n,), class indices in 0..9.

    Raises
    ------
    DataError
        Unknown data set, bad ``val_fraction``, data not downloaded (the message gives the
        download command), or a corrupt file.
    """
    try:
        name = canonical_data_set(data_set)
    except ValueError as e:
        raise DataError(str(e)) from None
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    reader = read_mnist if name == "MNIST" else read_cifar10
    x_train, y_train, x_test, y_test = reader(data_dir)
    train, val = split_indices(len(y_train), val_fraction, seed)
    return Dataset(scale_images(x_train[train]), y_train[train],
                   scale_images(x_train[val]), y_train[val],
                   scale_images(x_test), y_test)


def split_indices(n, val_fraction, seed):
    """Seeded random split of ``range(n)`` into sorted (train, val) index arrays.

    ``round(val_fraction * n)`` indices go to validation.
    """
    n_val = int(round(val_fraction * n))
    if n_val >= n > 0:
        raise DataError(f"val_fraction={val_fraction} leaves none of the {n} training images "
                        "for training; use a smaller val_fraction")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def scale_images(x):
    """uint8 images to float32 ``x / 127.5 - 1``, so 0 -> -1.0 and 255 -> 1.0 exactly."""
    out = x.astype(np.float32)
    out /= 127.5
    out -= 1.0
    return out


def _missing(data_set, data_dir, folder, what):
    return DataError(f"{data_set} is not downloaded in {folder} ({what} is missing): run  "
                     f"{download_command(data_set, data_dir)}")


def _corrupt(path, data_set, data_dir, why):
    command = download_command(data_set, data_dir)
    return DataError(f"{path} is corrupt or truncated ({why}): run  {command} --remove  then  "
                     f"{command}", path=path, reason=why)


# --- MNIST ---------------------------------------------------------------------------------

def read_idx(path, kind, data_dir=None):
    """Read a gzip'd idx file of uint8 values.

    Parameters
    ----------
    path : Path
        A ``*-idx3-ubyte.gz`` (``kind='images'``, magic 2051) or ``*-idx1-ubyte.gz``
        (``kind='labels'``, magic 2049) file.

    Returns
    -------
    array of uint8, shape given by the header, e.g. (n, 28, 28) or (n,)

    Raises
    ------
    DataError
        Wrong magic number, or a payload whose length differs from the header's dimensions.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, "MNIST", data_dir, f"cannot decompress: {e}") from None
    if len(raw) < 4:
        raise _corrupt(path, "MNIST", data_dir, f"only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise _corrupt(path, "MNIST", data_dir,
                       f"magic number {magic}, expected {_IDX_MAGIC[kind]} for {kind}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "MNIST", data_dir, "header cut short")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise _corrupt(path, "MNIST", data_dir, f"header {shape} needs {expected} data bytes, "
                                                f"file has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_mnist(data_dir=None):
    """The MNIST idx files as ``(x_train, y_train, x_test, y_test)``.

    Returns
    -------
    x_train, x_test : array of uint8, shape (n, 28, 28, 1)
    y_train, y_test : array of int64, shape (n,)
    """
    folder = data_set_dir("MNIST", data_dir)
    for name in MNIST_FILES.values():
        if not (folder / name).is_file():
            raise _missing("MNIST", data_dir, folder, name)
    arrays = []
    for split in ("train", "test"):
        images_path = folder / MNIST_FILES[f"{split}_images"]
        labels_path = folder / MNIST_FILES[f"{split}_labels"]
        images = read_idx(images_path, "images", data_dir)
        labels = read_idx(labels_path, "labels", data_dir)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise _corrupt(images_path, "MNIST", data_dir,
                           f"images of shape {images.shape[1:]}, expected (28, 28)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise _corrupt(labels_path, "MNIST", data_dir, f"{labels.shape} labels for "
                           f"{len(images)} images in {images_path.name}")
        _check_labels(labels, labels_path, "MNIST", data_dir)
        arrays += [images[..., None], labels.astype(np.int64)]
    return tuple(arrays)


def _check_labels(labels, path, data_set, data_dir):
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise _corrupt(path, data_set, data_dir,
                       f"labels outside 0..{NUM_CLASSES - 1}: {labels.min()}..{labels.max()}")


# --- CIFAR-10 ------------------------------------------------------------------------------

def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 pickles of bytes use it, and only that."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# What the official (Python 2) and re-pickled (Python 3, numpy 1 or 2) batches refer to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses any other global."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name} from {self.path}: a CIFAR-10 "
                            "batch only holds arrays; delete this file, it is not from the "
                            "official archive", path=self.path,
                            reason=f"refers to {module}.{name}") from None


def read_cifar_batch(path, data_dir=None):
    """One CIFAR-10 python batch as ``(data, labels)``.

    Returns
    -------
    data : array of uint8, shape (n, 3072)
        Each row the red, green and blue 32x32 planes, row-major.
    labels : array of int64, shape (n,)
    """
    try:
        with open(path, "rb") as f:
            unpickler = _ArrayUnpickler(f, encoding="bytes")
            unpickler.path = path
            batch = unpickler.load()
    except DataError:
        raise
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean "corrupt"
        raise _corrupt(path, "cifar-10", data_dir, f"cannot unpickle: {e}") from None
    if not isinstance(batch, dict):
        raise _corrupt(path, "cifar-10", data_dir, f"holds a {type(batch).__name__}, not a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise _corrupt(path, "cifar-10", data_dir, "no 'data' array or no 'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        raise _corrupt(path, "cifar-10", data_dir, f"data of shape {data.shape} and dtype "
                                                   f"{data.dtype}, expected (n, 3072) uint8")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise _corrupt(path, "cifar-10", data_dir,
                       f"{labels.size} labels for {len(data)} images")
    _check_labels(labels, path, "cifar-10", data_dir)
    return data, labels


def read_cifar10(data_dir=None):
    """The CIFAR-10 python batches as ``(x_train, y_train, x_test, y_test)``.

    Returns
    -------
    x_train, x_test : array of uint8, shape (n, 32, 32, 3)
        NHWC: each 3072-byte row (R, G, B planes) reshaped to (3, 32, 32), then transposed.
    y_train, y_test : array of int64, shape (n,)
    """
    folder = data_set_dir("cifar-10", data_dir) / CIFAR10_BATCHES_DIR
    names = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)
    for name in names:
        if not (folder / name).is_file():
            raise _missing("cifar-10", data_dir, folder.parent, f"{CIFAR10_BATCHES_DIR}/{name}")
    batches = [read_cifar_batch(folder / name, data_dir) for name in names]
    train = batches[:-1]
    x_train = np.concatenate([data for data, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    x_test, y_test = batches[-1]
    return _to_nhwc(x_train), y_train, _to_nhwc(x_test), y_test


def _to_nhwc(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# --- read-through check --------------------------------------------------------------------

def find_corrupt(data_set, data_dir=None):
    """Read every file of ``data_set`` that is present, as :func:`load_data` does; list failures.

    A file whose md5 could not be verified may still be truncated or damaged: this checks what
    can be checked file by file (gzip stream complete, idx header against payload, the pickles'
    arrays, shapes and labels). Missing files are not reported.

    Returns
    -------
    list of (Path, str)
        Each file that cannot be read and why, in layout order.
    """
    name = canonical_data_set(data_set)
    folder = data_set_dir(name, data_dir)
    if name == "MNIST":
        checks = [(folder / file, lambda path, d, kind=key.split("_")[1]: read_idx(path, kind, d))
                  for key, file in MNIST_FILES.items()]
    else:
        checks = [(folder / CIFAR10_BATCHES_DIR / file, read_cifar_batch)
                  for file in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)]
    corrupt = []
    for path, read in checks:
        if path.is_file():
            try:
                read(path, data_dir)
            except DataError as e:
                corrupt.append((path, e.reason or str(e)))
    return corrupt
