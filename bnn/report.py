"""The geometry report of a trained network: figures and per-layer numbers from its run directory.

    python -m bnn.report --run_dir runs/cifar-10-binary       # figures/cifar-10-binary/
    python -m bnn.report --run_dir RUN_DIR --n_images 500 --out_dir figures/mine --skip_bn_experiment

``gen_plots.ipynb`` calls the same functions, one figure per cell. Everything about the network
(architecture, levels, threshold, data set) is read from the run directory. Each figure is written
to the output folder as PDF and PNG, and the per-layer numbers to ``geometry.json`` there.

Notation (Anderson & Berg 2018, Sec. 4-5): for each weight layer, A^b is its input (quantized
activations), A^c the same before quantization, W^b (W^t for ternary) the quantized weights and W^c
the continuous latent weights; see `bnn.network_geometry`.
"""

if __name__ == "__main__":  # parse before the imports below load TensorFlow: --help is instant
    import sys

    from bnn.commands import report

    sys.exit(report())

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from bnn import analysis_cache
from bnn import network_geometry as ng
from bnn import layer_statistics, plotting, quantizers, report_numbers, runs, theory
from bnn.commands import DEFAULT_BN_IMAGES, DEFAULT_N_IMAGES, default_out_dir
from bnn.config import RunConfig
from bnn.errors import BnnError
from bnn.geometry_log import COLUMNS as TRAINING_COLUMNS, FILE as TRAINING_GEOMETRY, read_geometry_log

NUMBERS_FILE = "geometry.json"
#: File names (without suffix) of the figures, in the order the report makes them.
FIGURES = {
    "weights": "dot_products_weights",
    "weights_enlarged": "dot_products_weights_enlarged",
    "activations": "dot_products_activations",
    "angles": "weight_angles",
    "angle_spread": "weight_angle_spread",
    "weight_distributions": "weight_distributions",
    "permuted": "dot_products_permuted",
    "binarization_patterns": "binarization_patterns",
    "training": "training_geometry",
}


@dataclass
class Report:
    """A loaded run and what the report has computed on it so far.

    Attributes
    ----------
    run_dir : Path
    config : RunConfig
    model_path : Path
        The run's model file; `model` loads it on first use, so that a report read from the
        analysis cache (`bnn.analysis_cache`) never loads the network.
    which : str or int
        Which model of the run: 'best', 'final' or a checkpoint epoch.
    data : Dataset
        The run's data set (its training images serve the batch-norm experiment).
    x_test, y_test : arrays, shapes (n, ...) and (n,)
        The first n test images, the ones every figure uses.
    n_requested : int
    out_dir : Path
    layers : list of LayerGeometry
        Filled by `analyse`.
    summaries : dict of str -> dict
        `bnn.report_numbers.layer_summary` per layer name, filled by `analyse`.
    accuracy : float
        Test accuracy on ``x_test``, filled by `analyse`.
    patterns : list of dict
        Filled by `binarization_patterns`.
    seconds : dict of str -> float
        Wall time of the steps run so far.
    """

    run_dir: Path
    config: object
    model_path: Path
    which: object
    data: object
    x_test: np.ndarray
    y_test: np.ndarray
    n_requested: int
    out_dir: Path
    layers: list = None
    summaries: dict = None
    accuracy: float = None
    patterns: list = None
    seconds: dict = field(default_factory=dict)
    _model: object = field(default=None, repr=False)

    @property
    def model(self):
        """The trained network (keras.Model), loaded from ``model_path`` on first use."""
        if self._model is None:
            self._model = runs.load_model_file(self.model_path)
        return self._model

    @property
    def weight_quantizer(self):
        """The run's weight quantizer (`bnn.quantizers`), made from its config's spec."""
        return quantizers.get(self.config.weight_quantizer)

    @property
    def q(self):
        """Superscript of the quantized tensors in labels: 't' where the weight quantizer has a zero
        output (ternary), else 'b'."""
        return "b" if self.weight_quantizer.zero_threshold() is None else "t"

    def path(self, figure):
        """Where a figure of `FIGURES` is saved (without suffix: written in each format of
        `bnn.plotting.set_figure_formats`, PDF and PNG by default)."""
        return self.out_dir / FIGURES[figure]


