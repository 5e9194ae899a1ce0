"""The Monte Carlo simulations of ``hd_figures.ipynb``, each beside its closed form from `bnn.theory`.

One function per section of the notebook. Each takes its sample size and a random generator,
and returns ``(numbers, arrays)``: ``numbers`` is the JSON-ready dict of theory against simulation
that the notebook writes to ``hd_numbers.json``, ``arrays`` what its figure draws. `table` prints
any section's numbers. numpy/scipy only (no TensorFlow), like `bnn.geometry` and `bnn.theory`.

Anderson & Berg 2018 (arXiv:1705.07199), Sec. 3 and App. "generalized binarization transformation".
"""

import numpy as np

from bnn import geometry, theory

__all__ = ["SECTIONS", "binary_angles", "angle_spread", "correlated", "ternary", "sign_vectors", "run_all", "table"]

deg = np.degrees


def binary_angles(n_samples, rng, dims=(3, 10, 27)):
    """Section 1: angle between u ~ N(0, I_d) and sign(u), and between two independent Gaussians.

    Returns
    -------
    numbers : dict
        ``limit_angle_deg`` and, per d, the exact mean and std of cos(u, sign u), the large-d mean and
        std of the angle, and the pair angle's mean (90) and exact std, each ``{theory, sim}``.
    arrays : dict
        ``dims``, ``theta`` (grid, radians), ``pair_angles``, ``sign_angles`` (lists of arrays, radians),
        ``pair_densities`` (exact) and ``sign_densities`` (large-d normal) on ``theta``.
    """
    theta = np.linspace(0, np.pi, 1441)
    pair_angles, sign_angles = [], []
    numbers = {"limit_angle_deg": float(deg(theory.binary_limit_angle())), "d": {}}
    for d in dims:
        u = geometry.gaussian_vectors(n_samples, d, rng)
        v = geometry.gaussian_vectors(n_samples, d, rng)
        cos = geometry.cosine_similarity(u, geometry.binarize(u))
        pair_angles.append(geometry.angle(u, v))
        sign_angles.append(np.arccos(cos))
        numbers["d"][str(d)] = {
            "cos_mean": {"theory": float(theory.binary_cosine_mean(d)), "sim": float(cos.mean())},
            "cos_std": {"theory": float(theory.binary_cosine_std(d)), "sim": float(cos.std())},
            "angle_mean_deg": {"theory_limit": float(deg(theory.binary_limit_angle())),
                               "sim": float(deg(sign_angles[-1].mean()))},
            "angle_std_deg": {"theory_large_d": float(deg(theory.binary_angle_std(d))),
                              "sim": float(deg(sign_angles[-1].std()))},
            "pair_angle_mean_deg": {"theory": 90.0, "sim": float(deg(pair_angles[-1].mean()))},
            "pair_angle_std_deg": {"theory": float(deg(theory.gaussian_angle_std(d))),
                                   "sim": float(deg(pair_angles[-1].std()))},
        }
    arrays = {"dims": list(dims), "theta": theta, "pair_angles": pair_angles, "sign_angles": sign_angles,
              "pair_densities": [theory.gaussian_angle_pdf(theta, d) for d in dims],
              "sign_densities": [theory.quantization_angle_pdf_large_d(theta, d) for d in dims]}
    return numbers, arrays


def angle_spread(n_samples, rng, dims=(3, 5, 10, 27, 50, 100, 300, 1000)):
    """Section 2: std of angle(u, sign u) against d, with its closed form c / sqrt(d).

    Returns
    -------
    numbers : dict
        ``coefficient_deg``, ``d``, ``angle_std_deg`` ``{theory_large_d, sim}`` (lists).
    arrays : dict
        ``dims``, ``simulated_std``, ``theory_std`` (radians).
    """
    dims = np.asarray(dims)
    simulated = np.array([np.arccos(geometry.cosine_similarity(u, geometry.binarize(u))).std()
                          for u in (geometry.gaussian_vectors(n_samples, d, rng) for d in dims)])
    predicted = theory.binary_angle_std(dims)
    numbers = {"coefficient_deg": float(deg(theory.BINARY_ANGLE_STD_COEFFICIENT)), "d": dims.tolist(),
               "angle_std_deg": {"theory_large_d": deg(predicted).tolist(), "sim": deg(simulated).tolist()}}
    return numbers, {"dims": dims, "simulated_std": simulated, "theory_std": predicted}


