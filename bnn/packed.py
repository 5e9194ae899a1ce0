"""Run a bit-packed network (``packed.npz`` from :mod:`bnn.pack`) with XOR-popcount under XLA.

Every hidden layer after the first computes its integer dot products from packed 64-bit words
(:func:`bnn.bitpack.binary_dot`, :func:`bnn.bitpack.ternary_dot`), max-pools them, compares them
with its integer thresholds and packs the resulting activations again; convolutions gather their
3x3 taps of bit-packed channels (:func:`bnn.bitpack.tf_patches`). The first layer multiplies the
float image by its binary (or ternary, or rotated float) weights; the output layer scales and
shifts its integer scores per class. The whole network is one ``tf.function(jit_compile=True)``.

Example
-------
>>> net = load_packed("runs/MNIST-binary/packed.npz")
>>> scores = net.predict(x_test)          # same images and scores as the Keras model
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from bnn.bitpack import (binary_dot, border_correction, n_words, ternary_dot, tf_pack_bits, tf_patches,
                         unpack_bits)
from bnn.errors import BnnError
from bnn.pack import FORMAT, META_KEY, VERSION

_REPACK = "write it again with python -m bnn.pack RUN_DIR"


def load_packed(path):
    """Read a ``packed.npz`` written by :mod:`bnn.pack`.

    Returns
    -------
    PackedNetwork

    Raises
    ------
    BnnError
        If the file is missing, truncated, not a packed network, or from another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise BnnError(f"{path} does not exist: {_REPACK}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BnnError(f"{path} is not a readable packed network ({reason}); it may be truncated: {_REPACK}")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise BnnError(f"{path} is {meta.get('format')!r} version {meta.get('version')!r}, but this bnn "
                       f"reads {FORMAT!r} version {VERSION}: {_REPACK}")
    try:
        return PackedNetwork(meta, arrays)
    except KeyError as e:
        raise BnnError(f"{path} lacks the array {e}: {_REPACK}")


class _Layer:
    """One weight layer of a packed network, with its arrays as TensorFlow constants."""

    def __init__(self, m, arrays):
        self.m = m
        self.name, self.kind, self.units = m["name"], m["kind"], m["units"]
        self.levels, self.in_levels = m["levels"], m["in_levels"]
        self.in_shape = tuple(m["in_shape"])
        get = lambda key: arrays[f"{self.name}.{key}"]  # noqa: E731
        if self.in_levels == 0:
            self.kernel = tf.constant(self._float_kernel(get))
        else:
            self.w_sign = tf.constant(get("w_sign"))
            self.w_mask = tf.constant(get("w_mask")) if self.levels == 3 else None
            if self.kind == "conv" and self.levels == 2:
                kernel = self._float_kernel(get)
                self.border = tf.constant(border_correction(kernel, *self.in_shape[:2]))
        self.is_output = "act_levels" not in m
        if self.in_levels == 0 or self.is_output:
            self.scale, self.shift = tf.constant(get("scale")), tf.constant(get("shift"))
        else:
            self.sign = tf.constant(get("sign").astype(np.int32))
            self.t_pos = tf.constant(get("t_pos"))
            self.t_neg = tf.constant(get("t_neg")) if m["act_levels"] == 3 else None

    def _float_kernel(self, get):
        """The kernel as float32 values, shape (k, k, c_in, f) or (d_in, f)."""
        k = self.m["kernel_size"]
        shape = ((k, k, self.in_shape[-1]) if self.kind == "conv" else (self.m["dim"],)) + (self.units,)
        if self.levels is None:
            return get("w_float").reshape(shape)
        if self.in_levels == 0:  # packed flat, (f, words of dim)
            planes = [unpack_bits(get(key), self.m["dim"]).T for key in ("w_sign", "w_mask")[:self.levels - 1]]
        else:  # packed per tap along the channels, (f, k * k * words of c_in)
            c = self.in_shape[-1]
            words = get("w_sign").reshape(self.units, k, k, n_words(c))
            planes = [np.transpose(unpack_bits(words, c), (1, 2, 3, 0))]
        values = np.where(planes[0], 1.0, -1.0).astype(np.float32)
        if len(planes) == 2:
            values *= planes[1]
        return values.reshape(shape)

    def dots(self, h):
        """The layer's dot products: float for the first layer, else int32; shape (n, ..., units)."""
        if self.in_levels == 0:
            if self.kind == "conv":
                return tf.nn.conv2d(h, self.kernel, 1, "SAME")
            return tf.matmul(tf.reshape(h, [-1, self.m["dim"]]), self.kernel)
        if self.kind == "dense":
            flat = [tf.reshape(p, [-1, p.shape[1:].num_elements()]) for p in h]
            return self._dot(flat, self.m["dim"])
        k = self.m["kernel_size"]
        n_rows, height, width = tf.shape(h[0])[0], self.in_shape[0], self.in_shape[1]
        dots = self._dot([tf_patches(p, k) for p in h], self.m["dim"])
        dots = tf.reshape(dots, [n_rows, height, width, self.units])
        return dots + self.border if self.levels == 2 else dots

    def _dot(self, planes, dim):
        if self.levels == 2:
            return binary_dot(planes[0], self.w_sign, dim)
        return ternary_dot(planes[0], planes[1], self.w_sign, self.w_mask)

    def activate(self, y):
        """Batch norm and quantizer on (pooled) dot products: the packed sign [and mask] planes."""
        if self.in_levels == 0:
            f = y * self.scale + self.shift
            threshold = self.m["act_threshold"]
            pos = f >= 0 if self.m["act_levels"] == 2 else f > threshold
            neg = None if self.m["act_levels"] == 2 else f < -threshold
        else:
            y = y * self.sign
            pos = y >= self.t_pos
            neg = None if self.t_neg is None else y <= self.t_neg
        if neg is None:
            return (tf_pack_bits(pos),)
        return tf_pack_bits(pos), tf_pack_bits(tf.logical_or(pos, neg))

    def scores(self, y):
        return tf.cast(y, tf.float32) * self.scale + self.shift


