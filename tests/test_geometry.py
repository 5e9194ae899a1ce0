"""Tests for bnn.geometry: angles, numpy quantizers, samplers, Haar rotations."""

import numpy as np
import pytest

from bnn import geometry


# --------------------------------------------------------------------------------------------------
# angle / cosine_similarity
# --------------------------------------------------------------------------------------------------


def test_angle_of_known_pairs():
    u = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    v = np.array([[0.0, 3.0], [5.0, 0.0], [-1.0, 0.0], [1.0, 1.0], [1.0, np.sqrt(3.0)]])
    np.testing.assert_allclose(geometry.angle(u, v), [np.pi / 2, 0.0, np.pi, np.pi / 4, np.pi / 3], atol=1e-12)


def test_angle_broadcasts_over_batch_shapes_and_axis():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 7))  # e.g. (kh, n_filters, d) with the vector on the last axis
    ref = rng.standard_normal(7)
    theta = geometry.angle(w, ref)
    assert theta.shape == (4, 3)
    expected = np.arccos(w @ ref / (np.linalg.norm(w, axis=-1) * np.linalg.norm(ref)))
    np.testing.assert_allclose(theta, expected, rtol=1e-12)
    # Vectors along axis 0 (as in a (d, n_filters) weight matrix) give the same per-vector angles.
    np.testing.assert_allclose(geometry.angle(w.T, ref[:, None, None], axis=0), theta.T, rtol=1e-12)


def test_angle_of_a_vector_with_itself_is_zero_despite_rounding():
    # Without clipping, rounding gives cos slightly above 1 for some of these and arccos returns NaN.
    rng = np.random.default_rng(1)
    u = rng.standard_normal((1000, 13))
    theta = geometry.angle(u, 3.7 * u)
    assert not np.any(np.isnan(theta))
    # cos comes out a few ulps below 1, and arccos(1 - k eps) ~ sqrt(2 k eps): 3e-8 for k = 2.
    np.testing.assert_allclose(theta, 0.0, atol=1e-7)


def test_angle_with_zero_vector_is_a_right_angle_without_warnings():
    with np.errstate(all="raise"):
        theta = geometry.angle(np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(theta, [np.pi / 2, np.pi / 2])
    assert geometry.cosine_similarity(np.zeros(3), np.zeros(3)) == 0.0


def test_angle_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        geometry.angle(np.ones(3), np.ones(4))


# --------------------------------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------------------------------


def test_binarize_maps_zero_to_plus_one_and_everything_to_exactly_plus_minus_one():
    x = np.array([-2.5, -1e-30, 0.0, -0.0, 1e-30, 3.0])
    np.testing.assert_array_equal(geometry.binarize(x), [-1, -1, 1, 1, 1, 1])


def test_binarize_leaves_binary_input_unchanged_and_keeps_float32():
    b = np.array([[1, -1], [-1, 1]], dtype=np.float32)
    out = geometry.binarize(b)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, b)
    assert geometry.binarize(np.array([0, -3])).dtype == np.float64


def test_ternarize_uses_a_strict_threshold():
    x = np.array([-0.5, -0.1, -0.05, 0.0, 0.05, 0.1, 0.5])
    np.testing.assert_array_equal(geometry.ternarize(x, 0.1), [-1, 0, 0, 0, 0, 0, 1])


def test_ternarize_at_threshold_zero_is_binarize_for_nonzero_input():
    x = np.random.default_rng(2).standard_normal((5, 6))
    np.testing.assert_array_equal(geometry.ternarize(x, 0.0), geometry.binarize(x))


def test_ternarize_rejects_negative_threshold_with_its_value():
    with pytest.raises(ValueError, match="-0.1"):
        geometry.ternarize(np.ones(3), -0.1)


