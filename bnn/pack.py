"""Export a trained binary or ternary network as bit-packed weights and integer thresholds.

``python -m bnn.pack --run_dir RUN_DIR`` writes ``RUN_DIR/packed.npz``, which
:func:`bnn.packed.load_packed` runs. What the file holds, per weight layer (no optimizer state, no latent weights):

* the quantized kernel at 1 bit per weight (binary) or 2 (ternary: a sign and a mask plane),
  packed along the input channels in 64-bit words (:mod:`bnn.bitpack`);
* for a hidden layer whose input is binary or ternary, its batch norm and activation quantizer
  folded into integer thresholds on the dot product (the classic binary-network inference form):
  with ``s`` the sign of the batch norm's scale, the output is +1 where ``s * x >= t_pos`` (and,
  ternary, -1 where ``s * x <= t_neg``, else 0);
* for the first layer, whose input is the float image: the float batch-norm scale and shift
  (its dot products are floats, so there is no integer threshold to fold into);
* for the output layer: the batch norm as a per-class scale and shift of the integer scores.

The thresholds are exact: they are found by evaluating the Keras model's own float32 batch norm
(``x * scale + shift``, the arithmetic of ``tf.nn.batch_normalization``) at every integer the dot
product can take, so the packed network's activations equal the Keras model's.
"""

if __name__ == "__main__":  # parse before the imports below load TensorFlow: --help is instant
    import sys

    from bnn.commands import pack

    sys.exit(pack())

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bnn.bitpack import pack_bits, pack_conv_kernel
from bnn.commands import PACKED
from bnn.errors import BnnError
from bnn.files import atomic_write
from bnn.layers import QuantActivation, QuantConv2D, QuantDense
from bnn.model import companion
from bnn.quantizers import Quantizer, from_levels
from bnn.runs import load_run

FORMAT, VERSION = "bnn-packed", 1
META_KEY = "__meta__"
_PASSIVE = (keras.layers.InputLayer, keras.layers.Flatten, keras.layers.Dropout)
_KNOWN = (QuantDense, QuantConv2D, QuantActivation, keras.layers.BatchNormalization,
          keras.layers.MaxPooling2D) + _PASSIVE


def bn_affine(bn):
    """The inference-time batch norm ``y = x * scale + shift`` as Keras computes it (float32).

    Follows ``tf.nn.batch_normalization``: ``scale = rsqrt(var + eps) * gamma``,
    ``shift = beta - mean * scale``; a missing gamma (``scale=False``) is 1, a missing beta 0.
    """
    mean = tf.convert_to_tensor(bn.moving_mean, tf.float32)
    scale = tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance, tf.float32) + bn.epsilon)
    if bn.scale:
        scale = scale * tf.convert_to_tensor(bn.gamma, tf.float32)
    shift = (tf.convert_to_tensor(bn.beta, tf.float32) - mean * scale) if bn.center else -mean * scale
    return scale.numpy(), shift.numpy()


def integer_thresholds(scale, shift, d, quantizer, threshold=0.0):
    """Fold ``quantize(x * scale + shift)`` on integer dot products ``x`` in [-d, d] into thresholds.

    Parameters
    ----------
    scale, shift : float32 arrays, shape (units,)
        From :func:`bn_affine`.
    d : int
        Largest possible |dot product| (the number of input values a unit sees).
    quantizer : bnn.quantizers.Quantizer or {2, 3}
        The activation quantizer, asked for its outputs (``numpy``) on every value the unit can
        see: sign (sign(0) = +1) or ternary. The original ``levels`` (2 or 3) with ``threshold``
        stand for `bnn.quantizers.from_levels`'s.
    threshold : float
        With ``levels`` only.

    Returns
    -------
    sign : int8 array, shape (units,)
        -1 where ``scale < 0`` (the comparison flips), else +1.
    t_pos : int32 array
        The output is +1 exactly where ``sign * x >= t_pos`` (``d + 1``: never).
    t_neg : int32 array
        Ternary: the output is -1 exactly where ``sign * x <= t_neg`` (``-d - 1``: never);
        binary: -1 wherever it is not +1, and ``t_neg = t_pos - 1``.
    """
    scale = np.asarray(scale, np.float32)
    shift = np.asarray(shift, np.float32)
    sign = np.where(scale < 0, -1, 1).astype(np.int8)
    y = np.arange(-d, d + 1, dtype=np.int64)
    # Every integer the unit can see, in float32, through the same two roundings as Keras.
    f = (y[:, None] * sign[None, :]).astype(np.float32) * scale + shift
    if not isinstance(quantizer, Quantizer):
        quantizer = from_levels(quantizer, threshold)
    # The quantizer's own float32 comparisons (sign: f >= 0; ternary: |f| > float32(t)).
    q = quantizer.numpy(f)
    pos, neg = q > 0, q < 0
    # Float rounding is monotone, so along y = sign * x these are step functions.
    if np.any(np.diff(pos.astype(np.int8), axis=0) < 0) or np.any(np.diff(neg.astype(np.int8), axis=0) > 0):
        raise BnnError("batch norm is not monotone in the dot product: cannot fold it into thresholds")
    t_pos = np.where(pos.any(0), np.argmax(pos, axis=0) - d, d + 1).astype(np.int32)
    last_neg = len(y) - 1 - np.argmax(neg[::-1], axis=0)
    t_neg = np.where(neg.any(0), last_neg - d, -d - 1).astype(np.int32)
    return sign, t_pos, t_neg


