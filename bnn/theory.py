"""Closed forms for the high-dimensional geometry of binary and ternary quantization.

Each function states its formula and where it comes from: the paper (Anderson & Berg 2018,
arXiv:1705.07199, Sec. 3 and 5) or a derivation written out in the docstring. Angles are in radians,
thresholds in units of the standard deviation of the Gaussian being quantized. Notation:
phi and Phi are the standard normal pdf and cdf, Q(t) = 1 - Phi(t) its survival function, and
u ~ N(0, I_d).

numpy/scipy only, so it imports without TensorFlow.
"""

import numpy as np
from scipy import integrate, optimize, special, stats

__all__ = [
    "BINARY_LIMIT_COSINE",
    "BINARY_ANGLE_STD_COEFFICIENT",
    "ASSUMED_TERNARY_THRESHOLD",
    "UNIFORM_LIMIT_COSINE",
    "binary_limit_angle",
    "binary_cosine_mean",
    "binary_cosine_std",
    "binary_angle_std",
    "gaussian_angle_pdf",
    "gaussian_angle_std",
    "sign_vector_angle_distribution",
    "sign_vector_angle_std",
    "ternary_cosine",
    "ternary_angle",
    "ternary_angle_std",
    "step_quantizer_theory",
    "best_step_quantizer_parameter",
    "step_quantizer_uniform_angle",
    "ternary_zero_fraction",
    "optimal_ternary_threshold",
    "quantization_angle_pdf_large_d",
    "uniform_quantization_angle",
    "glorot_uniform_std",
]

#: lim_{d -> inf} cos(u, sign u) = E|u_i| / sqrt(E u_i^2) = sqrt(2/pi) ~ 0.7979.
BINARY_LIMIT_COSINE = float(np.sqrt(2 / np.pi))

#: c in std(angle(u, sign u)) ~ c / sqrt(d) radians: sqrt((pi - 3) / (pi - 2)) ~ 0.3522 (20.18 deg).
#: Derived in `binary_angle_std`.
BINARY_ANGLE_STD_COEFFICIENT = float(np.sqrt((np.pi - 3) / (np.pi - 2)))

#: An ASSUMPTION, not a measurement: the threshold 0.02 (in weight units, as the authors' code applies
#: it) over a weight standard deviation of 0.18, i.e. 0.111 standard deviations. No run here reaches
#: a weight std of 0.18; trained runs put 0.02 at 0.28-0.56 of their weights' std (`bnn.report`
#: prints each layer's own value).
ASSUMED_TERNARY_THRESHOLD = 0.02 / 0.18

#: lim_{d -> inf} cos(u, sign u) for u with i.i.d. uniform entries (Glorot-uniform initialization):
#: E|u| / sqrt(E u^2) = (a/2) / (a/sqrt 3) = sqrt(3)/2, an angle of exactly 30 degrees.
UNIFORM_LIMIT_COSINE = float(np.sqrt(3) / 2)


def _check_dimension(d, minimum=1, name="d"):
    d = np.asarray(d)
    if not np.issubdtype(d.dtype, np.number) or np.any(d < minimum) or np.any(d != np.round(d)):
        raise ValueError(f"expected an integer {name} >= {minimum}. Received: {name}={d!r}")
    return d


# --------------------------------------------------------------------------------------------------
# Binarization of a Gaussian vector: angle(u, sign u)
# --------------------------------------------------------------------------------------------------


def binary_limit_angle():
    """Limit angle between a Gaussian vector and its binarization as d -> infinity.

    Returns
    -------
    theta : float, radians
        ``arccos(sqrt(2/pi)) ~ 0.6470 rad ~ 37.07 deg`` (Anderson & Berg 2018, Sec. 3).
        cos(u, sign u) = ||u||_1 / (sqrt(d) ||u||_2) = mean|u_i| / sqrt(mean u_i^2), and by the law of
        large numbers this tends to E|u_i| / sqrt(E u_i^2) = sqrt(2/pi).
    """
    return float(np.arccos(BINARY_LIMIT_COSINE))


