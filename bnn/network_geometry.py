"""The geometry of a trained binary or ternary network, measured on its own tensors.

For each weight layer (``conv1``.., ``fc1``.., ``out``) this module compares what the network
computes with quantized weights and activations against what it would compute with their
continuous twins (Anderson & Berg 2018, arXiv:1705.07199, Sec. 4-5):

* ``A^b`` is the layer's input (the previous layer's quantized activations; the image for the first
  layer), ``A^c`` the same before the previous layer's quantizer;
* ``W^b`` is the quantized kernel the forward pass uses, ``W^c`` the latent float kernel;
* the dot products ``A . W`` are the layer's own operation (the 'same' stride-1 convolution or the
  matmul) before pooling and batch norm, one per output position and filter.

Only `dot_products` and `network_geometry`, which run the network, need Keras, and they import it
when called, so that importing this module (as the report and the analysis cache do) does not
start the backend. The batch-norm re-estimation and the binarization-pattern experiment are
in `bnn.pattern_experiment`; the numpy-only vector geometry is in `bnn.geometry`, the closed forms
in `bnn.theory`.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from bnn import geometry, theory

#: Keys of `LayerGeometry.dots`: which activations and which weights each dot product uses.
#: ``Ap`` is ``A^b`` with its entries shuffled over the batch (the permutation control; drawn with
#: replacement from the batch's entries).
DOT_PAIRS = {"Ab.Wb": ("Ab", "Wb"), "Ab.Wc": ("Ab", "Wc"), "Ac.Wb": ("Ac", "Wb"),
             "Ap.Wb": ("Ap", "Wb"), "Ap.Wc": ("Ap", "Wc")}
#: The extra pair of a layer given a rotation (`rotated_kernel`): ``Wr`` = R^T sign(R W^c) per filter.
ROTATED_PAIR = {"Ab.Wr": ("Ab", "Wr")}
#: Largest d for which `network_geometry` draws a Haar rotation by default: drawing one costs O(d^3)
#: (about 1.3 s at d = 1152 on one core of the 2-core CPU, ~8x that at 2304).
ROTATION_MAX_D = 2048
#: Grid of angles (radians) on which angle densities are evaluated: 0.045 degree steps over [0, pi/2].
ANGLE_GRID = np.linspace(0.0, np.pi / 2, 2001)


# --------------------------------------------------------------------------------------------------
# Per-layer operations
# --------------------------------------------------------------------------------------------------


def dot_products(a, w, kind):
    """Every dot product of a layer's input patches with its filters, by the layer's own operation.

    Parameters
    ----------
    a : array, shape (n, h, w, c_in) for 'conv' or (n, d) for 'dense'
        Input activations (continuous or quantized).
    w : array, shape (k, k, c_in, c_out) for 'conv' or (d, c_out) for 'dense'
        Kernel (continuous or quantized).
    kind : {'conv', 'dense'}

    Returns
    -------
    ndarray, float32, shape (n, h, w, c_out) or (n, c_out)
        ``conv(a, w)`` with stride 1 and 'same' (zero) padding, as `bnn.layers.QuantConv2D` computes
        it, or ``a @ w`` as `bnn.layers.QuantDense`. Entry ``[i, y, x, j]`` is the dot product of
        filter j (flattened, length d = k*k*c_in) with the k x k patch of image i centred at (y, x).
    """
    import keras

    a = np.asarray(a, dtype="float32")
    w = np.asarray(w, dtype="float32")
    if kind == "conv":
        out = keras.ops.conv(a, w, strides=1, padding="same")
    elif kind == "dense":
        out = keras.ops.matmul(a, w)
    else:
        raise ValueError(f"kind must be 'conv' or 'dense'. Received: kind={kind!r}")
    return keras.ops.convert_to_numpy(out)


#: Points per chunk in `sampled_dot_products` (times d floats per gathered array): bounds memory.
_CHUNK_FLOATS = 1 << 23
#: Cost of one gathered float in `sampled_dot_products` against one multiply-add of the convolution,
#: measured on the 2-core CPU (conv6 of the paper's network: 0.9 ns against 1/38 ns). `network_geometry`
#: samples a conv layer's dot products where that is cheaper than whole convolutions: on 500 images
#: with 200,000 points, every conv layer of the paper's network (conv5-conv6 only just: their
#: 8 x 8 positions are nearly all sampled, and the two ways cost about the same there).
_GATHER_COST = 35


def sampled_dot_products(acts, weights, pairs, index):
    """Dot products of a 'same' stride-1 convolution at chosen output entries only.

    Equal (to float32 rounding) to ``dot_products(acts[a], weights[w], 'conv').ravel()[index]``
    for each pair, at a cost of d multiply-adds per entry instead of the whole convolution: the
    sampled dot products of the paper's CIFAR-10 network are 0.3-1.2% of its conv outputs. Each
    input's patches are gathered once and shared by the pairs that use them.

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
    from bnn.quantizers import from_levels

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
    from bnn.quantizers import from_levels

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
    from bnn.quantizers import from_levels

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
        weight_std`` for ternary ones. `LayerGeometry.theory_angle` asks the layer's own quantizer.
    """
    return float(_level_theory(levels, threshold, weight_std)["angle"])


def theory_angle_std(levels, dim, threshold=0.0, weight_std=1.0):
    """Large-d standard deviation of that angle for d = ``dim``: c / sqrt(d) (`bnn.theory`)."""
    return float(_level_theory(levels, threshold, weight_std)["angle_std_coefficient"] / np.sqrt(dim))


# --------------------------------------------------------------------------------------------------
# A network's layers on a set of images
# --------------------------------------------------------------------------------------------------


@dataclass
class LayerGeometry:
    """The weights of one layer and a sample of its dot products on a set of images.

    Attributes
    ----------
    name : str
    kind : {'conv', 'dense'}
    levels : int or None
    threshold : float
        In weight units.
    quantize_weights : bool
    weight_quantizer, activation_quantizer : bnn.quantizers.Quantizer or None
        The layer's kernel quantizer and the quantizer after its batch norm; made from ``levels``
        and the thresholds when not given. The theory angles and `next_quantized` ask them.
    quantized_input : bool
        Whether the input ``A^b`` is quantized (False for the first layer, which sees the image):
        only then do ``A^c`` and ``A^b`` differ.
    weights_continuous, weights_quantized : array, shape (k, k, c_in, c_out) or (d, c_out)
    dots : dict of str -> array, shape (m,)
        Dot products at the same m sampled (image, position, filter) entries, keyed as in
        `DOT_PAIRS`: ``"Ab.Wb"`` is what the network computes, ``"Ab.Wc"`` the same with the
        continuous weights, ``"Ac.Wb"`` with the activations before quantization, ``"Ap.Wb"`` and
        ``"Ap.Wc"`` with ``A^b`` randomly permuted.
    n_dot_products : int
        How many dot products the layer computed on the images (m of them are kept).
    filters : array of int, shape (m,)
        The filter (output channel) of each kept dot product.
    quantize_activations : bool
        Whether a quantizer follows the layer's batch norm (False for ``out``).
    activation_threshold : float or None
        That quantizer's threshold, in batch-normed units.
    batch_norm : dict
        `bnn.layer_tensors.batch_norm_parameters` of the layer's batch norm.
    input_mean, input_var : float
        Mean and variance of the entries of A^b (what the permutation control shuffles).
    weights_rotated : array, the kernel's shape, or None
        `rotated_kernel` of W^c with a Haar rotation, if one was drawn (then ``dots`` also holds
        ``"Ab.Wr"``).
    activation_std : float or None
        Standard deviation of the batch-normed values the next quantizer sees (after pooling); None
        for ``out``.
    activation_zero_fraction : float or None
        Fraction of the next quantizer's outputs that are 0 (ternary), over all the images.
    """

    name: str
    kind: str
    levels: int
    threshold: float
    quantize_weights: bool
    quantized_input: bool
    weights_continuous: np.ndarray
    weights_quantized: np.ndarray
    dots: dict
    n_dot_products: int
    filters: np.ndarray = None
    quantize_activations: bool = False
    activation_threshold: float = None
    batch_norm: dict = None
    input_mean: float = 0.0
    input_var: float = 1.0
    weights_rotated: np.ndarray = None
    activation_std: float = None
    activation_zero_fraction: float = None
    weight_quantizer: object = None
    activation_quantizer: object = None

    def __post_init__(self):
        # Built from levels and thresholds alone (the original fields): their quantizers.
        from bnn.quantizers import from_levels

        if self.weight_quantizer is None and self.quantize_weights and self.levels in (2, 3):
            self.weight_quantizer = from_levels(self.levels, self.threshold)
        if self.activation_quantizer is None and self.quantize_activations and self.levels in (2, 3):
            self.activation_quantizer = from_levels(self.levels, self.activation_threshold or 0.0)

    @property
    def dim(self):
        """d: length of one filter's weight vector (k*k*c_in for conv, d_in for dense)."""
        return int(np.prod(self.weights_continuous.shape[:-1]))

    @property
    def n_filters(self):
        return int(self.weights_continuous.shape[-1])

    @property
    def weight_std(self):
        """Standard deviation of the continuous weights."""
        return float(np.std(self.weights_continuous))

    def angles(self):
        """Per-filter angle between W^c and W^b, shape (n_filters,), radians."""
        return filter_angles(self.weights_continuous, self.weights_quantized)

    def _theory(self):
        q = self.weight_quantizer
        return None if q is None else q.theory(self.weight_std)

    def theory_angle(self):
        """The weight quantizer's large-d Gaussian angle at this layer's weight std; None without one."""
        t = self._theory()
        return None if t is None else t["angle"]

    def theory_angle_std(self):
        """Its spread c / sqrt(d) for this layer's d; None without a theory."""
        t = self._theory()
        return None if t is None else float(t["angle_std_coefficient"] / np.sqrt(self.dim))

    def init_std(self):
        """Standard deviation of the weights at initialization (Keras's ``glorot_uniform``)."""
        receptive = int(np.prod(self.weights_continuous.shape[:-2])) if self.kind == "conv" else 1
        return theory.glorot_uniform_std(self.dim, receptive * self.n_filters)

    def init_angle(self):
        """Large-d angle between the initial (uniform) weights and their quantization: 30 degrees for
        binary, `bnn.theory.uniform_quantization_angle` at threshold / `init_std` for ternary; any
        quantizer's through its step function (`bnn.theory.step_quantizer_uniform_angle`)."""
        pieces = None if self.weight_quantizer is None else self.weight_quantizer.gaussian_pieces(self.init_std())
        return None if pieces is None else theory.step_quantizer_uniform_angle(*pieces)

    def next_quantized(self, key):
        """`next_quantized` of ``dots[key]``: what the next quantizer outputs; None for ``out``."""
        if not self.quantize_activations:
            return None
        return next_quantized_by(self.dots[key], self.filters, self.batch_norm, self.activation_quantizer)

    def disagreement(self, network_key, other_key):
        """Where the next quantizer maps a pair of dot products to different values; None for ``out``.

        ``dots[network_key]`` is in the units the network's batch norm was fitted to (A^b.W^b, or
        its permuted twin); ``dots[other_key]`` (with W^c or A^c) has another scale, so it is first
        brought to those units by the least-squares line of it on the network's values, y' = (y -
        intercept) / slope: what re-estimating batch norm for it would do, up to per-filter
        differences. Both are then quantized by `next_quantized` at each filter's threshold.

        Returns
        -------
        ndarray of bool, shape (m,), or None
        """
        if not self.quantize_activations:
            return None
        x, y = self.dots[network_key], self.dots[other_key]
        fit = regression(x, y)
        if fit["slope"]:
            y = (y - fit["intercept"]) / fit["slope"]
        q = [next_quantized_by(v, self.filters, self.batch_norm, self.activation_quantizer) for v in (x, y)]
        return q[0] != q[1]

    def permuted_r_expected(self):
        """`permuted_r_expected` for this layer's kernels and input statistics."""
        return permuted_r_expected(self.weights_quantized, self.weights_continuous, self.input_mean,
                                   self.input_var)