def open_run(run_dir, n_images=DEFAULT_N_IMAGES, which="best", out_dir=None, data_dir=None, print_fn=print):
    """Load a run directory, its network and the first ``n_images`` test images of its data set.

    Parameters
    ----------
    run_dir : str or Path
        A directory written by ``run_bnn.py``.
    n_images : int
        Test images to use; if the test set holds fewer, all of them are used (and a line says so).
    which : 'best', 'final' or int
    out_dir : str or Path, optional
        Where figures and numbers go (default `default_out_dir`).
    data_dir : str or Path, optional
        Read the data set from here instead of the run's own ``data_dir``.
    print_fn : callable

    Returns
    -------
    Report

    Raises
    ------
    BnnError
        One sentence saying what to run: the run directory does not exist or has no model, the run
        is a continuous (float) one, or its data set is not downloaded. (The model is loaded on
        first use of ``Report.model``, which raises it if the file cannot be read.)
    """
    from bnn.runs import load_dataset

    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise BnnError(f"n_images must be a positive integer, got {n_images!r}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BnnError(f"run directory {run_dir} does not exist: train a network into it first, "
                       f"e.g. python run_bnn.py --run_dir {run_dir}, or give the path of an existing run")
    model_path = runs.resolve_model_path(run_dir, which)
    config = RunConfig.load(run_dir / runs.CONFIG)
    if config.continuous:
        raise BnnError(f"{run_dir} is a continuous (float) run, which has no quantized weights to "
                       "compare: give a binary or ternary run (python run_bnn.py without --continuous)")
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    data = load_dataset(config)
    n_available = len(data.x_test)
    if n_available == 0:
        raise BnnError(f"the {config.data_set} test set in the run's data directory is empty: "
                       f"download it again with python data/download_data.py --data_set {config.data_set}")
    if n_images > n_available:
        print_fn(f"asked for {n_images} test images, but the {config.data_set} test set holds only "
                 f"{n_available}: using all {n_available}")
    n = min(n_images, n_available)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = quantizers.get(config.weight_quantizer).zero_threshold()
    print_fn(f"{run_dir} ({which} model): {config.mode} network on {config.data_set}, layers "
             f"{', '.join(config.layer_names())}"
             + (f", threshold {threshold:g}" if threshold is not None else "")
             + f"; {n} test images; output in {out_dir}")
    return Report(run_dir=run_dir, config=config, model_path=model_path, which=which, data=data,
                  x_test=data.x_test[:n], y_test=data.y_test[:n], n_requested=n_images, out_dir=out_dir)


def analyse(report, n_points=200_000, batch_size=100, seed=0, rotation_max_d=ng.ROTATION_MAX_D, cache=True,
            print_fn=print):
    """Run the test images through the network: dot products, angles and test accuracy per layer.

    Fills ``report.layers``, ``report.summaries`` and ``report.accuracy``; see
    `bnn.network_geometry.network_geometry` for ``n_points``, ``batch_size`` and ``seed``. With
    ``cache``, the result is read from the run directory if it was computed there before for the same
    model, images and parameters, and stored there otherwise (`bnn.analysis_cache`).

    Returns
    -------
    float
        Test accuracy of the loaded network on ``report.x_test``.
    """
    start = time.perf_counter()

    # What compute() returns is what the cache stores: a change to its entries needs
    # analysis_cache.FORMAT raised (report.py is not part of the cache's code digest).
    def compute():
        import keras  # only here: a cache hit never starts the backend

        progress = keras.utils.Progbar(len(report.x_test), unit_name="image")
        layers, scores = ng.network_geometry(report.model, report.x_test, n_points=n_points, batch_size=batch_size,
                                             seed=seed, rotation_max_d=rotation_max_d, progress=progress.update)
        return {"layers": layers, "summaries": {layer.name: report_numbers.layer_summary(layer) for layer in layers},
                "accuracy": float(np.mean(scores.argmax(-1) == report.y_test))}

    result = _cached(report, "geometry", compute, cache, print_fn, (report.x_test, report.y_test),
                     n_points=n_points, batch_size=batch_size, seed=seed, rotation_max_d=rotation_max_d)
    report.layers, report.summaries, report.accuracy = result["layers"], result["summaries"], result["accuracy"]
    report.seconds["analyse"] = time.perf_counter() - start
    full = runs.read_json(report.run_dir / runs.RESULTS, {}).get(
        f"{report.which}_test_accuracy" if report.which in ("best", "final") else None)
    print_fn(f"test accuracy {report.accuracy:.4f} on {len(report.y_test)} test images"
             + (f" ({full:.4f} on all {report.config.data_set} test images in results.json)" if full else ""))
    return report.accuracy


