"""Tests for bnn.network_geometry, bnn.layer_statistics and bnn.report_numbers: dot products, angles,
regression, batch-norm re-estimation; and the trained-network plot functions of bnn.plotting."""

import matplotlib

matplotlib.use("agg")

import dataclasses

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

from bnn import network_geometry as ng
from bnn import pattern_experiment as pe
from bnn import geometry, layer_statistics, plotting, report_numbers, theory
from bnn.config import RunConfig
from bnn.layer_tensors import inspect_network
from bnn.quantizers import Ternary
from bnn.model import build_model

LIMIT = np.arccos(np.sqrt(2 / np.pi))


# --------------------------------------------------------------------------------------------------
# Per-layer operations on hand-computed cases
# --------------------------------------------------------------------------------------------------


def test_filter_angles_of_known_filters():
    # Dense kernel (d = 2, 4 filters), one filter per column: orthogonal, itself, its sign, its negative.
    w_c = np.array([[1.0, 3.0, 3.0, 1.0],
                    [0.0, 4.0, 1.0, 1.0]])
    w_q = np.array([[0.0, 3.0, 1.0, -1.0],
                    [1.0, 4.0, 1.0, -1.0]])
    # (3, 1) against its sign (1, 1): cos = 4 / (sqrt(10) sqrt(2)) = 2 / sqrt(5).
    expected = [np.pi / 2, 0.0, np.arccos(2 / np.sqrt(5)), np.pi]
    np.testing.assert_allclose(layer_statistics.filter_angles(w_c, w_q), expected, atol=1e-7)


def test_filter_vectors_of_a_conv_kernel_are_its_flattened_filters():
    kernel = np.arange(2 * 2 * 3 * 5, dtype=float).reshape(2, 2, 3, 5) - 30
    vectors = layer_statistics.filter_vectors(kernel)
    assert vectors.shape == (5, 12)
    np.testing.assert_array_equal(vectors[3], kernel[..., 3].ravel())
    # a filter against its sign: u . sign(u) = ||u||_1 and ||sign(u)|| = sqrt(d)
    v = kernel[..., 1].ravel()
    expected = np.arccos(np.abs(v).sum() / (np.linalg.norm(v) * np.sqrt(12)))
    angles = layer_statistics.filter_angles(kernel, np.where(kernel >= 0, 1.0, -1.0))
    assert angles[1] == pytest.approx(expected, abs=1e-7)


def _explicit_conv(a, w):
    """'same' convolution (cross-correlation) of NHWC ``a`` with (k, k, c_in, c_out) ``w`` by loops."""
    n, h, wd, _ = a.shape
    k = w.shape[0]
    before = (k - 1) // 2
    padded = np.pad(a, ((0, 0), (before, k - 1 - before), (before, k - 1 - before), (0, 0)))
    out = np.zeros((n, h, wd, w.shape[-1]))
    for i in range(n):
        for y in range(h):
            for x in range(wd):
                patch = padded[i, y:y + k, x:x + k, :].ravel()
                out[i, y, x] = patch @ w.reshape(-1, w.shape[-1])
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_conv_dot_products_equal_the_explicit_sum(k):
    rng = np.random.default_rng(0)
    a = np.where(rng.standard_normal((2, 5, 4, 3)) >= 0, 1.0, -1.0)  # binary activations
    w = rng.standard_normal((k, k, 3, 6))
    out = ng.dot_products(a, w, "conv")
    assert out.shape == (2, 5, 4, 6)
    np.testing.assert_allclose(out, _explicit_conv(a, w), rtol=1e-5, atol=1e-5)
    # one corner by hand: the zero padding drops the patch entries outside the image
    if k == 3:
        corner = sum(a[1, y, x] @ w[y + 1, x + 1] for y in (0, 1) for x in (0, 1))
        np.testing.assert_allclose(out[1, 0, 0], corner, rtol=1e-5, atol=1e-5)


