"""Each quantizer's Gaussian geometry at its best parameter: theory beside Monte Carlo.

    python -m bnn.quantizer_theory                      # the built-ins of docs/quantizers.md
    python -m bnn.quantizer_theory sign uniform:bits=3 --d 4000

    python -m bnn.quantizer_theory --runs runs/MNIST-binary runs/MNIST-uniform

For each quantizer (a spec, `bnn.quantizers.parse_spec`) at its best parameter
(``Quantizer.best_parameter``, in standard deviations; as given where it has none): the large-d
angle between a Gaussian vector x and Q(x), its spread coefficient c (std = c / sqrt(d)), the
fraction of zeros, and the same three measured on ``--n`` Gaussian vectors of dimension ``--d``.
With ``--runs``: for each trained run directory, its weight quantizer, test accuracy, and per
hidden layer the angle between W and Q(W) after the last epoch (``geometry.csv``) beside that
quantizer's theory at the layer's weight standard deviation, for Gaussian weights and for uniform
ones (the shape of the ``glorot_uniform`` initialization, which short runs barely leave).
"""

import numpy as np

from bnn import cli

#: The quantizers of the angle-against-bits figure (`bnn.plotting.plot_angle_against_bits`).
BITS_SPECS = ("sign", "ternary", "uniform:bits=2", "uniform:bits=3", "uniform:bits=4", "uniform:bits=8")
DEFAULT_SPECS = ("sign", "ternary", "scaled_sign", "uniform:bits=2", "uniform:bits=3", "uniform:bits=4",
                 "uniform:bits=8")


def at_best_parameter(quantizer):
    """``quantizer`` at its best parameter (relative to the input's std), and that parameter or None."""
    best = quantizer.best_parameter()
    if best is None:
        return quantizer, None
    config = {**quantizer.get_config(), best["name"]: best["value"], "relative": True}
    return type(quantizer).from_config(config), best


