"""Look inside a trained network: per layer, the tensors the geometry figures need."""

from dataclasses import dataclass

import keras
import numpy as np

from bnn.layers import QuantConv2D
from bnn.quantizers import quantize


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
    pre_activation : array, shape (n, ...)
        The batch-normalized output before quantization (the scores for ``out``).
    activation : array or None
        The quantized activation (None for ``out``, whose scores are not quantized).
    quantize_weights, quantize_activations : bool
    levels : int
    threshold : float
    """

    name: str
    kind: str
    weights_continuous: np.ndarray
    weights_quantized: np.ndarray
    inputs: np.ndarray
    inputs_continuous: np.ndarray
    pre_activation: np.ndarray
    activation: np.ndarray | None
    quantize_weights: bool
    quantize_activations: bool
    levels: int
    threshold: float

    @property
    def dim(self):
        """Dimension of one filter's weight vector: k*k*c_in for conv, d_in for dense."""
        return int(np.prod(self.weights_continuous.shape[:-1]))


def weight_layer_names(model):
    """Names of the quantizing weight layers of a network built by :func:`bnn.model.build_model`."""
    return [layer.name for layer in model.layers if hasattr(layer, "quantized_kernel")]


def inspect_network(model, x, batch_size=100):
    """Run ``x`` through ``model`` (inference mode) and collect every layer's tensors.

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
    names = weight_layer_names(model)
    outputs = []
    for name in names:
        act = f"{name}_act" if name != "out" else None
        outputs += [model.get_layer(name).input, model.get_layer(f"{name}_bn").output]
        outputs.append(model.get_layer(act).output if act else model.get_layer(f"{name}_bn").output)
    probe = keras.Model(model.inputs, outputs)
    values = probe.predict(np.asarray(x, dtype="float32"), batch_size=batch_size, verbose=0)
    records, previous_pre = [], None
    for i, name in enumerate(names):
        layer = model.get_layer(name)
        inputs, pre, post = values[3 * i: 3 * i + 3]
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        quantized = keras.ops.convert_to_numpy(
            quantize(kernel, layer.levels, layer.threshold)) if layer.quantize_weights else kernel
        act_layer = model.get_layer(f"{name}_act") if name != "out" else None
        records.append(LayerTensors(
            name=name,
            kind="conv" if isinstance(layer, QuantConv2D) else "dense",
            weights_continuous=kernel,
            weights_quantized=quantized,
            inputs=inputs,
            inputs_continuous=inputs if previous_pre is None else previous_pre.reshape(inputs.shape),
            pre_activation=pre,
            activation=post if act_layer is not None else None,
            quantize_weights=bool(layer.quantize_weights),
            quantize_activations=bool(act_layer.quantize_activations) if act_layer else False,
            levels=layer.levels,
            threshold=layer.threshold,
        ))
        previous_pre = pre
    return records
