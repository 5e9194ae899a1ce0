"""--rotate_first_layer: R^T Q(R w) forward, identity gradient, R stored with the model."""

import keras
import numpy as np
import tensorflow as tf

from bnn import geometry
from bnn.config import config_from_args
from bnn.geometry_log import kernel_statistics
from bnn.layers import HaarRotation, QuantConv2D, QuantDense
from bnn.model import build_model
from bnn.quantizers import rotated_quantize

RNG = np.random.default_rng(0)


def test_forward_is_the_generalized_binarization_and_backward_the_identity():
    R = geometry.haar_rotation(6, RNG).astype("float32")
    w = tf.Variable(RNG.uniform(-1, 1, size=(6, 4)).astype("float32"))
    upstream = RNG.normal(size=(6, 4)).astype("float32")
    with tf.GradientTape() as tape:
        q = rotated_quantize(w, R)
        loss = tf.reduce_sum(q * upstream)
    # numpy reference, one filter per row there
    np.testing.assert_allclose(q.numpy(), geometry.rotated_binarize(w.numpy().T, R).T, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), upstream)
    t = rotated_quantize(w, R, levels=3, threshold=0.5).numpy()
    codes = np.rint(R @ t)
    assert set(np.unique(codes)) == {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(codes, (R @ w.numpy() > 0.5) * 1.0 - (R @ w.numpy() < -0.5))


def test_conv_layer_keeps_a_fixed_haar_rotation_of_its_filter_dimension():
    layer = QuantConv2D(8, 3, rotation_seed=7, name="conv1")
    layer.build((None, 32, 32, 3))
    R = layer.rotation.numpy()
    assert R.shape == (27, 27) and not layer.rotation.trainable
    np.testing.assert_allclose(R @ R.T, np.eye(27), atol=1e-5)
    assert np.isclose(np.linalg.det(R), 1.0, atol=1e-4)
    np.testing.assert_array_equal(R, HaarRotation(7)((27, 27)).numpy())
    assert not np.allclose(R, HaarRotation(8)((27, 27)).numpy())
    assert [w.name for w in layer.trainable_weights] == ["kernel"]
    w = layer.kernel.numpy().reshape(27, 8)
    q = layer.quantized_kernel().numpy()
    assert q.shape == (3, 3, 3, 8)
    np.testing.assert_allclose(q.reshape(27, 8), R.T @ np.where(R @ w >= 0, 1.0, -1.0), atol=1e-5)
    assert QuantDense(4).rotation is None


def test_rotation_makes_the_uniform_initialization_look_gaussian():
    # sign(w) of uniform weights is 30 deg away; R^T sign(R w) is the Gaussian 37 deg (d = 784)
    plain, rotated = QuantDense(64), QuantDense(64, rotation_seed=0)
    for layer in (plain, rotated):
        layer.build((None, 784))
    rotated.kernel.assign(plain.kernel)
    angles = [kernel_statistics(l.kernel.numpy(), l.quantized_kernel().numpy())["angle_mean_deg"]
              for l in (plain, rotated)]
    assert abs(angles[0] - 30.0) < 0.5
    assert abs(angles[1] - np.degrees(np.arccos(np.sqrt(2 / np.pi)))) < 0.5


def test_model_rotates_only_the_first_layer_and_reloads_identically(tmp_path):
    config = config_from_args(["--data_set", "cifar-10", "--conv", "4", "--fc", "8",
                               "--rotate_first_layer", "--seed", "3"])
    model = build_model(config)
    assert model.get_layer("conv1").rotation.shape == (27, 27)
    assert model.get_layer("conv1").rotation_seed == 3
    assert model.get_layer("fc1").rotation is None and model.get_layer("out").rotation is None
    # move the weights so the reload cannot pass by re-drawing the same initialization
    model.get_layer("conv1").kernel.assign(RNG.uniform(-1, 1, size=(3, 3, 3, 4)))
    model.get_layer("conv1").rotation.assign(geometry.haar_rotation(27, RNG))
    x = RNG.uniform(-1, 1, size=(5, 32, 32, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.get_layer("conv1").rotation.numpy(),
                                  model.get_layer("conv1").rotation.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded.get_layer("conv1").quantized_kernel().numpy(),
                                  model.get_layer("conv1").quantized_kernel().numpy())
