"""Layers with high-precision latent weights that are quantized in the forward pass.

:class:`QuantDense` and :class:`QuantConv2D` are Keras's own ``Dense`` and ``Conv2D`` (strides,
padding, bias, activation and the rest work as there) with two more arguments, each a quantizer
name, spec or :class:`bnn.quantizers.Quantizer`: ``kernel_quantizer`` (the kernel the forward pass
uses is ``Q(kernel)``; the latent kernel is clipped to [-1, 1] after every step) and
``input_quantizer`` (applied to the layer's input). The optimizer updates the latent weights
through the quantizer's straight-through estimator (Courbariaux et al. 2016).

Defaults follow the paper's network rather than Keras: ``kernel_quantizer='sign'``, no bias
(every weight layer is followed by batch normalization) and, for convolutions, ``'same'`` padding.
The arguments of the original layers (``quantize_weights``, ``levels``, ``threshold``,
``rotation_seed``) are still accepted and mapped onto quantizers, and ``.keras`` files written
with them load unchanged.
"""

import keras
import numpy as np
from keras import ops

from bnn import quantizers
from bnn import losses  # noqa: F401  (registers the loss: checkpoints reload compiled)
from bnn.batch_norm import BatchNormalization  # noqa: F401  (registered too: load_model reads every bnn layer)
from bnn.constraints import Clip
from bnn.geometry import haar_rotation

# Quantizers imported before Keras (a cached analysis reads them without it) join keras.saving's
# registry here at the latest, so that load_model finds them.
quantizers.register_with_keras()

#: Arguments of the original layers, mapped onto quantizers by :func:`_legacy_quantizer`.
_LEGACY_KEYS = ("quantize_weights", "levels", "threshold", "rotation_seed")


