"""Figures for the bnn notebooks.

Every plot function takes the data to draw (arrays, already computed by `bnn.geometry`,
`bnn.theory` or a trained network), an optional ``save_path`` and returns ``(fig, ax)`` (``ax`` an
array of axes for multi-panel figures). Angles come in radians, as the library computes them, and
are drawn in degrees. Only the object API is used, so the functions do not disturb pyplot's state
beyond creating the figure.

Sections: shared helpers; the high-dimensional geometry figures of ``hd_figures.ipynb``; the
trained-network figures of ``gen_plots.ipynb`` and ``bnn/report.py``.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "save_figure",
    "set_figure_formats",
    "plot_angle_histograms",
    "plot_binarization_angles",
    "plot_angle_spread",
    "plot_correlated_binarization",
    "plot_ternary_threshold",
    "plot_straight_through",
    "plot_sign_vector_angles",
    "plot_angle_against_bits",
    "plot_dot_product_panel",
    "plot_dot_products",
    "plot_layer_angle_densities",
    "plot_layer_angle_spread",
    "plot_weight_distributions",
    "plot_binarization_patterns",
    "plot_training_geometry",
]

# Colours kept fixed across figures so that a quantity looks the same everywhere.
_COLORS = {"pair": "tab:gray", "binary": "tab:blue", "rotated": "tab:green", "ternary": "tab:orange"}
_THEORY_STYLE = {"color": "black", "lw": 1.2}


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


# The formats a figure saved without a suffix is written in (`set_figure_formats`).
_FORMATS = ["pdf", "png"]


def set_figure_formats(formats):
    """Set the formats of every figure saved from now on without a suffix; return the old ones.

    Each format costs a full draw of the figure (about a second for a many-panel one on a 2-core
    CPU): ``gen_plots.ipynb`` writes PNG alone unless asked for PDF too.

    Parameters
    ----------
    formats : sequence of str
        File types matplotlib writes (``"png"``, ``"pdf"``, ``"svg"``, ...); default ``pdf png``.

    Returns
    -------
    list of str
    """
    formats = [str(f).lower().lstrip(".") for f in formats]
    if not formats:
        raise ValueError("set_figure_formats: give at least one format (png, pdf, svg, ...)")
    old = list(_FORMATS)
    _FORMATS[:] = formats
    return old


def save_figure(fig, save_path, formats=None, dpi=150):
    """Save a figure; a path without a file-type suffix is written once per format.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    save_path : str, os.PathLike or None
        ``"figures/hd/binary"`` writes ``binary.pdf`` and ``binary.png``; ``"plot.svg"`` writes just
        that file; None writes nothing. Missing parent directories are created.
    formats : sequence of str, optional
        Used when ``save_path`` has no suffix that matplotlib can write; default PDF and PNG, or
        what `set_figure_formats` set.
    dpi : int, default 150
        Resolution of raster formats.

    Returns
    -------
    paths : list of pathlib.Path
        The files written (empty for None).
    """
    if save_path is None:
        return []
    path = Path(save_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Check the suffix against the writable types: "run.v2" is a stem with a dot, not a format.
    if path.suffix[1:].lower() in fig.canvas.get_supported_filetypes():
        paths = [path]
    else:
        paths = [path.with_name(f"{path.name}.{fmt}") for fmt in (formats or _FORMATS)]
    for p in paths:
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
    return paths


def _new_axes(ax=None, **subplots_kwargs):
    """Return ``(fig, ax)``: the given axes and its figure, or a new figure."""
    if ax is not None:
        return ax.figure, ax
    return plt.subplots(**subplots_kwargs)


def _deg(x):
    return np.degrees(np.asarray(x, dtype=float))


# --------------------------------------------------------------------------------------------------
# High-dimensional geometry (hd_figures.ipynb)
# --------------------------------------------------------------------------------------------------


def plot_angle_histograms(
    samples, theta=None, densities=None, markers=None, bins=50, colors=None, ax=None, title=None, save_path=None
):
    """Histograms of sampled angles with theoretical densities and reference angles overlaid.

    Parameters
    ----------
    samples : dict of str -> array_like of shape (n,), radians
        One density-normalised histogram per entry, each on its own ``bins`` bins (angle sets of very
        different spread share one axis).
    theta : array_like, shape (m,), radians, optional
        Grid on which ``densities`` are given.
    densities : dict of str -> array_like of shape (m,), per radian, optional
        Theoretical densities, drawn as lines (converted to per degree).
    markers : dict of str -> float, radians, optional
        Vertical reference lines, e.g. the limit arccos(sqrt(2/pi)).
    bins : int or array_like of radians, default 50
    colors : dict of str -> colour, optional
        Colours by label, for samples and densities alike; the default cycle otherwise.
    ax : matplotlib.axes.Axes, optional
        Draw into this axes instead of a new figure.
    title : str, optional
    save_path : str or os.PathLike, optional
        See `save_figure`.

    Returns
    -------
    fig, ax
    """
    fig, ax = _new_axes(ax, figsize=(5, 3.5))
    colors = colors or {}
    edges = bins if np.ndim(bins) == 0 else _deg(bins)
    for label, angles in samples.items():
        ax.hist(_deg(angles), bins=edges, density=True, alpha=0.45, label=label, color=colors.get(label))
    for label, density in (densities or {}).items():
        # A density per radian is pi/180 times as large per degree.
        ax.plot(_deg(theta), np.asarray(density) * np.pi / 180, label=label, color=colors.get(label, "black"), lw=1.2)
    for label, value in (markers or {}).items():
        ax.axvline(_deg(value), color="black", ls="--", lw=1, label=f"{label} ({_deg(value):.2f}°)")
    ax.set_xlabel("angle (degrees)")
    ax.set_ylabel("density (1/degree)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    save_figure(fig, save_path)
    return fig, ax


def plot_binarization_angles(
    dims, pair_angles, sign_angles, limit_angle, theta=None, pair_densities=None, sign_densities=None, save_path=None
):
    """One panel per dimension: angle between two Gaussian vectors, and between u and sign(u).

    Parameters
    ----------
    dims : sequence of int, length k
    pair_angles, sign_angles : sequence of k arrays, radians
        Angles between independent N(0, I_d) vectors, and between u ~ N(0, I_d) and binarize(u).
    limit_angle : float, radians
        arccos(sqrt(2/pi)), marked in every panel.
    theta : array_like, radians, optional
        Grid for the densities.
    pair_densities, sign_densities : sequence of k arrays on ``theta``, per radian, optional
        Exact density of the Gaussian pair angle; large-d approximation for the binarization angle.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of k Axes
    """
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.5), squeeze=False)
    axes = axes[0]
    for i, (d, ax) in enumerate(zip(dims, axes)):
        densities = {}
        if pair_densities is not None:
            densities["two Gaussians: exact"] = pair_densities[i]
        if sign_densities is not None:
            densities["u, sign(u): large-d normal"] = sign_densities[i]
        plot_angle_histograms(
            {"two Gaussians": pair_angles[i], "u, sign(u)": sign_angles[i]},
            theta=theta,
            densities=densities,
            markers={"arccos√(2/π)": limit_angle},
            colors={
                "two Gaussians": _COLORS["pair"],
                "u, sign(u)": _COLORS["binary"],
                "two Gaussians: exact": "black",
                "u, sign(u): large-d normal": "tab:red",
            },
            ax=ax,
            title=f"d = {d}",
        )
        ax.set_xlim(0, 180)
        if i:
            ax.get_legend().remove()
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_angle_spread(dims, simulated_std, theory_std, save_path=None):
    """Standard deviation of the angle between u and sign(u) against d, log-log.

    Parameters
    ----------
    dims : array_like, shape (k,)
    simulated_std : array_like, shape (k,), radians
    theory_std : array_like, shape (k,), radians
        E.g. `bnn.theory.binary_angle_std` (c / sqrt(d)).
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, ax
    """
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(dims, _deg(simulated_std), "o", color=_COLORS["binary"], label="simulation")
    ax.loglog(dims, _deg(theory_std), **_THEORY_STYLE, label="theory: c/√d, c = √((π−3)/(π−2))")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("std of angle(u, sign u) (degrees)")
    ax.legend(fontsize="small")
    save_figure(fig, save_path)
    return fig, ax


def plot_correlated_binarization(dims, sign_angles, rotated_angles, limit_angle, save_path=None):
    """One panel per dimension: angle of anisotropic u to sign(u) and to R^T sign(R u).

    Parameters
    ----------
    dims : sequence of int, length k
    sign_angles, rotated_angles : sequence of k arrays, radians
        angle(u, binarize(u)) and angle(u, rotated_binarize(u, R)).
    limit_angle : float, radians
        arccos(sqrt(2/pi)), marked in every panel.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of k Axes
    """
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.5), squeeze=False)
    axes = axes[0]
    for i, (d, ax) in enumerate(zip(dims, axes)):
        plot_angle_histograms(
            {"sign(u)": sign_angles[i], "Rᵀ sign(R u)": rotated_angles[i]},
            markers={"arccos√(2/π)": limit_angle},
            colors={"sign(u)": _COLORS["binary"], "Rᵀ sign(R u)": _COLORS["rotated"]},
            ax=ax,
            title=f"d = {d}",
        )
        ax.set_xlim(0, 90)
        if i:
            ax.get_legend().remove()
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_ternary_threshold(
    thresholds,
    theory_angle,
    theory_zero_fraction,
    sim_thresholds,
    sim_angle,
    sim_zero_fraction,
    optimal_threshold=None,
    paper_threshold=None,
    save_path=None,
):
    """Ternarization against its threshold: angle to the original vector, and fraction of zeros.

    Parameters
    ----------
    thresholds : array_like, shape (m,)
        Grid of thresholds in standard deviations for the theory curves.
    theory_angle, theory_zero_fraction : array_like, shape (m,)
        Angle (radians) and fraction of zeros on ``thresholds``.
    sim_thresholds : array_like, shape (k,)
    sim_angle, sim_zero_fraction : array_like, shape (k,)
        Monte Carlo mean angle (radians) and fraction of zeros.
    optimal_threshold, paper_threshold : float, optional
        Marked with vertical lines.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of 2 Axes
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    panels = [
        (_deg(theory_angle), _deg(sim_angle), "angle(u, ternarize(u)) (degrees)"),
        (theory_zero_fraction, sim_zero_fraction, "fraction of zeros"),
    ]
    for ax, (theory, sim, ylabel) in zip(axes, panels):
        ax.plot(thresholds, theory, **_THEORY_STYLE, label="theory (d → ∞)")
        ax.plot(sim_thresholds, sim, "o", ms=4, color=_COLORS["ternary"], label="simulation")
        if optimal_threshold is not None:
            ax.axvline(optimal_threshold, color="tab:red", ls="--", lw=1, label=f"optimum t = {optimal_threshold:.3f}")
        if paper_threshold is not None:
            ax.axvline(paper_threshold, color="tab:purple", ls=":", lw=1.5, label=f"assumed 0.02/0.18: t = {paper_threshold:.3f}")
        ax.set_xlabel("threshold t (standard deviations)")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_straight_through(x, forward, surrogate, gradient, save_path=None):
    """The straight-through estimator: forward function and backward function side by side.

    Parameters
    ----------
    x : array_like, shape (m,)
        Pre-quantization values.
    forward : array_like, shape (m,)
        Forward pass, e.g. ``binarize(x)``.
    surrogate : array_like, shape (m,)
        The function differentiated in the backward pass, e.g. ``hard_tanh(x)``.
    gradient : array_like, shape (m,)
        Its derivative, the gradient passed back, e.g. ``straight_through_gradient(x)``.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of 2 Axes
    """
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharex=True)
    axes[0].plot(x, forward, color=_COLORS["binary"], lw=2, label="forward: sign(x)")
    axes[0].plot(x, surrogate, color="black", ls="--", lw=1, label="backward uses: clip(x, −1, 1)")
    axes[0].set_title("forward")
    axes[1].plot(x, gradient, color=_COLORS["ternary"], lw=2, label="gradient: 1[|x| ≤ 1]")
    axes[1].set_title("backward")
    for ax in axes:
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_xlabel("x")
        ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_sign_vector_angles(ns, angles, supports, pmfs, save_path=None):
    """One panel per length n: angle between two random +-1 vectors against its exact distribution.

    Parameters
    ----------
    ns : sequence of int, length k
    angles : sequence of k arrays, radians
        Sampled angles.
    supports, pmfs : sequences of k arrays of shape (n + 1,)
        Possible angles (radians, increasing) and their probabilities, from
        `bnn.theory.sign_vector_angle_distribution`.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of k Axes

    Notes
    -----
    The angle is discrete, so each histogram bin holds exactly one possible value (edges halfway
    between neighbours) and the exact probability is drawn as pmf / bin width, a density that is
    directly comparable with the histogram.
    """
    fig, axes = plt.subplots(1, len(ns), figsize=(4.2 * len(ns), 3.5), squeeze=False)
    axes = axes[0]
    for n, sample, support, pmf, ax in zip(ns, angles, supports, pmfs, axes):
        support = _deg(support)
        mid = (support[1:] + support[:-1]) / 2
        edges = np.concatenate([[support[0] - (mid[0] - support[0])], mid, [support[-1] + (support[-1] - mid[-1])]])
        ax.hist(_deg(sample), bins=edges, density=True, alpha=0.5, color=_COLORS["binary"], label="simulation")
        ax.plot(support, np.asarray(pmf) / np.diff(edges), ".-", ms=3, **_THEORY_STYLE, label="exact: 2·Bin(n, ½) − n")
        # Show the central +-5 exact standard deviations, where all the probability is.
        std = np.sqrt(np.sum(pmf * (support - 90) ** 2))
        ax.set_xlim(max(0, 90 - 5 * std), min(180, 90 + 5 * std))
        ax.set_title(f"n = {n}")
        ax.set_xlabel("angle (degrees)")
        ax.set_ylabel("density (1/degree)")
    axes[0].set_ylim(top=axes[0].get_ylim()[1] * 1.25)  # room for the legend above the peak
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_angle_against_bits(bits, theory_angle, mc_mean, mc_std, labels, d, save_path=None):
    """Angle between a Gaussian vector and its quantization against the bits per entry.

    Parameters
    ----------
    bits : array_like, shape (k,)
        log2 of each quantizer's number of levels (ternary: log2 3).
    theory_angle : array_like, shape (k,), radians
        Large-d angle at the quantizer's best parameter (`bnn.quantizers.Quantizer.theory`).
    mc_mean, mc_std : array_like, shape (k,), radians
        Mean and standard deviation of the Monte Carlo angles in dimension ``d``: the error bars are
        the spread of single vectors, not the standard error of the mean.
    labels : sequence of str, length k
    d : int
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, ax
    """
    bits = np.asarray(bits, dtype=float)
    order = np.argsort(bits)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.semilogy(bits[order], _deg(theory_angle)[order], "-", marker="s", mfc="none", ms=8, **_THEORY_STYLE,
                label="theory, large d")
    ax.errorbar(bits, _deg(mc_mean), yerr=_deg(mc_std), fmt="o", color=_COLORS["binary"], ms=4, capsize=3,
                label=f"Monte Carlo, d = {d} (± std of one vector)")
    for x, y, label in zip(bits, _deg(theory_angle), labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(7, 4), fontsize="x-small")
    ax.set_xlabel("bits per entry (log2 of the number of levels)")
    ax.set_ylabel("angle(x, Q(x)) at the best parameter (degrees)")
    ax.set_xlim(0.5, bits.max() + 1.6)
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, ax


