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

Training writes the file through the callback `bnn.train.GeometryLog`; this module holds only the
format, the statistics and the reader (numpy alone), so that reading a run stays light.
"""

import csv
from pathlib import Path

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
