"""Vector geometry of binary and ternary quantization, in plain numpy.

Angles between vectors, numpy reference quantizers (the same rules as the Keras quantizers, without
their straight-through gradients), samplers for the random vectors of Anderson & Berg (2018,
arXiv:1705.07199, Sec. 3 and App. "generalized binarization transformation") and Haar rotations.

Everything here works on arrays of any batch shape: the vector axis is the last one unless an
``axis`` argument says otherwise. This module imports only numpy and scipy, so the geometry
notebooks load it without TensorFlow.
"""

import numpy as np
from scipy.stats import special_ortho_group

__all__ = [
    "cosine_similarity",
    "angle",
    "binarize",
    "ternarize",
    "hard_tanh",
    "straight_through_gradient",
    "gaussian_vectors",
    "exponential_scales",
    "correlated_gaussian_vectors",
    "random_sign_vectors",
    "haar_rotation",
    "rotated_binarize",
]


def _as_float(x):
    """Return ``x`` as a floating array, keeping float32/float16 and promoting ints/bools to float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"expected a positive integer. Received: {name}={value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Angles
# --------------------------------------------------------------------------------------------------


def cosine_similarity(u, v, axis=-1):
    """Cosine of the angle between vectors ``u`` and ``v``, batched.

    Parameters
    ----------
    u, v : array_like, shapes broadcastable to each other, vectors along ``axis``
        E.g. ``u`` of shape (n_filters, d) and ``v`` of shape (n_filters, d) or (d,).
    axis : int, default -1
        The axis that holds the vector components (in both ``u`` and ``v``).

    Returns
    -------
    cos : ndarray, the broadcast shape of ``u`` and ``v`` without ``axis``
        ``u . v / (||u|| ||v||)`` clipped to [-1, 1] (rounding can push it just outside).
        Where ``u`` or ``v`` is the zero vector the cosine is defined as 0: the dot product with a
        zero vector is 0, so it is treated as orthogonal to everything (no NaN, no warning).
    """
    u = np.moveaxis(_as_float(u), axis, -1)
    v = np.moveaxis(_as_float(v), axis, -1)
    if u.shape[-1] != v.shape[-1]:
        raise ValueError(
            f"u and v must have the same length along axis {axis}. "
            f"Received: u.shape[axis]={u.shape[-1]}, v.shape[axis]={v.shape[-1]}"
        )
    # einsum contracts the last axis with broadcasting and without the (..., d) temporary of u * v.
    dot = np.einsum("...i,...i->...", u, v)
    norms = np.sqrt(np.einsum("...i,...i->...", u, u) * np.einsum("...i,...i->...", v, v))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(cos, -1.0, 1.0)


def angle(u, v, axis=-1):
    """Angle between vectors ``u`` and ``v`` in radians, batched.

    Parameters
    ----------
    u, v : array_like, shapes broadcastable to each other, vectors along ``axis``
        E.g. continuous weights of shape (n_filters, d) against their binarization.
    axis : int, default -1
        The axis that holds the vector components.

    Returns
    -------
    theta : ndarray, the broadcast shape of ``u`` and ``v`` without ``axis``, values in [0, pi]
        ``arccos(u . v / (||u|| ||v||))``, with the cosine clipped to [-1, 1]. If either vector is
        the zero vector the angle is pi/2 (see `cosine_similarity`): e.g. a ternarization whose
        threshold zeroed every component has lost all direction.
    """
    return np.arccos(cosine_similarity(u, v, axis=axis))


# --------------------------------------------------------------------------------------------------
# Quantizers (numpy references)
# --------------------------------------------------------------------------------------------------


def binarize(x):
    """Binarize elementwise with the sign function, sign(0) = +1, so the result is exactly +-1.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    b : ndarray, shape of ``x``, same float dtype (ints promoted to float64), values in {-1, +1}
        ``b = +1 if x >= 0 else -1`` (Courbariaux, Hubara et al. 2016, deterministic binarization).
        NaN maps to -1.
    """
    x = _as_float(x)
    one = np.ones((), dtype=x.dtype)
    return np.where(x >= 0, one, -one)


def ternarize(x, threshold):
    """Ternarize elementwise: ``sign(x)`` where ``|x| > threshold``, else 0.

    Parameters
    ----------
    x : array_like, any shape
    threshold : float or array_like broadcastable to ``x``, >= 0
        In the units of ``x``. The paper's network used 0.02 for weights clipped to [-1, 1].

    Returns
    -------
    q : ndarray, broadcast shape, float dtype of ``x``, values in {-1, 0, +1}
        ``q = sign(x) * 1[|x| > threshold]`` (Anderson & Berg 2018, Sec. 5; Li & Liu 2016). With
        threshold 0 this equals `binarize` except at exact zeros, which stay 0.
    """
    x = _as_float(x)
    threshold = np.asarray(threshold)
    if np.any(threshold < 0) or np.any(np.isnan(threshold)):
        raise ValueError(f"expected a threshold >= 0. Received: threshold={threshold!r}")
    return (np.sign(x) * (np.abs(x) > threshold)).astype(x.dtype, copy=False)


def hard_tanh(x, clip_value=1.0):
    """The straight-through surrogate ``g(x) = clip(x, -clip_value, clip_value)``.

    Parameters
    ----------
    x : array_like, any shape
    clip_value : float, > 0

    Returns
    -------
    g : ndarray, shape of ``x``
        The function whose derivative the straight-through estimator uses in the backward pass while
        the forward pass uses ``sign(x)``: ``q = g(x) + stop_gradient(sign(x) - g(x))``.
    """
    if not clip_value > 0:
        raise ValueError(f"expected clip_value > 0. Received: clip_value={clip_value!r}")
    return np.clip(_as_float(x), -clip_value, clip_value)


def straight_through_gradient(x, clip_value=1.0):
    """Gradient of binarize/ternarize under the straight-through estimator: ``1[|x| <= clip_value]``.

    Parameters
    ----------
    x : array_like, any shape
        Pre-quantization values.
    clip_value : float, > 0

    Returns
    -------
    grad : ndarray, shape of ``x``, values in {0, 1}
        ``d hard_tanh(x) / dx``: 1 where ``|x| <= clip_value`` (the boundary counts as inside, as in
        Courbariaux, Hubara et al. 2016 and Larq's ``ste_sign``), else 0.
    """
    if not clip_value > 0:
        raise ValueError(f"expected clip_value > 0. Received: clip_value={clip_value!r}")
    x = _as_float(x)
    return (np.abs(x) <= clip_value).astype(x.dtype)


# --------------------------------------------------------------------------------------------------
# Random vectors
# --------------------------------------------------------------------------------------------------


def gaussian_vectors(n, d, rng):
    """Sample ``n`` standard Gaussian vectors in ``d`` dimensions.

    Parameters
    ----------
    n, d : int, >= 1
    rng : numpy.random.Generator

    Returns
    -------
    u : ndarray, shape (n, d), float64
        i.i.d. N(0, 1) entries: directions uniform on the sphere S^(d-1).
    """
    n, d = _check_positive_int(n, "n"), _check_positive_int(d, "d")
    return rng.standard_normal((n, d))


def exponential_scales(d, k=0.1):
    """Per-coordinate scales ``exp(k (i - d/2))`` for i = 0, ..., d-1.

    Parameters
    ----------
    d : int, >= 1
    k : float
        Decay rate; k = 0 gives all ones (isotropic).

    Returns
    -------
    scales : ndarray, shape (d,)
        Standard deviations of the coordinates of `correlated_gaussian_vectors`. The variance
        ratio between neighbours is exp(2k), so for k = 0.1 the last ~1/(1 - exp(-0.2)) ~ 5.5
        coordinates carry most of the norm whatever d is.
    """
    d = _check_positive_int(d, "d")
    return np.exp(k * (np.arange(d) - d / 2))


def correlated_gaussian_vectors(n, d, rng, k=0.1):
    """Sample Gaussian vectors with exponentially decaying variance per coordinate.

    Parameters
    ----------
    n, d : int, >= 1
    rng : numpy.random.Generator
    k : float, default 0.1
        See `exponential_scales`.

    Returns
    -------
    u : ndarray, shape (n, d)
        ``u[:, i] = exp(k (i - d/2)) z_i`` with z_i ~ N(0, 1) i.i.d. (Anderson & Berg 2018, the
        anisotropic example for the generalized binarization transformation). The covariance is
        diagonal, so "correlated" means: not isotropic, as after a fixed linear map of white data.
    """
    return gaussian_vectors(n, d, rng) * exponential_scales(d, k)


def random_sign_vectors(n, d, rng):
    """Sample ``n`` vectors with i.i.d. uniform +-1 entries.

    Parameters
    ----------
    n, d : int, >= 1
    rng : numpy.random.Generator

    Returns
    -------
    s : ndarray, shape (n, d), float64, values in {-1, +1}
        Uniform on the vertices of the hypercube {-1, 1}^d.
    """
    n, d = _check_positive_int(n, "n"), _check_positive_int(d, "d")
    # Integers in int8 then one float op: cheaper than comparing uniform floats.
    return rng.integers(0, 2, size=(n, d), dtype=np.int8) * 2.0 - 1.0


# --------------------------------------------------------------------------------------------------
# Rotations and the generalized binarization transformation
# --------------------------------------------------------------------------------------------------


def haar_rotation(d, rng):
    """Draw a rotation matrix from the Haar (uniform) distribution on SO(d).

    Parameters
    ----------
    d : int, >= 1
    rng : numpy.random.Generator

    Returns
    -------
    R : ndarray, shape (d, d), float64
        Orthogonal, ``R.T @ R = I``, with ``det R = +1``. Uses ``scipy.stats.special_ortho_group``
        (current scipy: a Haar matrix on O(d) from the QR of a Gaussian matrix with the signs of
        diag(R_qr) moved into Q, Mezzadri 2007, then its first row negated when det = -1; a fixed
        reflection preserves the Haar measure, so the result is Haar on SO(d)). It takes about 20 ms
        at d = 500 on a 2-core CPU, as fast as the recipe written out by hand. SO(1) = {[[1]]}.
    """
    d = _check_positive_int(d, "d")
    if d == 1:
        return np.ones((1, 1))
    return special_ortho_group.rvs(d, random_state=rng)


def rotated_binarize(u, R):
    """Generalized binarization transformation ``R^T sign(R u)``, batched over vectors.

    Parameters
    ----------
    u : array_like, shape (..., d)
        Vectors along the last axis.
    R : array_like, shape (d, d)
        An orthogonal matrix, e.g. from `haar_rotation`.

    Returns
    -------
    b : ndarray, shape (..., d)
        ``R^T binarize(R u)`` for each vector (Anderson & Berg 2018, App. "generalized binarization
        transformation"). Because R is orthogonal, ``angle(u, b) = angle(R u, binarize(R u))``: the
        rotation spreads an anisotropic u over all coordinates before the sign is taken.
    """
    u = _as_float(u)
    R = np.asarray(R, dtype=u.dtype)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[1] != u.shape[-1]:
        raise ValueError(
            f"expected R of shape (d, d) with d = u.shape[-1] = {u.shape[-1]}. Received: R.shape={R.shape}"
        )
    # Row vectors: (R u)^T = u^T R^T, and (R^T s)^T = s^T R.
    return binarize(u @ R.T) @ R
