"""Tests for bnn.theory: each closed form against its limits and a seeded Monte Carlo estimate.

Tolerances are 5 standard errors of the Monte Carlo estimate, computed from the sample itself
(for a mean: std / sqrt(n); for a standard deviation: sqrt(m4 - var^2) / (2 std sqrt(n))), plus,
where a large-d formula meets a finite d, an explicit allowance for the O(1/d) gap.
"""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from bnn import geometry, theory


def _se_mean(x):
    return x.std() / np.sqrt(x.size)


def _se_std(x):
    """Standard error of the sample standard deviation (delta method on the sample variance)."""
    c = x - x.mean()
    var = np.mean(c**2)
    return np.sqrt((np.mean(c**4) - var**2) / x.size) / (2 * np.sqrt(var))


# --------------------------------------------------------------------------------------------------
# Binarization
# --------------------------------------------------------------------------------------------------


def test_binary_limit_values():
    assert theory.BINARY_LIMIT_COSINE == pytest.approx(0.7978845608, abs=1e-10)
    assert np.degrees(theory.binary_limit_angle()) == pytest.approx(37.0714, abs=1e-4)
    assert theory.BINARY_ANGLE_STD_COEFFICIENT == pytest.approx(0.3521801, abs=1e-7)
    assert np.degrees(theory.BINARY_ANGLE_STD_COEFFICIENT) == pytest.approx(20.1784, abs=1e-4)


def test_binary_cosine_moments_at_small_d():
    # d = 1: cos = 1 surely. d = 2: E cos = E(|cos a| + |sin a|)/sqrt(2) over a uniform angle = 2 sqrt(2)/pi.
    assert theory.binary_cosine_mean(1) == pytest.approx(1.0, abs=1e-14)
    assert theory.binary_cosine_std(1) == 0.0
    assert theory.binary_cosine_mean(2) == pytest.approx(2 * np.sqrt(2) / np.pi, abs=1e-14)


def test_binary_cosine_moments_tend_to_the_large_d_forms():
    d = 10**6
    # E cos = sqrt(2/pi) (1 + 1/(4d) + ...): relative gap 2.5e-7 at d = 1e6.
    assert theory.binary_cosine_mean(d) == pytest.approx(np.sqrt(2 / np.pi), rel=1e-6)
    assert theory.binary_cosine_std(d) * np.sqrt(d) == pytest.approx(np.sqrt(1 - 3 / np.pi), rel=1e-4)


@pytest.mark.parametrize("d", [3, 10, 40])
def test_binary_cosine_moments_match_monte_carlo(d):
    u = geometry.gaussian_vectors(50_000, d, np.random.default_rng(d))
    cos = geometry.cosine_similarity(u, geometry.binarize(u))
    assert abs(cos.mean() - theory.binary_cosine_mean(d)) < 5 * _se_mean(cos)
    assert abs(cos.std() - theory.binary_cosine_std(d)) < 5 * _se_std(cos)


def test_binary_angle_std_matches_monte_carlo_at_large_d():
    d, n = 400, 20_000
    u = geometry.gaussian_vectors(n, d, np.random.default_rng(11))
    theta = geometry.angle(u, geometry.binarize(u))
    # 5 standard errors, plus 1 % for the O(1/d) error of the delta method (about 0.5 % at d = 300
    # in a 1e5-sample check; the exact cosine std of binary_cosine_std is within 0.1 % of it here).
    assert abs(theta.std() - theory.binary_angle_std(d)) < 5 * _se_std(theta) + 0.01 * theory.binary_angle_std(d)
    assert abs(theta.mean() - theory.binary_limit_angle()) < 5 * _se_mean(theta) + np.radians(0.05)


