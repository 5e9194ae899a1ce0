"""Tests of data/load_data.py on tiny data sets written in the official file formats."""

import gzip
import os
import pickle

import numpy as np
import pytest

from data.load_data import DataError, Dataset, load_data, read_cifar10, read_mnist
from fake_data import (cifar_batch_bytes, cifar_rows, idx_bytes, write_cifar10, write_idx,
                       write_mnist)


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("BNN_DATA_DIR", raising=False)


def test_mnist_shapes_dtypes_and_split(tiny_data_dir):
    d = load_data("MNIST", tiny_data_dir, val_fraction=0.1, seed=0)
    assert isinstance(d, Dataset)
    assert d.x_train.shape == (180, 28, 28, 1) and d.x_val.shape == (20, 28, 28, 1)
    assert d.x_test.shape == (50, 28, 28, 1)
    assert d.y_train.shape == (180,) and d.y_val.shape == (20,) and d.y_test.shape == (50,)
    assert all(x.dtype == np.float32 for x in (d.x_train, d.x_val, d.x_test))
    assert all(y.dtype == np.int64 for y in (d.y_train, d.y_val, d.y_test))


def test_cifar_shapes_dtypes_and_split(tiny_data_dir):
    d = load_data("CIFAR-10", tiny_data_dir, val_fraction=0.2, seed=0)
    assert d.x_train.shape == (80, 32, 32, 3) and d.x_val.shape == (20, 32, 32, 3)
    assert d.x_test.shape == (20, 32, 32, 3)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64