def binary_cosine_mean(d):
    """Exact mean of cos(u, sign u) for u ~ N(0, I_d), for every d.

    Parameters
    ----------
    d : int or array_like of int, >= 1

    Returns
    -------
    mean : float or ndarray, shape of ``d``
        ``E cos = sqrt(d/pi) Gamma(d/2) / Gamma((d+1)/2)``, which is 1 at d = 1 and tends to
        sqrt(2/pi) from above.

    Notes
    -----
    Derivation: write u = r w with r = ||u||_2 independent of the direction w (uniform on the sphere).
    Then ||u||_1 = r ||w||_1 and cos = ||w||_1 / sqrt(d), so E||u||_1 = E r E||w||_1. With
    E||u||_1 = d sqrt(2/pi) and E r = sqrt(2) Gamma((d+1)/2) / Gamma(d/2) (chi distribution),
    E cos = d sqrt(2/pi) / (sqrt(d) E r).
    """
    d = _check_dimension(d).astype(float)
    return np.sqrt(d / np.pi) * np.exp(special.gammaln(d / 2) - special.gammaln((d + 1) / 2))


def binary_cosine_std(d):
    """Exact standard deviation of cos(u, sign u) for u ~ N(0, I_d), for every d.

    Parameters
    ----------
    d : int or array_like of int, >= 1

    Returns
    -------
    std : float or ndarray, shape of ``d``
        ``sqrt(E cos^2 - (E cos)^2)`` with ``E cos^2 = (1 + (d - 1) 2/pi) / d`` and E cos from
        `binary_cosine_mean`. For large d it is sqrt(1 - 3/pi) / sqrt(d) ~ 0.2123 / sqrt(d).

    Notes
    -----
    Same independence as in `binary_cosine_mean`: E||u||_1^2 = E r^2 E||w||_1^2 with E r^2 = d, and
    E||u||_1^2 = sum_ij E|u_i||u_j| = d E u^2 + d(d-1) (E|u|)^2 = d + d(d-1) 2/pi. So
    E cos^2 = E||w||_1^2 / d = (1 + (d-1) 2/pi) / d.

    The variance is a difference of two numbers near 2/pi, and log-gamma differences lose ~1e-10
    relative accuracy by d ~ 1e6, so from d = 200 on it is evaluated from its asymptotic series
    (Gamma(x + 1/2) / Gamma(x) = sqrt(x) (1 - 1/(8x) + 1/(128x^2) + 5/(1024x^3) - ...), x = d/2):
        Var = (1 - 3/pi)/d - 1/(4 pi d^2) + 1/(8 pi d^3) + 5/(64 pi d^4) + O(d^-5),
    which agrees with the exact form to 1e-9 relative at d = 200.
    """
    d = _check_dimension(d).astype(float)
    variance_exact = (1 + (d - 1) * 2 / np.pi) / d - binary_cosine_mean(d) ** 2
    y = 1 / d
    variance_series = (1 - 3 / np.pi) * y + (-y**2 / 4 + y**3 / 8 + 5 * y**4 / 64) / np.pi
    variance = np.where(d >= 200, variance_series, variance_exact)
    # At d = 1, cos = 1 surely; the exact form gives 0 only up to rounding (~1e-16, i.e. std ~1e-8).
    return np.sqrt(np.where(d == 1, 0.0, np.maximum(variance, 0.0)))


