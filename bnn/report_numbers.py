"""The per-layer numbers of ``geometry.json`` and the report's tables.

Each function shapes one `bnn.network_geometry.LayerGeometry` into JSON-ready numbers: the
regressions of its dot products, the angles of its filters to their quantization, its zero
thresholds against the Gaussian theory, and plain against rotated binarization. `bnn.report`
stores them (in the analysis cache, as they are computed numbers) and prints its tables from them.
"""

import numpy as np

from bnn import theory
from bnn.layer_statistics import filter_angles, peak_angle, regression, value_fractions


def layer_summary(layer):
    """The per-layer numbers of the report, JSON-ready (angles in radians and degrees).

    Parameters
    ----------
    layer : bnn.network_geometry.LayerGeometry

    Returns
    -------
    dict
        ``d``, ``n_filters``, ``kind``; ``weights`` (r, slope, intercept of A^b.W^c on A^b.W^b),
        ``activations`` (A^b.W^b on A^c.W^b; None when the input is not quantized), ``permuted``
        (A^p.W^c on A^p.W^b) and ``permuted_r_expected`` (its value for i.i.d. inputs,
        `bnn.layer_statistics.permuted_r_expected`); ``next_quantizer_differs``: the fraction of the sampled pairs of
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