# --------------------------------------------------------------------------------------------------
# Trained-network figures (gen_plots.ipynb, bnn/report.py)
# --------------------------------------------------------------------------------------------------

def _layer_colors(n):
    """One colour per layer, dark (first layer) to light (last), so depth reads at a glance."""
    return plt.cm.viridis(np.linspace(0.0, 0.9, max(n, 1)))


def _robust_range(values, pad=0.05):
    """The 0.05-99.95 percentile range of ``values``, padded, so a few outliers do not squash a plot."""
    lo, hi = np.percentile(values, [0.05, 99.95])
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    span = hi - lo
    return lo - pad * span, hi + pad * span


def _bin_edges(values, lim, bins):
    """About ``bins`` equal bins over ``lim``. Values on an integer lattice (dot products of quantized
    vectors: binary ones step by 2) get bins a whole number of lattice steps wide, centred between
    lattice points, so that the histogram shows no stripes of bins that caught one point more."""
    sample = np.asarray(values[:20000], dtype=np.float64)
    lattice = sample.size > 1 and np.all(sample == np.round(sample)) and np.ptp(sample) > 0
    if not lattice:
        return np.linspace(lim[0], lim[1], bins + 1)
    points = np.unique(sample).astype(np.int64)
    step = int(np.gcd.reduce(np.diff(points)))
    width = step * max(1, int(round((lim[1] - lim[0]) / bins / step)))
    origin = points[0] - step / 2
    first = np.floor((lim[0] - origin) / width)
    last = np.ceil((lim[1] - origin) / width)
    return origin + width * np.arange(first, last + 1)


