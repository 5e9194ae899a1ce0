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
import math
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from bnn.bitpack import (binary_dot, border_correction, n_words, pack_bits, ternary_dot, tf_pack_bits,
                         tf_patches, unpack_bits)
from bnn.errors import BnnError
from bnn.pack import FORMAT, META_KEY, VERSION

_REPACK = "write it again with python -m bnn.pack RUN_DIR"
# Far above any network of the paper (CIFAR-10: 32x32 maps, 1024 units), far below what would
# exhaust memory at load (a binary convolution's border correction is side x side x units).
MAX_SIDE, MAX_UNITS, MAX_VALUES = 4096, 1 << 20, 1 << 28


class PackedFileError(BnnError):
    """A packed network that does not follow its own format; the message names the field or array."""


def _is_int(v, low, high):
    return type(v) is int and low <= v <= high


def validate(meta, arrays, source="packed network"):
    """Check a packed network against the format :func:`bnn.pack.pack_model` writes, whole.

    Every field of ``meta`` and every array is checked before anything is built: types, dtypes
    and shapes, each layer's input shape against the previous layer's output, the precision
    chain (a hidden layer's weights have its input's levels), padding bits of packed words at 0,
    thresholds within the reachable dot products, float values finite, sizes bounded.

    Parameters
    ----------
    meta : dict
        The file's ``__meta__``.
    arrays : dict of str -> ndarray
    source : str
        What to name in the message (the file's path).

    Raises
    ------
    PackedFileError
        One line naming the first malformed field or array, and what to run.
    """
    def fail(what):
        raise PackedFileError(f"{source} is malformed: {what}; {_REPACK}")

    if not isinstance(meta, dict):
        fail(f"its {META_KEY} is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PackedFileError(f"{source} is {meta.get('format')!r} version {meta.get('version')!r}, but "
                              f"this bnn reads {FORMAT!r} version {VERSION}: {_REPACK}")
    shape = meta.get("input_shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 3
            and all(_is_int(n, 1, MAX_SIDE) for n in shape)) or math.prod(shape) > MAX_VALUES:
        fail(f"input_shape {shape!r} is not 1 to 3 sizes in [1, {MAX_SIDE}]")
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers:
        fail(f"layers is {layers!r}: a packed network has at least its output layer")
    used, names = set(), set()
    in_shape, in_levels = list(shape), 0
    for i, m in enumerate(layers):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"].isidentifier():
            fail(f"layers[{i}] is not an object with a name")
        name = m["name"]
        if name in names:
            fail(f"layer name {name} appears twice")
        names.add(name)
        out_shape = _check_layer_meta(m, in_shape, in_levels, i == len(layers) - 1, fail)
        used |= _check_layer_arrays(m, arrays, fail)
        in_shape, in_levels = out_shape, m.get("act_levels")
    extra = sorted(set(arrays) - used)
    if extra:
        fail(f"array {extra[0]} belongs to no layer")