def monte_carlo(quantizer, d, n, seed=0, std=1.0, chunk_entries=4_000_000):
    """Angles between n vectors x ~ N(0, std^2 I_d) and Q(x), their mean and spread, and Q's zero fraction.

    Parameters
    ----------
    quantizer : Quantizer
        Applied with its numpy reference to columns of d entries, at most ``chunk_entries`` at a time,
        as the filters of one layer: a relative threshold or step uses their common std,
        ``scaled_sign`` each column's own mean |x|.
    d, n : int
        Dimension and number of vectors.
    seed : int
    std : float
        The entries' standard deviation (what an absolute threshold or step is compared with).

    Returns
    -------
    dict
        ``angles`` (ndarray, shape (n,), radians), ``angle_mean``, ``angle_std`` (radians; the theory's
        ``c / sqrt(d)``) and ``zero_fraction`` over all n d entries.
    """
    rng = np.random.default_rng(seed)
    step = max(1, chunk_entries // d)
    angles, zeros = [], 0
    for start in range(0, n, step):
        x = (std * rng.standard_normal((d, min(step, n - start)))).astype("float32")
        y = np.asarray(quantizer.numpy(x), dtype="float64")
        x = x.astype("float64")  # 1 - cos is 4e-5 at 8 bits: float32 sums over d entries would blur it
        cos = np.einsum("ij,ij->j", x, y) / np.linalg.norm(x, axis=0) / np.linalg.norm(y, axis=0)
        angles.append(np.arccos(np.clip(cos, -1, 1)))
        zeros += int(np.count_nonzero(y == 0))
    angles = np.concatenate(angles)
    return {"angles": angles, "angle_mean": float(angles.mean()), "angle_std": float(angles.std()),
            "zero_fraction": zeros / (n * d)}


def table(specs=DEFAULT_SPECS, d=1000, n=1000, seed=0):
    """One row per spec at its best parameter: theory beside :func:`monte_carlo`.

    Returns
    -------
    list of dict
        ``spec``, ``bits`` (declared precision), ``levels`` (distinct output values), ``parameter``,
        ``angle_deg``, ``c`` and ``zeros`` (theory), ``mc_angle_deg``, ``mc_std_deg``, ``mc_c``
        (``mc_std * sqrt(d)``) and ``mc_zeros``; only ``spec`` and ``theory: None`` for a quantizer
        without Gaussian theory.
    """
    from bnn.quantizers import parse_spec

    rows = []
    for spec in specs:
        q, best = at_best_parameter(parse_spec(spec))
        t = q.theory()
        if t is None:
            rows.append({"spec": spec, "theory": None})
            continue
        mc = monte_carlo(q, d, n, seed)
        rows.append({"spec": spec, "bits": q.precision, "levels": len(set(q.gaussian_pieces()[1])),
                     "parameter": None if best is None else f"{best['name']} {best['value']:.4f}",
                     "angle_deg": float(np.degrees(t["angle"])), "c": t["angle_std_coefficient"],
                     "zeros": t["zero_fraction"], "mc_angle_deg": float(np.degrees(mc["angle_mean"])),
                     "mc_std_deg": float(np.degrees(mc["angle_std"])), "mc_c": mc["angle_std"] * np.sqrt(d),
                     "mc_zeros": mc["zero_fraction"]})
    return rows


def format_table(rows, d, n, seed):
    """:func:`table`'s rows as the text :func:`main` prints."""
    lines = [f"Gaussian x in d = {d}, {n} vectors, seed {seed}; angles in degrees, spread std = c / sqrt(d)",
             f"{'quantizer':<18}{'bits':>5}  {'best parameter (std)':<22}{'angle':>8}{'MC':>8}{'c':>8}{'MC':>8}"
             f"{'zeros':>8}{'MC':>8}"]
    for r in rows:
        if "angle_deg" not in r:
            lines.append(f"{r['spec']:<18}  (declares no Gaussian theory)")
            continue
        lines.append(f"{r['spec']:<18}{r['bits']:>5}  {r['parameter'] or '-':<22}{r['angle_deg']:>8.2f}"
                     f"{r['mc_angle_deg']:>8.2f}{r['c']:>8.3f}{r['mc_c']:>8.3f}{r['zeros']:>8.3f}{r['mc_zeros']:>8.3f}")
    return "\n".join(lines)


def run_rows(run_dir):
    """Per hidden weight layer of a run: measured angle (last row of geometry.csv) and theory (degrees)."""
    import json
    from pathlib import Path

    from bnn import theory
    from bnn.geometry_log import read_geometry_log
    from bnn.runs import load_run

    config, model = load_run(run_dir, "final")
    log = read_geometry_log(run_dir)
    results = json.loads((Path(run_dir) / "results.json").read_text())
    rows = []
    for name in config.layer_names()[:-1]:
        layer = model.get_layer(name)
        if layer.kernel_quantizer is None or log is None:
            continue
        last = (log["layer"] == name) & (log["epoch"] == log["epoch"].max())
        std = float(np.std(layer.kernel.numpy()))
        t = layer.kernel_quantizer.theory(std)
        pieces = layer.kernel_quantizer.gaussian_pieces(std)
        rows.append({"layer": name, "d": int(log["d"][last][0]), "angle_deg": float(log["angle_mean_deg"][last][0]),
                     "theory_deg": None if t is None else float(np.degrees(t["angle"])),
                     "uniform_theory_deg": None if pieces is None else float(np.degrees(
                         theory.step_quantizer_uniform_angle(*pieces)))})
    return config.weight_quantizer, results, rows


def main(argv=None):
    parser = cli.Parser("python -m bnn.quantizer_theory", __doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", default=list(DEFAULT_SPECS), help="quantizer specs (default: the built-ins)")
    parser.add_argument("--d", type=cli.bounded_int(2, 100_000), default=1000, help="dimension (default: 1000)")
    parser.add_argument("--n", type=cli.bounded_int(2, 100_000), default=1000, help="vectors (default: 1000)")
    parser.add_argument("--seed", type=cli.bounded_int(0, 2**32 - 1), default=0, help="seed (default: 0)")
    parser.add_argument("--runs", nargs="+", type=cli.path_arg, help="run directories: measured angles against theory")
    args = parser.parse_args(argv)
    from bnn.errors import BnnError

    if args.runs:
        for run_dir in args.runs:
            spec, results, rows = run_rows(run_dir)
            accuracy = results["best_test_accuracy"]
            print(f"{run_dir}: {spec}, test accuracy {accuracy:.4f} (best validation epoch)")
            for r in rows:
                shown = {k: "-" if r[k] is None else f"{r[k]:.2f}" for k in ("theory_deg", "uniform_theory_deg")}
                print(f"  {r['layer']:<6} d {r['d']:>5}  angle {r['angle_deg']:.2f} deg  theory for Gaussian "
                      f"weights {shown['theory_deg']} deg, for uniform weights {shown['uniform_theory_deg']} deg")
        return 0
    from bnn.quantizers import QuantizerError

    try:
        rows = table(args.specs, args.d, args.n, args.seed)
    except QuantizerError as e:
        raise BnnError(str(e)) from None
    print(format_table(rows, args.d, args.n, args.seed))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli.run(main))
