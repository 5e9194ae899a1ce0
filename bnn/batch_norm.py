"""Batch normalization on TensorFlow's fused kernel, numerically Keras's own layer.

Keras 3's ``BatchNormalization`` computes the batch moments and the normalization as separate ops,
each a pass over the activations, forward and backward. tf-keras (and Larq on it) calls
TensorFlow's fused kernel (``FusedBatchNormV3``) for 4-D inputs instead: on the paper's CIFAR-10
network at batch 50 the six batch norms' forward and backward passes take about a third of the
CPU time with it (``docs/distributed.md``). :class:`BatchNormalization` is Keras's layer with that kernel for
the common case: the TensorFlow backend, a 4-D channels-last input, no mask, no renorm, not
synchronized. Everything else (JAX, which compiles its own fusion; dense layers' 2-D inputs) goes
to Keras's ``call`` unchanged.

Its moving statistics follow Keras's rule, not tf-keras's: the moving variance averages the biased
batch variance (the fused kernel returns the unbiased one, which is converted back), so a network
trains and evaluates as it would with ``keras.layers.BatchNormalization``, within float rounding.
"""

import keras
from keras import ops

# The smallest epsilon the fused kernel honours: TensorFlow raises a smaller one to this value,
# which would change the results, so such a layer keeps Keras's own call.
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="bnn")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that runs on TensorFlow's fused kernel where it can.

    Takes exactly Keras's arguments and has its weights, so a checkpoint of either loads into the
    other; ``isinstance(layer, keras.layers.BatchNormalization)`` holds.
    """

    def _fusable(self, inputs, mask):
        # Keras keeps ``axis`` as one int; channels-last is 3 or -1 for 4-D inputs.
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and self.axis in (3, -1) and not self.renorm and not self.synchronized
                and self.epsilon >= _FUSED_MIN_EPSILON)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # As Keras: float16/bfloat16 inputs are normalized in float32.
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, x.dtype) if self.scale else tf.ones((channels,), x.dtype)
        beta = tf.cast(self.beta, x.dtype) if self.center else tf.zeros((channels,), x.dtype)
        if training and self.trainable:
            y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            n = tf.cast(tf.size(x) // channels, x.dtype)
            variance = unbiased * tf.maximum(n - 1.0, 0.0) / n
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.assign(ops.cast(moving, x.dtype) * self.momentum + batch * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.cast(self.moving_mean, x.dtype),
                variance=tf.cast(self.moving_variance, x.dtype), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        return ops.cast(y, self.compute_dtype)
