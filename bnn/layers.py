"""Layers with high-precision latent weights that are quantized in the forward pass.

Each weight layer keeps a float ``kernel`` (clipped to [-1, 1] after every step when it is
quantized) and uses ``quantize(kernel)`` to compute its output, so the optimizer updates the
latent weights through the straight-through estimator (Courbariaux et al. 2016). Biases are
left out: every weight layer in the paper's network is followed by batch normalization.
"""

import keras
import numpy as np
from keras import ops

from bnn import losses  # noqa: F401  (registers the loss: checkpoints reload compiled)
from bnn.constraints import Clip
from bnn.geometry import haar_rotation
from bnn.quantizers import check_quantizer_args, quantize, rotated_quantize


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


class _Quantized:
    """Argument checks and config shared by the quantizing layers."""

    def _init_quantizer(self, quantize_on, levels, threshold, flag_name):
        check_quantizer_args(levels, threshold)
        self.levels = int(levels)
        self.threshold = float(threshold)
        setattr(self, flag_name, bool(quantize_on))

    def _quantizer_config(self, flag_name):
        return {flag_name: getattr(self, flag_name), "levels": self.levels, "threshold": self.threshold}


class _QuantKernel(_Quantized):
    def _init_kernel_args(self, quantize_weights, levels, threshold, kernel_initializer,
                          rotation_seed):
        self._init_quantizer(quantize_weights, levels, threshold, "quantize_weights")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if rotation_seed is not None and not self.quantize_weights:
            raise ValueError("a rotation only applies to quantized weights. Received: "
                             f"rotation_seed={rotation_seed} with quantize_weights=False")
        self.rotation_seed = None if rotation_seed is None else int(rotation_seed)
        self.rotation = None

    def _add_kernel(self, shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=shape,
            initializer=self.kernel_initializer,
            constraint=Clip(1.0) if self.quantize_weights else None,
        )
        if self.rotation_seed is not None:
            # A weight, not a constant: checkpoints and .keras files carry the very matrix used.
            d = int(np.prod(shape[:-1]))
            self.rotation = self.add_weight(name="rotation", shape=(d, d), trainable=False,
                                            initializer=HaarRotation(self.rotation_seed))

    def quantized_kernel(self):
        """The kernel the forward pass uses: quantized latent weights, or the floats as they are.

        With a rotation R, each filter w (a column of the kernel flattened to (d, filters)) is
        quantized as ``R^T Q(R w)`` (`bnn.quantizers.rotated_quantize`).
        """
        if not self.quantize_weights:
            return self.kernel
        if self.rotation is not None:
            shape = self.kernel.shape
            flat = ops.reshape(self.kernel, (-1, shape[-1]))
            return ops.reshape(rotated_quantize(flat, self.rotation, self.levels, self.threshold),
                               shape)
        # The Clip constraint keeps |kernel| <= 1, where the cancellation mask is all ones:
        # skipping it gives the same gradient for two fewer passes over the kernel.
        return quantize(self.kernel, self.levels, self.threshold, cancel=False)

    def get_config(self):
        return {
            **super().get_config(),
            **self._quantizer_config("quantize_weights"),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "rotation_seed": self.rotation_seed,
        }


@keras.saving.register_keras_serializable(package="bnn")
class QuantDense(_QuantKernel, keras.layers.Layer):
    """Fully connected layer ``y = x @ Q(W)`` with latent float weights ``W``.

    Parameters
    ----------
    units : int
        Output dimension.
    quantize_weights : bool
        Quantize the kernel in the forward pass (and clip the latent kernel to [-1, 1]).
    levels : {2, 3}
        Binary or ternary weights.
    threshold : float in [0, 1)
        Ternarization threshold (ignored for ``levels=2``).
    rotation_seed : int or None
        If given, quantize each filter w as ``R^T Q(R w)`` with a fixed Haar-random R of shape
        (d, d) drawn from this seed and kept as the non-trainable weight ``rotation``.
    """

    def __init__(self, units, quantize_weights=True, levels=2, threshold=0.0,
                 kernel_initializer="glorot_uniform", rotation_seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer. Received: units={units}")
        self.units = units
        self._init_kernel_args(quantize_weights, levels, threshold, kernel_initializer,
                               rotation_seed)

    def build(self, input_shape):
        self._add_kernel((input_shape[-1], self.units))

    def call(self, inputs):
        return ops.matmul(inputs, self.quantized_kernel())

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="bnn")
class QuantConv2D(_QuantKernel, keras.layers.Layer):
    """2-D convolution (stride 1, 'same' padding, channels last) with a quantized kernel.

    Parameters
    ----------
    filters : int
        Number of output feature maps.
    kernel_size : int
        Side of the square filter.
    quantize_weights, levels, threshold, rotation_seed
        As in :class:`QuantDense`; d = kernel_size**2 * input channels.
    """

    def __init__(self, filters, kernel_size=3, quantize_weights=True, levels=2, threshold=0.0,
                 kernel_initializer="glorot_uniform", rotation_seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("filters", filters), ("kernel_size", kernel_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value}")
        self.filters = filters
        self.kernel_size = kernel_size
        self._init_kernel_args(quantize_weights, levels, threshold, kernel_initializer,
                               rotation_seed)

    def build(self, input_shape):
        self._add_kernel((self.kernel_size, self.kernel_size, input_shape[-1], self.filters))

    def call(self, inputs):
        return ops.conv(inputs, self.quantized_kernel(), strides=1, padding="same")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="bnn")
class QuantActivation(_Quantized, keras.layers.Layer):
    """Quantize activations: ``Q(x)`` forward, straight-through gradient backward.

    With ``quantize_activations=False`` the layer is hard tanh, ``clip(x, -1, 1)``: the float
    function whose gradient the straight-through estimator uses, so the float baseline keeps a
    nonlinearity (the original repository used the identity, which made it a linear network).
    """

    def __init__(self, quantize_activations=True, levels=2, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self._init_quantizer(quantize_activations, levels, threshold, "quantize_activations")

    def call(self, inputs):
        if not self.quantize_activations:
            return ops.clip(inputs, -1.0, 1.0)
        return quantize(inputs, self.levels, self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self._quantizer_config("quantize_activations")}
