"""The losses of --loss_mode: values computed by hand, and the names a run asks for."""

import keras
import numpy as np
import pytest

from bnn.losses import get_loss, squared_hinge

SCORES = np.array([[2.0, -1.0, 0.5], [0.2, 0.3, -3.0]], np.float32)
LABELS = np.array([0, 2])


def test_squared_hinge_values_by_hand():
    # Sample 1, targets (+1, -1, -1): max(0, 1 - t s) = (0, 0, 1.5) -> mean of squares 2.25 / 3.
    # Sample 2, targets (-1, -1, +1): (1.2, 1.3, 4.0) -> (1.44 + 1.69 + 16) / 3.
    got = keras.ops.convert_to_numpy(squared_hinge(LABELS, SCORES))
    np.testing.assert_allclose(got, [0.75, 19.13 / 3], rtol=1e-6)
    # labels as a column, as Keras passes them, give the same
    column = keras.ops.convert_to_numpy(squared_hinge(LABELS[:, None], SCORES))
    np.testing.assert_array_equal(column, got)


def test_squared_hinge_is_zero_beyond_the_margin_and_its_gradient():
    # Every score on the right side with margin >= 1: no loss.
    assert float(keras.ops.sum(squared_hinge(np.array([1]), np.array([[-1.0, 3.0, -2.0]], np.float32)))) == 0.0
    # d/ds of mean_k max(0, 1 - t s)^2 = -2 t max(0, 1 - t s) / K: only the third class, t = -1
    # (central differences, exact on the quadratic part; the second class sits at the kink).
    eps, grad = 1e-2, []
    for k in range(3):
        step = np.zeros((1, 3), np.float32)
        step[0, k] = eps
        up, down = (float(squared_hinge(LABELS[:1], SCORES[:1] + sign * step)[0]) for sign in (1, -1))
        grad.append((up - down) / (2 * eps))
    np.testing.assert_allclose(grad, [0.0, 0.0, 2 * 1.5 / 3], atol=2e-3)


def test_get_loss():
    assert get_loss("hinge-loss") is squared_hinge
    softmax = get_loss("softmax")
    expected = -np.log(np.exp(SCORES[np.arange(2), LABELS]) / np.exp(SCORES).sum(1))
    np.testing.assert_allclose(float(softmax(LABELS, SCORES)), expected.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="Received: loss_mode='hinge'"):
        get_loss("hinge")