def _sample_positions(n_total, n_points, rng):
    """Sorted flat indices of ``min(n_points, n_total)`` entries drawn without replacement."""
    if n_points >= n_total:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=n_points, replace=False))


def network_geometry(model, x, n_points=200_000, batch_size=100, seed=0, rotation_max_d=ROTATION_MAX_D,
                     progress=None):
    """Run images through a trained network and sample every layer's dot products.

    The images go through in batches and only the sampled dot products are kept, so memory stays
    bounded (the paper's CIFAR-10 network computes 500 x 32 x 32 x 128 dot products in each of
    its first two layers).

    Parameters
    ----------
    model : keras.Model
        A network built by `bnn.model.build_model` (e.g. from `bnn.runs.load_run`).
    x : array, shape (n, height, width, channels)
        Images in [-1, 1].
    n_points : int
        Dot products kept per layer, drawn uniformly (seeded) from all n x positions x filters;
        every entry of `LayerGeometry.dots` uses the same draw.
    batch_size : int
    seed : int
        Seeds the sampling, the permutation control and the rotations.
    rotation_max_d : int
        Layers with d up to this (and binary weights) get a Haar rotation R and the dot products
        with R^T sign(R W^c) (`rotated_kernel`). The first layer always gets one.
    progress : callable, optional
        Called with the number of images done after each batch (e.g. `keras.utils.Progbar.update`).

    Returns
    -------
    layers : list of LayerGeometry
        One per weight layer, in order.
    scores : ndarray, shape (n, 10)
        The network's outputs (inference mode).
    """
    import keras

    from bnn.layer_tensors import iter_inspect, weight_layer_names
    from bnn.model import companion
    from bnn.quantizers import outputs_sign

    x = np.asarray(x, dtype="float32")
    n = len(x)
    layers = [model.get_layer(name) for name in weight_layer_names(model)]
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(layers))]
    per_image = [int(np.prod(layer.output.shape[1:])) for layer in layers]
    picks = [_sample_positions(n * p, n_points, rng) for p, rng in zip(per_image, rngs)]
    quantized_input = [False] + [bool(companion(model, layer.name, "act").quantize_activations)
                                 for layer in layers[:-1]]
    rot_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(len(layers))]
    rotated = []
    for i, layer in enumerate(layers):
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        d = int(np.prod(kernel.shape[:-1]))
        # R^T sign(R W^c) is compared with the layer's own +-1 weights: only where those are sign(W^c).
        wanted = outputs_sign(layer.kernel_quantizer) and (d <= rotation_max_d or i == 0)
        rotated.append(rotated_kernel(kernel, geometry.haar_rotation(d, rot_rngs[i])) if wanted else None)
    kept = [{key: [] for key in {**DOT_PAIRS, **(ROTATED_PAIR if r is not None else {})}} for r in rotated]
    moments = np.zeros((len(layers), 3))  # per layer: count, sum and sum of squares of A^b's entries
    # per layer: count, sum and sum of squares of the batch-normed pre-activations, and zero activations
    act_moments = np.zeros((len(layers), 4))
    scores, tensors = [], None
    for start, (batch_scores, tensors) in zip(range(0, n, batch_size), iter_inspect(model, x, batch_size)):
        stop = start + len(batch_scores)
        scores.append(batch_scores)
        for i, (rng, t) in enumerate(zip(rngs, tensors)):
            lo, hi = np.searchsorted(picks[i], [start * per_image[i], stop * per_image[i]])
            sel = picks[i][lo:hi] - start * per_image[i]
            a = t.inputs.ravel()  # sums accumulated in float64, as in _moments, without a float64 copy
            moments[i] += a.size, a.sum(dtype=np.float64), np.einsum("i,i->", a, a, dtype=np.float64)
            if t.activation is not None:
                p = t.pre_activation.ravel()
                act_moments[i] += (p.size, p.sum(dtype=np.float64), np.einsum("i,i->", p, p, dtype=np.float64),
                                   np.count_nonzero(t.activation == 0))
            # Entries drawn with replacement from the batch's: the same control as a permutation
            # (i.i.d. entries with A^b's distribution) at a third of its cost on 13M entries.
            size = t.inputs.size
            draw = rng.integers(0, size, size, dtype=np.int32 if size < 2**31 else np.int64)
            a_p = t.inputs.reshape(-1)[draw].reshape(t.inputs.shape)
            acts = {"Ab": t.inputs, "Ac": t.inputs_continuous, "Ap": a_p}
            weights = {"Wb": t.weights_quantized, "Wc": t.weights_continuous, "Wr": rotated[i]}
            own = {"Ab.Wb"} | ({"Ac.Wb"} if not quantized_input[i] else set())
            for key in own:  # the layer's own output (A^c is A^b when the input is not quantized)
                kept[i][key].append(t.outputs.reshape(-1)[sel])
            pairs = {key: {**DOT_PAIRS, **ROTATED_PAIR}[key] for key in kept[i] if key not in own}
            gathers = len({a for a, _ in pairs.values()}) + len(pairs)  # floats read per sampled point, over d
            if t.kind == "conv" and len(sel) * gathers * _GATHER_COST < t.outputs.size * len(pairs):
                for key, dots in sampled_dot_products(acts, weights, pairs, sel).items():
                    kept[i][key].append(dots)
            else:
                for key, (a_key, w_key) in pairs.items():
                    kept[i][key].append(dot_products(acts[a_key], weights[w_key], t.kind).reshape(-1)[sel])
        del acts, a_p  # free this batch's tensors before the next batch is computed
        if progress is not None:
            progress(stop)
    result = []
    for i, t in enumerate(tensors):
        count, total, squares = moments[i]
        act_count, act_total, act_squares, act_zeros = act_moments[i]
        has_act = act_count > 0
        result.append(LayerGeometry(
            name=t.name, kind=t.kind, levels=t.levels, threshold=t.threshold,
            quantize_weights=t.quantize_weights, quantized_input=quantized_input[i],
            weights_continuous=t.weights_continuous, weights_quantized=t.weights_quantized,
            dots={key: np.concatenate(parts) for key, parts in kept[i].items()},
            n_dot_products=n * per_image[i], filters=picks[i] % t.outputs.shape[-1],
            quantize_activations=t.name != "out" and t.quantize_activations,
            activation_threshold=t.activation_threshold, batch_norm=t.batch_norm,
            weight_quantizer=t.weight_quantizer, activation_quantizer=t.activation_quantizer,
            input_mean=total / count, input_var=squares / count - (total / count) ** 2, weights_rotated=rotated[i],
            activation_std=float(np.sqrt(max(act_squares / act_count - (act_total / act_count) ** 2, 0.0)))
            if has_act else None,
            activation_zero_fraction=float(act_zeros / act_count) if has_act else None))
    return result, np.concatenate(scores)