@keras.saving.register_keras_serializable(package="bnn")
class HaarRotation(keras.initializers.Initializer):
    """A Haar-random rotation matrix of shape (d, d), the same for the same ``seed``.

    Drawn with numpy (`bnn.geometry.haar_rotation`, scipy's ``special_ortho_group``) from
    ``numpy.random.default_rng(seed)``, so it does not depend on the Keras backend.
    """

    def __init__(self, seed=0):
        self.seed = int(seed)

    def __call__(self, shape, dtype=None):
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"a rotation needs a square shape (d, d). Received: shape={shape}")
        rotation = haar_rotation(int(shape[0]), np.random.default_rng(self.seed))
        return ops.convert_to_tensor(rotation, dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


def _legacy_quantizer(quantize=True, levels=2, threshold=0.0, rotation_seed=None):
    """The quantizer the original arguments described (None: float)."""
    quantizers.check_quantizer_args(levels, threshold)
    if rotation_seed is not None and not quantize:
        raise ValueError("a rotation only applies to quantized weights. Received: "
                         f"rotation_seed={rotation_seed} with quantize_weights=False")
    if not quantize:
        return None
    q = quantizers.from_levels(levels, threshold)
    return q if rotation_seed is None else quantizers.Rotated(q, rotation_seed)


def _pop_legacy(kwargs):
    return {k: kwargs.pop(k) for k in _LEGACY_KEYS if k in kwargs}


class _QuantKernel:
    """What QuantDense and QuantConv2D add to their Keras base class."""

    def _init_quantizers(self, kernel_quantizer, input_quantizer, legacy, kwargs):
        if legacy:
            kernel_quantizer = _legacy_quantizer(legacy.get("quantize_weights", True),
                                                 legacy.get("levels", 2), legacy.get("threshold", 0.0),
                                                 legacy.get("rotation_seed"))
        self.kernel_quantizer = quantizers.get(kernel_quantizer)
        self.input_quantizer = quantizers.get(input_quantizer)
        clip = getattr(self.kernel_quantizer, "latent_clip", None)
        if kwargs.get("kernel_constraint") is None and clip is not None:
            kwargs["kernel_constraint"] = Clip(clip)

    def build(self, input_shape):
        super().build(input_shape)
        if self.kernel_quantizer is not None:
            self.kernel_quantizer.build(self, tuple(self.kernel.shape))

    # Keras's Dense saves only the variables it knows; the quantizer's (a rotation) come after.
    save_own_variables = keras.layers.Layer.save_own_variables
    load_own_variables = keras.layers.Layer.load_own_variables

    def quantized_kernel(self):
        """The kernel the forward pass uses: ``kernel_quantizer(kernel)``, or the floats as they are."""
        if self.kernel_quantizer is None:
            return self.kernel
        # The Clip constraint keeps |kernel| <= 1, where the cancellation mask is all ones:
        # skipping it gives the same gradient for two fewer passes over the kernel.
        bounded = isinstance(self.kernel_constraint, Clip) and self.kernel_constraint.bound <= 1.0
        return self.kernel_quantizer(self.kernel, bounded=bounded)

    def _quantized_input(self, inputs):
        return inputs if self.input_quantizer is None else self.input_quantizer(inputs)

    # -- what the original layers exposed, read from the quantizer -------------------------------
    @property
    def quantize_weights(self):
        return self.kernel_quantizer is not None

    @property
    def rotation(self):
        """The fixed rotation R of a :class:`bnn.quantizers.Rotated` kernel quantizer, or None."""
        return getattr(self.kernel_quantizer, "rotation", None)

    @property
    def rotation_seed(self):
        return getattr(self.kernel_quantizer, "seed", None) if self.rotation is not None else None

    @property
    def levels(self):
        return _levels(self.kernel_quantizer)

    @property
    def threshold(self):
        return _threshold(self.kernel_quantizer)

    def get_config(self):
        return {**super().get_config(),
                "kernel_quantizer": quantizers.serialize(self.kernel_quantizer),
                "input_quantizer": quantizers.serialize(self.input_quantizer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if any(k in config for k in _LEGACY_KEYS):
            # A layer saved before quantizers were objects: no bias, stride 1, 'same' padding.
            config.setdefault("use_bias", False)
        return cls(**config)


def _inner(q):
    return getattr(q, "quantizer", q)


def _levels(q):
    """How many values the (wrapped) quantizer outputs where they are a fixed few, else None."""
    values = getattr(_inner(q), "values", None)
    return None if values is None else len(values)


def _threshold(q):
    return float(getattr(_inner(q), "threshold", 0.0))


@keras.saving.register_keras_serializable(package="bnn")
class QuantDense(_QuantKernel, keras.layers.Dense):
    """Fully connected layer ``y = Q_in(x) @ Q(W) [+ b]`` with latent float weights ``W``.

    Parameters
    ----------
    units : int
    kernel_quantizer : str, dict, Quantizer or None
        Default ``'sign'``; None keeps the float kernel (and no clipping).
    input_quantizer : str, dict, Quantizer or None
    use_bias : bool
        Default False.
    **kwargs
        Any other argument of ``keras.layers.Dense``; the original ``quantize_weights``,
        ``levels``, ``threshold`` and ``rotation_seed`` are mapped onto ``kernel_quantizer``.
    """

    def __init__(self, units, kernel_quantizer="sign", input_quantizer=None, use_bias=False, **kwargs):
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units must be a positive integer. Received: units={units}")
        self._init_quantizers(kernel_quantizer, input_quantizer, _pop_legacy(kwargs), kwargs)
        super().__init__(units, use_bias=use_bias, **kwargs)

    def call(self, inputs, training=None):
        x = ops.matmul(self._quantized_input(inputs), self.quantized_kernel())
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return x if self.activation is None else self.activation(x)


@keras.saving.register_keras_serializable(package="bnn")
class QuantConv2D(_QuantKernel, keras.layers.Conv2D):
    """2-D convolution of ``Q_in(x)`` with the quantized kernel ``Q(W)``.

    Parameters
    ----------
    filters : int
    kernel_size : int or tuple
        Default 3.
    kernel_quantizer, input_quantizer, use_bias
        As in :class:`QuantDense`.
    padding : str
        Default ``'same'``.
    **kwargs
        Any other argument of ``keras.layers.Conv2D``, and the original ones as in QuantDense.
    """

    def __init__(self, filters, kernel_size=3, kernel_quantizer="sign", input_quantizer=None,
                 use_bias=False, padding="same", **kwargs):
        for name, value in (("filters", filters), ("kernel_size", kernel_size)):
            if isinstance(value, bool) or (not isinstance(value, (int, tuple, list))) or (
                    isinstance(value, int) and value < 1):
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value}")
        self._init_quantizers(kernel_quantizer, input_quantizer, _pop_legacy(kwargs), kwargs)
        super().__init__(filters, kernel_size, use_bias=use_bias, padding=padding, **kwargs)

    def call(self, inputs):
        outputs = self.convolution_op(self._quantized_input(inputs), self.quantized_kernel())
        if self.use_bias:
            bias_shape = ((1,) * (self.rank + 1) + (self.filters,) if self.data_format == "channels_last"
                          else (1, self.filters) + (1,) * self.rank)
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="bnn")
class QuantActivation(keras.layers.Layer):
    """Quantize activations: ``Q(x)`` forward, the quantizer's straight-through gradient backward.

    Parameters
    ----------
    quantizer : str, dict, Quantizer, bool or None
        Default ``'sign'``. None (or False) makes the layer hard tanh, ``clip(x, -1, 1)``: the float
        function whose gradient the straight-through estimator uses, so the float baseline keeps a
        nonlinearity (the original repository used the identity, which made it a linear network).
        The original ``quantize_activations``, ``levels`` and ``threshold`` are mapped onto it.
    """

    def __init__(self, quantizer="sign", **kwargs):
        legacy = {k: kwargs.pop(k) for k in ("quantize_activations", "levels", "threshold") if k in kwargs}
        super().__init__(**kwargs)
        if isinstance(quantizer, bool):
            legacy.setdefault("quantize_activations", quantizer)
        if legacy or isinstance(quantizer, bool):
            quantizer = _legacy_quantizer(legacy.get("quantize_activations", True), legacy.get("levels", 2),
                                          legacy.get("threshold", 0.0))
        self.quantizer = quantizers.get(quantizer)

    def call(self, inputs):
        if self.quantizer is None:
            return ops.clip(inputs, -1.0, 1.0)
        return self.quantizer(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def quantize_activations(self):
        return self.quantizer is not None

    @property
    def levels(self):
        return _levels(self.quantizer)

    @property
    def threshold(self):
        return _threshold(self.quantizer)

    def get_config(self):
        return {**super().get_config(), "quantizer": quantizers.serialize(self.quantizer)}
