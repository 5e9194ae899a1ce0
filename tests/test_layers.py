"""Quantized layers: forward rule, clipping after a step, config and .keras round trips."""

import keras
import numpy as np
import pytest

from bnn.constraints import Clip
from bnn.layers import QuantActivation, QuantConv2D, QuantDense

RNG = np.random.default_rng(0)


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_dense_equals_float_matmul_with_sign_of_kernel():
    layer = QuantDense(4)
    x = RNG.normal(size=(3, 6)).astype("float32")
    y = to_np(layer(x))
    w = layer.kernel.numpy()
    np.testing.assert_allclose(y, x @ np.where(w >= 0, 1.0, -1.0), rtol=1e-5, atol=1e-5)


def test_conv_equals_float_conv_with_quantized_kernel():
    layer = QuantConv2D(5, 3, levels=3, threshold=0.1)
    x = RNG.normal(size=(2, 7, 7, 3)).astype("float32")
    y = to_np(layer(x))
    w = layer.kernel.numpy()
    ref = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)
    ref.build(x.shape)
    ref.set_weights([np.sign(w) * (np.abs(w) > 0.1)])
    np.testing.assert_allclose(y, to_np(ref(x)), rtol=1e-5, atol=1e-5)


def test_unquantized_layer_uses_float_kernel():
    layer = QuantDense(3, quantize_weights=False)
    x = RNG.normal(size=(2, 4)).astype("float32")
    np.testing.assert_allclose(to_np(layer(x)), x @ layer.kernel.numpy(), rtol=1e-5)
    assert layer.kernel.constraint is None


def test_activation_quantizes_or_is_hard_tanh():
    x = np.array([[-2.0, -0.5, 0.0, 0.02, 3.0]], dtype="float32")
    np.testing.assert_array_equal(to_np(QuantActivation()(x)), [[-1, -1, 1, 1, 1]])
    np.testing.assert_array_equal(to_np(QuantActivation(levels=3, threshold=0.1)(x)), [[-1, -1, 0, 0, 1]])
    np.testing.assert_array_equal(to_np(QuantActivation(False)(x)), np.clip(x, -1, 1))


def test_latent_weights_clipped_after_every_step():
    model = keras.Sequential([keras.Input((4,)), QuantDense(2, kernel_initializer=keras.initializers.Constant(0.95))])
    # a huge learning rate pushes every weight far past +-1 in one step
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=100.0), loss="mse")
    x = np.ones((8, 4), "float32")
    model.fit(x, np.full((8, 2), -50.0, "float32"), epochs=1, batch_size=8, verbose=0)
    w = model.layers[0].kernel.numpy()
    assert np.all(np.abs(w) <= 1.0) and np.all(np.abs(w) == 1.0)


def test_clip_constraint():
    w = np.array([-3.0, 0.2, 1.5], "float32")
    np.testing.assert_array_equal(to_np(Clip(1.0)(w)), np.clip(w, -1, 1))
    assert Clip.from_config(Clip(0.5).get_config()).bound == 0.5


@pytest.mark.parametrize("layer", [
    QuantDense(3, levels=3, threshold=0.2, quantize_weights=False),
    QuantConv2D(4, 5, levels=3, threshold=0.1),
    QuantActivation(False, levels=3, threshold=0.3),
])
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("kwargs, match", [
    ({"units": 0}, "units=0"),
    ({"units": 3, "levels": 4}, "levels=4"),
    ({"units": 3, "levels": 3, "threshold": 1.0}, "threshold=1.0"),
])
def test_bad_arguments_quote_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantDense(**kwargs)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((6, 6, 2))
    x = QuantConv2D(3, 3, levels=3, threshold=0.05)(inputs)
    x = QuantActivation(levels=3, threshold=0.05)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, QuantDense(4)(x))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = RNG.normal(size=(5, 6, 6, 2)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.layers[1].get_config() == model.layers[1].get_config()


def test_kernel_gradient_is_straight_through():
    """dL/dW of the quantized layer equals dL/dW_q: the float layer's gradient at Q(W)."""
    layer = QuantDense(3)
    layer.build((None, 4))
    x = RNG.normal(size=(5, 4)).astype("float32")
    target = RNG.normal(size=(5, 3)).astype("float32")
    if keras.backend.backend() == "jax":
        import jax

        def loss(kernel):
            return ((layer.stateless_call([kernel], [], x)[0] - target) ** 2).sum()

        grad = to_np(jax.grad(loss)(layer.kernel.value))
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((layer(x) - target) ** 2)
        grad = to_np(tape.gradient(loss, layer.kernel.value))
    wq = np.where(layer.kernel.numpy() >= 0, 1.0, -1.0)
    np.testing.assert_allclose(grad, 2 * x.T @ (x @ wq - target), rtol=1e-4, atol=1e-4)
