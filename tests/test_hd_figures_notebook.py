"""Run hd_figures.ipynb headless into a temporary directory and check the numbers it writes.

The notebook runs at its real sample size (10,000 vectors per dimension; about 20 s on 2 cores,
of which section 7's Keras import and quantizer Monte Carlo take about 6),
so the tolerances below are standard errors at that size. Set BNN_HD_TEST_N_SAMPLES to run it
smaller; the tolerances scale with it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "hd_figures.ipynb"
FIGURES = [
    "binary_angles",
    "binary_spread",
    "correlated_binarization",
    "ternary_threshold",
    "ternary_distributions",
    "straight_through",
    "sign_vector_angles",
    "angle_against_bits",
]
LIMIT_DEG = np.degrees(np.arccos(np.sqrt(2 / np.pi)))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Execute the notebook once; return (numbers from its JSON, output directory, executed notebook)."""
    out_dir = tmp_path_factory.mktemp("hd")
    n_samples = os.environ.get("BNN_HD_TEST_N_SAMPLES", "10000")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {**os.environ, "BNN_HD_OUT_DIR": str(out_dir), "BNN_HD_N_SAMPLES": n_samples, "BNN_HD_SEED": "0"}
    client = NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute(env=env)
    return json.loads((out_dir / "hd_numbers.json").read_text()), out_dir, nb


def _n(numbers):
    return numbers["params"]["n_samples"]


def test_geometry_modules_do_not_import_tensorflow_or_keras():
    code = (
        "import sys, bnn.geometry, bnn.theory, bnn.plotting\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_committed_notebook_has_no_outputs_and_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code_cells[0].metadata.get("tags", [])
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells)


def test_notebook_writes_every_figure_as_pdf_and_png(executed):
    _, out_dir, _ = executed
    for name in FIGURES:
        for suffix in (".pdf", ".png"):
            path = out_dir / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path


def test_notebook_prints_theory_beside_simulation(executed):
    _, _, nb = executed
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "theory" in text and "simulation" in text
    assert "0.6120" in text  # the optimal ternary threshold


def test_binary_angles_match_theory(executed):
    numbers, _, _ = executed
    n = _n(numbers)
    assert numbers["binary"]["limit_angle_deg"] == pytest.approx(37.0714, abs=1e-4)
    d27 = numbers["binary"]["d"]["27"]
    # The exact mean cosine, within 5 standard errors (std / sqrt(n)).
    se = d27["cos_std"]["sim"] / np.sqrt(n)
    assert abs(d27["cos_mean"]["sim"] - d27["cos_mean"]["theory"]) < 5 * se
    # The mean angle approaches the limit from below with an O(1/d) gap: 0.9 degrees at d = 27.
    assert 35.5 < d27["angle_mean_deg"]["sim"] < LIMIT_DEG
    for d, row in numbers["binary"]["d"].items():
        # Relative standard error of a sample std ~ 1/sqrt(2n) for these near-normal angles.
        rel = 5 / np.sqrt(2 * n)
        assert row["pair_angle_std_deg"]["sim"] == pytest.approx(row["pair_angle_std_deg"]["theory"], rel=rel), d
        assert row["cos_std"]["sim"] == pytest.approx(row["cos_std"]["theory"], rel=rel), d
        assert abs(row["pair_angle_mean_deg"]["sim"] - 90) < 5 * row["pair_angle_std_deg"]["theory"] / np.sqrt(n), d


def test_spread_follows_c_over_sqrt_d(executed):
    numbers, _, _ = executed
    spread = numbers["spread"]
    assert spread["coefficient_deg"] == pytest.approx(20.1784, abs=1e-4)
    for d, th, sim in zip(spread["d"], spread["angle_std_deg"]["theory_large_d"], spread["angle_std_deg"]["sim"]):
        assert th == pytest.approx(20.1784 / np.sqrt(d), rel=1e-5)
        if d >= 100:
            # 5 relative standard errors (1/sqrt(2n)) plus 1 % for the O(1/d) delta-method error.
            assert sim == pytest.approx(th, rel=5 / np.sqrt(2 * _n(numbers)) + 0.01), d


def test_rotation_restores_the_angle_that_the_plain_sign_loses(executed):
    numbers, _, _ = executed
    rows = numbers["correlated"]["d"]
    # The plain sign drifts towards 90 degrees as the few large coordinates dominate.
    assert rows["500"]["sign_angle_mean_deg"]["sim"] > 50
    assert rows["10"]["sign_angle_mean_deg"]["sim"] < rows["100"]["sign_angle_mean_deg"]["sim"] < rows["500"]["sign_angle_mean_deg"]["sim"]
    # R^T sign(R u) is back at ~37 degrees: within 1 degree (the per-sample spread is 0.9 degrees at
    # d = 500, and a fixed R shifts the mean by a fraction of that).
    assert abs(rows["500"]["rotated_angle_mean_deg"]["sim"] - LIMIT_DEG) < 1.0
    assert rows["500"]["rotated_cos_mean"]["sim"] == pytest.approx(rows["500"]["rotated_cos_mean"]["theory_isotropic"], abs=0.005)