def _cached(report, step, compute, cache, print_fn, images, **params):
    """``compute()`` through the run directory's `bnn.analysis_cache` (or directly, without ``cache``)."""
    if not cache:
        return compute()
    key = analysis_cache.analysis_key(report.run_dir, report.which, images, **params)
    path = analysis_cache.cache_path(report.run_dir, step, report.which)
    return analysis_cache.cached(path, key, compute, print_fn)[0]


def _titles(report, layers):
    return [f"{layer.name} (d = {layer.dim})" for layer in layers]


def _fits(report, layers, key):
    return [report.summaries[layer.name][key] for layer in layers]


def figure_weight_dot_products(report):
    """Figure 2: per layer, A·W^b (x) against A·W^c (y), with r and the regression line."""
    q = report.q
    return plotting.plot_dot_products(
        _titles(report, report.layers), [l.dots["Ab.Wb"] for l in report.layers],
        [l.dots["Ab.Wc"] for l in report.layers], _fits(report, report.layers, "weights"),
        x_label=rf"$A \cdot W^{q}$", y_label=r"$A \cdot W^c$",
        disagree=[l.disagreement("Ab.Wb", "Ab.Wc") for l in report.layers],
        suptitle="dot products with quantized against continuous weights (red: the next quantizer differs)",
        save_path=report.path("weights"))


def enlarged_layer(report):
    """The layer of the enlarged panel: the third hidden layer as in the paper, or the last hidden one."""
    hidden = report.layers[:-1] or report.layers
    return hidden[min(2, len(hidden) - 1)]


def figure_weight_dot_products_enlarged(report, layer=None):
    """Figure 2, one layer enlarged (default `enlarged_layer`); ``layer`` is a layer name."""
    layer = enlarged_layer(report) if layer is None else next(l for l in report.layers if l.name == layer)
    q = report.q
    return plotting.plot_dot_product_panel(
        layer.dots["Ab.Wb"], layer.dots["Ab.Wc"], report.summaries[layer.name]["weights"],
        x_label=rf"$A \cdot W^{q}$", y_label=r"$A \cdot W^c$", title=f"{layer.name} (d = {layer.dim})",
        disagree=layer.disagreement("Ab.Wb", "Ab.Wc"),
        bins=150, save_path=report.path("weights_enlarged"))


def figure_activation_dot_products(report):
    """Figure 3: A^c·W^b (x) against A^b·W^b (y), for the layers whose input is quantized.

    Returns None (and draws nothing) when no layer has a quantized input.
    """
    layers = [l for l in report.layers if l.quantized_input]
    if not layers:
        return None
    q = report.q
    return plotting.plot_dot_products(
        _titles(report, layers), [l.dots["Ac.Wb"] for l in layers], [l.dots["Ab.Wb"] for l in layers],
        _fits(report, layers, "activations"), x_label=rf"$A^c \cdot W^{q}$", y_label=rf"$A^{q} \cdot W^{q}$",
        disagree=[l.disagreement("Ab.Wb", "Ac.Wb") for l in layers],
        suptitle="dot products with continuous against quantized activations", save_path=report.path("activations"))


