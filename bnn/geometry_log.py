"""The geometry of the weights during training: ``geometry.csv`` in the run directory.

One row per epoch and quantized weight layer. Epoch 0 is the initialization, before any step;
epoch k is the state after k epochs (the checkpoint ``epoch-k.keras`` holds the same weights).
Columns (`COLUMNS`):

    epoch             0 = initialization, k = after k epochs
    layer             weight layer name: conv1.., fc1.., out
    d                 dimension of one filter (kernel_size**2 * input channels, or fan-in)
    angle_mean_deg    mean over the layer's filters of the angle between w and Q(w), degrees
    angle_std_deg     standard deviation of that angle over the filters, degrees
    flip_ratio        fraction of entries of Q(W) that differ from the previous row's Q(W);
                      empty at epoch 0, which has no previous epoch. The entries compared are
                      the quantizer's own codes (`bnn.quantizers.Quantizer.codes`): for a layer
                      quantized through a rotation (``--rotate_first_layer``) the codes Q(R w),
                      one of which moves every entry of R^T Q(R w)
    weight_std        standard deviation of the latent (float) weights W
    clipped_fraction  fraction of latent weights at the [-1, 1] clip, |W| >= 1

Layers whose weights are not quantized (``--continuous``, ``--quantize_weights 0 ...``) get no
rows. The same numbers go to TensorBoard (``tensorboard/geometry``) as ``<layer>/<column>``.
"""

import csv
from pathlib import Path

import keras
import numpy as np

from bnn.geometry import angle

FILE = "geometry.csv"
COLUMNS = ("epoch", "layer", "d", "angle_mean_deg", "angle_std_deg", "flip_ratio", "weight_std",
           "clipped_fraction")
TB_SUBDIR = "geometry"


def kernel_statistics(kernel, quantized, previous=None):
    """The geometry of one layer's weights, the numbers of one row of ``geometry.csv``.

    Parameters
    ----------
    kernel : array, shape (..., n_filters)
        Latent float weights W; all axes but the last are flattened into the filter (d entries).
    quantized : array, same shape
        Q(W), the weights the forward pass uses.
    previous : array, same shape, or None
        Q(W) of the previous epoch; None gives ``flip_ratio`` NaN.

    Returns
    -------
    dict
        ``d``, ``angle_mean_deg``, ``angle_std_deg``, ``flip_ratio``, ``weight_std``,
        ``clipped_fraction`` (see the module docstring). The angle is
        ``arccos(w . q / (|w| |q|))`` per filter (90 degrees if either is all zero).
    """
    kernel, quantized = np.asarray(kernel), np.asarray(quantized)
    n = kernel.shape[-1]
    w, q = kernel.reshape(-1, n), quantized.reshape(-1, n)
    angles = np.degrees(angle(w, q, axis=0))
    return {"d": w.shape[0], "angle_mean_deg": float(angles.mean()),
            "angle_std_deg": float(angles.std()), "flip_ratio": flip_ratio(previous, quantized),
            "weight_std": float(w.std()), "clipped_fraction": float(np.mean(np.abs(w) >= 1.0))}


def flip_ratio(previous, current):
    """Fraction of entries that differ between two arrays of the same size; NaN if ``previous`` is None."""
    if previous is None:
        return np.nan
    return float(np.mean(np.asarray(previous).ravel() != np.asarray(current).ravel()))


def quantized_layers(model):
    """The weight layers of ``model`` whose kernel is quantized, in order."""
    return [layer for layer in model.layers if getattr(layer, "quantize_weights", False)]


class GeometryLog(keras.callbacks.Callback):
    """Append one row per quantized weight layer to ``geometry.csv`` after every epoch.

    Parameters
    ----------
    run_dir : path
        The run directory; the file is ``run_dir / FILE``.
    initial_epoch : int
        Epochs already done (``fit``'s ``initial_epoch``). A fresh run (0) also writes the
        epoch-0 row of the initialization; a resumed one starts from the row after its checkpoint
        (``train.py`` drops later rows before resuming).
    tensorboard_dir : path or None
        Also write the numbers as TensorBoard scalars under this folder (needs TensorFlow
        installed; skipped without it).
    """

    def __init__(self, run_dir, initial_epoch=0, tensorboard_dir=None):
        super().__init__()
        self.path = Path(run_dir) / FILE
        self.initial_epoch = initial_epoch
        self.tensorboard_dir = tensorboard_dir
        self.previous, self.writer = {}, None

    def on_train_begin(self, logs=None):
        # train.py calls fit once per epoch: the start of the run is the first call only.
        if self.previous:
            return
        if self.tensorboard_dir is not None:
            try:
                import tensorflow as tf
            except ImportError:
                pass
            else:
                self.writer = tf.summary.create_file_writer(str(Path(self.tensorboard_dir) / TB_SUBDIR))
        # Q(W) of the starting weights is what the first epoch's flips are counted against.
        rows = self._measure(self.initial_epoch)
        if self.initial_epoch == 0:
            self._write(rows)

    def on_epoch_end(self, epoch, logs=None):
        self._write(self._measure(epoch + 1))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()

    def _measure(self, epoch):
        rows = []
        for layer in quantized_layers(self.model):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            quantized = keras.ops.convert_to_numpy(layer.quantized_kernel())
            codes = layer.kernel_quantizer.codes(quantized)
            stats = kernel_statistics(kernel, quantized)
            stats["flip_ratio"] = flip_ratio(self.previous.get(layer.name), codes)
            small = np.array_equal(codes, np.rint(codes)) and np.abs(codes).max(initial=0) <= 127
            # -1, 0, +1 (sign, ternary) kept as int8: a quarter of float32
            self.previous[layer.name] = codes.astype(np.int8 if small else np.float32)
            rows.append({"epoch": epoch, "layer": layer.name, **stats})
        return rows

    def _write(self, rows):
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows({k: ("" if isinstance(v, float) and np.isnan(v) else v)
                              for k, v in row.items()} for row in rows)
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default():
                for row in rows:
                    for key in COLUMNS[3:]:
                        if not np.isnan(row[key]):
                            tf.summary.scalar(f"{row['layer']}/{key}", row[key], step=row["epoch"])
            self.writer.flush()


def read_geometry_log(run_dir):
    """Read ``geometry.csv`` of a run.

    Parameters
    ----------
    run_dir : path
        A run directory.

    Returns
    -------
    dict or None
        ``{column: ndarray}`` for every column of `COLUMNS`, rows in file order (``layer`` a
        str array, ``epoch`` and ``d`` int, the rest float with NaN for the empty epoch-0
        ``flip_ratio``); None for a run made before this log existed (no ``geometry.csv``).
    """
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {"epoch": np.array([int(r["epoch"]) for r in rows], dtype=int),
           "layer": np.array([r["layer"] for r in rows], dtype=str),
           "d": np.array([int(r["d"]) for r in rows], dtype=int)}
    for key in COLUMNS[3:]:
        out[key] = np.array([float(r[key]) if r[key] != "" else np.nan for r in rows])
    return out