def test_binary_angle_std_is_ternary_at_threshold_zero():
    d = np.array([3, 27, 1000])
    np.testing.assert_allclose(theory.ternary_angle_std(0.0, d), theory.binary_angle_std(d), rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# Two independent vectors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 10, 1000])
def test_gaussian_angle_pdf_is_normalised(d):
    total, _ = integrate.quad(theory.gaussian_angle_pdf, 0, np.pi, args=(d,), points=[np.pi / 2], limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)


def test_gaussian_angle_pdf_closed_forms():
    theta = np.linspace(0, np.pi, 7)
    np.testing.assert_allclose(theory.gaussian_angle_pdf(theta, 2), 1 / np.pi)
    np.testing.assert_allclose(theory.gaussian_angle_pdf(theta, 3), np.sin(theta) / 2, atol=1e-15)
    assert theory.gaussian_angle_pdf(-0.1, 5) == 0.0 and theory.gaussian_angle_pdf(3.2, 5) == 0.0
    # (1 + cos theta)/2 ~ Beta((d-1)/2, (d-1)/2): compare the cdfs at a few angles.
    d = 10
    for x in [0.7, 1.3, 2.0]:
        cdf, _ = integrate.quad(theory.gaussian_angle_pdf, 0, x, args=(d,))
        assert cdf == pytest.approx(stats.beta.sf((1 + np.cos(x)) / 2, (d - 1) / 2, (d - 1) / 2), abs=1e-10)


def test_gaussian_angle_distribution_matches_monte_carlo():
    d, n = 10, 50_000
    rng = np.random.default_rng(12)
    theta = geometry.angle(geometry.gaussian_vectors(n, d, rng), geometry.gaussian_vectors(n, d, rng))
    assert abs(theta.std() - theory.gaussian_angle_std(d)) < 5 * _se_std(theta)
    assert abs(theta.mean() - np.pi / 2) < 5 * _se_mean(theta)
    p, _ = integrate.quad(theory.gaussian_angle_pdf, 0, np.pi / 3, args=(d,))
    # Binomial standard error of a fraction.
    assert abs(np.mean(theta < np.pi / 3) - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_gaussian_angle_std_known_values():
    assert theory.gaussian_angle_std(2) == pytest.approx(np.pi / np.sqrt(12), rel=1e-10)  # uniform on [0, pi]
    assert theory.gaussian_angle_std(3) == pytest.approx(np.sqrt(np.pi**2 / 4 - 2), rel=1e-10)  # sin/2 density
    assert theory.gaussian_angle_std(10_000) * np.sqrt(10_000) == pytest.approx(1.0, rel=1e-3)


def test_sign_vector_angle_distribution_small_cases():
    angles, pmf = theory.sign_vector_angle_distribution(1)
    np.testing.assert_allclose(angles, [0, np.pi])
    np.testing.assert_allclose(pmf, [0.5, 0.5])
    angles, pmf = theory.sign_vector_angle_distribution(2)
    np.testing.assert_allclose(angles, [0, np.pi / 2, np.pi])
    np.testing.assert_allclose(pmf, [0.25, 0.5, 0.25])


@pytest.mark.parametrize("n", [10, 101, 1000])
def test_sign_vector_cosine_has_variance_one_over_n(n):
    angles, pmf = theory.sign_vector_angle_distribution(n)
    assert np.all(np.diff(angles) > 0)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.sum(pmf * np.cos(angles) ** 2) == pytest.approx(1 / n, rel=1e-10)


def test_sign_vector_angle_distribution_matches_monte_carlo():
    n, n_samples = 10, 50_000
    rng = np.random.default_rng(13)
    theta = geometry.angle(geometry.random_sign_vectors(n_samples, n, rng), geometry.random_sign_vectors(n_samples, n, rng))
    angles, pmf = theory.sign_vector_angle_distribution(n)
    # Every sampled angle is one of the n + 1 possible values, with the binomial frequencies.
    index = np.argmin(np.abs(theta[:, None] - angles[None, :]), axis=1)
    np.testing.assert_allclose(theta, angles[index], atol=1e-7)
    freq = np.bincount(index, minlength=n + 1) / n_samples
    np.testing.assert_array_less(np.abs(freq - pmf), 5 * np.sqrt(pmf * (1 - pmf) / n_samples) + 1e-12)
    assert abs(theta.std() - theory.sign_vector_angle_std(n)) < 5 * _se_std(theta)


# --------------------------------------------------------------------------------------------------
# Ternarization
# --------------------------------------------------------------------------------------------------


def test_ternary_threshold_zero_is_binary():
    assert theory.ternary_cosine(0.0) == pytest.approx(np.sqrt(2 / np.pi), abs=1e-15)
    assert theory.ternary_angle(0.0) == pytest.approx(theory.binary_limit_angle(), abs=1e-15)
    assert theory.ternary_zero_fraction(0.0) == 0.0


def test_ternary_zero_fraction_is_two_phi_minus_one():
    t = np.array([0.1, 0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(theory.ternary_zero_fraction(t), 2 * stats.norm.cdf(t) - 1, rtol=1e-12)


def test_ternary_cosine_is_the_ratio_of_gaussian_integrals():
    # Recompute E[|u| 1{|u|>t}] / sqrt(P(|u|>t)) by quadrature, independently of phi/Q identities.
    for t in [0.3, 1.0, 2.5]:
        num = 2 * integrate.quad(lambda x: x * stats.norm.pdf(x), t, np.inf)[0]
        p = 2 * integrate.quad(stats.norm.pdf, t, np.inf)[0]
        assert theory.ternary_cosine(t) == pytest.approx(num / np.sqrt(p), rel=1e-9)


def test_optimal_ternary_threshold():
    t_star = theory.optimal_ternary_threshold()
    assert t_star == pytest.approx(0.6120, abs=1e-4)
    assert theory.ternary_cosine(t_star) == pytest.approx(0.8999, abs=1e-4)
    found = optimize.minimize_scalar(lambda t: -theory.ternary_cosine(t), bounds=(0, 3), method="bounded",
                                     options={"xatol": 1e-9})
    assert found.x == pytest.approx(t_star, abs=1e-6)
    assert theory.ternary_cosine(t_star) > theory.ternary_cosine(t_star + 0.01)
    assert theory.ternary_cosine(t_star) > theory.ternary_cosine(t_star - 0.01)


@pytest.mark.parametrize("t", [theory.ASSUMED_TERNARY_THRESHOLD, 0.6, 1.2])
def test_ternary_angle_and_zero_fraction_match_monte_carlo(t):
    d, n = 1000, 3000
    u = geometry.gaussian_vectors(n, d, np.random.default_rng(int(100 * t)))
    q = geometry.ternarize(u, t)
    theta = geometry.angle(u, q)
    # Allowance for finite d: the mean angle sits O(1/d) from its limit (0.02 deg at t = 0, d = 1000).
    assert abs(theta.mean() - theory.ternary_angle(t)) < 5 * _se_mean(theta) + np.radians(0.05)
    # 3 % on top of 5 standard errors (~6 %) for the delta method at d = 1000.
    std = theory.ternary_angle_std(t, d)
    assert abs(theta.std() - std) < 5 * _se_std(theta) + 0.03 * std
    p = theory.ternary_zero_fraction(t)
    assert abs(np.mean(q == 0) - p) < 5 * np.sqrt(p * (1 - p) / (n * d))


def test_quantization_angle_pdf_large_d_is_a_normal_density_at_the_ternary_angle():
    t, d = 0.5, 1000
    total, _ = integrate.quad(theory.quantization_angle_pdf_large_d, 0, np.pi, args=(d, t), points=[theory.ternary_angle(t)])
    assert total == pytest.approx(1.0, abs=1e-8)
    peak = theory.quantization_angle_pdf_large_d(theory.ternary_angle(t), d, t)
    assert peak == pytest.approx(1 / (np.sqrt(2 * np.pi) * theory.ternary_angle_std(t, d)), rel=1e-12)


def test_assumed_threshold_in_standard_deviations():
    assert theory.ASSUMED_TERNARY_THRESHOLD == pytest.approx(0.1111, abs=1e-4)


def test_theory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="t >= 0"):
        theory.ternary_cosine(-0.5)
    with pytest.raises(ValueError, match="d >= 2"):
        theory.gaussian_angle_pdf(1.0, 1)
    with pytest.raises(ValueError, match="d >= 1"):
        theory.binary_angle_std(0)


def test_uniform_quantization_angle():
    assert np.degrees(theory.uniform_quantization_angle(0.0)) == pytest.approx(30.0)
    rng = np.random.default_rng(0)
    u = rng.uniform(-1, 1, (400, 3000))  # std 1/sqrt(3)
    for t in (0.0, 0.5, 1.2):
        q = np.sign(u) * (np.abs(u) > t / np.sqrt(3))
        cos = np.sum(u * q, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(q, axis=1)
        assert np.arccos(cos).mean() == pytest.approx(theory.uniform_quantization_angle(t), abs=2e-3)
    assert theory.uniform_quantization_angle(2.0) == pytest.approx(np.pi / 2)  # t > sqrt(3): all zeros
    assert theory.glorot_uniform_std(100, 50) == pytest.approx(np.sqrt(6 / 150) / np.sqrt(3))


# -- the theory every quantizer object declares, against Monte Carlo -----------------------------------

from bnn import quantizers as qz  # noqa: E402


def _monte_carlo(q, d, n, std, seed):
    """Angles between n Gaussian vectors of dimension d (entries N(0, std^2)) and their quantization,
    and the fraction of zeros, with the quantizer's own numpy reference (one vector per column)."""
    x = np.random.default_rng(seed).normal(scale=std, size=(d, n)).astype("float32")
    y = q.numpy(x).astype("float64")
    cos = (x * y).sum(0) / np.linalg.norm(x, axis=0) / np.linalg.norm(y, axis=0)
    return np.arccos(np.clip(cos, -1, 1)), float(np.mean(y == 0))


@pytest.mark.parametrize("q, std", [
    (qz.Sign(), 1.0), (qz.Ternary(0.05), 0.1), (qz.Ternary(0.612, relative=True), 3.0), (qz.ScaledSign(), 0.5),
    (qz.Uniform(2), 0.4), (qz.Uniform(3, step=0.6, relative=True), 1.0), (qz.Uniform(4), 0.3),
    (qz.Uniform(8, step=0.02), 1.0),
], ids=repr)
def test_every_built_in_theory_matches_monte_carlo(q, std):
    d, n = 2000, 400
    angles, zeros = _monte_carlo(q, d, n, std, seed=1)
    t = q.theory(std)
    # the mean of n angles has standard error c / sqrt(d n); allow 5 of them plus the O(1/d) bias
    c = t["angle_std_coefficient"]
    assert angles.mean() == pytest.approx(t["angle"], abs=5 * c / np.sqrt(d * n) + 1e-3)
    assert angles.std() * np.sqrt(d) == pytest.approx(c, rel=0.15)
    assert zeros == pytest.approx(t["zero_fraction"], abs=0.01)


def test_step_theory_reproduces_the_closed_forms():
    for t in (0.0, 0.3, 0.612, 1.5):
        numbers = qz.Ternary(t, relative=True).theory()
        assert numbers["angle"] == pytest.approx(float(theory.ternary_angle(t)), rel=1e-9)
        assert numbers["angle_std_coefficient"] == pytest.approx(float(theory.ternary_angle_std(t, 1)), rel=1e-9)
        assert numbers["zero_fraction"] == pytest.approx(float(theory.ternary_zero_fraction(t)), abs=1e-12)
    assert qz.Sign().theory()["angle_std_coefficient"] == pytest.approx(theory.BINARY_ANGLE_STD_COEFFICIENT)
    assert qz.ScaledSign().theory()["angle"] == pytest.approx(theory.binary_limit_angle())


def test_best_parameters():
    best = qz.Ternary().best_parameter()
    assert best["name"] == "threshold"
    assert best["value"] == pytest.approx(theory.optimal_ternary_threshold(), abs=1e-6)
    angles = {}
    for bits in (2, 3, 4, 8):
        best = qz.Uniform(bits).best_parameter()
        # the best step is a minimum: a step 10 % either side keeps less direction
        for f in (0.9, 1.1):
            worse = qz.Uniform(bits, step=best["value"] * f, relative=True).theory()["angle"]
            assert worse > best["angle"]
        angles[bits] = best["angle"]
    # more bits keep more direction; 2 bits beat the best ternary quantizer
    assert angles[2] > angles[3] > angles[4] > angles[8] and angles[2] < qz.Ternary().best_parameter()["angle"]
    # the best 2-bit uniform quantizer on a Gaussian (Max 1960 lists step 0.9957 for 4 levels)
    assert qz.Uniform(2).best_parameter()["value"] == pytest.approx(0.9957, abs=2e-3)


def test_uniform_input_step_theory_reproduces_the_ternary_closed_form():
    for t in (0.0, 0.5, 1.2):
        edges, values = ([0.0], [-1.0, 1.0]) if t == 0 else ([-t, t], [-1.0, 0.0, 1.0])
        assert theory.step_quantizer_uniform_angle(edges, values) == pytest.approx(
            theory.uniform_quantization_angle(t), rel=1e-12)


def test_quantizer_theory_command(capsys):
    from bnn import quantizer_theory

    assert quantizer_theory.main(["sign", "uniform:bits=2", "--d", "400", "--n", "40"]) == 0
    out = capsys.readouterr().out
    assert "sign                  1  -                        37.07" in out
    assert "uniform:bits=2        2  step 0.9957              20.17" in out