def _quantized_layers(report):
    return [l for l in report.layers if l.quantize_weights]


def figure_angles(report):
    """Figure 4: density of the per-filter angle between W^b and W^c per layer, zoomed and full range,
    with each layer's weight quantizer's Gaussian theory at that layer's weight spread (sign:
    arccos sqrt(2/pi) for every layer; ternary: `bnn.theory.ternary_angle` at the threshold in units
    of each layer's weight std) and its angle on the uniform initialization."""
    layers = _quantized_layers(report)
    if not layers:
        return None
    densities = [layer_statistics.angle_density(l.angles()) for l in layers]
    # Each layer's weight quantizer gives the lines: one for all layers where they coincide (sign:
    # arccos sqrt(2/pi) whatever the weights' scale), one per layer where the quantizer's angle
    # depends on the weights' spread (an absolute ternary threshold), none without a theory.
    spec = report.config.weight_quantizer or "the weight quantizer"
    theory_angles = _reference([l.theory_angle() for l in layers])
    label = f"Gaussian theory of {spec}"
    init_angles = _reference([l.init_angle() for l in layers])
    init_label = "uniform initialization"
    return plotting.plot_layer_angle_densities(
        _titles(report, layers), layer_statistics.ANGLE_GRID, densities, theory_angles, theory_label=label,
        init_angles=init_angles, init_label=init_label, save_path=report.path("angles"))


def _reference(values):
    """Per-layer reference values as one value when they all agree, the list when they differ,
    None when a layer has none (its quantizer declares no Gaussian theory)."""
    if any(v is None for v in values):
        return None
    values = [float(v) for v in values]
    return values[0] if np.allclose(values, values[0], rtol=0, atol=1e-9) else values


def figure_angle_spread(report):
    """Figure 5: standard deviation of the per-filter angles against d, log-log, with c / sqrt(d)."""
    layers = _quantized_layers(report)
    if not layers:
        return None
    s = report.summaries
    # c of the c / sqrt(d) law, from each layer's quantizer at its weight spread (the median over
    # the layers where it depends on the spread); no line without a theory
    stds = [l.theory_angle_std() for l in layers]
    coefficient = None if any(v is None for v in stds) else float(
        np.median([v * np.sqrt(l.dim) for v, l in zip(stds, layers)]))
    return plotting.plot_layer_angle_spread(
        [l.name for l in layers], [l.dim for l in layers], [s[l.name]["angle_std"] for l in layers],
        theory_stds=[s[l.name]["angle_std_theory"] for l in layers], coefficient=coefficient,
        save_path=report.path("angle_spread"))


def figure_weight_distributions(report):
    """Figure 6: continuous weights per layer (log scale where the quantizer has no zero threshold,
    e.g. sign; the first layer's threshold marked where it has one, e.g. ternary) and the fraction
    of each quantized value per layer."""
    layers = _quantized_layers(report)
    if not layers:
        return None
    threshold = layers[0].weight_quantizer.zero_threshold(layers[0].weight_std)
    return plotting.plot_weight_distributions(
        [l.name for l in layers], [l.weights_continuous for l in layers],
        [report.summaries[l.name]["value_fractions"] for l in layers],
        threshold=threshold, log=threshold is None,
        save_path=report.path("weight_distributions"))


def figure_permuted_dot_products(report):
    """Figure 7: the permutation control, A_perm·W^b against A_perm·W^c with A^b randomly permuted."""
    q = report.q
    return plotting.plot_dot_products(
        _titles(report, report.layers), [l.dots["Ap.Wb"] for l in report.layers],
        [l.dots["Ap.Wc"] for l in report.layers], _fits(report, report.layers, "permuted"),
        disagree=[l.disagreement("Ap.Wb", "Ap.Wc") for l in report.layers],
        r_expected=[report.summaries[l.name]["permuted_r_expected"] for l in report.layers],
        x_label=rf"$A_{{perm}} \cdot W^{q}$", y_label=r"$A_{perm} \cdot W^c$",
        suptitle="control: activations randomly permuted", save_path=report.path("permuted"))