def binary_angle_std(d):
    """Large-d standard deviation of the angle between u ~ N(0, I_d) and sign(u).

    Parameters
    ----------
    d : int or array_like of int, >= 1

    Returns
    -------
    std : float or ndarray, radians, shape of ``d``
        ``c / sqrt(d)`` with ``c = sqrt((pi - 3) / (pi - 2)) ~ 0.3522 rad ~ 20.18 deg``
        (`BINARY_ANGLE_STD_COEFFICIENT`). Accurate to a few percent from d ~ 10 on.

    Notes
    -----
    Delta method. cos = f(A, B) = A / sqrt(B) with A = mean|u_i|, B = mean u_i^2, per-coordinate
    moments m = E|u| = sqrt(2/pi), E u^2 = 1, Var|u| = 1 - 2/pi, Var u^2 = 2 and
    Cov(|u|, u^2) = E|u|^3 - E|u| = 2m - m = m. The gradient of f at (m, 1) is (1, -m/2), so
        d Var(cos) = (1 - 2/pi) + (m^2/4) 2 - 2 (m/2) m = 1 - 2/pi + 1/pi - 2/pi = 1 - 3/pi.
    With theta = arccos(cos), |d theta / d cos| = 1 / sin(theta_inf) = 1 / sqrt(1 - 2/pi), hence
    d Var(theta) = (1 - 3/pi) / (1 - 2/pi) = (pi - 3) / (pi - 2). This is `ternary_angle_std` at
    threshold 0.
    """
    d = _check_dimension(d).astype(float)
    return BINARY_ANGLE_STD_COEFFICIENT / np.sqrt(d)


# --------------------------------------------------------------------------------------------------
# Two independent random vectors
# --------------------------------------------------------------------------------------------------


def gaussian_angle_pdf(theta, d):
    """Exact density of the angle between two independent N(0, I_d) vectors.

    Parameters
    ----------
    theta : array_like, radians
        Evaluation points; the density is 0 outside [0, pi].
    d : int, >= 2

    Returns
    -------
    pdf : ndarray, shape of ``theta``, per radian
        ``p(theta) = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)) sin(theta)^(d-2)`` on [0, pi].

    Notes
    -----
    By rotation invariance fix one vector at the north pole; the other's direction is uniform on
    S^(d-1), whose area element at polar angle theta is proportional to sin(theta)^(d-2). The constant
    is 1 / int_0^pi sin^(d-2) = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)). Equivalently
    (1 + cos theta) / 2 ~ Beta((d-1)/2, (d-1)/2). It concentrates at pi/2 with spread ~ 1/sqrt(d).
    """
    d = int(_check_dimension(d, minimum=2))
    theta = np.asarray(theta, dtype=float)
    log_norm = special.gammaln(d / 2) - special.gammaln((d - 1) / 2) - 0.5 * np.log(np.pi)
    inside = (theta >= 0) & (theta <= np.pi)
    if d == 2:
        # sin^0 = 1 (uniform angle); the log form below would give 0 * log(0) = NaN at the ends.
        return np.where(inside, 1 / np.pi, 0.0)
    with np.errstate(divide="ignore"):
        # In log space: sin^(d-2) underflows long before d = 1000 near the ends.
        log_sin = np.log(np.abs(np.sin(np.where(inside, theta, np.pi / 2))))
    return np.where(inside, np.exp(log_norm + (d - 2) * log_sin), 0.0)


def gaussian_angle_std(d):
    """Exact standard deviation of the angle between two independent N(0, I_d) vectors.

    Parameters
    ----------
    d : int, >= 2

    Returns
    -------
    std : float, radians
        ``sqrt(int_0^pi (theta - pi/2)^2 p(theta) dtheta)`` with p from `gaussian_angle_pdf` (the mean
        is pi/2 by the symmetry theta -> pi - theta), by adaptive quadrature. Tends to 1 / sqrt(d).
    """
    d = int(_check_dimension(d, minimum=2))
    variance, _ = integrate.quad(
        lambda t: (t - np.pi / 2) ** 2 * gaussian_angle_pdf(t, d), 0, np.pi, points=[np.pi / 2], limit=200
    )
    return float(np.sqrt(variance))