@pytest.mark.parametrize("data_set", ["MNIST", "cifar-10"])
def test_values_and_labels_round_trip(tmp_path, data_set):
    writer = write_mnist if data_set == "MNIST" else write_cifar10
    raw = writer(tmp_path, seed=3)
    d = load_data(data_set, tmp_path, val_fraction=0.0)
    # val_fraction=0 keeps the file order, so everything lines up with what was written.
    np.testing.assert_array_equal(d.y_train, raw.y_train)
    np.testing.assert_array_equal(d.y_test, raw.y_test)
    np.testing.assert_array_equal(d.x_train, raw.x_train.astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(d.x_test, raw.x_test.astype(np.float32) / 127.5 - 1)
    assert d.x_val.shape == (0,) + d.x_train.shape[1:] and d.y_val.shape == (0,)


def test_scaling_maps_0_and_255_to_exactly_minus_one_and_one(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    images[1] = 255
    images[2] = 127
    folder = tmp_path / "mnist"
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.array([0, 9, 4], np.uint8))
    d = load_data("mnist", tmp_path, val_fraction=0)
    assert set(np.unique(d.x_test[0])) == {-1.0}
    assert set(np.unique(d.x_test[1])) == {1.0}
    assert d.x_test[2, 0, 0, 0] == pytest.approx(127 / 127.5 - 1, abs=1e-7)
    assert d.y_test.tolist() == [0, 9, 4]


def test_cifar_channel_order(tmp_path):
    write_cifar10(tmp_path, n_per_batch=2)
    rows = np.zeros((2, 3072), np.uint8)
    rows[0, 0 * 1024 + 5 * 32 + 7] = 255   # R plane, row 5, column 7
    rows[1, 2 * 1024 + 31 * 32 + 0] = 255  # B plane, row 31, column 0
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    (batches / "test_batch").write_bytes(cifar_batch_bytes(rows, [1, 2]))
    d = load_data("cifar-10", tmp_path)
    assert np.argwhere(d.x_test[0] == 1.0).tolist() == [[5, 7, 0]]
    assert np.argwhere(d.x_test[1] == 1.0).tolist() == [[31, 0, 2]]
    assert d.y_test.tolist() == [1, 2]


def test_cifar_rows_helper_inverts_loader_layout():
    images = np.arange(2 * 32 * 32 * 3, dtype=np.uint32).reshape(2, 32, 32, 3) % 251
    rows = cifar_rows(images.astype(np.uint8))
    assert rows[0, 1024 + 32 * 3 + 4] == images[0, 3, 4, 1]


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    raw = write_mnist(tmp_path, n_train=100, n_test=10)
    a = load_data("MNIST", tmp_path, val_fraction=0.25, seed=1)
    b = load_data("MNIST", tmp_path, val_fraction=0.25, seed=1)
    c = load_data("MNIST", tmp_path, val_fraction=0.25, seed=2)
    assert len(a.y_val) == 25 and len(a.y_train) == 75
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    # train and val partition the training file: together they hold every label exactly once.
    np.testing.assert_array_equal(np.sort(np.concatenate([a.y_train, a.y_val])),
                                  np.sort(raw.y_train))


def test_counts_come_from_headers(tmp_path):
    """Subsets of the official files (e.g. 17,435 of 60,000 train images) load as they are."""
    write_mnist(tmp_path, n_train=37, n_test=13)
    write_cifar10(tmp_path / "c", n_per_batch=7, n_test=3)
    x_train, y_train, x_test, y_test = read_mnist(tmp_path)
    assert x_train.shape == (37, 28, 28, 1) and y_test.shape == (13,)
    x_train, y_train, x_test, y_test = read_cifar10(tmp_path / "c")
    assert x_train.shape == (35, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)


def test_data_dir_from_environment(tiny_data_dir, monkeypatch):
    monkeypatch.setenv("BNN_DATA_DIR", str(tiny_data_dir))
    assert load_data("MNIST").x_test.shape == (50, 28, 28, 1)


def _gz(path, payload):
    with gzip.open(path, "wb") as f:
        f.write(payload)


def test_truncated_idx_payload(tiny_data_dir):
    path = tiny_data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    _gz(path, idx_bytes(np.zeros((200, 28, 28), np.uint8))[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is corrupt or truncated.*"
                                        "needs 156800 data bytes, file has 156700.*"
                                        "download_data.py --data_set MNIST"):
        load_data("MNIST", tiny_data_dir)


def test_truncated_gzip_stream(tiny_data_dir):
    path = tiny_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is corrupt"):
        load_data("MNIST", tiny_data_dir)


def test_wrong_magic_number(tiny_data_dir):
    folder = tiny_data_dir / "mnist"
    # Labels where images belong: magic 2049 instead of 2051.
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
        (folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        load_data("MNIST", tiny_data_dir)


def test_image_label_count_mismatch(tiny_data_dir):
    write_idx(tiny_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(49, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz .*\(49,\) labels for 50 "
                                        "images"):
        load_data("MNIST", tiny_data_dir)


def test_cifar_count_mismatch_and_row_length(tiny_data_dir):
    batch = tiny_data_dir / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(cifar_batch_bytes(np.zeros((4, 3072), np.uint8), [0, 1, 2]))
    with pytest.raises(DataError, match="data_batch_3 is corrupt.*3 labels for 4 images"):
        load_data("cifar-10", tiny_data_dir)
    batch.write_bytes(cifar_batch_bytes(np.zeros((4, 3000), np.uint8), [0, 1, 2, 3]))
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt.*\(4, 3000\)"):
        load_data("cifar-10", tiny_data_dir)


class _RunsShell:
    """Pickles as a call to ``os.system`` (the classic malicious pickle)."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)


def test_malicious_pickle_is_refused(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch = tiny_data_dir / "cifar10" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": _RunsShell(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="refusing to unpickle (posix|os|nt).system"):
        load_data("cifar-10", tiny_data_dir)
    assert not (tmp_path / "PWNED").exists()


def test_codecs_encode_only_for_latin1(tiny_data_dir):
    batch = tiny_data_dir / "cifar10" / "cifar-10-batches-py" / "test_batch"
    payload = cifar_batch_bytes(np.zeros((1, 3072), np.uint8), [0])
    batch.write_bytes(payload.replace(b"latin1", b"rot_13"))
    with pytest.raises(DataError, match="test_batch is corrupt.*refusing _codecs.encode"):
        load_data("cifar-10", tiny_data_dir)


def test_python2_style_numpy_core_pickle_loads(tiny_data_dir):
    """The official batches name numpy.core.multiarray (numpy 2 renamed it numpy._core)."""
    batch = tiny_data_dir / "cifar10" / "cifar-10-batches-py" / "test_batch"
    payload = cifar_batch_bytes(np.full((2, 3072), 255, np.uint8), [7, 8])
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in payload
    batch.write_bytes(payload)
    d = load_data("cifar-10", tiny_data_dir)
    assert d.y_test.tolist() == [7, 8] and (d.x_test == 1.0).all()


@pytest.mark.parametrize("data_set, missing", [
    ("MNIST", "mnist/t10k-labels-idx1-ubyte.gz"),
    ("cifar-10", "cifar10/cifar-10-batches-py/data_batch_5"),
])
def test_missing_data_set_names_the_download_command(tmp_path, data_set, missing):
    with pytest.raises(DataError, match=f"{data_set} is not downloaded in .*run  "
                                        f"python data/download_data.py --data_set {data_set} "
                                        f"--data_dir {tmp_path}$"):
        load_data(data_set, tmp_path)
    (write_mnist if data_set == "MNIST" else write_cifar10)(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(DataError, match=missing.rsplit("/", 1)[-1] + " is missing"):
        load_data(data_set, tmp_path)


def test_bad_arguments(tiny_data_dir):
    with pytest.raises(DataError, match="unknown data set 'svhn': choose one of MNIST, cifar-10"):
        load_data("svhn", tiny_data_dir)
    with pytest.raises(DataError, match=r"val_fraction must lie in \[0, 1\), got 1.0"):
        load_data("MNIST", tiny_data_dir, val_fraction=1.0)


def test_no_tensorflow_import():
    import subprocess
    import sys
    code = "import sys, data.load_data; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
    assert out.stdout.split() == ["False", "False"]


def test_layout_and_config_import_no_network_stack():
    """bnn.config asks data.layout for names: that must not load requests, urllib3 or pooch."""
    import subprocess
    import sys
    code = ("import sys, bnn.config, data.layout; print(sorted({m.split('.')[0] for m in "
            "sys.modules} & {'requests', 'urllib3', 'pooch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
    assert out.stdout.strip() == "[]"


def test_find_corrupt_names_every_damaged_file(tiny_data_dir):
    from data.load_data import find_corrupt
    mnist = tiny_data_dir / "mnist"
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    _gz(mnist / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-9])
    (mnist / "t10k-images-idx3-ubyte.gz").unlink()  # missing files are not reported
    found = find_corrupt("MNIST", tiny_data_dir)
    assert [path.name for path, _ in found] == ["train-images-idx3-ubyte.gz",
                                                "t10k-labels-idx1-ubyte.gz"]
    assert "needs 1568 data bytes, file has 1559" in found[0][1]
    assert "cannot decompress" in found[1][1]
    batches = tiny_data_dir / "cifar10" / "cifar-10-batches-py"
    (batches / "data_batch_2").write_bytes(cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [1]))
    assert [(p.name, why) for p, why in find_corrupt("cifar-10", tiny_data_dir)] == [
        ("data_batch_2", "1 labels for 2 images")]