def layer_summary(layer):
    """The per-layer numbers of the report, JSON-ready (angles in radians and degrees).

    Parameters
    ----------
    layer : LayerGeometry

    Returns
    -------
    dict
        ``d``, ``n_filters``, ``kind``; ``weights`` (r, slope, intercept of A^b.W^c on A^b.W^b),
        ``activations`` (A^b.W^b on A^c.W^b; None when the input is not quantized), ``permuted``
        (A^p.W^c on A^p.W^b) and ``permuted_r_expected`` (its value for i.i.d. inputs,
        `permuted_r_expected`); ``next_quantizer_differs``: the fraction of the sampled pairs of
        ``weights``, ``activations`` and ``permuted`` that the next quantizer maps to different values
        (None for the output layer, which has no quantizer); the angle between each filter's W^c and W^b: ``angle_mean``,
        ``angle_peak`` (mode of its KDE), ``angle_std``, ``angle_theory``, ``angle_init_theory`` (the same theory for
        the uniform initialization: 30 deg for binary; None where the weights are not quantized); ``weight_std``, ``threshold_in_std``, ``value_fractions`` and
        ``zero_fraction`` of the quantized weights.
    """
    dots = layer.dots
    threshold = _zero_threshold(layer.weight_quantizer, layer.weight_std)
    out = {
        "kind": layer.kind,
        "d": layer.dim,
        "n_filters": layer.n_filters,
        "quantize_weights": layer.quantize_weights,
        "n_dot_products": layer.n_dot_products,
        "n_sampled": int(len(dots["Ab.Wb"])),
        "weights": regression(dots["Ab.Wb"], dots["Ab.Wc"]),
        "activations": regression(dots["Ac.Wb"], dots["Ab.Wb"]) if layer.quantized_input else None,
        "permuted": regression(dots["Ap.Wb"], dots["Ap.Wc"]),
        "permuted_r_expected": layer.permuted_r_expected(),
        "next_quantizer_differs": None if not layer.quantize_activations else {
            "weights": float(np.mean(layer.disagreement("Ab.Wb", "Ab.Wc"))),
            "activations": float(np.mean(layer.disagreement("Ab.Wb", "Ac.Wb"))) if layer.quantized_input else None,
            "permuted": float(np.mean(layer.disagreement("Ap.Wb", "Ap.Wc")))},
        "weight_std": layer.weight_std,
        "threshold": threshold,
        "threshold_in_std": None if threshold is None else threshold / layer.weight_std,
    }
    if layer.quantize_weights:
        angles = layer.angles()
        angle_numbers = {"angle_mean": float(np.mean(angles)), "angle_peak": peak_angle(angles),
                         "angle_std": float(np.std(angles)), "angle_theory": layer.theory_angle(),
                         "angle_std_theory": layer.theory_angle_std(), "angle_init_theory": layer.init_angle()}
        fractions = value_fractions(layer.weights_quantized)
    else:
        angle_numbers = dict.fromkeys(("angle_mean", "angle_peak", "angle_std", "angle_theory",
                                       "angle_std_theory", "angle_init_theory"))
        fractions = None
    out.update(threshold_numbers(layer))
    for key, value in list(angle_numbers.items()):
        out[key] = value
        out[f"{key}_deg"] = None if value is None else float(np.degrees(value))
    out["value_fractions"] = fractions
    out["zero_fraction"] = None if fractions is None else fractions["0"]
    out["weight_zero_fraction"] = out["zero_fraction"]
    out["rotation"] = rotation_numbers(layer)
    return out