def sign_vector_angle_distribution(n):
    """Exact distribution of the angle between two independent uniform random +-1 vectors.

    Parameters
    ----------
    n : int, >= 1
        Length of the vectors.

    Returns
    -------
    angles : ndarray, shape (n + 1,), radians, increasing
        The possible angles ``arccos((2k - n) / n)``, k = n, n-1, ..., 0.
    pmf : ndarray, shape (n + 1,)
        Their probabilities ``C(n, k) / 2^n``.

    Notes
    -----
    The dot product is sum_i a_i b_i, where the products a_i b_i are i.i.d. uniform +-1, so it equals
    2K - n with K ~ Binomial(n, 1/2) the number of agreeing coordinates; both norms are sqrt(n), so
    cos = (2K - n) / n. Its variance is exactly 1/n: the angle concentrates at pi/2 like that of two
    Gaussian vectors (Anderson & Berg 2018, Sec. 3).
    """
    n = int(_check_dimension(n, name="n"))
    k = np.arange(n, -1, -1)
    return np.arccos(np.clip((2 * k - n) / n, -1, 1)), stats.binom.pmf(k, n, 0.5)


def sign_vector_angle_std(n):
    """Exact standard deviation of the angle between two random +-1 vectors of length ``n``.

    Parameters
    ----------
    n : int, >= 1

    Returns
    -------
    std : float, radians
        ``sqrt(sum_k pmf_k (theta_k - pi/2)^2)`` over `sign_vector_angle_distribution` (the mean is pi/2
        by the symmetry K -> n - K). Tends to 1 / sqrt(n).
    """
    angles, pmf = sign_vector_angle_distribution(n)
    return float(np.sqrt(np.sum(pmf * (angles - np.pi / 2) ** 2)))


# --------------------------------------------------------------------------------------------------
# Ternarization q = sign(u) 1[|u| > t]
# --------------------------------------------------------------------------------------------------


def _check_threshold(t):
    t = np.asarray(t, dtype=float)
    if np.any(t < 0) or np.any(np.isnan(t)):
        raise ValueError(f"expected a threshold t >= 0 (in standard deviations). Received: t={t!r}")
    return t


def ternary_cosine(t):
    """Large-d cosine between u ~ N(0, I_d) and its ternarization at threshold ``t``.

    Parameters
    ----------
    t : float or array_like, >= 0
        Threshold in units of the standard deviation of u.

    Returns
    -------
    cos : float or ndarray, shape of ``t``
        ``2 phi(t) / sqrt(2 Q(t)) = sqrt(2) phi(t) / sqrt(Q(t))``; sqrt(2/pi) at t = 0 (binarization),
        maximal at t ~ 0.612 (`optimal_ternary_threshold`), -> 0 as t -> infinity.

    Notes
    -----
    With q_i = sign(u_i) 1[|u_i| > t]: u . q = sum |u_i| 1[|u_i| > t] and ||q||^2 = #{|u_i| > t}, so
    cos = mean(|u| 1[|u| > t]) / sqrt(mean(u^2) mean(1[|u| > t])) -> E[|u| 1[|u| > t]] /
    sqrt(E u^2 P(|u| > t)) by the law of large numbers, with E[|u| 1[|u| > t]] = 2 int_t^inf x phi(x)
    dx = 2 phi(t) and P(|u| > t) = 2 Q(t).
    """
    t = _check_threshold(t)
    return np.sqrt(2) * stats.norm.pdf(t) / np.sqrt(stats.norm.sf(t))


def ternary_angle(t):
    """Large-d angle between u ~ N(0, I_d) and its ternarization: ``arccos(ternary_cosine(t))``.

    Parameters
    ----------
    t : float or array_like, >= 0
        Threshold in standard deviations.

    Returns
    -------
    theta : float or ndarray, radians, shape of ``t``
        37.07 deg at t = 0; minimal (~ 25.85 deg) at the optimal threshold ~ 0.612.
    """
    return np.arccos(np.clip(ternary_cosine(t), -1, 1))