def test_ternary_numbers(executed):
    numbers, _, _ = executed
    tern = numbers["ternary"]
    assert tern["optimal_threshold"]["theory"] == pytest.approx(0.612, abs=1e-3)
    # Grid step 0.005; the cosine is flat near its top, so allow 0.05.
    assert tern["optimal_threshold"]["sim"] == pytest.approx(0.612, abs=0.05)
    assert tern["assumed_threshold"] == pytest.approx(0.02 / 0.18)
    t = np.array(tern["thresholds"])
    assert t[0] == 0
    assert tern["zero_fraction"]["theory"][0] == 0 and tern["zero_fraction"]["sim"][0] == 0
    assert tern["angle_mean_deg"]["theory_large_d"][0] == pytest.approx(LIMIT_DEG)
    # Zero fractions: binomial standard error over the swept entries (at most 2,000 vectors x 1,000).
    p = np.array(tern["zero_fraction"]["theory"])
    entries = min(_n(numbers), 2000) * tern["d"]
    np.testing.assert_array_less(np.abs(np.array(tern["zero_fraction"]["sim"]) - p), 5 * np.sqrt(p * (1 - p) / entries) + 1e-12)
    # Mean angles for t <= 1.5 (at most ~130 non-zeros of 1,000 beyond that, where d = 1000 is not
    # yet "large"): within 0.1 degree, i.e. 5 standard errors (~0.015 deg each) plus the O(1/d) gap.
    sim, th = np.array(tern["angle_mean_deg"]["sim"]), np.array(tern["angle_mean_deg"]["theory_large_d"])
    np.testing.assert_allclose(sim[t <= 1.5], th[t <= 1.5], atol=0.1)
    dist = tern["distributions"]
    assert dist["optimal"]["angle_mean_deg"]["sim"] < dist["assumed"]["angle_mean_deg"]["sim"] < dist["binary"]["angle_mean_deg"]["sim"]
    for row in dist.values():
        assert row["angle_std_deg"]["sim"] == pytest.approx(row["angle_std_deg"]["theory_large_d"], rel=5 / np.sqrt(2 * _n(numbers)) + 0.02)


def test_random_sign_vectors_concentrate_at_ninety_degrees(executed):
    numbers, _, _ = executed
    rows = numbers["sign_vectors"]["n"]
    stds = [rows[n]["angle_std_deg"]["theory"] for n in ("10", "100", "1000")]
    assert stds[0] > stds[1] > stds[2]
    assert stds[2] == pytest.approx(np.degrees(1 / np.sqrt(1000)), rel=0.01)
    for n, row in rows.items():
        assert row["angle_std_deg"]["sim"] == pytest.approx(row["angle_std_deg"]["theory"], rel=5 / np.sqrt(2 * _n(numbers))), n
        assert abs(row["angle_mean_deg"]["sim"] - 90) < 5 * row["angle_std_deg"]["theory"] / np.sqrt(_n(numbers)), n


def test_angle_against_bits_follows_each_quantizers_theory(executed):
    numbers, _, _ = executed
    bits = numbers["bits"]
    rows = {r["spec"]: r for r in bits["rows"]}
    assert list(rows) == ["sign", "ternary", "uniform:bits=2", "uniform:bits=3", "uniform:bits=4", "uniform:bits=8"]
    assert [rows[s]["levels"] for s in rows] == [2, 3, 4, 8, 16, 256]
    theory = [rows[s]["angle_deg"] for s in rows]
    assert theory == sorted(theory, reverse=True) and theory[0] == pytest.approx(LIMIT_DEG)
    assert rows["ternary"]["parameter"] == "threshold 0.6120" and rows["uniform:bits=2"]["parameter"] == "step 0.9957"
    for spec, r in rows.items():
        # 5 standard errors of the mean angle (std / sqrt(n)) plus the O(1/d) gap; 8 bits sits 0.02
        # degrees low at d = 1000 (docs/quantizers.md)
        se = r["mc_std_deg"] / np.sqrt(bits["n"])
        assert abs(r["mc_angle_deg"] - r["angle_deg"]) < 5 * se + 0.03, spec
        if spec != "uniform:bits=8":
            assert r["mc_c"] == pytest.approx(r["c"], rel=5 / np.sqrt(2 * bits["n"]) + 0.03), spec