def read_training_geometry(run_dir):
    """The run's ``geometry.csv`` (the weights' geometry per epoch), by layer; None if there is none.

    Runs made before training wrote it have none, and still load and report.

    Returns
    -------
    dict of str -> dict of str -> ndarray, or None
        Layer name (in file order) -> column name (`TRAINING_COLUMNS` but ``layer``) -> values
        sorted by epoch.

    Raises
    ------
    BnnError
        The file lacks one of `TRAINING_COLUMNS`.
    """
    import csv

    path = Path(run_dir) / TRAINING_GEOMETRY
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    missing = [c for c in TRAINING_COLUMNS if c not in header]
    if missing:
        raise BnnError(f"{path} lacks the columns {', '.join(missing)} (it has {header}): "
                       f"it should hold {', '.join(TRAINING_COLUMNS)}")
    log = read_geometry_log(run_dir)  # flip_ratio is NaN at epoch 0, where nothing came before
    out = {}
    for layer in dict.fromkeys(log["layer"]):
        rows = log["layer"] == layer
        order = np.argsort(log["epoch"][rows], kind="stable")
        out[str(layer)] = {c: log[c][rows][order].astype(float) for c in TRAINING_COLUMNS if c != "layer"}
    return out


def figure_training_geometry(report):
    """The weights' geometry through training from the run's ``geometry.csv``, with the Gaussian
    theory (37.07 deg for binary) and the uniform initialization's value (30 deg) as reference lines.
    None (nothing drawn) for a run without the file."""
    history = read_training_geometry(report.run_dir)
    if history is None:
        return None
    q = report.weight_quantizer
    pieces = q.gaussian_pieces(1.0)
    if pieces is not None and pieces == q.gaussian_pieces(2.0):  # one pair of lines fits every layer (sign)
        limit, init = theory.step_quantizer_theory(*pieces)["angle"], theory.step_quantizer_uniform_angle(*pieces)
    else:  # the lines depend on each layer's weight spread (ternary); show the binary ones for scale
        limit, init = theory.binary_limit_angle(), None
    return plotting.plot_training_geometry(history, limit, init, save_path=report.path("training"))


def binarization_patterns(report, n_train=DEFAULT_BN_IMAGES, batch_size=100, cache=True, print_fn=print):
    """Experiment 8: test accuracy with one layer's weights continuous at a time (and all of them),
    before and after re-estimating the batch-norm statistics on ``n_train`` training images.

    Fills and returns ``report.patterns``; see `bnn.pattern_experiment.binarization_pattern_experiment`.
    ``cache`` as in `analyse`.
    """
    if n_train < 1 or len(report.data.x_train) == 0:
        raise BnnError(f"the batch-norm experiment needs training images: got n_train={n_train} and "
                       f"{len(report.data.x_train)} in the {report.config.data_set} training set")
    start = time.perf_counter()
    x_train = report.data.x_train[:n_train]

    def compute():
        from bnn.pattern_experiment import binarization_pattern_experiment

        print_fn(f"batch-norm statistics re-estimated on {len(x_train)} training images; "
                 f"accuracy on {len(report.y_test)} test images")
        return binarization_pattern_experiment(report.config, report.model, x_train, report.x_test, report.y_test,
                                               batch_size=batch_size, print_fn=print_fn)

    report.patterns = _cached(report, "patterns", compute, cache, print_fn, (x_train, report.x_test, report.y_test),
                              batch_size=batch_size)
    report.seconds["binarization_patterns"] = time.perf_counter() - start
    return report.patterns


def figure_binarization_patterns(report):
    """Figure 8: the accuracies of `binarization_patterns` as bars."""
    rows = report.patterns
    return plotting.plot_binarization_patterns(
        [r["pattern"] for r in rows], [r["accuracy_before"] for r in rows], [r["accuracy_after"] for r in rows],
        save_path=report.path("binarization_patterns"))