def rotation_numbers(layer):
    """Plain sign(W) against the generalized binarization R^T sign(R W) for one layer.

    Returns
    -------
    dict or None
        ``plain`` and ``rotated``, each with the per-filter angle to W^c (``angle_mean_deg``,
        ``angle_std_deg``) and Pearson ``r`` of A.W^c on A.W (the dot-product proportionality of
        section 2, A = A^b); None where no rotation was drawn (ternary weights, or d above
        ``rotation_max_d``).
    """
    if layer.weights_rotated is None:
        return None
    out = {"d": layer.dim}
    for name, kernel, key in (("plain", layer.weights_quantized, "Ab.Wb"), ("rotated", layer.weights_rotated, "Ab.Wr")):
        angles = np.degrees(filter_angles(layer.weights_continuous, kernel))
        out[name] = {"angle_mean_deg": float(angles.mean()), "angle_std_deg": float(angles.std()),
                     "r": regression(layer.dots[key], layer.dots["Ab.Wc"])["r"]}
    return out


def _zero_threshold(quantizer, std):
    """``quantizer.zero_threshold(std)``, None without a quantizer."""
    return None if quantizer is None else quantizer.zero_threshold(std)


def threshold_numbers(layer):
    """A layer's two zero thresholds in units of the spread of what each one quantizes.

    The thresholds are those the layer's quantizers declare (``Quantizer.zero_threshold``; the
    original ternary flags give absolute ones, as in the authors' code): the weight quantizer's
    applies to the continuous weights, the ``<name>_act`` quantizer's to the batch-normed
    pre-activations. Each is given in standard deviations of those values, with the Gaussian theory
    at that value (`bnn.theory.ternary_zero_fraction`, `bnn.theory.ternary_angle`) beside the
    measured fraction of zeros.

    Returns
    -------
    dict
        ``weight_threshold``, ``weight_threshold_in_std``, ``weight_zero_fraction_theory``,
        ``weight_angle_theory_deg``; ``activation_threshold``, ``activation_std``,
        ``activation_threshold_in_std``, ``activation_zero_fraction`` (measured),
        ``activation_zero_fraction_theory``, ``activation_angle_theory_deg``. The weight ones None
        where the weight quantizer has no zero threshold (sign), the activation ones likewise and
        for ``out`` (no quantizer).
    """
    keys = ("weight_threshold", "weight_threshold_in_std", "weight_zero_fraction_theory", "weight_angle_theory_deg",
            "activation_threshold", "activation_std", "activation_threshold_in_std", "activation_zero_fraction",
            "activation_zero_fraction_theory", "activation_angle_theory_deg")
    out = dict.fromkeys(keys)
    threshold = _zero_threshold(layer.weight_quantizer, layer.weight_std)
    if threshold is not None:
        t_w = threshold / layer.weight_std
        out.update(weight_threshold=threshold, weight_threshold_in_std=t_w,
                   weight_zero_fraction_theory=float(theory.ternary_zero_fraction(t_w)),
                   weight_angle_theory_deg=float(np.degrees(theory.ternary_angle(t_w))))
    threshold = _zero_threshold(layer.activation_quantizer, layer.activation_std) if layer.activation_std else None
    if layer.quantize_activations and threshold is not None:
        t_a = threshold / layer.activation_std
        out.update(activation_threshold=threshold, activation_std=layer.activation_std,
                   activation_threshold_in_std=t_a, activation_zero_fraction=layer.activation_zero_fraction,
                   activation_zero_fraction_theory=float(theory.ternary_zero_fraction(t_a)),
                   activation_angle_theory_deg=float(np.degrees(theory.ternary_angle(t_a))))
    return out
