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


# -- quantizer objects --------------------------------------------------------------------------------

from bnn import quantizers as qz  # noqa: E402
from user_quantizers import Bare, RoundedClip  # noqa: E402

RNG = np.random.default_rng(7)

BUILT_INS = [qz.Sign(), qz.Ternary(0.1), qz.Ternary(0.6, relative=True), qz.ScaledSign(),
             qz.Uniform(2), qz.Uniform(4, step=0.3), qz.Uniform(3, step=0.5, relative=True), RoundedClip(2.0)]


@pytest.mark.parametrize("q", BUILT_INS, ids=repr)
def test_forward_matches_numpy_reference(q):
    x = RNG.normal(scale=0.7, size=(3, 3, 4, 5)).astype("float32")
    np.testing.assert_allclose(to_np(q(x)), q.numpy(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("q", BUILT_INS, ids=repr)
def test_default_backward_is_straight_through_with_cancellation(q):
    x = np.array([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], "float32")
    upstream = np.arange(1, 8, dtype="float32")
    _, g = value_and_grad(q, x, upstream)
    np.testing.assert_array_equal(g, upstream * np_ste_grad(x))


def test_sign_of_zero_is_plus_one_and_values():
    x = np.array([-0.2, 0.0, 0.3], "float32")
    np.testing.assert_array_equal(to_np(qz.Sign()(x)), [-1, 1, 1])
    np.testing.assert_array_equal(to_np(qz.Ternary(0.2)(x)), [0, 0, 1])  # strict threshold


def test_relative_ternary_threshold_is_in_units_of_the_tensor_std():
    x = np.array([-4.0, -1.0, 0.5, 2.0, 2.5], "float32")
    t = 0.5 * x.std()
    np.testing.assert_array_equal(to_np(qz.Ternary(0.5, relative=True)(x)), np.sign(x) * (np.abs(x) > t))


def test_zero_threshold_and_outputs_sign_declarations():
    # What geometry, report and pack ask instead of the number of levels.
    assert qz.Sign().zero_threshold() is None and qz.Uniform().zero_threshold(2.0) is None
    assert qz.Ternary(0.0).zero_threshold() == 0.0 and qz.Ternary(0.2).zero_threshold(5.0) == 0.2
    assert qz.Ternary(0.5, relative=True).zero_threshold(2.0) == 1.0
    assert qz.Rotated(qz.Ternary(0.2)).zero_threshold() == 0.2
    assert qz.outputs_sign(qz.Sign()) and qz.outputs_sign(qz.from_levels(2))
    assert not any(qz.outputs_sign(q) for q in (None, qz.Ternary(0.1), qz.ScaledSign(), qz.Rotated("sign")))


def test_scaled_sign_uses_mean_abs_of_each_output_filter():
    w = np.array([[0.5, -0.1], [-0.3, 0.2], [0.1, 0.6]], "float32")  # (d=3, filters=2)
    out = to_np(qz.ScaledSign()(w))
    np.testing.assert_allclose(out, np.where(w >= 0, 1, -1) * np.array([0.3, 0.3]), rtol=1e-6)
    conv = RNG.normal(size=(3, 3, 2, 4)).astype("float32")
    alpha = np.abs(conv).reshape(-1, 4).mean(0)
    np.testing.assert_allclose(np.abs(to_np(qz.ScaledSign()(conv))), np.broadcast_to(alpha, conv.shape), rtol=1e-6)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_uniform_has_2_to_the_bits_levels_a_step_apart(bits):
    q = qz.Uniform(bits)
    values = np.unique(to_np(q(np.linspace(-1.5, 1.5, 10_001).astype("float32"))))
    assert len(values) == 2**bits and q.precision == bits
    np.testing.assert_allclose(np.diff(values), q.step, rtol=1e-5)
    np.testing.assert_allclose(values[[0, -1]], [-1 + q.step / 2, 1 - q.step / 2], rtol=1e-5)


def test_rotated_is_r_transpose_q_r_w_with_identity_gradient():
    from bnn.geometry import haar_rotation

    q = qz.Rotated("ternary:threshold=0.1", seed=0)
    q.rotation = keras.ops.convert_to_tensor(haar_rotation(6, np.random.default_rng(1)).astype("float32"))
    w = RNG.uniform(-1, 1, size=(6, 3)).astype("float32")
    r = to_np(q.rotation)
    np.testing.assert_allclose(to_np(q(w)), r.T @ np_ternary(r @ w, 0.1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.numpy(w), to_np(q(w)), rtol=1e-5, atol=1e-6)
    upstream = RNG.normal(size=w.shape).astype("float32")
    _, g = value_and_grad(q, w * 3, upstream)  # no cancellation even outside [-1, 1]
    np.testing.assert_allclose(g, upstream, rtol=1e-6)


def test_declarations_of_the_built_ins():
    assert [q.precision for q in (qz.Sign(), qz.Ternary(), qz.ScaledSign(), qz.Uniform(5))] == [1, 2, 1, 5]
    assert [q.packing for q in (qz.Sign(), qz.Ternary(), qz.ScaledSign(), qz.Uniform(2))] == [
        "sign", "ternary", "sign", None]


def test_a_subclass_needs_only_quantize():
    q = Bare()
    x = np.array([0.2, 0.7, -3.0], "float32")
    np.testing.assert_array_equal(q.numpy(x), np.float32([0.0, 0.7, 0.0]))
    assert (q.precision, q.packing, q.theory(), q.best_parameter(), q.get_config()) == (32, None, None, None, {})
    assert q.spec() == "user_quantizers.Bare"
    with pytest.raises(NotImplementedError, match="must define quantize"):
        qz.Quantizer().quantize(x)


@pytest.mark.parametrize("q", [*BUILT_INS, qz.Rotated(qz.Uniform(3), seed=4), Bare()], ids=repr)
def test_keras_config_and_spec_round_trips(q):
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(q))
    assert type(again) is type(q) and again.get_config() == q.get_config()
    assert qz.get(q.spec()) == q and qz.get(q) == q and qz.get(q) is not q


@pytest.mark.parametrize("spec, expected", [
    ("sign", qz.Sign()),
    ("uniform:bits=2", qz.Uniform(2)),
    ("ternary:threshold=0.05", qz.Ternary(0.05)),
    (" ternary : threshold=0.6, relative=true", qz.Ternary(0.6, relative=True)),
    ("scaled_sign", qz.ScaledSign()),
    ("user_quantizers.RoundedClip:scale=3", RoundedClip(3.0)),
    ("rotated:seed=2,quantizer=ternary:threshold=0.1,relative=false", qz.Rotated(qz.Ternary(0.1), 2)),
])
def test_spec_parser(spec, expected):
    assert qz.parse_spec(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("sgn", r"unknown quantizer 'sgn': use one of .*sign"),
    ("uniform:bit=2", r"quantizer 'uniform' has no parameter 'bit': it takes bits, step, relative"),
    ("uniform:bits=9", r"bits must be an integer from 2 to 8. Received: bits=9"),
    ("ternary:threshold=1.5", r"threshold must be a number in \[0.0, 1.0\). Received: threshold=1.5"),
    ("ternary:0.05", r"expected name:param=value"),
    ("no_such_module_xyz.Q", r"cannot import 'no_such_module_xyz'"),
    ("numpy.ndarray", r"'numpy.ndarray' is not a bnn.quantizers.Quantizer subclass"),
])
def test_spec_errors_are_one_line(spec, match):
    with pytest.raises(qz.QuantizerError, match=match) as info:
        qz.parse_spec(spec)
    assert "\n" not in str(info.value)


# -- run configuration ----------------------------------------------------------------------------------


def test_original_flags_map_onto_quantizers():
    from bnn.config import RunConfig

    binary = RunConfig(data_set="MNIST").resolve()
    assert (binary.weight_quantizer, binary.activation_quantizer, binary.mode) == ("sign", "sign", "binary")
    ternary = RunConfig(data_set="MNIST", levels=3, threshold_weights=0.05, threshold_activations=0.3).resolve()
    assert qz.parse_spec(ternary.weight_quantizer) == qz.Ternary(0.05)
    assert qz.parse_spec(ternary.activation_quantizer) == qz.Ternary(0.3)
    # the same quantizer spelled out agrees with --levels 3
    same = RunConfig(data_set="MNIST", levels=3, threshold=0.05, weight_quantizer="ternary:threshold=0.05").resolve()
    assert same.weight_quantizer == "ternary:threshold=0.05,relative=false" and same.mode == "ternary"


def test_quantizer_flags_are_recorded_and_reloaded(tmp_path):
    from bnn.config import RunConfig

    config = RunConfig(data_set="MNIST", weight_quantizer="uniform:bits=4",
                       activation_quantizer="user_quantizers.RoundedClip:scale=2").resolve()
    assert config.weight_quantizer == "uniform:bits=4,step=0.125,relative=false" and config.mode == "uniform"
    config.save(tmp_path / "config.json")
    again = RunConfig.load(tmp_path / "config.json")
    assert again.differences(config) == {} and qz.parse_spec(again.activation_quantizer) == RoundedClip(2.0)


@pytest.mark.parametrize("flags, match", [
    ({"weight_quantizer": "uniform:bits=9"}, r"--weight_quantizer: uniform: bits must be an integer from 2 to 8"),
    ({"activation_quantizer": "tern"}, r"--activation_quantizer: unknown quantizer 'tern'"),
    ({"levels": 3, "threshold": 0.1, "weight_quantizer": "uniform:bits=2"},
     r"--weight_quantizer uniform:bits=2 contradicts --levels 3 --threshold_weights 0.1"),
])
def test_bad_quantizer_flags_are_one_line(flags, match):
    from bnn.config import RunConfig
    from bnn.errors import BnnError

    with pytest.raises(BnnError, match=match) as info:
        RunConfig(data_set="MNIST", **flags).resolve()
    assert "\n" not in str(info.value)