def layer_table(report):
    """The per-layer numbers as a text table (angles in degrees).

    ``iid r`` is the permutation control's r expected for i.i.d. inputs; ``flip W`` the fraction of
    sampled dot products whose next quantized activation changes with continuous weights ("-" for
    the output layer, which has no quantizer).
    """
    head = (f"{'layer':<7}{'d':>6}{'filters':>8}{'r W':>8}{'slope W':>9}{'r A':>7}{'r perm':>8}{'iid r':>7}"
            f"{'flip W':>7}{'mean °':>8}{'peak °':>8}{'std °':>7}{'theory °':>9}{'zeros':>7}")
    lines = [head]
    for name, s in report.summaries.items():
        def f(value, fmt):
            return format(value, fmt) if value is not None else "-"

        act = s["activations"]["r"] if s["activations"] else None
        flip = s["next_quantizer_differs"]["weights"] if s["next_quantizer_differs"] else None
        lines.append(
            f"{name:<7}{s['d']:>6}{s['n_filters']:>8}{f(s['weights']['r'], '.3f'):>8}"
            f"{f(s['weights']['slope'], '.3g'):>9}{f(act, '.3f'):>7}{f(s['permuted']['r'], '.3f'):>8}"
            f"{f(s['permuted_r_expected'], '.3f'):>7}{f(flip, '.3f'):>7}"
            f"{f(s['angle_mean_deg'], '.2f'):>8}{f(s['angle_peak_deg'], '.2f'):>8}{f(s['angle_std_deg'], '.2f'):>7}"
            f"{f(s['angle_theory_deg'], '.2f'):>9}{f(s['zero_fraction'], '.3f'):>7}")
    return "\n".join(lines)


def rotation_table(report):
    """Plain sign(W) against R^T sign(R W) with a Haar rotation R, per layer: angle to W^c and r of the
    dot products (`bnn.report_numbers.rotation_numbers`); a dash where no rotation was drawn."""
    lines = [f"{'layer':<7}{'d':>6}{'sign(W): angle °':>18}{'r':>7}{'R^T sign(RW): angle °':>23}{'r':>7}"]
    for name, s in report.summaries.items():
        rot = s["rotation"]
        if rot is None:
            lines.append(f"{name:<7}{s['d']:>6}{'-':>18}{'-':>7}{'-':>23}{'-':>7}")
            continue
        p, r = rot["plain"], rot["rotated"]
        lines.append(f"{name:<7}{s['d']:>6}{p['angle_mean_deg']:>18.2f}{p['r']:>7.3f}"
                     f"{r['angle_mean_deg']:>23.2f}{r['r']:>7.3f}")
    return "\n".join(lines)


def threshold_table(report):
    """A ternary run's thresholds per layer, in units of the spread of what each one quantizes, with
    the Gaussian theory at that value (`bnn.report_numbers.threshold_numbers`); None where no
    layer's quantizer has a zero threshold (binary)."""
    if all(s["weight_threshold"] is None and s["activation_threshold"] is None for s in report.summaries.values()):
        return None

    def f(value, fmt):
        return format(value, fmt) if value is not None else "-"

    lines = [f"{'layer':<7}{'weights: t':>11}{'t/std':>7}{'zeros':>7}{'theory':>8}{'angle th °':>11}"
             f"{'  activations: t':>17}{'t/std':>7}{'zeros':>7}{'theory':>8}"]
    for name, s in report.summaries.items():
        lines.append(
            f"{name:<7}{f(s['weight_threshold'], '.3g'):>11}{f(s['weight_threshold_in_std'], '.3f'):>7}"
            f"{f(s['weight_zero_fraction'], '.3f'):>7}{f(s['weight_zero_fraction_theory'], '.3f'):>8}"
            f"{f(s['weight_angle_theory_deg'], '.2f'):>11}{f(s['activation_threshold'], '.3g'):>17}"
            f"{f(s['activation_threshold_in_std'], '.3f'):>7}{f(s['activation_zero_fraction'], '.3f'):>7}"
            f"{f(s['activation_zero_fraction_theory'], '.3f'):>8}")
    return "\n".join(lines)