def ternary_angle_std(t, d):
    """Large-d standard deviation of the angle between u ~ N(0, I_d) and its ternarization.

    Parameters
    ----------
    t : float or array_like, >= 0
        Threshold in standard deviations.
    d : int or array_like of int, >= 1 (broadcast against ``t``)

    Returns
    -------
    std : float or ndarray, radians
        ``sqrt(g^T S g / d) / sin(ternary_angle(t))``; equals `binary_angle_std` at t = 0.

    Notes
    -----
    Delta method on cos = f(A, B, C) = A / sqrt(B C) with the coordinate means A = mean(a),
    B = mean(b), C = mean(c) of a = |u| 1[|u| > t], b = u^2, c = 1[|u| > t]. With mu = 2 phi(t) and
    p = 2 Q(t): E a = mu, E b = 1, E c = p, and from int_t^inf x^2 phi = t phi(t) + Q(t),
    int_t^inf x^3 phi = (t^2 + 2) phi(t) the covariance S of (a, b, c) is
        Var a = 2 t phi + p - mu^2,  Var b = 2,  Var c = p (1 - p),
        Cov(a, b) = 2 (t^2 + 2) phi - mu,  Cov(a, c) = mu (1 - p),  Cov(b, c) = 2 t phi.
    The gradient of f at the means is g = (1/sqrt(p), -mu / (2 sqrt(p)), -mu / (2 p^(3/2))), and
    |d theta / d cos| = 1 / sin(theta).
    """
    t = _check_threshold(t)
    d = _check_dimension(d).astype(float)
    phi, q = stats.norm.pdf(t), stats.norm.sf(t)
    mu, p = 2 * phi, 2 * q
    var_a = 2 * t * phi + p - mu**2
    var_b = 2.0
    var_c = p * (1 - p)
    cov_ab = 2 * (t**2 + 2) * phi - mu
    cov_ac = mu * (1 - p)
    cov_bc = 2 * t * phi
    g_a, g_b, g_c = 1 / np.sqrt(p), -mu / (2 * np.sqrt(p)), -mu / (2 * p**1.5)
    quad_form = (
        g_a**2 * var_a
        + g_b**2 * var_b
        + g_c**2 * var_c
        + 2 * (g_a * g_b * cov_ab + g_a * g_c * cov_ac + g_b * g_c * cov_bc)
    )
    sin_theta = np.sqrt(1 - ternary_cosine(t) ** 2)
    return np.sqrt(quad_form / d) / sin_theta


def ternary_zero_fraction(t):
    """Expected fraction of zeros in the ternarization of a Gaussian at threshold ``t``.

    Parameters
    ----------
    t : float or array_like, >= 0
        Threshold in standard deviations.

    Returns
    -------
    fraction : float or ndarray, shape of ``t``
        ``P(|u| <= t) = 2 Phi(t) - 1 = erf(t / sqrt(2))``; 0 at t = 0.
    """
    t = _check_threshold(t)
    return special.erf(t / np.sqrt(2))


def optimal_ternary_threshold():
    """Threshold that maximises the large-d cosine between a Gaussian vector and its ternarization.

    Returns
    -------
    t_star : float
        ~ 0.6120 standard deviations, where ``ternary_cosine`` ~ 0.8999 (angle ~ 25.85 deg, against
        37.07 deg for binarization), with about 46 % of the entries set to zero.

    Notes
    -----
    log cos = log phi(t) - log Q(t) / 2 + const, so d log cos / dt = -t + phi(t) / (2 Q(t)) and the
    maximiser solves 2 t = phi(t) / Q(t) (the inverse Mills ratio). The left side minus the right is
    negative at t = 0 and positive at t = 2, and is solved with Brent's method to 1e-12.
    """
    return float(optimize.brentq(lambda t: 2 * t - stats.norm.pdf(t) / stats.norm.sf(t), 0.0, 2.0, xtol=1e-12))


def quantization_angle_pdf_large_d(theta, d, t=0.0):
    """Normal approximation, for large d, of the density of the angle between u and its quantization.

    Parameters
    ----------
    theta : array_like, radians
    d : int, >= 1
    t : float, >= 0, default 0
        Ternarization threshold in standard deviations; 0 is binarization.

    Returns
    -------
    pdf : ndarray, shape of ``theta``, per radian
        ``N(theta; ternary_angle(t), ternary_angle_std(t, d)^2)``: the central limit theorem for the
        coordinate means behind `ternary_angle_std`. An approximation: at small d the true density is
        skewed and bounded (for binarization, cos >= 1/sqrt(d), so theta <= arccos(1/sqrt(d))).
    """
    return stats.norm.pdf(theta, loc=ternary_angle(t), scale=ternary_angle_std(t, d))


