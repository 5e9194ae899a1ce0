"""Keras binary layers run on packed words (bnn.packed_layers): exactly the float layer's values."""

import dataclasses

import keras
import numpy as np
import pytest

from bnn import pattern_experiment as pe
from bnn.model import build_model
from bnn.packed_layers import PackedLayers
from conftest import MLP
from tiny_networks import images, tiny_network

CONV = dict(data_set="cifar-10", conv=[64, 70, 5], fc=[65], max_pool=[0, 1, 1])


def _inputs(model, layer, n=6):
    """The layer's inputs on random images: +-1 values from the network itself."""
    return keras.Model(model.input, layer.input).predict(images(model, n), verbose=0)


@pytest.mark.parametrize("config", [CONV, MLP], ids=["conv", "mlp"])
def test_packed_layers_give_exactly_the_float_layers_values(config):
    """Channels of 64, 70 (a part word) and 5; odd and even map sides; dense after conv and dense."""
    _, model = tiny_network(**config)
    chain = model.layers[1:]
    packed = PackedLayers(chain)
    names = [layer.name for layer in chain if packed.get(layer) is not None]
    assert names == (["conv2", "conv3", "fc1", "out"] if config is CONV else ["fc2", "out"])
    for name in names:
        layer = model.get_layer(name)
        x = _inputs(model, layer)
        assert set(np.unique(x)) == {-1.0, 1.0}
        got = packed.get(layer)(x).numpy()
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, keras.ops.convert_to_numpy(layer(x)))


def test_layers_without_a_binary_kernel_and_binary_input_are_not_packed():
    _, model = tiny_network(**CONV, levels=3, threshold=0.05)
    assert all(PackedLayers(model.layers[1:]).get(layer) is None for layer in model.layers)
    _, model = tiny_network(**CONV, quantize_activations=[1, 0, 1, 1])
    packed = PackedLayers(model.layers[1:])
    assert [layer.name for layer in model.layers if packed.get(layer)] == ["conv2", "fc1", "out"]
    _, model = tiny_network(**MLP, rotate_first_layer=True)
    packed = PackedLayers(model.layers[1:])
    model.get_layer("fc2").kernel_quantizer = None  # what a pattern of the experiment does
    assert [layer.name for layer in model.layers if packed.get(layer)] == ["out"]


def test_pattern_scores_are_the_same_packed_or_not():
    config, model = tiny_network(**CONV, dropout_hidden=0.2)
    x = images(model, 9)
    x_train, x_test = x[:6], x[4:] * 0.7
    runs = [list(pe.pattern_scores(config, model, x_train, x_test, batch_size=4, packed=p)) for p in (True, False)]
    assert [r[0] for r in runs[0]] == [r[0] for r in runs[1]]
    for (_, _, before, after), (_, _, before_f, after_f) in zip(*runs):
        np.testing.assert_array_equal(before, before_f)
        np.testing.assert_allclose(after, after_f, rtol=1e-5, atol=1e-5)


def test_reestimated_batch_norm_is_the_same_packed_or_not():
    config, model = tiny_network(**CONV)
    x = images(model, 7)
    twin = build_model(dataclasses.replace(config))
    twin.set_weights(model.get_weights())
    out = pe.reestimate_batch_norm(model, x, batch_size=3, x_eval=x[:4], packed=True)
    out_float = pe.reestimate_batch_norm(twin, x, batch_size=3, x_eval=x[:4], packed=False)
    np.testing.assert_allclose(out, out_float, rtol=1e-5, atol=1e-5)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_packed_layers_are_the_default_on_a_cpu_only(monkeypatch):
    import tensorflow as tf

    from bnn import packed_layers

    assert packed_layers.available()  # CI: a CPU, TensorFlow installed
    if keras.backend.backend() == "jax":
        import jax

        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
        assert not packed_layers.available()  # the float layers on the accelerator are faster
        monkeypatch.undo()
    # TensorFlow sees a GPU: cuDNN's float convolution is the faster engine there.
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else real(kind))
    assert not packed_layers.available()
