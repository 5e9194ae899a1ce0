"""The paper's network, built from a :class:`~bnn.config.RunConfig`.

Each hidden layer is ``weights -> [2x2 max pool] -> batch norm -> quantized activation``
(pooling before batch norm, as in BinaryNet); the output layer is ``weights -> batch norm`` and
its scores are not quantized. The input image is not quantized.
"""

import keras

from bnn.batch_norm import BatchNormalization
from bnn.layers import QuantActivation, QuantConv2D, QuantDense
from bnn.quantizers import Rotated, parse_spec
from data.layout import IMAGE_SHAPES as INPUT_SHAPES, NUM_CLASSES as N_CLASSES


#: The layers that follow weight layer ``name``, by role, are named ``name + suffix``.
COMPANION_SUFFIXES = {"pool": "_pool", "bn": "_bn", "act": "_act", "dropout": "_dropout"}


def companion_name(name, role):
    """Name of the ``role`` layer (``'pool'``, ``'bn'``, ``'act'``, ``'dropout'``) after weight layer ``name``."""
    return f"{name}{COMPANION_SUFFIXES[role]}"


def companion(model, name, role):
    """The ``role`` layer that follows weight layer ``name`` in ``model``, or None where it has none
    (no pooling, no dropout, and no activation quantizer after ``out``)."""
    try:
        return model.get_layer(companion_name(name, role))
    except ValueError:
        return None


def batch_norm(config, name, **kwargs):
    """Batch norm with the run's momentum, epsilon and scale (``--bn_*``); always a shift.

    `bnn.batch_norm.BatchNormalization`: Keras's layer, on TensorFlow's fused kernel for conv outputs.
    """
    return BatchNormalization(momentum=config.bn_momentum, epsilon=config.bn_epsilon,
                              scale=bool(config.bn_scale), name=name, **kwargs)


def build_model(config):
    """Build the (uncompiled) network that ``config`` describes.

    Parameters
    ----------
    config : RunConfig
        A resolved config (``config.resolve()``).

    Returns
    -------
    keras.Model
        Input NHWC images in [-1, 1]; output scores, shape (n, 10). Weight layers are named
        ``conv1.., fc1.., out``; each hidden layer's batch norm is ``<name>_bn`` and its
        activation quantizer ``<name>_act``.
    """
    def kernel_quantizer(i):
        if not config.quantize_weights[i]:
            return None
        q = parse_spec(config.weight_quantizer)
        # The first weight layer sees raw pixels; only it may quantize through a rotation.
        return Rotated(q, config.seed) if i == 0 and config.rotate_first_layer else q

    def activation_quantizer(i):
        return parse_spec(config.activation_quantizer) if config.quantize_activations[i] else None

    x = inputs = keras.Input(INPUT_SHAPES[config.data_set], name="image")
    if config.dropout_in:
        x = keras.layers.Dropout(config.dropout_in, name="dropout_in")(x)
    names = config.layer_names()
    for i, name in enumerate(names[:-1]):
        if i < config.n_conv:
            x = QuantConv2D(config.conv[i], config.filter_size, kernel_quantizer=kernel_quantizer(i),
                            name=name)(x)
            if config.max_pool[i]:
                x = keras.layers.MaxPooling2D(2, padding="same", name=companion_name(name, "pool"))(x)
        else:
            if i == config.n_conv:
                x = keras.layers.Flatten(name="flatten")(x)
            x = QuantDense(config.fc[i - config.n_conv], kernel_quantizer=kernel_quantizer(i), name=name)(x)
        x = batch_norm(config, companion_name(name, "bn"))(x)
        x = QuantActivation(activation_quantizer(i), name=companion_name(name, "act"))(x)
        if config.dropout_hidden:
            x = keras.layers.Dropout(config.dropout_hidden, name=companion_name(name, "dropout"))(x)
    if config.n_conv and not config.fc:
        x = keras.layers.Flatten(name="flatten")(x)
    x = QuantDense(N_CLASSES, kernel_quantizer=kernel_quantizer(config.n_hidden), name="out")(x)
    # float32 scores even under --dtype_policy mixed_bfloat16, so the loss sees them unrounded
    scores = batch_norm(config, companion_name("out", "bn"), dtype="float32")(x)
    return keras.Model(inputs, scores, name=f"bnn_{config.mode}")