def _check_layer_meta(m, in_shape, in_levels, last, fail):
    """Check one layer's fields against the previous layer's output; return its output shape."""
    name = m["name"]

    def field(key, ok, expected):
        if not ok(m.get(key)):
            fail(f"layer {name}: {key} is {m.get(key)!r}, expected {expected}")

    field("kind", lambda v: v in ("dense", "conv"), "'dense' or 'conv'")
    field("in_shape", lambda v: v == in_shape, f"{in_shape} (the previous layer's output)")
    field("in_levels", lambda v: _is_int(v, 0, 3) and v == in_levels,
          f"{in_levels} (the previous layer's activation levels)")
    field("units", lambda v: _is_int(v, 1, MAX_UNITS), f"an integer in [1, {MAX_UNITS}]")
    field("levels", lambda v: v in ((in_levels,) if in_levels else (None, 2, 3)) and type(v) is not bool,
          f"{in_levels} (its input's levels)" if in_levels else "null, 2 or 3")
    field("pool", lambda v: type(v) is bool and (not v or m["kind"] == "conv"),
          "true or false (true only for conv)")
    units, conv = m["units"], m["kind"] == "conv"
    if conv:
        field("in_shape", lambda v: len(v) == 3, "(height, width, channels) for a conv layer")
        field("kernel_size", lambda v: _is_int(v, 1, 2 * max(in_shape[:2]) + 1),
              "a positive integer at most twice the map's side")
        dim = m["kernel_size"] ** 2 * in_shape[-1]
        out = [in_shape[0], in_shape[1], units]
        if math.prod(out) > MAX_VALUES:
            fail(f"layer {name}: its output of {out} values is beyond {MAX_VALUES}")
        if m["pool"]:
            out = [(in_shape[0] + 1) // 2, (in_shape[1] + 1) // 2, units]
    else:
        field("kernel_size", lambda v: v is None, "null for a dense layer")
        dim, out = math.prod(in_shape), [units]
    field("dim", lambda v: type(v) is int and v == dim, f"{dim} (its filter's size)")
    if last:
        extra = sorted({"act_levels", "act_threshold"} & set(m))
        if extra:
            fail(f"layer {name}: the last layer has {extra[0]}, but a packed network ends with its "
                 "output layer")
    else:
        field("act_levels", lambda v: v in (2, 3) and type(v) is not bool,
              "2 or 3 (only the last layer has none)")
        field("act_threshold", lambda v: type(v) in (int, float) and math.isfinite(v) and v >= 0,
              "a finite number >= 0")
    return out


def _check_layer_arrays(m, arrays, fail):
    """Check one layer's arrays (dtype, shape, values); return their keys."""
    name, units, dim, in_shape = m["name"], m["units"], m["dim"], m["in_shape"]
    used = set()

    def array(key, dtype, shape):
        full = f"{name}.{key}"
        a = arrays.get(full)
        if a is None:
            fail(f"array {full} is missing")
        if a.dtype != np.dtype(dtype) or a.shape != tuple(shape):
            fail(f"array {full} is {a.dtype} of shape {a.shape}, expected {np.dtype(dtype)} of shape "
                 f"{tuple(shape)}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            fail(f"array {full} holds values that are not finite")
        used.add(full)
        return a

    if m["levels"] is None:
        kernel = ((m["kernel_size"],) * 2 + (in_shape[-1],) if m["kind"] == "conv" else (dim,)) + (units,)
        array("w_float", np.float32, kernel)
    else:
        if m["in_levels"] == 0:  # flat: one run of dim bits per unit
            groups, bits = 1, dim
        elif m["kind"] == "conv":  # per tap, along the channels
            groups, bits = m["kernel_size"] ** 2, in_shape[-1]
        else:  # per position of the flattened input, along the channels
            groups, bits = math.prod(in_shape[:-1]), in_shape[-1]
        padding = ~pack_bits(np.ones(bits, bool))  # the bits after the last value of each run
        planes = []
        for key in ("w_sign", "w_mask")[:m["levels"] - 1]:
            a = array(key, np.uint64, (units, groups * n_words(bits)))
            if (a.reshape(units, groups, -1) & padding).any():
                fail(f"array {name}.{key} has padding bits set (beyond the {bits} values of a run)")
            planes.append(a)
        if len(planes) == 2 and (planes[0] & ~planes[1]).any():
            fail(f"array {name}.w_sign has a +1 where {name}.w_mask says the weight is 0")
    if m["in_levels"] == 0 or "act_levels" not in m:
        array("scale", np.float32, (units,))
        array("shift", np.float32, (units,))
    else:
        if not np.isin(array("sign", np.int8, (units,)), (-1, 1)).all():
            fail(f"array {name}.sign holds values other than -1 and +1")
        # A dot product of dim +-1 (or 0) values lies in [-dim, dim]; one past it means never.
        for key in ("t_pos", "t_neg")[:m["act_levels"] - 1]:
            t = array(key, np.int32, (units,))
            if t.min() < -dim - 1 or t.max() > dim + 1:
                fail(f"array {name}.{key} holds thresholds outside [-{dim + 1}, {dim + 1}]")
    return used


def load_packed(path):
    """Read a ``packed.npz`` written by :mod:`bnn.pack`.

    Returns
    -------
    PackedNetwork

    Raises
    ------
    BnnError
        If the file is missing, truncated, not a packed network, or from another format version;
        :class:`PackedFileError`, naming the field or array, if any part of it does not follow
        the format (:func:`validate`).
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
    return PackedNetwork(meta, arrays, source=str(path))


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

    def __init__(self, meta, arrays, source="packed network"):
        validate(meta, arrays, source)
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
        raise AssertionError("validate() admits only networks that end with their output layer")

    def _check(self, x):
        try:
            x = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise BnnError(f"images must be an array of numbers: {e}") from None
        if x.shape[1:] != self.input_shape:
            raise BnnError(f"images of shape {x.shape[1:]} given, but this network takes {self.input_shape}")
        return x

    def predict(self, x, batch_size=1000):
        """Output scores of images ``x``, shape (n, *input_shape) in [-1, 1] -> (n, classes) float32.

        An empty batch (n = 0) gives an empty (0, classes) array.
        """
        x = self._check(x)
        if len(x) == 0:
            return np.zeros((0, self.layers[-1].units), np.float32)
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