def test_dense_dot_products_are_the_matmul():
    a = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    w = np.array([[0.5, 1.0], [0.25, -1.0], [-2.0, 0.0]])
    np.testing.assert_allclose(ng.dot_products(a, w, "dense"), [[-1.75, 2.0], [-2.75, 0.0]])
    with pytest.raises(ValueError, match="kind must be 'conv' or 'dense'"):
        ng.dot_products(a, w, "pool")


def test_regression_of_exact_lines_and_of_constants():
    x = np.arange(10.0)
    fit = layer_statistics.regression(x, 2 * x + 1)
    assert fit["r"] == pytest.approx(1.0) and fit["slope"] == pytest.approx(2.0)
    assert fit["intercept"] == pytest.approx(1.0) and fit["n"] == 10
    assert layer_statistics.regression(x, -x)["r"] == pytest.approx(-1.0)
    # r = cov / (std std) for a hand-made pair: x = (0, 1, 2), y = (0, 2, 1) -> r = 0.5, slope 0.5
    fit = layer_statistics.regression([0, 1, 2], [0, 2, 1])
    assert fit["r"] == pytest.approx(0.5) and fit["slope"] == pytest.approx(0.5)
    assert layer_statistics.regression(x, np.ones(10))["r"] is None


def test_angle_density_and_its_peak():
    rng = np.random.default_rng(0)
    angles = rng.normal(0.6, 0.02, 2000)
    density = layer_statistics.angle_density(angles)
    assert np.trapezoid(density, layer_statistics.ANGLE_GRID) == pytest.approx(1.0, abs=1e-3)
    assert layer_statistics.peak_angle(angles) == pytest.approx(0.6, abs=0.005)
    # identical angles (no KDE defined): a narrow bump at that angle
    assert layer_statistics.peak_angle(np.full(5, 0.3)) == pytest.approx(0.3, abs=1e-3)


def test_value_fractions_and_theory_angles():
    w = np.array([[-1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, -1.0]])
    assert layer_statistics.value_fractions(w, 3) == {"-1": 0.25, "0": 0.25, "1": 0.5}
    assert layer_statistics.value_fractions(np.sign(w + 0.5), 2)["0"] == 0.0
    assert layer_statistics.theory_angle(2) == pytest.approx(LIMIT)
    assert layer_statistics.theory_angle(3, 0.0, 0.2) == pytest.approx(LIMIT)
    # at the optimal threshold (0.612 weight stds) the ternary angle is at its minimum, 25.85 degrees
    t_star = theory.optimal_ternary_threshold()
    assert np.degrees(layer_statistics.theory_angle(3, 0.02, 0.02 / t_star)) == pytest.approx(25.85, abs=0.01)
    assert layer_statistics.theory_angle_std(2, 100) == pytest.approx(theory.BINARY_ANGLE_STD_COEFFICIENT / 10)


# --------------------------------------------------------------------------------------------------
# A network's layers
# --------------------------------------------------------------------------------------------------


def _network(levels=2, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    config = RunConfig(data_set="cifar-10", conv=[3, 4], fc=[6], levels=levels,
                       threshold=0.05 if levels == 3 else 0.0, **kwargs).resolve()
    model = build_model(config)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # trained-looking batch norms, so activations are not all one sign
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 4, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 2, n).astype("float32"))
    x = rng.uniform(-1, 1, (7, 32, 32, 3)).astype("float32")
    return config, model, x


