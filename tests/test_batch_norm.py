"""bnn.batch_norm.BatchNormalization: Keras's batch norm, on TensorFlow's fused kernel for 4-D
inputs, must give Keras's outputs, gradients and moving statistics."""

import keras
import numpy as np
import pytest

from bnn.batch_norm import BatchNormalization


def _pair(scale, center=True, momentum=0.9, epsilon=1e-4):
    kwargs = dict(momentum=momentum, epsilon=epsilon, scale=scale, center=center)
    ours, theirs = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    rng = np.random.default_rng(0)
    x = rng.normal(1.5, 2.0, size=(6, 5, 4, 3)).astype("float32")
    ours.build(x.shape)
    theirs.build(x.shape)
    # Weights away from their initial values, so that gamma, beta and the moving statistics count.
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs, x


def _value_and_grad(layer, x, training):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.reshape(tf.range(tf.size(y), dtype=y.dtype), y.shape) / 100.0)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return y.numpy(), [g.numpy() for g in grads]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_batch_norm(scale, training):
    ours, theirs, x = _pair(scale)
    start = ours.moving_variance.numpy().copy()
    y, grads = _value_and_grad(ours, x, training)
    y_ref, grads_ref = _value_and_grad(theirs, x, training)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(grads_ref) == 2 + int(scale)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)
    # The moving statistics: updated by the biased batch variance in training, untouched otherwise.
    for w, w_ref in zip(ours.non_trainable_weights, theirs.non_trainable_weights):
        np.testing.assert_allclose(w.numpy(), w_ref.numpy(), rtol=1e-6, atol=1e-6)
    if training:
        batch_var = x.reshape(-1, 3).var(axis=0)
        np.testing.assert_allclose(ours.moving_variance.numpy(), 0.9 * start + 0.1 * batch_var, rtol=1e-5)


def test_other_inputs_take_keras_path_and_config_round_trips():
    layer = BatchNormalization(momentum=0.8, epsilon=1e-3, scale=False)
    x = np.random.default_rng(1).normal(size=(4, 7)).astype("float32")  # 2-D: Keras's own call
    ref = keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-3, scale=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=True)),
                               keras.ops.convert_to_numpy(ref(x, training=True)), rtol=1e-5, atol=1e-5)
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(copy) is BatchNormalization and copy.get_config() == layer.get_config()
    assert isinstance(copy, keras.layers.BatchNormalization)