def plot_dot_product_panel(x, y, fit=None, x_label="", y_label="", title=None, disagree=None, r_expected=None,
                           bins=100, ax=None, save_path=None):
    """2-D histogram of paired dot products, with the least-squares line and Pearson r.

    Parameters
    ----------
    x, y : array_like, shape (m,)
        Paired dot products, e.g. A·W^b and A·W^c at the same (image, position, filter).
    fit : dict, optional
        ``r``, ``slope``, ``intercept`` of y on x (e.g. `bnn.layer_statistics.regression`); the line is
        drawn and r is written in the corner. Values of None (no correlation defined) are skipped.
    x_label, y_label, title : str
    disagree : array of bool, shape (m,), optional
        The pairs that the next layer's quantizer maps to different values (at each filter's
        batch-norm-shifted threshold, `bnn.layer_statistics.next_quantized`). They are drawn again
        in red on top, with their share in the corner. None (the output layer, which has no
        quantizer): nothing is marked.
    r_expected : float, optional
        An expected value of r to print beside the measured one (the permutation control's r for
        i.i.d. inputs).
    bins : int
    ax : matplotlib.axes.Axes, optional
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, ax
    """
    fig, ax = _new_axes(ax, figsize=(4.5, 4))
    x = np.ravel(x)
    y = np.ravel(y)
    xlim, ylim = _robust_range(x), _robust_range(y)
    edges = [_bin_edges(x, xlim, bins), _bin_edges(y, ylim, bins)]
    # Rasterized: as vector paths, a PDF of nine 80 x 80 histograms took 11 s to write; the axes,
    # lines and text stay vector.
    ax.hist2d(x, y, bins=edges, norm="log", cmin=1, cmap="viridis", rasterized=True)
    lines = []
    if fit and fit.get("r") is not None:
        line = np.array(xlim)
        ax.plot(line, fit["slope"] * line + fit["intercept"], color="black", ls="--", lw=1, zorder=4)
        lines += [f"r = {fit['r']:.3f}", f"slope = {fit['slope']:.3g}"]
    if r_expected is not None:
        lines.append(f"i.i.d. theory r = {r_expected:.3f}")
    if disagree is not None:
        disagree = np.ravel(disagree)
        if disagree.any():
            ax.hist2d(x[disagree], y[disagree], bins=edges, cmin=1, cmap="Reds", norm="log", alpha=0.8, zorder=3,
                      rasterized=True)
        lines.append(f"next quantizer differs: {100 * disagree.mean():.1f}%")
    ax.axhline(0, color="gray", lw=0.5, zorder=2)
    ax.axvline(0, color="gray", lw=0.5, zorder=2)
    if lines:
        ax.text(0.04, 0.96, "\n".join(lines), transform=ax.transAxes, va="top", fontsize="x-small", zorder=5,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if title:
        ax.set_title(title)
    save_figure(fig, save_path)
    return fig, ax


def plot_dot_products(titles, xs, ys, fits=None, x_label="", y_label="", disagree=None, r_expected=None, ncols=4,
                      bins=80, suptitle=None, save_path=None):
    """One `plot_dot_product_panel` per layer, in a grid.

    Parameters
    ----------
    titles : sequence of str, length k
        Panel titles, e.g. ``"conv1 (d = 27)"``.
    xs, ys : sequences of k arrays
    fits : sequence of k dicts or None, optional
    x_label, y_label : str
    disagree : sequence of k bool arrays or None, optional
        Per panel, see `plot_dot_product_panel`.
    r_expected : sequence of k floats or None, optional
    ncols : int
    bins : int
    suptitle : str, optional
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of k Axes
    """
    k = len(titles)
    ncols = max(1, min(ncols, k))
    nrows = -(-k // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.1 * nrows), squeeze=False)
    axes = axes.ravel()
    fits = fits if fits is not None else [None] * k
    disagree = disagree if disagree is not None else [None] * k
    r_expected = r_expected if r_expected is not None else [None] * k
    for ax, title, x, y, fit, dis, r in zip(axes, titles, xs, ys, fits, disagree, r_expected):
        plot_dot_product_panel(x, y, fit, x_label, y_label, title=title, disagree=dis, r_expected=r, bins=bins, ax=ax)
    for ax in axes[k:]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes[:k]


def plot_layer_angle_densities(labels, grid, densities, theory_angles, zoom=None, theory_label="theory",
                               init_angles=None, init_label="initialization", save_path=None):
    """Density of the angle between each filter's quantized and continuous weights, one curve per layer.

    Parameters
    ----------
    labels : sequence of str, length k
        E.g. ``"conv1 (d = 27)"``.
    grid : array_like, shape (g,), radians
    densities : sequence of k arrays of shape (g,), per radian
        E.g. `bnn.layer_statistics.angle_density`.
    theory_angles : float or sequence of k floats, radians, or None
        Vertical lines: one black line (the binary limit arccos sqrt(2/pi)), or one per layer in the
        layer's colour (ternary: the threshold in units of each layer's weight std differs); None
        draws none (a quantizer without a Gaussian theory).
    zoom : (float, float), radians, optional
        Range of the left panel; the right panel always shows 0 to 90 degrees. Default: where the
        densities exceed 1 % of their peak, widened to include the theory lines.
    theory_label : str
    init_angles : float or sequence of k floats, radians, optional
        The same theory for the distribution the weights were initialized from (uniform: 30 degrees
        for binary), drawn dotted: a briefly trained network sits near it.
    init_label : str
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of 2 Axes (zoomed, full range)
    """
    grid_deg = _deg(grid)
    colors = _layer_colors(len(labels))
    per_layer = np.ndim(theory_angles) > 0
    if zoom is None:
        above = np.zeros(len(grid_deg), dtype=bool)
        for density in densities:
            above |= np.asarray(density) > 0.01 * np.max(density)
        references = [np.atleast_1d(a).astype(float) for a in (theory_angles, init_angles) if a is not None]
        theory_deg = _deg(np.concatenate(references)) if references else grid_deg[above]
        if not theory_deg.size:
            theory_deg = grid_deg
        lo = min(grid_deg[above].min(), theory_deg.min()) if above.any() else theory_deg.min()
        hi = max(grid_deg[above].max(), theory_deg.max()) if above.any() else theory_deg.max()
        zoom_deg = (max(0.0, lo - 2), min(90.0, hi + 2))
    else:
        zoom_deg = tuple(_deg(zoom))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, xlim in zip(axes, (zoom_deg, (0.0, 90.0))):
        for i, (label, density) in enumerate(zip(labels, densities)):
            # A density per radian is pi/180 times as large per degree.
            ax.plot(grid_deg, np.asarray(density) * np.pi / 180, color=colors[i], lw=1.3, label=label)
        if theory_angles is not None and per_layer:
            for i, value in enumerate(theory_angles):
                ax.axvline(_deg(value), color=colors[i], ls="--", lw=1,
                           label=f"{theory_label} (dashed, per layer)" if i == 0 else None)
        elif theory_angles is not None:
            ax.axvline(_deg(theory_angles), color="black", ls="--", lw=1,
                       label=f"{theory_label} ({_deg(theory_angles):.2f}°)")
        if init_angles is not None and np.ndim(init_angles) > 0:
            for i, value in enumerate(init_angles):
                ax.axvline(_deg(value), color=colors[i], ls=":", lw=1.2,
                           label=f"{init_label} (dotted, per layer)" if i == 0 else None)
        elif init_angles is not None:
            ax.axvline(_deg(init_angles), color="gray", ls=":", lw=1.5,
                       label=f"{init_label} ({_deg(init_angles):.2f}°)")
        ax.set_xlim(xlim)
        ax.set_xlabel("angle (degrees)")
        ax.set_ylabel("density (1/degree)")
    fig.suptitle("angle between each filter's $W^c$ and its quantization")
    axes[0].set_title("zoomed")
    axes[1].set_title("full range")
    # Outside the axes, so that no legend hides a density or a reference value.
    axes[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_layer_angle_spread(names, dims, stds, theory_stds=None, coefficient=None, save_path=None):
    """Standard deviation of the per-filter angles of each layer against its dimension d, log-log.

    Parameters
    ----------
    names : sequence of str, length k
    dims : array_like of int, shape (k,)
    stds : array_like, shape (k,), radians
    theory_stds : array_like, shape (k,), radians, optional
        Large-d theory for a Gaussian vector at each layer's d (and threshold).
    coefficient : float, radians, optional
        Draws the reference line ``coefficient / sqrt(d)``, e.g. `bnn.theory.BINARY_ANGLE_STD_COEFFICIENT`.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, ax
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    dims = np.asarray(dims, dtype=float)
    colors = _layer_colors(len(names))
    ax.scatter(dims, _deg(stds), color=colors, zorder=3, label="trained network")
    # Layers of equal d share an x position: stack their labels, in order of their std, so none overlap.
    for d in np.unique(dims):
        same = [i for i in range(len(names)) if dims[i] == d]
        same.sort(key=lambda i: -stds[i])
        for k, i in enumerate(same):
            ax.annotate(names[i], (d, _deg(stds[i])), textcoords="offset points", xytext=(6, 4 - 11 * k),
                        fontsize="small", va="center")
    if theory_stds is not None:
        ax.plot(dims, _deg(theory_stds), "x", color="black", label="Gaussian theory at each layer's d")
    if coefficient is not None:
        d = np.geomspace(dims.min() / 2, dims.max() * 2, 50)
        ax.plot(d, _deg(coefficient / np.sqrt(d)), **_THEORY_STYLE, ls="--",
                label=f"{_deg(coefficient):.2f}° / √d")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension d of the filter")
    ax.set_ylabel("std of the angle (degrees)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, ax


def plot_weight_distributions(names, weights, fractions, threshold=None, log=True, bins=201, save_path=None):
    """Continuous weights per layer, and the fraction of the quantized weights at each value.

    Parameters
    ----------
    names : sequence of str, length k
    weights : sequence of k arrays
        Continuous (latent) weights of each layer, any shape.
    fractions : sequence of k dicts of str -> float
        Fraction of each quantized value, e.g. ``{"-1": 0.5, "0": 0.0, "1": 0.5}``.
    threshold : float, optional
        Ternarization threshold in weight units, marked at +-threshold.
    log : bool, default True
        Log-scale density axis (binary networks: the tails towards the clip at +-1 show).
    bins : int
        Histogram bins over the range of all weights.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of 2 Axes
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    colors = _layer_colors(len(names))
    largest = max(float(np.max(np.abs(w))) for w in weights)
    edges = np.linspace(-largest, largest, bins + 1)
    for name, w, color in zip(names, weights, colors):
        axes[0].hist(np.ravel(w), bins=edges, density=True, histtype="step", color=color, lw=1.2, label=name)
    if threshold is not None:
        for t in (-threshold, threshold):
            axes[0].axvline(t, color="black", lw=1, label=f"threshold ±{threshold:g}" if t > 0 else None)
    if log:
        axes[0].set_yscale("log")
    axes[0].set_xlabel("continuous weight")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize="small", ncol=2, loc="upper left", bbox_to_anchor=(0.0, -0.18), borderaxespad=0)

    values = sorted({v for f in fractions for v in f}, key=float)
    value_colors = {"-1": "tab:blue", "0": "tab:gray", "1": "tab:orange"}
    bottom = np.zeros(len(names))
    for v in values:
        share = np.array([f.get(v, 0.0) for f in fractions])
        label = "0" if float(v) == 0 else f"{float(v):+g}"
        axes[1].bar(names, share, bottom=bottom, color=value_colors.get(v), label=label)
        bottom += share
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("fraction of quantized weights")
    axes[1].legend(fontsize="small", title="value", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    axes[1].tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes


def plot_binarization_patterns(labels, before, after, chance=0.1, save_path=None):
    """Test accuracy when some layers' weights are made continuous, before and after refitting batch norm.

    Parameters
    ----------
    labels : sequence of str, length k
        Pattern names, e.g. ``"conv2 continuous"``.
    before, after : array_like, shape (k,)
        Accuracy with the trained batch-norm statistics, and with statistics re-estimated.
    chance : float, optional
        Marked with a dotted line.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, ax
    """
    k = len(labels)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * k + 1.2))
    rows = np.arange(k)[::-1]
    ax.barh(rows + 0.2, before, height=0.4, color="tab:gray", label="trained batch-norm statistics")
    ax.barh(rows - 0.2, after, height=0.4, color=_COLORS["binary"], label="re-estimated on training data")
    for r, b, a in zip(rows, before, after):
        ax.text(b, r + 0.2, f" {b:.3f}", va="center", fontsize="x-small")
        ax.text(a, r - 0.2, f" {a:.3f}", va="center", fontsize="x-small")
    if chance is not None:
        ax.axvline(chance, color="black", ls=":", lw=1, label="chance")
    ax.set_yticks(rows, labels)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("test accuracy (activations stay quantized in every pattern)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, ax


def plot_training_geometry(history, limit_angle, init_angle=None, save_path=None):
    """The weights' geometry through training, one line per layer, one panel per quantity.

    Parameters
    ----------
    history : dict of str -> dict of str -> array, shape (n_epochs,)
        Per layer name, the columns of ``geometry.csv`` (``epoch``, ``d``, ``angle_mean_deg``,
        ``angle_std_deg``, ``flip_ratio``, ``weight_std``, ``clipped_fraction``), epoch 0 being the
        initialization.
    limit_angle : float, radians
        Gaussian theory of the quantization angle (arccos sqrt(2/pi) = 37.07 deg for binary), dashed.
    init_angle : float, radians, optional
        The same theory for the initialization's distribution (uniform: 30 deg), dotted.
    save_path : str or os.PathLike, optional

    Returns
    -------
    fig, axes : Figure and ndarray of 4 Axes
    """
    panels = [("angle_mean_deg", "angle(W^c, W^q), mean ± std (°)"), ("flip_ratio", "fraction of signs flipped"),
              ("weight_std", "std of continuous weights"), ("clipped_fraction", "fraction clipped at ±1")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    colors = _layer_colors(len(history))
    for (name, cols), color in zip(history.items(), colors):
        label = f"{name} (d = {int(cols['d'][0])})"
        for ax, (key, _) in zip(axes, panels):
            ax.plot(cols["epoch"], cols[key], "o-", ms=3, color=color, lw=1.2, label=label)
        axes[0].fill_between(cols["epoch"], cols["angle_mean_deg"] - cols["angle_std_deg"],
                             cols["angle_mean_deg"] + cols["angle_std_deg"], color=color, alpha=0.15, lw=0)
    axes[0].axhline(_deg(limit_angle), color="black", ls="--", lw=1, label=f"Gaussian theory ({_deg(limit_angle):.2f}°)")
    if init_angle is not None:
        axes[0].axhline(_deg(init_angle), color="gray", ls=":", lw=1.5,
                        label=f"uniform initialization ({_deg(init_angle):.2f}°)")
    for ax, (_, ylabel) in zip(axes, panels):
        ax.set_xlabel("epoch (0: initialization)")
        ax.set_ylabel(ylabel)
    axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    axes[0].legend(fontsize="x-small", loc="lower right", handles=axes[0].get_legend_handles_labels()[0][-2:])
    fig.tight_layout()
    save_figure(fig, save_path)
    return fig, axes
