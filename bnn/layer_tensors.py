"""Look inside a trained network: per layer, the tensors the geometry figures need."""

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np

from bnn.layers import QuantConv2D
from bnn.model import companion


@dataclass
class LayerTensors:
    """What one weight layer holds and computes on a batch of images.

    Attributes
    ----------
    name : str
        ``conv1``, ..., ``fc1``, ..., ``out``.
    kind : {'conv', 'dense'}
    weights_continuous : array
        The latent float kernel, shape (k, k, c_in, c_out) or (d_in, d_out).
    weights_quantized : array
        The kernel the forward pass uses (equal to the latent one if the weights are not quantized).
    inputs : array, shape (n, ...)
        The layer's input A^b: the image for the first layer, else the previous layer's
        quantized activations (flattened before the first dense layer).
    inputs_continuous : array, shape (n, ...)
        A^c: the same input before the previous layer's quantizer (the image for the first layer).
    outputs : array, shape (n, ...)
        The layer's dot products A^b . W^b (its conv or matmul), before pooling and batch norm.
    pre_activation : array, shape (n, ...)
        The batch-normalized output before quantization (the scores for ``out``).
    activation : array or None
        The quantized activation (None for ``out``, whose scores are not quantized).
    quantize_weights, quantize_activations : bool
    weight_quantizer, activation_quantizer : bnn.quantizers.Quantizer or None
        The weight layer's kernel quantizer and its ``<name>_act`` quantizer (None: float).
    levels : int or None
        2 or 3 where the weight quantizer packs as sign or ternary planes (else None).
    threshold : float
        The weight layer's own threshold (weight units).
    activation_threshold : float or None
        The threshold of the ``<name>_act`` quantizer (batch-normed units); None for ``out``.
    batch_norm : dict of str -> array, shape (c_out,)
        The ``<name>_bn`` layer in inference mode: ``gamma``, ``beta``, ``mean``, ``variance`` and
        ``epsilon`` (a float): it maps z to gamma (z - mean) / sqrt(variance + epsilon) + beta.
    """

    name: str
    kind: str
    weights_continuous: np.ndarray
    weights_quantized: np.ndarray
    inputs: np.ndarray
    inputs_continuous: np.ndarray
    outputs: np.ndarray
    pre_activation: np.ndarray
    activation: np.ndarray | None
    quantize_weights: bool
    quantize_activations: bool
    levels: int | None
    threshold: float
    activation_threshold: float | None
    batch_norm: dict
    weight_quantizer: object = None
    activation_quantizer: object = None

    @property
    def dim(self):
        """Dimension of one filter's weight vector: k*k*c_in for conv, d_in for dense."""
        return int(np.prod(self.weights_continuous.shape[:-1]))


_BATCHED = ("inputs", "inputs_continuous", "outputs", "pre_activation", "activation")


def weight_layer_names(model):
    """Names of the quantizing weight layers of a network built by :func:`bnn.model.build_model`."""
    return [layer.name for layer in model.layers if hasattr(layer, "quantized_kernel")]


def batch_norm_parameters(bn):
    """A Keras ``BatchNormalization`` layer's inference-mode parameters as numpy arrays.

    Returns
    -------
    dict
        ``gamma``, ``beta``, ``mean``, ``variance`` (arrays of shape (c,); gamma 1 and beta 0 where the
        layer has no scale or centre) and ``epsilon``.
    """
    mean = keras.ops.convert_to_numpy(bn.moving_mean)
    ones = np.ones_like(mean)
    return {"gamma": keras.ops.convert_to_numpy(bn.gamma) if bn.scale else ones,
            "beta": keras.ops.convert_to_numpy(bn.beta) if bn.center else 0 * ones,
            "mean": mean, "variance": keras.ops.convert_to_numpy(bn.moving_variance),
            "epsilon": float(bn.epsilon)}


def iter_inspect(model, x, batch_size=100):
    """Run ``x`` through ``model`` (inference mode) batch by batch, yielding every layer's tensors.

    Memory stays bounded by one batch: use this for many images through large layers.

    Parameters
    ----------
    model : keras.Model
        A network built by :func:`bnn.model.build_model` (for example from :func:`bnn.runs.load_run`).
    x : array, shape (n, height, width, channels)
        Images in [-1, 1].
    batch_size : int

    Yields
    ------
    scores : ndarray, shape (b, 10)
        The network's outputs on the batch.
    layers : list of LayerTensors
        One per weight layer, in order, holding the batch's tensors.
    """
    names = weight_layer_names(model)
    static = []
    outputs = [model.output]
    for name in names:
        layer, bn, act = model.get_layer(name), companion(model, name, "bn"), companion(model, name, "act")
        outputs += [layer.input, layer.output, bn.output, (act or bn).output]
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        static.append(dict(
            name=name,
            kind="conv" if isinstance(layer, QuantConv2D) else "dense",
            weights_continuous=kernel,
            weights_quantized=keras.ops.convert_to_numpy(layer.quantized_kernel()),
            quantize_weights=bool(layer.quantize_weights),
            quantize_activations=bool(act.quantize_activations) if act else False,
            levels=layer.levels,
            threshold=float(layer.threshold),
            # Read from the quantizer layer itself: weights and activations may have different thresholds.
            activation_threshold=float(act.threshold) if act else None,
            batch_norm=batch_norm_parameters(bn),
            weight_quantizer=layer.kernel_quantizer,
            activation_quantizer=act.quantizer if act else None,
        ))
    probe = keras.Model(model.inputs, outputs)
    x = np.asarray(x, dtype="float32")
    for start in range(0, len(x), batch_size):
        values = [keras.ops.convert_to_numpy(v) for v in probe.predict_on_batch(x[start:start + batch_size])]
        layers, previous_pre = [], None
        for i, fixed in enumerate(static):
            inputs, outs, pre, post = values[1 + 4 * i: 5 + 4 * i]
            layers.append(LayerTensors(
                **fixed, inputs=inputs, outputs=outs, pre_activation=pre,
                inputs_continuous=inputs if previous_pre is None else previous_pre.reshape(inputs.shape),
                activation=post if fixed["name"] != "out" else None))
            previous_pre = pre
        yield values[0], layers


def inspect_network(model, x, batch_size=100):
    """Every layer's tensors on all of ``x``: :func:`iter_inspect` with the batches joined.

    Parameters
    ----------
    model : keras.Model
        A network built by :func:`bnn.model.build_model` (for example from :func:`bnn.runs.load_run`).
    x : array, shape (n, height, width, channels)
        Images in [-1, 1].
    batch_size : int

    Returns
    -------
    list of LayerTensors
        One per weight layer, in order.
    """
    batches = [layers for _, layers in iter_inspect(model, x, batch_size)]
    joined = []
    for per_batch in zip(*batches):
        first = per_batch[0]
        arrays = {f: None if getattr(first, f) is None else np.concatenate([getattr(b, f) for b in per_batch])
                  for f in _BATCHED}
        joined.append(dataclasses.replace(first, **arrays))
    return joined