def _max_pool(y):
    """2x2 max pool, stride 2, 'same' padding (keras.layers.MaxPooling2D(2, padding="same")).

    As a reshape and a max rather than tf.nn.max_pool2d: XLA on CPU runs that reduce-window
    several times slower. An odd side is padded at its end with the lowest value, as TF does.
    """
    _, h, w, c = y.shape
    if h % 2 or w % 2:
        y = tf.pad(y, [[0, 0], [0, h % 2], [0, w % 2], [0, 0]], constant_values=y.dtype.min)
    return tf.reduce_max(tf.reshape(y, [-1, (h + 1) // 2, 2, (w + 1) // 2, 2, c]), axis=[2, 4])


class PackedNetwork:
    """A packed network: ``predict(x)`` gives the Keras model's scores from bit-packed weights.

    Attributes
    ----------
    meta : dict
        The file's description (format, version, input shape, layers).
    layer_names : list of str
    """

    def __init__(self, meta, arrays):
        self.meta = meta
        self.input_shape = tuple(meta["input_shape"])
        self.layers = [_Layer(m, arrays) for m in meta["layers"]]
        self.layer_names = [layer.name for layer in self.layers]
        self._scores = tf.function(lambda x: self._forward(x)[0], jit_compile=True)
        self._with_dots = tf.function(self._forward, jit_compile=True)

    def _forward(self, x):
        h, dots, acts = x, [], []
        for layer in self.layers:
            y = layer.dots(h)
            dots.append(y)
            if layer.m["pool"]:
                y = _max_pool(y)
            if layer.is_output:
                return layer.scores(y), dots, acts
            h = layer.activate(y)
            acts.append(h)
        raise AssertionError("a packed network ends with its output layer")

    def _check(self, x):
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise BnnError(f"images of shape {x.shape[1:]} given, but this network takes {self.input_shape}")
        return x

    def predict(self, x, batch_size=1000):
        """Output scores of images ``x``, shape (n, *input_shape) in [-1, 1] -> (n, 10) float32."""
        x = self._check(x)
        return np.concatenate([self._scores(tf.constant(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])

    def __call__(self, x):
        """Scores of one batch as a tensor, no copying (what a benchmark should time)."""
        return self._scores(x)

    def trace(self, x):
        """Scores, every layer's dot products and activations of one batch (numpy).

        Returns
        -------
        scores : ndarray, shape (n, 10)
        dots : list of ndarray
            One per layer, shaped as :attr:`bnn.layer_tensors.LayerTensors.outputs` (before pooling
            and batch norm): float32 for the first layer, int32 for the others (A^b . W^b).
        activations : list of tuple of ndarray
            One per hidden layer: its packed sign plane (and mask plane, ternary), uint64 words.
        """
        scores, dots, acts = self._with_dots(tf.constant(self._check(x)))
        return (scores.numpy(), [d.numpy() for d in dots],
                [tuple(p.numpy() for p in planes) for planes in acts])


def compare_with_keras(net, model, x, batch_size=100):
    """Check a packed network against the Keras model it came from, layer by layer, image by image.

    The packed network runs on its own (its activations feed its next layer), and each layer's
    dot products and activations are compared with the Keras model's. An activation can differ
    only at a float tie: the first layer's dot products are float sums taken in another order, so
    a unit whose batch-normalized value is within rounding of its threshold may flip. The layers
    after such a flip see other inputs; they are compared on the other images only.

    Parameters
    ----------
    net : PackedNetwork
    model : keras.Model
        The network that was packed.
    x : array, shape (n, *input_shape)
    batch_size : int

    Returns
    -------
    dict
        ``images``; ``layers``: per layer name, ``compared`` (images whose inputs agree),
        ``mismatched`` (dot products on those that differ: beyond 1e-3 for the float first layer,
        at all for the integer ones), ``max_abs_diff``, ``flipped`` (activations that differ) and
        ``flip_max_abs_pre_activation`` (the largest |batch-normalized value| at a flip: a tie is
        tiny); ``same_class``: images whose predicted class equals the Keras model's;
        ``score_ties``: images whose two best Keras scores are equal.
    """
    from bnn.layer_tensors import iter_inspect

    x = net._check(x)
    layers = {name: {"compared": 0, "mismatched": 0, "max_abs_diff": 0.0, "flipped": 0,
                     "flip_max_abs_pre_activation": 0.0} for name in net.layer_names}
    same_class = score_ties = 0
    for start, (scores, tensors) in zip(range(0, len(x), batch_size), iter_inspect(model, x, batch_size)):
        ours_scores, dots, acts = (v for v in net.trace(x[start:start + batch_size]))
        agree = np.ones(len(scores), dtype=bool)  # images whose inputs to this layer agree
        for ours, act, theirs in zip(dots, acts + [None], tensors):
            row = layers[theirs.name]
            diff = np.abs(ours.astype(np.float64) - theirs.outputs)[agree]
            row["compared"] += int(agree.sum())
            row["mismatched"] += int((diff > (1e-3 if ours.dtype == np.float32 else 0)).sum())
            row["max_abs_diff"] = max(row["max_abs_diff"], float(diff.max(initial=0.0)))
            if act is None:
                break
            flips = _flipped(act, theirs.activation, theirs.activation.shape[-1]) & agree.reshape(
                (-1,) + (1,) * (theirs.activation.ndim - 1))
            row["flipped"] += int(flips.sum())
            if flips.any():
                row["flip_max_abs_pre_activation"] = max(row["flip_max_abs_pre_activation"],
                                                         float(np.abs(theirs.pre_activation[flips]).max()))
            agree &= ~flips.reshape(len(flips), -1).any(1)
        same_class += int((ours_scores.argmax(1) == scores.argmax(1)).sum())
        top2 = np.sort(scores, axis=1)[:, -2:]
        score_ties += int((top2[:, 0] == top2[:, 1]).sum())
    return {"images": len(x), "layers": layers, "same_class": same_class, "score_ties": score_ties}


def _flipped(planes, keras_activation, c):
    """Where the packed activation planes differ from the Keras activations (bool, Keras's shape)."""
    flips = unpack_bits(planes[0], c) != (keras_activation > 0)
    if len(planes) == 2:
        flips |= unpack_bits(planes[1], c) != (keras_activation != 0)
    return flips