@pytest.mark.parametrize("levels", [2, 3])
def test_network_dot_products_match_the_layers_own_tensors(levels):
    """With every dot product kept, they are the layer's conv/matmul of inspect_network's tensors."""
    _, model, x = _network(levels)
    layers, scores = ng.network_geometry(model, x, n_points=10**9, batch_size=3)
    np.testing.assert_allclose(scores, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    inspected = inspect_network(model, x)
    assert [l.name for l in layers] == ["conv1", "conv2", "fc1", "out"]
    assert [l.quantized_input for l in layers] == [False, True, True, True]
    for mine, ref in zip(layers, inspected):
        def full(a, w):
            return ng.dot_products(a, w, ref.kind).ravel()

        assert mine.dim == ref.dim and mine.n_dot_products == full(ref.inputs, ref.weights_quantized).size
        np.testing.assert_array_equal(mine.weights_quantized, ref.weights_quantized)
        tol = {"rtol": 1e-4, "atol": 1e-4}
        np.testing.assert_allclose(mine.dots["Ab.Wb"], full(ref.inputs, ref.weights_quantized), **tol)
        np.testing.assert_allclose(mine.dots["Ab.Wc"], full(ref.inputs, ref.weights_continuous), **tol)
        np.testing.assert_allclose(mine.dots["Ac.Wb"], full(ref.inputs_continuous, ref.weights_quantized), **tol)
        assert len(mine.dots["Ap.Wb"]) == len(mine.dots["Ab.Wb"])
        assert not np.allclose(mine.dots["Ap.Wb"], mine.dots["Ab.Wb"])
    assert set(np.unique(layers[1].weights_quantized)) <= set(layer_statistics.quantized_values(levels))


def test_sampled_dot_products_are_paired_and_seeded():
    _, model, x = _network()
    full, _ = ng.network_geometry(model, x, n_points=10**9, batch_size=4)
    sampled, _ = ng.network_geometry(model, x, n_points=500, batch_size=4, seed=3)
    again, _ = ng.network_geometry(model, x, n_points=500, batch_size=4, seed=3)
    for f, s, a in zip(full, sampled, again):
        assert len(s.dots["Ab.Wb"]) == min(500, f.n_dot_products)
        for key in ng.DOT_PAIRS:
            np.testing.assert_array_equal(s.dots[key], a.dots[key])
        # each sampled (A^b.W^b, A^b.W^c, A^c.W^b) triple is one entry of the full arrays
        keys = ("Ab.Wb", "Ab.Wc", "Ac.Wb")
        entries = np.stack([f.dots[k] for k in keys], axis=1)  # (all, 3)
        for v in np.stack([s.dots[k] for k in keys], axis=1):  # float32 sums taken in another order
            assert np.abs(entries - v).max(axis=1).min() < 1e-4


def test_sampled_dot_products_equal_the_convolution_at_the_chosen_entries():
    rng = np.random.default_rng(5)
    acts = {"A": rng.standard_normal((3, 6, 5, 4)), "B": np.sign(rng.standard_normal((3, 6, 5, 4)))}
    weights = {"W": rng.standard_normal((3, 3, 4, 7)), "V": np.sign(rng.standard_normal((3, 3, 4, 7)))}
    pairs = {"A.W": ("A", "W"), "B.W": ("B", "W"), "B.V": ("B", "V")}
    index = np.sort(rng.choice(3 * 6 * 5 * 7, 200, replace=False))  # corners and borders included
    got = layer_statistics.sampled_dot_products(acts, weights, pairs, index)
    for key, (a, w) in pairs.items():
        np.testing.assert_allclose(got[key], ng.dot_products(acts[a], weights[w], "conv").ravel()[index],
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["B.V"], np.round(got["B.V"]))  # +-1 products: exact integers


def test_network_geometry_samples_conv_layers_or_convolves_them_alike(monkeypatch):
    _, model, x = _network()
    convolved, _ = ng.network_geometry(model, x, n_points=300, batch_size=4, seed=1, rotation_max_d=100)
    monkeypatch.setattr(ng, "_GATHER_COST", 0)  # every conv layer through sampled_dot_products
    sampled, _ = ng.network_geometry(model, x, n_points=300, batch_size=4, seed=1, rotation_max_d=100)
    for c, s in zip(convolved, sampled):
        assert c.dots.keys() == s.dots.keys()
        for key in c.dots:
            np.testing.assert_allclose(s.dots[key], c.dots[key], rtol=1e-4, atol=1e-4)


def test_layer_summary_numbers():
    _, model, x = _network(levels=3)
    layers, _ = ng.network_geometry(model, x, n_points=2000)
    s = report_numbers.layer_summary(layers[2])  # fc1: d = 16 * 16 * 4 after the 2x2 pool of conv2
    assert s["d"] == 1024 and s["n_filters"] == 6 and s["kind"] == "dense"
    angles = layers[2].angles()
    assert s["angle_mean"] == pytest.approx(angles.mean()) and s["angle_std"] == pytest.approx(angles.std())
    assert s["angle_mean_deg"] == pytest.approx(np.degrees(angles.mean()))
    w = layers[2].weights_continuous
    assert s["weight_std"] == pytest.approx(w.std()) and s["threshold_in_std"] == pytest.approx(0.05 / w.std())
    assert s["angle_theory"] == pytest.approx(theory.ternary_angle(0.05 / w.std()))
    assert s["zero_fraction"] == pytest.approx(np.mean(np.abs(w) <= 0.05))
    assert sum(s["value_fractions"].values()) == pytest.approx(1.0)
    assert -1 <= s["weights"]["r"] <= 1 and s["activations"]["n"] == s["n_sampled"]
    assert report_numbers.layer_summary(layers[0])["activations"] is None  # the image is not quantized


# --------------------------------------------------------------------------------------------------
# Batch-norm re-estimation and the binarization-pattern experiment
# --------------------------------------------------------------------------------------------------


def test_reestimated_batch_norm_holds_the_exact_statistics_of_its_input():
    _, model, x = _network(dropout_in=0.1, dropout_hidden=0.2)
    x_eval = x[:3] * 0.5
    out = pe.reestimate_batch_norm(model, x, batch_size=2, x_eval=x_eval)
    np.testing.assert_allclose(out, model.predict(x_eval, verbose=0), rtol=1e-4, atol=1e-4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            h = keras.Model(model.input, layer.input).predict(x, verbose=0)
            h = h.reshape(-1, h.shape[-1])
            np.testing.assert_allclose(layer.moving_mean.numpy(), h.mean(0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(layer.moving_variance.numpy(), h.var(0), rtol=1e-3, atol=1e-5)


def test_binarization_patterns():
    config = RunConfig(data_set="MNIST", conv=[], fc=[8, 8]).resolve()
    assert pe.binarization_patterns(config) == [
        ("all quantized (trained)", [1, 1, 1]), ("fc1 continuous", [0, 1, 1]),
        ("fc2 continuous", [1, 0, 1]), ("out continuous", [1, 1, 0]), ("all weights continuous", [0, 0, 0])]
    config = RunConfig(data_set="MNIST", conv=[], fc=[8], quantize_weights=[0, 1]).resolve()
    assert pe.binarization_patterns(config) == [("all quantized (trained)", [0, 1]), ("out continuous", [0, 0])]


def test_binarization_pattern_experiment_keeps_the_trained_network():
    config, model, x = _network()
    y = np.arange(len(x)) % 10
    before = [w.copy() for w in model.get_weights()]
    lines = []
    rows = pe.binarization_pattern_experiment(config, model, x, x, y, batch_size=4, print_fn=lines.append)
    assert [r["pattern"] for r in rows][0] == "all quantized (trained)" and len(rows) == 6 == len(lines)
    # the first pattern before re-estimation is the trained network itself
    assert rows[0]["accuracy_before"] == np.mean(model.predict(x, verbose=0).argmax(-1) == y)
    for r in rows:
        assert 0 <= r["accuracy_before"] <= 1 and 0 <= r["accuracy_after"] <= 1
    for w, b in zip(model.get_weights(), before):  # the trained batch-norm statistics are untouched
        np.testing.assert_array_equal(w, b)


def test_pattern_scores_equal_a_fresh_network_per_pattern():
    """The shared-prefix computation gives what building each pattern's network and refitting all of
    its batch norms gives."""
    config, model, x = _network(dropout_hidden=0.2)
    x_train, x_test = x[:5], x[3:] * 0.7
    seen = []
    for label, pattern, before, after in pe.pattern_scores(config, model, x_train, x_test, batch_size=2):
        variant = build_model(dataclasses.replace(config, quantize_weights=pattern).resolve())
        variant.set_weights(model.get_weights())
        np.testing.assert_allclose(before, variant.predict(x_test, verbose=0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(after, pe.reestimate_batch_norm(variant, x_train, 2, x_eval=x_test),
                                   rtol=1e-4, atol=1e-4)
        seen.append(label)
    assert sorted(seen) == sorted(label for label, _ in pe.binarization_patterns(config))
    assert seen[-1] == "all quantized (trained)"  # nothing to recompute: it comes free at the end


# --------------------------------------------------------------------------------------------------
# Plot functions: data in, (fig, ax) out, PDF and PNG written
# --------------------------------------------------------------------------------------------------


def test_trained_network_plots_return_figures_and_write_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000)
    y = 0.5 * x + 0.1 * rng.standard_normal(3000)
    fit = layer_statistics.regression(x, y)
    grid = layer_statistics.ANGLE_GRID
    angles = [rng.normal(0.6, 0.03, 50), rng.normal(0.63, 0.01, 200)]
    calls = {
        "panel": lambda p: plotting.plot_dot_product_panel(x, y, fit, "x", "y", save_path=p),
        "grid": lambda p: plotting.plot_dot_products(["a", "b", "c"], [x] * 3, [y] * 3, [fit] * 3, save_path=p),
        "angles": lambda p: plotting.plot_layer_angle_densities(
            ["a", "b"], grid, [layer_statistics.angle_density(a) for a in angles], LIMIT, save_path=p),
        "angles_ternary": lambda p: plotting.plot_layer_angle_densities(
            ["a", "b"], grid, [layer_statistics.angle_density(a) for a in angles], [0.5, 0.55], save_path=p),
        "spread": lambda p: plotting.plot_layer_angle_spread(
            ["a", "b"], [27, 1152], [0.05, 0.01], [0.06, 0.012], theory.BINARY_ANGLE_STD_COEFFICIENT, save_path=p),
        "weights": lambda p: plotting.plot_weight_distributions(
            ["a", "b"], [rng.uniform(-1, 1, 100), rng.normal(0, 0.1, 100)],
            [{"-1": 0.4, "0": 0.2, "1": 0.4}] * 2, threshold=0.02, log=False, save_path=p),
        "patterns": lambda p: plotting.plot_binarization_patterns(["all", "a continuous"], [0.9, 0.1], [0.9, 0.85],
                                                                  save_path=p),
    }
    for name, call in calls.items():
        fig, ax = call(tmp_path / name)
        assert isinstance(fig, plt.Figure)
        for suffix in (".pdf", ".png"):
            assert (tmp_path / f"{name}{suffix}").stat().st_size > 1000, name
        plt.close(fig)
    fig, axes = plotting.plot_dot_products(["a", "b", "c"], [x] * 3, [y] * 3, ncols=2)
    assert len(axes) == 3 and not list(tmp_path.glob("None*"))
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Exact reference values
# --------------------------------------------------------------------------------------------------


def test_permuted_r_expected_is_the_kernel_cosine_and_matches_iid_inputs():
    rng = np.random.default_rng(1)
    # filters of unequal norm, and of nonzero sums (so that a nonzero input mean matters)
    w_c = (rng.uniform(-1, 1, (40, 5)) + np.array([0.3, -0.2, 0.0, 0.4, 0.1])) * np.array([0.1, 0.3, 1.0, 0.5, 0.2])
    w_b = np.where(w_c >= 0, 1.0, -1.0)
    # zero-mean inputs: the cosine of the whole flattened kernels
    cos = np.sum(w_b * w_c) / np.sqrt(np.sum(w_b**2) * np.sum(w_c**2))
    assert layer_statistics.permuted_r_expected(w_b, w_c) == pytest.approx(cos)
    # i.i.d. +-1 inputs with mean 0.4 (P(+1) = 0.7): the pooled r of a large sample
    a = np.where(rng.uniform(size=(40000, 40)) < 0.7, 1.0, -1.0)
    measured = np.corrcoef((a @ w_b).ravel(), (a @ w_c).ravel())[0, 1]
    expected = layer_statistics.permuted_r_expected(w_b, w_c, mean=0.4, var=1 - 0.4**2)
    assert expected == pytest.approx(measured, abs=0.003) and abs(expected - cos) > 0.02


def test_next_quantizer_switches_at_the_batch_norm_shifted_threshold():
    bn = {"gamma": np.array([2.0, -1.0]), "beta": np.array([1.0, 0.5]), "mean": np.array([3.0, 0.0]),
          "variance": np.array([4.0 - 1e-4, 1.0 - 1e-4]), "epsilon": 1e-4}
    # filter 0: z* = 3 - 1 * 2 / 2 = 2; filter 1 (gamma < 0): +1 below z* = 0 - 0.5 * 1 / -1 = 0.5
    z = np.array([1.99, 2.01, 0.49, 0.51])
    filters = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(layer_statistics.next_quantized(z, filters, bn, 2, 0.0), [-1, 1, 1, -1])
    # ternary at t = 0.5: filter 0 is zero for |2 (z - 3) / 2 + 1| <= 0.5, i.e. z in [1.5, 2.5]
    ternary = layer_statistics.next_quantized(np.array([1.4, 1.6, 2.4, 2.6]), np.zeros(4, int), bn, 3, 0.5)
    np.testing.assert_array_equal(ternary, [-1, 0, 0, 1])


def test_disagreement_is_none_for_the_output_layer_and_uses_each_filters_threshold():
    _, model, x = _network()
    # thresholds on the scale of fc1's dot products (about 30), so that they decide some signs
    # whatever the backend's initial weights
    fc1_bn = model.get_layer("fc1_bn")
    fc1_bn.moving_mean.assign(np.random.default_rng(4).normal(0, 10, fc1_bn.moving_mean.shape).astype("float32"))
    layers, _ = ng.network_geometry(model, x, n_points=3000)
    assert layers[-1].disagreement("Ab.Wb", "Ab.Wc") is None
    assert report_numbers.layer_summary(layers[-1])["next_quantizer_differs"] is None
    fc1 = layers[2]
    bn = fc1.batch_norm
    z_star = bn["mean"] - bn["beta"] * np.sqrt(bn["variance"] + bn["epsilon"]) / bn["gamma"]
    x_, y_ = fc1.dots["Ab.Wb"], fc1.dots["Ab.Wc"]
    fit = layer_statistics.regression(x_, y_)
    y_ = (y_ - fit["intercept"]) / fit["slope"]  # A.W^c in A.W^b's units
    side = lambda v: (v >= z_star[fc1.filters]) == (bn["gamma"][fc1.filters] > 0)
    np.testing.assert_array_equal(fc1.disagreement("Ab.Wb", "Ab.Wc"), side(x_) != side(y_))
    # the quadrant rule (threshold 0 for every filter) would give another answer on these filters
    assert not np.array_equal(side(x_) != side(y_), (x_ >= 0) != (y_ >= 0))
    s = report_numbers.layer_summary(fc1)
    assert s["next_quantizer_differs"]["weights"] == pytest.approx(np.mean(side(x_) != side(y_)))
    assert s["permuted_r_expected"] == pytest.approx(
        layer_statistics.permuted_r_expected(fc1.weights_quantized, fc1.weights_continuous, fc1.input_mean,
                                             fc1.input_var))
    assert fc1.input_mean ** 2 + fc1.input_var == pytest.approx(1.0, abs=1e-6)  # +-1 entries


def test_initialization_angle_is_thirty_degrees_for_binary():
    _, model, x = _network()
    layers, _ = ng.network_geometry(model, x, n_points=100)
    assert np.degrees(layers[0].init_angle()) == pytest.approx(30.0)
    # a freshly initialized wide dense layer sits at it
    w = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=0)((4000, 64)))
    assert np.degrees(layer_statistics.filter_angles(w, np.sign(w)).mean()) == pytest.approx(30.0, abs=0.1)


def test_ternary_thresholds_in_units_of_what_they_quantize():
    _, model, x = _network(levels=3)
    # an activation threshold of its own, read from the layer's quantizer
    model.get_layer("conv2_act").quantizer = Ternary(0.3)
    layers, _ = ng.network_geometry(model, x, n_points=500, batch_size=3)
    inspected = inspect_network(model, x)
    for layer, ref in zip(layers[:-1], inspected[:-1]):
        s = report_numbers.layer_summary(layer)
        t_a = 0.3 if layer.name == "conv2" else 0.05
        assert s["activation_threshold"] == t_a and s["weight_threshold"] == 0.05
        assert s["activation_std"] == pytest.approx(ref.pre_activation.std(), rel=1e-4)
        assert s["activation_threshold_in_std"] == pytest.approx(t_a / ref.pre_activation.std(), rel=1e-4)
        assert s["activation_zero_fraction"] == pytest.approx(np.mean(ref.activation == 0))
        assert s["activation_zero_fraction"] == pytest.approx(np.mean(np.abs(ref.pre_activation) <= t_a), abs=1e-3)
        t_w = 0.05 / layer.weight_std
        assert s["weight_threshold_in_std"] == pytest.approx(t_w)
        assert s["weight_zero_fraction_theory"] == pytest.approx(2 * stats.norm.cdf(t_w) - 1)
    out = report_numbers.layer_summary(layers[-1])
    assert out["activation_threshold"] is None and out["weight_threshold"] == 0.05
    binary, _ = ng.network_geometry(_network()[1], x, n_points=100)
    assert report_numbers.layer_summary(binary[0])["weight_threshold"] is None


def test_rotated_kernel_and_the_rotation_numbers():
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 3, 2, 4))
    # R = I: plain sign
    np.testing.assert_array_equal(layer_statistics.rotated_kernel(kernel, np.eye(18)), np.sign(kernel))
    R = geometry.haar_rotation(18, rng)
    w = layer_statistics.rotated_kernel(kernel, R)
    np.testing.assert_allclose(w[..., 1].ravel(), R.T @ np.sign(R @ kernel[..., 1].ravel()), atol=1e-6)
    _, model, x = _network()
    layers, _ = ng.network_geometry(model, x, n_points=10**9, batch_size=4, rotation_max_d=100)
    assert [l.weights_rotated is not None for l in layers] == [True, True, False, True]  # d = 27, 27, 1024, 6
    conv2 = layers[1]
    full = ng.dot_products(inspect_network(model, x)[1].inputs, conv2.weights_rotated, "conv").ravel()
    np.testing.assert_allclose(conv2.dots["Ab.Wr"], full, rtol=1e-4, atol=1e-4)
    s = report_numbers.layer_summary(conv2)
    rot = s["rotation"]
    assert rot["d"] == 27 and rot["plain"]["angle_mean_deg"] == pytest.approx(s["angle_mean_deg"])
    assert rot["plain"]["r"] == pytest.approx(s["weights"]["r"])
    expected = np.degrees(layer_statistics.filter_angles(conv2.weights_continuous, conv2.weights_rotated)).mean()
    assert rot["rotated"]["angle_mean_deg"] == pytest.approx(expected)
    fit = layer_statistics.regression(conv2.dots["Ab.Wr"], conv2.dots["Ab.Wc"])
    assert rot["rotated"]["r"] == pytest.approx(fit["r"])
    assert report_numbers.layer_summary(layers[2])["rotation"] is None