def test_straight_through_gradient_is_one_inside_the_clip_including_the_boundary():
    x = np.array([-1.5, -1.0, -0.3, 0.0, 0.999, 1.0, 1.001])
    np.testing.assert_array_equal(geometry.straight_through_gradient(x), [0, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(geometry.straight_through_gradient(x, clip_value=0.5), [0, 0, 1, 1, 0, 0, 0])


def test_straight_through_gradient_is_the_derivative_of_hard_tanh():
    x = np.array([-1.7, -0.6, 0.2, 0.8, 1.3])  # away from the kinks at +-1
    h = 1e-6
    numeric = (geometry.hard_tanh(x + h) - geometry.hard_tanh(x - h)) / (2 * h)
    np.testing.assert_allclose(numeric, geometry.straight_through_gradient(x), atol=1e-8)
    np.testing.assert_array_equal(geometry.hard_tanh(np.array([-3.0, 0.25, 2.0])), [-1.0, 0.25, 1.0])


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------


def test_samplers_are_seeded_and_have_the_requested_shapes():
    a = geometry.gaussian_vectors(4, 6, np.random.default_rng(3))
    b = geometry.gaussian_vectors(4, 6, np.random.default_rng(3))
    assert a.shape == (4, 6)
    np.testing.assert_array_equal(a, b)
    s = geometry.random_sign_vectors(5, 7, np.random.default_rng(3))
    assert s.shape == (5, 7) and s.dtype == np.float64
    assert set(np.unique(s)) == {-1.0, 1.0}


def test_samplers_reject_bad_sizes():
    with pytest.raises(ValueError, match="d=0"):
        geometry.gaussian_vectors(3, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n=2.5"):
        geometry.random_sign_vectors(2.5, 3, np.random.default_rng(0))


def test_exponential_scales_formula():
    np.testing.assert_allclose(geometry.exponential_scales(4, k=0.1), np.exp(0.1 * (np.arange(4) - 2)))
    np.testing.assert_array_equal(geometry.exponential_scales(5, k=0.0), np.ones(5))


def test_correlated_vectors_have_the_exponential_standard_deviations():
    n, d = 20_000, 8
    u = geometry.correlated_gaussian_vectors(n, d, np.random.default_rng(4), k=0.5)
    ratio = u.std(axis=0) / geometry.exponential_scales(d, k=0.5)
    # The relative standard error of a Gaussian sample std is 1/sqrt(2n) = 0.5 %; allow 5 of them.
    np.testing.assert_allclose(ratio, 1.0, atol=5 / np.sqrt(2 * n))


def test_random_sign_vectors_are_fair_coins():
    n, d = 2000, 100
    s = geometry.random_sign_vectors(n, d, np.random.default_rng(5))
    # Each entry has mean 0 and variance 1, so the overall mean has standard error 1/sqrt(n d).
    assert abs(s.mean()) < 5 / np.sqrt(n * d)


# --------------------------------------------------------------------------------------------------
# Haar rotations and the generalized binarization transformation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 3, 10, 500])
def test_haar_rotation_is_orthogonal_with_determinant_one(d):
    rng = np.random.default_rng(d)
    for _ in range(3):  # a determinant of -1 would turn up in half the draws without the correction
        R = geometry.haar_rotation(d, rng)
        assert R.shape == (d, d)
        np.testing.assert_allclose(R.T @ R, np.eye(d), atol=1e-12)
        sign, logdet = np.linalg.slogdet(R)
        assert sign == 1.0 and abs(logdet) < 1e-10


def test_haar_rotation_has_the_moments_of_the_haar_measure():
    # On Haar SO(3): E R_00 = 0 and E tr R = 0 with Var tr R = 1 and Var R_00 = 1/3. A QR without
    # the sign correction fails the first (LAPACK makes Q_00 <= 0 always).
    n = 3000
    rng = np.random.default_rng(6)
    Rs = np.stack([geometry.haar_rotation(3, rng) for _ in range(n)])
    assert abs(Rs[:, 0, 0].mean()) < 5 * np.sqrt(1 / 3 / n)
    trace = np.trace(Rs, axis1=1, axis2=2)
    assert abs(trace.mean()) < 5 / np.sqrt(n)
    # Var tr = 1; the standard error of a sample variance is sqrt((m4 - 1) / n), m4 from the data.
    assert abs(trace.var() - 1) < 5 * np.sqrt((np.mean(trace**4) - 1) / n)


def test_rotated_binarize_with_identity_is_binarize():
    u = np.random.default_rng(7).standard_normal((3, 5))
    np.testing.assert_array_equal(geometry.rotated_binarize(u, np.eye(5)), geometry.binarize(u))


def test_rotated_binarize_preserves_the_angle_of_the_rotated_problem():
    rng = np.random.default_rng(8)
    d = 20
    R = geometry.haar_rotation(d, rng)
    u = rng.standard_normal((2, 4, d))  # any batch shape
    b = geometry.rotated_binarize(u, R)
    assert b.shape == u.shape
    Ru = u @ R.T
    np.testing.assert_allclose(geometry.angle(u, b), geometry.angle(Ru, geometry.binarize(Ru)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(b, axis=-1), np.sqrt(d))  # R^T of a +-1 vector


def test_rotated_binarize_rejects_a_wrongly_shaped_rotation():
    with pytest.raises(ValueError, match=r"R.shape=\(4, 4\)"):
        geometry.rotated_binarize(np.ones((2, 5)), np.eye(4))
