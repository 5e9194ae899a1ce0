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
start the backend. The numpy-only statistics of one layer's weights and dot products are in
`bnn.layer_statistics`, the per-layer numbers of the report shaped from a `LayerGeometry` in
`bnn.report_numbers`. The batch-norm re-estimation and the binarization-pattern experiment are
in `bnn.pattern_experiment`; the numpy-only vector geometry is in `bnn.geometry`, the closed forms
in `bnn.theory`.
"""

from dataclasses import dataclass

import numpy as np

from bnn import geometry, theory
from bnn.layer_statistics import (filter_angles, next_quantized_by, permuted_r_expected, regression,
                                   rotated_kernel, sampled_dot_products)
from bnn.quantizers import from_levels, outputs_sign

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


#: Cost of one gathered float in `sampled_dot_products` against one multiply-add of the convolution,
#: measured on the 2-core CPU (conv6 of the paper's network: 0.9 ns against 1/38 ns). `network_geometry`
#: samples a conv layer's dot products where that is cheaper than whole convolutions: on 500 images
#: with 200,000 points, every conv layer of the paper's network (conv5-conv6 only just: their
#: 8 x 8 positions are nearly all sampled, and the two ways cost about the same there).
_GATHER_COST = 35


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
        """`bnn.layer_statistics.next_quantized` of ``dots[key]``: what the next quantizer outputs; None for ``out``."""
        if not self.quantize_activations:
            return None
        return next_quantized_by(self.dots[key], self.filters, self.batch_norm, self.activation_quantizer)

    def disagreement(self, network_key, other_key):
        """Where the next quantizer maps a pair of dot products to different values; None for ``out``.

        ``dots[network_key]`` is in the units the network's batch norm was fitted to (A^b.W^b, or
        its permuted twin); ``dots[other_key]`` (with W^c or A^c) has another scale, so it is first
        brought to those units by the least-squares line of it on the network's values, y' = (y -
        intercept) / slope: what re-estimating batch norm for it would do, up to per-filter
        differences. Both are then quantized by `bnn.layer_statistics.next_quantized` at each filter's threshold.

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
        """`bnn.layer_statistics.permuted_r_expected` for this layer's kernels and input statistics."""
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
