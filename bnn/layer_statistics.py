"""Statistics of one layer's weights and dot products, numpy only.

The per-layer pieces of `bnn.network_geometry` that work on arrays already in hand: dot products
sampled at chosen convolution outputs, the regression of one set of dot products on another and
its expected value for i.i.d. inputs, what the next quantizer makes of a dot product, the angle of
each filter to its quantization and the density of those angles, the generalized binarization of a
kernel, the fractions of the quantized values and the large-d theory angles (Anderson & Berg 2018,
arXiv:1705.07199, Sec. 4-5). Importing this module loads neither Keras nor TensorFlow (nor does
`bnn.quantizers`, whose quantizers the original flags' functions ask). The dot products of a
whole layer by its own operation (`bnn.network_geometry.dot_products`) need Keras and stay with
the network pass.
"""

import numpy as np
from scipy import stats

from bnn import geometry
from bnn.quantizers import from_levels

#: Grid of angles (radians) on which angle densities are evaluated: 0.045 degree steps over [0, pi/2].
ANGLE_GRID = np.linspace(0.0, np.pi / 2, 2001)

#: Points per chunk in `sampled_dot_products` (times d floats per gathered array): bounds memory.
_CHUNK_FLOATS = 1 << 23


def sampled_dot_products(acts, weights, pairs, index):
    """Dot products of a 'same' stride-1 convolution at chosen output entries only.

    Equal (to float32 rounding) to
    ``bnn.network_geometry.dot_products(acts[a], weights[w], 'conv').ravel()[index]`` for each pair,
    at a cost of d multiply-adds per entry instead of the whole convolution: the sampled dot products
    of the paper's CIFAR-10 network are 0.3-1.2% of its conv outputs. Each input's patches are
    gathered once and shared by the pairs that use them.

    Parameters
    ----------
    acts : dict of str -> array, shape (n, h, w, c_in)
        Input activations by name (e.g. ``"Ab"``).
    weights : dict of str -> array, shape (k, k, c_in, c_out)
        Kernels by name (e.g. ``"Wb"``).
    pairs : dict of str -> (str, str)
        Output name -> (activation name, kernel name).
    index : array of int, shape (m,)
        Flat indices into the (n, h, w, c_out) output.

    Returns
    -------
    dict of str -> ndarray, float32, shape (m,)
    """
    first = next(iter(acts.values()))
    _, h, w, c = first.shape
    k, _, _, f = next(iter(weights.values())).shape
    before = (k - 1) // 2
    padded = {key: np.pad(np.asarray(a, dtype="float32"),
                          ((0, 0), (before, k - 1 - before), (before, k - 1 - before), (0, 0)))
              for key, a in acts.items() if any(a_key == key for a_key, _ in pairs.values())}
    columns = {key: np.ascontiguousarray(np.asarray(wt, dtype="float32").reshape(-1, f).T)
               for key, wt in weights.items() if any(w_key == key for _, w_key in pairs.values())}
    index = np.asarray(index)
    out = {key: np.empty(len(index), dtype="float32") for key in pairs}
    taps = np.arange(k)
    # Points grouped by filter: each group's patches times one kernel column (a matrix-vector
    # product) instead of a gathered column per point, 1.4x faster on the paper's conv2-conv6.
    filt = index % f
    order = np.argsort(filt, kind="stable")
    bounds = np.searchsorted(filt[order], np.arange(f + 1))
    step = max(1, _CHUNK_FLOATS // (k * k * c))
    for j in range(f):
        for lo in range(bounds[j], bounds[j + 1], step):
            rows = order[lo:min(lo + step, bounds[j + 1])]
            pos = index[rows] // f
            col, row, img = pos % w, (pos // w) % h, pos // (h * w)
            # (m, k, k, c) patches in the kernel's (row, column, channel) order, then flattened to d
            where = (img[:, None, None], row[:, None, None] + taps[None, :, None],
                     col[:, None, None] + taps[None, None, :])
            patches = {key: a[where].reshape(len(rows), -1) for key, a in padded.items()}
            for key, (a_key, w_key) in pairs.items():
                out[key][rows] = patches[a_key] @ columns[w_key][j]
    return out


def regression(x, y):
    """Pearson correlation and least-squares line of ``y`` on ``x``.

    Parameters
    ----------
    x, y : array_like, same number of elements (flattened)

    Returns
    -------
    dict
        ``r``, ``slope``, ``intercept`` (from `scipy.stats.linregress`) and ``n``. ``r`` and the line
        are None when ``x`` or ``y`` is constant (no correlation is defined).
    """
    x = np.ravel(np.asarray(x, dtype=np.float64))
    y = np.ravel(np.asarray(y, dtype=np.float64))
    if x.size != y.size:
        raise ValueError(f"x and y need the same number of values. Received: {x.size} and {y.size}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": None, "slope": None, "intercept": None, "n": int(x.size)}
    fit = stats.linregress(x, y)
    return {"r": float(fit.rvalue), "slope": float(fit.slope), "intercept": float(fit.intercept),
            "n": int(x.size)}


def permuted_r_expected(weights_quantized, weights_continuous, mean=0.0, var=1.0):
    """Expected Pearson r of A.W^q against A.W^c when A has i.i.d. entries, pooled over the filters.

    Parameters
    ----------
    weights_quantized, weights_continuous : array, shape (k, k, c_in, c_out) or (d, c_out)
    mean, var : float
        Mean and variance of the input entries (the permutation control draws them from the layer's
        own A^b: for +-1 activations mean ~ 0, var ~ 1).

    Returns
    -------
    float
        With filter j picked uniformly, b_j, c_j its two weight vectors and S b_j = sum of b_j:
        Cov = var mean_j(b_j . c_j) + mean^2 cov_j(S b_j, S c_j), Var_x = var mean_j |b_j|^2 +
        mean^2 var_j(S b_j), likewise Var_y; r = Cov / sqrt(Var_x Var_y) (law of total covariance).
        For zero-mean inputs this is the cosine of the angle between the whole kernels W^q and W^c,
        i.e. per filter r = cos(angle(W^b_j, W^c_j)) (Anderson & Berg 2018, Sec. 5). Zero padding
        at the borders of a convolution, which sets some entries to 0, is not modelled.
    """
    b = filter_vectors(np.asarray(weights_quantized, dtype=np.float64))
    c = filter_vectors(np.asarray(weights_continuous, dtype=np.float64))
    sb, sc = b.sum(axis=1), c.sum(axis=1)
    cov = var * np.mean(np.einsum("jd,jd->j", b, c)) + mean**2 * np.mean((sb - sb.mean()) * (sc - sc.mean()))
    vx = var * np.mean(np.einsum("jd,jd->j", b, b)) + mean**2 * np.var(sb)
    vy = var * np.mean(np.einsum("jd,jd->j", c, c)) + mean**2 * np.var(sc)
    return float(cov / np.sqrt(vx * vy)) if vx > 0 and vy > 0 else None


def next_quantized(dots, filters, batch_norm, levels, threshold):
    """The value the next quantizer gives a dot product: q(BN_j(z)), per-filter batch norm then quantizer.

    Parameters
    ----------
    dots : array, shape (m,)
        Dot products z (pre-pool, pre-batch-norm values of the layer).
    filters : array of int, shape (m,)
        Filter (output channel) j of each dot product.
    batch_norm : dict
        `bnn.layer_tensors.batch_norm_parameters` of the layer's batch norm.
    levels : {2, 3}
    threshold : float
        The activation quantizer's threshold (batch-normed units; ignored for binary).

    Returns
    -------
    ndarray, shape (m,), values in {-1, 0, 1}

    Notes
    -----
    Binary: the quantizer switches where BN_j(z) = 0, i.e. at z*_j = mean_j - beta_j sqrt(var_j + eps)
    / gamma_j, the batch-norm-shifted threshold of filter j (ternary: where BN_j(z) = +-t). Where a
    2x2 max pool sits between the layer and its batch norm, each dot product is treated as if it
    were the maximum of its window, i.e. the value the quantizer would see were it to win the pool.
    """
    return next_quantized_by(dots, filters, batch_norm, from_levels(levels, threshold))


def next_quantized_by(dots, filters, batch_norm, quantizer):
    """:func:`next_quantized` for any activation quantizer: ``quantizer.numpy(BN_j(z))``.

    Parameters
    ----------
    dots, filters, batch_norm
        As in :func:`next_quantized`.
    quantizer : bnn.quantizers.Quantizer
        The ``<name>_act`` quantizer. One that uses statistics of its whole input sees the sample.

    Returns
    -------
    ndarray, shape (m,)
    """
    bn = batch_norm
    j = np.asarray(filters)
    scale = bn["gamma"][j] / np.sqrt(bn["variance"][j] + bn["epsilon"])
    z = scale * (np.asarray(dots, dtype=np.float64) - bn["mean"][j]) + bn["beta"][j]
    return np.asarray(quantizer.numpy(z))


def rotated_kernel(kernel, R):
    """The generalized binarization R^T sign(R w) of every filter of a kernel.

    Parameters
    ----------
    kernel : array, shape (k, k, c_in, c_out) or (d, c_out)
        Continuous weights W^c.
    R : array, shape (d, d)
        A rotation, e.g. `bnn.geometry.haar_rotation` (one per layer, shared by its filters).

    Returns
    -------
    ndarray, float32, the shape of ``kernel``
        `bnn.geometry.rotated_binarize` of each filter vector (Anderson & Berg 2018, App.
        "generalized binarization transformation").
    """
    kernel = np.asarray(kernel)
    rotated = geometry.rotated_binarize(filter_vectors(kernel).astype(np.float64), R)
    return rotated.T.reshape(kernel.shape).astype("float32")


def filter_vectors(kernel):
    """The weight vector of each filter: ``kernel[..., j]`` flattened.

    Parameters
    ----------
    kernel : array, shape (k, k, c_in, c_out) or (d, c_out)

    Returns
    -------
    ndarray, shape (c_out, d) with d = k*k*c_in or d
    """
    kernel = np.asarray(kernel)
    return kernel.reshape(-1, kernel.shape[-1]).T


def filter_angles(weights_continuous, weights_quantized):
    """Angle between each filter's continuous weight vector and its quantization.

    Parameters
    ----------
    weights_continuous, weights_quantized : array, shape (k, k, c_in, c_out) or (d, c_out)

    Returns
    -------
    ndarray, shape (c_out,), radians in [0, pi/2]
        `bnn.geometry.angle` of the flattened filters; pi/2 for a filter ternarized to all zeros.
    """
    return geometry.angle(filter_vectors(weights_continuous), filter_vectors(weights_quantized))


def angle_density(angles, grid=ANGLE_GRID):
    """Kernel density estimate of a set of angles.

    Parameters
    ----------
    angles : array_like, shape (m,), radians
    grid : array_like, shape (g,), radians

    Returns
    -------
    ndarray, shape (g,), per radian
        `scipy.stats.gaussian_kde` with Scott's bandwidth. A single angle, or identical ones (where
        the KDE is undefined), gives a normal bump of width 0.25 degree at that angle.
    """
    angles = np.ravel(np.asarray(angles, dtype=np.float64))
    if angles.size < 2 or np.ptp(angles) == 0:
        return stats.norm.pdf(grid, loc=angles.mean(), scale=np.radians(0.25))
    return stats.gaussian_kde(angles)(grid)


def peak_angle(angles, grid=ANGLE_GRID):
    """The angle at which `angle_density` peaks (the mode of the angle distribution), radians."""
    grid = np.asarray(grid)
    return float(grid[np.argmax(angle_density(angles, grid))])


def quantized_values(levels):
    """The values a quantized weight or activation takes under the original flags: (-1, 1) or
    (-1, 0, 1), as `bnn.quantizers.from_levels` declares them (``Quantizer.values``)."""
    return from_levels(levels).values


def value_fractions(weights_quantized, levels=None):
    """Fraction of the quantized weights at each of -1, 0 and 1.

    Parameters
    ----------
    weights_quantized : array
    levels : ignored
        Kept for callers of the original signature: the fractions do not depend on it.

    Returns
    -------
    dict of str -> float
        ``{"-1": ..., "0": ..., "1": ...}``; the key "0" is there for binary layers too (and is 0).
    """
    w = np.asarray(weights_quantized)
    return {f"{v:g}": float(np.mean(w == v)) for v in (-1.0, 0.0, 1.0)}


def _level_theory(levels, threshold, weight_std):
    return from_levels(levels, threshold).theory(weight_std)


def theory_angle(levels, threshold=0.0, weight_std=1.0):
    """Large-d angle between a Gaussian vector and its quantization by the original flags' quantizer.

    Parameters
    ----------
    levels : {2, 3}
    threshold : float
        Ternarization threshold in weight units (``--threshold``).
    weight_std : float
        Standard deviation of the layer's continuous weights: the threshold is ``threshold /
        weight_std`` standard deviations.

    Returns
    -------
    float, radians
        ``from_levels(levels, threshold).theory(weight_std)``'s angle (`bnn.quantizers`): arccos
        sqrt(2/pi) (37.07 deg) for binary layers, `bnn.theory.ternary_angle` at ``threshold /
        weight_std`` for ternary ones. `bnn.network_geometry.LayerGeometry.theory_angle` asks the
        layer's own quantizer.
    """
    return float(_level_theory(levels, threshold, weight_std)["angle"])


def theory_angle_std(levels, dim, threshold=0.0, weight_std=1.0):
    """Large-d standard deviation of that angle for d = ``dim``: c / sqrt(d) (`bnn.theory`)."""
    return float(_level_theory(levels, threshold, weight_std)["angle_std_coefficient"] / np.sqrt(dim))