#: The packed format's ``levels`` of each ``Quantizer.packing``: its sign plane, and its mask plane.
PACKING_LEVELS = {"sign": 2, "ternary": 3}


def _levels(quantizer):
    """The format's levels of ``quantizer``'s packing, None for one without bit planes."""
    return PACKING_LEVELS.get(getattr(quantizer, "packing", None))


def _kernel_levels(layer, kernel):
    """2 or 3 for a kernel of binary or ternary values, None for a float one (e.g. a rotated kernel)."""
    if layer.quantize_weights and np.isin(kernel, (-1.0, 0.0, 1.0)).all():
        return _levels(layer.kernel_quantizer)
    return None


def _kernel_planes(kernel, kind, in_shape):
    """The sign and mask bit planes of a quantized kernel, packed as the inference code reads them."""
    planes = {"w_sign": kernel > 0, "w_mask": kernel != 0}
    if kind == "conv":
        return {key: pack_conv_kernel(bits) for key, bits in planes.items()}
    units = kernel.shape[-1]
    # Rows in the order of the flattened input (height, width, channel): pack along the channels.
    return {key: pack_bits(np.moveaxis(bits.reshape(*in_shape, units), -1, 0)).reshape(units, -1)
            for key, bits in planes.items()}


def _check_packable(name, kernel_quantizer, act, in_levels):
    """Refuse, in one line, a layer whose quantizers declare no bit planes (``Quantizer.packing``)
    or values other than +-1 (and 0): the packed format holds only those."""
    for role, q, needed in (("weight", kernel_quantizer, in_levels),
                            ("activation", act.quantizer if act is not None else None, True)):
        if needed and q is not None and (q.packing is None or q.values is None):
            what = ("declares no bit-plane packing" if q.packing is None
                    else "packs as sign planes times a float scale, which the packed format does not hold")
            raise BnnError(f"layer {name}: {role} quantizer {q.spec()} {what}; bnn.pack exports sign and "
                           "ternary quantizers (the first layer may be float)")


def _check_layers(model):
    for layer in model.layers:
        if not isinstance(layer, _KNOWN):
            raise BnnError(f"layer {layer.name} ({type(layer).__name__}) has no packed form: "
                           "only bnn.model.build_model networks can be packed")
        if isinstance(layer, keras.layers.MaxPooling2D) and (
                tuple(layer.pool_size) != (2, 2) or tuple(layer.strides) != (2, 2) or layer.padding != "same"):
            raise BnnError(f"layer {layer.name}: only 2x2 max pooling with stride 2 and 'same' padding is packed")


