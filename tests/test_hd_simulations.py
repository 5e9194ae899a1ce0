"""bnn.hd_simulations at small sample sizes: structure, seeding, and values against the closed forms."""

import numpy as np
import pytest

from bnn import hd_simulations as hd
from bnn import theory

LIMIT_DEG = np.degrees(theory.binary_limit_angle())


def test_run_all_is_seeded_and_each_section_has_its_own_stream():
    a, _ = hd.run_all(300, seed=1)
    b, _ = hd.run_all(300, seed=1)
    assert a == b and list(a) == ["params", *hd.SECTIONS]
    c, _ = hd.run_all(300, seed=2)
    assert c["binary"] != a["binary"]


def test_binary_section_matches_the_exact_moments():
    numbers, arrays = hd.binary_angles(4000, np.random.default_rng(0), dims=(27,))
    row = numbers["d"]["27"]
    # exact mean of the cosine; standard error cos_std / sqrt(n) ~ 0.001
    assert row["cos_mean"]["sim"] == pytest.approx(row["cos_mean"]["theory"], abs=0.005)
    assert row["cos_mean"]["theory"] == pytest.approx(theory.binary_cosine_mean(27))
    assert row["pair_angle_mean_deg"]["sim"] == pytest.approx(90, abs=0.6)
    assert len(arrays["sign_angles"][0]) == 4000 and arrays["theta"].shape == (1441,)


def test_rotation_brings_an_anisotropic_vector_back_to_37_degrees():
    numbers, _ = hd.correlated(1000, np.random.default_rng(0), dims=(300,))
    row = numbers["d"]["300"]
    assert row["sign_angle_mean_deg"]["sim"] > 50
    assert abs(row["rotated_angle_mean_deg"]["sim"] - LIMIT_DEG) < 1.5


def test_ternary_section_marks_the_assumed_threshold_as_such():
    numbers, arrays = hd.ternary(300, np.random.default_rng(0), d=400)
    assert numbers["assumed_threshold"] == pytest.approx(0.02 / 0.18) and "paper_threshold" not in numbers
    assert set(numbers["distributions"]) == {"binary", "assumed", "optimal"}
    assert numbers["zero_fraction"]["sim"][0] == 0
    t = np.array(numbers["thresholds"])
    np.testing.assert_allclose(np.array(numbers["zero_fraction"]["sim"])[t < 2], theory.ternary_zero_fraction(t[t < 2]),
                               atol=0.01)


def test_table_prints_theory_beside_simulation_with_its_kind():
    numbers, _ = hd.sign_vectors(200, np.random.default_rng(0), ns=(100,))
    text = hd.table(numbers)
    assert "n 100 angle_mean_deg" in text and "90.0000" in text
    spread, _ = hd.angle_spread(200, np.random.default_rng(0), dims=(10, 100))
    lines = hd.table(spread).splitlines()
    assert lines[1].startswith("angle_std_deg[0]") and lines[1].endswith("theory_large_d")
    assert f"{20.1784 / np.sqrt(10):.4f}" in lines[1]