def correlated(n_samples, rng, dims=(10, 100, 500), k=0.1):
    """Section 3: anisotropic u (coordinate i scaled by e^{k(i - d/2)}) against sign(u) and R^T sign(R u).

    One Haar rotation per d, fixed for all samples, as a network layer applies one transformation.

    Returns
    -------
    numbers : dict
        ``k`` and, per d, the plain sign's mean angle, and the rotated one's mean cosine (exact for a
        fresh isotropic R), mean angle (limit) and std (large d).
    arrays : dict
        ``dims``, ``sign_angles``, ``rotated_angles`` (lists of arrays, radians).
    """
    sign_angles, rotated_angles = [], []
    numbers = {"k": k, "d": {}}
    for d in dims:
        u = geometry.correlated_gaussian_vectors(n_samples, d, rng, k=k)
        R = geometry.haar_rotation(d, rng)
        rotated_cos = geometry.cosine_similarity(u, geometry.rotated_binarize(u, R))
        sign_angles.append(geometry.angle(u, geometry.binarize(u)))
        rotated_angles.append(np.arccos(rotated_cos))
        numbers["d"][str(d)] = {
            "sign_angle_mean_deg": {"sim": float(deg(sign_angles[-1].mean()))},
            # Exact for a fresh R per sample (Ru is then isotropic); a fixed R should come close.
            "rotated_cos_mean": {"theory_isotropic": float(theory.binary_cosine_mean(d)),
                                 "sim": float(rotated_cos.mean())},
            "rotated_angle_mean_deg": {"theory_limit": float(deg(theory.binary_limit_angle())),
                                       "sim": float(deg(rotated_angles[-1].mean()))},
            "rotated_angle_std_deg": {"theory_large_d": float(deg(theory.binary_angle_std(d))),
                                      "sim": float(deg(rotated_angles[-1].std()))},
        }
    return numbers, {"dims": list(dims), "sign_angles": sign_angles, "rotated_angles": rotated_angles}


def ternary(n_samples, rng, d=1000):
    """Section 4: ternarization against its threshold t (in standard deviations), Monte Carlo at d.

    The sweep over thresholds uses the first 2,000 vectors (standard error of the mean angle ~0.015
    degrees); the simulated optimum maximises the mean cosine over a 0.005 grid on 1,000 common vectors.
    The marked ``assumed`` threshold is `bnn.theory.ASSUMED_TERNARY_THRESHOLD` (0.02 / 0.18), an
    assumption, not a measured value.

    Returns
    -------
    numbers : dict
        ``d``, ``optimal_threshold`` {theory, sim}, ``assumed_threshold``, ``thresholds`` and per
        threshold ``angle_mean_deg`` and ``zero_fraction`` {theory, sim}; ``distributions`` at t = 0,
        the assumed and the optimal threshold.
    arrays : dict
        ``t_grid`` and theory curves ``theory_angle``, ``theory_zero_fraction`` on it; ``t_sim``,
        ``sim_angle``, ``sim_zero_fraction``; ``optimal``, ``assumed``; ``distributions`` (name ->
        (threshold, angles)).
    """
    u = geometry.gaussian_vectors(n_samples, d, rng)
    t_star = theory.optimal_ternary_threshold()
    t_assumed = theory.ASSUMED_TERNARY_THRESHOLD
    t_grid = np.linspace(0, 2.5, 251)
    t_sim = np.sort(np.concatenate([np.linspace(0, 2.5, 11), [t_assumed, t_star]]))
    u_sweep = u[:2000]
    sweep = [geometry.ternarize(u_sweep, t) for t in t_sim]
    sim_angle = np.array([geometry.angle(u_sweep, q).mean() for q in sweep])
    sim_zeros = np.array([np.mean(q == 0) for q in sweep])
    t_fine = np.arange(0.40, 0.8001, 0.005)
    u_fine = u[:1000]
    t_star_sim = t_fine[np.argmax([geometry.cosine_similarity(u_fine, geometry.ternarize(u_fine, t)).mean()
                                   for t in t_fine])]
    named = {"binary": 0.0, "assumed": t_assumed, "optimal": t_star}
    dist = {name: geometry.angle(u, geometry.ternarize(u, t)) for name, t in named.items()}
    numbers = {
        "d": d,
        "optimal_threshold": {"theory": t_star, "sim": float(t_star_sim)},
        "assumed_threshold": t_assumed,
        "thresholds": t_sim.tolist(),
        "angle_mean_deg": {"theory_large_d": deg(theory.ternary_angle(t_sim)).tolist(), "sim": deg(sim_angle).tolist()},
        "zero_fraction": {"theory": theory.ternary_zero_fraction(t_sim).tolist(), "sim": sim_zeros.tolist()},
        "distributions": {
            name: {"threshold": t,
                   "angle_mean_deg": {"theory_large_d": float(deg(theory.ternary_angle(t))),
                                      "sim": float(deg(dist[name].mean()))},
                   "angle_std_deg": {"theory_large_d": float(deg(theory.ternary_angle_std(t, d))),
                                     "sim": float(deg(dist[name].std()))}}
            for name, t in named.items()
        },
    }
    arrays = {"t_grid": t_grid, "theory_angle": theory.ternary_angle(t_grid),
              "theory_zero_fraction": theory.ternary_zero_fraction(t_grid), "t_sim": t_sim, "sim_angle": sim_angle,
              "sim_zero_fraction": sim_zeros, "optimal": t_star, "assumed": t_assumed,
              "distributions": {name: (named[name], dist[name]) for name in named}}
    return numbers, arrays


