"""Forward values and straight-through gradients of the quantizers, against numpy references."""

import keras
import numpy as np
import pytest

from bnn.quantizers import binarize, quantize, ternarize

X = np.array([-3.0, -1.0, -0.7, -0.05, 0.0, 0.05, 0.3, 1.0, 1.0001, 2.5], dtype="float32")


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_ternary(x, t):
    return np.sign(x) * (np.abs(x) > t)


def np_ste_grad(x):
    return (np.abs(x) <= 1).astype("float32")


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def value_and_grad(fn, x, upstream, jit=False):
    """fn(x) and d/dx sum(fn(x) * upstream), on whichever Keras backend is active."""
    if keras.backend.backend() == "jax":
        import jax

        def loss(x):
            return (fn(x) * upstream).sum()

        grad = jax.jit(jax.grad(loss)) if jit else jax.grad(loss)
        return to_np(fn(x)), to_np(grad(x))
    import tensorflow as tf

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            s = tf.reduce_sum(y * upstream)
        return y, tape.gradient(s, x)

    y, g = (tf.function(step) if jit else step)(tf.constant(x))
    return to_np(y), to_np(g)


def test_binarize_forward_is_exact_sign_with_sign0_plus1():
    y = to_np(binarize(X))
    np.testing.assert_array_equal(y, np_sign(X))
    assert y[X == 0][0] == 1.0
    assert set(np.unique(y)) == {-1.0, 1.0}


def test_binarize_passes_binary_input_unchanged():
    x = np.array([-1.0, 1.0, 1.0, -1.0], dtype="float32")
    np.testing.assert_array_equal(binarize(x), x)


@pytest.mark.parametrize("fn", [binarize, lambda x: ternarize(x, 0.1)])
def test_gradient_is_straight_through_with_cancellation(fn):
    upstream = np.arange(1, len(X) + 1, dtype="float32")
    _, grad = value_and_grad(fn, X, upstream)
    np.testing.assert_array_equal(grad, upstream * np_ste_grad(X))
    # +-1 themselves pass the gradient, just beyond them it is cancelled
    assert grad[X == 1.0][0] == upstream[X == 1.0][0] and grad[X == np.float32(1.0001)][0] == 0


@pytest.mark.parametrize("t", [0.0, 0.05, 0.3, 0.99])
def test_ternarize_forward(t):
    np.testing.assert_array_equal(ternarize(X, t), np_ternary(X, t))


def test_ternary_threshold_is_strict():
    x = np.array([-0.3, -0.2999, 0.2999, 0.3, 0.3001], dtype="float32")
    np.testing.assert_array_equal(ternarize(x, 0.3), [0, 0, 0, 0, 1])


def test_gradient_inside_compiled_function():
    _, grad = value_and_grad(binarize, X, np.ones_like(X), jit=True)
    np.testing.assert_array_equal(grad, np_ste_grad(X))


def test_quantize_dispatch_and_bad_levels():
    np.testing.assert_array_equal(quantize(X, 2), np_sign(X))
    np.testing.assert_array_equal(quantize(X, 3, 0.3), np_ternary(X, 0.3))
    with pytest.raises(ValueError, match="levels=4"):
        quantize(X, 4)


def test_random_tensor_matches_reference():
    x = np.random.default_rng(0).normal(size=(7, 5, 3)).astype("float32")
    np.testing.assert_array_equal(binarize(x), np_sign(x))
    np.testing.assert_array_equal(ternarize(x, 0.5), np_ternary(x, 0.5))


def test_without_cancellation_gradient_is_identity():
    upstream = np.arange(1, len(X) + 1, dtype="float32")
    for fn in (lambda x: binarize(x, cancel=False), lambda x: ternarize(x, 0.1, cancel=False)):
        y, grad = value_and_grad(fn, X, upstream)
        np.testing.assert_array_equal(grad, upstream)
    np.testing.assert_array_equal(y, np_ternary(X, 0.1))