def pack_model(model):
    """The packed form of a network built by :func:`bnn.model.build_model`.

    Returns
    -------
    meta : dict
        JSON-able description: format, version, input shape, and per layer its name, kind
        ('dense' or 'conv'), input shape and precision, sizes, pooling and quantizer.
    arrays : dict of str -> ndarray
        ``'<layer>.<field>'``: packed kernels, thresholds or float scale and shift.

    Raises
    ------
    BnnError
        Naming the first layer that cannot be packed, and why.
    """
    from bnn.layer_tensors import weight_layer_names

    _check_layers(model)
    in_shape, in_levels = tuple(model.input.shape[1:]), 0  # 0: float input
    layers, arrays = [], {}
    for name in weight_layer_names(model):
        layer, bn, act = model.get_layer(name), companion(model, name, "bn"), companion(model, name, "act")
        kind = "conv" if isinstance(layer, QuantConv2D) else "dense"
        kernel = keras.ops.convert_to_numpy(layer.quantized_kernel()).astype(np.float32)
        levels = _kernel_levels(layer, kernel)
        entry = {"name": name, "kind": kind, "in_shape": list(in_shape), "in_levels": in_levels,
                 "units": int(kernel.shape[-1]), "levels": levels,
                 "kernel_size": int(kernel.shape[0]) if kind == "conv" else None,
                 "pool": companion(model, name, "pool") is not None,
                 "dim": int(np.prod(kernel.shape[:-1]))}
        _check_packable(name, layer.kernel_quantizer, act, in_levels)
        if in_levels and levels is None:
            raise BnnError(f"layer {name} has float weights (quantize_weights=False or a rotated kernel): "
                           "only the first layer, whose input is the float image, may; "
                           "pack a network whose hidden layers quantize their weights")
        if in_levels and levels != in_levels:
            raise BnnError(f"layer {name} has {levels}-level weights but {in_levels}-level inputs: "
                           "mixed binary/ternary layers are not packed")
        prefix = f"{name}."
        if levels is None:
            arrays[prefix + "w_float"] = kernel
        else:
            # The first layer's kernel is unpacked to floats at load time: pack it flat.
            planes = _kernel_planes(kernel, kind, in_shape) if in_levels else {
                key: pack_bits(bits.reshape(-1, bits.shape[-1]).T)
                for key, bits in (("w_sign", kernel > 0), ("w_mask", kernel != 0))}
            arrays[prefix + "w_sign"] = planes["w_sign"]
            if layer.kernel_quantizer.packing == "ternary":
                arrays[prefix + "w_mask"] = planes["w_mask"]
        scale, shift = bn_affine(bn)
        if act is not None and not act.quantize_activations:
            raise BnnError(f"layer {act.name} does not quantize its activations (hard tanh, a float "
                           "network such as --continuous): the packed format holds binary or ternary "
                           "activations only")
        if act is None or not in_levels:
            arrays[prefix + "scale"], arrays[prefix + "shift"] = scale, shift
        if act is not None:
            entry.update(act_levels=_levels(act.quantizer), act_threshold=act.quantizer.zero_threshold() or 0.0)
            if in_levels:
                sign, t_pos, t_neg = integer_thresholds(scale, shift, entry["dim"], act.quantizer)
                arrays[prefix + "sign"], arrays[prefix + "t_pos"] = sign, t_pos
                if act.quantizer.packing == "ternary":
                    arrays[prefix + "t_neg"] = t_neg
            in_shape, in_levels = tuple(bn.output.shape[1:]), entry["act_levels"]
        layers.append(entry)
    meta = {"format": FORMAT, "version": VERSION, "input_shape": list(model.input.shape[1:]),
            "layers": layers}
    return meta, arrays


def save_packed(meta, arrays, path):
    """Write ``meta`` and ``arrays`` as one ``.npz`` file, through a temporary name renamed into place."""
    path = Path(path)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **{META_KEY: np.array(json.dumps(meta))}, **arrays)

    atomic_write(path, write)
    return path


def pack_run(run_dir, which="best", out=None):
    """Pack a run's model into ``out`` (default ``RUN_DIR/packed.npz``); return the path written."""
    config, model = load_run(run_dir, which)
    if config.continuous:
        raise BnnError(f"{run_dir} is a float (--continuous) network: it has no binary or ternary "
                       "weights to pack")
    meta, arrays = pack_model(model)
    meta["source"] = {"run_dir": str(run_dir), "which": which, "data_set": config.data_set}
    out = Path(out) if out else Path(run_dir) / PACKED
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_packed(meta, arrays, out)


def main(argv=None):
    """Command line: ``python -m bnn.pack --run_dir RUN_DIR [--which best|final|N] [--out PATH]``;
    returns the exit status (``bnn.commands.pack``)."""
    from bnn.commands import pack

    return pack(argv)