def sign_vectors(n_samples, rng, ns=(10, 100, 1000)):
    """Section 6: angle between two independent random +-1 vectors of length n, against its exact law.

    Returns
    -------
    numbers : dict
        Per n, ``angle_mean_deg`` and ``angle_std_deg`` {theory, sim}.
    arrays : dict
        ``ns``, ``angles`` (radians), ``supports`` and ``pmfs`` of the exact distribution.
    """
    angles, supports, pmfs = [], [], []
    numbers = {"n": {}}
    for n in ns:
        a = geometry.angle(geometry.random_sign_vectors(n_samples, n, rng), geometry.random_sign_vectors(n_samples, n, rng))
        support, pmf = theory.sign_vector_angle_distribution(n)
        angles.append(a)
        supports.append(support)
        pmfs.append(pmf)
        numbers["n"][str(n)] = {
            "angle_mean_deg": {"theory": 90.0, "sim": float(deg(a.mean()))},
            "angle_std_deg": {"theory": float(deg(theory.sign_vector_angle_std(n))), "sim": float(deg(a.std()))},
        }
    return numbers, {"ns": list(ns), "angles": angles, "supports": supports, "pmfs": pmfs}


#: The simulated sections in notebook order, by their key in ``hd_numbers.json``.
SECTIONS = {"binary": binary_angles, "spread": angle_spread, "correlated": correlated, "ternary": ternary,
            "sign_vectors": sign_vectors}


def run_all(n_samples, seed=0):
    """Every section with its own random stream (changing one leaves the others' numbers as they were).

    Returns
    -------
    numbers : dict
        ``params`` and one entry per key of `SECTIONS`: what ``hd_numbers.json`` holds.
    arrays : dict
        Per key, the arrays of its figure.
    """
    rngs = map(np.random.default_rng, np.random.SeedSequence(seed).spawn(len(SECTIONS)))
    numbers, arrays = {"params": {"n_samples": n_samples, "seed": seed}}, {}
    for (key, simulate), rng in zip(SECTIONS.items(), rngs):
        numbers[key], arrays[key] = simulate(n_samples, rng)
    return numbers, arrays


def _rows(tree, prefix=""):
    """Flatten nested ``{..., {theory: x, sim: y}}`` into (label, theory kind, theory, sim) rows."""
    for key, value in tree.items():
        if isinstance(value, dict) and "sim" in value:
            kinds = [k for k in value if k != "sim"]
            yield f"{prefix}{key}", kinds[0] if kinds else "", value[kinds[0]] if kinds else None, value["sim"]
        elif isinstance(value, dict):
            yield from _rows(value, f"{prefix}{key} ")


def table(numbers):
    """One section's ``numbers`` as text: one line per quantity, theory beside simulation.

    Lists (the sweeps) are printed element by element; the theory's kind (``theory_limit``,
    ``theory_large_d``, ...) is named on every line, so a limit is never read as an exact value.
    """
    lines = [f"{'quantity':<44} {'theory':>10} {'simulation':>11}  kind"]
    for label, kind, th, sim in _rows(numbers):
        ths = th if isinstance(th, list) else [th]
        sims = sim if isinstance(sim, list) else [sim]
        for i, (a, b) in enumerate(zip(ths if th is not None else [None] * len(sims), sims)):
            name = label if len(sims) == 1 else f"{label}[{i}]"
            a_text = "-" if a is None else f"{a:10.4f}"
            lines.append(f"{name:<44} {a_text:>10} {b:11.4f}  {kind}")
    return "\n".join(lines)