def numbers(report):
    """Everything the report measured, JSON-ready (angles in radians, with ``_deg`` twins)."""
    c = report.config
    return {
        "run_dir": str(report.run_dir),
        "which": report.which,
        "data_set": c.data_set,
        "mode": c.mode,
        "levels": c.levels,
        "threshold": c.threshold,
        "n_images": int(len(report.y_test)),
        "n_images_requested": int(report.n_requested),
        "test_accuracy": report.accuracy,
        "layers": report.summaries,
        "binarization_patterns": report.patterns,
        "seconds": {k: round(v, 2) for k, v in report.seconds.items()},
    }


def write_numbers(report):
    """Write `numbers` to ``<out_dir>/geometry.json``; return its path."""
    path = report.out_dir / NUMBERS_FILE
    runs.atomic_write_json(numbers(report), path)
    return path


def make_report(run_dir, n_images=DEFAULT_N_IMAGES, out_dir=None, which="best", seed=0, bn_experiment=True,
                bn_images=DEFAULT_BN_IMAGES, data_dir=None, n_points=200_000, batch_size=100,
                rotation_max_d=ng.ROTATION_MAX_D, cache=True, print_fn=print):
    """Make every figure and the JSON of numbers for a run, as ``gen_plots.ipynb`` does.

    Parameters
    ----------
    run_dir : str or Path
    n_images : int
        Test images (all of them if the test set holds fewer).
    out_dir : str or Path, optional
        Default ``figures/<run directory name>`` in the repository.
    which : 'best', 'final' or int
    seed : int
        Seeds the sampled dot products and the permutation control.
    bn_experiment : bool
        Run the binarization-pattern experiment (a forward pass over ``bn_images`` training images
        and the test images per pattern: the slow part).
    bn_images : int
    data_dir : str or Path, optional
        Read the data set from here instead of the run's ``data_dir``.
    n_points, batch_size, rotation_max_d : int
        See `bnn.network_geometry.network_geometry`.
    cache : bool
        Read and store the slow steps' results in the run directory (`bnn.analysis_cache`).
    print_fn : callable

    Returns
    -------
    dict
        `numbers`, also written to ``<out_dir>/geometry.json``.
    """
    report = open_run(run_dir, n_images, which=which, out_dir=out_dir, data_dir=data_dir, print_fn=print_fn)
    analyse(report, n_points=n_points, batch_size=batch_size, seed=seed, rotation_max_d=rotation_max_d,
            cache=cache, print_fn=print_fn)
    print_fn(layer_table(report))
    print_fn(rotation_table(report))
    thresholds = threshold_table(report)
    if thresholds is not None:
        print_fn(thresholds)
    start = time.perf_counter()
    for draw in (figure_weight_dot_products, figure_weight_dot_products_enlarged, figure_activation_dot_products,
                 figure_angles, figure_angle_spread, figure_weight_distributions, figure_permuted_dot_products,
                 figure_training_geometry):
        drawn = draw(report)
        if drawn is not None:
            plt.close(drawn[0])
    if read_training_geometry(report.run_dir) is None:
        print_fn(f"no {TRAINING_GEOMETRY} in the run directory (made before training recorded it): "
                 "no figure of the geometry through training")
    report.seconds["figures"] = time.perf_counter() - start
    if bn_experiment:
        binarization_patterns(report, n_train=bn_images, batch_size=batch_size, cache=cache, print_fn=print_fn)
        plt.close(figure_binarization_patterns(report)[0])
    path = write_numbers(report)
    print_fn(f"figures and {path.name} written to {report.out_dir}")
    return numbers(report)


def main(argv=None):
    """Command line: ``python -m bnn.report --run_dir RUN_DIR [...]``; returns the exit status
    (``bnn.commands.report``; 2 with ``error: ...`` on bad input)."""
    from bnn.commands import report

    return report(argv)
