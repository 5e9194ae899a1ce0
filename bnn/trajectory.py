"""The quantization angle of every layer through training, compared across runs.

Reads the ``geometry.csv`` that training writes into each run directory (one row per epoch and
quantized weight layer, epoch 0 the initialization) and puts several runs side by side: a
markdown table of the mean angle between each layer's latent weights w and their quantization
Q(w) at chosen epochs, the first epoch at which each layer reaches the Gaussian limit
(arccos sqrt(2/pi) = 37.07 deg for sign), and a figure of angle against epoch with one panel per
layer and one line per run::

    python -m bnn.trajectory RUN_DIR [RUN_DIR ...] --epochs 0 1 5 10 20 30 --out_dir DIR

It answers how far a schedule takes the weights from the uniform initialization's 30 deg
towards the angle the paper measures on its trained network.
"""

import math
import sys
from pathlib import Path

from bnn import cli

DEFAULT_EPOCHS = (0, 1, 5, 10, 20, 30)
# arccos(sqrt(2/pi)), Anderson & Berg 2018, Sec. 3: the angle between a Gaussian vector and its sign
GAUSSIAN_SIGN_ANGLE_DEG = math.degrees(math.acos(math.sqrt(2 / math.pi)))


def load_histories(run_dirs, labels=None):
    """Per run, per layer, the columns of ``geometry.csv`` ordered by epoch.

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories written by ``run_bnn.py``.
    labels : sequence of str, optional
        One name per run (default: each run directory's name).

    Returns
    -------
    dict of str -> dict of str -> dict of str -> ndarray, shape (n_epochs,)
        ``histories[label][layer][column]``.

    Raises
    ------
    bnn.errors.BnnError
        A run directory has no ``geometry.csv`` (it was trained with ``--no_geometry_log``).
    """
    from bnn.errors import BnnError
    from bnn.report import read_training_geometry

    labels = list(labels) if labels else [Path(r).name for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise BnnError(f"give one label per run directory: {len(run_dirs)} runs, {len(labels)} labels")
    out = {}
    for label, run_dir in zip(labels, run_dirs):
        history = read_training_geometry(run_dir)
        if history is None:
            raise BnnError(f"{run_dir} has no geometry.csv (trained with --no_geometry_log?): "
                           "nothing to compare")
        out[label] = history
    return out


def first_epoch_at(history, angle_deg):
    """Per layer, the first epoch whose mean angle is at least ``angle_deg`` (None if none is)."""
    out = {}
    for layer, cols in history.items():
        reached = [int(e) for e, a in zip(cols["epoch"], cols["angle_mean_deg"]) if a >= angle_deg]
        out[layer] = reached[0] if reached else None
    return out


def trajectory_table(histories, epochs=DEFAULT_EPOCHS, limit_deg=GAUSSIAN_SIGN_ANGLE_DEG):
    """A markdown table: one row per layer, per run the mean angle (deg) at each of ``epochs``.

    Epochs a run has not reached are left out of its columns; the last epoch each run reached is
    always shown. The last column of each run says the first epoch at which the layer's mean
    angle reached ``limit_deg`` (or the largest angle it reached, if it never did).
    """
    header, rows = ["layer (d)"], {}
    for label, history in histories.items():
        last = int(max(max(c["epoch"]) for c in history.values()))
        shown = sorted({e for e in epochs if e <= last} | {last})
        header += [f"{label}: epoch {e}" for e in shown] + [f"{label}: reaches {limit_deg:.2f}°"]
        reached = first_epoch_at(history, limit_deg)
        for layer, cols in history.items():
            by_epoch = dict(zip(cols["epoch"].astype(int), cols["angle_mean_deg"]))
            cells = [f"{by_epoch[e]:.2f}" if e in by_epoch else "" for e in shown]
            top = max(cols["angle_mean_deg"])
            cells.append(f"epoch {reached[layer]}" if reached[layer] is not None else f"no (max {top:.2f})")
            rows.setdefault(f"{layer} ({int(cols['d'][0])})", []).extend(cells)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join([name] + cells) + " |" for name, cells in rows.items()]
    return "\n".join(lines)


def plot_angle_trajectories(histories, limit_deg=GAUSSIAN_SIGN_ANGLE_DEG, init_deg=30.0, save_path=None):
    """Angle between w and Q(w) against epoch: one panel per layer, one line per run.

    Parameters
    ----------
    histories : dict
        As :func:`load_histories` returns.
    limit_deg, init_deg : float
        Reference lines: the Gaussian theory (dashed) and the uniform initialization's angle
        (dotted), in degrees.
    save_path : path, optional
        Where to save (PDF and PNG).

    Returns
    -------
    fig, axes : Figure and ndarray of Axes
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from bnn.plotting import save_figure

    layers = list(dict.fromkeys(layer for h in histories.values() for layer in h))
    ncols = min(5, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False,
                             sharex=True)
    for ax, layer in zip(axes.flat, layers):
        for label, history in histories.items():
            if layer not in history:
                continue
            cols = history[layer]
            ax.plot(cols["epoch"], cols["angle_mean_deg"], "o-", ms=2.5, lw=1.2, label=label)
        ax.axhline(limit_deg, color="black", ls="--", lw=1)
        ax.axhline(init_deg, color="gray", ls=":", lw=1.5)
        d = next(int(h[layer]["d"][0]) for h in histories.values() if layer in h)
        ax.set_title(f"{layer} (d = {d})", fontsize="medium")
        ax.set_ylim(min(init_deg, limit_deg) - 2, max(limit_deg + 2, max(
            np.nanmax(h[layer]["angle_mean_deg"]) + 1 for h in histories.values() if layer in h)))
    for ax in axes.flat[len(layers):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("angle(w, Q(w)) (°)")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="black", ls="--"), plt.Line2D([], [], color="gray", ls=":")]
    labels += [f"Gaussian theory ({limit_deg:.2f}°)", f"uniform initialization ({init_deg:.0f}°)"]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small",
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, save_path)
    return fig, axes


def build_parser():
    """The command line of ``python -m bnn.trajectory``."""
    parser = cli.Parser("python -m bnn.trajectory",
                        "Compare the quantization angle of every layer through training across runs.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=cli.path_arg,
                        help="run directories written by run_bnn.py (with geometry.csv)")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per run (default: the folder names)")
    parser.add_argument("--epochs", nargs="+", type=cli.bounded_int(0), default=list(DEFAULT_EPOCHS),
                        help="epochs shown in the table (default: %(default)s; each run's last epoch is added)")
    parser.add_argument("--out_dir", type=cli.path_arg, default=None,
                        help="write trajectory.md and the figure trajectory.{pdf,png} here (default: print only)")
    return parser


def main(argv=None):
    """Print the table; with ``--out_dir`` also write it and the figure there."""
    args = build_parser().parse_args(argv)
    out_dir = cli.output_dir(args.out_dir) if args.out_dir else None
    cli.load_keras()  # the geometry log's reader lives beside its Keras callback
    histories = load_histories(args.run_dirs, args.labels)
    table = trajectory_table(histories, args.epochs)
    print(table)
    if out_dir is not None:
        import matplotlib

        matplotlib.use("agg")
        (out_dir / "trajectory.md").write_text(table + "\n")
        plot_angle_trajectories(histories, save_path=out_dir / "trajectory")
        print(f"wrote {out_dir / 'trajectory.md'} and {out_dir / 'trajectory.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