# --------------------------------------------------------------------------------------------------
# Uniform vectors: the networks' initialization
# --------------------------------------------------------------------------------------------------


def uniform_quantization_angle(t=0.0):
    """Large-d angle between u with i.i.d. uniform entries and its quantization at threshold t.

    Parameters
    ----------
    t : float or array_like, >= 0
        Threshold in standard deviations of u (0: binarization).

    Returns
    -------
    ndarray or float, radians
        For u_i ~ U[-a, a] (std a/sqrt 3) and s = t/a = t/sqrt 3 < 1:
        E[|u| 1{|u|>t}] = (a^2 - t^2)/(2a), P(|u|>t) = 1 - s, E u^2 = a^2/3, so
        cos = E[|u| 1{|u|>t}] / sqrt(E u^2 P(|u|>t)) = (sqrt 3 / 2) (1 + s) sqrt(1 - s);
        30 degrees at t = 0 (`UNIFORM_LIMIT_COSINE`). pi/2 where s >= 1 (every entry zeroed).
    """
    s = np.asarray(_check_threshold(t), dtype=float) / np.sqrt(3)
    with np.errstate(invalid="ignore"):
        cos = np.where(s < 1, UNIFORM_LIMIT_COSINE * (1 + s) * np.sqrt(np.clip(1 - s, 0, None)), 0.0)
    out = np.arccos(np.clip(cos, -1.0, 1.0))
    return float(out) if out.ndim == 0 else out


def glorot_uniform_std(fan_in, fan_out):
    """Standard deviation of Keras's ``glorot_uniform`` initializer: limit sqrt(6/(fan_in + fan_out)),
    std limit/sqrt 3 = sqrt(2/(fan_in + fan_out)) (Glorot & Bengio 2010)."""
    return float(np.sqrt(2.0 / (fan_in + fan_out)))


# --------------------------------------------------------------------------------------------------
# Any step-function quantizer: the theory every quantizer object gets from its Gaussian pieces
# --------------------------------------------------------------------------------------------------


def _partial_moments(a, b, n_max=4):
    """``M_n = int_a^b x^n phi(x) dx`` for n = 0..n_max (a, b may be infinite).

    From ``d/dx (x^(n-1) phi) = (n-1) x^(n-2) phi - x^n phi``:
    ``M_n = a^(n-1) phi(a) - b^(n-1) phi(b) + (n-1) M_(n-2)``, with the boundary terms 0 at +-inf.
    """

    def edge(x, k):  # x^k phi(x), 0 at infinity
        return 0.0 if np.isinf(x) else x**k * stats.norm.pdf(x)

    m = [stats.norm.cdf(b) - stats.norm.cdf(a), edge(a, 0) - edge(b, 0)]
    for n in range(2, n_max + 1):
        m.append(edge(a, n - 1) - edge(b, n - 1) + (n - 1) * m[n - 2])
    return m


