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

from bnn import quantizer_theory as qt  # noqa: E402
from bnn import quantizers as qz  # noqa: E402


@pytest.mark.parametrize("q, std", [
    (qz.Sign(), 1.0), (qz.Ternary(0.05), 0.1), (qz.Ternary(0.612, relative=True), 3.0), (qz.ScaledSign(), 0.5),
    (qz.Uniform(2), 0.4), (qz.Uniform(3, step=0.6, relative=True), 1.0), (qz.Uniform(4), 0.3),
    (qz.Uniform(8, step=0.02), 1.0),
], ids=repr)
def test_every_built_in_theory_matches_monte_carlo(q, std):
    d, n = 2000, 400
    mc = qt.monte_carlo(q, d, n, seed=1, std=std)
    angles, zeros = mc["angles"], mc["zero_fraction"]
    t = q.theory(std)
    # the mean of n angles has standard error c / sqrt(d n); allow 5 of them plus the O(1/d) bias
    c = t["angle_std_coefficient"]
    assert angles.mean() == pytest.approx(t["angle"], abs=5 * c / np.sqrt(d * n) + 1e-3)
    assert angles.std() * np.sqrt(d) == pytest.approx(c, rel=0.15)
    assert zeros == pytest.approx(t["zero_fraction"], abs=0.01)


def _best(spec):
    return qt.at_best_parameter(qz.parse_spec(spec))[0]


def _rotated(spec, d):
    q = qz.Rotated(_best(spec), seed=0)
    q.rotation = geometry.haar_rotation(d, np.random.default_rng(3)).astype("float32")
    return q


BEST = {spec: _best(spec) for spec in qt.DEFAULT_SPECS}


@pytest.mark.parametrize("q", [*BEST.values(), qz.Ternary(1.0, relative=True), qz.Ternary(0.3, relative=True)],
                         ids=repr)
def test_mean_angle_and_zeros_match_monte_carlo_at_the_best_parameter(q):
    d, n = 2000, 500
    mc = qt.monte_carlo(q, d, n, seed=2)
    t = q.theory()
    # 5 standard errors of the mean of n angles, plus the O(1/d) bias of a finite d (0.02 deg at sign)
    assert mc["angle_mean"] == pytest.approx(t["angle"], abs=5 * _se_mean(mc["angles"]) + np.radians(0.03))
    p = t["zero_fraction"]
    assert abs(mc["zero_fraction"] - p) < 5 * np.sqrt(p * (1 - p) / (n * d)) + 1e-12


def test_a_rotated_quantizer_has_its_inner_quantizers_angle():
    d = 1000
    q = _rotated("ternary", d)
    mc = qt.monte_carlo(q, d, 400, seed=4)
    assert q.theory() == BEST["ternary"].theory()
    assert mc["angle_mean"] == pytest.approx(q.theory()["angle"], abs=5 * _se_mean(mc["angles"]) + np.radians(0.03))
    # R^T Q(R x) is no longer on the grid of Q: no entry is exactly 0
    assert mc["zero_fraction"] == 0


@pytest.mark.parametrize("spec", ["sign", "ternary", "uniform:bits=2", "uniform:bits=3", "uniform:bits=4"])
def test_spread_follows_c_over_sqrt_d(spec):
    q = BEST[spec]
    c = q.theory()["angle_std_coefficient"]
    for d in (250, 1000, 4000):
        mc = qt.monte_carlo(q, d, 1500, seed=d)
        # 5 standard errors of a sample std, plus 3 % for the delta method at finite d
        assert mc["angle_std"] == pytest.approx(c / np.sqrt(d), abs=5 * _se_std(mc["angles"]) + 0.03 * c / np.sqrt(d)), d


def test_eight_bit_spread_reaches_its_law_only_at_large_d():
    # The spread at 8 bits comes from the rare entries beyond the outermost level (|x| > 3.94,
    # probability 8e-5): at d = 1000 most vectors have none and the spread is half the law's.
    q = BEST["uniform:bits=8"]
    c = q.theory()["angle_std_coefficient"]
    assert qt.monte_carlo(q, 1000, 1000, seed=5)["angle_std"] * np.sqrt(1000) < 0.6 * c
    mc = qt.monte_carlo(q, 100_000, 100, seed=5)
    assert mc["angle_std"] * np.sqrt(100_000) == pytest.approx(c, rel=0.2)
    assert mc["angle_mean"] == pytest.approx(q.theory()["angle"], rel=0.01)


@pytest.mark.parametrize("spec", ["ternary", "uniform:bits=3"])
def test_step_theory_equals_numerical_integrals(spec):
    # An independent check of the partial-moment sums: E[x Q], E[Q^2], the zero fraction and the
    # delta-method spread by quadrature over each interval of the step function.
    q = BEST[spec]
    edges, values = q.gaussian_pieces()
    bounds = [-np.inf, *edges, np.inf]

    def moment(n, k):
        return sum(v**k * integrate.quad(lambda x: x**n * stats.norm.pdf(x), a, b)[0]
                   for v, a, b in zip(values, bounds, bounds[1:]))

    A, B, C = moment(1, 1), moment(2, 0), moment(0, 2)
    cov = np.array([[moment(2, 2) - A * A, moment(3, 1) - A * B, moment(1, 3) - A * C],
                    [moment(3, 1) - A * B, moment(4, 0) - B * B, moment(2, 2) - B * C],
                    [moment(1, 3) - A * C, moment(2, 2) - B * C, moment(0, 4) - C * C]])
    cos = A / np.sqrt(B * C)
    g = np.array([1, -A / (2 * B), -A / (2 * C)]) / np.sqrt(B * C)
    t = q.theory()
    assert t["angle"] == pytest.approx(np.arccos(cos), rel=1e-8)
    assert t["angle_std_coefficient"] == pytest.approx(np.sqrt(g @ cov @ g) / np.sqrt(1 - cos**2), rel=1e-6)
    zero = sum(stats.norm.cdf(b) - stats.norm.cdf(a) for v, a, b in zip(values, bounds, bounds[1:]) if v == 0)
    assert t["zero_fraction"] == pytest.approx(zero, abs=1e-12)


def test_table_rows_carry_theory_and_monte_carlo():
    rows = qt.table(["sign", "ternary", "uniform:bits=3"], d=500, n=200)
    assert [r["levels"] for r in rows] == [2, 3, 8] and [r["bits"] for r in rows] == [1, 2, 3]
    assert rows[1]["parameter"] == "threshold 0.6120" and rows[1]["zeros"] == pytest.approx(0.4594, abs=1e-4)
    for r in rows:
        assert r["mc_c"] == pytest.approx(np.radians(r["mc_std_deg"]) * np.sqrt(500))
        assert r["mc_angle_deg"] == pytest.approx(r["angle_deg"], abs=0.2)


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