def step_quantizer_theory(edges, values):
    """Large-d geometry of a step-function quantizer applied to u ~ N(0, I_d), coordinate-wise.

    Parameters
    ----------
    edges : sequence of float, increasing, length k - 1
        Where the quantizer steps, in standard deviations of u.
    values : sequence of float, length k
        Its value on each of the k intervals ``(-inf, edges[0]), ..., (edges[-1], inf)``.

    Returns
    -------
    dict
        ``angle`` (radians): the limit of the angle between u and Q(u); ``angle_std_coefficient``:
        c in the spread ``c / sqrt(d)`` of that angle; ``zero_fraction``: P(Q(u) = 0).

    Notes
    -----
    cos = A / sqrt(B C) with the coordinate means A, B, C of a = u Q(u), b = u^2, c = Q(u)^2, so the
    limit is ``E[u Q] / sqrt(E[Q^2])`` and, by the delta method, ``Var cos = g^T S g / d`` with g the
    gradient of A / sqrt(B C) at the means and S the covariance of (a, b, c); the angle's spread is
    ``sqrt(Var cos) / sin(angle)``. Every moment is a sum over the intervals of
    ``v^m int x^n phi`` (`_partial_moments`), so this is exact for any step function; for sign it
    gives `BINARY_ANGLE_STD_COEFFICIENT` and for ternarization `ternary_angle` / `ternary_angle_std`.
    """
    edges = [float(e) for e in edges]
    values = [float(v) for v in values]
    if len(values) != len(edges) + 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"need increasing edges and one more value than edges. Received: edges={edges}, "
                         f"values={values}")
    bounds = [-np.inf, *edges, np.inf]
    e = {}  # e[(n, m)] = E[u^n Q(u)^m]
    zero = 0.0
    for v, a, b in zip(values, bounds, bounds[1:]):
        m = _partial_moments(a, b)
        for n in range(5):
            for k in range(5):
                e[(n, k)] = e.get((n, k), 0.0) + v**k * m[n]
        zero += m[0] if v == 0 else 0.0
    A, B, C = e[(1, 1)], e[(2, 0)], e[(0, 2)]
    if C <= 0:
        raise ValueError(f"the quantizer maps almost every value to 0. Received: edges={edges}, values={values}")
    cos = A / np.sqrt(B * C)
    S = np.array([[e[(2, 2)] - A * A, e[(3, 1)] - A * B, e[(1, 3)] - A * C],
                  [e[(3, 1)] - A * B, e[(4, 0)] - B * B, e[(2, 2)] - B * C],
                  [e[(1, 3)] - A * C, e[(2, 2)] - B * C, e[(0, 4)] - C * C]])
    r = np.sqrt(B * C)
    g = np.array([1 / r, -A / (2 * B * r), -A / (2 * C * r)])
    sin = np.sqrt(max(1 - cos**2, 0.0))
    coefficient = float(np.sqrt(max(g @ S @ g, 0.0)) / sin) if sin > 0 else 0.0
    return {"angle": float(np.arccos(np.clip(cos, -1, 1))), "angle_std_coefficient": coefficient,
            "zero_fraction": float(zero)}


def best_step_quantizer_parameter(pieces, low, high):
    """The parameter p in (low, high) whose step function ``pieces(p) = (edges, values)`` keeps the
    most direction: the smallest `step_quantizer_theory` angle, by bounded Brent minimisation.

    Returns
    -------
    p_star : float
    theory : dict
        `step_quantizer_theory` at ``p_star``.
    """
    res = optimize.minimize_scalar(lambda p: step_quantizer_theory(*pieces(p))["angle"],
                                   bounds=(low, high), method="bounded", options={"xatol": 1e-9})
    return float(res.x), step_quantizer_theory(*pieces(res.x))


def step_quantizer_uniform_angle(edges, values):
    """Large-d angle between u with i.i.d. uniform entries of unit variance (U[-sqrt 3, sqrt 3], the
    shape of Keras's ``glorot_uniform`` initialization) and a step-function quantization of it.

    Parameters
    ----------
    edges, values
        As in `step_quantizer_theory`, in standard deviations of u.

    Returns
    -------
    float, radians
        ``arccos(E[u Q] / sqrt(E[u^2] E[Q^2]))`` with E[u^2] = 1, each expectation a sum of
        polynomial integrals over the intervals; `uniform_quantization_angle` for ternarization.
    """
    a = float(np.sqrt(3))
    bounds = np.clip([-np.inf, *map(float, edges), np.inf], -a, a)
    xq = sum(v * (hi**2 - lo**2) / 2 for v, lo, hi in zip(values, bounds, bounds[1:])) / (2 * a)
    qq = sum(v**2 * (hi - lo) for v, lo, hi in zip(values, bounds, bounds[1:])) / (2 * a)
    return float(np.arccos(np.clip(xq / np.sqrt(qq), -1, 1))) if qq > 0 else float(np.pi / 2)
